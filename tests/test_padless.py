"""Tokenizers without a pad token, as Llama, Mistral and SmolLM ship them (some padding on the left): sampling pads
on the right with a token of their own and samples exactly what one sentence at a time gives."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers.decoders import make_decoder, make_decoder_tokenizer, peft_lora
from helpers.models import SENTENCES

from transmod.align.samplefile import from_vectors
from transmod.align.sampling import sample_hidden_states
from transmod.cli import main

pytest.importorskip("peft")


def padless(side: str = "left"):
    """The test decoder's tokenizer as the real families ship it: no pad token, an end-of-text token."""
    tok = make_decoder_tokenizer(extra=("</s>",))
    tok.pad_token = None
    tok.eos_token = "</s>"
    tok.padding_side = side
    assert tok.pad_token_id is None
    return tok


@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_sampling_without_a_pad_token_equals_one_sentence_at_a_time(tmp_path, side):
    model = make_decoder("llama")
    tok = padless(side)
    examples = [(s,) for s in SENTENCES[:12]]
    states = {}
    for batch in (1, 5):
        out = tmp_path / f"b{batch}.parquet"
        sample_hidden_states(model.model, tok, examples, {"lora": out}, model_name="llama", batch_size=batch)
        states[batch] = pq.read_table(out)
    assert tok.pad_token_id is None and tok.padding_side == side  # the caller's tokenizer is left as it was
    one, many = states[1], states[5]
    assert one.num_rows == many.num_rows > 0 and one["token"].to_pylist() == many["token"].to_pylist()
    columns = [c for c in one.column_names if c[0] in "hfam" and c[1:].isdigit()]
    assert len(columns) >= 8
    for column in columns:
        np.testing.assert_allclose(from_vectors(many[column].combine_chunks()), from_vectors(one[column].combine_chunks()),
                                   rtol=1e-4, atol=1e-5)


def test_one_shot_transfer_of_a_decoder_lora_with_a_padless_tokenizer(tmp_path):
    for name, layers in (("teacher", 4), ("student", 2)):
        model = make_decoder("llama", layers=layers, seed=layers)
        model.save_pretrained(tmp_path / name)
        padless().save_pretrained(tmp_path / name)
    peft_lora(make_decoder("llama", layers=4, seed=4), tmp_path / "lora")
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    assert main(["transfer", "--module", str(tmp_path / "lora"), "--teacher-model", str(tmp_path / "teacher"),
                 "--student-model", str(tmp_path / "student"), "--mapping", "skip", "--samples",
                 str(tmp_path / "text.txt"), "--align", "procrustes", "--out", str(tmp_path / "moved")]) == 0
    assert (tmp_path / "moved" / "adapter_model.safetensors").is_file()
