"""The hyper-parameters of one training run, validated with errors that name the option."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from transmod.errors import TransmodError


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (DESIGN.md section 5 defaults); all of them go into the metrics file."""

    learning_rate: float = 1e-5
    batch_size: int = 16
    epochs: int = 10
    max_length: int = 128
    seed: int = 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    adapter_bottleneck: int = 128  # same bottleneck for teacher and student: reduction = hidden / this
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    checkpoint_every: int = 0  # optimizer steps between resume checkpoints; 0 = only at epoch ends
    eval_batch_size: int = 64
    max_grad_norm: float = 1.0  # gradient clipping; 0 turns it off
    mega_batches: int = 50  # batches per length-sorting group of the batch sampler
    freeze_module: bool = False  # zero-shot transfer: only the head learns, the module stays as loaded
    patience: int = 0  # stop after this many epochs without a better validation metric; 0 = every epoch

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the training config") -> "TrainConfig":
        """Build from a config mapping (e.g. YAML), converting numbers given as strings such as '1e-5'."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise TransmodError(
                f"{source}: unknown training option(s) {', '.join(unknown)}; known options are {', '.join(known)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if known[name].type in ("bool", bool):
                if not isinstance(value, bool):
                    raise TransmodError(f"{source}: option {name}={value!r} must be true or false")
                kwargs[name] = value
                continue
            want = float if known[name].type in ("float", float) else int
            try:
                if want is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                kwargs[name] = want(float(value)) if want is int else want(value)
            except (TypeError, ValueError):
                raise TransmodError(f"{source}: option {name}={value!r} must be {want.__name__}") from None
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg

    def hyper(self) -> dict[str, Any]:
        """What the run's result depends on: every setting but the checkpoint interval, which a resumed
        run may change (checkpoints save exact positions, so any interval resumes the same run)."""
        return {k: v for k, v in asdict(self).items() if k != "checkpoint_every"}

    def validate(self, source: str = "the training config") -> None:
        positive = ("learning_rate", "batch_size", "epochs", "max_length", "adapter_bottleneck", "lora_r",
                    "lora_alpha", "eval_batch_size", "mega_batches")
        for name in positive:
            if not getattr(self, name) > 0:
                raise TransmodError(f"{source}: option {name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "checkpoint_every", "max_grad_norm", "patience"):
            if getattr(self, name) < 0:
                raise TransmodError(f"{source}: option {name} must not be negative, got {getattr(self, name)}")
        for name in ("warmup_ratio", "lora_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise TransmodError(f"{source}: option {name} must be in [0, 1), got {getattr(self, name)}")
        if self.max_length < 8:
            raise TransmodError(f"{source}: option max_length must be at least 8, got {self.max_length}")
