"""The bottleneck adapter after each layer's output (Pfeiffer / `adapters`' SeqBnConfig).

On an encoder it reads the output LayerNorm's result (the residual stream of a post-norm model); on a
Llama or Mistral decoder `adapters` places it after the MLP, where it reads the layer's output, the
un-normed residual stream (MLP output + residual), and adds its change to it. Either way what it reads
and writes is one space, sampled as `h` at the architecture's `adapter_input` (not the `h` of a decoder
LoRA's samples, which is after input_layernorm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transmod.errors import TransmodError
from transmod.modules.architectures import ADAPTER_MODEL_TYPES, Architecture
from transmod.modules.kind import Hook, ModuleKind, Options, Weights, config_number, option


def reduction_factor(hidden_size: int, bottleneck: int) -> float | int:
    """The `adapters` reduction factor whose bottleneck floor(hidden / factor) is exactly `bottleneck`."""
    factor = hidden_size / bottleneck
    if int(hidden_size // factor) != bottleneck:
        factor = hidden_size / (bottleneck + 0.5)
    return int(factor) if float(factor).is_integer() else factor


@dataclass(frozen=True)
class AdapterOptions(Options):
    """A fresh adapter's size: teacher and student get the same bottleneck, whatever their widths."""

    bottleneck: int = option(128, "count", "the bottleneck width (the reduction factor is hidden size / this)",
                             width=True)


class BottleneckAdapter(ModuleKind):
    name = "adapter"
    label = "bottleneck adapter"
    description = "bottleneck output adapters (Pfeiffer / SeqBnConfig)"
    hidden_axes = {"adapter_down.0.weight": (1, "in"), "adapter_up.weight": (0, "out"), "adapter_up.bias": (0, "out")}
    plain = frozenset({"adapter_down.0.bias"})
    inner_axes = {"adapter_down.0.weight": 0, "adapter_down.0.bias": 0, "adapter_up.weight": 1}
    inner_label = "bottleneck"
    sites = ("adapter",)
    read_bias = "adapter_down.0.bias"
    options = AdapterOptions

    def check_arch(self, arch: Architecture, source: str) -> None:
        if not arch.has_adapters:
            raise TransmodError(
                f"{source}: the adapters library puts no bottleneck adapter in {arch.model_types[0]} layers, so transmod "
                f"moves none there; bottleneck adapters move between {', '.join(ADAPTER_MODEL_TYPES)} models, and on "
                f"{arch.model_types[0]} transmod moves peft LoRAs (--peft lora)"
            )

    def site_paths(self, arch: Architecture) -> dict[str, str]:
        self.check_arch(arch, arch.model_types[0])
        return {"adapter": arch.adapter_site}

    def matches(self, section: dict[str, Any]) -> bool:
        return section.get("architecture") != "lora" and "reduction_factor" in section

    def check_config(self, section: dict[str, Any], source: str) -> None:
        bad = [k for k in ("mh_adapter", "phm_layer", "inv_adapter", "ln_before", "ln_after", "use_gating") if section.get(k)]
        if not section.get("output_adapter", True):
            bad.append("output_adapter false")
        if section.get("is_parallel"):
            bad.append("is_parallel (a parallel adapter reads the sub-layer's input, not its output)")
        if isinstance(section.get("reduction_factor"), dict):
            bad.append("per-layer reduction_factor")
        # Sampling reads the adapter's input at the output LayerNorm, which is where SeqBn/Pfeiffer places it.
        for key in ("original_ln_before", "residual_before_ln"):
            if section.get(key, True) is not True:
                bad.append(f"{key}={section[key]!r} (the adapter then reads another hidden state)")
        self.unsupported(bad, source)
        config_number(section, "reduction_factor", source, "positive", prefix="config.")
        config_number(section, "dropout", source, "fraction", prefix="config.", default=0.0)
        if not isinstance(section.get("scaling", 1.0), str):  # "learned"/"channel" scalings are weights
            config_number(section, "scaling", source, "finite", prefix="config.", default=1.0)

    def inner_size(self, section: dict[str, Any], hidden_size: int) -> tuple[int, str]:
        factor = section["reduction_factor"]
        want = int(hidden_size // factor)  # as `adapters` sizes the bottleneck
        return want, f"config.reduction_factor is {factor!r}, which gives a bottleneck of {want} at hidden size {hidden_size}"

    def hooks(self, layer: Any, arch: Architecture, l: int, spaces: tuple[str, ...], keep: Hook) -> list:
        self.check_arch(arch, arch.model_types[0])
        return [layer.get_submodule(arch.adapter_input).register_forward_hook(keep(f"adapter:h{l}", False))]

    def new_config(self, hidden_size: int, options: AdapterOptions) -> Any:
        import adapters

        return adapters.SeqBnConfig(reduction_factor=reduction_factor(hidden_size, options.bottleneck))

    def effect(self, w: Weights, section: dict[str, Any], h: np.ndarray, source: str) -> np.ndarray:
        scaling = section.get("scaling", 1.0)
        if not isinstance(scaling, (int, float)):
            raise TransmodError(f"{source}: adapter scaling {scaling!r}; fidelity handles a fixed number")
        down = h @ w["adapter_down.0.weight"].T + w.get("adapter_down.0.bias", 0.0)
        return (_activation(section.get("non_linearity"), down) @ w["adapter_up.weight"].T
                + w.get("adapter_up.bias", 0.0)) * scaling

    def for_student(self, section: dict[str, Any], teacher_hidden: int, student_hidden: int) -> None:
        section["reduction_factor"] = reduction_factor(student_hidden, int(teacher_hidden // section["reduction_factor"]))


def _activation(name: str | None, x: Any) -> Any:
    """The adapters library's activation (transformers' functions), on a float64 array (fidelity) or on a tensor
    that keeps its gradient (healing, `transmod.align.healing`)."""
    if name is None:
        return x
    import torch
    from transformers.activations import get_activation

    f = torch.nn.functional.leaky_relu if name.lower() == "leakyrelu" else get_activation(name.lower())
    if isinstance(x, torch.Tensor):
        return f(x)
    with torch.no_grad():
        return f(torch.from_numpy(x)).numpy()
