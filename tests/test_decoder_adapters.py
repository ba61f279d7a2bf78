"""Bottleneck adapters (`adapters`' SeqBnConfig) on Llama and Mistral: the adapter after the MLP reads the layer's
output (the un-normed residual stream) and adds to it; moved with the invariants of docs/method.md section 7."""

import copy
import json
import math
import re

import pytest
import torch
from helpers.commands import run_cli
from helpers.decoders import (
    logits,
    make_decoder,
    make_decoder_tokenizer,
    planted,
    save_decoder,
)
from helpers.models import SENTENCES
from safetensors.torch import load_file

from transmod.align.alignment import assign_correlation, fit_alignment
from transmod.align.correlation import correlate_samples
from transmod.align.embeddings import embedding_alignment
from transmod.align.fidelity import transfer_fidelity
from transmod.align.methods import METHODS
from transmod.align.samplefile import SampleFile
from transmod.align.sampling import sample_hidden_states
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import load_model_shape, model_shape
from transmod.modules.io import read_module

pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


def with_adapter(base, seed: int = 1, bottleneck: int = 8, leave_out=()):
    """A copy of `base` with a seq_bn adapter of random weights (its up-projection too), active."""
    import adapters

    model = copy.deepcopy(base)
    adapters.init(model)
    model.add_adapter("task", config=adapters.SeqBnConfig(reduction_factor=base.config.hidden_size // bottleneck,
                                                             leave_out=list(leave_out)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapters.task." in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    model.set_active_adapters("task")
    return model.eval()


def load_moved(base, folder):
    """The student with the moved adapter loaded by the plain documented call; every adapter weight checked."""
    import adapters

    model = copy.deepcopy(base)
    adapters.init(model)
    name = model.load_adapter(str(folder))
    model.set_active_adapters(name)
    saved = load_file(folder / "adapter.safetensors")
    params = {n: p for n, p in model.named_parameters() if ".adapters." in n}
    assert sorted(params) == sorted(f"model.{k}" for k in saved)  # nothing missing, nothing left over
    assert all(torch.equal(params[f"model.{k}"], v) for k, v in saved.items())
    return model.eval()


def samples(teacher, student, tmp_path, sentences=SENTENCES):
    """Adapter-hook samples of the two bare models on the same text."""
    files = []
    for who, model in (("t", teacher), ("s", student)):
        files.append(tmp_path / f"{who}.parquet")
        sample_hidden_states(model.model, make_decoder_tokenizer(), [(s,) for s in sentences], {"adapter": files[-1]},
                             model_name=who)
    return SampleFile.open(files[0]), SampleFile.open(files[1])


def test_the_adapter_hook_samples_exactly_what_the_adapter_reads(tmp_path):
    """adapters feeds its down-projection the layer's un-normed output (MLP output + residual): the adapter hook's `h`.

    Only layer 1 carries the adapter, so what it reads is the bare model's state, as sampled."""
    base = make_decoder("llama")
    teacher = with_adapter(base, leave_out=[0])
    seen = {}
    down = teacher.model.layers[1].output_adapters.adapters["task"].adapter_down
    handle = down.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    with torch.no_grad():
        teacher(**make_decoder_tokenizer()([SENTENCES[0]], return_tensors="pt"))
    handle.remove()
    t, _ = samples(base, base, tmp_path, [SENTENCES[0]])
    assert t.meta["hook"] == "adapter" and t.meta["spaces"] == ["h"] and t.width("h") == 64
    sampled = next(t.iter_columns(["h1"], 64))["h1"]
    torch.testing.assert_close(torch.from_numpy(sampled), seen["x"][0, 1:], rtol=0, atol=1e-5)  # BOS is not sampled


def _save(model, path):
    model.save_adapter(str(path), "task")  # adapters' default: pytorch_adapter.bin, and the LM head beside it
    return path


def test_moving_to_the_same_model_is_the_identity(tmp_path):
    base = make_decoder("llama")
    teacher = with_adapter(base)
    shape = model_shape(base.config, "same")
    aligned = assign_correlation(correlate_samples(*samples(base, base, tmp_path), "skip"))
    assert {lm.space for lm in aligned.layers} == {"h"} and all(lm.sigma.tolist() == list(range(64)) for lm in aligned.layers)
    src = read_module(_save(teacher, tmp_path / "m"), shape)
    for alignment in (None, aligned):
        out = tmp_path / f"out-{alignment is None}"
        transfer_module(tmp_path / "m", shape, shape, "skip", out, alignment)
        moved = read_module(out, shape)
        assert moved.weights.keys() == src.weights.keys()
        assert all((moved.weights[k] == v).all() and moved.weights[k].dtype == v.dtype for k, v in src.weights.items())
        torch.testing.assert_close(logits(load_moved(base, out)), logits(teacher), rtol=0, atol=0)


def test_skip_takes_teacher_layers_0_2_into_a_student_of_every_second_layer(tmp_path):
    teacher_base = make_decoder("mistral", layers=4)
    student_base = make_decoder("mistral", layers=2)
    state = teacher_base.state_dict()
    every_second = {k: state[re.sub(r"layers\.(\d+)\.", lambda m: f"layers.{2 * int(m[1])}.", k)]
                    for k in student_base.state_dict()}
    student_base.load_state_dict(every_second)  # the student is the teacher's layers 0 and 2
    teacher = with_adapter(teacher_base)
    t_shape, s_shape = model_shape(teacher_base.config, "t"), model_shape(student_base.config, "s")
    transfer_module(_save(teacher, tmp_path / "m"), t_shape, s_shape, "skip", tmp_path / "out")
    src, dst = read_module(tmp_path / "m", t_shape), read_module(tmp_path / "out", s_shape)
    assert sorted(dst.weights) == sorted((l, site, p) for (l, site, p) in src.weights if l < 2)
    for (l, site, param), tensor in dst.weights.items():
        assert (tensor == src.weights[(2 * l, site, param)]).all()
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["model_type"] == "mistral" and config["config"]["leave_out"] == []
    moved = load_moved(student_base, tmp_path / "out")
    for l in (0, 1):  # the student's layers carry the teacher's adapters of layers 0 and 2
        got = moved.model.layers[l].output_adapters.adapters["task"].adapter_up.weight
        assert torch.equal(got, teacher.model.layers[2 * l].output_adapters.adapters["task"].adapter_up.weight)


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_planted_symmetry_is_recovered_and_the_moved_adapter_reproduces_the_teacher_logits(tmp_path, family):
    teacher_base, student_base, perms = planted(family)
    torch.testing.assert_close(logits(student_base), logits(teacher_base), rtol=0, atol=1e-4)  # the same function
    teacher = with_adapter(teacher_base)
    alignment = assign_correlation(correlate_samples(*samples(teacher_base, student_base, tmp_path), "skip"))
    for lm in alignment.layers:
        assert lm.space == "h" and lm.sigma.tolist() == perms["h"].tolist() and lm.mean_r == pytest.approx(1.0, abs=1e-5)
    shape = model_shape(teacher_base.config, family)
    transfer_module(_save(teacher, tmp_path / "m"), shape, shape, "skip", tmp_path / "out", alignment)
    want = logits(teacher)
    torch.testing.assert_close(logits(load_moved(student_base, tmp_path / "out")), want, rtol=0, atol=1e-4)
    assert (want - logits(teacher_base)).abs().max() > 1e-2  # the adapter does change the function


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    """A 4-layer 64-wide Llama teacher with an adapter, a 2-layer 48-wide student (6 heads, 96 neurons), saved."""
    root = tmp_path_factory.mktemp("narrow")
    teacher = make_decoder("llama", layers=4)
    student = make_decoder("llama", layers=2, hidden=48, heads=6, kv=2, intermediate=96, seed=5)
    _save(with_adapter(teacher), root / "adapter")
    return dict(teacher=teacher, student=student, adapter=root / "adapter", samples=samples(teacher, student, root),
                shapes=(load_model_shape(save_decoder(teacher, root / "t")), load_model_shape(save_decoder(student, root / "s"))))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_moves_an_adapter_to_a_narrower_student_that_loads_and_runs(narrow, tmp_path, method):
    t, s = narrow["samples"]
    t_shape, s_shape = narrow["shapes"]
    if method == "lsa":
        alignment = assign_correlation(correlate_samples(t, s, "skip", holdout=0.2))
    elif method == "embed":
        alignment = embedding_alignment(t_shape, s_shape, "skip", ("h",))
    else:
        alignment = fit_alignment(t, s, "skip", method, holdout=0.2)
    transfer_module(narrow["adapter"], t_shape, s_shape, "skip", tmp_path / "out", alignment)
    weights = load_file(tmp_path / "out" / "adapter.safetensors")
    assert weights["layers.1.output_adapters.adapters.task.adapter_down.0.weight"].shape == (8, 48)
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["config"]["reduction_factor"] == 6
    got = logits(load_moved(narrow["student"], tmp_path / "out"))
    assert torch.isfinite(got).all() and (got - logits(narrow["student"])).abs().max() > 1e-3
    result = transfer_fidelity(read_module(narrow["adapter"], t_shape), read_module(tmp_path / "out", s_shape), t, s,
                               "skip", holdout=0.2)
    assert result["method"] == method and result["heldout_tokens"] > 0
    assert {(d["student_layer"], d["site"], d["space"]) for d in result["layers"]} == {(0, "adapter", "h"), (1, "adapter", "h")}
    assert all(math.isfinite(d["rel_error"]) and -1 <= d["cosine"] <= 1 for d in result["layers"])


def test_cli_moves_a_llama_adapter_in_one_shot_and_adapters_loads_it(narrow, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    t_shape, s_shape = narrow["shapes"]
    common = ["transfer", "--module", narrow["adapter"], "--teacher-model", t_shape.name, "--student-model", s_shape.name,
              "--mapping", "skip"]
    code, out, err = run_cli(capsys, *common, "--samples", text, "--out", tmp_path / "X")
    assert code == 0, err
    assert "wrote the transferred module" in out and (tmp_path / "X" / "pytorch_adapter.bin").is_file()
    config = json.loads((tmp_path / "X" / "adapter_config.json").read_text())
    assert config["model_type"] == "llama" and config["transmod"]["align"] == "lsa" and config["hidden_size"] == 48
    got = logits(load_moved(narrow["student"], tmp_path / "X"))
    assert torch.isfinite(got).all() and (got - logits(narrow["student"])).abs().max() > 1e-3
    code, _, err = run_cli(capsys, *common, "--samples", text, "--format", "peft", "--out", tmp_path / "Y")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "LoRA modules only" in lines[0] and not (tmp_path / "Y").exists()


@pytest.mark.parametrize("family", ["qwen2", "gemma2"])
def test_an_adapter_on_a_family_adapters_does_not_support_is_refused_in_one_line(tmp_path, capsys, family):
    """adapters 1.3 has no Qwen2 or Gemma2 models: a module claiming one, or sampling one for it, is refused."""
    folder = _save(with_adapter(make_decoder("llama")), tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "model_type": family}))  # same layer names
    model = save_decoder(make_decoder(family), tmp_path / family)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    argvs = {"X": ["transfer", "--module", folder, "--teacher-model", model, "--student-model", model, "--mapping",
                   "skip", "--samples", text],
             "s.parquet": ["sample", "--model", model, "--peft", "adapter", "--data", text]}
    for out, argv in argvs.items():
        code, _, err = run_cli(capsys, *argv, "--out", tmp_path / out)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, err
        assert f"no bottleneck adapter in {family} layers" in lines[0] and "llama, mistral" in lines[0], lines[0]
        assert "--peft lora" in lines[0] and not (tmp_path / out).exists()
    with pytest.raises(TransmodError, match=rf"^{folder}: the adapters library puts no bottleneck adapter"):
        read_module(folder, load_model_shape(model))


def test_the_cka_map_picks_teacher_layers_on_the_adapters_samples(narrow, tmp_path):
    """`--mapping cka` compares layers on the adapter hook's own samples (the layers' outputs)."""
    t, s = narrow["samples"]
    t_shape, s_shape = narrow["shapes"]
    alignment = assign_correlation(correlate_samples(t, s, "cka"))
    groups = alignment.groups()
    assert len(groups) == 2 and all(len(g) == 1 for g in groups) and groups[0][0] < groups[1][0] <= 3
    transfer_module(narrow["adapter"], t_shape, s_shape, "cka", tmp_path / "out", alignment)
    src, dst = read_module(narrow["adapter"], t_shape), read_module(tmp_path / "out", s_shape)
    for l, (t_layer,) in enumerate(groups):  # the chosen teacher layer's bias, written through the selection
        lm = alignment.get(l, "h")
        assert (dst.weights[(l, "adapter", "adapter_up.bias")] == src.weights[(t_layer, "adapter", "adapter_up.bias")][lm.sigma]).all()
    assert torch.isfinite(logits(load_moved(narrow["student"], tmp_path / "out"))).all()


def test_a_parallel_adapter_is_refused_naming_the_option(tmp_path):
    """par_bn reads the MLP's residual input, not the layer's output that is sampled: moving it would misalign."""
    import adapters

    model = copy.deepcopy(make_decoder("llama"))
    adapters.init(model)
    model.add_adapter("par", config="par_bn")
    model.save_adapter(str(tmp_path / "par"), "par")
    with pytest.raises(TransmodError, match="unsupported module options is_parallel"):
        read_module(tmp_path / "par", model_shape(model.config, "t"))
