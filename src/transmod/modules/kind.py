"""What a kind of module is, in one object: a subclass of `ModuleKind` per kind, registered in `KINDS`.

A kind says which of its weights touch the hidden space and along which axis (transfer and fidelity
follow it), where in a layer it sits and which hidden state it reads (sampling hooks there), which
`adapters` config options it supports, how a new one is configured for training, how its effect on a
hidden state is computed (fidelity) and how its config is rewritten for a student. Supporting a kind
is one subclass and one entry in `transmod.modules.kinds.KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from transmod.errors import TransmodError
from transmod.modules.architectures import Architecture

Weights = dict[str, np.ndarray]  # one layer and site's parameters, by name
Hook = Callable[[str, bool], Callable]  # keep(name, from_input) -> a forward (pre-)hook storing under `name`


class ModuleKind:
    name: ClassVar[str]  # as the CLI's --peft and the config's `peft` spell it
    label: ClassVar[str]  # in prose: "bottleneck adapter", "LoRA"
    description: ClassVar[str]  # what transmod supports of the kind, for error messages
    # parameter -> (axis along the hidden size, "in": reads the hidden space / "out": writes it)
    hidden_axes: ClassVar[dict[str, tuple[int, str]]]
    plain: ClassVar[frozenset[str]] = frozenset()  # parameters that never touch the hidden size: copied as they are
    sites: ClassVar[tuple[str, ...]]  # where in a layer its weights sit (a key of `site_paths`)
    read_bias: ClassVar[str | None] = None  # the bias of the reading weight, into which an alignment's offset folds
    peft_type: ClassVar[str | None] = None  # Hugging Face peft's name of the kind, where peft's format holds it

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
        """Refuse options transmod does not move, naming them."""
        raise NotImplementedError

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
