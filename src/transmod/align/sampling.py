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
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from transmod.align.samplefile import SampleWriter
from transmod.align.texts import Example
from transmod.atomic import MARK
from transmod.errors import TransmodError
from transmod.modules.architectures import Architecture, ModelShape, model_shape
from transmod.modules.kinds import KINDS, get_kind
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


STATES_BUDGET = 32 << 20  # bytes of hidden states one forward pass may capture (a decoder's are ~0.4 MB a token)


@dataclass
class Sampled:
    """The kept tokens of one forward pass: their position keys and, per `{peft}:{space}{layer}`, their states."""

    keys: dict[str, np.ndarray]  # sent, seq, start, end: one per token (`samplefile.KEY_FIELDS`)
    tokens: list[str]
    states: dict[str, np.ndarray]  # (tokens x width) float32

    def __len__(self) -> int:
        return len(self.tokens)


def sample_hidden_states(
    model: torch.nn.Module,
    tokenizer,
    examples: Sequence[Example],
    outs: Mapping[str, str | Path],
    *,
    model_name: str,
    max_tokens: int | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    lora_outputs: bool = False,
    seed: int = 0,
    dtype: str = "float32",
) -> int:
    """Run the bare model over `examples` once and write, per hook type in `outs` (adapter, lora),
    the module inputs of every layer to that file (see `sampled_batches`), as `dtype` (`samplefile.DTYPES`).
    Returns the number of tokens written."""
    tokenizer = batchable(tokenizer, model_name)
    max_length = input_length(model.config, max_length, model_name)  # as the sample file records it
    shape = model_shape(model.config, model_name)
    spaces = {peft: get_kind(peft).spaces(lora_outputs, shape.arch) for peft in outs}
    columns = {peft: [f"{s}{l}" for s in spaces[peft] for l in range(shape.num_layers)] for peft in outs}
    batches = sampled_batches(model, tokenizer, examples, spaces, model_name=model_name, max_tokens=max_tokens,
                              batch_size=batch_size, max_length=max_length, seed=seed)
    written = 0
    with contextlib.ExitStack() as stack:
        writers = {peft: stack.enter_context(SampleWriter(out, columns[peft], {f"{s}{l}": shape.width(s) for s in spaces[peft]
                                                                                for l in range(shape.num_layers)},
                                                          dtype=dtype))
                   for peft, out in outs.items()}
        progress = stack.enter_context(Progress(f"sampling {model_name}", "tokens", max_tokens))
        for batch in batches:
            keys = {**{k: pa.array(v) for k, v in batch.keys.items()}, "token": pa.array(batch.tokens)}
            for peft, writer in writers.items():
                writer.write(keys, {c: batch.states[f"{peft}:{c}"] for c in columns[peft]})
            written += len(batch)
            progress.update(len(batch))
        for peft, writer in writers.items():
            writer.finish(sample_meta(shape, peft, spaces[peft], written, examples, tokenizer, max_length))
    return written


def sample_meta(shape: ModelShape, peft: str, spaces: Sequence[str], written: int, examples: Sequence[Example],
                tokenizer, max_length: int) -> dict:
    """What a sample file records of its model, hook point and data (`samplefile.META_FIELDS`)."""
    return {
        **shape.describe(), "hook": peft, "spaces": list(spaces), "layers": list(range(shape.num_layers)),
        "num_tokens": written, MARK: "samples",
        "data": fingerprint(list(examples)), "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_length": max_length, "spans": SPANS,
    }


def tokenizer_fingerprint(tokenizer) -> str:
    """Equal for two tokenizers that split every text alike (the padding one `batchable` adds included)."""
    return fingerprint(tokenizer_definition(tokenizer))


