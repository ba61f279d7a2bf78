"""How a student run starts, by name: `default` (a fresh module), a layer mapping (`skip`, `avg`, the study's
`lsa` alignment), a mapping and another alignment method (`avg-procrustes`), each also zero-shot (`zs-skip`:
the transferred module frozen, only the head trained).

The names are shared by the workflow's paths and wildcards, the config checks and the tables; the
config schema's `inits` pattern spells the same grammar.
"""

from __future__ import annotations

import re

from transmod.align.alignment import METHODS
from transmod.align.layermap import MAPPINGS

DEFAULT = "default"
ZERO_SHOT = "zs-"  # prefix of zero-shot runs
STUDY_METHOD = "lsa"  # what a bare mapping aligns with
# An init that starts from a transferred module, as a regular expression (a wildcard constraint).
TRANSFER_INIT = rf"({'|'.join(MAPPINGS)})(-({'|'.join(re.escape(m) for m in METHODS if m != STUDY_METHOD)}))?"


def is_zero_shot(init: str | None) -> bool:
    return str(init).startswith(ZERO_SHOT)


def split_init(init: str) -> tuple[str, str]:
    """`skip` -> (skip, lsa): the study's method; `avg-linear` -> (avg, linear); `zs-` (zero-shot) is dropped."""
    mapping, _, method = init.removeprefix(ZERO_SHOT).partition("-")
    return mapping, method or STUDY_METHOD


def init_name(mapping: str, method: str) -> str:
    """The inverse of split_init for a transferred init: the study's method goes unnamed."""
    return mapping if method == STUDY_METHOD else f"{mapping}-{method}"
