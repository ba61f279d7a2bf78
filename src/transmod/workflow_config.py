"""Validate the workflow's config before any job runs: schema first, then what a schema cannot say.

Every problem becomes one line that names the key, so `snakemake -n` refuses a bad config clearly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transmod.errors import TransmodError

# Depths of the hub models the study uses; local folders are read from their config.json.
KNOWN_DEPTHS = {
    "bert-base-multilingual-cased": 12,
    "distilbert-base-multilingual-cased": 6,
    "xlm-roberta-large": 24,
    "xlm-roberta-base": 12,
}


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def check_schema(config: dict, schema_file: str | Path) -> None:
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    error = errors[0]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = _key(error.absolute_path)
        raise TransmodError(f"config key {where}: unknown key(s) {', '.join(extra)}; allowed: "
                            f"{', '.join(error.schema.get('properties', {}))}")
    raise TransmodError(f"config key {_key(error.absolute_path)}: {error.message}")


def model_depth(model: str) -> int | None:
    """Layer count of a local model folder or a known hub model; None when unknown offline."""
    config = Path(model) / "config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        return data.get("num_hidden_layers", data.get("n_layers"))
    return KNOWN_DEPTHS.get(model)


def check_semantics(config: dict) -> None:
    from transmod.data import TASKS

    for pair, spec in config["pairs"].items():
        for task in spec["tasks"]:
            if task not in config["tasks"]:
                raise TransmodError(f"config key pairs.{pair}.tasks: task {task!r} has no entry under `tasks`; add one")
        depths = model_depth(spec["teacher"]), model_depth(spec["student"])
        if None not in depths and depths[1] > depths[0]:
            raise TransmodError(
                f"config key pairs.{pair}.student: {spec['student']} ({depths[1]} layers) is deeper than the teacher "
                f"{spec['teacher']} ({depths[0]} layers); the student must be the shallower model"
            )
    for task, spec in config["tasks"].items():
        if spec["dataset"] != TASKS[task].hub_id:
            continue  # a local copy may hold any languages; loading names a missing one
        missing = [lang for lang in spec["languages"] if lang not in TASKS[task].languages]
        if missing:
            raise TransmodError(
                f"config key tasks.{task}.languages: {', '.join(missing)} not in {spec['dataset']}; "
                f"it has {', '.join(TASKS[task].languages)}"
            )


def validate_config(config: dict, schema_file: str | Path) -> None:
    check_schema(config, schema_file)
    check_semantics(config)
