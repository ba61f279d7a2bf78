"""peft LoRAs on decoder LLMs: read, moved between models of one family, written back loadable by peft."""

import json

import pytest
import torch
from helpers.decoders import SITES, load_peft, logits, make_decoder, peft_lora
from safetensors.torch import load_file

from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import model_shape
from transmod.modules.io import read_module

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")

FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lora_moved_to_the_same_model_is_unchanged_and_loads_in_peft(tmp_path, family):
    base = make_decoder(family)
    teacher = peft_lora(base, tmp_path / "teacher")
    shape = model_shape(base.config, family)
    assert (shape.num_heads, shape.num_kv_heads, shape.head_dim, shape.intermediate_size) == (8, 2, 8, 128)
    module = read_module(tmp_path / "teacher", shape)
    assert {s for _, s, _ in module.weights} == set(SITES)
    transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "out", fmt="peft")
    before = load_file(tmp_path / "teacher" / "adapter_model.safetensors")
    after = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(SITES) and config["base_model_name_or_path"] == family
    got = logits(load_peft(base, tmp_path / "out"))
    torch.testing.assert_close(got, logits(teacher), rtol=0, atol=0)
    assert (got - logits(base)).abs().max() > 1e-2  # the LoRA does change the function


def test_a_causal_lm_lora_stays_a_causal_lm_lora(tmp_path):
    """peft returns PeftModelForCausalLM for the student too (with a null task type, a plain PeftModel)."""
    import peft

    base = make_decoder("llama")
    teacher = peft_lora(base, tmp_path / "teacher", task_type="CAUSAL_LM")
    shape = model_shape(base.config, "llama")
    transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "out", fmt="peft")
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    loaded = load_peft(base, tmp_path / "out")
    assert type(loaded) is type(teacher) is peft.PeftModelForCausalLM
    torch.testing.assert_close(logits(loaded), logits(teacher), rtol=0, atol=0)


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["o_proj", "down_proj"], ["gate_proj", "up_proj", "k_proj"]])
def test_any_subset_of_the_seven_targets_moves(tmp_path, targets):
    base = make_decoder("qwen2")
    teacher = peft_lora(base, tmp_path / "teacher", targets=targets)
    shape = model_shape(base.config, "q")
    transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "out", fmt="peft")
    assert {k.split(".")[-3] for k in load_file(tmp_path / "out" / "adapter_model.safetensors")} == set(targets)
    torch.testing.assert_close(logits(load_peft(base, tmp_path / "out")), logits(teacher), rtol=0, atol=0)


def test_skip_to_every_second_layer_takes_teacher_layers_0_2_exactly(tmp_path):
    teacher_base = make_decoder("llama", layers=4)
    peft_lora(teacher_base, tmp_path / "teacher")
    student = make_decoder("llama", layers=2)
    state = teacher_base.state_dict()
    student.load_state_dict({k.replace("layers.2.", "layers.1."): v for k, v in state.items()
                             if "layers.1." not in k and "layers.3." not in k})
    transfer_module(tmp_path / "teacher", model_shape(teacher_base.config, "t"), model_shape(student.config, "s"),
                    "skip", tmp_path / "out", fmt="peft")
    before = load_file(tmp_path / "teacher" / "adapter_model.safetensors")
    after = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert len(after) == 2 * 2 * len(SITES)
    for key, value in after.items():
        source = key.replace("layers.1.", "layers.2.")
        assert torch.equal(value, before[source]), key
    # the student is the teacher's layers 0 and 2: with the moved LoRA it computes that sub-network's LoRA outputs
    teacher_half = peft_lora(student, targets=SITES, seed=99)  # same structure; weights replaced below
    with torch.no_grad():
        for name, param in teacher_half.named_parameters():
            if "lora_" in name:
                param.copy_(after[name.replace(".default", "")])
    torch.testing.assert_close(logits(load_peft(student, tmp_path / "out")), logits(teacher_half), rtol=0, atol=0)


@pytest.mark.parametrize("target", ["embed_tokens", "lm_head"])
def test_a_lora_on_embeddings_or_the_lm_head_is_refused_in_one_line(tmp_path, target):
    base = make_decoder("llama")
    peft_lora(base, tmp_path / "teacher", targets=["q_proj", target])
    shape = model_shape(base.config, "m")
    with pytest.raises(TransmodError, match=f"LoRA on {target} cannot be moved; transmod moves LoRAs on q_proj") as err:
        transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "out", fmt="peft")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_an_unsupported_decoder_family_is_refused_with_the_list(tmp_path):
    from transformers import GPT2Config

    with pytest.raises(TransmodError, match="unsupported architecture 'gpt2'.*llama, mistral, qwen2, qwen3, gemma2, gemma3_text"):
        model_shape(GPT2Config(n_layer=2, n_embd=32, n_head=2), "gpt2-tiny")
