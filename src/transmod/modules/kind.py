"""What a kind of module is, in one object: a subclass of `ModuleKind` per kind, registered in `KINDS`.

A kind says which of its weights touch the hidden space and along which axis (transfer and fidelity
follow it), where in a layer it sits and which hidden state it reads (sampling hooks there), which
`adapters` config options it supports, how a new one is configured for training, how its effect on a
hidden state is computed (fidelity) and how its config is rewritten for a student. Supporting a kind
is one subclass and one entry in `transmod.modules.kinds.KINDS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from transmod.errors import TransmodError
from transmod.modules.architectures import Architecture

Weights = dict[str, np.ndarray]  # one layer and site's parameters, by name
Hook = Callable[[str, bool], Callable]  # keep(name, from_input) -> a forward (pre-)hook storing under `name`
# a config number's valid range: its words in an error, and the test
RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "positive": ("a finite number above 0", lambda x: 0 < x < math.inf),
    "count": ("a whole number of at least 1", lambda x: x >= 1 and (isinstance(x, int) or x.is_integer())),
    "fraction": ("a number from 0 to 1", lambda x: 0 <= x <= 1),
    "finite": ("a finite number", lambda x: -math.inf < x < math.inf),
}


def config_number(config: dict[str, Any], key: str, source: str | Path, valid: str, *, prefix: str = "",
                  default: float | None = None) -> float:
    """The number at `key` of a module config, in its `RANGES` range: a NaN, inf, string or out-of-range value
    would otherwise move into the student's config (or divide by zero), so it is refused naming file and key."""
    value = config.get(key, default)
    words, ok = RANGES[valid]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        shown = "missing" if value is None and key not in config else repr(value)
        raise TransmodError(f"{source}: {prefix}{key} is {shown}, but it must be {words}; fix it or save the "
                            "module again")
    return int(value) if valid == "count" else value


def check_tensor(tensor: np.ndarray, ndim: int, file: str | Path, key: str) -> None:
    """Refuse a weight that is not a finite matrix (a vector for a bias): NaN or inf would be copied into the
    student's module, and a tensor of another shape cannot be aligned."""
    if tensor.ndim != ndim:
        raise TransmodError(f"{file}: weight {key!r} has shape {list(tensor.shape)}, not {ndim} axes; the file is "
                            "damaged: save the module again")
    bad = int(tensor.size - np.isfinite(tensor).sum())
    if bad:
        raise TransmodError(f"{file}: weight {key!r} holds {bad} NaN or inf values; the module is damaged: "
                            "retrain it or save a sound copy again")


class ModuleKind:
    name: ClassVar[str]  # as the CLI's --peft and the config's `peft` spell it
    label: ClassVar[str]  # in prose: "bottleneck adapter", "LoRA"
    description: ClassVar[str]  # what transmod supports of the kind, for error messages
    # parameter -> (axis along the hidden size, "in": reads the hidden space / "out": writes it)
    hidden_axes: ClassVar[dict[str, tuple[int, str]]]
    plain: ClassVar[frozenset[str]] = frozenset()  # parameters that never touch the hidden size: copied as they are
    sites: ClassVar[tuple[str, ...]]  # where in a layer its weights sit (a key of `site_paths`)
    inner_axes: ClassVar[dict[str, int]]  # parameter -> its axis along the bottleneck (adapter) or rank (LoRA)
    inner_label: ClassVar[str]  # "bottleneck", "rank"
    read_bias: ClassVar[str | None] = None  # the bias of the reading weight, into which an alignment's offset folds
    peft_type: ClassVar[str | None] = None  # Hugging Face peft's name of the kind, where peft's format holds it
    # (writer, reader) when the update is their product alone, writer @ reader (LoRA): a transfer may then
    # average the products and refactorise them (transmod.align.transfer); None for a non-linear kind
    product: ClassVar[tuple[str, str] | None] = None

    @property
    def reader(self) -> str:
        """The parameter that reads the hidden space (its input side)."""
        return next(p for p, (_, direction) in self.hidden_axes.items() if direction == "in")

    def check_arch(self, arch: Architecture, source: str) -> None:
        """Refuse, naming `source`, a family that cannot hold a module of this kind."""

    def site_paths(self, arch: Architecture) -> dict[str, str]:
        """Site -> the sub-module of a layer that holds the module's weights (as `adapters` names it)."""
        raise NotImplementedError

    def matches(self, section: dict[str, Any]) -> bool:
        """Whether an adapters `config` section describes a module of this kind."""
        raise NotImplementedError

    def check_config(self, section: dict[str, Any], source: str) -> None:
        """Refuse options transmod does not move, naming them, and numbers out of range (`config_number`)."""
        raise NotImplementedError

    def ndim(self, param: str) -> int:
        """The axes of a parameter's tensor: a bias is a vector, every other weight a matrix."""
        return 1 if param.endswith("bias") else 2

    def inner_size(self, section: dict[str, Any], hidden_size: int) -> tuple[int, str]:
        """The bottleneck or rank the config gives for modules of `hidden_size`, and what in the config says so."""
        raise NotImplementedError

    def check_weights(self, section: dict[str, Any], weights: dict[tuple[int, str, str], np.ndarray], hidden_size: int,
                      source: str | Path, weights_file: str | Path) -> None:
        """Refuse a config (`source`) whose bottleneck or rank is not the weights': the module written from it
        would not load. `hidden_size` is the weights' own, checked against the teacher's."""
        want, said = self.inner_size(section, hidden_size)
        have = sorted({t.shape[self.inner_axes[p]] for (_, _, p), t in weights.items() if p in self.inner_axes})
        if have != [want]:
            raise TransmodError(f"{source}: {said}, but the weights in {weights_file} have {self.inner_label} "
                                f"{', '.join(map(str, have))}; fix the config or save the module again")

    def spaces(self, outputs: bool, arch: Architecture | None = None) -> tuple[str, ...]:
        """The hidden spaces sampled for this kind: `h` (what it reads) and, with `outputs`, what it writes."""
        return ("h",)

    def space(self, site: str, direction: str, outputs: bool) -> str:
        """The space a weight of `site` reads ("in") or writes ("out"), aligned by that space's maps."""
        return "h"

    def input_space(self, site: str) -> str:
        """The sampled space that a site's reading weight reads (fidelity applies the module to it)."""
        return self.space(site, "in", False)

    def hooks(self, layer: Any, arch: Architecture, l: int, spaces: tuple[str, ...], keep: Hook) -> list:
        """Register read-only hooks on one layer that store the sampled spaces; returns their handles."""
        raise NotImplementedError

    def new_config(self, hidden_size: int, settings: Any) -> Any:
        """The `adapters` config of a fresh module for training (`settings`: a TrainConfig)."""
        raise NotImplementedError

    def effect(self, w: Weights, section: dict[str, Any], h: np.ndarray, source: str) -> np.ndarray:
        """The change the module adds at one site for inputs h (tokens x hidden), in float64."""
        raise NotImplementedError

    def for_student(self, section: dict[str, Any], teacher_hidden: int, student_hidden: int) -> None:
        """Rewrite a config section in place for a student of another width (same bottleneck or rank)."""

    def unsupported(self, bad: list[str], source: str) -> None:
        if bad:
            raise TransmodError(f"{source}: unsupported module options {', '.join(bad)}; transmod supports "
                                f"{self.description}")
