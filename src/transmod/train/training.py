"""Train one PEFT module (+ a fresh classification head) on a frozen model; resumable and exact.

`train` is the whole job of `train_teacher` and `train_student` (docs/method.md, sections 2 and 9): it
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
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from transmod.atomic import atomic_path
from transmod.errors import TransmodError
from transmod.modules.architectures import load_model_shape
from transmod.train.batching import (
    IGNORE_INDEX,
    collate,
    length,
    length_grouped_batches,
)
from transmod.train.checkpoints import (
    Progress,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from transmod.train.config import TrainConfig
from transmod.train.data import load_split
from transmod.train.decoder import (
    build_decoder,
    choice_view,
    label_word_rows,
    save_lora,
    scorer,
    training_example,
)
from transmod.train.decoder import gold as decoder_gold
from transmod.train.evaluation import score_lists
from transmod.train.files import (
    HEAD_FILE,
    HISTORY_FILE,
    MODULE_DIR,
    PREDICTIONS_FILE,
    STATE_DIR,
    TIMING_FILE,
)
from transmod.train.lmscore import forward_at, kept_columns, pad_id_of
from transmod.train.model import (
    ADAPTER_NAME,
    build_model,
    check_peft,
    head_parameter_names,
    load_tokenizer,
    quiet_transformers,
)
from transmod.train.runtime import (
    Clock,
    Device,
    configure_threads,
    gold_labels,
    input_keys,
    lr_factor,
    make_optimizer,
    model_inputs,
    predict,
    set_seeds,
    token_loss,
)
from transmod.train.tasks import SPLITS, Task, get_task
from transmod.train.tokencache import cached_encode

log = logging.getLogger(__name__)

def train(
    model_path: str | os.PathLike,
    task: Task | str,
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
    score_start: bool = False,
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
    `score_start`: a decoder run also scores its start on the test split (`start_test`: the teacher alone).
    `labels` default to the task's label names (declared, or the train split's ClassLabel names). Returns the
    summary that history.json holds."""
    task = get_task(task)
    _check_options(peft, cfg, threads, workers)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    state_dir = Path(state_dir) if state_dir is not None else out_dir / STATE_DIR
    (out_dir / PREDICTIONS_FILE).unlink(missing_ok=True)  # a stale file must not pass for this run's result
    set_seeds(cfg.seed)
    datasets = (train_ds, val_ds, test_ds)
    run = (_prepare_decoder(model_path, task, peft, datasets, cfg, init_module, labels, out_dir)
           if task.is_decoder or is_decoder_model(model_path) else
           _prepare(model_path, task, peft, datasets, cfg, init_module, labels, cache_dir, out_dir))
    # a decoder's start is a model of its own (the model alone, or with the moved LoRA): the tables' KEPT reads the
    # teacher alone's test score (a zero-shot run's start is its end; a fresh encoder head scores nothing)
    start = run.score("test")[0] if run.decoder and run.named and score_start else None
    progress = _train_to_best(run, cfg, state_dir, workers, step_callback) if run.named else _score_start(run)
    test, test_pred = run.score("test")
    summary = {"task": task.name, "peft": peft, "metric": run.metric, "best_epoch": progress.best_epoch,
               "best_val_metric": progress.best_metric, "epochs": progress.history, "config": cfg.hyper(),
               "model": str(model_path), "init_module": str(init_module) if init_module is not None else None,
               "environment": run.dev.environment(),
               **({"start_test": start or test} if run.decoder and (start or not run.named) else {})}
    _write_outputs(run, out_dir, summary, test_pred, progress.epoch_seconds)
    if not keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    log.info("trained in %.1f s; best epoch %s, validation %s %.4f; wrote %s", time.perf_counter() - started,
             progress.best_epoch, run.metric, progress.best_metric, out_dir)
    return summary


def _check_options(peft: str, cfg: TrainConfig, threads: int | None, workers: int) -> None:
    check_peft(peft)
    cfg.validate()
    configure_threads(threads)
    if workers < 0:
        raise TransmodError(f"workers must not be negative, got {workers}")


