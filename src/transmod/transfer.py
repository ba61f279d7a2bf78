"""Prune & align: turn a teacher's module into a student-shaped one (layer mapping + permutation).

Reads and writes modules in the `adapters` library's own folder format (adapter_config.json plus
weights), with the weights written as safetensors; LoRAs saved by Hugging Face `peft` are read and
written too (`transmod.peft_format`). Alignments other than the study's permutation
(`transmod.alignment`) are folded into the same weights.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from transmod.architectures import Architecture, ModelShape, architecture
from transmod.assignment import Assignment
from transmod.atomic import check_output, new_output
from transmod.errors import TransmodError, load_safetensors, load_torch_bin, read_json
from transmod.layermap import layer_map

if TYPE_CHECKING:  # alignment pulls in the sample reader; transfer itself stays light
    from transmod.alignment import Alignment, LayerMap

CONFIG_NAME = "adapter_config.json"
SAFE_WEIGHTS_NAME = "adapter.safetensors"  # the adapters library's name for safetensors weights
BIN_WEIGHTS_NAME = "pytorch_adapter.bin"
LORA_B_ALIGNMENTS = ("study", "output")
FORMATS = ("adapters", "peft")
MODULE_KIND = "module"  # the output kind of a transferred module folder (transmod.atomic)

# Which axis of each parameter runs along a hidden space, and whether it reads ("in") or writes ("out").
# Parameters absent here do not touch the hidden size (e.g. the bottleneck bias) and are copied.
_HIDDEN_AXES: dict[str, tuple[int, str]] = {
    "adapter_down.0.weight": (1, "in"),
    "adapter_up.weight": (0, "out"),
    "adapter_up.bias": (0, "out"),
    "lora_A": (1, "in"),
    "lora_B": (0, "out"),
}
_PLAIN = {"adapter_down.0.bias"}
SITES = ("adapter", "query", "value")


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


def _site_paths(arch: Architecture) -> dict[str, str]:
    return {"adapter": f"{arch.adapter_site}", "query": f"{arch.query}.loras", "value": f"{arch.value}.loras"}


def _check_supported(config: dict, source: Path) -> None:
    cfg = config.get("config")
    if not isinstance(cfg, dict):
        raise TransmodError(f"{source}/{CONFIG_NAME}: no `config` section; save the module with adapters' save_adapter")
    if cfg.get("architecture") == "lora":
        bad = [k for k in ("intermediate_lora", "output_lora", "use_dora", "use_gating") if cfg.get(k)]
        if not cfg.get("selfattn_lora", True) or not set(cfg.get("attn_matrices", [])) <= {"q", "v"}:
            bad.append("attn_matrices other than q, v")
        kind = "LoRA on self-attention query/value"
    elif "reduction_factor" in cfg:
        bad = [k for k in ("mh_adapter", "phm_layer", "inv_adapter", "ln_before", "ln_after", "use_gating") if cfg.get(k)]
        if not cfg.get("output_adapter", True):
            bad.append("output_adapter false")
        if isinstance(cfg.get("reduction_factor"), dict):
            bad.append("per-layer reduction_factor")
        # Sampling reads the adapter's input at the output LayerNorm, which is where SeqBn/Pfeiffer places it.
        for key in ("original_ln_before", "residual_before_ln"):
            if cfg.get(key, True) is not True:
                bad.append(f"{key}={cfg[key]!r} (the adapter then reads another hidden state)")
        kind = "bottleneck output adapters (Pfeiffer / SeqBnConfig)"
    else:
        raise TransmodError(f"{source}/{CONFIG_NAME}: not a bottleneck adapter or LoRA config; transmod moves those two")
    if bad:
        raise TransmodError(f"{source}/{CONFIG_NAME}: unsupported module options {', '.join(bad)}; transmod supports {kind}")


def read_module(path: str | Path, teacher: ModelShape) -> Module:
    """Read a module folder saved by `adapters` (safetensors, or .bin with weights_only=True)."""
    path = Path(path)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise TransmodError(f"{path}: no {CONFIG_NAME}; give a folder written by adapters' save_adapter")
    config = read_json(config_file, "save the module again with adapters' save_adapter (or peft's save_pretrained)")
    if not isinstance(config, dict):
        raise TransmodError(f"{config_file}: not a module config (a JSON object); save the module again")
    if "peft_type" in config:
        from transmod.peft_format import read_peft_module

        return read_peft_module(path, config, teacher)
    _check_supported(config, path)
    fix = "save the module again with adapters' save_adapter"
    if (path / SAFE_WEIGHTS_NAME).is_file():
        state = load_safetensors(path / SAFE_WEIGHTS_NAME, fix)
    elif (path / BIN_WEIGHTS_NAME).is_file():
        state = load_torch_bin(path / BIN_WEIGHTS_NAME, fix)
    else:
        raise TransmodError(f"{path}: no weights ({SAFE_WEIGHTS_NAME} or {BIN_WEIGHTS_NAME}); save the module with its weights")
    arch = teacher.arch
    if config.get("model_type") and architecture(config["model_type"], str(config_file)) != arch:
        raise TransmodError(
            f"{config_file}: the module was saved for a {config['model_type']} model, but the teacher "
            f"{teacher.name} is {teacher.model_type}; give the teacher the module was trained on"
        )
    pattern = re.compile(
        rf"(?:^|\.){re.escape(arch.layers_path)}\.(\d+)\.("
        + "|".join(re.escape(p) for p in _site_paths(arch).values())
        + r")\.[^.]+\.(.+)$"
    )
    site_of = {p: s for s, p in _site_paths(arch).items()}
    weights: dict[tuple[int, str, str], np.ndarray] = {}
    for key, tensor in state.items():
        match = pattern.search(key)
        if match is None or (match.group(3) not in _HIDDEN_AXES and match.group(3) not in _PLAIN):
            raise TransmodError(f"{path}: unexpected weight {key!r} for a {teacher.model_type} module; transmod cannot map it")
        weights[(int(match.group(1)), site_of[match.group(2)], match.group(3))] = tensor
    if not weights:
        raise TransmodError(f"{path}: the weights file holds no module weights")
    missing = sorted(l for l in {l for l, _, _ in weights} if l >= teacher.num_layers)
    if missing:
        raise TransmodError(
            f"{path}: the module has layers {missing} but the teacher {teacher.name} has only "
            f"{teacher.num_layers} layers; give the teacher the module was trained on"
        )
    module = Module(path, config, weights)
    width = {t.shape[axis] for (_, _, p), t in weights.items() if p in _HIDDEN_AXES for axis in [_HIDDEN_AXES[p][0]]}
    if width != {teacher.hidden_size}:
        raise TransmodError(
            f"{path}: module weights are {sorted(width)} wide but the teacher {teacher.name} has hidden size "
            f"{teacher.hidden_size}; give the teacher the module was trained on"
        )
    return module


def _space(site: str, direction: str, lora_b: str) -> str:
    if direction == "in" or site == "adapter" or lora_b == "study":
        return "h"
    return "q" if site == "query" else "v"


def transfer_weights(
    module: Module,
    teacher: ModelShape,
    student: ModelShape,
    mapping: str,
    assignment: Assignment | None = None,
    lora_b: str = "study",
    alignment: Alignment | None = None,
) -> dict[tuple[int, str, str], np.ndarray]:
    """Map layers (SKIP copies, AVG averages a group) and prune/permute every hidden-size axis.

    With no assignment or alignment the widths must agree and the permutation is the identity.
    An alignment's maps are folded in after the layer mapping (see `transmod.alignment`).
    """
    if lora_b not in LORA_B_ALIGNMENTS:
        raise TransmodError(f"unknown --lora-b {lora_b!r}: use one of {', '.join(LORA_B_ALIGNMENTS)}")
    if assignment is not None and alignment is not None:
        raise TransmodError("give an assignment or an alignment, not both")
    groups = layer_map(mapping, teacher.num_layers, student.num_layers)
    if assignment is None and alignment is None and teacher.hidden_size != student.hidden_size:
        raise TransmodError(
            f"{teacher.name} ({teacher.hidden_size} dims) and {student.name} ({student.hidden_size} dims) differ in "
            "width: give --samples (to align on the way) or --assignment"
        )
    params = sorted({(site, param) for _, site, param in module.weights})
    out: dict[tuple[int, str, str], np.ndarray] = {}
    for l, group in enumerate(groups):
        present = [t for t in group if t in module.layers]
        for site, param in params:
            tensors = [module.weights[(t, site, param)] for t in present if (t, site, param) in module.weights]
            if not tensors:
                continue
            tensor = tensors[0].copy() if len(tensors) == 1 else np.mean(tensors, axis=0, dtype=np.float64).astype(tensors[0].dtype)
            if param in _HIDDEN_AXES and assignment is not None:
                axis, direction = _HIDDEN_AXES[param]
                space = _space(site, direction, lora_b)
                sigma = assignment.sigma(l, space)
                if sigma is None:
                    raise TransmodError(
                        f"the assignment has no {space!r} space for student layer {l}; "
                        + ("sample with --lora-outputs for --lora-b output" if space != "h" else "recompute it")
                    )
                tensor = np.take(tensor, sigma, axis=axis)
            out[(l, site, param)] = np.ascontiguousarray(tensor)
    return out if alignment is None else _fold(out, alignment, lora_b)


def _fold(mapped: dict[tuple[int, str, str], np.ndarray], alignment: Alignment, lora_b: str) -> dict[tuple[int, str, str], np.ndarray]:
    """Fold each layer's maps into the layer-mapped teacher weights (reads: W M_in, writes: M_out W)."""

    def maps(l: int, space: str) -> LayerMap:
        lm = alignment.get(l, space)
        if lm is None:
            raise TransmodError(
                f"the {alignment.method} alignment has no {space!r} space for student layer {l}; "
                + ("sample with --lora-outputs for --lora-b output" if space != "h" else "refit it")
            )
        return lm

    out = {}
    for (l, site, param), tensor in mapped.items():
        if param == "adapter_down.0.bias":  # h_t ~ M_in h_s + c: the offset moves into the bottleneck bias
            offset = maps(l, "h").offset
            down = mapped[(l, site, "adapter_down.0.weight")]
            if offset is not None:
                tensor = (tensor + np.asarray(down, np.float64) @ offset).astype(tensor.dtype)
        elif param in _HIDDEN_AXES:
            _, direction = _HIDDEN_AXES[param]
            lm = maps(l, _space(site, direction, lora_b))
            tensor = lm.read(tensor) if direction == "in" else lm.write(tensor)
        out[(l, site, param)] = np.ascontiguousarray(tensor)
    return out


