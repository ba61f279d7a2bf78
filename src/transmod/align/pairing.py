"""Rows of a teacher and a student sample file that hold the same token, streamed side by side.

With one tokenizer every row pairs up; across tokenizers only tokens with the same text span do
(`aligned_rows`). Correlation, alignment fitting and fidelity all read through `paired_batches`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np

from transmod.align.samplefile import SampleFile
from transmod.errors import TransmodError

Batch = dict[str, np.ndarray]
T = TypeVar("T")
# Below this share of paired tokens the two tokenizers split the text too differently for an alignment
# fitted on the pairs to speak for the rest (a cross-family pair; the same tokenizer pairs every token).
MIN_PAIRED_SHARE = 0.3


def check_pair(teacher: SampleFile, student: SampleFile) -> list[str]:
    """The spaces both files hold; refuses samples of different hook points or of different data."""
    if teacher.meta["data"] != student.meta["data"]:
        raise TransmodError(
            f"{teacher.path} and {student.path} were sampled from different data (fingerprints "
            f"{teacher.meta['data']} and {student.meta['data']}); sample both models on the same --data"
        )
    if teacher.meta.get("spans") != student.meta.get("spans"):  # older files keep a SentencePiece token's space
        older = teacher if student.meta.get("spans") else student
        raise TransmodError(f"{older.path} was sampled by an older transmod, which keyed tokens by other text spans; "
                            "re-sample it with `transmod sample`")
    if teacher.meta["hook"] != student.meta["hook"]:
        raise TransmodError(
            f"{teacher.path} samples {teacher.meta['hook']} inputs but {student.path} samples "
            f"{student.meta['hook']} inputs; sample both with the same --peft"
        )
    return [s for s in student.meta["spaces"] if s in teacher.meta["spaces"]]


def aligned_rows(teacher: SampleFile, student: SampleFile) -> tuple[np.ndarray, np.ndarray] | None:
    """Row masks selecting the tokens both files share (same text span), or None if all rows agree."""
    kt, ks = teacher.keys(), student.keys()
    if len(kt) == len(ks) and np.array_equal(kt, ks):
        return None
    unique_t = _unique_keys(kt)
    unique_s = _unique_keys(ks)
    _, it, is_ = np.intersect1d(kt[unique_t], ks[unique_s], assume_unique=True, return_indices=True)
    if len(it) == 0:
        raise TransmodError(
            f"{teacher.path} and {student.path} share no token positions; sample both models on the same data"
        )
    mask_t = np.zeros(len(kt), bool)
    mask_s = np.zeros(len(ks), bool)
    mask_t[np.flatnonzero(unique_t)[it]] = True
    mask_s[np.flatnonzero(unique_s)[is_]] = True
    return mask_t, mask_s


def _unique_keys(keys: np.ndarray) -> np.ndarray:
    """Mask of rows whose key occurs once and spans at least one character."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    spans = keys & ((1 << 20) - 1) != (keys >> 20) & ((1 << 20) - 1)
    return (counts[inverse] == 1) & spans


def _masked(stream: Iterator[Batch], mask: np.ndarray | None) -> Iterator[Batch]:
    offset = 0
    for batch in stream:
        n = len(next(iter(batch.values())))
        if mask is None:
            yield batch
        else:
            keep = mask[offset : offset + n]
            yield {k: v[keep] for k, v in batch.items()}
        offset += n


def _rechunk(stream: Iterator[Batch], size: int) -> Iterator[Batch]:
    """Re-cut a row stream into chunks of exactly `size` rows (the last may be shorter).

    Two files whose kept rows correspond one to one then yield matching chunks under zip().
    """
    buffer: list[Batch] = []
    held = 0
    for batch in stream:
        buffer.append(batch)
        held += len(next(iter(batch.values())))
        while held >= size:
            joined = {k: np.concatenate([b[k] for b in buffer]) for k in buffer[0]}
            yield {k: v[:size] for k, v in joined.items()}
            buffer, held = [{k: v[size:] for k, v in joined.items()}], held - size
    if held:
        yield {k: np.concatenate([b[k] for b in buffer]) for k in buffer[0]}


def shared_rows(teacher: SampleFile, student: SampleFile) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Row masks of the tokens both files share (None: all rows) and how many they share; refuses a pair
    whose tokenizers agree on too few tokens (`MIN_PAIRED_SHARE`)."""
    masks = aligned_rows(teacher, student)
    if masks is None:
        return None, None, teacher.num_rows
    n = int(masks[0].sum())
    share = paired_share(teacher, student, n)
    if share < MIN_PAIRED_SHARE:
        raise TransmodError(
            f"{teacher.path} and {student.path}: only {100 * share:.1f} % of the tokens could be paired (the same text "
            f"span in both tokenizations), below {100 * MIN_PAIRED_SHARE:.0f} %; the tokenizers split the text too "
            "differently to fit an alignment on it: pick a student whose tokenizer splits words more alike"
        )
    return masks[0], masks[1], n


def paired_share(teacher: SampleFile, student: SampleFile, shared: int) -> float:
    """The share of tokens paired: `shared` over the larger file's tokens (1.0 with one tokenizer)."""
    return shared / max(teacher.num_rows, student.num_rows, 1)


def split_point(n: int, holdout: float) -> int:
    """Shared rows [0, split) fit, [split, n) are held out: the same split everywhere."""
    if not 0.0 <= holdout < 1.0:
        raise TransmodError(f"--holdout must be in [0, 1), got {holdout}")
    return n - int(round(n * holdout))


def paired_batches(
    teacher: SampleFile, student: SampleFile, t_cols: Sequence[str], s_cols: Sequence[str], batch_size: int,
    start: int, stop: int, masks: tuple[np.ndarray | None, np.ndarray | None],
) -> Iterator[tuple[Batch, Batch]]:
    """Matching (teacher, student) batches of the shared rows [start, stop) (`masks`: from `shared_rows`)."""
    mask_t, mask_s = masks
    t_stream = _masked(teacher.iter_columns(t_cols, batch_size), mask_t)
    s_stream = _masked(student.iter_columns(s_cols, batch_size), mask_s)
    if mask_t is not None or mask_s is not None or teacher.row_groups != student.row_groups:
        # Batches only line up by themselves when both files cut their rows alike.
        t_stream, s_stream = _rechunk(t_stream, batch_size), _rechunk(s_stream, batch_size)
    offset = 0
    for t_batch, s_batch in zip(t_stream, s_stream):
        n = len(next(iter(t_batch.values())))
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        offset += n
        if lo < hi:
            yield {k: v[lo:hi] for k, v in t_batch.items()}, {k: v[lo:hi] for k, v in s_batch.items()}
        if offset >= stop:
            return


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Produce `items` in a background thread, `depth` ahead: reading the next batch (Arrow releases
    the GIL) overlaps with the numpy work on this one, while memory stays bounded by `depth`."""
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(0.01)
