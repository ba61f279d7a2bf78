"""LoRA on self-attention's query and value projections (`adapters`' LoRAConfig, peft's LORA)."""

from __future__ import annotations

from typing import Any

import numpy as np

from transmod.errors import TransmodError
from transmod.modules.architectures import Architecture
from transmod.modules.kind import Hook, ModuleKind, Weights

SPACE_OF_SITE = {"query": "q", "value": "v"}  # the space a LoRA B writes, when aligned on its own outputs


class LoRA(ModuleKind):
    name = "lora"
    label = "LoRA"
    description = "LoRA on self-attention query/value"
    hidden_axes = {"lora_A": (1, "in"), "lora_B": (0, "out")}
    sites = ("query", "value")
    peft_type = "LORA"

    def site_paths(self, arch: Architecture) -> dict[str, str]:
        return {"query": f"{arch.query}.loras", "value": f"{arch.value}.loras"}

    def matches(self, section: dict[str, Any]) -> bool:
        return section.get("architecture") == "lora"

    def check_config(self, section: dict[str, Any], source: str) -> None:
        bad = [k for k in ("intermediate_lora", "output_lora", "use_dora", "use_gating") if section.get(k)]
        if not section.get("selfattn_lora", True) or not set(section.get("attn_matrices", [])) <= {"q", "v"}:
            bad.append("attn_matrices other than q, v")
        self.unsupported(bad, source)

    def spaces(self, outputs: bool) -> tuple[str, ...]:
        return ("h", "q", "v") if outputs else ("h",)

    def space(self, site: str, direction: str, outputs: bool) -> str:
        return SPACE_OF_SITE[site] if direction == "out" and outputs else "h"

    def hooks(self, layer: Any, arch: Architecture, l: int, spaces: tuple[str, ...], keep: Hook) -> list:
        query = layer.get_submodule(arch.query)
        handles = [query.register_forward_pre_hook(keep(f"lora:h{l}", True))]
        if "q" in spaces:
            handles.append(query.register_forward_hook(keep(f"lora:q{l}", False)))
            handles.append(layer.get_submodule(arch.value).register_forward_hook(keep(f"lora:v{l}", False)))
        return handles

    def new_config(self, hidden_size: int, settings: Any) -> Any:
        import adapters

        return adapters.LoRAConfig(r=settings.lora_r, alpha=settings.lora_alpha, dropout=settings.lora_dropout,
                                   attn_matrices=["q", "v"])

    def effect(self, w: Weights, section: dict[str, Any], h: np.ndarray, source: str) -> np.ndarray:
        if section.get("composition_mode", "add") != "add":
            raise TransmodError(f"{source}: LoRA composition_mode {section['composition_mode']!r}; fidelity handles 'add'")
        return (h @ w["lora_A"].T @ w["lora_B"].T) * (float(section["alpha"]) / float(section["r"]))
