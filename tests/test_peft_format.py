"""peft interoperability: a LoRA saved by `peft` in, a LoRA in `peft`'s format out, loaded by `peft`."""

import copy
import json

import pytest
import torch
from helpers.models import encoder_samples, make_model, model_inputs

from transmod.align.alignment import fit_alignment
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import model_shape
from transmod.modules.io import read_module

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")  # peft saving a model built from a config


def _peft_teacher(model, path, seed=1, **config):
    """A peft LoRA (r=4, alpha=8, query/value) with random weights, saved to `path`."""
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], **config))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    lora.save_pretrained(path)
    return lora.eval()


def _load_peft(student, path):
    return peft.PeftModel.from_pretrained(student, str(path)).eval()


def _merged(student, teacher_state, pairs, scaling, names=("query", "value")):
    """The student with the teacher's LoRA deltas of layer t added by hand to its layer l, for (l, t) in pairs."""
    merged = copy.deepcopy(student)
    arch = model_shape(student.config, "s").arch
    layers = merged.get_submodule(arch.layers_path)
    with torch.no_grad():
        for l, t in pairs:
            for site, path in zip(names, (arch.query, arch.value)):
                key = f"base_model.model.encoder.layer.{t}.attention.self.{site}"
                delta = teacher_state[f"{key}.lora_B.weight"] @ teacher_state[f"{key}.lora_A.weight"]
                layers[l].get_submodule(path).weight += scaling * delta
    return merged


def _out(model):
    with torch.no_grad():
        return model(**model_inputs(model)).last_hidden_state


def test_identity_round_trip_in_peft_and_adapters_format(tmp_path):
    base = make_model("bert", 2)
    teacher = _peft_teacher(copy.deepcopy(base), tmp_path / "teacher")
    shape = model_shape(base.config, "bert-2")
    transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "peft", fmt="peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == "bert-2"
    torch.testing.assert_close(_out(_load_peft(copy.deepcopy(base), tmp_path / "peft")), _out(teacher), rtol=0, atol=0)

    import adapters  # the same LoRA written for the adapters library computes the same outputs

    transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "adapters")
    student = copy.deepcopy(base)
    adapters.init(student)
    student.load_adapter(str(tmp_path / "adapters"), load_as="task", use_safetensors=True)
    student.set_active_adapters("task")
    torch.testing.assert_close(_out(student), _out(teacher), rtol=0, atol=1e-6)


@pytest.mark.parametrize("student_type", ["bert", "distilbert"])
def test_skip_to_a_shallower_student_loads_in_peft_and_adds_the_teacher_deltas(tmp_path, student_type):
    from safetensors.torch import load_file

    teacher_base = make_model("bert", 4)
    _peft_teacher(copy.deepcopy(teacher_base), tmp_path / "teacher")
    if student_type == "bert":  # the teacher's layers 0 and 2: the expected outputs are the teacher's own deltas
        student = make_model("bert", 2)
        state = teacher_base.state_dict()
        student.load_state_dict({k.replace("layer.2.", "layer.1.") if "layer.2." in k else k: v for k, v in state.items()
                                 if "layer.1." not in k and "layer.3." not in k})
    else:
        student = make_model("distilbert", 2, seed=7)
    transfer_module(tmp_path / "teacher", model_shape(teacher_base.config, "t"), model_shape(student.config, "s"),
                    "skip", tmp_path / "out", fmt="peft")
    loaded = _load_peft(copy.deepcopy(student), tmp_path / "out")
    expected = _merged(student, load_file(tmp_path / "teacher" / "adapter_model.safetensors"), [(0, 0), (1, 2)], 8 / 4)
    torch.testing.assert_close(_out(loaded), _out(expected), rtol=0, atol=2e-5)
    assert (_out(loaded) - _out(student)).abs().max() > 1e-2  # the LoRA does change the outputs
    if student_type == "distilbert":
        assert sorted(json.loads((tmp_path / "out" / "adapter_config.json").read_text())["target_modules"]) == ["q_lin", "v_lin"]


@pytest.mark.parametrize("arch", ["bert", "albert"])  # ALBERT: peft's one LoRA of the shared layer
def test_adapters_lora_written_for_peft_and_an_aligned_peft_transfer(tmp_path, arch):
    from helpers.models import add_module, permute_hidden

    base = make_model(arch, 2)
    teacher = add_module(copy.deepcopy(base), "lora")  # adapters LoRA r=4, alpha=4
    teacher.save_adapter(str(tmp_path / "ad"), "task", use_safetensors=True)
    shape = model_shape(base.config, "m")
    transfer_module(tmp_path / "ad", shape, shape, "skip", tmp_path / "out", fmt="peft")
    torch.testing.assert_close(_out(_load_peft(copy.deepcopy(base), tmp_path / "out")), _out(teacher), rtol=0, atol=1e-6)

    perm = torch.randperm(24, generator=torch.Generator().manual_seed(3))  # a peft teacher, a permuted student
    student_base = permute_hidden(copy.deepcopy(base), perm)
    peft_teacher = _peft_teacher(copy.deepcopy(base), tmp_path / "teacher")
    alignment = fit_alignment(*encoder_samples((base, student_base), tmp_path, "lora", lora_outputs=True), "skip", "procrustes")
    transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "aligned", lora_b="output",
                    alignment=alignment, fmt="peft")
    got = _out(_load_peft(copy.deepcopy(student_base), tmp_path / "aligned"))
    torch.testing.assert_close(got, _out(peft_teacher)[..., perm], rtol=0, atol=1e-4)
    provenance = json.loads((tmp_path / "aligned" / "transmod.json").read_text())
    assert provenance["align"] == "procrustes" and read_module(tmp_path / "aligned", shape).config["transmod"] == provenance


def test_head_model_lora_keeps_its_base_prefix_and_leaves_the_head(tmp_path):
    from helpers.models import make_config
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(make_config("bert", 2)).eval()
    _peft_teacher(teacher, tmp_path / "teacher", task_type="SEQ_CLS")
    student = AutoModelForSequenceClassification.from_config(make_config("distilbert", 2)).eval()
    with pytest.warns(UserWarning, match="head weight"):
        transfer_module(tmp_path / "teacher", model_shape(teacher.config, "t"), model_shape(student.config, "s"),
                        "skip", tmp_path / "out", fmt="peft")
    from safetensors.torch import load_file

    written = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.distilbert.transformer.layer.") for k in written)
    loaded = peft.PeftModel.from_pretrained(student, str(tmp_path / "out"))
    state = loaded.state_dict()
    for key, value in written.items():
        assert torch.equal(state[key.replace(".weight", ".default.weight")], value), key


def test_unsupported_peft_options_are_refused(tmp_path):
    base = make_model("bert", 2)
    _peft_teacher(copy.deepcopy(base), tmp_path / "teacher")
    config_file = tmp_path / "teacher" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(dict(config, use_dora=True)))
    with pytest.raises(TransmodError, match="unsupported peft LoRA options use_dora"):
        read_module(tmp_path / "teacher", model_shape(base.config, "m"))
    config_file.write_text(json.dumps(dict(config, peft_type="IA3")))
    with pytest.raises(TransmodError, match="not LORA"):
        read_module(tmp_path / "teacher", model_shape(base.config, "m"))