def train_run(
    model: str,
    dataset: str,
    task: Task,
    lang: str,
    peft: str,
    hyper: Mapping[str, Any],
    module: Mapping[str, Any],
    seed: int | str,
    out_dir: str | os.PathLike,
    *,
    checkpoint_every: int = 0,
    init_module: str | os.PathLike | None = None,
    threads: int = 1,
    state_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    score_start: bool = False,
) -> dict[str, Any]:
    """One run of the workflow, a teacher's or a student's, on the task's three splits of `dataset` in `lang`.

    `hyper` is the config's training options; `module` its `modules.<peft>` section, which the kind's own
    `Options` reads, so no kind needs a branch here. The run's other cores pad the next batches.
    """
    options = {**hyper, "seed": seed, "checkpoint_every": checkpoint_every, "modules": {peft: dict(module)}}
    cfg = TrainConfig.from_dict(options, source="config.yaml training")
    data = {split: load_split(dataset, task, lang, split) for split in SPLITS}
    return train(model, task, peft, data["train"], data["validation"], data["test"], cfg, out_dir, init_module,
                 threads=threads, workers=threads - 1, state_dir=state_dir, cache_dir=cache_dir, score_start=score_start)


@dataclass
class _Run:
    """What the loop of one run works with, built the same way on a fresh start and on resume."""

    task: Task
    model: torch.nn.Module
    named: list[tuple[str, torch.nn.Parameter]]  # the trainable parameters, in a fixed order
    keys: tuple[str, ...]  # the encoded inputs the model reads
    optimizer: torch.optim.Optimizer | None  # None: nothing to train (a decoder's zero-shot run)
    scaler: torch.amp.GradScaler | None
    dev: Device
    labels: list[str]
    pad_id: int
    splits: dict[str, list]  # encoded train / validation / test examples
    lengths: list[int]  # of the training examples, which the batch order groups by
    gold: dict[str, list]  # validation and test gold labels, as the metrics compare them
    score: Callable[[str], tuple[dict[str, float], list]]  # a split's scores and predictions
    metric: str  # the validation metric that picks the best epoch
    total_steps: int
    warmup: int
    fingerprint: dict  # what a checkpoint must match to be resumed
    out_dir: Path  # where the run writes: how its messages name it
    decoder: bool = False  # a decoder LLM's LoRA (peft's format; no head of its own)


def _prepare(
    model_path: str | os.PathLike, task: Task, peft: str, datasets: tuple, cfg: TrainConfig,
    init_module: str | os.PathLike | None, labels: Sequence[str] | None, cache_dir: str | os.PathLike | None,
    out_dir: Path,
) -> _Run:
    """Tokenise the splits (through the cache), build the model and its optimizer."""
    features = getattr(datasets[0], "features", None)
    labels = list(labels) if labels is not None else list(task.label_names(features, "the train split"))
    tokenizer = load_tokenizer(model_path, words=task.is_token)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    max_length = min(cfg.max_length, int(getattr(tokenizer, "model_max_length", None) or cfg.max_length))
    splits = {}
    for split, ds in zip(("train", "validation", "test"), datasets):
        splits[split] = cached_encode(ds, tokenizer, task, max_length, len(labels), source=f"the {split} split",
                                      cache_dir=cache_dir)
        if not splits[split]:
            raise TransmodError(f"the {split} split is empty; give at least one example")
    gold = {split: gold_labels(ds, task, labels) for split, ds in zip(("validation", "test"), datasets[1:])}

    model = build_model(model_path, task, len(labels), peft, cfg, init_module, labels)
    dev = Device.pick(int(getattr(model.config, "hidden_size", None) or model.config.dim))
    model = model.to(dev.device)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total_steps = math.ceil(len(splits["train"]) / cfg.batch_size) * cfg.epochs
    fingerprint = {
        "model": str(model_path), "task": task.name, "peft": peft, "labels": labels,
        "init_module": str(init_module) if init_module is not None else None, "config": cfg.hyper(),
        "num_train": len(splits["train"]), "num_validation": len(splits["validation"]),
    }
    def score(split: str) -> tuple[dict[str, float], list]:
        pred = predict(model, splits[split], task, labels, cfg.eval_batch_size, pad_id, dev)
        return score_lists(task, pred, gold[split]), pred

    run = _Run(task, model, named, input_keys(model), make_optimizer(named, cfg),
               torch.amp.GradScaler("cuda") if dev.dtype == torch.float16 else None, dev, labels, pad_id, splits,
               [length(ex) for ex in splits["train"]], gold, score,
               task.metric, total_steps, math.ceil(total_steps * cfg.warmup_ratio), fingerprint, out_dir)
    log.info("training %s + %s on %s: %s trainable parameters, %d train / %d validation / %d test examples, "
             "%d epochs x %d steps of %d, lr %g, on %s (%s)", model_path, peft, task.name,
             f"{sum(p.numel() for _, p in named):,}", len(splits["train"]), len(splits["validation"]),
             len(splits["test"]), cfg.epochs, total_steps // cfg.epochs, cfg.batch_size, cfg.learning_rate,
             dev.device, dev.precision)
    return run


