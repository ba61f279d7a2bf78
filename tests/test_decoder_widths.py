"""Decoder pairs of different widths, head counts and MLP sizes: every method moves the LoRA, peft loads it,
the student runs, and fidelity is measured per layer and per target module."""

import math

import pytest
import torch
from helpers.decoders import (
    SITES,
    decoder_samples,
    load_peft,
    logits,
    make_decoder,
    peft_lora,
)

from transmod.align.alignment import assign_correlation, fit_alignment, select_alignment
from transmod.align.correlation import correlate_samples
from transmod.align.fidelity import transfer_fidelity
from transmod.align.methods import grid_methods
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import model_shape
from transmod.modules.io import read_module

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    teacher = make_decoder("qwen2", layers=4, hidden=64, heads=8, kv=2, intermediate=128)
    student = make_decoder("qwen2", layers=2, hidden=48, heads=6, kv=2, intermediate=96, seed=5)
    peft_lora(teacher, root / "teacher")
    return dict(teacher=teacher, student=student, samples=decoder_samples((teacher, student), root), lora=root / "teacher",
                shapes=(model_shape(teacher.config, "t"), model_shape(student.config, "s")))


def _alignment(pair, method):
    t, s = pair["samples"]
    if method == "lsa":
        return assign_correlation(correlate_samples(t, s, "skip", holdout=0.2))
    return fit_alignment(t, s, "skip", method, holdout=0.2)


@pytest.mark.parametrize("method", grid_methods())
def test_every_method_moves_a_lora_to_a_narrower_student_that_peft_loads_and_runs(pair, tmp_path, method):
    alignment = _alignment(pair, method)
    heads = alignment.get(0, "a")
    assert heads is not None and len(heads.sigma) == 6 * 8 and len(alignment.get(1, "kv").sigma) == 2 * 8
    groups = heads.sigma.reshape(6, 8)[:, 0] // 8 // 4  # the teacher group of each student query head
    assert sorted(groups[:3]) == [groups[0]] * 3 and sorted(groups[3:]) == [groups[3]] * 3 and groups[0] != groups[3]
    teacher, student = pair["shapes"]
    transfer_module(pair["lora"], teacher, student, "skip", tmp_path / "out", alignment, fmt="peft")
    moved = load_peft(pair["student"], tmp_path / "out")
    got = logits(moved)
    assert torch.isfinite(got).all() and (got - logits(pair["student"])).abs().max() > 1e-3
    result = transfer_fidelity(read_module(pair["lora"], teacher), read_module(tmp_path / "out", student),
                               *pair["samples"], "skip", holdout=0.2)
    assert result["method"] == method and result["heldout_tokens"] > 0
    assert {(d["student_layer"], d["site"]) for d in result["layers"]} == {(l, s) for l in (0, 1) for s in SITES}
    spaces = {d["site"]: d["space"] for d in result["layers"]}
    assert spaces == {"q_proj": "a", "k_proj": "kv", "v_proj": "kv", "o_proj": "f", "gate_proj": "m", "up_proj": "m",
                      "down_proj": "h"}
    for d in result["layers"]:
        assert math.isfinite(d["rel_error"]) and -1 <= d["cosine"] <= 1 and 0 <= d["cka"] <= 1 + 1e-9, d
    print(f"{method}: overall {result['overall']}")


def test_fidelity_tells_a_fitted_alignment_from_an_unrelated_one(pair, tmp_path):
    """linear, fitted on the samples, reproduces the teacher's effects better than data-free select does."""
    teacher, student = pair["shapes"]
    errors = {}
    for method in ("lsa", "linear", "select"):
        out = tmp_path / method
        transfer_module(pair["lora"], teacher, student, "skip", out, _alignment(pair, method), fmt="peft")
        result = transfer_fidelity(read_module(pair["lora"], teacher), read_module(out, student), *pair["samples"], "skip",
                                   holdout=0.2)
        errors[method] = result["overall"]["rel_error"]
    assert errors["linear"] < errors["select"], errors


def test_a_pair_whose_head_dim_differs_is_refused_naming_the_supported_case(tmp_path):
    teacher = model_shape(make_decoder("llama", heads=8, head_dim=8).config, "t").describe()
    student = model_shape(make_decoder("llama", hidden=48, heads=6, head_dim=6).config, "s").describe()
    with pytest.raises(TransmodError, match="heads of 8 dimensions and s of 6.*whose head_dim agrees") as err:
        select_alignment(teacher, student, "skip", ("h", "f", "a", "m"))
    assert "\n" not in str(err.value)


def test_a_student_with_more_heads_per_group_is_refused():
    teacher = model_shape(make_decoder("llama", heads=8, kv=4).config, "t").describe()
    student = model_shape(make_decoder("llama", hidden=48, heads=6, kv=2).config, "s").describe()
    with pytest.raises(TransmodError, match="2 key/value heads of 3 query heads each, more than t's 4 of 2"):
        select_alignment(teacher, student, "skip", ("h", "f", "a", "m"))


def test_unaligned_transfer_between_different_widths_asks_for_samples(pair, tmp_path):
    teacher, student = pair["shapes"]
    with pytest.raises(TransmodError, match="differ in width: give --samples"):
        transfer_module(pair["lora"], teacher, student, "skip", tmp_path / "out", fmt="peft")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["lsa-signed", "linear"])
def test_passes_over_chunks_of_layers_fit_what_one_pass_fits(pair, monkeypatch, method):
    """Wide models' statistics are accumulated a few layers per pass (bounded memory): the same maps."""
    from transmod.align import correlation

    t, s = pair["samples"]
    shapes = t.describe(), s.describe(), ["h", "f", "a", "m"]
    assert correlation.layer_chunks(*shapes, moments=True) == [[0, 1]]
    whole = fit_alignment(t, s, "skip", method, holdout=0.2)
    monkeypatch.setattr(correlation, "STATISTICS_BUDGET", 1)  # one layer per pass
    assert correlation.layer_chunks(*shapes, moments=True) == [[0], [1]]
    chunked = fit_alignment(t, s, "skip", method, holdout=0.2)
    assert [(m.student_layer, m.space) for m in chunked.layers] == [(m.student_layer, m.space) for m in whole.layers]
    for a, b in zip(whole.layers, chunked.layers):
        for name in ("sigma", "sign", "m_in", "m_out", "offset"):
            x, y = getattr(a, name, None), getattr(b, name, None)
            assert (x is None) == (y is None) and (x is None or (x == y).all()), (a.space, name)
