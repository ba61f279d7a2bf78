"""Modules in the `adapters` library's folder format: adapter_config.json plus weights.

Read from safetensors (or a legacy `pytorch_adapter.bin` with weights_only=True); written as both, so
that the documented `model.load_adapter(folder)` works.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transmod.atomic import new_output
from transmod.errors import TransmodError, load_safetensors, load_torch_bin
from transmod.modules.architectures import ModelShape, architecture
from transmod.modules.kind import ModuleKind, check_tensor
from transmod.modules.kinds import KINDS, kind_of
from transmod.modules.module import CONFIG_NAME, MODULE_KIND, Module

SAFE_WEIGHTS_NAME = "adapter.safetensors"  # the adapters library's name for safetensors weights
BIN_WEIGHTS_NAME = "pytorch_adapter.bin"


def _kind(config: dict, source: Path) -> ModuleKind:
    """The module's kind, with every option transmod would not move refused by name."""
    section = config.get("config")
    if not isinstance(section, dict):
        raise TransmodError(f"{source}/{CONFIG_NAME}: no `config` section; save the module with adapters' save_adapter")
    kind = kind_of(section)
    if kind is None:
        raise TransmodError(f"{source}/{CONFIG_NAME}: not a {' or '.join(k.label for k in KINDS.values())} config; "
                            "transmod moves those")
    kind.check_config(section, f"{source}/{CONFIG_NAME}")
    return kind


def read_adapters_module(path: Path, config: dict, teacher: ModelShape) -> Module:
    """Read a module folder saved by `adapters` (safetensors, or .bin with weights_only=True)."""
    config_file = path / CONFIG_NAME
    kind = _kind(config, path)
    fix = "save the module again with adapters' save_adapter"
    if (path / SAFE_WEIGHTS_NAME).is_file():
        weights_file = path / SAFE_WEIGHTS_NAME
        state = load_safetensors(weights_file, fix)
    elif (path / BIN_WEIGHTS_NAME).is_file():
        weights_file = path / BIN_WEIGHTS_NAME
        state = load_torch_bin(weights_file, fix)
    else:
        raise TransmodError(f"{path}: no weights ({SAFE_WEIGHTS_NAME} or {BIN_WEIGHTS_NAME}); save the module with its weights")
    arch = teacher.arch
    if config.get("model_type") and architecture(config["model_type"], str(config_file)) != arch:
        raise TransmodError(
            f"{config_file}: the module was saved for a {config['model_type']} model, but the teacher "
            f"{teacher.name} is {teacher.model_type}; give the teacher the module was trained on"
        )
    kind.check_arch(arch, str(path))
    pattern = re.compile(
        rf"(?:^|\.){re.escape(arch.layers_path)}\.(\d+)\.("
        + "|".join(re.escape(p) for p in kind.site_paths(arch).values())
        + r")\.[^.]+\.(.+)$"
    )
    site_of = {p: s for s, p in kind.site_paths(arch).items()}
    weights: dict[tuple[int, str, str], np.ndarray] = {}
    for key, tensor in state.items():
        match = pattern.search(key)
        if match is None or (match.group(3) not in kind.hidden_axes and match.group(3) not in kind.plain):
            raise TransmodError(f"{path}: unexpected weight {key!r} for a {teacher.model_type} module; transmod cannot map it")
        check_tensor(tensor, kind.ndim(match.group(3)), weights_file, key)
        weights[(int(match.group(1)), site_of[match.group(2)], match.group(3))] = tensor
    if not weights:
        raise TransmodError(f"{path}: the weights file holds no module weights")
    missing = sorted(l for l in {l for l, _, _ in weights} if l >= teacher.module_layers)
    if missing:
        raise TransmodError(
            f"{path}: the module has layers {missing} but the teacher {teacher.name} has only "
            f"{teacher.module_layers} layers; give the teacher the module was trained on"
        )
    module = Module(path, config, weights)
    width = {t.shape[kind.hidden_axes[p][0]] for (_, _, p), t in weights.items() if p in kind.hidden_axes}
    if width != {teacher.hidden_size}:
        raise TransmodError(
            f"{path}: module weights are {sorted(width)} wide but the teacher {teacher.name} has hidden size "
            f"{teacher.hidden_size}; give the teacher the module was trained on"
        )
    kind.check_weights(config["config"], weights, teacher.hidden_size, config_file, weights_file)
    return module


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
    paths = kind_of(config["config"]).site_paths(arch)
    name = config.get("name") or "transferred"
    state = {f"{arch.layers_path}.{l}.{paths[site]}.{name}.{param}": np.ascontiguousarray(t)  # safetensors.numpy
             for (l, site, param), t in weights.items()}  # writes a non-contiguous array's buffer in memory order
    with new_output(out, MODULE_KIND, inputs=inputs, overwrite=overwrite, is_dir=True) as tmp:
        save_file(state, str(tmp / SAFE_WEIGHTS_NAME))
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp / BIN_WEIGHTS_NAME)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))