def is_decoder_model(model_path: str | os.PathLike) -> bool:
    """Whether the model (its config alone) is a decoder LLM of a supported family; an unknown one is not."""
    try:
        return load_model_shape(str(model_path)).arch.decoder
    except TransmodError:
        return False


def _prepare_decoder(model_path: str | os.PathLike, task: Task, peft: str, datasets: tuple, cfg: TrainConfig,
                     init_module: str | os.PathLike | None, labels: Sequence[str] | None, out_dir: Path) -> _Run:
    """A decoder run's `_Run`: its LoRA, the answers as shifted labels, and `lmscore` for validation and test.
    A sentence (pair) classification task is asked as a multiple choice of its label words."""
    if peft != "lora":
        raise TransmodError(f"a decoder LLM trains a LoRA (peft: lora) on task {task.name}, not {peft!r}")
    if task.is_token:
        raise TransmodError(f"task {task.name}: a decoder LLM answers completion, multiple-choice and sentence "
                            "classification tasks, not a token-classification task; give it to an encoder pair")
    model, tokenizer = build_decoder(model_path, cfg, init_module)
    rows = {split: [dict(r) for r in ds] for split, ds in zip(SPLITS, datasets)}
    for split, split_rows in rows.items():
        if not split_rows:
            raise TransmodError(f"the {split} split is empty; give at least one example")
    asked, words = task, []
    try:
        if not task.is_decoder:  # label words: each row a multiple choice of them
            words = list(labels or task.label_names(getattr(datasets[0], "features", None), "the train split"))
            asked = choice_view(task)
            rows = {split: label_word_rows(task, split_rows, words) for split, split_rows in rows.items()}
        train_examples = [training_example(tokenizer, asked, r, i, cfg.max_length) for i, r in enumerate(rows["train"])]
    except TransmodError as exc:
        raise TransmodError(f"the train split: {exc}") from None
    dev = Device.pick(int(model.config.hidden_size))
    model = model.to(dev.device)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total_steps = math.ceil(len(train_examples) / cfg.batch_size) * cfg.epochs
    fingerprint = {"model": str(model_path), "task": task.name, "peft": peft, "config": cfg.hyper(),
                   "init_module": str(init_module) if init_module is not None else None,
                   "num_train": len(train_examples), "num_validation": len(rows["validation"])}
    if named:
        log.info("training %s + a LoRA on %s: %s trainable parameters, %d train / %d validation / %d test examples, "
                 "%d epochs x %d steps of %d, lr %g, on %s (%s), from %s", model_path, task.name,
                 f"{sum(p.numel() for _, p in named):,}", len(train_examples), len(rows["validation"]),
                 len(rows["test"]), cfg.epochs, total_steps // cfg.epochs, cfg.batch_size, cfg.learning_rate,
                 dev.device, dev.precision, init_module or "a fresh LoRA")
    else:
        log.info("scoring %s + %s on %s as it is (zero-shot: nothing trains), %d validation / %d test examples, on %s",
                 model_path, init_module or "no LoRA", task.name, len(rows["validation"]), len(rows["test"]), dev.device)
    return _Run(task, model, named, ("input_ids", "attention_mask"), make_optimizer(named, cfg) if named else None,
                torch.amp.GradScaler("cuda") if dev.dtype == torch.float16 else None, dev, words, pad_id_of(tokenizer),
                {"train": train_examples}, [length(ex) for ex in train_examples],
                {split: decoder_gold(asked, rows[split]) for split in ("validation", "test")},
                scorer(model, tokenizer, asked, rows, cfg, None if asked is task else task), task.metric, total_steps,
                math.ceil(total_steps * cfg.warmup_ratio), fingerprint, out_dir, decoder=True)