def sampled_batches(
    model: torch.nn.Module, tokenizer, examples: Sequence[Example], spaces: Mapping[str, Sequence[str]], *,
    model_name: str, max_tokens: int | None = None, batch_size: int = 32, max_length: int | None = None, seed: int = 0,
    columns: Collection[str] | None = None, tokens_per_pass: int | None = None,
) -> Iterator[Sampled]:
    """The module inputs (per hook type in `spaces`: adapter, lora) of the kept tokens, one forward pass at a time.

    Only non-special, non-padding tokens are kept. With `max_tokens`, examples are read in an order drawn with
    `seed` (the same for every model reading the same data) until that many tokens are kept: the sample spreads
    over the whole split, not over its first documents, and two models keep the same sentences. A pass reads at
    most `batch_size` examples and at most `STATES_BUDGET` bytes of states (a decoder LLM's are large), in that
    order (`tokens_per_pass`: padded tokens, by default `pass_tokens(model)`); its tokens come in example order.
    `columns`: the `{peft}:{space}{layer}` states to return (default all). `tokenizer` pads on the right (`batchable`).
    """
    max_length = input_length(model.config, max_length, model_name)
    _check_sampling(tokenizer, examples, model_name, max_tokens, batch_size, max_length)
    shape = model_shape(model.config, model_name)
    model.eval()
    device = next(model.parameters()).device
    accepted = set(inspect.signature(model.forward).parameters)  # DistilBERT takes no token_type_ids
    order = np.arange(len(examples)) if max_tokens is None else np.random.default_rng(seed).permutation(len(examples))
    written = 0
    with capture(model, shape.arch, spaces) as store, torch.inference_mode():
        for index, pair in _passes(tokenizer, examples, order, batch_size, max_length,
                                   tokens_per_pass or pass_tokens(shape)):
            batch = [examples[i] for i in index]
            enc = _encode(tokenizer, batch, max_length, pair, padding=True, return_tensors="pt",
                          return_offsets_mapping=True, return_special_tokens_mask=True)
            offsets = enc.pop("offset_mapping")
            keep = enc.pop("special_tokens_mask").eq(0) & enc["attention_mask"].bool()
            model(**{k: v.to(device) for k, v in enc.items() if k in accepted},
                  **({"use_cache": False} if "use_cache" in accepted else {}))  # a decoder's cache is not needed
            rows, pos = keep.nonzero(as_tuple=True)
            if max_tokens is not None:
                rows, pos = rows[: max_tokens - written], pos[: max_tokens - written]
            at = rows.to(device), pos.to(device)
            # Each padded pass tensor is dropped as its kept rows are taken: memory holds one pass's states, once.
            states = {k: store.pop(k)[at].float().cpu().numpy() for k in list(store) if columns is None or k in columns}
            store.clear()
            if len(rows):
                written += len(rows)
                yield Sampled(_keys(enc, batch, index, offsets, rows, pos),
                              tokenizer.convert_ids_to_tokens(enc["input_ids"][rows, pos].tolist()), states)
            if max_tokens is not None and written >= max_tokens:
                return


def pass_tokens(shape: ModelShape) -> int:
    """Padded tokens per forward pass: as many as `STATES_BUDGET` holds when every space of every module kind is
    sampled. The passes then depend on the model alone, never on what is sampled: sampling only some spaces (or
    one kind) keeps the same tokens with the same states, bit for bit."""
    spaces = {s for kind in KINDS.values() for s in kind.spaces(True, shape.arch)}
    return max(1, STATES_BUDGET // (4 * shape.num_layers * sum(shape.width(s) for s in spaces)))


DEFAULT_MAX_LENGTH = 128  # tokens per example unless told otherwise (or the model reads fewer)


def position_limit(config) -> int | None:
    """The longest input a model embeds positions for (None: no learned limit, e.g. rotary positions without
    one); RoBERTa-style models count positions from after the padding index, so two of theirs are never used."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    return limit - (config.pad_token_id + 1) if config.model_type in ("roberta", "xlm-roberta", "camembert") else limit


def input_length(config, max_length: int | None, model_name: str) -> int:
    """The tokens an example is truncated to: `max_length`, refused beyond the model's positions (its longer inputs
    would index past the position table, or run on positions it never learned); by default DEFAULT_MAX_LENGTH, or
    the model's limit where that is shorter."""
    limit = position_limit(config)
    if max_length is None:
        return DEFAULT_MAX_LENGTH if limit is None else min(DEFAULT_MAX_LENGTH, limit)
    if limit is not None and max_length > limit:
        raise TransmodError(f"--max-length {max_length} is longer than {model_name} reads ({limit} positions); give "
                            f"--max-length {limit} or less")
    return max_length


def _check_sampling(tokenizer, examples: Sequence[Example], model_name: str, max_tokens: int | None, batch_size: int,
                    max_length: int) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TransmodError(f"{model_name}: sampling needs a fast tokenizer (tokenizer.json) for character offsets")
    for option, value in (("--max-tokens", max_tokens), ("--batch-size", batch_size), ("--max-length", max_length)):
        if value is not None and value < 1:
            raise TransmodError(f"{option} must be positive, got {value}")
    _check_max_length(tokenizer, examples, max_length, model_name)


