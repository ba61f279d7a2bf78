"""Your own study through config.yaml alone: two declared tasks run through the workflow end to end.

The workflow is copied as a user clones it, with a config.yaml of their own: the demo's BERT teacher and
DistilBERT student (built by the `demo` fixture), and an ALBERT pair of other widths and depths, on a
part-of-speech task (17 UPOS tags, label names read from the data's ClassLabel) in a local folder, and a
single-sentence topic task (macro-F1) that comes through a local stand-in for the hub (`LocalHub`, as in test_assets.py). The tables name both from their
declarations, and `transmod tables` regenerates them from the plan alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO
from helpers.commands import TRANSMOD, run_snakemake
from helpers.localhub import LocalHub
from transmod_demo.language import DEMO_TASKS, UPOS, folder_texts, write_demo_dataset
from transmod_demo.models import pretrain_mlm
from transmod_demo.tokenizer import MAX_LENGTH

from transmod.train.tasks import declare_task

SIZES = {"train": 320, "validation": 80, "test": 80}
CUSTOM_TASKS = {
    "pos": {"dataset": "data/pos", "languages": ["en"], "kind": "token-classification", "text_columns": ["tokens"],
            "label_column": "upos", "metric": "accuracy", "title": "Part-of-speech tagging"},
    "topic": {"dataset": "lab/topics", "languages": ["en"], "kind": "sequence-classification", "text_columns": ["text"],
              "label_column": "label", "metric": "macro_f1", "labels": ["person", "organisation", "thing"],
              "config": None, "label": "TOPIC", "title": "Sentence topic"},
}
CONFIG = {
    "pairs": {"mine": {"teacher": "models/teacher", "student": "models/student", "aligned": False,
                       "tasks": ["pos", "topic"]},
              # ALBERT runs one layer at every depth: a 4-deep, 64-wide teacher and a 2-deep, 48-wide student
              "shared": {"teacher": "models/albert-teacher", "student": "models/albert-student", "aligned": True,
                         "tasks": ["pos"]}},
    "tasks": CUSTOM_TASKS,
    "peft": ["lora"],
    "inits": ["default", "skip"],
    "seeds": [1],
    "modules": {"adapter": {"bottleneck": 16}, "lora": {"r": 4, "alpha": 8}},
    "training": {"teacher": {"learning_rate": 5.0e-3, "batch_size": 16, "epochs": 6, "max_length": 64},
                 "student": {"learning_rate": 5.0e-3, "batch_size": 16, "epochs": 3, "max_length": 64}},
    "sampling": {"split": "train", "max_tokens": 2000, "batch_size": 32},
    "alignment": {"lora_b": "study", "holdout": 0.2, "methods": ["lsa"]},
}


def _albert_pair(demo: Path, out: Path) -> None:
    """Two ALBERT models on the demo's tokenizer, each with the demo's short MLM pre-training."""
    import torch
    from transformers import AlbertConfig, AlbertModel, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(demo / "tokenizer")
    texts = folder_texts({"ner": demo / "data" / "ner"}, {"ner": ["en"]})
    for role, (layers, hidden, heads, seed) in {"teacher": (4, 64, 4, 3), "student": (2, 48, 3, 4)}.items():
        torch.manual_seed(seed)
        model = AlbertModel(AlbertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, embedding_size=32,
                                         hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                         intermediate_size=2 * hidden, max_position_embeddings=MAX_LENGTH))
        pretrain_mlm(model, tokenizer, texts, 150, seed).save_pretrained(out / f"albert-{role}")
        tokenizer.save_pretrained(out / f"albert-{role}")


@pytest.fixture(scope="module")
def study(tmp_path_factory, demo):
    work = tmp_path_factory.mktemp("own-study")
    shutil.copy(REPO / "Snakefile", work / "Snakefile")
    for folder in ("workflow", "src"):
        shutil.copytree(REPO / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    for role, name in (("teacher", "teacher-bert"), ("student", "student-distilbert")):
        shutil.copytree(demo / "resources" / "demo" / "models" / name, work / "models" / role)
    _albert_pair(demo / "resources" / "demo", work / "models")
    pos, topic = (declare_task(name, spec) for name, spec in CUSTOM_TASKS.items())
    write_demo_dataset(pos, work / "data" / "pos", ["en"], SIZES)
    hub_root = tmp_path_factory.mktemp("hub")
    write_demo_dataset(topic, hub_root / "datasets" / "lab" / "topics", ["en"], SIZES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    with LocalHub(hub_root) as hub:
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(work / "hf-home"))
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            done = run_snakemake(["-s", work / "Snakefile", "--cores", "2"], work, timeout=1500)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        requests = list(hub.requests)
    assert done.returncode == 0, done.stdout[-8000:]
    return work, requests


def test_declared_tasks_run_end_to_end_with_their_tables(study):
    work, requests = study
    assert any("/datasets/lab/topics" in path for _, path in requests)  # the topic data came through the hub
    tables = work / "results" / "tables"
    assert (tables / "pos.md").read_text().startswith("## Part-of-speech tagging: test accuracy x 100, per language")
    assert (tables / "topic.md").read_text().startswith("## Sentence topic: test macro-F1 x 100, per language")
    summary = pd.read_csv(tables / "summary.csv")  # one row per setting, module, model and task
    assert set(zip(summary.task, summary.metric)) == {("pos", "accuracy"), ("topic", "macro_f1")}
    text = (tables / "summary.md").read_text()
    assert "| POS AVG |" in text and "| TOPIC AVG |" in text and "(accuracy for POS; macro-F1 for TOPIC)" in text
    runs = work / "results" / "runs" / "mine"
    for task, metric, chance in (("pos", "accuracy", 1 / len(UPOS)), ("topic", "macro_f1", 1 / 3)):
        teacher = json.loads((runs / task / "en" / "lora" / "teacher" / "seed1" / "metrics.json").read_text())
        assert teacher["metric"] == metric and teacher["score"] == teacher[metric]
        assert teacher["score"] > chance + 0.2, (task, teacher["score"])  # the teacher learned the task
        for init in ("default", "skip"):
            assert (runs / task / "en" / "lora" / f"student-{init}" / "seed1" / "metrics.json").is_file()
    teacher_run = next((work / "results" / "teachers").glob("*/pos/en/lora/seed1"))  # keyed by the model
    shared = work / "results" / "runs" / "shared" / "pos" / "en" / "lora"
    albert = json.loads((shared / "teacher" / "seed1" / "metrics.json").read_text())
    assert albert["score"] > 1 / len(UPOS) + 0.2, albert["score"]
    assert "### shared: models/albert-teacher → models/albert-student" in (tables / "pos.md").read_text()
    moved = json.loads((work / "results" / "transferred" / "shared" / "pos" / "en" / "lora" / "skip" / "seed1" /
                        "adapter_config.json").read_text())
    assert moved["config"]["leave_out"] == [] and moved["hidden_size"] == 48  # ALBERT's one module, 64 -> 48 wide
    assert "| shared | lora | skip | lsa |" in (tables / "fidelity.md").read_text()
    predictions = json.loads((teacher_run / "test_predictions.json").read_text())
    assert predictions["labels"] == list(UPOS)  # not declared: the data's ClassLabel names
    assert DEMO_TASKS["pos"].labels == UPOS


def test_transmod_tables_regenerates_the_declared_tables_from_the_plan(study, tmp_path):
    work, _ = study
    copy = tmp_path / "results"
    shutil.copytree(work / "results", copy, ignore=shutil.ignore_patterns("tables", "plots"))
    done = subprocess.run([TRANSMOD, "tables", str(copy)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("summary.md", "pos.md", "topic.md", "topic.csv"):
        assert (copy / "tables" / name).read_text() == (work / "results" / "tables" / name).read_text(), name
