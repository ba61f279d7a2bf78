"""Transfer fidelity: a training-free measure that tells the alignment methods apart."""

import copy
import json

import numpy as np
import pytest
from helpers.commands import run_cli
from helpers.models import add_module, encoder_samples, make_model, save_model

from transmod.align.alignment import Alignment, LayerMap, fit_alignment
from transmod.align.fidelity import (
    LinearCKA,
    module_effect,
    sample_shape,
    transfer_fidelity,
)
from transmod.align.samplefile import SampleFile, SampleWriter
from transmod.align.transfer import transfer_module, transfer_weights
from transmod.modules.architectures import ModelShape, model_shape
from transmod.modules.io import read_module
from transmod.modules.module import Module

D, LAYERS, TRAIN, TEST = 16, 2, 400, 100


def _write_samples(path, states, model, hook="adapter"):
    """A sample parquet of synthetic hidden states (`states`: column -> tokens x D), as sampled for `hook`'s kind."""
    n = len(next(iter(states.values())))
    keys = {"sent": np.arange(n, dtype=np.int32), "seq": np.zeros(n, np.int8), "start": np.zeros(n, np.int32),
            "end": np.ones(n, np.int32), "token": ["x"] * n}
    with SampleWriter(path, list(states), D) as writer:
        writer.write(keys, states)
        writer.finish({"model": model, "model_type": "bert", "hook": hook, "spaces": ["h"], "num_layers": LAYERS,
                       "layers": list(range(LAYERS)), "hidden_size": D, "num_tokens": n, "data": "synthetic",
                       "tokenizer": "synthetic", "max_length": 128})
    return SampleFile.open(path)


def _rotated_pair(tmp_path, rng, hook="adapter"):
    """Teacher states, and a student whose space is a known rotation of the teacher's (plus an offset).

    The fitting rows are whitened exactly, so per-dimension standardisation keeps the rotation
    orthogonal; the held-out rows are drawn afresh.
    """
    teacher, student, rotations = {}, {}, []
    for l in range(LAYERS):
        train = rng.standard_normal((TRAIN, D))
        train -= train.mean(0)
        train = train @ np.linalg.inv(np.linalg.cholesky(np.cov(train.T, bias=True))).T
        h = np.concatenate([train, rng.standard_normal((TEST, D))]) * 2.0 + rng.standard_normal(D)
        rotation = np.linalg.qr(rng.standard_normal((D, D)))[0]
        teacher[f"h{l}"], student[f"h{l}"] = h, h @ rotation.T + rng.standard_normal(D)
        rotations.append(rotation)
    return (_write_samples(tmp_path / "t.parquet", teacher, "t", hook), _write_samples(tmp_path / "s.parquet", student, "s", hook),
            rotations)


def _adapter(rng, shape):
    weights = {}
    for l in range(LAYERS):
        weights.update({(l, "adapter", "adapter_down.0.weight"): rng.standard_normal((4, D)).astype(np.float32) * 0.3,
                        (l, "adapter", "adapter_down.0.bias"): rng.standard_normal(4).astype(np.float32) * 0.3,
                        (l, "adapter", "adapter_up.weight"): rng.standard_normal((D, 4)).astype(np.float32) * 0.3,
                        (l, "adapter", "adapter_up.bias"): rng.standard_normal(D).astype(np.float32) * 0.3})
    return Module(shape.name, {"config": {"reduction_factor": 4, "non_linearity": "relu", "scaling": 1.0}}, weights)


def test_rotation_is_recovered_by_procrustes_and_linear_but_not_lsa(tmp_path):
    rng = np.random.default_rng(0)
    teacher, student, rotations = _rotated_pair(tmp_path, rng)
    t_shape, s_shape = ModelShape("t", "bert", LAYERS, D, "BertModel"), ModelShape("s", "bert", LAYERS, D, "BertModel")
    module = _adapter(rng, t_shape)
    known = Alignment("known", "skip", {}, {}, 0, layers=[LayerMap(l, [l], "h", m_out=r) for l, r in enumerate(rotations)])
    holdout = TEST / (TRAIN + TEST)
    errors, ckas = {}, {}
    for method in ("lsa", "lsa-signed", "select", "linear", "procrustes"):
        alignment = fit_alignment(teacher, student, "skip", method, holdout=holdout)
        moved = Module(s_shape.name, module.config, transfer_weights(module, t_shape, s_shape, "skip", alignment=alignment))
        for reference in ("known", "ridge"):
            result = transfer_fidelity(module, moved, teacher, student, "skip", holdout=holdout,
                                       reference=known if reference == "known" else None)
            assert result["heldout_tokens"] == TEST and result["reference"] == ("given" if reference == "known" else "ridge")
            errors[method, reference] = result["overall"]["rel_error"], result["overall"]["cosine"]
            ckas[method] = result["overall"]["cka"]
    print("\nrelative error / cosine on held-out tokens of a rotated student:")
    for (method, reference), (err, cos) in errors.items():
        print(f"  {method:11s} reference {reference:6s} rel_error {err:.2e} cosine {cos:.5f}")
    for reference in ("known", "ridge"):
        for method in ("linear", "procrustes"):
            assert errors[method, reference][0] < 1e-3 and errors[method, reference][1] > 0.999999, (method, reference)
            assert ckas[method] > 0.999999, method  # the map-free measure agrees
        for method in ("lsa", "lsa-signed", "select"):
            assert errors[method, reference][0] > 0.3, (method, reference)


