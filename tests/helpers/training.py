"""Training on tiny offline models: a WordPiece tokenizer over a few words, one tiny random model per encoder family,
sentence-pair data with a learnable label, fast hyper-parameters, and a step callback that stops a run."""

from __future__ import annotations

import random

from datasets import Dataset

WORDS = ["john", "mary", "berlin", "paris", "acme", "lives", "in", "works", "at", "the", "good", "bad", "a", "day",
         "is", "and", "ber", "##lin"]


def make_training_tokenizer():
    """A WordPiece tokenizer over a few words; unknown words fall back to single characters."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + WORDS + letters + ["##" + c for c in letters]))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


ARCHS = ("bert", "distilbert", "xlm-roberta", "electra", "deberta-v2", "albert")  # every encoder family supported


def tiny_config(arch: str):
    """Tiny random models; a wider init than 0.02 so the frozen features carry enough signal to learn from."""
    from transformers import (
        AlbertConfig,
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        XLMRobertaConfig,
    )

    if arch == "albert":
        return AlbertConfig(vocab_size=200, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, pad_token_id=0, initializer_range=0.2)
    if arch == "electra":
        return ElectraConfig(vocab_size=200, embedding_size=32, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64, pad_token_id=0, initializer_range=0.2)
    if arch == "deberta-v2":
        return DebertaV2Config(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, pad_token_id=0, initializer_range=0.2, type_vocab_size=2,
                               relative_attention=True, pos_att_type=["p2c", "c2p"], max_relative_positions=64,
                               position_buckets=32, norm_rel_ebd="layer_norm")
    if arch == "bert":
        return BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, pad_token_id=0, initializer_range=0.2)
    if arch == "distilbert":
        return DistilBertConfig(vocab_size=200, dim=32, n_layers=2, n_heads=2, hidden_dim=64, pad_token_id=0,
                                initializer_range=0.2)
    return XLMRobertaConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, pad_token_id=0, max_position_embeddings=160, initializer_range=0.2)


def pi_data(n: int, seed: int) -> Dataset:
    """Sentence pairs in the pi schema; the label is whether sentence1 holds "good" (1) or "bad" (0)."""
    rng = random.Random(seed)
    filler = ["john", "lives", "in", "berlin", "the", "day", "is", "and", "a"]
    rows = {"sentence1": [], "sentence2": [], "label": []}
    for i in range(n):
        label = i % 2
        words = [rng.choice(filler) for _ in range(rng.randint(2, 6))]
        words.insert(rng.randint(0, len(words)), "good" if label else "bad")
        rows["sentence1"].append(" ".join(words))
        rows["sentence2"].append(" ".join(rng.choice(filler) for _ in range(rng.randint(2, 6))))
        rows["label"].append(label)
    return Dataset.from_dict(rows)


# Hyper-parameters under which a tiny model learns in seconds.
FAST = dict(learning_rate=3e-3, batch_size=8, epochs=4, max_length=32, eval_batch_size=32,
            modules={"adapter": {"bottleneck": 8}, "lora": {"r": 4, "alpha": 8}})


class Killed(Exception):
    """What kill_at raises: a run stopped as a kill would stop it."""


def kill_at(step: int):
    """A step callback that stops training (as a kill would) after optimizer step `step`."""
    def callback(global_step: int) -> None:
        if global_step == step:
            raise Killed
    return callback
