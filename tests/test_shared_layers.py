"""ALBERT: one layer serves the whole depth, so `adapters` gives it one module, read at every depth.

Its one module is sampled at every depth, and fitted on all of them pooled; as a teacher its module is every
depth's, as a student its module takes the mean of the teacher modules at the depths it maps to.
"""

import copy
import json

import numpy as np
import pytest
import torch
from helpers.models import (
    SENTENCES,
    add_module,
    load_module,
    make_config,
    make_model,
    make_tokenizer,
    save_model,
    save_module,
)
from safetensors.numpy import load_file

from transmod.align.alignment import fit_alignment
from transmod.align.correlation import correlate_samples
from transmod.align.fidelity import transfer_fidelity
from transmod.align.samplefile import SampleFile
from transmod.align.sampling import sample_hidden_states
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import load_model_shape, model_shape
from transmod.modules.io import read_module

PREFIX = "encoder.albert_layer_groups.0.albert_layers.0."


def _sample(model, path, peft="adapter", name=None):
    sample_hidden_states(model, make_tokenizer(), [(s,) for s in SENTENCES], {peft: path}, model_name=name or path.stem)
    return SampleFile.open(path)


def _columns(sample: SampleFile, columns):
    parts = list(sample.iter_columns(columns, 10_000))
    return {c: np.concatenate([p[c] for p in parts]).astype(np.float64) for c in columns}


def test_every_depth_of_the_shared_layer_is_sampled(tmp_path):
    """The shared layer runs four times per forward pass: depth l of the file is the model's l-th layer output."""
    model = make_model("albert", 4)
    sample = _sample(model, tmp_path / "a.parquet")
    assert sample.num_layers == 4 and sample.meta["layers"] == [0, 1, 2, 3]
    enc = make_tokenizer()(SENTENCES[0], return_tensors="pt")
    with torch.no_grad():
        states = model(**enc, output_hidden_states=True).hidden_states
    first = _columns(sample, [f"h{l}" for l in range(4)])
    inner = slice(1, enc["input_ids"].shape[1] - 1)  # the sample keeps no [CLS]/[SEP]
    for l in range(4):
        np.testing.assert_allclose(first[f"h{l}"][: inner.stop - 1], states[l + 1][0, inner].numpy(), atol=1e-5)
    assert not np.allclose(first["h0"], first["h3"])


@pytest.mark.parametrize("mapping, pairs", [("skip", {0: [0], 1: [2]}), ("avg", {0: [0, 1], 1: [2, 3]})])
def test_the_shared_module_is_fitted_on_every_depth_pooled(tmp_path, mapping, pairs):
    """One correlation for the one module: over the stacked (student depth, mapped teacher state) pairs."""
    teacher = _sample(make_model("albert", 4, seed=0), tmp_path / "t.parquet")
    student = _sample(make_model("albert", 2, hidden=16, seed=1), tmp_path / "s.parquet")
    corr = correlate_samples(teacher, student, mapping)
    read = sorted(t for group in pairs.values() for t in group)
    assert [(lc.student_layer, lc.teacher_layers) for lc in corr.layers] == [(0, read)]
    assert corr.num_tokens == student.num_rows  # tokens, not the (token, depth) pairs pooled
    t, s = _columns(teacher, [f"h{l}" for l in range(4)]), _columns(student, ["h0", "h1"])
    x = np.concatenate([s[f"h{a}"] for a in pairs])
    y = np.concatenate([np.mean([t[f"h{l}"] for l in group], axis=0) for group in pairs.values()])
    want = np.corrcoef(x.T, y.T)[:16, 16:]
    np.testing.assert_allclose(corr.layers[0].r, want, atol=1e-5)
    aligned = fit_alignment(teacher, student, mapping, "linear")
    assert [(lm.student_layer, lm.space) for lm in aligned.layers] == [(0, "h")] and aligned.layers[0].m_in.shape == (24, 16)
    assert aligned.groups() == [read]


