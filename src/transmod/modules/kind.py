"""What a kind of module is, in one object: a subclass of `ModuleKind` per kind, registered in `KINDS`.

A kind says which of its weights touch the hidden space and along which axis (transfer and fidelity
follow it), where in a layer it sits and which hidden state it reads (sampling hooks there), which
`adapters` config options it supports, how a new one is configured for training, how its effect on a
hidden state is computed (fidelity) and how its config is rewritten for a student. Supporting a kind
is one subclass and one entry in `transmod.modules.kinds.KINDS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from transmod.errors import TransmodError
from transmod.modules.architectures import Architecture

Weights = dict[str, np.ndarray]  # one layer and site's parameters, by name
Hook = Callable[[str, bool], Callable]  # keep(name, from_input) -> a forward (pre-)hook storing under `name`


@dataclass(frozen=True)
class Range:
    """A number's valid range, three ways: words for an error, the test, and the JSON-schema bounds."""

    words: str
    test: Callable[[float], bool]
    schema: dict[str, Any]


RANGES: dict[str, Range] = {
    "positive": Range("a finite number above 0", lambda x: 0 < x < math.inf, {"type": "number", "exclusiveMinimum": 0}),
    "count": Range("a whole number of at least 1", lambda x: x >= 1 and (isinstance(x, int) or x.is_integer()),
                   {"type": "integer", "minimum": 1}),
    "fraction": Range("a number from 0 to 1", lambda x: 0 <= x <= 1, {"type": "number", "minimum": 0, "maximum": 1}),
    "dropout": Range("a number from 0 up to, not including, 1", lambda x: 0 <= x < 1,
                     {"type": "number", "minimum": 0, "exclusiveMaximum": 1}),
    "finite": Range("a finite number", lambda x: -math.inf < x < math.inf, {"type": "number"}),
}


def config_number(config: Mapping[str, Any], key: str, source: str | Path, valid: str, *, prefix: str = "",
                  default: float | None = None, fix: str = "fix it or save the module again") -> float:
    """The number at `key` of a module config, in its `RANGES` range: a NaN, inf, string or out-of-range value
    would otherwise move into the student's config (or divide by zero), so it is refused naming file and key."""
    value = config.get(key, default)
    valid_range = RANGES[valid]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid_range.test(value):
        shown = "missing" if value is None and key not in config else repr(value)
        raise TransmodError(f"{source}: {prefix}{key} is {shown}, but it must be {valid_range.words}; {fix}")
    return int(value) if valid == "count" else value


def option(default: float, valid: str, doc: str, *, width: bool = False) -> Any:
    """A field of a kind's `Options`: its default, its `RANGES` range, what it means (the config schema's
    description), and `width`: whether it may not exceed the model's hidden size."""
    return field(default=default, metadata={"range": valid, "doc": doc, "width": width})


@dataclass(frozen=True)
class Options:
    """A kind's training options, as peft's `LoraConfig` is LoRA's: the config's `modules.<kind>` section and
    the Python API's settings of a fresh module. A kind subclasses it with `option` fields; reading, the
    range checks and the config schema's section all follow the fields."""

    @classmethod
    def from_dict(cls, values: Any, source: str) -> Options:
        """Options from a mapping, each number in its range; an unknown key is refused, not ignored."""
        if not isinstance(values, Mapping):
            raise TransmodError(f"{source}: must be a mapping of options ({', '.join(cls.names())}), got {values!r}")
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise TransmodError(f"{source}: unknown option(s) {', '.join(map(str, unknown))}; known options are "
                                f"{', '.join(cls.names())}")
        checked = {f.name: config_number(values, f.name, source, f.metadata["range"], default=f.default, fix="fix it")
                   for f in fields(cls)}
        return cls(**checked)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The JSON schema of the config's `modules.<kind>` section, made from the fields."""
        properties = {f.name: {**RANGES[f.metadata["range"]].schema, "description": f.metadata["doc"]} for f in fields(cls)}
        return {"type": "object", "additionalProperties": False, "default": {}, "properties": properties}

    def too_wide(self, hidden_size: int) -> str | None:
        """The first option that may not exceed the hidden size and does (a bottleneck wider than the model)."""
        return next((f.name for f in fields(self) if f.metadata["width"] and getattr(self, f.name) > hidden_size), None)


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
    options: ClassVar[type[Options]]  # its training options: the config's `modules.<kind>`

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

    def new_config(self, hidden_size: int, options: Any) -> Any:
        """The `adapters` config of a fresh module for training (`options`: an instance of `self.options`)."""
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
