"""Tiny decoder LLMs built offline from configs, peft LoRAs on them, the planted symmetries of a decoder, and
the hidden states of a pair of them sampled."""

from __future__ import annotations

import copy

import torch

from helpers.models import SENTENCES, WORDS

SITES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VOCAB = 120
SPECIALS = ["<pad>", "<unk>", "<s>"]


def make_decoder_tokenizer(extra: tuple[str, ...] = (), words=WORDS, pad: bool = True):
    """A word-level tokenizer that prepends a BOS token, as Llama's and Gemma's do; `pad=False`: with no pad token
    but an end-of-sequence token `</s>`, as Llama, Mistral and SmolLM ship theirs."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(words) + list(extra) + ([] if pad else ["</s>"]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    if not pad:
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>")


def decoder_config(family: str, layers: int = 2, hidden: int = 64, heads: int = 8, kv: int = 2,
                   intermediate: int = 128, head_dim: int = 8, vocab: int = VOCAB, **options):
    """A small config of a decoder family (`options`: more of its config's keys); weights drawn wide enough that
    heads of a group attend differently."""
    import transformers

    cls = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config", "qwen3": "Qwen3Config",
           "gemma2": "Gemma2Config", "gemma3_text": "Gemma3TextConfig"}[family]
    return getattr(transformers, cls)(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, intermediate_size=intermediate, head_dim=head_dim, max_position_embeddings=64,
        initializer_range=0.2, tie_word_embeddings=False, pad_token_id=0, bos_token_id=2, eos_token_id=1, **options,
    )


def make_decoder(family: str = "llama", seed: int = 0, **sizes):
    """A causal LM with random weights (its norms too, so that a permutation of them is visible)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(decoder_config(family, **sizes), attn_implementation="eager")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(torch.rand(param.shape) * 0.5)
    return model.eval()


def save_decoder(model, path, tokenizer=None) -> str:
    model.save_pretrained(path, safe_serialization=True)
    (tokenizer or make_decoder_tokenizer()).save_pretrained(path)
    return str(path)


def inputs(tokenizer=None):
    tok = tokenizer or make_decoder_tokenizer()
    return tok(SENTENCES[:8], padding=True, return_tensors="pt")


def logits(model, tokenizer=None):
    enc = inputs(tokenizer)
    with torch.no_grad():
        out = model(**enc).logits
    return out[enc["attention_mask"].bool()]


def peft_lora(model, path=None, targets=SITES, r=4, alpha=8, seed=1, layers=None, task_type=None):
    """A peft LoRA on `targets` with random weights (A and B), saved to `path` if given; returns the peft model."""
    import peft

    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), layers_to_transform=layers,
                             task_type=task_type)
    lora = peft.get_peft_model(copy.deepcopy(model), config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    if path is not None:
        lora.save_pretrained(str(path))
    return lora.eval()


def load_peft(base, path):
    """The student with a LoRA loaded by peft; asserts peft found no missing or unexpected keys."""
    import peft

    model = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(path))
    check = model.load_adapter(str(path), adapter_name="check")
    assert check.missing_keys == [] and check.unexpected_keys == [], check
    model.set_adapter("default")
    return model.eval()


def permute_decoder(model, residual: torch.Tensor, kv_groups: torch.Tensor, group_heads: torch.Tensor,
                    neurons: torch.Tensor):
    """The same function with its residual stream, heads and MLP neurons permuted (an exact symmetry).

    `kv_groups` permutes the key/value heads; `group_heads[g]` the query heads inside the group that
    student group g takes, so that every query head stays with its key/value head. Returns the
    per-dimension permutations of the query-head and key/value-head spaces.
    """
    cfg = model.config
    hd, per = cfg.head_dim, cfg.num_attention_heads // cfg.num_key_value_heads
    heads = torch.cat([kv_groups[g] * per + group_heads[g] for g in range(len(kv_groups))])
    q_dims = (heads[:, None] * hd + torch.arange(hd)).reshape(-1)
    kv_dims = (kv_groups[:, None] * hd + torch.arange(hd)).reshape(-1)
    axes = {  # parameter suffix -> (axis, permutation)
        "q_proj.weight": [(0, q_dims), (1, residual)], "k_proj.weight": [(0, kv_dims), (1, residual)],
        "v_proj.weight": [(0, kv_dims), (1, residual)], "o_proj.weight": [(0, residual), (1, q_dims)],
        "q_proj.bias": [(0, q_dims)], "k_proj.bias": [(0, kv_dims)], "v_proj.bias": [(0, kv_dims)],
        "gate_proj.weight": [(0, neurons), (1, residual)], "up_proj.weight": [(0, neurons), (1, residual)],
        "down_proj.weight": [(0, residual), (1, neurons)], "embed_tokens.weight": [(1, residual)],
        "lm_head.weight": [(1, residual)],
    }
    with torch.no_grad():
        for name, param in model.named_parameters():
            suffix = ".".join(name.split(".")[-2:])
            if suffix in axes:
                for axis, perm in axes[suffix]:
                    param.copy_(param.index_select(axis, perm))
            elif "q_norm" in name or "k_norm" in name:
                continue  # over the head dimension, which no permutation touches
            elif "norm" in name:
                param.copy_(param[residual])
            else:
                raise AssertionError(f"unhandled parameter {name}")
    return q_dims, kv_dims


def planted(family: str, seed: int = 3):
    """A teacher and the same function with residual stream, heads (groups kept) and MLP neurons permuted; the
    permutation of each sampled space (h, f, a, kv, m)."""
    teacher = make_decoder(family)
    gen = torch.Generator().manual_seed(seed)
    perms = dict(residual=torch.randperm(64, generator=gen), kv_groups=torch.tensor([1, 0]),
                 group_heads=[torch.randperm(4, generator=gen) for _ in range(2)], neurons=torch.randperm(128, generator=gen))
    student = copy.deepcopy(teacher)
    q_dims, kv_dims = permute_decoder(student, **perms)
    return teacher, student, dict(h=perms["residual"], f=perms["residual"], m=perms["neurons"], a=q_dims, kv=kv_dims)


def decoder_samples(models, tmp_path, sentences=SENTENCES, tokenizers=None, dtype="float32"):
    """Sample files of (teacher, student) causal LMs on the same plain text, stored as `dtype`."""
    from transmod.align.samplefile import SampleFile
    from transmod.align.sampling import sample_hidden_states

    files = []
    for i, (who, model) in enumerate(zip("ts", models)):
        files.append(tmp_path / f"{who}.parquet")
        tok = (tokenizers or [make_decoder_tokenizer()] * 2)[i]
        sample_hidden_states(model.model, tok, [(s,) for s in sentences], {"lora": files[-1]}, model_name=who,
                             dtype=dtype)
    return SampleFile.open(files[0]), SampleFile.open(files[1])
