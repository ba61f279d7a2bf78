"""The data-free `embed` alignment: the residual stream matched through the input embeddings of the shared vocabulary."""

import copy

import pytest
import torch
from helpers.decoders import (
    load_peft,
    logits,
    make_decoder,
    make_decoder_tokenizer,
    peft_lora,
    permute_decoder,
    save_decoder,
)

from transmod.align.embeddings import embedding_alignment
from transmod.align.transfer import transfer_module
from transmod.errors import TransmodError
from transmod.modules.architectures import load_model_shape
from transmod.modules.lora import DECODER_SPACES

pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


def test_a_planted_residual_permutation_is_recovered_from_the_embeddings_alone(tmp_path):
    teacher = make_decoder("llama")
    residual = torch.randperm(64, generator=torch.Generator().manual_seed(5))
    student = copy.deepcopy(teacher)
    permute_decoder(student, residual, torch.arange(2), [torch.arange(4)] * 2, torch.arange(128))
    paths = save_decoder(teacher, tmp_path / "t"), save_decoder(student, tmp_path / "s")
    shapes = load_model_shape(paths[0]), load_model_shape(paths[1])
    alignment = embedding_alignment(*shapes, "skip", DECODER_SPACES)
    assert alignment.method == "embed" and alignment.num_tokens == len(make_decoder_tokenizer().get_vocab()) - 3
    for lm in alignment.layers:
        want = residual.tolist() if lm.space in ("h", "f") else list(range(len(lm.sigma)))  # heads, neurons: select
        assert lm.sigma.tolist() == want, lm.space
    with_lora = peft_lora(teacher, tmp_path / "lora")
    transfer_module(tmp_path / "lora", *shapes, "skip", tmp_path / "out", alignment, fmt="peft")
    torch.testing.assert_close(logits(load_peft(student, tmp_path / "out")), logits(with_lora), rtol=0, atol=1e-4)


def test_embed_moves_a_lora_to_a_narrower_student(tmp_path):
    """A student whose embeddings are 48 of the teacher's 64 dimensions, shuffled: embed finds those 48, and the
    moved LoRA's A reads exactly those columns of the teacher's A (SKIP 4 -> 2: student layer 1 <- teacher layer 2)."""
    from safetensors.torch import load_file

    teacher_model = make_decoder("qwen3", layers=4)
    teacher = save_decoder(teacher_model, tmp_path / "t")
    student_model = make_decoder("qwen3", hidden=48, heads=6, intermediate=96, seed=4)
    kept = torch.randperm(64, generator=torch.Generator().manual_seed(7))[:48]
    with torch.no_grad():
        student_model.model.embed_tokens.weight.copy_(teacher_model.model.embed_tokens.weight[:, kept])
    student = save_decoder(student_model, tmp_path / "s")
    peft_lora(make_decoder("qwen3", layers=4), tmp_path / "lora")
    shapes = load_model_shape(teacher), load_model_shape(student)
    alignment = embedding_alignment(*shapes, "skip", DECODER_SPACES)
    assert alignment.get(1, "h").sigma.tolist() == kept.tolist() and len(alignment.get(1, "a").sigma) == 48
    transfer_module(tmp_path / "lora", *shapes, "skip", tmp_path / "out", alignment, fmt="peft")
    moved, original = load_file(tmp_path / "out" / "adapter_model.safetensors"), load_file(tmp_path / "lora" / "adapter_model.safetensors")
    for site in ("self_attn.q_proj", "mlp.gate_proj"):  # both read the residual stream
        key = "base_model.model.model.layers.{}." + site + ".lora_A.weight"
        assert torch.equal(moved[key.format(1)], original[key.format(2)][:, kept]), site
    assert torch.isfinite(logits(load_peft(student_model, tmp_path / "out"))).all()


def test_tokenizers_without_shared_vocabulary_are_refused_in_one_line(tmp_path):
    other = make_decoder_tokenizer(words=[f"tok{i}" for i in range(40)])
    teacher = save_decoder(make_decoder("llama"), tmp_path / "t")
    student = save_decoder(make_decoder("llama", seed=2), tmp_path / "s", tokenizer=other)
    with pytest.raises(TransmodError, match=r"share 0 token strings of \d+: too little vocabulary for --align embed") as err:
        embedding_alignment(load_model_shape(teacher), load_model_shape(student), "skip", DECODER_SPACES)
    assert "\n" not in str(err.value)
