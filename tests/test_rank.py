"""Rank kept under dense maps (docs/method.md section 6): a LoRA folded through `linear` or `procrustes` is its
folded update refactorised to rank r by SVD (AVG: the mean of the group's updates, truncated), and a bottleneck
adapter keeps its bottleneck. Checked against numpy's SVD computed here, on real models and modules."""

import copy
import json

import numpy as np
import pytest
import torch
from helpers.models import SENTENCES, add_module, make_model, make_tokenizer
from safetensors.torch import load_file

from transmod.align.alignment import LayerMap, fit_alignment
from transmod.align.methods import METHODS, grid_methods

DENSE_METHODS = [name for name, m in METHODS.items() if m.dense]
from transmod.align.samplefile import SampleFile
from transmod.align.sampling import sample_hidden_states
from transmod.align.transfer import low_rank, transfer, transfer_module
from transmod.modules.architectures import model_shape
from transmod.modules.io import read_module

RANK = 4  # helpers.models.add_module's LoRA rank
SITES = ("query", "value")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 4-layer, 24-wide teacher with a LoRA and an adapter, a 2-layer, 16-wide student, and their samples."""
    tmp = tmp_path_factory.mktemp("rank")
    wide, narrow = make_model("bert", 4, hidden=24), make_model("bert", 2, hidden=16, seed=5)
    out = {"tmp": tmp, "student": narrow, "shapes": (model_shape(wide.config, "t"), model_shape(narrow.config, "s"))}
    for peft in ("lora", "adapter"):
        add_module(copy.deepcopy(wide), peft, bottleneck=6).save_adapter(str(tmp / peft), "task", use_safetensors=True)
        files = [tmp / f"{who}-{peft}.parquet" for who in "ts"]
        for file, (who, model) in zip(files, (("t", wide), ("s", narrow))):
            sample_hidden_states(model, make_tokenizer(), [(s,) for s in SENTENCES], {peft: file}, model_name=who)
        out[peft] = [SampleFile.open(f) for f in files]
    return out


def _maps(lm: LayerMap, d_t: int) -> tuple[np.ndarray, np.ndarray]:
    """(M_in, M_out) as dense matrices, a selection's built from sigma and sign as the convention states."""
    if lm.sigma is None:
        return lm.m_in.astype(np.float64), lm.m_out.astype(np.float64)
    m_in = np.zeros((d_t, len(lm.sigma)))
    m_in[lm.sigma, np.arange(len(lm.sigma))] = 1.0 if lm.sign is None else lm.sign
    return m_in, m_in.T


def _folded_updates(module, alignment, l: int, site: str) -> np.ndarray:
    """mean_i (M_out B_i)(A_i M_in) over the teacher layers of student layer l: the exact mapped AVG update."""
    lm = alignment.get(l, "h")
    m_in, m_out = _maps(lm, module.weights[(0, site, "lora_A")].shape[1])
    return np.mean([m_out @ module.weights[(t, site, "lora_B")].astype(np.float64)
                    @ module.weights[(t, site, "lora_A")].astype(np.float64) @ m_in
                    for t in lm.teacher_layers], axis=0)


def _move(pair, mapping: str, method: str):
    module = read_module(pair["tmp"] / "lora", pair["shapes"][0])
    alignment = fit_alignment(*pair["lora"], mapping, method)
    return module, alignment, transfer(module, *pair["shapes"], mapping, alignment)


def _best_rank_r(p: np.ndarray) -> np.ndarray:
    u, s, vt = np.linalg.svd(p)
    return (u[:, :RANK] * s[:RANK]) @ vt[:RANK]


@pytest.mark.parametrize("method", DENSE_METHODS)
def test_avg_under_a_dense_map_is_the_best_rank_r_approximation_of_the_mean_folded_update(pair, method):
    module, alignment, moved = _move(pair, "avg", method)
    for l in range(2):
        assert len(alignment.get(l, "h").teacher_layers) == 2
        for site in SITES:
            b, a = (moved.weights[(l, site, p)].astype(np.float64) for p in ("lora_B", "lora_A"))
            assert b.shape == (16, RANK) and a.shape == (RANK, 16)
            p = _folded_updates(module, alignment, l, site)
            s = np.linalg.svd(p, compute_uv=False)
            assert s[RANK] > 1e-3 * s[0]  # the mean of two rank-4 updates has rank above 4: truncation is real
            got = b @ a
            assert np.linalg.svd(got, compute_uv=False)[RANK:].max() <= 1e-6 * s[0]  # rank exactly r
            np.testing.assert_allclose(got, _best_rank_r(p), rtol=0, atol=1e-5 * s[0])
            np.testing.assert_allclose(b.T @ b, a @ a.T, rtol=0, atol=1e-5 * s[0])  # balanced: both sqrt(S)
            assert np.allclose(b.T @ b, np.diag(s[:RANK]), atol=1e-5 * s[0])
    assert moved.config["config"]["r"] == RANK and moved.config["config"]["alpha"] == module.config["config"]["alpha"]


