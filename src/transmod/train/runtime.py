"""Where and how the loop runs: seeds, threads, device and precision, progress lines, the loss, the
optimizer and its schedule, and predictions."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from transmod import environment
from transmod.errors import TransmodError
from transmod.train.batching import (
    Example,
    collate,
    length,
    sorted_batches,
)
from transmod.train.config import TrainConfig
from transmod.train.tasks import Task, get_task

LOG_EVERY_S = 60.0


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(threads: int | None = None) -> None:
    """Use `threads` CPU threads (or $TRANSMOD_THREADS); cluster jobs get exactly what they asked for."""
    if threads is None:
        threads = environment.count(environment.THREADS)
    if threads is not None:
        if threads < 1:
            raise TransmodError(f"threads must be positive, got {threads}")
        torch.set_num_threads(threads)
        os.environ.setdefault("RAYON_RS_NUM_CPUS", str(threads))  # the fast tokenizer's thread pool


CPU_BF16_MIN_WIDTH = 256


@dataclass
class Device:
    """Where to run and how: mixed precision wherever the hardware multiplies in it natively: CUDA (bf16,
    else fp16 with loss scaling; TF32) and CPUs with AMX tiles (bf16: a 768-wide matmul ~5x an fp32 one)
    for models at least `CPU_BF16_MIN_WIDTH` wide (narrower ones gain little and learn worse); fp32
    elsewhere, and everywhere with TRANSMOD_FP32 on (to reproduce a run across hardware)."""

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def pick(cls, width: int = 0) -> "Device":
        """`width`: the model's hidden size."""
        fp32 = environment.switch(environment.FP32)
        if not torch.cuda.is_available():
            amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
            bf16 = amx and width >= CPU_BF16_MIN_WIDTH and not fp32
            return cls(torch.device("cpu"), torch.bfloat16 if bf16 else None)
        if fp32:
            return cls(torch.device("cuda"), None)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return cls(torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    @property
    def precision(self) -> str:
        if self.dtype is None:
            return "fp32"
        if self.device.type == "cpu":
            return "bf16 autocast (AMX)"
        tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
        return f"{'bf16' if self.dtype == torch.bfloat16 else 'fp16'} autocast, TF32 {tf32}"

    def environment(self) -> dict[str, str]:
        """What produced a run's numbers: device, precision and the versions of the libraries that train."""
        from importlib.metadata import version

        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"device": name, "precision": self.precision,
                **{lib: version(lib) for lib in ("torch", "transformers", "adapters", "transmod")}}

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


@dataclass
class Clock:
    """Throughput and time left of a training run, for its progress lines."""

    start_step: int
    total_steps: int
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    last: float = field(default_factory=time.perf_counter)

    def due(self) -> bool:
        now = time.perf_counter()
        if now - self.last < LOG_EVERY_S:
            return False
        self.last = now
        return True

    def status(self, step: int, lr: float) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        done = max(step - self.start_step, 1)
        eta = elapsed / done * (self.total_steps - step)
        return (f"step {step}/{self.total_steps}, lr {lr:.2e}, {self.tokens / elapsed:,.0f} tokens/s, "
                f"elapsed {elapsed:.1f} s, ETA {eta:.1f} s")


def input_keys(model: torch.nn.Module) -> tuple[str, ...]:
    """Which encoded inputs the model reads: no token types for DistilBERT or single-type models (XLM-R)."""
    import inspect

    keys = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters and getattr(
        model.config, "type_vocab_size", 2
    ) > 1:
        keys.append("token_type_ids")
    return tuple(keys)


def model_inputs(keys: Sequence[str], batch: dict[str, torch.Tensor], device: torch.device) -> dict:
    return {k: batch[k].to(device, non_blocking=True) for k in keys if k in batch}


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions (float32 even under autocast; 0 if none is labelled)."""
    logits = logits.float().reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    count = (labels != -100).sum().clamp(min=1)
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum") / count


def predict(
    model: torch.nn.Module,
    examples: Sequence[Example],
    task: Task | str,
    labels: Sequence[str],
    batch_size: int,
    pad_token_id: int,
    dev: Device | None = None,
) -> list:
    """Predictions in input order: label names per gold word (token tasks) or class ids.

    For token tasks, each word takes the prediction at its first sub-token; a word with no sub-token left
    (truncated away, or one the tokenizer drops) is predicted as outside ('O').
    """
    dev = dev or Device(next(model.parameters()).device, None)
    token = get_task(task).is_token
    outside = "O" if "O" in labels else labels[0]
    out: list = [None] * len(examples)
    was_training = model.training
    keys = input_keys(model)
    model.eval()
    with torch.inference_mode():
        for idx in sorted_batches([length(ex) for ex in examples], batch_size):
            batch = collate([examples[i] for i in idx], pad_token_id)
            with dev.autocast():
                logits = model(**model_inputs(keys, batch, dev.device)).logits
            best = logits.float().argmax(-1).cpu()
            for row, i in enumerate(idx):
                if token:
                    words = [outside] * examples[i]["num_words"]
                    for pos, w in enumerate(batch["word_ids"][row].tolist()):
                        if w >= 0:
                            words[w] = labels[int(best[row, pos])]
                    out[i] = words
                else:
                    out[i] = int(best[row])
    model.train(was_training)
    return out


def gold_labels(dataset: Any, task: Task | str, labels: Sequence[str]) -> list:
    """Gold labels in the predictions' format: label names per word (token tasks) or class ids."""
    spec = get_task(task)
    column = list(dataset[spec.label_column])
    if spec.is_token:
        return [[labels[t] for t in tags] for tags in column]
    return [int(v) for v in column]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then linear decay to 0 (as transformers' linear schedule), a pure function of the step."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def make_optimizer(named: list[tuple[str, torch.nn.Parameter]], cfg: TrainConfig) -> torch.optim.AdamW:
    no_decay = [p for n, p in named if n.endswith(".bias") or "LayerNorm" in n or "layer_norm" in n]
    ids = {id(p) for p in no_decay}
    decay = [p for _, p in named if id(p) not in ids]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (one pass over all moments, CPU and CUDA) is what the Trainer's default optimizer uses too.
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, fused=True)
