"""The `transmod` verbs on decoder LLMs (tiny saved model folders and a peft LoRA folder), and bad input."""

import json

import pytest
import torch
from helpers.commands import run_cli
from helpers.decoders import (
    SITES,
    load_peft,
    logits,
    make_decoder,
    make_decoder_tokenizer,
    peft_lora,
    save_decoder,
)
from helpers.models import SENTENCES

from transmod.align.samplefile import SampleFile
from transmod.cli import main

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    teacher = make_decoder("qwen2", layers=4)
    paths = {
        "teacher": save_decoder(teacher, root / "qwen-t"),
        "student": save_decoder(make_decoder("qwen2", layers=2, hidden=48, heads=6, intermediate=96, seed=4), root / "qwen-s"),
        "llama": save_decoder(make_decoder("llama", layers=2), root / "llama"),
        "alien": save_decoder(make_decoder("qwen2", layers=2, seed=6), root / "alien",
                              tokenizer=make_decoder_tokenizer(words=[f"tok{i}" for i in range(40)])),
        "text": root / "text.txt",
    }
    paths["text"].write_text("\n".join(SENTENCES) + "\n")
    peft_lora(teacher, root / "lora")
    peft_lora(teacher, root / "lora-head", targets=["q_proj", "lm_head"])
    paths.update(lora=str(root / "lora"), lora_head=str(root / "lora-head"))
    return paths


def _student(folders):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folders["student"]).eval()


def test_step_by_step_verbs_then_fidelity(folders, tmp_path, capsys):
    code, out, err = run_cli(capsys, "sample", "--model", folders["student"], "--peft", "lora", "--data", folders["text"],
                             "--out", tmp_path / "bad.parquet", "--dtype", "float16")
    assert code != 0 and "--dtype 'float16': give one of float32, bfloat16" in err and not (tmp_path / "bad.parquet").exists()
    for who, dtype in (("teacher", "float32"), ("student", "bfloat16")):  # one pair may mix them
        code, out, err = run_cli(capsys, "sample", "--model", folders[who], "--peft", "lora", "--data", folders["text"],
                                 "--out", tmp_path / f"{who}.parquet", "--dtype", dtype)
        assert code == 0 and SampleFile.open(tmp_path / f"{who}.parquet").dtype == dtype, err
    pair = ["--teacher", tmp_path / "teacher.parquet", "--student", tmp_path / "student.parquet", "--mapping", "skip",
            "--teacher-model", folders["teacher"], "--student-model", folders["student"], "--holdout", "0.2"]
    assert run_cli(capsys, "correlate", *pair, "--out", tmp_path / "c.safetensors")[0] == 0
    code, out, err = run_cli(capsys, "assign", "--correlation", tmp_path / "c.safetensors", "--out", tmp_path / "lsa.safetensors")
    assert code == 0 and "[a]: mean matched r" in out and "[m]: mean matched r" in out, err
    assert run_cli(capsys, "fit-alignment", *pair, "--method", "procrustes", "--out", tmp_path / "p.safetensors")[0] == 0
    for name in ("lsa", "p"):
        code, out, err = run_cli(capsys, "transfer", "--module", folders["lora"], "--teacher-model", folders["teacher"],
                             "--student-model", folders["student"], "--mapping", "skip", "--alignment",
                             tmp_path / f"{name}.safetensors", "--out", tmp_path / f"moved-{name}")
        assert code == 0, err
        assert torch.isfinite(logits(load_peft(_student(folders), tmp_path / f"moved-{name}"))).all()
        code, out, err = run_cli(capsys, "fidelity", "--module", folders["lora"], "--transferred", tmp_path / f"moved-{name}",
                             "--teacher", tmp_path / "teacher.parquet", "--student", tmp_path / "student.parquet",
                             "--mapping", "skip", "--out", tmp_path / f"fidelity-{name}.json")
        assert code == 0 and "relative error" in out, err
        result = json.loads((tmp_path / f"fidelity-{name}.json").read_text())
        assert {d["site"] for d in result["layers"]} == set(SITES) and {d["student_layer"] for d in result["layers"]} == {0, 1}


