"""The invariants of docs/method.md section 7 on real transformers models with real adapters modules."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.models import (
    SENTENCES,
    add_module,
    load_module,
    make_model,
    make_tokenizer,
    model_inputs,
    permute_hidden,
    save_model,
    save_module,
)
from safetensors.torch import load_file

from transmod.align.alignment import assign_correlation
from transmod.align.correlation import correlate_samples
from transmod.align.samplefile import SampleFile
from transmod.align.sampling import sample_hidden_states
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import load_model_shape, model_shape
from transmod.modules.io import read_module

ARCHS = ["bert", "distilbert", "xlm-roberta", "electra", "deberta-v2", "albert", "bert-generation"]


def _assignment(teacher, student, tmp_path, peft, mapping="skip", lora_outputs=False):
    files = []
    for who, model in (("t", teacher), ("s", student)):
        files.append(tmp_path / f"{who}.parquet")
        sample_hidden_states(model, make_tokenizer(), [(s,) for s in SENTENCES], {peft: files[-1]}, model_name=who,
                             lora_outputs=lora_outputs)
    return assign_correlation(correlate_samples(SampleFile.open(files[0]), SampleFile.open(files[1]), mapping))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_transfer_to_the_same_model_is_the_identity(tmp_path, arch, peft):
    base = make_model(arch, 2)
    teacher = add_module(copy.deepcopy(base), peft)
    shape = model_shape(base.config, "same")
    aligned = _assignment(base, base, tmp_path, peft)
    assert all(la.sigma.tolist() == list(range(24)) for la in aligned.layers)
    for assignment in (None, aligned):
        out = tmp_path / f"out-{assignment is None}"
        transfer_module(save_module(teacher, tmp_path / "m"), shape, shape, "skip", out, assignment)
        before = load_file(tmp_path / "m" / "adapter.safetensors")
        after = load_file(out / "adapter.safetensors")
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
        student = load_module(copy.deepcopy(base), out)
        with torch.no_grad():
            torch.testing.assert_close(student(**model_inputs(base)).last_hidden_state,
                                       teacher(**model_inputs(base)).last_hidden_state, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("peft, lora_b", [("adapter", "study"), ("lora", "output")])
def test_planted_permutation_is_recovered_and_reproduces_the_teacher(tmp_path, arch, peft, lora_b):
    base = make_model(arch, 2)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(3))
    student_base = permute_hidden(copy.deepcopy(base), perm)
    teacher = add_module(copy.deepcopy(base), peft)
    assignment = _assignment(base, student_base, tmp_path, peft, lora_outputs=peft == "lora")
    for la in assignment.layers:
        expected = perm.tolist() if la.space == "h" else list(range(24))  # q/v outputs are not permuted
        assert la.sigma.tolist() == expected and la.mean_r == pytest.approx(1.0, abs=1e-6)
    shape = model_shape(base.config, "m")
    out = tmp_path / "out"
    transfer_module(save_module(teacher, tmp_path / "m"), shape, shape, "skip", out, assignment, lora_b=lora_b)
    student = load_module(copy.deepcopy(student_base), out)
    with torch.no_grad():
        want = teacher(**model_inputs(base)).last_hidden_state[..., perm]
        got = student(**model_inputs(base)).last_hidden_state
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_lora_study_variant_aligns_a_exactly_and_b_by_the_input_permutation(tmp_path):
    base = make_model("bert", 2)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(4))
    teacher = add_module(copy.deepcopy(base), "lora")
    assignment = _assignment(base, permute_hidden(copy.deepcopy(base), perm), tmp_path, "lora")
    shape = model_shape(base.config, "m")
    transfer_module(save_module(teacher, tmp_path / "m"), shape, shape, "skip", tmp_path / "out", assignment)
    before, after = load_file(tmp_path / "m" / "adapter.safetensors"), load_file(tmp_path / "out" / "adapter.safetensors")
    for key, value in before.items():
        expected = value[:, perm] if key.endswith("lora_A") else value[perm, :]
        assert torch.equal(after[key], expected), key


def _layer0(key):
    head, rest = key.split(".layer.", 1)
    return f"{head}.layer.0.{rest.split('.', 1)[1]}"


@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_skip_with_ratio_one_copies_and_avg_of_identical_layers_is_that_layer(tmp_path, peft):
    base = make_model("bert", 4)
    teacher = add_module(copy.deepcopy(base), peft)
    shape = model_shape(base.config, "t")
    transfer_module(save_module(teacher, tmp_path / "m"), shape, shape, "skip", tmp_path / "copy")
    assert _tensors(tmp_path / "m") == _tensors(tmp_path / "copy")

    params = dict(teacher.named_parameters())
    with torch.no_grad():
        for key, p in params.items():
            if ".task." in key:
                p.copy_(params[_layer0(key)])
    save_module(teacher, tmp_path / "u")
    small = model_shape(make_model("bert", 2).config, "s")
    transfer_module(tmp_path / "u", shape, small, "avg", tmp_path / "avg")
    avg, src = load_file(tmp_path / "avg" / "adapter.safetensors"), load_file(tmp_path / "u" / "adapter.safetensors")
    assert sorted(avg) == sorted(k for k in src if ".layer.0." in k or ".layer.1." in k)
    for key, value in avg.items():
        torch.testing.assert_close(value, src[_layer0(key)], rtol=0, atol=1e-7)


def _tensors(folder):
    return {k: v.tolist() for k, v in load_file(folder / "adapter.safetensors").items()}


@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_matching_pair_skip_takes_teacher_layers_0_2(tmp_path, peft):
    teacher = add_module(make_model("bert", 4), peft)
    student = make_model("distilbert", 2)
    t_shape, s_shape = model_shape(teacher.config, "t"), model_shape(student.config, "s")
    transfer_module(save_module(teacher, tmp_path / "m"), t_shape, s_shape, "skip", tmp_path / "out")
    src = read_module(tmp_path / "m", t_shape)
    dst = read_module(tmp_path / "out", s_shape)
    assert sorted({l for l, _, _ in dst.weights}) == [0, 1]
    for (l, site, param), tensor in dst.weights.items():
        np.testing.assert_array_equal(tensor, src.weights[(2 * l, site, param)])
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["model_type"] == "distilbert" and config["model_class"] == "DistilBertModel"
    load_module(student, tmp_path / "out")


@pytest.mark.parametrize("peft", ["adapter", "lora"])
def test_copy_puts_the_teachers_layer_l_on_the_students_layer_l_unchanged(tmp_path, peft):
    teacher = add_module(make_model("bert", 4), peft)
    t_shape, s_shape = model_shape(teacher.config, "t"), model_shape(make_model("distilbert", 2).config, "s")
    transfer_module(save_module(teacher, tmp_path / "m"), t_shape, s_shape, "copy", tmp_path / "out")
    src, dst = read_module(tmp_path / "m", t_shape), read_module(tmp_path / "out", s_shape)
    assert sorted({l for l, _, _ in dst.weights}) == [0, 1]
    for (l, site, param), tensor in dst.weights.items():
        np.testing.assert_array_equal(tensor, src.weights[(l, site, param)])


def test_incompatible_widths_keep_the_bottleneck_and_load_in_a_fresh_process(tmp_path):
    teacher_base = make_model("xlm-roberta", 4, hidden=24)
    student_base = make_model("xlm-roberta", 2, hidden=16, seed=5)
    teacher = add_module(copy.deepcopy(teacher_base), "adapter", bottleneck=6)
    assignment = _assignment(teacher_base, student_base, tmp_path, "adapter", mapping="avg")
    assert all(len(la.sigma) == 16 and len(set(la.sigma)) == 16 for la in assignment.layers)
    t_shape, s_shape = model_shape(teacher_base.config, "t"), model_shape(student_base.config, "s")
    transfer_module(save_module(teacher, tmp_path / "m"), t_shape, s_shape, "avg", tmp_path / "out", assignment)
    weights = load_file(tmp_path / "out" / "adapter.safetensors")
    assert weights["encoder.layer.1.output.adapters.task.adapter_down.0.weight"].shape == (6, 16)
    student_dir = save_model(student_base, tmp_path / "student")
    script = f"""
import adapters, torch
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained({student_dir!r}); adapters.init(model)
info = {{}}
model.load_adapter({str(tmp_path / "out")!r}, use_safetensors=True, loading_info=info)
assert info == {{"missing_keys": [], "unexpected_keys": []}}, info
model.set_active_adapters("task")
tok = AutoTokenizer.from_pretrained({student_dir!r})
out = model(**tok(["the cat sat on the mat"], return_tensors="pt")).last_hidden_state
assert out.shape[-1] == 16 and torch.isfinite(out).all()
print("loaded", out.shape)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "loaded" in done.stdout
    assert "missing" not in done.stderr.lower() and "unexpected" not in done.stderr.lower()


@pytest.mark.parametrize("config, why", [("DebertaConfig", "DeBERTa v1 fuses query, key and value into one in_proj"),
                                         ("XmodConfig", "X-MOD routes every token through a language's own")])
def test_adapters_families_transmod_refuses_say_why(tmp_path, config, why):
    import transformers

    getattr(transformers, config)(hidden_size=24, num_hidden_layers=2, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(TransmodError, match=f"unsupported architecture '.*' \\({why}.*; supported model types are bert, "):
        load_model_shape(str(tmp_path))
