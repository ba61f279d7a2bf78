"""The workflow's config files: the schema, the demo profile's config, and the study's config.yaml with changes."""

from __future__ import annotations

import yaml

from helpers import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEMO_CONFIG = REPO / "profiles" / "demo" / "demo-config.yaml"


def study_config(**changes) -> dict:
    """config.yaml with each dotted key (`training.student.epochs`) set to its value."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in changes.items():
        target = config
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    return config
