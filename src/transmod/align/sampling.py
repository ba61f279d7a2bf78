"""Hidden states that each module reads, sampled from a frozen base model into parquet.

The file layout is described in `transmod.align.samplefile`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from transmod.align.samplefile import SampleWriter
from transmod.align.texts import Example
from transmod.atomic import MARK
from transmod.errors import TransmodError
from transmod.modules.architectures import Architecture, model_shape
from transmod.modules.kinds import get_kind
from transmod.progress import Progress
from transmod.train.tokencache import tokenizer_definition

SPANS = "trimmed"  # how token spans are keyed (`trim_spans`), recorded so that files keyed otherwise never pair


def trim_spans(texts: Sequence[str], start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token spans (in `texts`, one per token) without the whitespace a tokenizer counts in: SentencePiece's
    `▁word` (XLM-R, ALBERT, DeBERTa-v3) spans the space before the word, WordPiece's and BPE's do not, and only
    trimmed spans of one word agree across tokenizer families."""
    start, end = np.array(start, dtype=np.int32), np.array(end, dtype=np.int32)
    for i, text in enumerate(texts):
        while start[i] < end[i] and text[start[i]].isspace():
            start[i] += 1
        while end[i] > start[i] and text[end[i] - 1].isspace():
            end[i] -= 1
    return start, end


