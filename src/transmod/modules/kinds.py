"""The table of module kinds: one entry per kind (`transmod.modules.kind` says what an entry holds)."""

from __future__ import annotations

from typing import Any

from transmod.errors import TransmodError
from transmod.modules.adapter import BottleneckAdapter
from transmod.modules.kind import ModuleKind
from transmod.modules.lora import LoRA

# the CLI's --peft and the config's `peft` and `modules` read it when they are built, so an entry is all it takes
KINDS: dict[str, ModuleKind] = {kind.name: kind for kind in (BottleneckAdapter(), LoRA())}


def get_kind(name: str, option: str = "--peft") -> ModuleKind:
    if name not in KINDS:
        raise TransmodError(f"unknown {option} {name!r}: use one of {', '.join(KINDS)}")
    return KINDS[name]


def kind_of(section: Any) -> ModuleKind | None:
    """The kind an `adapters` config section describes, if any."""
    if not isinstance(section, dict):
        return None
    return next((kind for kind in KINDS.values() if kind.matches(section)), None)
