"""Decoder LLMs: three spaces sampled in one pass, aligned on their own (heads whole, with their key/value
head), and folded into each LoRA weight's axes; the planted symmetry of docs/method.md section 7, extended."""


import numpy as np
import pytest
import torch
from helpers.decoders import (
    decoder_samples,
    load_peft,
    logits,
    make_decoder,
    make_decoder_tokenizer,
    peft_lora,
    planted,
)
from helpers.models import SENTENCES

from transmod.align.alignment import assign_correlation, fit_alignment
from transmod.align.correlation import correlate_samples
from transmod.align.transfer import transfer_module
from transmod.modules.architectures import model_shape

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


def test_sampling_captures_each_space_at_its_hook_point_in_one_pass(tmp_path):
    model = make_decoder("qwen3")
    t, _ = decoder_samples((model, model), tmp_path)
    assert t.meta["spaces"] == ["h", "f", "a", "m"] and (t.width("h"), t.width("a"), t.width("m")) == (64, 64, 128)
    enc = make_decoder_tokenizer()([SENTENCES[0]], return_tensors="pt")
    seen = {}
    layer = model.model.layers[1]
    hooks = [getattr(layer.self_attn, p).register_forward_pre_hook(lambda m, a, p=p: seen.setdefault(p, a[0]))
             for p in ("q_proj", "o_proj")]
    hooks += [getattr(layer.mlp, p).register_forward_pre_hook(lambda m, a, p=p: seen.setdefault(p, a[0]))
              for p in ("gate_proj", "down_proj")]
    with torch.no_grad():
        model(**enc)
    for h in hooks:
        h.remove()
    first = next(t.iter_columns(["h1", "f1", "a1", "m1"], 64))
    n = enc["input_ids"].shape[1] - 1  # the BOS token is special: not sampled
    for column, proj in (("h1", "q_proj"), ("f1", "gate_proj"), ("a1", "o_proj"), ("m1", "down_proj")):
        np.testing.assert_allclose(first[column][:n], seen[proj][0, 1:].numpy(), rtol=0, atol=1e-5)  # batched vs alone


@pytest.mark.parametrize("family, method, dtype", [("llama", "lsa", "float32"), ("qwen2", "lsa", "float32"),
                                                   ("llama", "procrustes", "float32"), ("qwen2", "linear", "float32"),
                                                   ("llama", "lsa", "bfloat16"), ("qwen2", "procrustes", "bfloat16")])
def test_planted_symmetry_is_recovered_and_the_moved_lora_reproduces_the_teacher_logits(tmp_path, family, method, dtype):
    """bfloat16 sample files (3 significant digits) find the same permutations as float32 ones."""
    teacher_base, student_base, perms = planted(family)
    torch.testing.assert_close(logits(student_base), logits(teacher_base), rtol=0, atol=1e-4)  # the same function (float sums reordered)
    teacher = peft_lora(teacher_base, tmp_path / "teacher")
    samples = decoder_samples((teacher_base, student_base), tmp_path, dtype=dtype)
    assert samples[0].dtype == samples[1].dtype == dtype
    if method == "lsa":
        alignment = assign_correlation(correlate_samples(*samples, "skip"))
    else:
        alignment = fit_alignment(*samples, "skip", method)
    assert {lm.space for lm in alignment.layers} == {"h", "f", "a", "kv", "m"}
    for lm in alignment.layers:
        if lm.sigma is not None:
            assert lm.sigma.tolist() == perms[lm.space].tolist(), (lm.space, lm.student_layer)
    shape = model_shape(teacher_base.config, family)
    transfer_module(tmp_path / "teacher", shape, shape, "skip", tmp_path / "out", alignment, fmt="peft")
    got = logits(load_peft(student_base, tmp_path / "out"))
    # A dense map fitted on bfloat16 states is the permutation to about 3 digits, no closer.
    torch.testing.assert_close(got, logits(teacher), rtol=0, atol=1e-4 if dtype == "float32" or method == "lsa" else 2e-3)
    assert (logits(teacher) - logits(teacher_base)).abs().max() > 1e-2


def test_a_llama_lora_moves_to_a_qwen2_student_through_the_alignment(tmp_path):
    """Across families: a Qwen2 student that computes the Llama teacher's function (its weights, zero attention
    biases) with residual stream, heads and MLP neurons permuted. The alignment recovers the permutation from
    samples and the moved LoRA gives the student the teacher's logits, loadable by peft on the Qwen2 model."""
    from helpers.decoders import decoder_config, permute_decoder
    from transformers import AutoModelForCausalLM

    teacher_base, _, perms = planted("llama")
    student_base = AutoModelForCausalLM.from_config(decoder_config("qwen2"), attn_implementation="eager").eval()
    missing, unexpected = student_base.load_state_dict(teacher_base.state_dict(), strict=False)
    assert unexpected == [] and all(k.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for k in missing)
    with torch.no_grad():
        for name, param in student_base.named_parameters():
            if name.endswith("_proj.bias"):
                param.zero_()
    gen = torch.Generator().manual_seed(3)  # planted()'s permutations, drawn again
    permute_decoder(student_base, residual=torch.randperm(64, generator=gen), kv_groups=torch.tensor([1, 0]),
                    group_heads=[torch.randperm(4, generator=gen) for _ in range(2)],
                    neurons=torch.randperm(128, generator=gen))
    torch.testing.assert_close(logits(student_base), logits(teacher_base), rtol=0, atol=1e-4)
    teacher = peft_lora(teacher_base, tmp_path / "teacher")
    alignment = assign_correlation(correlate_samples(*decoder_samples((teacher_base, student_base), tmp_path), "skip"))
    for lm in alignment.layers:
        if lm.sigma is not None:
            assert lm.sigma.tolist() == perms[lm.space].tolist(), (lm.space, lm.student_layer)
    transfer_module(tmp_path / "teacher", model_shape(teacher_base.config, "llama"),
                    model_shape(student_base.config, "qwen2"), "skip", tmp_path / "out", alignment, fmt="peft")
    torch.testing.assert_close(logits(load_peft(student_base, tmp_path / "out")), logits(teacher), rtol=0, atol=1e-4)