def _train_to_best(
    run: _Run, cfg: TrainConfig, state_dir: Path, workers: int, step_callback: Callable[[int], None] | None
) -> Progress:
    """Train the epochs left (from a checkpoint in `state_dir` if there is one, until patience runs out), then
    put the best epoch's trainable state back into the model: what the outputs are written from."""
    progress, best_state = Progress(), None
    ckpt = latest_checkpoint(state_dir) if state_dir.is_dir() else None
    if ckpt is not None:
        progress, best_state = load_checkpoint(ckpt, run.named, run.optimizer, run.scaler, run.fingerprint)
        log.info("resuming from checkpoint %s (epoch %d, step %d)", ckpt, progress.epoch, progress.global_step)
    clock = Clock(progress.global_step, run.total_steps)

    run.model.train()
    for epoch in range(progress.epoch, cfg.epochs):
        if cfg.patience and progress.best_epoch and epoch - progress.best_epoch >= cfg.patience:  # resumed runs too
            log.info("stopping early: %d epochs without a better validation %s (patience %d)",
                     epoch - progress.best_epoch, run.metric, cfg.patience)
            break
        _train_epoch(run, cfg, epoch, progress, clock, state_dir, best_state, workers, step_callback)
        best_state = _end_epoch(run, cfg, epoch, progress, clock, best_state)
        save_checkpoint(state_dir, run.named, run.optimizer, run.scaler, progress, best_state, run.fingerprint)

    with torch.no_grad():
        for n, p in run.named:
            p.copy_(best_state[n])
    return progress


def _score_start(run: _Run) -> Progress:
    """A run with nothing to train (a decoder's zero-shot run: no head): its start is its best, epoch 0."""
    val, _ = run.score("validation")
    progress = Progress(best_metric=val[run.metric], best_epoch=0)
    progress.epoch_seconds.append(0.0)
    progress.history.append({"epoch": 0, "step": 0, "train_loss": None,
                             "val_metric": val[run.metric], **{f"val_{k}": v for k, v in val.items() if k != "n"}})
    log.info("nothing to train (zero-shot): validation %s %.4f", run.metric, progress.best_metric)
    return progress