@pytest.mark.parametrize("peft", ["adapter", "lora"])
@pytest.mark.parametrize("method", ["lsa", "linear"])
def test_a_deeper_wider_albert_module_moves_to_a_smaller_albert(tmp_path, peft, method):
    teacher_base, student_base = make_model("albert", 4, seed=0), make_model("albert", 2, hidden=16, seed=1)
    teacher = add_module(copy.deepcopy(teacher_base), peft)
    samples = [_sample(m, tmp_path / f"{w}.parquet", peft) for w, m in (("t", teacher_base), ("s", student_base))]
    aligned = fit_alignment(*samples, "skip", method)
    t_shape, s_shape = model_shape(teacher_base.config, "t"), model_shape(student_base.config, "s")
    out = tmp_path / "out"
    transfer_module(save_module(teacher, tmp_path / "m"), t_shape, s_shape, "skip", out, aligned)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["config"]["leave_out"] == [] and config["hidden_size"] == 16
    moved = load_file(out / "adapter.safetensors")
    assert {k.split(".task.")[0] for k in moved} <= {PREFIX + p for p in ("output_adapters.adapters",
                                                                          "attention.query.loras", "attention.value.loras")}
    student = load_module(copy.deepcopy(student_base), out)
    with torch.no_grad():
        enc = make_tokenizer()(SENTENCES[:3], padding=True, return_tensors="pt")
        changed = student(**enc).last_hidden_state
        student.set_active_adapters(None)
        plain = student(**enc).last_hidden_state
    assert torch.isfinite(changed).all() and not torch.allclose(changed, plain)
    report = transfer_fidelity(read_module(tmp_path / "m", t_shape), read_module(out, s_shape), *samples, "skip", holdout=0.3)
    assert {d["student_layer"] for d in report["layers"]} == {0} and report["overall"]["cka"] is not None


def test_an_albert_teacher_gives_its_one_module_to_every_layer_of_a_bert_student(tmp_path):
    teacher = add_module(make_model("albert", 4), "adapter")
    shape_t = model_shape(teacher.config, "t")
    shape_s = model_shape(make_config("bert", 2), "s")
    transfer_module(save_module(teacher, tmp_path / "m"), shape_t, shape_s, "skip", tmp_path / "out")
    before = load_file(tmp_path / "m" / "adapter.safetensors")
    after = load_file(tmp_path / "out" / "adapter.safetensors")
    assert len(after) == 2 * len(before)
    for key, value in before.items():
        leaf = key.split("output_adapters.adapters.")[1]
        for l in range(2):
            np.testing.assert_array_equal(after[f"encoder.layer.{l}.output.adapters.{leaf}"], value)
    load_module(make_model("bert", 2), tmp_path / "out")


@pytest.mark.parametrize("mapping, layers", [("skip", [0, 2]), ("avg", [0, 1, 2, 3])])
def test_an_albert_student_takes_the_mean_of_the_teacher_modules_its_depths_map_to(tmp_path, mapping, layers):
    teacher = add_module(make_model("bert", 4), "lora")
    shape_t = model_shape(teacher.config, "t")
    shape_s = model_shape(make_config("albert", 2), "s")
    out = tmp_path / mapping
    transfer_module(save_module(teacher, tmp_path / "m"), shape_t, shape_s, mapping, out)
    before = load_file(tmp_path / "m" / "adapter.safetensors")
    after = load_file(out / "adapter.safetensors")
    for site in ("query", "value"):
        for leaf in ("lora_A", "lora_B"):
            group = [before[f"encoder.layer.{l}.attention.self.{site}.loras.task.{leaf}"] for l in layers]
            want = np.mean(group, axis=0, dtype=np.float64).astype(np.float32)
            np.testing.assert_array_equal(after[f"{PREFIX}attention.{site}.loras.task.{leaf}"], want)
    load_module(make_model("albert", 2), out)


def test_albert_with_several_layer_groups_is_refused_naming_the_keys(tmp_path):
    config = make_config("albert", 4)
    config.num_hidden_groups = 2
    save_model(make_model("albert", 4), tmp_path / "m")
    config.save_pretrained(tmp_path / "m")
    with pytest.raises(TransmodError, match="num_hidden_groups 2 and inner_group_num 1: .* set both to 1"):
        load_model_shape(str(tmp_path / "m"))
