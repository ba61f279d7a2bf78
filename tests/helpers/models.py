"""Tiny real encoders and a tokenizer, built offline from configs; modules (adapters, LoRA) on them, saved and
loaded; their hidden states sampled; the exact symmetry of a permuted hidden axis."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

WORDS = (
    "the a cat dog sat on mat house red blue green big small runs walks sees eats bird tree river "
    "city paris berlin anna tom bank company john maria fast slow under over near far old new"
).split()
SENTENCES = [
    " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 6)) for i in range(60)
]

HIDDEN = 24


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def make_config(model_type: str, layers: int, hidden: int = HIDDEN, heads: int = 2):
    from transformers import (
        AlbertConfig,
        BertConfig,
        BertGenerationConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        XLMRobertaConfig,
    )

    vocab = 5 + len(WORDS)
    if model_type == "albert":  # factorised embeddings (narrower than the hidden size), one layer at every depth
        return AlbertConfig(vocab_size=vocab, embedding_size=hidden // 2, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=40, max_position_embeddings=64)
    if model_type == "bert-generation":
        return BertGenerationConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                    intermediate_size=40, max_position_embeddings=64)
    if model_type == "bert":
        return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=40, max_position_embeddings=64)
    if model_type == "xlm-roberta":
        return XLMRobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=40, max_position_embeddings=64, pad_token_id=0)
    if model_type == "distilbert":
        return DistilBertConfig(vocab_size=vocab, dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=40,
                                max_position_embeddings=64)
    if model_type == "electra":
        return ElectraConfig(vocab_size=vocab, embedding_size=hidden, hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, intermediate_size=40, max_position_embeddings=64)
    if model_type == "deberta-v2":  # relative attention with its own position projections, as DeBERTa-v3 has
        return DebertaV2Config(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=40, max_position_embeddings=64, type_vocab_size=2,
                               relative_attention=True, pos_att_type=["p2c", "c2p"], max_relative_positions=32,
                               position_buckets=16, norm_rel_ebd="layer_norm", share_att_key=False)
    raise ValueError(model_type)


def make_model(model_type: str, layers: int, hidden: int = HIDDEN, seed: int = 0):
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = AutoModel.from_config(make_config(model_type, layers, hidden))
    return model.eval()


def save_model(model, path) -> str:
    model.save_pretrained(path, safe_serialization=True)
    make_tokenizer().save_pretrained(path)
    return str(path)


def randomize_module(model, name: str, seed: int = 1) -> None:
    """Give a freshly added module non-trivial weights so that it changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if f".{name}." in key:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


def add_module(model, peft: str, name: str = "task", bottleneck: int = 6, seed: int = 1):
    import adapters
    from adapters import LoRAConfig, SeqBnConfig

    adapters.init(model)
    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    if peft == "adapter":
        model.add_adapter(name, config=SeqBnConfig(reduction_factor=hidden / bottleneck))
    else:
        model.add_adapter(name, config=LoRAConfig(r=4, alpha=4))
    randomize_module(model, name, seed)
    model.set_active_adapters(name)
    return model


def _albert_hidden_axes(name: str) -> tuple[int, ...]:
    """ALBERT's: its embeddings live in their own narrower space, which a projection maps into the hidden one."""
    if name.startswith("embeddings."):
        return ()
    if "embedding_hidden_mapping_in" in name or "attention.dense" in name or "ffn_output" in name:
        return (0,)
    if name.endswith(("ffn.weight", "query.weight", "key.weight", "value.weight")):
        return (1,)
    if name.endswith(("ffn.bias", "query.bias", "key.bias", "value.bias")):
        return ()
    if "LayerNorm" in name or "layer_norm" in name:
        return (0,)
    if name.startswith("pooler."):
        return (0, 1) if name.endswith("weight") else (0,)
    raise AssertionError(f"unhandled parameter {name}")


def hidden_axes(name: str, model_type: str) -> tuple[int, ...]:
    """Axes of an encoder's parameter that run along the residual stream (hidden size)."""
    if model_type == "albert":
        return _albert_hidden_axes(name)
    if ("embeddings" in name and name.endswith("_embeddings.weight")) or name.endswith("rel_embeddings.weight"):
        return (1,)
    if "LayerNorm" in name or "layer_norm" in name:
        return (0,)
    if any(k in name for k in (".query.", ".key.", ".value.", ".q_lin.", ".k_lin.", ".v_lin.", "intermediate.dense", "ffn.lin1",
                               "_proj.")):  # DeBERTa: query/key/value_proj, pos_key/pos_query_proj
        return (1,) if name.endswith("weight") else ()
    if any(k in name for k in ("attention.output.dense", "out_lin", ".output.dense", "ffn.lin2")):
        return (0,)
    if "pooler.dense" in name:
        return (0, 1) if name.endswith("weight") else (0,)
    raise AssertionError(f"unhandled parameter {name}")


def permute_hidden(model, perm: torch.Tensor):
    """The same network with its hidden dimensions permuted: an exact symmetry (h_student = h_teacher[perm])."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            for axis in hidden_axes(name, model.config.model_type):
                param.copy_(param.index_select(axis, perm))
    return model


def model_inputs(model):
    """A batch of sentence pairs for `model` (families without token types get none)."""
    enc = make_tokenizer()(SENTENCES[:6], SENTENCES[6:12], padding=True, return_tensors="pt")
    if model.config.model_type in ("distilbert", "bert-generation"):
        enc.pop("token_type_ids")
    return enc


def encoder_samples(models, tmp_path, peft, lora_outputs=False, sentences=SENTENCES):
    """Sample files of a (teacher, student) pair on `sentences`, each sampled once per tmp_path."""
    from transmod.align.samplefile import SampleFile
    from transmod.align.sampling import sample_hidden_states

    files = []
    for who, model in zip("ts", models):
        files.append(tmp_path / f"{who}-{peft}-{lora_outputs}-{len(sentences)}.parquet")
        if not files[-1].exists():
            sample_hidden_states(model, make_tokenizer(), [(s,) for s in sentences], {peft: files[-1]}, model_name=who,
                                 lora_outputs=lora_outputs)
    return SampleFile.open(files[0]), SampleFile.open(files[1])


def save_module(model, path):
    """The model's module "task" in the adapters library's format (safetensors)."""
    model.save_adapter(str(path), "task", use_safetensors=True)
    return path


def load_module(model, path):
    """`model` with the module at `path` active as "task"; every weight must fit, none be left over."""
    import adapters

    adapters.init(model)
    info = {}
    model.load_adapter(str(path), load_as="task", use_safetensors=True, loading_info=info)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [], info
    model.set_active_adapters("task")
    return model


PLAIN_LOAD = """
import json, sys
import adapters, torch
from transformers import AutoModel

results = {}
for name, model_dir, module_dir in json.loads(sys.argv[1]):
    model = AutoModel.from_pretrained(model_dir)
    adapters.init(model)
    info = {}
    loaded = model.load_adapter(module_dir, loading_info=info)  # the plain call: use_safetensors left at its default
    weights = {k: v.tolist() for k, v in model.state_dict().items() if f".{loaded}." in k}
    results[name] = {"missing": info.get("missing_keys", []), "unexpected": info.get("unexpected_keys", []),
                     "weights": weights}
print(json.dumps(results))
"""


def load_plainly(jobs) -> dict:
    """Each (name, model folder, module folder) loaded the way AdapterHub's docs say, `model.load_adapter(path)`,
    in a fresh process: {name: missing keys, unexpected keys and the loaded module's weights}."""
    done = subprocess.run([sys.executable, "-c", PLAIN_LOAD, json.dumps(jobs)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])
