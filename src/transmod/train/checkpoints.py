"""Resume checkpoints: trainable weights, optimizer moments, RNG states and progress, so that a killed
run started again ends with the same bytes as an uninterrupted one."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transmod.atomic import atomic_path
from transmod.errors import TransmodError

_STATE_VERSION = 1


@dataclass
class Progress:
    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    train_seconds: float = 0.0  # in optimizer steps so far, resumed runs too (the tables' seconds to match)
    epoch_seconds: list | None = None  # train_seconds at the end of each epoch (TIMING_FILE)
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list | None = None

    def __post_init__(self) -> None:
        if self.history is None:
            self.history = []
        if self.epoch_seconds is None:
            self.epoch_seconds = []


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    np_state = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors (safetensors) plus JSON, so loading never unpickles anything."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = flat.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def latest_checkpoint(state_dir: Path) -> Path | None:
    latest = state_dir / "LATEST"
    if latest.is_file():
        candidate = state_dir / latest.read_text().strip()
        if (candidate / "state.json").is_file():
            return candidate
    done = sorted((p for p in state_dir.glob("step-*") if (p / "state.json").is_file()), key=lambda p: p.name)
    return done[-1] if done else None


def save_checkpoint(
    state_dir: Path,
    named: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    progress: Progress,
    best_state: dict[str, torch.Tensor] | None,
    fingerprint: dict,
) -> None:
    """Write step-N/ whole (temp dir + rename), point LATEST at it (atomic), then drop older ones."""
    from safetensors.torch import save_file

    state_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{progress.global_step:09d}-e{progress.epoch:04d}"
    with atomic_path(state_dir / name, is_dir=True) as tmp:
        save_file({n: p.detach().cpu().contiguous() for n, p in named}, str(tmp / "trainable.safetensors"))
        if best_state is not None:
            save_file(best_state, str(tmp / "best.safetensors"))
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_tensors, rng_meta = _rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        state = {"version": _STATE_VERSION, "fingerprint": fingerprint, "progress": asdict(progress),
                 "optimizer": opt_meta, "rng": rng_meta,
                 "scaler": scaler.state_dict() if scaler is not None else None}
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    with atomic_path(state_dir / "LATEST") as tmp:
        tmp.write_text(name, encoding="utf-8")
    for old in state_dir.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    ckpt: Path,
    named: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    fingerprint: dict,
) -> tuple[Progress, dict[str, torch.Tensor] | None]:
    from safetensors.torch import load_file

    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise TransmodError(f"{ckpt}/state.json: unreadable checkpoint; delete {ckpt.parent} to start over") from None
    if state.get("version") != _STATE_VERSION or state.get("fingerprint") != fingerprint:
        saved = state.get("fingerprint") or {}
        differ = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k)) or ["version"]
        raise TransmodError(
            f"{ckpt.parent}: checkpoint of a different run (differs in {', '.join(differ)}); "
            f"delete {ckpt.parent} to start this run over"
        )
    weights = load_file(str(ckpt / "trainable.safetensors"))
    if set(weights) != {n for n, _ in named}:
        raise TransmodError(f"{ckpt}: checkpoint weights do not match the model; delete {ckpt.parent} to start over")
    with torch.no_grad():
        for n, p in named:
            p.copy_(weights[n])
    best = load_file(str(ckpt / "best.safetensors")) if (ckpt / "best.safetensors").is_file() else None
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(ckpt / "optimizer.safetensors")), state["optimizer"]))
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(load_file(str(ckpt / "rng.safetensors")), state["rng"])
    return Progress(**state["progress"]), best
