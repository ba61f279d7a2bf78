"""The hyper-parameters of one training run, validated with errors that name the option."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from transmod.errors import TransmodError
from transmod.modules.kind import Options
from transmod.modules.kinds import get_kind


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (defaults: docs/method.md, section 9); all of them go into the metrics file."""

    learning_rate: float = 1e-5
    batch_size: int = 16
    epochs: int = 10
    max_length: int = 128
    seed: int = 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    checkpoint_every: int = 0  # optimizer steps between resume checkpoints; 0 = only at epoch ends
    eval_batch_size: int = 64
    max_grad_norm: float = 1.0  # gradient clipping; 0 turns it off
    mega_batches: int = 50  # batches per length-sorting group of the batch sampler
    freeze_module: bool = False  # zero-shot transfer: only the head learns, the module stays as loaded
    patience: int = 0  # stop after this many epochs without a better validation metric; 0 = every epoch
    # a fresh module's options by kind, as the config's `modules` holds them (each kind's `Options` reads its own)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the training config") -> TrainConfig:
        """Build from a config mapping (e.g. YAML), converting numbers given as strings such as '1e-5'."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise TransmodError(
                f"{source}: unknown training option(s) {', '.join(unknown)}; known options are {', '.join(known)}"
            )
        cfg = cls(**{name: value if name == "modules" else _convert(value, _kind(known[name].type))
                     for name, value in values.items()})
        cfg.validate(source)
        return cfg

    def hyper(self) -> dict[str, Any]:
        """What the run's result depends on: every setting but the checkpoint interval, which a resumed
        run may change (checkpoints save exact positions, so any interval resumes the same run)."""
        return {k: v for k, v in asdict(self).items() if k != "checkpoint_every"}

    def validate(self, source: str = "the training config") -> None:
        """Every option of its type, finite and in its range: the library does not trust its caller to have checked."""
        if not isinstance(self.modules, dict):
            raise TransmodError(f"{source}: option modules must map module kinds to their options, got {self.modules!r}")
        for peft in self.modules:
            self.module_options(peft, source)
        for f in fields(self):
            if f.name == "modules":
                continue
            value, kind = getattr(self, f.name), _kind(f.type)
            if type(value) is not kind and not (kind is float and type(value) is int):
                raise TransmodError(f"{source}: option {f.name}={value!r} must be {_WORDS[kind]}")
            if kind is not bool and not (math.isfinite(value) and _RANGES[f.name][1](value)):
                raise TransmodError(f"{source}: option {f.name} must be {_WORDS[kind]} {_RANGES[f.name][0]}, "
                                    f"got {value!r}")

    def module_options(self, peft: str, source: str = "the training config") -> Options:
        """The options of a fresh `peft` module: its `modules` entry over the kind's defaults, checked."""
        return get_kind(peft, "peft").options.from_dict(self.modules.get(peft, {}), f"{source}: modules.{peft}")


_WORDS = {bool: "true or false", int: "a whole number", float: "a finite number"}
# every number option: its range in words, and the test of it
_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "learning_rate": ("above 0", lambda v: v > 0),
    "batch_size": ("at least 1", lambda v: v >= 1),
    "epochs": ("at least 1", lambda v: v >= 1),
    "max_length": ("at least 8", lambda v: v >= 8),
    "seed": ("in [0, 2**32)", lambda v: 0 <= v < 2**32),  # the batch order reads it modulo 2**32
    "weight_decay": ("at least 0", lambda v: v >= 0),
    "warmup_ratio": ("in [0, 1)", lambda v: 0 <= v < 1),
    "checkpoint_every": ("at least 0", lambda v: v >= 0),
    "eval_batch_size": ("at least 1", lambda v: v >= 1),
    "max_grad_norm": ("at least 0", lambda v: v >= 0),
    "mega_batches": ("at least 1", lambda v: v >= 1),
    "patience": ("at least 0", lambda v: v >= 0),
}


def _kind(annotation: Any) -> type:
    """A field's type (annotations are strings under `from __future__ import annotations`)."""
    return {"bool": bool, "int": int, "float": float}[annotation] if isinstance(annotation, str) else annotation


def _convert(value: Any, kind: type) -> Any:
    """A config value as the option's type where it spells one: numbers may come as strings ('1e-5', '2'),
    a whole float is an int (2.0); anything else stays as given, for `validate` to refuse naming the option."""
    if isinstance(value, str) and kind is not bool:
        value = _number(value)
    if kind is float and type(value) is int:
        return float(value)
    if kind is int and type(value) is float and value.is_integer():
        return int(value)
    return value


def _number(text: str) -> int | float | str:
    """The int ('12', every digit kept) or float ('1e-5') a string spells; the string where it spells neither."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text
