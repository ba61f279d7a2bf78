"""Decoder tasks, scored by log-likelihood the way the peers report them, with or without a LoRA.

A *completion* task scores the held-out loss per completion token and the exact match of the greedy
continuation (at most as many tokens as the answer and its end token, cut at the first line break or end-of-sequence,
then stripped: short answers). A *multiple-choice*
task picks the choice of highest log-likelihood per character of the choice (lm-eval-harness's `acc_norm`,
which ARC, OpenBookQA and HellaSwag report; per character, so that two models with different tokenizers are
scored alike). Where the tokenizer has a chat template, the prompt (the question) is the user's turn and the
completion (the choice) the assistant's answer.

Real Llama, Mistral and SmolLM tokenizers have no pad token: a batch is padded with any id, and the attention
mask and the scored positions leave the padding out, so no tokenizer is changed.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transmod.errors import TransmodError
from transmod.train.tasks import CHOICE, COMPLETION, Task

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_LENGTH = 512
STOP = "\n"  # a short answer ends at the first line break


@dataclass(frozen=True)
class Scored:
    """One sequence to score: its token ids, of which those from `start` on (the continuation) are scored."""

    ids: tuple[int, ...]
    start: int


def templated(tokenizer: Any, chat: bool) -> bool:
    return chat and bool(getattr(tokenizer, "chat_template", None))


def context_text(tokenizer: Any, prompt: str, chat: bool) -> str:
    """The text before the continuation: the prompt, as the user's turn of the chat template where there is one."""
    if templated(tokenizer, chat):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def encode(tokenizer: Any, context: str, continuation: str, max_length: int, chat: bool, end: bool = False) -> Scored:
    """`context` + `continuation` as ids, the continuation's marked; `end` adds the end-of-sequence token to it.

    The two are encoded together where the context's ids are a prefix of the whole's (SentencePiece and
    byte-level BPE both attach a space to the word after it), apart where the tokenizer merged across the
    boundary. A chat template writes its own special tokens, so none are added to a templated context.
    Too long a sequence loses the start of its context (its first token, the BOS, is kept)."""
    special = not templated(tokenizer, chat)
    ctx = list(tokenizer(context, add_special_tokens=special)["input_ids"])
    whole = list(tokenizer(context + continuation, add_special_tokens=special)["input_ids"])
    cont = whole[len(ctx):] if whole[:len(ctx)] == ctx else list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    if end and tokenizer.eos_token_id is not None:
        cont.append(tokenizer.eos_token_id)
    if not cont:
        raise TransmodError(f"the continuation {continuation!r} has no tokens; give a non-empty answer")
    if not ctx:
        raise TransmodError(f"the prompt {context!r} has no tokens and the tokenizer adds no BOS token; give a prompt")
    if len(cont) >= max_length:
        raise TransmodError(f"the continuation {continuation[:40]!r}... has {len(cont)} tokens, max_length is "
                            f"{max_length}; raise max_length")
    keep = max_length - len(cont)
    if len(ctx) > keep:
        ctx = ctx[:1] + ctx[len(ctx) - keep + 1:]
    return Scored(tuple(ctx + cont), len(ctx))


