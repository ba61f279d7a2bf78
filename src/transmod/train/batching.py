"""Tokenisation and batching for token and sequence classification, built for little padding and exact resumption.

Examples are encoded once into plain lists; batches are padded only to their longest member, and
the batch order is a pure function of (seed, epoch), so a resumed run can skip the batches it has
already seen and continue on exactly the same data as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from transmod.errors import TransmodError
from transmod.train.data import check_label_ids
from transmod.train.tasks import Task, get_task

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100  # label of positions the loss and the metric skip (sub-tokens, special tokens, padding)

Example = dict[str, Any]  # input_ids, attention_mask, [token_type_ids], labels, [word_ids] as plain lists


def _column(dataset: Any, name: str, source: str) -> list:
    names = getattr(dataset, "column_names", None)
    if names is not None and name not in names:
        raise TransmodError(f"{source}: no column {name!r} (has {', '.join(names)}); give data in the task's hub schema")
    return list(dataset[name])


def check_texts(values: Sequence, column: str, source: str) -> None:
    """Every cell of a text column is text: a string, or a word list of strings (token tasks). A null or a
    number is refused naming its row: it would be read as the text 'None' or fail inside the tokenizer."""
    for row, value in enumerate(values):
        if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(word, str) for word in value)):
            shown = "null" if value is None else repr(value)[:40]
            raise TransmodError(f"{source}: column {column!r}, row {row} (counting from 0) is {shown}, not text; "
                                "fill in or drop that row")


def encode(
    dataset: Any,
    tokenizer: Any,
    task: Task | str,
    max_length: int,
    num_labels: int | None = None,
    source: str = "the dataset",
) -> list[Example]:
    """Tokenise a dataset in its hub schema into one dict of lists per example.

    Token tasks: words are split into sub-tokens; only the FIRST sub-token of a word carries its tag,
    the rest (and special tokens) get -100, and `word_ids` maps each labelled position back to its
    word so predictions can be reported per gold word. Sequence tasks: one text, or a pair.
    """
    spec = get_task(task)
    if max_length < 8:
        raise TransmodError(f"max_length must be at least 8, got {max_length}")
    num_labels = num_labels or len(spec.label_names(getattr(dataset, "features", None), source))
    texts = [_column(dataset, c, source) for c in spec.text_columns]
    for column, values in zip(spec.text_columns, texts):
        check_texts(values, column, source)
    labels = _column(dataset, spec.label_column, source)
    if not labels:
        return []
    check_label_ids(labels, spec, num_labels, source)
    if spec.is_token:
        enc = tokenizer(texts[0], is_split_into_words=True, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(*texts, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    examples: list[Example] = []
    for i, label in enumerate(labels):
        ex: Example = {k: list(enc[k][i]) for k in keys}
        if spec.is_token:
            word_ids = enc.word_ids(i)
            first = [-1] * len(word_ids)
            tags = [IGNORE_INDEX] * len(word_ids)
            previous = None
            for pos, w in enumerate(word_ids):
                if w is not None and w != previous:
                    first[pos] = w
                    tags[pos] = int(label[w])
                previous = w
            ex["labels"] = tags
            ex["word_ids"] = first
            ex["num_words"] = len(label)
        else:
            ex["labels"] = int(label)
        examples.append(ex)
    return examples


def length(example: Example) -> int:
    return len(example["input_ids"])


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest example (right padding); labels and word ids pad with -100 / -1."""
    import torch

    width = max(length(ex) for ex in examples)
    pad_values = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE_INDEX,
                  "word_ids": -1}
    batch: dict[str, torch.Tensor] = {}
    for key, pad in pad_values.items():
        if key not in examples[0]:
            continue
        if key == "labels" and not isinstance(examples[0]["labels"], list):
            batch[key] = torch.tensor([ex["labels"] for ex in examples], dtype=torch.long)
            continue
        rows = [ex[key] + [pad] * (width - len(ex[key])) for ex in examples]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    return batch


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, mega_batches: int = 50
) -> list[list[int]]:
    """Training batches for one epoch: a pure function of (seed, epoch).

    Shuffle, sort by length inside mega-batches of `mega_batches` batches (so examples of similar
    length share a batch and padding work shrinks), then shuffle the order of the batches.
    """
    if batch_size < 1:
        raise TransmodError(f"batch_size must be positive, got {batch_size}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    chunk = batch_size * max(1, mega_batches)
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches: longest first, no randomness; callers put results back in input order."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