def student_config(module: Module, teacher: ModelShape, student: ModelShape, kept_layers: set[int], provenance: dict) -> dict:
    """The module's config rewritten for the student: same bottleneck or rank, the student's names."""
    config = copy.deepcopy(module.config)
    cfg = config["config"]
    if module.kind == "adapter":
        bottleneck = int(teacher.hidden_size // cfg["reduction_factor"])
        factor = student.hidden_size / bottleneck
        if int(student.hidden_size // factor) != bottleneck:
            factor = student.hidden_size / (bottleneck + 0.5)  # floor(hidden / factor) == bottleneck exactly
        cfg["reduction_factor"] = int(factor) if float(factor).is_integer() else factor
    cfg["leave_out"] = sorted(set(range(student.num_layers)) - kept_layers)
    config.update(
        hidden_size=student.hidden_size, model_type=student.model_type, model_class=student.model_class,
        model_name=student.name, transmod=provenance,
    )
    return config


def save_module(
    weights: dict[tuple[int, str, str], np.ndarray], config: dict, student: ModelShape, out: str | Path,
    *, overwrite: bool = False, inputs: Sequence[str | Path] = (),
) -> None:
    """Write the module in the adapters library's layout for the student (keys as its base model names them).

    The weights go to both files adapters reads: safetensors, and `pytorch_adapter.bin` (plain tensors,
    which adapters loads with weights_only=True), so that the documented `model.load_adapter(out)` works."""
    import torch
    from safetensors.numpy import save_file

    arch = student.arch
    paths = _site_paths(arch)
    name = config.get("name") or "transferred"
    state = {f"{arch.layers_path}.{l}.{paths[site]}.{name}.{param}": t for (l, site, param), t in weights.items()}
    with new_output(out, MODULE_KIND, inputs=inputs, overwrite=overwrite, is_dir=True) as tmp:
        save_file(state, str(tmp / SAFE_WEIGHTS_NAME))
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, tmp / BIN_WEIGHTS_NAME)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))