@pytest.mark.parametrize("extra", [[], ["--align", "linear"], ["--mapping", "cka"]])
def test_one_shot_transfer_with_samples_from_plain_text(folders, tmp_path, capsys, extra):
    mapping = [] if "--mapping" in extra else ["--mapping", "skip"]
    code, out, err = run_cli(capsys, "transfer", "--module", folders["lora"], "--teacher-model", folders["teacher"],
                         "--student-model", folders["student"], *mapping, *extra, "--samples", folders["text"],
                         "--out", tmp_path / "out")
    assert code == 0, err
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(SITES)
    moved = load_peft(_student(folders), tmp_path / "out")
    assert torch.isfinite(logits(moved)).all() and (logits(moved) - logits(_student(folders))).abs().max() > 1e-3


def test_a_qwen2_lora_moves_to_a_llama_student_from_plain_text(folders, tmp_path, capsys):
    """Across families, one shot: the moved LoRA targets the Llama's projections and loads with peft's plain call."""
    from transformers import AutoModelForCausalLM

    code, out, err = run_cli(capsys, "transfer", "--module", folders["lora"], "--teacher-model", folders["teacher"],
                             "--student-model", folders["llama"], "--mapping", "skip", "--samples", folders["text"],
                             "--out", tmp_path / "out")
    assert code == 0, err
    student = AutoModelForCausalLM.from_pretrained(folders["llama"]).eval()
    before = logits(student)
    moved = load_peft(student, tmp_path / "out")
    assert moved.base_model.model.config.model_type == "llama"
    assert torch.isfinite(logits(moved)).all() and (logits(moved) - before).abs().max() > 1e-3


def test_without_samples_a_narrower_student_falls_back_to_the_embedding_alignment(folders, tmp_path, capsys):
    code, out, err = run_cli(capsys, "transfer", "--module", folders["lora"], "--teacher-model", folders["teacher"],
                         "--student-model", folders["student"], "--mapping", "skip", "--out", tmp_path / "out")
    assert code == 0 and "--align embed" in err, err
    assert json.loads((tmp_path / "out" / "transmod.json").read_text())["align"] == "embed"
    assert torch.isfinite(logits(load_peft(_student(folders), tmp_path / "out"))).all()


def test_help_shows_a_llama_and_a_qwen_pair(capsys):
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    text = capsys.readouterr().out
    assert "Qwen/Qwen2.5-7B --student-model Qwen/Qwen2.5-1.5B" in text and "meta-llama/Llama-3.2-3B" in text


def _refused(capsys, tmp_path, *argv):
    code, out, err = run_cli(capsys, *argv, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    return err


def test_bad_input_is_one_line_and_leaves_nothing(folders, tmp_path, capsys):
    transfer = ["transfer", "--mapping", "skip"]
    err = _refused(capsys, tmp_path, *transfer, "--module", folders["lora_head"], "--teacher-model", folders["teacher"],
                   "--student-model", folders["teacher"])
    assert "LoRA on lm_head cannot be moved" in err
    err = _refused(capsys, tmp_path, *transfer, "--module", folders["lora"], "--teacher-model", folders["teacher"],
                   "--student-model", folders["alien"], "--align", "embed")
    assert "too little vocabulary for --align embed" in err
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50)).save_pretrained(tmp_path / "gpt2")
    err = _refused(capsys, tmp_path, *transfer, "--module", folders["lora"], "--teacher-model", folders["teacher"],
                   "--student-model", tmp_path / "gpt2")
    assert "unsupported architecture 'gpt2'" in err and "gemma3_text" in err
    err = _refused(capsys, tmp_path, *transfer, "--module", folders["lora"], "--teacher-model", folders["teacher"],
                   "--student-model", folders["student"], "--format", "adapters")
    assert "give --format peft" in err
