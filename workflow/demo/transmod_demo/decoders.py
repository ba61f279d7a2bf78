"""The demo's decoder pairs: a tiny Llama teacher and two students, one made of its layers 0 and 2 (SKIP, k=2),
as a layer-dropped student of one family would be, and a narrower Llama trained on its own (48 wide, fewer heads
of the same size: what an alignment has to bridge).

Their tokenizer is the demo's WordPiece vocabulary as a decoder's: a BOS token before every text, an end token,
and no pad token, as Llama, Mistral and SmolLM ship theirs. The teacher gets a short causal-LM pre-training
on the demo's text (a random decoder gives a LoRA nothing to build on); the student is cut from it after.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transmod.atomic import atomic_path
from transmod_demo.tokenizer import MAX_LENGTH

DECODER_MODELS: tuple[str, ...] = ("teacher-llama", "student-llama", "narrow-llama")
DECODER_LAYERS: tuple[int, ...] = (0, 2)  # teacher layers the decoder student is made of


def decoder_tokenizer(tokenizer_dir: str | Path) -> Any:
    """The demo tokenizer with a BOS in front of each text (no end token appended) and no pad token."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", tok.token_to_id("[CLS]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LENGTH, bos_token="[CLS]",
                                   eos_token="[SEP]", unk_token="[UNK]")


def pretrain_clm(model: Any, tokenizer: Any, texts: Sequence[str], steps: int, seed: int, batch_size: int = 32,
                 learning_rate: float = 3e-3) -> Any:
    """A short next-token pre-training of a causal LM on the texts, in place (each text ended by the end token)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoded = [tokenizer(t, truncation=True, max_length=MAX_LENGTH - 1)["input_ids"] + [tokenizer.eos_token_id]
                   for t in texts]
        order = torch.randperm(len(encoded)).tolist()
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
        model.train()
        for step in range(steps):
            rows = [encoded[order[(step * batch_size + i) % len(order)]] for i in range(batch_size)]
            width = max(map(len, rows))
            ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def build_decoder_pair(tokenizer_dir: str | Path, out_root: str | Path, seed: int = 0, texts: Sequence[str] = (),
                       pretrain_steps: int = 0) -> dict[str, Path]:
    """teacher-llama (4 layers, 64 wide, 4 query heads on 2 key/value heads of 16), student-llama (its layers 0 and
    2) and narrow-llama (2 layers, 48 wide, 2 query heads on 1 key/value head of 16, its own seed and pre-training),
    one folder each under `out_root`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = decoder_tokenizer(tokenizer_dir)
    common = dict(vocab_size=len(tokenizer), head_dim=16, max_position_embeddings=MAX_LENGTH, tie_word_embeddings=False,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    configs = {"teacher-llama": LlamaConfig(**common, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                            num_key_value_heads=2, intermediate_size=128),
               "narrow-llama": LlamaConfig(**common, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                                           num_key_value_heads=1, intermediate_size=96)}
    models = {}
    for offset, (name, config) in enumerate(configs.items()):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 3 + offset)
            models[name] = AutoModelForCausalLM.from_config(config)
        if texts and pretrain_steps:
            pretrain_clm(models[name], tokenizer, texts, pretrain_steps, seed + 3 + offset)
    models["student-llama"] = cut_layers(models["teacher-llama"], DECODER_LAYERS)
    out = {}
    for name in DECODER_MODELS:
        out[name] = Path(out_root) / name
        with atomic_path(out[name], is_dir=True) as tmp:
            models[name].eval().save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    return out


def cut_layers(model: Any, layers: Sequence[int]) -> Any:
    """A model of the teacher's `layers` (its embeddings, final norm and LM head too), of the teacher's class."""
    from transformers import AutoModelForCausalLM

    config = type(model.config).from_dict({**model.config.to_dict(), "num_hidden_layers": len(layers)})
    student = AutoModelForCausalLM.from_config(config)
    state, cut = model.state_dict(), student.state_dict()
    for name, tensor in cut.items():  # model.layers.<l>.… of the student is layer layers[l] of the teacher
        parts = name.split(".")
        if parts[:2] == ["model", "layers"]:
            parts[2] = str(layers[int(parts[2])])
        tensor.copy_(state[".".join(parts)])
    return student.eval()