def _batch_loss(run: _Run, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The batch's loss; a decoder's LM head runs only where some row has an answer token (`forward_at`)."""
    inputs, labels = model_inputs(run.keys, batch, run.dev.device), batch["labels"].to(run.dev.device)
    if not run.decoder:
        return token_loss(run.model(**inputs).logits, labels)
    positions, _ = kept_columns(labels != IGNORE_INDEX)
    return token_loss(forward_at(run.model, positions, **inputs).logits, labels[:, positions])


def _train_epoch(
    run: _Run, cfg: TrainConfig, epoch: int, progress: Progress, clock: Clock, state_dir: Path,
    best_state: dict | None, workers: int, step_callback: Callable[[int], None] | None,
) -> None:
    """One epoch's optimizer steps, from where `progress` stands (a resumed run starts mid-epoch)."""
    batches = length_grouped_batches(run.lengths, cfg.batch_size, cfg.seed, epoch, cfg.mega_batches)
    # Workers only collate the batches fixed above, so results do not depend on their number; the
    # loader seeds them from a generator of its own, leaving the global RNG (dropout) to resume exactly.
    loader = DataLoader(run.splits["train"], batch_sampler=batches[progress.step_in_epoch:], num_workers=workers,
                        collate_fn=functools.partial(collate, pad_token_id=run.pad_id),
                        pin_memory=run.dev.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
    optimizer, scaler = run.optimizer, run.scaler
    tick = time.perf_counter()
    for b, batch in enumerate(loader, start=progress.step_in_epoch):
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * lr_factor(progress.global_step, run.warmup, run.total_steps)
        with run.dev.autocast():
            loss = _batch_loss(run, batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in run.named], cfg.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        progress.loss_sum += _finite_loss(loss, run.out_dir, cfg, progress)
        progress.loss_count += 1
        progress.global_step += 1
        progress.train_seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        clock.tokens += int(batch["attention_mask"].sum())
        if clock.due():  # long epochs: a line every LOG_EVERY_S seconds as well
            log.info("epoch %d/%d, %s: loss %.4f", epoch + 1, cfg.epochs, clock.status(progress.global_step,
                     optimizer.param_groups[0]["lr"]), progress.loss_sum / progress.loss_count)
        progress.step_in_epoch = b + 1
        if (cfg.checkpoint_every and progress.global_step % cfg.checkpoint_every == 0
                and progress.step_in_epoch < len(batches)):
            save_checkpoint(state_dir, run.named, optimizer, scaler, progress, best_state, run.fingerprint)
        if step_callback is not None:
            step_callback(progress.global_step)


def _finite_loss(loss: torch.Tensor, out_dir: Path, cfg: TrainConfig, progress: Progress) -> float:
    """The step's loss; a NaN or infinite one stops the run, which then writes nothing: its weights are lost."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TransmodError(f"{out_dir}: the training loss became {value} at step {progress.global_step + 1} (epoch "
                            f"{progress.epoch + 1}): the run diverged and wrote no module; lower learning_rate (now "
                            f"{cfg.learning_rate:g}) or check the data")
    return value


def _end_epoch(run: _Run, cfg: TrainConfig, epoch: int, progress: Progress, clock: Clock,
               best_state: dict | None) -> dict:
    """Validate, record the epoch in the history, and keep the trainable state if it is the best so far."""
    val, _ = run.score("validation")
    progress.epoch_seconds.append(round(progress.train_seconds, 3))
    entry = {"epoch": epoch + 1, "step": progress.global_step,
             "train_loss": progress.loss_sum / max(1, progress.loss_count),
             "val_metric": val[run.metric], **{f"val_{k}": v for k, v in val.items() if k != "n"}}
    progress.history.append(entry)
    if progress.best_metric is None or val[run.metric] > progress.best_metric:
        progress.best_metric, progress.best_epoch = val[run.metric], epoch + 1
        best_state = {n: p.detach().cpu().clone() for n, p in run.named}
    log.info("epoch %d/%d done, %s: train loss %.4f, validation %s %.4f (best %.4f, epoch %d)", epoch + 1,
             cfg.epochs, clock.status(progress.global_step, run.optimizer.param_groups[0]["lr"]), entry["train_loss"],
             run.metric, entry["val_metric"], progress.best_metric, progress.best_epoch)
    progress.epoch, progress.step_in_epoch, progress.loss_sum, progress.loss_count = epoch + 1, 0, 0.0, 0
    return best_state


def _write_outputs(run: _Run, out_dir: Path, summary: dict, test_pred: list, epoch_seconds: list[float]) -> None:
    """Module, head, history, then predictions last: a complete predictions file means a finished run."""
    from safetensors.torch import save_file

    model, task = run.model, run.task.name
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / MODULE_DIR, is_dir=True) as tmp:
        if run.decoder:
            save_lora(model, tmp)
        else:
            with quiet_transformers():
                model.save_adapter(str(tmp), ADAPTER_NAME, use_safetensors=True)
    # a decoder answers through its own LM head, which stays frozen: its file holds no tensors
    head = {} if run.decoder else {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
                                           if n in set(head_parameter_names(model))}
    with atomic_path(out_dir / HEAD_FILE) as tmp:
        save_file(head, str(tmp), metadata={"task": task, "labels": json.dumps(run.labels),
                                            "model_type": model.config.model_type})
    with atomic_path(out_dir / TIMING_FILE) as tmp:
        tmp.write_text(json.dumps({"epoch_seconds": epoch_seconds}) + "\n", encoding="utf-8")
    with atomic_path(out_dir / HISTORY_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    predictions = {"task": task, "labels": run.labels, "metric": summary["metric"], "best_epoch": summary["best_epoch"],
                   "best_val_metric": summary["best_val_metric"], "environment": summary["environment"],
                   "predictions": test_pred, "gold": run.gold["test"]}
    if "start_test" in summary:
        predictions["start_score"] = summary["start_test"][summary["metric"]]
    # the validation score after each epoch, at its step: the tables' steps to match
    predictions["curve"] = [{"step": e["step"], "val": e["val_metric"]} for e in summary["epochs"]]
    with atomic_path(out_dir / PREDICTIONS_FILE) as tmp:
        tmp.write_text(json.dumps(predictions) + "\n", encoding="utf-8")