def _encode(tokenizer, batch: Sequence[Example], max_length: int, pair: bool, **options):
    """The batch's texts (as pairs, a missing second text empty, if `pair`) tokenized, truncated to `max_length`."""
    return tokenizer([ex[0] for ex in batch], [ex[1] if len(ex) > 1 else "" for ex in batch] if pair else None,
                     truncation=True, max_length=max_length, **options)


def _passes(tokenizer, examples: Sequence[Example], order: np.ndarray, batch_size: int, max_length: int,
            budget: int) -> Iterator[tuple[np.ndarray, bool]]:
    """Consecutive runs of `order`, each of at most `batch_size` examples and, padded, at most `budget` tokens
    (one example at least): the states a pass captures stay bounded whatever the model's width. Each run comes
    with whether its `batch_size` examples hold a pair, so that an example is encoded alike however runs are cut."""
    for first in range(0, len(order), batch_size):
        window = order[first : first + batch_size]
        pair = any(len(examples[i]) > 1 for i in window)
        if len(window) * max_length <= budget:
            yield window, pair
            continue
        lengths = [len(ids) for ids in _encode(tokenizer, [examples[i] for i in window], max_length, pair)["input_ids"]]
        start, longest = 0, 0
        for i, n in enumerate(lengths):
            if i > start and (i - start + 1) * max(longest, n) > budget:
                yield window[start:i], pair
                start, longest = i, 0
            longest = max(longest, n)
        yield window[start:], pair


def _keys(enc, batch: Sequence[Example], index: np.ndarray, offsets: torch.Tensor, rows: torch.Tensor,
          pos: torch.Tensor) -> dict[str, np.ndarray]:
    """Each kept token's example, segment of a pair and trimmed character span (`trim_spans`)."""
    seq = torch.tensor([[s if s is not None else -1 for s in enc.sequence_ids(i)] for i in range(len(batch))])
    segment = seq[rows, pos].numpy()
    start, end = trim_spans([batch[r][s] for r, s in zip(rows.tolist(), segment.tolist())],
                            offsets[rows, pos, 0].numpy(), offsets[rows, pos, 1].numpy())
    return {"sent": index[rows.numpy()].astype(np.int32), "seq": segment.astype(np.int8), "start": start, "end": end}


def sample_model(
    model_name: str,
    examples: Sequence[Example],
    outs: Mapping[str, str | Path],
    *,
    max_tokens: int | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    lora_outputs: bool = False,
    dtype: str = "float32",
) -> int:
    """Load a hub id or local folder (no remote code) and sample it; see `sample_hidden_states`."""
    tokenizer = load_tokenizer(model_name, outs)
    return sample_hidden_states(
        load_model(model_name), tokenizer, examples, outs, model_name=model_name, max_tokens=max_tokens,
        batch_size=batch_size, max_length=max_length, lora_outputs=lora_outputs, dtype=dtype,
    )


def load_tokenizer(model_name: str, pefts: Collection[str]):
    """The model's fast tokenizer, after checking that the model can be sampled for each hook type in `pefts`
    (a missing, damaged or unsupported model: one line, before any loading)."""
    from transformers import AutoTokenizer

    from transmod.hub import load_error, local_files_only
    from transmod.modules.architectures import load_model_shape

    arch = load_model_shape(model_name).arch
    for peft in pefts:
        get_kind(peft).check_arch(arch, model_name)
    try:
        return AutoTokenizer.from_pretrained(model_name, use_fast=True, local_files_only=local_files_only(model_name))
    except Exception as exc:  # OSError, ValueError, tokenizers' own errors: all mean "cannot load this model"
        raise load_error(model_name, "model", exc) from None


def load_model(model_name: str) -> torch.nn.Module:
    """The bare model (no head, no remote code), on the GPU if there is one: the forward passes are the whole
    cost of sampling."""
    from transformers import AutoModel

    from transmod.hub import load_error, local_files_only

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModel.from_pretrained(model_name, trust_remote_code=False,
                                              local_files_only=local_files_only(model_name))
    except Exception as exc:  # OSError, ValueError, safetensors' own errors: all mean "cannot load this model"
        raise load_error(model_name, "model", exc) from None
    return model.to("cuda") if torch.cuda.is_available() else model