def fingerprint(value: object) -> str:
    """A short digest of JSON-able content: equal for the same examples or tokenizer, on any machine."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@contextmanager
def capture(model: torch.nn.Module, arch: Architecture, spaces: Mapping[str, Sequence[str]]):
    """Register read-only hooks; each forward fills the yielded dict with `{peft}:{space}{layer}` -> tensor.

    `spaces` maps a hook type (adapter, lora) to the spaces to record for it. A layer that serves the whole
    depth (`Architecture.shared`) runs once per depth in a forward pass: its `n`-th call stores depth `n`.
    """
    layers = model.get_submodule(arch.layers_path)
    store: dict[str, torch.Tensor] = {}
    calls: Counter[str] = Counter()  # calls of each shared hook in the current forward pass
    handles = [model.register_forward_pre_hook(lambda *_: calls.clear())] if arch.shared else []

    def keep(name: str, from_input: bool):
        def hook(module, args, output=None):
            key = name
            if arch.shared:  # named for layer 0, the only one: the call count is the depth
                key = f"{name.removesuffix('0')}{calls[name]}"
                calls[name] += 1
            store[key] = (args[0] if from_input else output).detach()
        return hook

    for l, layer in enumerate(layers):
        for peft, wanted in spaces.items():
            handles += get_kind(peft).hooks(layer, arch, l, tuple(wanted), keep)
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _check_max_length(tokenizer, examples: Sequence[Example], max_length: int, model_name: str) -> None:
    """Refuse a `max_length` that leaves no text token beside the special ones: a fast tokenizer then keeps
    every token (it warns, and does not truncate), or keeps nothing but special tokens."""
    pair = any(len(ex) > 1 for ex in examples)
    specials = tokenizer.num_special_tokens_to_add(pair=pair)
    if max_length <= specials:
        raise TransmodError(f"--max-length {max_length} leaves no room for text beside the {specials} special tokens "
                            f"that {model_name}'s tokenizer adds to each {'pair' if pair else 'text'}; give "
                            f"--max-length {specials + 1} or more")


def batchable(tokenizer, model_name: str):
    """The tokenizer, able to pad a batch on the right. Llama-, Mistral- and SmolLM-family tokenizers ship no pad
    token, and some pad on the left, which would shift a decoder's positions (its position ids count from the first
    slot). Padding is masked and never sampled, so any token serves: the end-of-text token, as peft's and
    transformers' examples do. A changed tokenizer is a copy; the caller's is left as it was."""
    if tokenizer.pad_token_id is not None and tokenizer.padding_side == "right":
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        fill = next((t for t in (tokenizer.eos_token, tokenizer.unk_token, tokenizer.bos_token) if t is not None), None)
        if fill is None:
            raise TransmodError(f"{model_name}: the tokenizer has no pad, end-of-text, unknown or begin-of-text token "
                                "to pad a batch with; give it a pad_token in tokenizer_config.json")
        tokenizer.pad_token = fill
    return tokenizer


def sample_hidden_states(
    model: torch.nn.Module,
    tokenizer,
    examples: Sequence[Example],
    outs: Mapping[str, str | Path],
    *,
    model_name: str,
    max_tokens: int | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    lora_outputs: bool = False,
    seed: int = 0,
) -> int:
    """Run the bare model over `examples` once and write, per hook type in `outs` (adapter, lora),
    the module inputs of every layer to that file.

    Returns the number of tokens written. Only non-special, non-padding tokens are kept. With
    `max_tokens`, examples are read in an order drawn with `seed` (the same for every model reading the
    same data) until that many tokens are kept: the sample spreads over the whole split, not over its
    first documents, and two models keep the same sentences.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TransmodError(f"{model_name}: sampling needs a fast tokenizer (tokenizer.json) for character offsets")
    tokenizer = batchable(tokenizer, model_name)
    for option, value in (("--max-tokens", max_tokens), ("--batch-size", batch_size), ("--max-length", max_length)):
        if value is not None and value < 1:
            raise TransmodError(f"{option} must be positive, got {value}")
    _check_max_length(tokenizer, examples, max_length, model_name)
    shape = model_shape(model.config, model_name)
    spaces = {peft: get_kind(peft).spaces(lora_outputs, shape.arch) for peft in outs}
    columns = {peft: [f"{s}{l}" for s in spaces[peft] for l in range(shape.num_layers)] for peft in outs}
    model.eval()
    device = next(model.parameters()).device
    accepted = set(inspect.signature(model.forward).parameters)  # DistilBERT takes no token_type_ids
    written = 0
    with contextlib.ExitStack() as stack:
        writers = {peft: stack.enter_context(SampleWriter(out, columns[peft], {f"{s}{l}": shape.width(s) for s in spaces[peft]
                                                                                for l in range(shape.num_layers)}))
                   for peft, out in outs.items()}
        store = stack.enter_context(capture(model, shape.arch, spaces))
        stack.enter_context(torch.inference_mode())
        progress = stack.enter_context(Progress(f"sampling {model_name}", "tokens", max_tokens))
        order = np.arange(len(examples)) if max_tokens is None else np.random.default_rng(seed).permutation(len(examples))
        for first in range(0, len(examples), batch_size):
            index = order[first : first + batch_size]
            batch = [examples[i] for i in index]
            enc = tokenizer(
                [ex[0] for ex in batch],
                [ex[1] if len(ex) > 1 else "" for ex in batch] if any(len(ex) > 1 for ex in batch) else None,
                padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                return_offsets_mapping=True, return_special_tokens_mask=True,
            )
            offsets = enc.pop("offset_mapping")
            keep = enc.pop("special_tokens_mask").eq(0) & enc["attention_mask"].bool()
            model(**{k: v.to(device) for k, v in enc.items() if k in accepted},
                  **({"use_cache": False} if "use_cache" in accepted else {}))  # a decoder's cache is not needed
            rows, pos = keep.nonzero(as_tuple=True)
            if max_tokens is not None:
                rows, pos = rows[: max_tokens - written], pos[: max_tokens - written]
            if len(rows) == 0:
                continue
            seq = torch.tensor([[s if s is not None else -1 for s in enc.sequence_ids(i)] for i in range(len(batch))])
            segment = seq[rows, pos].numpy()
            start, end = trim_spans([batch[r][s] for r, s in zip(rows.tolist(), segment.tolist())],
                                    offsets[rows, pos, 0].numpy(), offsets[rows, pos, 1].numpy())
            keys = {
                "sent": pa.array(index[rows.numpy()].astype(np.int32)),
                "seq": pa.array(segment.astype(np.int8)),
                "start": pa.array(start),
                "end": pa.array(end),
                "token": pa.array(tokenizer.convert_ids_to_tokens(enc["input_ids"][rows, pos].tolist())),
            }
            for peft, writer in writers.items():
                at = rows.to(device), pos.to(device)
                writer.write(keys, {c: store[f"{peft}:{c}"][at].float().cpu().numpy() for c in columns[peft]})
            written += len(rows)
            progress.update(len(rows))
            if max_tokens is not None and written >= max_tokens:
                break
        for peft, writer in writers.items():
            meta = {
                **shape.describe(), "hook": peft, "spaces": list(spaces[peft]), "layers": list(range(shape.num_layers)),
                "num_tokens": written, MARK: "samples",
                "data": fingerprint(list(examples)), "tokenizer": fingerprint(tokenizer_definition(tokenizer)),
                "max_length": max_length, "spans": SPANS,
            }
            writer.finish(meta)
    return written


def sample_model(
    model_name: str,
    examples: Sequence[Example],
    outs: Mapping[str, str | Path],
    *,
    max_tokens: int | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    lora_outputs: bool = False,
) -> int:
    """Load a hub id or local folder (no remote code) and sample it; see `sample_hidden_states`."""
    from transformers import AutoModel, AutoTokenizer

    from transmod.hub import load_error, local_files_only
    from transmod.modules.architectures import load_model_shape

    arch = load_model_shape(model_name).arch  # a missing, damaged or unsupported model: one line, before any loading
    for peft in outs:
        get_kind(peft).check_arch(arch, model_name)
    offline = local_files_only(model_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name, use_fast=True, local_files_only=offline)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModel.from_pretrained(model_name, trust_remote_code=False, local_files_only=offline)
    except Exception as exc:  # OSError, ValueError, safetensors' own errors: all mean "cannot load this model"
        raise load_error(model_name, "model", exc) from None
    if torch.cuda.is_available():  # the forward passes are the whole cost of sampling
        model = model.to("cuda")
    return sample_hidden_states(
        model, tokenizer, examples, outs, model_name=model_name, max_tokens=max_tokens,
        batch_size=batch_size, max_length=max_length, lora_outputs=lora_outputs,
    )
