"""The alignment methods by name, light to import (no sample reader, no scipy): what the CLI offers, the Python API
checks and `transmod.align.alignment` fits."""

from __future__ import annotations

import math

from transmod.errors import TransmodError

METHODS = ("lsa", "lsa-signed", "linear", "procrustes", "select")  # fitted on samples (select: on nothing)
WEIGHT_METHODS = ("embed",)  # computed from the models' own weights (transmod.align.embeddings), never from samples
DATA_FREE = ("select", *WEIGHT_METHODS)  # read no samples
DENSE_METHODS = ("linear", "procrustes")  # dense maps, shrunk towards lsa-signed by `ridge` (the only ones it shapes)
DEFAULT_RIDGE = 1e-4


def check_method(method: str) -> str:
    """Refuse an unknown method name, listing the valid ones."""
    if method not in METHODS + WEIGHT_METHODS:
        raise TransmodError(f"unknown alignment method {method!r} (--align/--method): use one of "
                            f"{', '.join(METHODS + WEIGHT_METHODS)}")
    return method


def check_ridge(method: str | None, ridge: float | None, option: str = "--align") -> float:
    """The ridge a method fits with (DEFAULT_RIDGE unless given); given for a method that fits none, refused:
    only the linear and procrustes maps shrink towards lsa-signed, so it would go unused."""
    if ridge is None:
        return DEFAULT_RIDGE
    if method not in DENSE_METHODS:
        named = f"with {option} {method}" if method else f"without {option}"
        raise TransmodError(f"--ridge shrinks the maps of linear and procrustes only, so {named} it would be ignored: "
                            f"drop --ridge, or give {option} linear or procrustes")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not 0 <= ridge < math.inf:
        raise TransmodError(f"--ridge must be a finite number of at least 0, got {ridge!r}")
    return float(ridge)
