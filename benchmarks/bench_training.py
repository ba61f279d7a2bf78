"""Training throughput: transmod's loop against a plain fixed-length-padding loop, side by side.

Same model (a BERT built from a config, random weights), same module (adapter), same data (NER
sentences with a WikiNeural-like length distribution), same number of optimizer steps. The
project's loop is `transmod.train.training.train` (dynamic padding, length-grouped batches); its
training phase is timed from the first to the last optimizer step through `step_callback`. The
plain loop pads every batch to `max_length` and draws batches in random order.

    python benchmarks/bench_training.py                 # CPU, small model (about 2 minutes)
    python benchmarks/bench_training.py --size base     # BERT-base shapes (for a GPU)

Figure: real (non-padding) tokens per second. Target on this machine's CPU: >= 1.5x.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZES = {  # hidden, layers, heads, intermediate
    "small": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),
}


def wikineural_like(n: int, seed: int) -> list[list[str]]:
    """Sentence lengths in words: log-normal around 22 words with a long tail (cut at 120)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=3.0, sigma=0.55, size=n).round(), 3, 120).astype(int)
    vocab = [f"w{i}" for i in range(3000)]
    return [[vocab[j] for j in rng.integers(0, len(vocab), size=k)] for k in lengths]


def build_assets(root: Path, size: str, sentences: list[list[str]]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        BertConfig,
        BertForTokenClassification,
        PreTrainedTokenizerFast,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + sorted({w for s in sentences for w in s}))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    hidden, layers, heads, inter = SIZES[size]
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                                  num_attention_heads=heads, intermediate_size=inter, num_labels=9))
    model.save_pretrained(root / "model")
    fast.save_pretrained(root / "model")
    return root / "model"


def plain_loop(model_dir: Path, train, cfg, steps: int) -> tuple[float, int]:
    """Reference: random batches, every one padded to max_length."""
    from transformers import AutoTokenizer

    from transmod.train.batching import collate, encode
    from transmod.train.model import build_model
    from transmod.train.runtime import input_keys, make_optimizer, token_loss

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = encode(train, tokenizer, "ner", cfg.max_length, 9)
    model = build_model(model_dir, "ner", 9, "adapter", cfg)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer, keys = make_optimizer(named, cfg), input_keys(model)
    order = np.random.default_rng(cfg.seed).permutation(len(examples))
    model.train()
    tokens, start = 0, None
    for step in range(steps):
        idx = order[(step * cfg.batch_size) % len(order):][: cfg.batch_size]
        batch = collate([_pad_to(examples[i], cfg.max_length, tokenizer.pad_token_id) for i in idx],
                        tokenizer.pad_token_id)
        if step == 1:
            start = time.perf_counter()  # like the project's timing: from the end of the first step
        if step >= 1:
            tokens += int(batch["attention_mask"].sum())
        loss = token_loss(model(**{k: batch[k] for k in keys if k in batch}).logits, batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, tokens


def _pad_to(example: dict, length: int, pad_id: int) -> dict:
    extra = length - len(example["input_ids"])
    fills = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "labels": -100, "word_ids": -1}
    return {k: (v + [fills[k]] * extra if isinstance(v, list) and k in fills else v) for k, v in example.items()}


def project_loop(model_dir: Path, train, cfg, steps: int, out: Path) -> tuple[float, int]:
    """transmod.train.training.train over the same steps; tokens counted from the same batches it trains on."""
    import datasets
    from transformers import AutoTokenizer

    from transmod.train.batching import encode, length, length_grouped_batches
    from transmod.train.training import train as run

    examples = encode(train, AutoTokenizer.from_pretrained(model_dir), "ner", cfg.max_length, 9)
    lengths = [length(ex) for ex in examples]
    batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, 0, cfg.mega_batches)[:steps]
    tokens = sum(lengths[i] for b in batches[1:] for i in b)
    marks: dict[int, float] = {}
    tiny = datasets.Dataset.from_dict(train[:8])
    run(model_dir, "ner", "adapter", train.select(range(steps * cfg.batch_size)), tiny, tiny, cfg, out,
        step_callback=lambda s: marks.__setitem__(s, time.perf_counter()))
    return marks[steps] - marks[1], tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    import datasets

    from transmod.train.config import TrainConfig

    torch.set_num_threads(args.threads)
    sentences = wikineural_like(args.steps * args.batch_size, seed=0)
    train = datasets.Dataset.from_dict({"tokens": sentences, "ner_tags": [[0] * len(s) for s in sentences]})
    cfg = TrainConfig(learning_rate=1e-4, batch_size=args.batch_size, epochs=1, max_length=128, seed=0,
                      modules={"adapter": {"bottleneck": 64}})
    words = np.array([len(s) for s in sentences])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, {args.threads} threads, BERT {args.size} {SIZES[args.size]}, adapter, "
          f"{args.steps} steps x {args.batch_size}; words per sentence: median {np.median(words):.0f}, "
          f"p90 {np.percentile(words, 90):.0f}, max {words.max()}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_assets(Path(tmp), args.size, sentences)
        plain_s, plain_tokens = plain_loop(model_dir, train, cfg, args.steps)
        project_s, project_tokens = project_loop(model_dir, train, cfg, args.steps, Path(tmp) / "run")
    plain_tps, project_tps = plain_tokens / plain_s, project_tokens / project_s
    print(f"plain loop (pad to 128, random batches): {plain_tps:9.0f} tokens/s  ({plain_tokens} tokens, {plain_s:.1f} s)")
    print(f"transmod loop (dynamic, length-grouped):  {project_tps:9.0f} tokens/s  ({project_tokens} tokens, {project_s:.1f} s)")
    print(f"speed-up: {project_tps / plain_tps:.2f}x  (target >= 1.5x on CPU)")


if __name__ == "__main__":
    main()