def pad_id_of(tokenizer: Any) -> int:
    """Any id will do (masked out); the tokenizer's pad, else its end-of-sequence token, else 0."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def padded(batch: Sequence[Scored], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask of a batch: padded on the right for scoring (a causal model's real positions never
    see the padding after them), on the left for generation (every row's next token comes at the same place)."""
    import torch

    width = max(len(s.ids) for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, s in enumerate(batch):
        place = slice(width - len(s.ids), width) if left else slice(0, len(s.ids))
        ids[i, place] = torch.tensor(s.ids)
        mask[i, place] = 1
    return ids, mask


def forward_at(model: torch.nn.Module, positions: torch.Tensor, **inputs: Any) -> Any:
    """The model's output with logits at sequence `positions` only (every row alike): the LM head over a large
    vocabulary (49,152 words for SmolLM2) costs a third of a small model's forward pass, and a task scores a few
    tokens of each sequence. transformers' `logits_to_keep` skips the rest; a model without it is cut after."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes it on
    if _keeps_logits(type(base)):
        return model(**inputs, logits_to_keep=positions)
    out = model(**inputs)
    out.logits = out.logits[:, positions]
    return out


@functools.cache
def _keeps_logits(model_class: type) -> bool:
    """Whether a model class takes `logits_to_keep` (asked once per class: forward_at runs every batch)."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def kept_columns(need: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions that any row of `need` (bool, batch x length) needs, and each position's column among them."""
    wanted = need.any(0)
    return wanted.nonzero()[:, 0], wanted.cumsum(0) - 1


def continuation_logprobs(model: torch.nn.Module, batch: Sequence[Scored], pad_id: int) -> list[torch.Tensor]:
    """Per sequence, the log-probability of each continuation token given all before it (right padding: a
    causal model's real positions never see the padding after them)."""
    import torch

    device = next(model.parameters()).device
    ids, mask = padded(batch, pad_id, left=False)
    need = torch.zeros(ids.shape, dtype=torch.bool)
    for i, s in enumerate(batch):
        need[i, s.start - 1:len(s.ids) - 1] = True  # position t predicts t + 1
    positions, column = kept_columns(need)
    with torch.no_grad():
        logits = forward_at(model, positions.to(device), input_ids=ids.to(device),
                            attention_mask=mask.to(device)).logits.float().cpu()
    out = []
    for i, s in enumerate(batch):
        predicted = torch.log_softmax(logits[i, column[s.start - 1:len(s.ids) - 1]], dim=-1)
        out.append(predicted.gather(-1, ids[i, s.start:len(s.ids), None])[:, 0])
    return out


def shared_context_logprobs(model: torch.nn.Module, groups: Sequence[Sequence[Scored]], pad_id: int,
                            prefix: Prefix | None = None) -> list[list[torch.Tensor]]:
    """`continuation_logprobs` of groups of sequences that share their context (a question's choices), each
    context run once: its key-value cache is copied to each continuation, which runs after it at the positions
    it would have in the whole sequence. A three-choice question costs its tokens once instead of three times.
    `prefix`: the cache of the first tokens of every context (`Prefix`), which then run from there."""
    import torch

    device = next(model.parameters()).device
    skip = len(prefix.ids) if prefix else 0
    if prefix and any(group[0].ids[:skip] != prefix.ids for group in groups):
        raise ValueError("every context must begin with the prefix's tokens")
    contexts = [Scored(group[0].ids[skip:group[0].start], 0) for group in groups]
    ids, mask = padded(contexts, pad_id, left=False)
    lengths = torch.tensor([len(c.ids) for c in contexts])
    need = torch.zeros(ids.shape, dtype=torch.bool)
    need[torch.arange(len(groups)), lengths - 1] = True  # each context's last token predicts its choices' first
    positions, column = kept_columns(need)
    mask = torch.cat([torch.ones(len(groups), skip, dtype=mask.dtype), mask], 1)
    owner = torch.tensor([g for g, group in enumerate(groups) for _ in group])
    rows = [s.ids[s.start:] for group in groups for s in group]
    tails, tail_mask = padded([Scored(r, 0) for r in rows], pad_id, left=False)
    with torch.no_grad():
        out = forward_at(model, positions.to(device), input_ids=ids.to(device), attention_mask=mask.to(device),
                         position_ids=(skip + torch.arange(ids.shape[1])).repeat(len(groups), 1).to(device),
                         past_key_values=prefix.copies(len(groups)) if prefix else None, use_cache=True)
        first = torch.log_softmax(out.logits.float().cpu()[torch.arange(len(groups)), column[lengths - 1]], -1)
        rest = torch.empty(len(rows), 0, first.shape[-1])
        if tails.shape[1] > 1:
            cache = out.past_key_values
            cache.reorder_cache(owner.to(device))
            rest = forward_at(model, torch.arange(tails.shape[1] - 1, device=device), input_ids=tails.to(device),
                              attention_mask=torch.cat([mask[owner], tail_mask], 1).to(device),
                              position_ids=(skip + lengths[owner, None] + torch.arange(tails.shape[1])).to(device),
                              past_key_values=cache, use_cache=False).logits.float().cpu()
    scored: list[list[torch.Tensor]] = [[] for _ in groups]
    for r, (g, tail) in enumerate(zip(owner.tolist(), rows)):
        later = torch.log_softmax(rest[r, :len(tail) - 1], -1).gather(-1, tails[r, 1:len(tail), None])[:, 0]
        scored[g].append(torch.cat([first[g, tail[0]].reshape(1), later]))
    return scored


@dataclass
class Prefix:
    """The key-value cache of the tokens every context of a scoring run begins with (a chat template's system
    prompt and turn markers: SmolLM2's are 30 tokens of a 75-token question), run once for all of them."""

    ids: tuple[int, ...]
    cache: Any
    device: Any

    @classmethod
    def common(cls, model: torch.nn.Module, contexts: Sequence[Sequence[int]]) -> "Prefix | None":
        """The longest prefix of `contexts` that leaves each at least one token of its own, run; None where it is
        shorter than two tokens (a lone BOS saves nothing)."""
        import torch

        shortest = min(len(c) for c in contexts) - 1
        n = next((i for i in range(shortest) if len({c[i] for c in contexts}) > 1), max(shortest, 0))
        if n < 2:
            return None
        device = next(model.parameters()).device
        with torch.no_grad():
            out = forward_at(model, torch.tensor([n - 1], device=device),
                             input_ids=torch.tensor([contexts[0][:n]], device=device), use_cache=True)
        return cls(tuple(contexts[0][:n]), out.past_key_values, device)

    def copies(self, rows: int) -> Any:
        """The cache repeated for `rows` sequences (a copy: each use extends its own)."""
        import torch

        cache = copy.deepcopy(self.cache)
        cache.reorder_cache(torch.zeros(rows, dtype=torch.long, device=self.device))
        return cache


def _batched(items: Sequence[Scored], batch_size: int) -> list[list[int]]:
    """The items' indices in batches of similar length (less padding)."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def all_logprobs(model: torch.nn.Module, items: Sequence[Scored], pad_id: int, batch_size: int) -> list[torch.Tensor]:
    """`continuation_logprobs` of every item, in the items' order; items that share a context (the choices of
    a question) are scored together, `batch_size` contexts at a time. A model with sliding-window layers (Gemma,
    some Mistral) runs whole sequences unless its window spans the longest context padded and then the longest
    continuation: such a layer's mask counts cache slots, padding included, not positions."""
    import torch

    if not items:
        return []
    shared: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(items):
        shared.setdefault(s.ids[:s.start], []).append(i)
    out: list[torch.Tensor] = [torch.empty(0)] * len(items)
    window = getattr(model.config, "sliding_window", None)
    slots = max(s.start for s in items) + max(len(s.ids) - s.start for s in items)
    whole = isinstance(window, int) and slots >= window - 1
    prefix = None if whole else Prefix.common(model, list(shared))
    if whole or (len(shared) == len(items) and prefix is None):  # nothing is shared: whole sequences, one pass each
        for rows in _batched(items, batch_size):
            for index, lp in zip(rows, continuation_logprobs(model, [items[i] for i in rows], pad_id)):
                out[index] = lp
        return out
    members = list(shared.values())
    for rows in _batched([items[m[0]] for m in members], batch_size):
        groups = [members[g] for g in rows]
        for indices, scored in zip(groups, shared_context_logprobs(model, [[items[i] for i in m] for m in groups],
                                                                   pad_id, prefix)):
            for index, lp in zip(indices, scored):
                out[index] = lp
    return out


