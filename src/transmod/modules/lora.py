"""LoRA: on an encoder's self-attention query and value (`adapters`' LoRAConfig, peft's LORA), or on any of
a decoder LLM's projections (peft's LORA on `DECODER_SITES`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transmod.errors import TransmodError
from transmod.modules.architectures import DECODER_SITES, Architecture
from transmod.modules.kind import Hook, ModuleKind, Options, Weights, config_number, option

SPACE_OF_SITE = {"query": "q", "value": "v"}  # the space a LoRA B writes, when aligned on its own outputs
DECODER_SPACES = ("h", "f", "a", "m")  # sampled on a decoder, each at the input of the projection that reads it
_HOOK_OF_SPACE = {"h": "q_proj", "f": "gate_proj", "a": "o_proj", "m": "down_proj"}


@dataclass(frozen=True)
class LoRAOptions(Options):
    """A fresh LoRA's rank and scale (alpha / r), as peft's LoraConfig names them."""

    r: int = option(8, "count", "the rank")
    alpha: int = option(8, "count", "LoRA's scale is alpha / r; an integer, as training takes it")
    dropout: float = option(0.0, "dropout", "dropout on the LoRA's input while training")


class LoRA(ModuleKind):
    name = "lora"
    label = "LoRA"
    description = "LoRA on self-attention query/value (encoders) or q/k/v/o/gate/up/down projections (decoder LLMs)"
    hidden_axes = {"lora_A": (1, "in"), "lora_B": (0, "out")}
    inner_axes = {"lora_A": 0, "lora_B": 1}
    inner_label = "rank"
    product = ("lora_B", "lora_A")
    sites = ("query", "value", *DECODER_SITES)
    peft_type = "LORA"
    options = LoRAOptions

    def site_paths(self, arch: Architecture) -> dict[str, str]:
        return {site: f"{path}.loras" for site, path in arch.lora_paths.items()}

    def matches(self, section: dict[str, Any]) -> bool:
        return section.get("architecture") == "lora"

    def check_config(self, section: dict[str, Any], source: str) -> None:
        bad = [k for k in ("intermediate_lora", "output_lora", "use_dora", "use_gating") if section.get(k)]
        if not section.get("selfattn_lora", True) or not set(section.get("attn_matrices", [])) <= {"q", "v"}:
            bad.append("attn_matrices other than q, v")
        self.unsupported(bad, source)
        config_number(section, "r", source, "count", prefix="config.")
        config_number(section, "alpha", source, "positive", prefix="config.")
        config_number(section, "dropout", source, "fraction", prefix="config.", default=0.0)

    def inner_size(self, section: dict[str, Any], hidden_size: int) -> tuple[int, str]:
        return int(section["r"]), f"config.r is {section['r']!r}"

    def spaces(self, outputs: bool, arch: Architecture | None = None) -> tuple[str, ...]:
        if arch is not None and arch.decoder:
            return DECODER_SPACES
        return ("h", "q", "v") if outputs else ("h",)

    def space(self, site: str, direction: str, outputs: bool) -> str:
        if site in DECODER_SITES:  # a decoder's projections: each reads and writes its own space
            return DECODER_SITES[site][1 if direction == "in" else 2]
        return SPACE_OF_SITE[site] if direction == "out" and outputs else "h"

    def hooks(self, layer: Any, arch: Architecture, l: int, spaces: tuple[str, ...], keep: Hook) -> list:
        if arch.decoder:  # each space at the input of the projection that reads it, all in the same forward pass
            return [layer.get_submodule(DECODER_SITES[_HOOK_OF_SPACE[s]][0]).register_forward_pre_hook(keep(f"lora:{s}{l}", True))
                    for s in spaces]
        query = layer.get_submodule(arch.query)
        handles = [query.register_forward_pre_hook(keep(f"lora:h{l}", True))]
        if "q" in spaces:
            handles.append(query.register_forward_hook(keep(f"lora:q{l}", False)))
            handles.append(layer.get_submodule(arch.value).register_forward_hook(keep(f"lora:v{l}", False)))
        return handles

    def new_config(self, hidden_size: int, options: LoRAOptions) -> Any:
        import adapters

        return adapters.LoRAConfig(r=options.r, alpha=options.alpha, dropout=options.dropout,
                                   attn_matrices=["q", "v"])

    def effect(self, w: Weights, section: dict[str, Any], h: np.ndarray, source: str) -> np.ndarray:
        if section.get("composition_mode", "add") != "add":
            raise TransmodError(f"{source}: LoRA composition_mode {section['composition_mode']!r}; fidelity handles 'add'")
        return (h @ w["lora_A"].T @ w["lora_B"].T) * (float(section["alpha"]) / float(section["r"]))
