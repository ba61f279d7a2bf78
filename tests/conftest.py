"""Fixtures shared by the test modules: tiny real models and tokenizers built offline from configs, the inputs
of the command-line tests, and one full demo run. The helpers behind them are in helpers/."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
import torch
from helpers import REPO, REQUIRED_ON_CI
from helpers.commands import DEMO_RUN_LOG, snakemake
from helpers.decoders import decoder_config
from helpers.models import SENTENCES, add_module, make_model, make_tokenizer, save_model
from helpers.slurm import SLURM_UP, SLURM_WHY
from helpers.training import ARCHS, make_training_tokenizer, tiny_config

if REQUIRED_ON_CI and not SLURM_UP:
    raise pytest.UsageError(f"TRANSMOD_CI=1 but the test cluster is not usable: {SLURM_WHY}")


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


@pytest.fixture(scope="session")
def training_tokenizer():
    return make_training_tokenizer()


@pytest.fixture(scope="session")
def training_models(tmp_path_factory, training_tokenizer) -> dict[str, Path]:
    """Tiny base models saved as local folders (weights + the training tokenizer), one per architecture."""
    from transformers import AutoModel

    root = tmp_path_factory.mktemp("models")
    out = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        model = AutoModel.from_config(tiny_config(arch))
        model.save_pretrained(root / arch)
        training_tokenizer.save_pretrained(root / arch)
        out[arch] = root / arch
    return out


def _peft_lora(base, path: Path) -> None:
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    lora.save_pretrained(path)


@pytest.fixture(scope="module")
def cli_sandbox(tmp_path_factory) -> Path:
    """Inputs of the command line (tiny real models, modules, samples, alignment files) in inputs/, beside
    unrelated user files that no command may touch."""
    from transmod.cli import main

    root = tmp_path_factory.mktemp("sandbox")
    m = root / "inputs"
    save_model(make_model("bert", 4), m / "teacher")
    save_model(make_model("distilbert", 2), m / "student")
    save_model(make_model("xlm-roberta", 4, hidden=24), m / "wide")
    save_model(make_model("xlm-roberta", 2, hidden=16), m / "narrow")
    add_module(make_model("bert", 4), "adapter").save_adapter(str(m / "adapter"), "task", use_safetensors=True)
    add_module(make_model("bert", 4), "lora").save_adapter(str(m / "lora"), "task", use_safetensors=True)
    _peft_lora(make_model("bert", 4), m / "peft")
    (m / "text.txt").write_text("\n".join(SENTENCES[:30]) + "\n")
    (m / "other.txt").write_text("\n".join(SENTENCES[30:]) + "\n")
    (m / "garbage.bin").write_bytes(bytes(range(256)) * 8)
    ok = lambda *argv: main([str(a) for a in argv]) == 0  # noqa: E731
    for name, model, data in (("t", "teacher", "text"), ("s", "student", "text"), ("o", "student", "other")):
        assert ok("sample", "--model", m / model, "--peft", "adapter", "--data", m / f"{data}.txt", "--out", m / f"{name}.parquet")
    assert ok("correlate", "--teacher", m / "t.parquet", "--student", m / "s.parquet", "--mapping", "skip",
              "--out", m / "corr.safetensors")
    assert ok("assign", "--correlation", m / "corr.safetensors", "--out", m / "lsa.safetensors")
    assert ok("transfer", "--module", m / "adapter", "--teacher-model", m / "teacher", "--student-model", m / "student",
              "--mapping", "skip", "--out", m / "moved")
    # unrelated user files, which no case may touch
    (root / "notes.txt").write_text("my notes\n")
    (root / "mydata").mkdir()
    (root / "mydata" / "keep.csv").write_text("a,b\n1,2\n")
    (root / "results.json").write_text('{"mine": true}\n')
    (root / "home").mkdir()
    (root / "home" / ".bashrc").write_text("export X=1\n")
    (root / "link.json").symlink_to(root / "notes.txt")
    return root


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> dict[str, str]:
    """config.json-only model folders: what the validation reads before any job; and local task data."""
    from transmod_demo.language import (
        DEMO_TASKS,
        generate_task_data,
        write_demo_dataset,
    )

    from transmod.train.data import write_hub_folder

    root = tmp_path_factory.mktemp("configs")
    out = {}
    for name, (kind, layers, hidden) in {"t": ("bert", 4, 24), "s": ("distilbert", 2, 24), "w": ("xlm-roberta", 4, 32),
                                         "n": ("xlm-roberta", 2, 16)}.items():
        make_model(kind, layers, hidden=hidden).config.save_pretrained(root / name)
        out[name] = str(root / name)
    decoder_config("llama").save_pretrained(root / "d")  # a decoder LLM
    out["d"] = str(root / "d")
    (root / "bad").mkdir()
    (root / "bad" / "config.json").write_text("{oops")
    out["bad"] = str(root / "bad")
    # task data in hub layout: demo part-of-speech tags, and a copy with a label id past the 17 names
    sizes = {"train": 4, "validation": 2, "test": 2}
    out["pos"] = str(write_demo_dataset(DEMO_TASKS["pos"], root / "pos", ["en"], sizes))
    rows = generate_task_data("pos", ["en"], 4, 2, 2)
    rows[("en", "test")][1]["upos"][0] = 17
    out["pos-bad-ids"] = str(write_hub_folder(root / "pos-bad-ids", DEMO_TASKS["pos"], rows))
    return out


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """One full demo run with the README's local profile in a scratch working directory, its snakemake
    output in DEMO_RUN_LOG. (test_slurm.py runs one of its grid cells through the test cluster.)"""
    work = tmp_path_factory.mktemp("demo")
    (work / "profiles").symlink_to(REPO / "profiles")
    done = snakemake("--profile", REPO / "profiles" / "demo", cwd=work, timeout=1800)
    (work / DEMO_RUN_LOG).write_text(done.stdout)
    return work
