"""The alignment methods, one entry each, light to import (no sample reader, no scipy): what the CLI offers, the
config accepts, the inits name, the Python API checks and `transmod.align.alignment` fits.

A method fitted on samples names the function that makes one layer's map from that layer's accumulated sums
(`fit(acc, ridge, intercept, layer_map) -> layer_map`, imported when a fit runs); the rest (which sums to
accumulate, the workflow's rules, the inits `<mapping>-<method>`, transfer and fidelity) follows the entry.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

from transmod.errors import TransmodError

SAMPLES, NOTHING, WEIGHTS = "samples", "nothing", "weights"  # what a method reads
DEFAULT_RIDGE = 1e-4


@dataclass(frozen=True)
class Method:
    """An alignment method: what it reads, and the function that makes its maps."""

    name: str
    fit: str  # "module:function": one layer's map from its sums (samples), or the whole alignment (data-free)
    reads: str = SAMPLES  # SAMPLES; NOTHING (evenly spaced dimensions); WEIGHTS (the models' own weights)
    dense: bool = False  # a dense map fitted on covariances, shrunk towards lsa-signed by `ridge`

    def function(self) -> Callable:
        module, name = self.fit.split(":")
        return getattr(importlib.import_module(module), name)


_FITS = "transmod.align.alignment"
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("lsa", f"{_FITS}:fit_lsa"),  # the study's: an assignment on signed r
    Method("lsa-signed", f"{_FITS}:fit_lsa_signed"),
    Method("linear", f"{_FITS}:fit_linear", dense=True),
    Method("procrustes", f"{_FITS}:fit_procrustes", dense=True),
    Method("select", f"{_FITS}:select_alignment", reads=NOTHING),
    Method("embed", "transmod.align.embeddings:embedding_alignment", reads=WEIGHTS),
)}


def grid_methods() -> tuple[str, ...]:
    """The methods the workflow runs and the inits name: all but those computed from two models' weights, which
    the grid's sample files do not hold (read now, not at import, so a new entry is picked up)."""
    return tuple(name for name, m in METHODS.items() if m.reads != WEIGHTS)


def data_free(method: str | None) -> bool:
    return method in METHODS and METHODS[method].reads != SAMPLES


def dense(method: str | None) -> bool:
    return method in METHODS and METHODS[method].dense


def check_method(method: str) -> str:
    """Refuse an unknown method name, listing the valid ones."""
    if method not in METHODS:
        raise TransmodError(f"unknown alignment method {method!r} (--align/--method): use one of {', '.join(METHODS)}")
    return method


def check_ridge(method: str | None, ridge: float | None, option: str = "--align") -> float:
    """The ridge a method fits with (DEFAULT_RIDGE unless given); given for a method that fits none, refused:
    only the dense maps shrink towards lsa-signed, so it would go unused."""
    if ridge is None:
        return DEFAULT_RIDGE
    if not dense(method):
        named = f"with {option} {method}" if method else f"without {option}"
        shrunk = [name for name, m in METHODS.items() if m.dense]
        raise TransmodError(f"--ridge shrinks the maps of {' and '.join(shrunk)} only, so {named} it would be "
                            f"ignored: drop --ridge, or give {option} {' or '.join(shrunk)}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not 0 <= ridge < math.inf:
        raise TransmodError(f"--ridge must be a finite number of at least 0, got {ridge!r}")
    return float(ridge)