def greedy_continuations(model: torch.nn.Module, tokenizer: Any, contexts: Sequence[Scored], limits: Sequence[int],
                         batch_size: int) -> list[str]:
    """The greedy continuation of each context, of at most its `limits` tokens (left padding, as generation
    needs; a row's own limit applies however long the others are), cut at the end token or STOP, stripped."""
    import torch

    device = next(model.parameters()).device
    pad_id = pad_id_of(tokenizer)
    texts: list[str] = [""] * len(contexts)
    for rows in _batched(contexts, batch_size):
        ids, mask = padded([contexts[r] for r in rows], pad_id, left=True)
        width = ids.shape[1]
        config = copy.deepcopy(model.generation_config)  # the model's own token ids, no sampling
        config.update(max_new_tokens=max(limits[r] for r in rows), do_sample=False, temperature=None, top_p=None,
                      top_k=None, pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
        for r, tokens in zip(rows, out[:, width:].cpu().tolist()):
            tokens = tokens[:limits[r]]
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[:tokens.index(tokenizer.eos_token_id)]
            texts[r] = tokenizer.decode(tokens, skip_special_tokens=True).split(STOP)[0].strip()
    return texts


def _column(row: Mapping[str, Any], column: str, index: int, check: Callable[[Any], bool], what: str) -> Any:
    value = row.get(column)
    if not check(value):
        raise TransmodError(f"row {index}: column {column!r} must be {what}, got {value!r}; fix the data")
    return value


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _choices(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) >= 2 and all(_text(c) for c in value)


def text_of(row: Mapping[str, Any], column: str, index: int) -> str:
    """A row's text in `column`, checked: a non-empty string."""
    return _column(row, column, index, _text, "a non-empty string")


def prompt_of(task: Task, row: Mapping[str, Any], index: int) -> str:
    """A row's prompt (a completion task) or question (a multiple-choice one), checked."""
    return text_of(row, task.text_columns[0], index)


def choices_of(task: Task, row: Mapping[str, Any], index: int) -> tuple[list[str], int]:
    """A multiple-choice row's choices and the index of the right one, checked."""
    choices = list(_column(row, task.choices_column, index, _choices, "a list of at least two non-empty strings"))
    answer = _column(row, task.label_column, index, lambda v: isinstance(v, int) and not isinstance(v, bool)
                     and 0 <= v < len(choices), f"a choice index from 0 to {len(choices) - 1}")
    return choices, answer


def answer_of(task: Task, row: Mapping[str, Any], index: int) -> str:
    """What a row teaches the model to write: its completion, or its right choice."""
    if task.kind == CHOICE:
        choices, answer = choices_of(task, row, index)
        return choices[answer]
    return text_of(row, task.label_column, index)


def score_completions(model: torch.nn.Module, tokenizer: Any, task: Task, rows: Sequence[Mapping[str, Any]], *,
                      batch_size: int = 8, max_length: int = DEFAULT_MAX_LENGTH, chat: bool = True) -> dict[str, Any]:
    """Loss per completion token (nats, its end token included) and the exact match of the greedy answer."""
    prompts = [prompt_of(task, r, i) for i, r in enumerate(rows)]
    answers = [answer_of(task, r, i) for i, r in enumerate(rows)]
    contexts = [context_text(tokenizer, p, chat) for p in prompts]
    items = [encode(tokenizer, c, continuation(c, a), max_length, chat, end=True) for c, a in zip(contexts, answers)]
    logprobs = all_logprobs(model, items, pad_id_of(tokenizer), batch_size)
    tokens = sum(len(lp) for lp in logprobs)
    loss = -float(sum(lp.sum() for lp in logprobs)) / tokens
    # as many tokens as the answer and its end token: an answer the model does not end is no match
    greedy = greedy_continuations(model, tokenizer, [Scored(s.ids[:s.start], s.start) for s in items],
                                  [len(s.ids) - s.start for s in items], batch_size)
    matches = [g == a.strip() for g, a in zip(greedy, answers)]
    return {"exact_match": sum(matches) / len(rows), "loss_per_token": loss, "tokens": tokens, "examples": len(rows),
            "predictions": greedy}


def continuation(context: str, answer: str) -> str:
    """An answer (a completion or a choice) as it follows its prompt: after one space, unless the context ends in
    whitespace (as a chat template's assistant turn does); lm-eval-harness's `target_delimiter`."""
    return answer.strip() if not context or context[-1].isspace() else " " + answer.strip()


def score_choices(model: torch.nn.Module, tokenizer: Any, task: Task, rows: Sequence[Mapping[str, Any]], *,
                  batch_size: int = 8, max_length: int = DEFAULT_MAX_LENGTH, chat: bool = True) -> dict[str, Any]:
    """Accuracy of the choice of highest log-likelihood per character."""
    items, owners = [], []
    answers = []
    for i, row in enumerate(rows):
        choices, answer = choices_of(task, row, i)
        context = context_text(tokenizer, prompt_of(task, row, i), chat)
        for choice in choices:
            items.append(encode(tokenizer, context, continuation(context, choice), max_length, chat))
            owners.append((i, len(choice.strip())))
        answers.append(answer)
    logprobs = all_logprobs(model, items, pad_id_of(tokenizer), batch_size)
    per_row: list[list[float]] = [[] for _ in rows]
    for (row, chars), lp in zip(owners, logprobs):
        per_row[row].append(float(lp.sum()) / chars)
    predictions = [max(range(len(s)), key=s.__getitem__) for s in per_row]
    correct = sum(p == a for p, a in zip(predictions, answers))
    return {"accuracy": correct / len(rows), "examples": len(rows), "predictions": predictions}


def load_decoder(model_path: str, module: str | None = None) -> tuple[torch.nn.Module, Any]:
    """A decoder LLM (hub id or folder; no remote code) and its tokenizer, with the peft LoRA folder `module`
    loaded on it if given; on the GPU if there is one."""
    import torch
    from transformers import AutoModelForCausalLM

    from transmod.hub import load_error, local_files_only
    from transmod.modules.architectures import load_model_shape
    from transmod.train.model import load_tokenizer

    if not load_model_shape(model_path).arch.decoder:
        raise TransmodError(f"{model_path}: not a decoder LLM; completion and multiple-choice tasks score the "
                            "next-token predictions of Llama, Mistral, Qwen2/3 or Gemma models")
    tokenizer = load_tokenizer(model_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, trust_remote_code=False,
                                                     local_files_only=local_files_only(model_path))
    except Exception as exc:  # OSError, ValueError, safetensors' own errors: all mean "cannot load this model"
        raise load_error(model_path, "model", exc) from None
    if module is not None:
        model = with_lora(model, module)
    return (model.to("cuda") if torch.cuda.is_available() else model).eval(), tokenizer


def with_lora(model: torch.nn.Module, module: str, trainable: bool = False) -> torch.nn.Module:
    """`model` with the peft LoRA in folder `module` (safetensors, or a legacy .bin read with weights_only)."""
    import json
    from pathlib import Path

    from peft import PeftModel

    config = Path(module) / "adapter_config.json"
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("peft_type")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind != "LORA":
        raise TransmodError(f"--module {module}: not a peft LoRA folder (no adapter_config.json with peft_type LORA); "
                            "give the folder that peft's save_pretrained or `transmod transfer --format peft` wrote")
    try:
        return PeftModel.from_pretrained(model, module, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TransmodError(f"--module {module}: peft could not load it onto this model ({detail}); give a LoRA "
                            "trained on, or transferred to, this model") from None


def read_rows(path: str) -> list[dict[str, Any]]:
    """Examples from a JSON Lines file (one object per line), a JSON list of objects, or a parquet file."""
    import json
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise TransmodError(f"{path}: no such data file; give a .jsonl, .json or .parquet file of examples")
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(file).to_pylist()
        except Exception as exc:  # pyarrow's own errors: not a parquet file, or a damaged one
            raise TransmodError(f"{path}: not a readable parquet file ({type(exc).__name__}); give a .jsonl, .json "
                                "or .parquet file of examples") from None
    try:
        text = file.read_text(encoding="utf-8")
        rows = json.loads(text) if file.suffix == ".json" else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError) as exc:
        raise TransmodError(f"{path}: not JSON{'' if file.suffix == '.json' else ' Lines'} ({exc}); give one JSON "
                            "object per line (.jsonl), a JSON list of objects (.json) or a parquet file") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TransmodError(f"{path}: every example must be a JSON object with the task's columns")
    return rows


SCORERS: dict[str, Callable[..., dict[str, Any]]] = {COMPLETION: score_completions, CHOICE: score_choices}


def score_decoder(model: torch.nn.Module, tokenizer: Any, task: Task, rows: Sequence[Mapping[str, Any]],
                  **options: Any) -> dict[str, Any]:
    """The task's scores of `model` on `rows` (a completion or multiple-choice task); every score is finite."""
    if task.kind not in SCORERS:
        raise TransmodError(f"task {task.name}: a {task.kind} task is not scored by a decoder's likelihood; use a "
                            f"{' or '.join(SCORERS)} task")
    if not rows:
        raise TransmodError(f"task {task.name}: no examples to score; give at least one row")
    model.eval()
    result = SCORERS[task.kind](model, tokenizer, task, rows, **options)
    for key, value in result.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise TransmodError(f"task {task.name}: the model's {key} is {value}; its weights or the LoRA's are "
                                "broken (NaN or infinite), check them")
    return result
