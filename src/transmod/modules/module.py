"""A module read from disk, whatever its format, and which of its weights touch the hidden space.

Weights are keyed by (layer, site, parameter): site `adapter` (the output bottleneck adapter), `query`
or `value` (a LoRA on self-attention). `HIDDEN_AXES` is the one place that says along which axis each
parameter reads or writes the hidden space; transfer and fidelity both follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transmod.modules.architectures import Architecture

CONFIG_NAME = "adapter_config.json"  # both formats' config file name
MODULE_KIND = "module"  # the output kind of a transferred module folder (transmod.atomic)

# Which axis of each parameter runs along a hidden space, and whether it reads ("in") or writes ("out").
# Parameters absent here do not touch the hidden size (e.g. the bottleneck bias) and are copied.
HIDDEN_AXES: dict[str, tuple[int, str]] = {
    "adapter_down.0.weight": (1, "in"),
    "adapter_up.weight": (0, "out"),
    "adapter_up.bias": (0, "out"),
    "lora_A": (1, "in"),
    "lora_B": (0, "out"),
}
PLAIN = {"adapter_down.0.bias"}
SITES = ("adapter", "query", "value")
MODULE_KINDS = ("adapter", "lora")  # bottleneck adapter, LoRA: the `peft` of the CLI and the config


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
    def kind(self) -> str:
        return "lora" if self.config["config"].get("architecture") == "lora" else "adapter"

    @property
    def layers(self) -> set[int]:
        return {layer for layer, _, _ in self.weights}


def site_paths(arch: Architecture) -> dict[str, str]:
    return {"adapter": f"{arch.adapter_site}", "query": f"{arch.query}.loras", "value": f"{arch.value}.loras"}
