"""The GPU lane: runs only where CUDA is present (skipped elsewhere, with the reason in pytest's summary).

Training on CUDA uses bf16 autocast (fp16 with loss scaling where bf16 is missing) and TF32; a
killed run resumes from its checkpoint, and its metrics match the fp32 CPU run within tolerance.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers.training import FAST, Killed, kill_at, pi_data

from transmod.train.config import TrainConfig
from transmod.train.files import HISTORY_FILE, PREDICTIONS_FILE, STATE_DIR
from transmod.train.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU lane is skipped")


def test_bf16_training_resumes_and_matches_the_cpu_run(training_models, tmp_path, monkeypatch):
    splits = pi_data(60, 0), pi_data(20, 1), pi_data(20, 2)
    cfg = TrainConfig(seed=4, checkpoint_every=3, **{**FAST, "epochs": 3})
    whole = train(training_models["bert"], "pi", "lora", *splits, cfg, tmp_path / "gpu", threads=1)
    assert whole["environment"]["device"] != "cpu" and whole["environment"]["precision"].split()[0] in ("bf16", "fp16")

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        train(training_models["bert"], "pi", "lora", *splits, cfg, out, threads=1, step_callback=kill_at(5))
    assert (out / STATE_DIR / "LATEST").is_file() and not (out / PREDICTIONS_FILE).exists()
    resumed = train(training_models["bert"], "pi", "lora", *splits, cfg, out, threads=1)
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["best_val_metric"] == pytest.approx(whole["best_val_metric"], abs=0.05)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same run in fp32 on the CPU
    cpu = train(training_models["bert"], "pi", "lora", *splits, cfg, tmp_path / "cpu", threads=1)
    assert cpu["environment"]["precision"] == "fp32"
    losses = [json.loads((tmp_path / d / HISTORY_FILE).read_text())["epochs"][-1]["train_loss"] for d in ("gpu", "cpu")]
    assert losses[0] == pytest.approx(losses[1], rel=0.05)
    assert whole["best_val_metric"] == pytest.approx(cpu["best_val_metric"], abs=0.1)
