"""Tokenisation, batching, model building and (resumable) training on tiny offline models."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers.training import ARCHS, FAST, Killed, kill_at, pi_data
from safetensors.torch import load_file

from transmod.errors import TransmodError
from transmod.modules.adapter import reduction_factor
from transmod.train.batching import (
    collate,
    encode,
    length_grouped_batches,
    sorted_batches,
)
from transmod.train.config import TrainConfig
from transmod.train.evaluation import score
from transmod.train.files import (
    HEAD_FILE,
    HISTORY_FILE,
    MODULE_DIR,
    PREDICTIONS_FILE,
    STATE_DIR,
    TIMING_FILE,
)
from transmod.train.model import ADAPTER_NAME, build_model, head_parameter_names
from transmod.train.training import train

PER, LOC = {"john", "mary"}, {"berlin", "paris", "bonn"}


def ner_data(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    filler = ["lives", "in", "works", "at", "the", "a", "day", "is", "and"]
    rows = {"tokens": [], "ner_tags": []}
    for _ in range(n):
        words = [rng.choice(filler + sorted(PER) + sorted(LOC)) for _ in range(rng.randint(3, 9))]
        rows["tokens"].append(words)
        rows["ner_tags"].append([1 if w in PER else 5 if w in LOC else 0 for w in words])
    return Dataset.from_dict(rows)


# ------------------------------------------------------------------------------------------ batching


def test_encode_labels_first_subtoken_only(training_tokenizer):
    ds = Dataset.from_dict({"tokens": [["john", "bonn", "berlin"]], "ner_tags": [[1, 5, 5]]})
    (ex,) = encode(ds, training_tokenizer, "ner", max_length=32)
    pieces = training_tokenizer.convert_ids_to_tokens(ex["input_ids"])
    assert pieces == ["[CLS]", "john", "b", "##o", "##n", "##n", "berlin", "[SEP]"]
    assert ex["labels"] == [-100, 1, 5, -100, -100, -100, 5, -100]
    assert ex["word_ids"] == [-1, 0, 1, -1, -1, -1, 2, -1]
    assert ex["num_words"] == 3
    # truncation keeps the alignment of what is left
    (short,) = encode(ds, training_tokenizer, "ner", max_length=8)
    assert short["labels"] == ex["labels"]


def test_encode_pairs_and_bad_labels(training_tokenizer):
    ds = Dataset.from_dict({"sentence1": ["john lives"], "sentence2": ["in berlin"], "label": [1]})
    (ex,) = encode(ds, training_tokenizer, "pi", max_length=32)
    assert training_tokenizer.convert_ids_to_tokens(ex["input_ids"]) == ["[CLS]", "john", "lives", "[SEP]", "in", "berlin", "[SEP]"]
    assert ex["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1] and ex["labels"] == 1
    with pytest.raises(TransmodError, match="label"):
        encode(Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"], "label": [3]}), training_tokenizer, "nli", 32)
    with pytest.raises(TransmodError, match="hypothesis"):
        encode(Dataset.from_dict({"premise": ["a"], "label": [0]}), training_tokenizer, "nli", 32)


def test_collate_pads_to_longest():
    examples = [
        {"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1], "labels": [-100, 4, -100], "word_ids": [-1, 0, -1]},
        {"input_ids": [2, 7, 8, 9, 3], "attention_mask": [1] * 5, "labels": [-100, 1, 2, -100, -100],
         "word_ids": [-1, 0, 1, -1, -1]},
    ]
    batch = collate(examples, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[2, 7, 3, 0, 0], [2, 7, 8, 9, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist()[0] == [-100, 4, -100, -100, -100]
    assert batch["word_ids"].tolist()[0] == [-1, 0, -1, -1, -1]
    seq = collate([{"input_ids": [2, 3], "attention_mask": [1, 1], "labels": 1},
                   {"input_ids": [2], "attention_mask": [1], "labels": 0}], pad_token_id=0)
    assert seq["labels"].tolist() == [1, 0] and seq["input_ids"].tolist() == [[2, 3], [2, 0]]


def test_length_grouped_batches_deterministic_and_grouped():
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 100, size=1000).tolist()
    a = length_grouped_batches(lengths, 16, seed=3, epoch=2, mega_batches=10)
    assert a == length_grouped_batches(lengths, 16, seed=3, epoch=2, mega_batches=10)
    assert a != length_grouped_batches(lengths, 16, seed=3, epoch=3, mega_batches=10)
    assert a != length_grouped_batches(lengths, 16, seed=4, epoch=2, mega_batches=10)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert all(len(b) <= 16 for b in a)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in a)
    plain = np.random.default_rng(0).permutation(1000)
    unsorted = sum(16 * max(lengths[i] for i in plain[s:s + 16]) for s in range(0, 1000, 16))
    assert padded < 0.8 * unsorted  # grouping saves padding work
    assert sorted(i for b in sorted_batches(lengths, 7) for i in b) == list(range(1000))


# --------------------------------------------------------------------------------------------- model


def _split(model, peft):
    module, head, base_trainable = [], [], []
    head_names = set(head_parameter_names(model))
    marker = ".loras." if peft == "lora" else "adapters."
    for n, p in model.named_parameters():
        if n in head_names:
            head.append((n, p.requires_grad))
        elif f"{marker}{ADAPTER_NAME}." in n:
            module.append((n, p.requires_grad))
        elif p.requires_grad:
            base_trainable.append(n)
    return module, head, base_trainable


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_build_model_trains_only_module_and_head(training_models, arch, peft):
    cfg = TrainConfig(seed=1, modules={"adapter": {"bottleneck": 8}, "lora": {"r": 4, "alpha": 4}})
    task = "ner" if peft == "adapter" else "pi"
    model = build_model(training_models[arch], task, 9 if task == "ner" else 2, peft, cfg)
    module, head, base_trainable = _split(model, peft)
    assert base_trainable == []
    assert module and all(t for _, t in module)
    assert head and all(t for _, t in head)
    names = {n.split(".")[0] for n, _ in head}
    assert "classifier" in names and ("pre_classifier" in names) == (arch == "distilbert" and task == "pi")
    if peft == "adapter":
        down = next(p for n, p in model.named_parameters() if "adapter_down.0.weight" in n)
        assert down.shape == (8, 32)
    else:
        assert {n.split(".loras.")[0].rsplit(".", 1)[-1] for n, _ in module} == (
            {"distilbert": {"q_lin", "v_lin"}, "deberta-v2": {"query_proj", "value_proj"}}.get(arch, {"query", "value"}))
    # the head is fresh but reproducible from the seed
    again = build_model(training_models[arch], task, 9 if task == "ner" else 2, peft, cfg)
    other = build_model(training_models[arch], task, 9 if task == "ner" else 2, peft, TrainConfig(seed=2, modules={"adapter": {"bottleneck": 8}, "lora": {"r": 4, "alpha": 4}}))
    sd, sd2, sd3 = model.state_dict(), again.state_dict(), other.state_dict()
    for n, _ in head + module:
        assert torch.equal(sd[n], sd2[n])
    assert any(not torch.equal(sd[n], sd3[n]) for n, _ in head if n.endswith("weight"))


def test_a_base_weight_of_the_wrong_shape_is_refused_not_reinitialised(training_models, tmp_path):
    import shutil

    folder = tmp_path / "bert"
    shutil.copytree(training_models["bert"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] += 8  # the weights were saved for the old size
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TransmodError, match=r"encoder\.layer\.0\..*does not have the shape"):
        build_model(folder, "pi", 2, "lora", TrainConfig(seed=1))
    build_model(training_models["bert"], "ner", 9, "lora", TrainConfig(seed=1))  # a fresh head of any size is fine


def test_reduction_factor_gives_the_bottleneck():
    for hidden, bottleneck in [(768, 128), (1024, 128), (32, 8), (100, 7), (768, 100)]:
        assert int(hidden // reduction_factor(hidden, bottleneck)) == bottleneck


@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_init_module_loads_identical_weights(training_models, tmp_path, peft):
    cfg = TrainConfig(seed=5, modules={"adapter": {"bottleneck": 8}, "lora": {"r": 4, "alpha": 4}})
    teacher = build_model(training_models["bert"], "ner", 9, peft, cfg)
    with torch.no_grad():  # make the module non-trivial (LoRA B starts at zero)
        for n, p in teacher.named_parameters():
            if f".{ADAPTER_NAME}." in n:
                p.add_(torch.randn_like(p))
    teacher.save_adapter(str(tmp_path / "mod"), ADAPTER_NAME, use_safetensors=True)
    assert (tmp_path / "mod" / "adapter.safetensors").is_file()
    student = build_model(training_models["bert"], "ner", 9, peft, TrainConfig(seed=9), init_module=tmp_path / "mod")
    module, head, base_trainable = _split(student, peft)
    assert base_trainable == [] and module and all(t for _, t in module + head)
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    for n, _ in module:
        assert torch.equal(t_sd[n], s_sd[n]), n
    # the head stays fresh: the same as a default-init run of the student's seed
    fresh = build_model(training_models["bert"], "ner", 9, peft, TrainConfig(seed=9)).state_dict()
    for n, _ in head:
        assert torch.equal(fresh[n], s_sd[n])
    other = "lora" if peft == "adapter" else "adapter"
    with pytest.raises(TransmodError, match="peft"):
        build_model(training_models["bert"], "ner", 9, other, cfg, init_module=tmp_path / "mod")


def test_init_module_refuses_mismatches(training_models, tmp_path):
    cfg = TrainConfig(seed=5, modules={"adapter": {"bottleneck": 8}})
    bert = build_model(training_models["bert"], "ner", 9, "adapter", cfg)
    bert.save_adapter(str(tmp_path / "bert_mod"), ADAPTER_NAME, use_safetensors=True)
    with pytest.raises(TransmodError, match="bert_mod"):  # keys name bert's layers, distilbert has others
        build_model(training_models["distilbert"], "ner", 9, "adapter", cfg, init_module=tmp_path / "bert_mod")
    (tmp_path / "bert_mod" / "adapter.safetensors").rename(tmp_path / "bert_mod" / "pytorch_adapter.bin")
    with pytest.raises(TransmodError, match="safetensors"):
        build_model(training_models["bert"], "ner", 9, "adapter", cfg, init_module=tmp_path / "bert_mod")
    with pytest.raises(TransmodError, match="no such module"):
        build_model(training_models["bert"], "ner", 9, "adapter", cfg, init_module=tmp_path / "absent")


def test_train_config_from_dict():
    cfg = TrainConfig.from_dict({"learning_rate": "1e-4", "epochs": 3, "seed": "2"})
    assert cfg.learning_rate == 1e-4 and cfg.epochs == 3 and cfg.seed == 2
    with pytest.raises(TransmodError, match="lerning_rate"):
        TrainConfig.from_dict({"lerning_rate": 1e-4}, "config.yaml")
    with pytest.raises(TransmodError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": 0})


# ------------------------------------------------------------------------------------------ training

@pytest.mark.parametrize("arch,peft,task", [("bert", "adapter", "ner"), ("distilbert", "lora", "pi"),
                                            ("xlm-roberta", "lora", "ner"), ("electra", "adapter", "ner"),
                                            ("deberta-v2", "lora", "ner"), ("albert", "adapter", "ner")])
def test_training_beats_chance(training_models, tmp_path, arch, peft, task):
    data = pi_data if task == "pi" else ner_data
    cfg = TrainConfig(seed=0, **{**FAST, "epochs": 8, "learning_rate": 3e-2})
    summary = train(training_models[arch], task, peft, data(128, 0), data(32, 1), data(32, 2), cfg, tmp_path / "run", threads=1)
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == sorted([MODULE_DIR, HEAD_FILE, HISTORY_FILE, TIMING_FILE, PREDICTIONS_FILE])
    assert (out / MODULE_DIR / "adapter.safetensors").is_file() and (out / MODULE_DIR / "adapter_config.json").is_file()
    history = json.loads((out / HISTORY_FILE).read_text())
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, 9))
    assert history["best_val_metric"] == max(e["val_metric"] for e in history["epochs"]) == summary["best_val_metric"]
    head = load_file(str(out / HEAD_FILE))
    assert head and all(k.split(".")[0] in ("classifier", "pre_classifier") for k in head)
    preds = json.loads((out / PREDICTIONS_FILE).read_text())
    assert len(preds["predictions"]) == len(preds["gold"]) == 32
    if task == "ner":
        assert [len(p) for p in preds["predictions"]] == [len(g) for g in preds["gold"]]
        assert score("ner", out / PREDICTIONS_FILE)["f1"] > 0.6
    else:
        assert score("pi", out / PREDICTIONS_FILE)["accuracy"] > 0.75
    # the saved module can start another run (the student side of the workflow)
    student = build_model(training_models[arch], task, 9 if task == "ner" else 2, peft, cfg, init_module=out / MODULE_DIR)
    saved = load_file(str(out / MODULE_DIR / "adapter.safetensors"))
    sd = student.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in saved.items())


@pytest.mark.parametrize("peft,module,weight,rows", [("adapter", {"bottleneck": 4}, "adapter_down.0.weight", 4),
                                                    ("lora", {"r": 2, "alpha": 4}, "lora_A", 2)])
def test_train_run_takes_the_configs_module_section_and_the_tasks_splits(training_models, tmp_path, peft, module, weight,
                                                                          rows):
    """What the workflow's train jobs call: `modules.<peft>` is the run's module options, for either kind."""
    from transmod_demo.language import write_demo_dataset

    from transmod.train.tasks import get_task
    from transmod.train.training import train_run

    data = write_demo_dataset("ner", tmp_path / "data", ["en"], {"train": 16, "validation": 8, "test": 8})
    hyper = {"learning_rate": 1e-3, "batch_size": 8, "epochs": 1, "max_length": 32}
    train_run(str(training_models["bert"]), str(data), get_task("ner"), "en", peft, hyper, module, "3", tmp_path / "run",
              checkpoint_every=5)
    config = json.loads((tmp_path / "run" / HISTORY_FILE).read_text())["config"]
    assert config["modules"] == {peft: module} and config["seed"] == 3 and config["epochs"] == 1
    saved = load_file(str(tmp_path / "run" / MODULE_DIR / "adapter.safetensors"))
    assert {t.shape[0] for k, t in saved.items() if k.endswith(weight)} == {rows}
    preds = json.loads((tmp_path / "run" / PREDICTIONS_FILE).read_text())
    assert len(preds["gold"]) == 8  # the test split


def test_zero_shot_run_trains_the_head_only(training_models, tmp_path):
    """freeze_module (the workflow's zs- inits): the transferred module comes out as it went in."""
    cfg = TrainConfig(seed=0, **{**FAST, "epochs": 1})
    train(training_models["bert"], "pi", "adapter", pi_data(64, 0), pi_data(16, 1), pi_data(16, 2), cfg, tmp_path / "a", threads=1)
    frozen = TrainConfig.from_dict({**FAST, "epochs": 2, "freeze_module": True})
    assert frozen.freeze_module and not cfg.freeze_module
    with pytest.raises(TransmodError, match="freeze_module"):
        TrainConfig.from_dict({"freeze_module": "yes"})
    model = build_model(training_models["bert"], "pi", 2, "adapter", frozen, init_module=tmp_path / "a" / MODULE_DIR)
    module, head, base_trainable = _split(model, "adapter")
    assert module and not any(t for _, t in module) and all(t for _, t in head) and base_trainable == []
    train(training_models["bert"], "pi", "adapter", pi_data(64, 0), pi_data(16, 1), pi_data(16, 2), frozen, tmp_path / "b",
          init_module=tmp_path / "a" / MODULE_DIR, threads=1)
    before = load_file(str(tmp_path / "a" / MODULE_DIR / "adapter.safetensors"))
    after = load_file(str(tmp_path / "b" / MODULE_DIR / "adapter.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    heads = load_file(str(tmp_path / "a" / HEAD_FILE)), load_file(str(tmp_path / "b" / HEAD_FILE))
    assert any(not torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_data_loader_workers_do_not_change_the_run(training_models, tmp_path):
    cfg = TrainConfig(seed=3, **{**FAST, "epochs": 2})
    data = pi_data(48, 0), pi_data(16, 1), pi_data(16, 2)
    for workers in (0, 2):
        train(training_models["distilbert"], "pi", "lora", *data, cfg, tmp_path / f"w{workers}", threads=1, workers=workers)
    runs = [json.loads((tmp_path / f"w{w}" / HISTORY_FILE).read_text())["epochs"] for w in (0, 2)]
    assert runs[0] == runs[1]
    assert (tmp_path / "w0" / PREDICTIONS_FILE).read_text() == (tmp_path / "w2" / PREDICTIONS_FILE).read_text()
    with pytest.raises(TransmodError, match="workers"):
        train(training_models["distilbert"], "pi", "lora", *data, cfg, tmp_path / "bad", workers=-1)


@pytest.mark.parametrize("peft,task", [("lora", "ner"), ("adapter", "pi")])
def test_resume_after_kill_is_exact(training_models, tmp_path, peft, task):
    data = pi_data if task == "pi" else ner_data
    splits = data(60, 0), data(20, 1), data(20, 2)
    # dropout on, so the RNG state matters; 8 steps per epoch; checkpoints every 3 steps
    cfg = TrainConfig(seed=4, checkpoint_every=3, **{**FAST, "epochs": 3})
    train(training_models["bert"], task, peft, *splits, cfg, tmp_path / "whole", threads=1)
    out = tmp_path / "resumed"
    for step in (5, 13):  # mid-epoch after a checkpoint; then in the second epoch
        with pytest.raises(Killed):
            train(training_models["bert"], task, peft, *splits, cfg, out, threads=1, step_callback=kill_at(step))
        assert (out / STATE_DIR / "LATEST").is_file()
        assert not (out / PREDICTIONS_FILE).exists()
    # resumed with another checkpoint interval (`checkpoints.every` changed in the config): the same run
    train(training_models["bert"], task, peft, *splits, dataclasses.replace(cfg, checkpoint_every=5), out, threads=1)
    assert not (out / STATE_DIR).exists()
    whole = tmp_path / "whole"
    assert (out / PREDICTIONS_FILE).read_text() == (whole / PREDICTIONS_FILE).read_text()
    assert (out / HISTORY_FILE).read_text() == (whole / HISTORY_FILE).read_text()
    for name in (f"{MODULE_DIR}/adapter.safetensors", HEAD_FILE):
        a, b = load_file(str(out / name)), load_file(str(whole / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # a checkpoint of another configuration is refused, not silently mixed in
    with pytest.raises(Killed):
        train(training_models["bert"], task, peft, *splits, cfg, out, threads=1, step_callback=kill_at(4))
    with pytest.raises(TransmodError, match="delete"):
        train(training_models["bert"], task, peft, *splits, TrainConfig(seed=5, checkpoint_every=3, **FAST), out, threads=1)


def test_patience_stops_a_run_that_stopped_improving_and_resumes_alike(training_models, tmp_path):
    """`patience: 2`: no third epoch without a better validation metric; a killed run resumes to the same stop."""
    splits = pi_data(48, 0), pi_data(16, 1), pi_data(16, 2)  # 6 steps per epoch
    stalled = TrainConfig(seed=0, checkpoint_every=3, patience=2, **{**FAST, "epochs": 6, "learning_rate": 1e-9})
    whole = train(training_models["bert"], "pi", "lora", *splits, stalled, tmp_path / "whole", threads=1)
    assert [e["epoch"] for e in whole["epochs"]] == [1, 2, 3] and whole["best_epoch"] == 1  # nothing learns
    with pytest.raises(Killed):
        train(training_models["bert"], "pi", "lora", *splits, stalled, tmp_path / "resumed", threads=1,
              step_callback=kill_at(14))
    train(training_models["bert"], "pi", "lora", *splits, stalled, tmp_path / "resumed", threads=1)
    for name in (HISTORY_FILE, PREDICTIONS_FILE):
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "whole" / name).read_text()
    every = train(training_models["bert"], "pi", "lora", *splits, dataclasses.replace(stalled, patience=0), tmp_path / "all",
                  threads=1)
    assert len(every["epochs"]) == 6  # off by default: the study's protocol trains every epoch
    with pytest.raises(TransmodError, match="patience"):
        TrainConfig.from_dict({"patience": -1})


def test_a_family_without_task_heads_is_refused_for_training(tmp_path):
    from helpers.models import make_config, make_model

    make_model("bert-generation", 2).save_pretrained(tmp_path / "m")
    make_config("bert-generation", 2).save_pretrained(tmp_path / "m")
    with pytest.raises(TransmodError, match="no token-classification model for bert-generation.*`transmod transfer`"):
        build_model(tmp_path / "m", "ner", 9, "adapter", TrainConfig(seed=1))


def test_train_refuses_bad_input(training_models, tmp_path):
    cfg = TrainConfig(**FAST)
    with pytest.raises(TransmodError, match="empty"):
        train(training_models["bert"], "pi", "adapter", pi_data(8, 0), pi_data(0, 1), pi_data(4, 2), cfg, tmp_path / "x")
    with pytest.raises(TransmodError, match="cannot load"):
        train(tmp_path / "nomodel", "pi", "adapter", pi_data(8, 0), pi_data(4, 1), pi_data(4, 2), cfg, tmp_path / "y")
    with pytest.raises(TransmodError, match="peft"):
        train(training_models["bert"], "pi", "prefix", pi_data(8, 0), pi_data(4, 1), pi_data(4, 2), cfg, tmp_path / "z")


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from helpers.training import FAST, pi_data
from transmod.train.config import TrainConfig
from transmod.train.training import train

def die(step):
    if step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: a node that loses power

cfg = TrainConfig(seed=3, checkpoint_every=2, **{{**FAST, "epochs": 2}})
train({model!r}, "pi", "adapter", pi_data(40, 0), pi_data(12, 1), pi_data(12, 2), cfg, {out!r}, threads=1,
      step_callback=die)
"""


def test_resume_after_sigkill(training_models, tmp_path):
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), step=7, model=str(training_models["bert"]), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / PREDICTIONS_FILE).exists()
    assert (out / STATE_DIR / "LATEST").read_text() == "step-000000006-e0001"  # 5 steps an epoch, one more done
    cfg = TrainConfig(seed=3, checkpoint_every=2, **{**FAST, "epochs": 2})
    splits = pi_data(40, 0), pi_data(12, 1), pi_data(12, 2)
    train(training_models["bert"], "pi", "adapter", *splits, cfg, out, threads=1)
    train(training_models["bert"], "pi", "adapter", *splits, cfg, tmp_path / "whole", threads=1)
    assert (out / PREDICTIONS_FILE).read_text() == (tmp_path / "whole" / PREDICTIONS_FILE).read_text()
    a = load_file(str(out / MODULE_DIR / "adapter.safetensors"))
    b = load_file(str(tmp_path / "whole" / MODULE_DIR / "adapter.safetensors"))
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("amx, width, fp32, expected", [
    (True, 768, "", "bf16 autocast (AMX)"), (True, 64, "", "fp32"), (True, 768, "1", "fp32"), (False, 768, "", "fp32"),
    (True, 768, "false", "bf16 autocast (AMX)"), (True, 768, "OFF", "bf16 autocast (AMX)"),
    (True, 768, "no", "bf16 autocast (AMX)"), (True, 768, "Yes", "fp32"), (True, 768, "on", "fp32"),
])
def test_cpu_precision_is_bf16_only_where_amx_tiles_pay(monkeypatch, amx, width, fp32, expected):
    from transmod.train.runtime import Device

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TRANSMOD_FP32", fp32)
    assert Device.pick(width).precision == expected


def test_a_bad_fp32_switch_is_refused_naming_the_variable(monkeypatch):
    from transmod.train.runtime import Device

    monkeypatch.setenv("TRANSMOD_FP32", "sometimes")
    with pytest.raises(TransmodError, match=r"\$TRANSMOD_FP32='sometimes' is not a switch"):
        Device.pick(768)


# ------------------------------------------------------------------------------------------ numbers that diverge


def test_an_infinite_learning_rate_is_refused_before_training(training_models, tmp_path):
    cfg = TrainConfig(**{**FAST, "learning_rate": float("inf")})
    with pytest.raises(TransmodError, match="option learning_rate must be a finite number above 0, got inf"):
        train(training_models["bert"], "pi", "adapter", pi_data(16, 0), pi_data(4, 1), pi_data(4, 2), cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_whose_loss_becomes_nan_stops_naming_run_and_step_and_writes_nothing(training_models, tmp_path):
    """A finite but absurd learning rate: the first step throws the weights to ~1e30, the second step's loss is NaN."""
    cfg = TrainConfig(**{**FAST, "learning_rate": 1e30, "epochs": 1})
    out = tmp_path / "run"
    refused = rf"^{out}: the training loss became nan at step 2 \(epoch 1\).*learning_rate"
    with pytest.raises(TransmodError, match=refused):
        train(training_models["bert"], "pi", "adapter", pi_data(32, 0), pi_data(4, 1), pi_data(4, 2), cfg, out, threads=1)
    assert not out.exists()  # no module, head, history or predictions, and no checkpoint of a diverged run