@pytest.mark.parametrize("method", grid_methods())
def test_skip_refactorisation_reproduces_the_folded_product_exactly(pair, method):
    module, alignment, moved = _move(pair, "skip", method)
    for l in range(2):
        for site in SITES:
            b, a = (moved.weights[(l, site, p)] for p in ("lora_B", "lora_A"))
            p = _folded_updates(module, alignment, l, site)
            np.testing.assert_allclose(b.astype(np.float64) @ a, p, rtol=0, atol=1e-6 * np.abs(p).max())
            lm = alignment.get(l, "h")
            if method in DENSE_METHODS:  # refactorised: balanced factors
                np.testing.assert_allclose(b.T @ b, a @ a.T, rtol=0, atol=1e-5 * np.abs(p).max())
            else:  # a selection folds as the study's permutation: bit for bit, factors untouched
                t = lm.teacher_layers[0]
                want_a = module.weights[(t, site, "lora_A")][:, lm.sigma] * (1 if lm.sign is None else lm.sign)
                assert np.array_equal(a, want_a.astype(a.dtype))


@pytest.mark.parametrize("fmt", ["adapters", "peft"])
def test_the_refactorised_lora_is_written_as_computed(pair, fmt):
    module, alignment, moved = _move(pair, "avg", "linear")
    out = pair["tmp"] / f"written-{fmt}"
    transfer_module(pair["tmp"] / "lora", *pair["shapes"], "avg", out, alignment=alignment, fmt=fmt)
    written = read_module(out, pair["shapes"][1])
    assert written.weights.keys() == moved.weights.keys()
    assert all(np.array_equal(written.weights[k], moved.weights[k]) for k in moved.weights)


def test_lsa_avg_keeps_the_study_weight_average(pair):
    """The study's AVG averages the weights (not the updates); `lsa` keeps it for reproduction."""
    module, alignment, moved = _move(pair, "avg", "lsa")
    for l in range(2):
        lm = alignment.get(l, "h")
        for site in SITES:
            mean = np.mean([module.weights[(t, site, "lora_A")] for t in lm.teacher_layers], axis=0, dtype=np.float64)
            assert np.array_equal(moved.weights[(l, site, "lora_A")], mean.astype(np.float32)[:, lm.sigma])


def test_low_rank_of_an_already_low_rank_product_changes_nothing_and_keeps_every_direction_trainable():
    rng = np.random.default_rng(0)
    b, a = rng.normal(size=(12, RANK)), rng.normal(size=(RANK, 10))
    b[:, 1] = 0.0  # a product of rank r - 1
    b2, a2 = low_rank(b, a, RANK)
    np.testing.assert_allclose(b2 @ a2, b @ a, rtol=0, atol=1e-12)
    assert (np.linalg.norm(a2, axis=1) > 0.1).all()  # the lost direction keeps a row of A', so B' can learn it
    assert (np.linalg.norm(b2, axis=0) < 1e-12).sum() == 1
    big_b, big_a = rng.normal(size=(12, 3 * RANK)), rng.normal(size=(3 * RANK, 10))  # rank 10 > r
    b3, a3 = low_rank(big_b, big_a, RANK)
    np.testing.assert_allclose(b3 @ a3, _best_rank_r(big_b @ big_a), rtol=0, atol=1e-10)


@pytest.mark.parametrize("mapping", ["skip", "avg"])
@pytest.mark.parametrize("method", DENSE_METHODS)
def test_a_dense_map_keeps_the_adapter_bottleneck(pair, mapping, method):
    import adapters

    out = pair["tmp"] / f"adapter-{mapping}-{method}"
    transfer_module(pair["tmp"] / "adapter", *pair["shapes"], mapping, out,
                    alignment=fit_alignment(*pair["adapter"], mapping, method))
    weights = load_file(out / "adapter.safetensors")
    for l in range(2):
        prefix = f"encoder.layer.{l}.output.adapters.task."
        assert weights[prefix + "adapter_down.0.weight"].shape == (6, 16)
        assert weights[prefix + "adapter_down.0.bias"].shape == (6,)
        assert weights[prefix + "adapter_up.weight"].shape == (16, 6)
    factor = json.loads((out / "adapter_config.json").read_text())["config"]["reduction_factor"]
    assert int(16 // factor) == 6  # as adapters sizes the bottleneck at the student's width
    student = copy.deepcopy(pair["student"])
    adapters.init(student)
    info = {}
    student.load_adapter(str(out), load_as="task", use_safetensors=True, loading_info=info)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    built = dict(student.named_parameters())  # adapters built the bottleneck from the written reduction_factor
    assert built["encoder.layer.1.output.adapters.task.adapter_down.0.weight"].shape == (6, 16)
    with torch.no_grad():
        assert torch.isfinite(student(**make_tokenizer()(SENTENCES[:2], return_tensors="pt", padding=True))
                              .last_hidden_state).all()