def test_module_effect_matches_the_adapters_forward(tmp_path):
    import torch

    model = add_module(make_model("bert", 2), "adapter")
    model.save_adapter(str(tmp_path / "m"), "task", use_safetensors=True)
    module = read_module(tmp_path / "m", model_shape(model.config, "m"))
    h = torch.randn(5, 24, generator=torch.Generator().manual_seed(0))
    block = model.encoder.layer[1].output.adapters["task"]
    with torch.no_grad():
        up = block(h, residual_input=torch.zeros_like(h))[0]
    np.testing.assert_allclose(module_effect(module, 1, "adapter", h.numpy()), up.numpy(), atol=1e-5)


@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_fidelity_of_identity_and_planted_permutation_is_exact(tmp_path, peft):
    import torch
    from helpers.models import permute_hidden

    base = make_model("bert", 2)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(3))
    student_base = permute_hidden(copy.deepcopy(base), perm)
    add_module(copy.deepcopy(base), peft).save_adapter(str(tmp_path / "m"), "task", use_safetensors=True)
    shape = model_shape(base.config, "m")
    teacher_module = read_module(tmp_path / "m", shape)
    for student, name in ((base, "same"), (student_base, "permuted")):
        samples = encoder_samples((base, student), tmp_path, peft, lora_outputs=peft == "lora")
        for method in ("lsa", "linear", "procrustes"):
            alignment = fit_alignment(*samples, "skip", method, holdout=0.2)
            transfer_module(tmp_path / "m", shape, shape, "skip", tmp_path / f"{name}-{method}", alignment=alignment,
                            lora_b="output" if peft == "lora" else "study")
            result = transfer_fidelity(teacher_module, read_module(tmp_path / f"{name}-{method}", shape), *samples, "skip")
            json.dumps(result)
            assert result["method"] == method and result["overall"]["rel_error"] < 1e-4, (name, method, result["overall"])
            sites = ["adapter"] if peft == "adapter" else ["query", "value"]
            assert [(d["student_layer"], d["site"]) for d in result["layers"]] == [(l, s) for l in range(2) for s in sites]
            assert all(d["cosine"] > 0.9999 for d in result["layers"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = {"wide": save_model(make_model("xlm-roberta", 4, hidden=24), root / "wide"),
             "narrow": save_model(make_model("xlm-roberta", 2, hidden=16, seed=5), root / "narrow")}
    from transformers import AutoModel

    add_module(AutoModel.from_pretrained(paths["wide"]), "adapter").save_adapter(str(root / "mod"), "task", use_safetensors=True)
    paths["module"] = str(root / "mod")
    return paths


def test_cli_fit_transfer_and_measure(tmp_path, models, text_file, capsys):
    for who, model in (("t", models["wide"]), ("s", models["narrow"])):
        assert run_cli(capsys, "sample", "--model", model, "--peft", "adapter", "--data", text_file,
                   "--out", tmp_path / f"{who}.parquet")[0] == 0
    pair = ["--teacher", tmp_path / "t.parquet", "--student", tmp_path / "s.parquet", "--mapping", "skip"]
    common = ["--module", models["module"], "--teacher-model", models["wide"], "--student-model", models["narrow"],
              "--mapping", "skip"]
    results = {}
    for method in ("lsa", "lsa-signed", "linear", "procrustes", "select"):
        code, out, err = run_cli(capsys, "fit-alignment", *pair, "--method", method, "--holdout", 0.2,
                             "--out", tmp_path / f"{method}.safetensors")
        assert code == 0, err
        assert run_cli(capsys, "transfer", *common, "--alignment", tmp_path / f"{method}.safetensors",
                   "--out", tmp_path / method)[0] == 0
        code, out, err = run_cli(capsys, "fidelity", "--module", models["module"], "--transferred", tmp_path / method,
                             *pair, "--out", tmp_path / f"{method}.json")
        assert code == 0 and "relative error" in out, err
        results[method] = json.loads((tmp_path / f"{method}.json").read_text())
        assert results[method]["method"] == method and len(results[method]["layers"]) == 2
    print({m: round(r["overall"]["rel_error"], 3) for m, r in results.items()})
    assert results["linear"]["overall"]["rel_error"] < results["lsa"]["overall"]["rel_error"]
    # one shot (fitted on all tokens) equals the step-by-step path with --holdout 0
    assert run_cli(capsys, "fit-alignment", *pair, "--method", "linear", "--out", tmp_path / "all.safetensors")[0] == 0
    assert run_cli(capsys, "transfer", *common, "--alignment", tmp_path / "all.safetensors", "--out", tmp_path / "x")[0] == 0
    assert run_cli(capsys, "transfer", *common, "--align", "linear", "--samples", text_file, "--out", tmp_path / "y")[0] == 0
    from safetensors.numpy import load_file

    stepwise, one_shot = (load_file(tmp_path / name / "adapter.safetensors") for name in ("x", "y"))
    assert stepwise.keys() == one_shot.keys()
    for key in stepwise:  # the one shot streams float32 batch sums in another grouping
        np.testing.assert_allclose(one_shot[key], stepwise[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_cli_bad_alignment_input_gives_one_line(tmp_path, models, text_file, capsys):
    short = tmp_path / "short.txt"
    short.write_text("the cat sat\nthe dog\n")
    for who, model in (("t", models["wide"]), ("s", models["narrow"])):
        assert run_cli(capsys, "sample", "--model", model, "--peft", "adapter", "--data", short,
                   "--out", tmp_path / f"{who}.parquet")[0] == 0
    pair = ["--teacher", tmp_path / "t.parquet", "--student", tmp_path / "s.parquet", "--mapping", "skip"]
    common = ["transfer", "--module", models["module"], "--teacher-model", models["wide"],
              "--student-model", models["narrow"], "--mapping", "skip"]
    cases = {
        "use one of lsa, lsa-signed, linear, procrustes, select": [*common, "--align", "hungarian"],
        "needs at least 25 shared tokens": ["fit-alignment", *pair, "--method", "procrustes"],
        "give --samples or --alignment": [*common, "--align", "linear"],
        "no such alignment file": [*common, "--alignment", tmp_path / "nowhere.safetensors"],
        "writes LoRA modules only": [*common, "--align", "select", "--format", "peft"],
    }
    for expected, argv in cases.items():
        code, _, err = run_cli(capsys, *argv, "--out", tmp_path / "result")
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and expected in lines[0], (expected, err)
        assert not (tmp_path / "result").exists()


def test_sample_shape_reads_the_model_from_the_metadata(tmp_path):
    rng = np.random.default_rng(1)
    teacher, _, _ = _rotated_pair(tmp_path, rng)
    assert sample_shape(teacher) == ModelShape("t", "bert", LAYERS, D, "BertModel")


def test_linear_cka_is_map_free_and_streams_exactly():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((300, 6)), rng.standard_normal((300, 5))
    y[:, :3] += x[:, :3] @ rng.standard_normal((3, 3))

    def direct(a, b):
        a, b = a - a.mean(0), b - b.mean(0)
        return np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))

    acc = LinearCKA(6, 5)
    for start in range(0, 300, 64):  # batches, as fidelity streams them
        acc.update(x[start:start + 64], y[start:start + 64])
    assert acc.result() == pytest.approx(direct(x, y))
    rotation = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    rotated = LinearCKA(6, 5)
    rotated.update(3.0 * x @ rotation + 1.5, y)  # a rotated, scaled and shifted student space
    assert rotated.result() == pytest.approx(acc.result())
    flat = LinearCKA(6, 5)
    flat.update(np.ones((10, 6)), y[:10])
    assert flat.result() is None


def test_every_fit_reads_the_same_tokens_and_none_of_the_held_out_ones(tmp_path):
    """Two sample pairs that agree on the first 80% of tokens and differ after: every fit, the study's
    correlation + assignment included, is identical; only the fidelity measured on the tail differs."""
    from transmod.align.alignment import assign_correlation
    from transmod.align.correlation import correlate_samples

    rng = np.random.default_rng(3)
    t_states = {f"h{l}": rng.standard_normal((TRAIN + TEST, D)) for l in range(LAYERS)}
    s_states = {k: v @ np.linalg.qr(rng.standard_normal((D, D)))[0] for k, v in t_states.items()}
    pairs = []
    for name in ("a", "b"):
        tail = np.random.default_rng(len(name) + ord(name))
        t = {k: np.concatenate([v[:TRAIN], tail.standard_normal((TEST, D)) * 5]) for k, v in t_states.items()}
        s = {k: np.concatenate([v[:TRAIN], tail.standard_normal((TEST, D)) * 5]) for k, v in s_states.items()}
        pairs.append((_write_samples(tmp_path / f"t{name}.parquet", t, "t"), _write_samples(tmp_path / f"s{name}.parquet", s, "s")))
    holdout = TEST / (TRAIN + TEST)
    shape = ModelShape("t", "bert", LAYERS, D, "BertModel")
    module = _adapter(rng, shape)
    fits, results = [], []
    for teacher, student in pairs:
        corr = correlate_samples(teacher, student, "skip", holdout=holdout)
        assignment = assign_correlation(corr)
        fitted = {m: fit_alignment(teacher, student, "skip", m, holdout=holdout) for m in ("lsa", "linear", "procrustes")}
        assert corr.num_tokens == assignment.num_tokens == TRAIN
        assert all(a.num_tokens == TRAIN for a in fitted.values())
        fits.append(([lc.r for lc in corr.layers], [la.sigma.tolist() for la in assignment.layers],
                     {m: [lm.m_out if lm.m_out is not None else lm.sigma for lm in a.layers] for m, a in fitted.items()}))
        moved = Module("s", module.config, transfer_weights(module, shape, shape, "skip", alignment=fitted["linear"]))
        result = transfer_fidelity(module, moved, teacher, student, "skip", holdout=holdout)
        assert (result["fit_tokens"], result["heldout_tokens"]) == (TRAIN, TEST)
        results.append(result["overall"])
    (r_a, sigma_a, maps_a), (r_b, sigma_b, maps_b) = fits
    assert all(np.array_equal(x, y) for x, y in zip(r_a, r_b)) and sigma_a == sigma_b
    assert all(np.array_equal(x, y) for m in maps_a for x, y in zip(maps_a[m], maps_b[m]))
    assert results[0] != results[1]  # the tails differ, and only the measurement reads them


def test_fidelity_of_inits_moves_the_module_with_each_inits_mapping_and_alignment(tmp_path):
    """What the fidelity job calls: each init's name gives its mapping, its file the alignment (none: identity)."""
    from transmod.align.fidelity import fidelity_of_inits
    from transmod.align.transfer import transfer
    from transmod.errors import TransmodError

    teacher, student = make_model("bert", 4), make_model("bert", 2, seed=1)
    paths = save_model(teacher, tmp_path / "t"), save_model(student, tmp_path / "s")
    add_module(copy.deepcopy(teacher), "adapter").save_adapter(str(tmp_path / "m"), "task", use_safetensors=True)
    samples = encoder_samples((teacher, student), tmp_path, "adapter")
    files = {"skip": None}
    for method in ("procrustes", "linear"):  # two inits of one mapping: measured against one reference fit
        files[f"avg-{method}"] = tmp_path / f"avg.{method}.alignment.safetensors"
        fit_alignment(*samples, "avg", method, holdout=0.2).save(files[f"avg-{method}"])
    results = fidelity_of_inits(tmp_path / "m", *paths, (samples[0].path, samples[1].path), files, holdout=0.2)
    assert list(results) == ["skip", "avg-procrustes", "avg-linear"]
    assert [r["mapping"] for r in results.values()] == ["skip", "avg", "avg"]
    assert [r["method"] for r in results.values()] == [None, "procrustes", "linear"]
    shapes = model_shape(teacher.config, paths[0]), model_shape(student.config, paths[1])
    module = read_module(tmp_path / "m", shapes[0])
    for name in ("avg-procrustes", "avg-linear"):
        moved = transfer(module, *shapes, "avg", Alignment.load(files[name]))
        assert results[name] == json.loads(json.dumps(transfer_fidelity(module, moved, *samples, "avg", holdout=0.2)))
    for name, expected in (("default", "fidelity measures a transferred module"), ("zs-skip", "transferred module"),
                           ("skip-lsa", "fidelity init: 'skip-lsa' is not a student init")):
        with pytest.raises(TransmodError, match=expected):
            fidelity_of_inits(tmp_path / "m", *paths, (samples[0].path, samples[1].path), {name: None})


# ------------------------------------------------------------------------------------------ healing, auto


def _lora(rng, shape):
    weights = {(l, site, p): rng.standard_normal(dims).astype(np.float32) * 0.3
               for l in range(LAYERS) for site in ("query", "value")
               for p, dims in (("lora_A", (4, D)), ("lora_B", (D, 4)))}
    return Module(shape.name, {"config": {"architecture": "lora", "r": 4, "alpha": 8, "selfattn_lora": True,
                                          "attn_matrices": ["q", "v"]}}, weights)


@pytest.mark.parametrize("kind", ["adapter", "lora"])
def test_healing_a_module_that_is_already_exact_changes_nothing(tmp_path, kind):
    from transmod.align.healing import heal

    rng = np.random.default_rng(1)
    teacher, _, _ = _rotated_pair(tmp_path, rng, hook=kind)
    shape = ModelShape("t", "bert", LAYERS, D, "BertModel")
    module = (_adapter if kind == "adapter" else _lora)(rng, shape)
    healed, report = heal(module, module, teacher, teacher, "skip", None, holdout=0.2, steps=50, learning_rate=1e-2)
    assert all(np.array_equal(healed.weights[key], module.weights[key]) for key in module.weights)
    assert report and all(cell["rel_error_before"] == cell["rel_error_after"] < 1e-6 for cell in report.values())
    assert healed.config["transmod"]["healed"]["steps"] == 50


@pytest.mark.parametrize("kind", ["adapter", "lora"])
def test_healing_fits_a_misaligned_module_to_the_teachers_mapped_effect_on_held_out_tokens(tmp_path, kind):
    """A student whose space is a rotation of the teacher's: lsa can only select dimensions, so its moved module is
    far off; healed towards the teacher's effect under the true map, it comes close on tokens it never saw."""
    from transmod.align.healing import heal

    rng = np.random.default_rng(0)
    teacher, student, rotations = _rotated_pair(tmp_path, rng, hook=kind)
    t_shape, s_shape = ModelShape("t", "bert", LAYERS, D, "BertModel"), ModelShape("s", "bert", LAYERS, D, "BertModel")
    module = (_adapter if kind == "adapter" else _lora)(rng, t_shape)
    known = Alignment("known", "skip", {}, {}, 0, layers=[LayerMap(l, [l], "h", m_out=r) for l, r in enumerate(rotations)])
    holdout = TEST / (TRAIN + TEST)
    lsa = fit_alignment(teacher, student, "skip", "lsa", holdout=holdout)
    moved = Module(s_shape.name, module.config, transfer_weights(module, t_shape, s_shape, "skip", alignment=lsa))
    healed, report = heal(module, moved, teacher, student, "skip", known, holdout=holdout, steps=400, learning_rate=2e-2)
    before, after = (transfer_fidelity(module, m, teacher, student, "skip", holdout=holdout, reference=known)["overall"]
                     for m in (moved, healed))
    print(f"\n{kind}: held-out rel_error {before['rel_error']:.3f} -> {after['rel_error']:.3f}")
    assert before["rel_error"] > 0.5 and after["rel_error"] < 0.5 * before["rel_error"]
    assert all(cell["rel_error_after"] < cell["rel_error_before"] for cell in report.values())
    assert all(healed.weights[k].shape == moved.weights[k].shape and healed.weights[k].dtype == np.float32
               for k in moved.weights)


def test_auto_chooses_the_method_of_lowest_error_for_its_mapping_and_refuses_a_bad_score(tmp_path):
    from transmod.align.fidelity import choose_method
    from transmod.errors import TransmodError

    def result(error):
        return {"overall": {"rel_error": error, "cosine": 0.5, "cka": 0.5}}

    fidelity = {"skip": result(0.9), "skip-linear": result(0.4), "skip-procrustes": result(0.6), "avg-linear": result(0.1),
                "avg": result(0.2)}
    assert choose_method(fidelity, "skip", "f.json") == "linear" and choose_method(fidelity, "avg", "f.json") == "linear"
    assert choose_method({"skip": result(0.3), "skip-linear": result(0.3)}, "skip", "f.json") == "lsa"  # first on a tie
    with pytest.raises(TransmodError, match="f.json: skip-linear.overall.rel_error is nan"):
        choose_method({**fidelity, "skip-linear": result(float("nan"))}, "skip", "f.json")
    with pytest.raises(TransmodError, match="f.json: no avg init was measured"):
        choose_method({"skip": result(0.3)}, "avg", "f.json")
