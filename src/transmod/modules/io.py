"""Read a module folder in either format, and write a transferred one in the format asked for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transmod.errors import TransmodError, read_json
from transmod.modules.adapters_format import read_adapters_module, save_module
from transmod.modules.architectures import ModelShape
from transmod.modules.kind import ModuleKind
from transmod.modules.module import CONFIG_NAME, Module
from transmod.modules.peft_format import read_peft_module, save_peft_module

MODULE_FORMATS = ("adapters", "peft")


def check_format(fmt: str) -> str:
    if fmt not in MODULE_FORMATS:
        raise TransmodError(f"unknown --format {fmt!r}: use one of {', '.join(MODULE_FORMATS)}")
    return fmt


def check_writable(kind: ModuleKind, fmt: str, source: str | Path) -> str:
    """Refuse, before any work, a format that cannot hold the module's kind (peft's holds LoRA only)."""
    if check_format(fmt) == "peft" and kind.peft_type is None:
        raise TransmodError(f"{source}: --format peft writes LoRA modules only, and this one is a {kind.label}")
    return fmt


def read_module(path: str | Path, teacher: ModelShape) -> Module:
    """A module folder saved by `adapters` (save_adapter) or by `peft` (save_pretrained), for this teacher."""
    path = Path(path)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise TransmodError(f"{path}: no {CONFIG_NAME}; give a folder written by adapters' save_adapter "
                            "or peft's save_pretrained")
    config = read_json(config_file, "save the module again with adapters' save_adapter (or peft's save_pretrained)")
    if not isinstance(config, dict):
        raise TransmodError(f"{config_file}: not a module config (a JSON object); save the module again")
    if "peft_type" in config:
        return read_peft_module(path, config, teacher)
    return read_adapters_module(path, config, teacher)


def write_module(
    moved: Module, source: Module, student: ModelShape, out: str | Path, fmt: str = "adapters",
    *, overwrite: bool = False, inputs: Sequence[str | Path] = (),
) -> None:
    """Write a transferred module (`moved`, read from `source`) for the student in adapters' or peft's layout."""
    if check_writable(moved.spec, fmt, source.path) == "peft":
        save_peft_module(moved.weights, source, student, out, moved.config["transmod"], overwrite=overwrite,
                         inputs=inputs)
    else:
        save_module(moved.weights, moved.config, student, out, overwrite=overwrite, inputs=inputs)