def transfer(
    module: Module,
    teacher: ModelShape,
    student: ModelShape,
    mapping: str,
    assignment: Assignment | None = None,
    lora_b: str = "study",
    alignment: Alignment | None = None,
) -> Module:
    """The student-shaped module, in memory: weights mapped and aligned, config rewritten for the student."""
    source = str(module.path)
    if assignment is not None:
        assignment.check_models(teacher, student, mapping, "the assignment")
    if alignment is not None:
        alignment.check_models(teacher, student, mapping, "the alignment")
        if alignment.hook is not None and alignment.hook != module.kind:
            raise TransmodError(
                f"the alignment was fitted on {alignment.hook} samples but {source} is a {module.kind} module; "
                f"fit it on samples taken with --peft {module.kind}"
            )
    weights = transfer_weights(module, teacher, student, mapping, assignment, lora_b, alignment)
    method = alignment.method if alignment is not None else "lsa" if assignment is not None else None
    provenance = {"teacher": teacher.name, "student": student.name, "mapping": mapping,
                  "aligned": assignment is not None or alignment is not None, "align": method,
                  "lora_b": lora_b if module.kind == "lora" else None}
    config = student_config(module, teacher, student, {l for l, _, _ in weights}, provenance)
    return Module(module.path, config, weights)


def transfer_module(
    module_dir: str | Path,
    teacher: ModelShape,
    student: ModelShape,
    mapping: str,
    out: str | Path,
    assignment: Assignment | None = None,
    lora_b: str = "study",
    alignment: Alignment | None = None,
    fmt: str = "adapters",
    *,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
) -> Module:
    """Read, transfer and save a module (`fmt`: adapters' or peft's layout); returns the teacher module read.

    `out` must be new, or an earlier transferred module with `overwrite`; it may not touch `inputs`, the
    module or the models (`transmod.atomic.check_output`)."""
    if fmt not in FORMATS:
        raise TransmodError(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
    inputs = [module_dir, teacher.name, student.name, *inputs]
    check_output(out, MODULE_KIND, inputs, overwrite)
    module = read_module(module_dir, teacher)
    if fmt == "peft" and module.kind != "lora":
        raise TransmodError(f"{module_dir}: --format peft writes LoRA modules only, and this one is a bottleneck adapter")
    moved = transfer(module, teacher, student, mapping, assignment, lora_b, alignment)
    if fmt == "peft":
        from transmod.peft_format import save_peft_module

        save_peft_module(moved.weights, module, student, out, moved.config["transmod"], overwrite=overwrite, inputs=inputs)
    else:
        save_module(moved.weights, moved.config, student, out, overwrite=overwrite, inputs=inputs)
    return module
