"""A module read from disk, whatever its format: its config and weights keyed by (layer, site, parameter).

Sites and parameters are those of the module's kind (`transmod.modules.kinds`): `adapter` for the
output bottleneck adapter, `query` and `value` for a LoRA on self-attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transmod.modules.kind import ModuleKind
from transmod.modules.kinds import kind_of

CONFIG_NAME = "adapter_config.json"  # both formats' config file name
MODULE_KIND = "module"  # the output kind of a transferred module folder (transmod.atomic)


@dataclass
class Module:
    """A module read from disk: its adapters config and weights keyed by (layer, site, parameter)."""

    path: Path
    config: dict
    weights: dict[tuple[int, str, str], np.ndarray]
    peft_config: dict | None = None  # the adapter_config.json of a LoRA saved by `peft`, kept for writing it back

    @property
    def name(self) -> str:
        return self.config.get("name") or "transferred"

    @property
    def spec(self) -> ModuleKind:
        """What the module's kind is (read side checked it is one of `KINDS`)."""
        return kind_of(self.config["config"])

    @property
    def kind(self) -> str:
        return self.spec.name

    @property
    def layers(self) -> set[int]:
        return {layer for layer, _, _ in self.weights}
