"""The one-shot transfer streams: two models that share a tokenizer run side by side and accumulate the statistics
on the way, writing no sample file, and fit the alignment that `transmod sample` + `correlate`/`assign` or
`fit-alignment` give on the same examples and max_tokens; forward passes stay within a memory budget."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers.decoders import (
    make_decoder,
    make_decoder_tokenizer,
    peft_lora,
    save_decoder,
)
from helpers.models import SENTENCES, make_model, save_model

import transmod
from transmod.align import samplefile, sampling
from transmod.align.alignment import MAP_ARRAYS, assign_correlation, fit_alignment
from transmod.align.api import TransferNotice
from transmod.align.correlation import correlate_samples
from transmod.align.samplefile import SampleFile
from transmod.align.sampling import sample_model
from transmod.cli import main

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")
MAX_TOKENS = 300  # of the ~400 tokens in SENTENCES: the cut falls inside a batch


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """A 4-layer teacher, a narrower 2-layer student of its family (one tokenizer), a LoRA and a text file."""
    root = tmp_path_factory.mktemp("decoders")
    save_decoder(make_decoder("llama", layers=4), root / "teacher")
    save_decoder(make_decoder("llama", layers=2, hidden=48, heads=6, kv=2, intermediate=96, seed=5), root / "student")
    peft_lora(make_decoder("llama", layers=4), root / "lora", task_type="CAUSAL_LM")
    (root / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    return root


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """A 3-layer BERT teacher and a 2-layer student (one tokenizer), an adapters LoRA and a text file."""
    import adapters

    root = tmp_path_factory.mktemp("encoders")
    teacher = make_model("bert", 3)
    save_model(teacher, root / "teacher")
    save_model(make_model("bert", 2, seed=4), root / "student")
    adapters.init(teacher)
    teacher.add_adapter("task", config=adapters.LoRAConfig(r=4, alpha=8))
    teacher.save_adapter(str(root / "lora"), "task")
    (root / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    return root


def from_files(root, tmp_path, mapping, method, peft="lora"):
    """The alignment the separate steps give: sample each model to a file, then correlate + assign or fit."""
    examples = [(s,) for s in SENTENCES]
    files = [tmp_path / "t.parquet", tmp_path / "s.parquet"]
    for who, path in zip(("teacher", "student"), files):
        sample_model(str(root / who), examples, {peft: path}, max_tokens=MAX_TOKENS)
    pair = SampleFile.open(files[0]), SampleFile.open(files[1])
    return assign_correlation(correlate_samples(*pair, mapping)) if method == "lsa" else fit_alignment(*pair, mapping, method)


def one_shot(root, mapping, method, monkeypatch):
    """`transmod.transfer` with samples; fails the test if it writes any sample file."""
    def no_file(*args, **kwargs):
        raise AssertionError("the one-shot transfer of two models with one tokenizer wrote a sample file")

    monkeypatch.setattr(samplefile.SampleWriter, "__init__", no_file)
    moved = transmod.transfer(root / "lora", teacher=root / "teacher", student=root / "student", mapping=mapping,
                              samples=root / "text.txt", method=method, max_tokens=MAX_TOKENS)
    monkeypatch.undo()
    return moved.alignment


def assert_same_alignment(streamed, filed, exact: bool):
    meta = ("method", "mapping", "teacher", "student", "num_tokens", "ridge", "hook", "paired_share")
    assert {k: getattr(streamed, k) for k in meta} == {k: getattr(filed, k) for k in meta}
    assert [(m.student_layer, m.teacher_layers, m.space) for m in streamed.layers] == \
        [(m.student_layer, m.teacher_layers, m.space) for m in filed.layers]
    for got, want in zip(streamed.layers, filed.layers):
        for name in MAP_ARRAYS:
            a, b = getattr(got, name), getattr(want, name)
            assert (a is None) == (b is None), name
            if a is not None and (exact or name in ("sigma", "sign")):
                np.testing.assert_array_equal(a, b)
            elif a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert got.mean_r == pytest.approx(want.mean_r, abs=1e-6, nan_ok=True)


@pytest.mark.parametrize("mapping,method", [("skip", "lsa"), ("skip", "procrustes"), ("cka", "lsa"),
                                            ("cka", "procrustes"), ("avg", "linear")])
def test_decoder_one_shot_alignment_equals_the_sample_file_steps(decoders, tmp_path, monkeypatch, mapping, method):
    streamed = one_shot(decoders, mapping, method, monkeypatch)
    assert streamed.num_tokens == MAX_TOKENS
    assert_same_alignment(streamed, from_files(decoders, tmp_path, mapping, method), exact=False)


@pytest.mark.parametrize("method", ["lsa", "procrustes"])
def test_encoder_one_shot_alignment_equals_the_sample_file_steps(encoders, tmp_path, monkeypatch, method):
    streamed = one_shot(encoders, "skip", method, monkeypatch)
    assert_same_alignment(streamed, from_files(encoders, tmp_path, "skip", method), exact=False)


def test_a_one_shot_transfer_leaves_the_callers_autograd_as_it_was(encoders, monkeypatch):
    """The passes run without autograd; the caller's thread keeps it (a notebook trains right after), also when
    the token budget stops the passes before the text ends."""
    import torch

    one_shot(encoders, "skip", "lsa", monkeypatch)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_two_tokenizers_still_pair_tokens_through_sample_files(decoders, tmp_path, monkeypatch):
    """A student whose tokenizer differs (one more word) cannot pair rows one to one: the file path pairs spans."""
    student = tmp_path / "student"
    save_decoder(make_decoder("llama", layers=2), student, make_decoder_tokenizer(extra=("zz",)))
    written = []
    real = samplefile.SampleWriter.__init__
    monkeypatch.setattr(samplefile.SampleWriter, "__init__", lambda self, path, *a, **k: (written.append(path),
                                                                                          real(self, path, *a, **k))[1])
    moved = transmod.transfer(decoders / "lora", teacher=decoders / "teacher", student=student, mapping="skip",
                              samples=decoders / "text.txt", max_tokens=MAX_TOKENS)
    assert len(written) == 2 and moved.alignment.paired_share == 1.0


def test_passes_within_the_states_budget_sample_the_same_tokens_and_states(tmp_path, monkeypatch):
    """A budget of a few tokens' states cuts every batch into passes of one or two examples: same rows, same order,
    the same states (up to float rounding of other batch shapes)."""
    model, tok = make_decoder("llama"), make_decoder_tokenizer()
    examples = [(s,) for s in SENTENCES[:20]]
    tables = {}
    for name, budget in (("whole", sampling.STATES_BUDGET), ("cut", 1)):
        monkeypatch.setattr(sampling, "STATES_BUDGET", budget)
        sampling.sample_hidden_states(model.model, tok, examples, {"lora": tmp_path / f"{name}.parquet"},
                                      model_name="llama", batch_size=8)
        tables[name] = pq.read_table(tmp_path / f"{name}.parquet")
    whole, cut = tables["whole"], tables["cut"]
    assert whole.num_rows == cut.num_rows > 100
    for key in ("sent", "seq", "start", "end", "token"):
        assert whole[key].to_pylist() == cut[key].to_pylist()
    for column in (c for c in whole.column_names if c[0] in "hfam" and c[1:].isdigit()):
        np.testing.assert_allclose(samplefile.from_vectors(cut[column].combine_chunks()),
                                   samplefile.from_vectors(whole[column].combine_chunks()), rtol=1e-4, atol=1e-5)
    budget = sampling.pass_tokens(sampling.model_shape(model.config, "llama"))
    assert budget == 1  # one token's states exceed a 1-byte budget: a pass is one example


def test_the_cka_map_is_printed_and_recorded_in_the_module(decoders, tmp_path, capsys):
    """Which teacher layers `cka` chose is one line of `transmod transfer` and part of the written module."""
    out = tmp_path / "moved"
    assert main(["transfer", "--module", str(decoders / "lora"), "--teacher-model", str(decoders / "teacher"),
                 "--student-model", str(decoders / "student"), "--mapping", "cka", "--samples",
                 str(decoders / "text.txt"), "--max-tokens", str(MAX_TOKENS), "--out", str(out)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("transmod transfer:")]
    with pytest.warns(TransferNotice, match="--mapping cka chose teacher layers") as notices:
        moved = transmod.transfer(decoders / "lora", teacher=decoders / "teacher", student=decoders / "student",
                                  mapping="cka", samples=decoders / "text.txt", max_tokens=MAX_TOKENS)
    groups = moved.alignment.groups()
    assert len(groups) == 2 and groups[0][0] < groups[1][0] <= 3
    line = f"transmod transfer: --mapping cka chose teacher layers {groups[0][0]}, {groups[1][0]} for student layers 0 to 1"
    assert err == [line] and str(notices[0].message) == line.removeprefix("transmod transfer: ")
    assert json.loads((out / "transmod.json").read_text())["teacher_layers"] == groups
    assert moved.module.config["transmod"]["teacher_layers"] == groups
