"""Train one PEFT module (+ a fresh classification head) on a frozen model; resumable and exact.

`train` is the whole job of `train_teacher` and `train_student` (DESIGN.md sections 3 and 5): it
builds the model with a fresh or a given (transferred) module, trains it with AdamW and a linear
schedule, keeps the best state by the validation metric, and writes everything that evaluation
needs, so the test metric is computed from files without a model.

Resumption is exact on CPU: the batch order is a pure function of (seed, epoch), and a checkpoint
holds the trainable weights, the optimizer moments, the RNG states and the progress counters, so a
killed job that is started again ends with the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from transmod.atomic import atomic_path
from transmod.errors import TransmodError
from transmod.hub import local_files_only
from transmod.modules.module import MODULE_KINDS
from transmod.train.batching import (
    DEFAULT_LABELS,
    LABEL_COLUMN,
    Example,
    check_task,
    collate,
    length,
    length_grouped_batches,
    sorted_batches,
)
from transmod.train.evaluation import PRIMARY_METRIC, score_lists
from transmod.train.tokencache import cached_encode

log = logging.getLogger(__name__)

ADAPTER_NAME = "task"  # the module's name inside the model; saved modules are loaded under it too
MODULE_DIR = "module"
HEAD_FILE = "head.safetensors"
HISTORY_FILE = "history.json"
PREDICTIONS_FILE = "test_predictions.json"
STATE_DIR = "train_state"
THREADS_ENV = "TRANSMOD_THREADS"
_HEAD_SEED_OFFSET = 7919  # the head's init stream: independent of how the module was initialised
_STATE_VERSION = 1
_MODULE_CONFIG = "adapter_config.json"
_MODULE_WEIGHTS = "adapter.safetensors"


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


# --------------------------------------------------------------------------------------------- model


@contextmanager
def _quiet_transformers():
    """Silence expected warnings: from_pretrained's 'newly initialized head', adapters' activation notes."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    adapters_logger = logging.getLogger("adapters")
    adapters_level = adapters_logger.level
    hf_logging.set_verbosity_error()
    adapters_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        adapters_logger.setLevel(adapters_level)


def reduction_factor(hidden_size: int, bottleneck: int) -> float | int:
    """The adapters library's reduction factor that gives exactly `bottleneck` (it uses hidden // factor)."""
    factor = hidden_size / bottleneck
    if int(hidden_size // factor) != bottleneck:
        factor = hidden_size / (bottleneck + 0.5)
    return int(factor) if float(factor).is_integer() else factor


def _check_peft(peft: str) -> None:
    if peft not in MODULE_KINDS:
        raise TransmodError(f"unknown peft {peft!r}: use one of {', '.join(MODULE_KINDS)}")


def _module_config(init_module: Path) -> dict:
    if not init_module.is_dir():
        raise TransmodError(f"{init_module}: no such module folder; give a folder written by save_adapter")
    if not (init_module / _MODULE_CONFIG).is_file():
        raise TransmodError(f"{init_module}: no {_MODULE_CONFIG}; give a folder written by adapters' save_adapter")
    if not (init_module / _MODULE_WEIGHTS).is_file():
        raise TransmodError(
            f"{init_module}: no {_MODULE_WEIGHTS}; transmod loads module weights as safetensors only "
            "(save with use_safetensors=True)"
        )
    try:
        return json.loads((init_module / _MODULE_CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TransmodError(f"{init_module / _MODULE_CONFIG}: not valid JSON ({exc}); save the module again") from None


def head_parameter_names(model: torch.nn.Module) -> list[str]:
    """Parameters outside the base model: the classification head (classifier, DistilBERT's pre_classifier)."""
    prefix = model.base_model_prefix + "."
    return [n for n, _ in model.named_parameters() if not n.startswith(prefix)]


def _check_mismatched(model: torch.nn.Module, mismatched: Sequence, source: str) -> None:
    """Only the head may be re-initialised for a different shape; a base weight that does not fit the
    model's config means a damaged or mislabelled checkpoint, and training on it would be silently wrong."""
    head = set(head_parameter_names(model))
    base = [k if isinstance(k, str) else k[0] for k in mismatched]
    base = [k for k in base if k not in head]
    if base:
        raise TransmodError(f"{source}: the weight {base[0]} does not have the shape its config.json gives"
                            f"{f' (and {len(base) - 1} more)' if len(base) > 1 else ''}; restore the model's files")


def build_model(
    model_path: str | os.PathLike,
    task: str,
    num_labels: int,
    peft: str,
    cfg: TrainConfig,
    init_module: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
) -> torch.nn.Module:
    """A frozen pre-trained model with one module named 'task' and a fresh trainable head; the module
    trains too unless `cfg.freeze_module`.

    The module is new (adapter: bottleneck `cfg.adapter_bottleneck`; LoRA: r/alpha on query and
    value) or loaded from `init_module` (adapters folder layout, safetensors), which must fill every
    module weight with nothing left over. The head is re-initialised from the seed on its own random
    stream, so a default and a transferred run of one seed start from the same head.
    """
    check_task(task)
    _check_peft(peft)
    import adapters
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    source = str(model_path)
    label_names = list(labels) if labels is not None else [str(i) for i in range(num_labels)]
    if len(label_names) != num_labels:
        raise TransmodError(f"{len(label_names)} label names given for {num_labels} labels; give one name per label")
    model_cls = AutoModelForTokenClassification if task == "ner" else AutoModelForSequenceClassification
    torch.manual_seed(cfg.seed)
    try:
        config = AutoConfig.from_pretrained(
            source, trust_remote_code=False, num_labels=num_labels, local_files_only=local_files_only(source),
            id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)},
        )
        with _quiet_transformers():
            # Mismatched sizes are allowed for a saved head of another label set; `_check_mismatched` refuses the rest.
            model, info = model_cls.from_pretrained(
                source, config=config, trust_remote_code=False, ignore_mismatched_sizes=True, dtype=torch.float32,
                local_files_only=local_files_only(source), output_loading_info=True,
            )
    except (OSError, ValueError) as exc:
        raise TransmodError(
            f"cannot load the model {source!r}: give a local model folder (config.json + weights) or a hub id "
            f"reachable from here ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    _check_mismatched(model, info.get("mismatched_keys", []), source)
    adapters.init(model)

    if init_module is None:
        if peft == "adapter":
            hidden = int(getattr(model.config, "hidden_size", None) or model.config.dim)
            module_cfg = adapters.SeqBnConfig(reduction_factor=reduction_factor(hidden, cfg.adapter_bottleneck))
        else:
            module_cfg = adapters.LoRAConfig(
                r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, attn_matrices=["q", "v"]
            )
        with _quiet_transformers():
            model.add_adapter(ADAPTER_NAME, config=module_cfg, set_active=True)
    else:
        _load_module(model, Path(init_module), peft)
    with _quiet_transformers():
        model.train_adapter(ADAPTER_NAME)
    head = set(head_parameter_names(model))
    if not head:
        raise TransmodError(f"{source}: the model has no classification head outside its base model")
    for name, param in model.named_parameters():
        if name in head:
            param.requires_grad_(True)
        elif param.requires_grad and (cfg.freeze_module or f".{ADAPTER_NAME}." not in name):
            param.requires_grad_(False)  # belt and braces: only the module (unless frozen) and the head learn
    head_modules = {n.rsplit(".", 1)[0] for n in head}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + _HEAD_SEED_OFFSET)
        for name in sorted(head_modules):
            model._init_weights(model.get_submodule(name))
    return model


def _load_module(model: torch.nn.Module, init_module: Path, peft: str) -> None:
    config = _module_config(init_module)
    section = config.get("config") if isinstance(config.get("config"), dict) else {}
    kind = "lora" if section.get("architecture") == "lora" else "adapter" if "reduction_factor" in section else None
    if kind != peft:
        raise TransmodError(
            f"{init_module / _MODULE_CONFIG}: holds a {kind or 'non adapter/LoRA'} module, but peft is {peft!r}; "
            "give a module of the run's peft type"
        )
    info: dict[str, list[str]] = {}
    try:
        with _quiet_transformers():
            model.load_adapter(str(init_module), load_as=ADAPTER_NAME, use_safetensors=True, set_active=True,
                               loading_info=info)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise TransmodError(
            f"{init_module}: cannot load the module into {model.config.model_type} ({str(exc).splitlines()[0]}); "
            "give a module saved for this model's architecture and width"
        ) from None
    missing, unexpected = info.get("missing_keys", []), info.get("unexpected_keys", [])
    if missing or unexpected:
        detail = "; ".join(
            f"{what} {len(keys)} keys (e.g. {keys[0]})" for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys
        )
        raise TransmodError(
            f"{init_module}: the module does not match the model ({detail}); give a module transferred to this model"
        )


# ------------------------------------------------------------------------------------------ running


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(threads: int | None = None) -> None:
    """Use `threads` CPU threads (or $TRANSMOD_THREADS); cluster jobs get exactly what they asked for."""
    if threads is None and os.environ.get(THREADS_ENV):
        try:
            threads = int(os.environ[THREADS_ENV])
        except ValueError:
            raise TransmodError(f"${THREADS_ENV}={os.environ[THREADS_ENV]!r} must be an integer") from None
    if threads is not None:
        if threads < 1:
            raise TransmodError(f"threads must be positive, got {threads}")
        torch.set_num_threads(threads)
        os.environ.setdefault("RAYON_RS_NUM_CPUS", str(threads))  # the fast tokenizer's thread pool


@dataclass
class _Device:
    """Where to run and how: bf16 (or fp16 with loss scaling) autocast and TF32 only on CUDA."""

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def pick(cls) -> "_Device":
        if not torch.cuda.is_available():
            return cls(torch.device("cpu"), None)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return cls(torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    @property
    def precision(self) -> str:
        if self.dtype is None:
            return "fp32"
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


LOG_EVERY_S = 60.0


@dataclass
class _Clock:
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


def _model_inputs(keys: Sequence[str], batch: dict[str, torch.Tensor], device: torch.device) -> dict:
    return {k: batch[k].to(device, non_blocking=True) for k in keys if k in batch}


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions (float32 even under autocast; 0 if none is labelled)."""
    logits = logits.float().reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    count = (labels != -100).sum().clamp(min=1)
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum") / count


def predict(
    model: torch.nn.Module,
    examples: Sequence[Example],
    task: str,
    labels: Sequence[str],
    batch_size: int,
    pad_token_id: int,
    dev: _Device | None = None,
) -> list:
    """Predictions in input order: label names per gold word (ner) or class ids (pi/nli).

    For ner, each word takes the prediction at its first sub-token; a word with no sub-token left
    (truncated away, or one the tokenizer drops) is predicted as outside ('O').
    """
    dev = dev or _Device(next(model.parameters()).device, None)
    outside = "O" if "O" in labels else labels[0]
    out: list = [None] * len(examples)
    was_training = model.training
    keys = input_keys(model)
    model.eval()
    with torch.inference_mode():
        for idx in sorted_batches([length(ex) for ex in examples], batch_size):
            batch = collate([examples[i] for i in idx], pad_token_id)
            with dev.autocast():
                logits = model(**_model_inputs(keys, batch, dev.device)).logits
            best = logits.float().argmax(-1).cpu()
            for row, i in enumerate(idx):
                if task == "ner":
                    words = [outside] * examples[i]["num_words"]
                    for pos, w in enumerate(batch["word_ids"][row].tolist()):
                        if w >= 0:
                            words[w] = labels[int(best[row, pos])]
                    out[i] = words
                else:
                    out[i] = int(best[row])
    model.train(was_training)
    return out


def gold_labels(dataset: Any, task: str, labels: Sequence[str]) -> list:
    """Gold labels in the predictions' format: label names per word (ner) or class ids."""
    column = list(dataset[LABEL_COLUMN[task]])
    if task == "ner":
        return [[labels[t] for t in tags] for tags in column]
    return [int(v) for v in column]


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then linear decay to 0 (as transformers' linear schedule), a pure function of the step."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _optimizer(named: list[tuple[str, torch.nn.Parameter]], cfg: TrainConfig) -> torch.optim.AdamW:
    no_decay = [p for n, p in named if n.endswith(".bias") or "LayerNorm" in n or "layer_norm" in n]
    ids = {id(p) for p in no_decay}
    decay = [p for _, p in named if id(p) not in ids]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (one pass over all moments, CPU and CUDA) is what the Trainer's default optimizer uses too.
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, fused=True)


# -------------------------------------------------------------------------------------- checkpoints


@dataclass
class _Progress:
    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list | None = None

    def __post_init__(self) -> None:
        if self.history is None:
            self.history = []


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


def _latest_checkpoint(state_dir: Path) -> Path | None:
    latest = state_dir / "LATEST"
    if latest.is_file():
        candidate = state_dir / latest.read_text().strip()
        if (candidate / "state.json").is_file():
            return candidate
    done = sorted((p for p in state_dir.glob("step-*") if (p / "state.json").is_file()), key=lambda p: p.name)
    return done[-1] if done else None


def _save_checkpoint(
    state_dir: Path,
    named: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    progress: _Progress,
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


def _load_checkpoint(
    ckpt: Path,
    named: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    fingerprint: dict,
) -> tuple[_Progress, dict[str, torch.Tensor] | None]:
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
    return _Progress(**state["progress"]), best


# ---------------------------------------------------------------------------------------------- train


def train(
    model_path: str | os.PathLike,
    task: str,
    peft: str,
    train_ds: Any,
    val_ds: Any,
    test_ds: Any,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    init_module: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
    *,
    threads: int | None = None,
    state_dir: str | os.PathLike | None = None,
    keep_state: bool = False,
    step_callback: Callable[[int], None] | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """Train a module + head, keep the best epoch by the validation metric, write the run's files.

    Writes into `out_dir`: `module/` (best module, adapters layout, safetensors), `head.safetensors`,
    `history.json` (per-epoch train loss and validation metrics) and, last, `test_predictions.json`
    (best state's test predictions with the gold labels). Each is written atomically. Resume
    checkpoints go to `state_dir` (default `out_dir/train_state`); if one is there, training resumes
    from it, and the directory is removed once the outputs are written (unless `keep_state`).
    `step_callback(global_step)` runs after every optimizer step (and after any checkpoint).
    `cache_dir` keeps tokenised splits that later runs with the same tokenizer and data reuse.
    `workers`: data-loader processes that pad the next batches while the model trains (0: in process).
    Returns the summary that history.json holds.
    """
    check_task(task)
    _check_peft(peft)
    cfg.validate()
    configure_threads(threads)
    if workers < 0:
        raise TransmodError(f"workers must not be negative, got {workers}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    state_dir = Path(state_dir) if state_dir is not None else out_dir / STATE_DIR
    labels = list(labels) if labels is not None else list(DEFAULT_LABELS[task])
    (out_dir / PREDICTIONS_FILE).unlink(missing_ok=True)  # a stale file must not pass for this run's result
    set_seeds(cfg.seed)

    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=False,
                                                  local_files_only=local_files_only(str(model_path)))
    except (OSError, ValueError) as exc:
        raise TransmodError(
            f"cannot load the tokenizer of {str(model_path)!r}: give a model folder with its tokenizer files or a "
            f"reachable hub id ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    if not getattr(tokenizer, "is_fast", False) and task == "ner":
        raise TransmodError(f"{model_path}: NER needs a fast tokenizer (tokenizer.json) to align words and sub-tokens")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    max_length = min(cfg.max_length, int(getattr(tokenizer, "model_max_length", None) or cfg.max_length))
    splits = {}
    for split, ds in (("train", train_ds), ("validation", val_ds), ("test", test_ds)):
        splits[split] = cached_encode(ds, tokenizer, task, max_length, len(labels), source=f"the {split} split",
                                      cache_dir=cache_dir)
        if not splits[split]:
            raise TransmodError(f"the {split} split is empty; give at least one example")
    val_gold = gold_labels(val_ds, task, labels)
    test_gold = gold_labels(test_ds, task, labels)

    dev = _Device.pick()
    model = build_model(model_path, task, len(labels), peft, cfg, init_module, labels).to(dev.device)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    keys = input_keys(model)
    optimizer = _optimizer(named, cfg)
    scaler = torch.amp.GradScaler("cuda") if dev.dtype == torch.float16 else None
    train_ex = splits["train"]
    lengths = [length(ex) for ex in train_ex]
    steps_per_epoch = math.ceil(len(train_ex) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = math.ceil(total_steps * cfg.warmup_ratio)
    metric_name = PRIMARY_METRIC[task]
    fingerprint = {
        "model": str(model_path), "task": task, "peft": peft, "labels": labels,
        "init_module": str(init_module) if init_module is not None else None, "config": cfg.hyper(),
        "num_train": len(train_ex), "num_validation": len(splits["validation"]),
    }

    log.info("training %s + %s on %s: %s trainable parameters, %d train / %d validation / %d test examples, "
             "%d epochs x %d steps of %d, lr %g, on %s (%s)", model_path, peft, task,
             f"{sum(p.numel() for _, p in named):,}", len(train_ex), len(splits["validation"]), len(splits["test"]),
             cfg.epochs, steps_per_epoch, cfg.batch_size, cfg.learning_rate, dev.device, dev.precision)
    progress, best_state = _Progress(), None
    ckpt = _latest_checkpoint(state_dir) if state_dir.is_dir() else None
    if ckpt is not None:
        progress, best_state = _load_checkpoint(ckpt, named, optimizer, scaler, fingerprint)
        log.info("resuming from checkpoint %s (epoch %d, step %d)", ckpt, progress.epoch, progress.global_step)
    clock = _Clock(progress.global_step, total_steps)

    model.train()
    for epoch in range(progress.epoch, cfg.epochs):
        if cfg.patience and progress.best_epoch and epoch - progress.best_epoch >= cfg.patience:  # resumed runs too
            log.info("stopping early: %d epochs without a better validation %s (patience %d)",
                     epoch - progress.best_epoch, metric_name, cfg.patience)
            break
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.mega_batches)
        # Workers only collate the batches fixed above, so results do not depend on their number; the
        # loader seeds them from a generator of its own, leaving the global RNG (dropout) to resume exactly.
        loader = DataLoader(train_ex, batch_sampler=batches[progress.step_in_epoch:], num_workers=workers,
                            collate_fn=functools.partial(collate, pad_token_id=pad_id),
                            pin_memory=dev.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
        for b, batch in enumerate(loader, start=progress.step_in_epoch):
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate * _lr_factor(progress.global_step, warmup, total_steps)
            with dev.autocast():
                logits = model(**_model_inputs(keys, batch, dev.device)).logits
            loss = _loss(logits, batch["labels"].to(dev.device))
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            progress.loss_sum += float(loss.detach())
            progress.loss_count += 1
            progress.global_step += 1
            clock.tokens += int(batch["attention_mask"].sum())
            if clock.due():  # long epochs: a line every LOG_EVERY_S seconds as well
                log.info("epoch %d/%d, %s: loss %.4f", epoch + 1, cfg.epochs, clock.status(progress.global_step,
                         optimizer.param_groups[0]["lr"]), progress.loss_sum / progress.loss_count)
            progress.step_in_epoch = b + 1
            if (cfg.checkpoint_every and progress.global_step % cfg.checkpoint_every == 0
                    and progress.step_in_epoch < len(batches)):
                _save_checkpoint(state_dir, named, optimizer, scaler, progress, best_state, fingerprint)
            if step_callback is not None:
                step_callback(progress.global_step)

        val_pred = predict(model, splits["validation"], task, labels, cfg.eval_batch_size, pad_id, dev)
        val = score_lists(task, val_pred, val_gold)
        entry = {"epoch": epoch + 1, "step": progress.global_step,
                 "train_loss": progress.loss_sum / max(1, progress.loss_count),
                 "val_metric": val[metric_name], **{f"val_{k}": v for k, v in val.items() if k != "n"}}
        progress.history.append(entry)
        if progress.best_metric is None or val[metric_name] > progress.best_metric:
            progress.best_metric, progress.best_epoch = val[metric_name], epoch + 1
            best_state = {n: p.detach().cpu().clone() for n, p in named}
        log.info("epoch %d/%d done, %s: train loss %.4f, validation %s %.4f (best %.4f, epoch %d)", epoch + 1,
                 cfg.epochs, clock.status(progress.global_step, optimizer.param_groups[0]["lr"]), entry["train_loss"],
                 metric_name, entry["val_metric"], progress.best_metric, progress.best_epoch)
        progress.epoch, progress.step_in_epoch, progress.loss_sum, progress.loss_count = epoch + 1, 0, 0.0, 0
        _save_checkpoint(state_dir, named, optimizer, scaler, progress, best_state, fingerprint)

    with torch.no_grad():
        for n, p in named:
            p.copy_(best_state[n])
    test_pred = predict(model, splits["test"], task, labels, cfg.eval_batch_size, pad_id, dev)
    summary = {"task": task, "peft": peft, "metric": metric_name, "best_epoch": progress.best_epoch,
               "best_val_metric": progress.best_metric, "epochs": progress.history, "config": cfg.hyper(),
               "model": str(model_path), "init_module": str(init_module) if init_module is not None else None,
               "environment": dev.environment()}
    _write_outputs(model, out_dir, task, labels, summary, test_pred, test_gold)
    if not keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    log.info("trained in %.1f s; best epoch %s, validation %s %.4f; wrote %s", time.perf_counter() - started,
             progress.best_epoch, metric_name, progress.best_metric, out_dir)
    return summary


def _write_outputs(
    model: torch.nn.Module, out_dir: Path, task: str, labels: list[str], summary: dict, test_pred: list, test_gold: list
) -> None:
    """Module, head, history, then predictions last: a complete predictions file means a finished run."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / MODULE_DIR, is_dir=True) as tmp:
        with _quiet_transformers():
            model.save_adapter(str(tmp), ADAPTER_NAME, use_safetensors=True)
    head = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if n in set(head_parameter_names(model))}
    with atomic_path(out_dir / HEAD_FILE) as tmp:
        save_file(head, str(tmp), metadata={"task": task, "labels": json.dumps(labels),
                                            "model_type": model.config.model_type})
    with atomic_path(out_dir / HISTORY_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    predictions = {"task": task, "labels": labels, "metric": summary["metric"], "best_epoch": summary["best_epoch"],
                   "best_val_metric": summary["best_val_metric"], "environment": summary["environment"],
                   "predictions": test_pred, "gold": test_gold}
    with atomic_path(out_dir / PREDICTIONS_FILE) as tmp:
        tmp.write_text(json.dumps(predictions) + "\n", encoding="utf-8")
