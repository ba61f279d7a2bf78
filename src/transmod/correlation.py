"""Pearson correlation of every student dimension with every teacher dimension, in one streaming pass.

Running sums are float64 and shifted by the first batch's means (which keeps the one-pass formula
free of catastrophic cancellation), so memory depends on the widths, never on the token count.
Only each batch's cross product runs in float32 (twice as fast here; r changes by ~1e-7).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transmod.errors import TransmodError
from transmod.layermap import layer_map
from transmod.samplefile import SampleFile


class PearsonAccumulator:
    """Streaming Pearson r between the columns of x (n x dx) and of y (n x dy)."""

    def __init__(self, dx: int, dy: int) -> None:
        self.n = 0
        self.shift_x: np.ndarray | None = None
        self.shift_y: np.ndarray | None = None
        self.sx = np.zeros(dx)
        self.sy = np.zeros(dy)
        self.sxx = np.zeros(dx)
        self.syy = np.zeros(dy)
        self.sxy = np.zeros((dx, dy))

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y need the same number of rows ({len(x)} != {len(y)})")
        if len(x) == 0:
            return
        if self.shift_x is None:
            self.shift_x, self.shift_y = x.mean(0, dtype=np.float64), y.mean(0, dtype=np.float64)
        # The cross product, the costly part, runs in float32 on shifted data; every sum is kept in float64.
        x = np.asarray(x, dtype=np.float32) - self.shift_x.astype(np.float32)
        y = np.asarray(y, dtype=np.float32) - self.shift_y.astype(np.float32)
        self.n += len(x)
        self.sx += x.sum(0, dtype=np.float64)
        self.sy += y.sum(0, dtype=np.float64)
        self.sxx += np.einsum("ij,ij->j", x, x, dtype=np.float64)
        self.syy += np.einsum("ij,ij->j", y, y, dtype=np.float64)
        self.sxy += x.T @ y

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(r, constant x dims, constant y dims); r is 0 wherever a dimension is constant."""
        if self.n == 0:
            raise TransmodError("no tokens to correlate")
        mx, my = self.sx / self.n, self.sy / self.n
        var_x = np.maximum(self.sxx / self.n - mx**2, 0.0)
        var_y = np.maximum(self.syy / self.n - my**2, 0.0)
        cov = self.sxy / self.n - np.outer(mx, my)
        # A dimension is constant when its spread is negligible against its own scale.
        const_x = var_x <= 1e-12 * np.maximum(self.sxx / self.n, 1e-300)
        const_y = var_y <= 1e-12 * np.maximum(self.syy / self.n, 1e-300)
        sd_x = np.where(const_x, 1.0, np.sqrt(var_x))
        sd_y = np.where(const_y, 1.0, np.sqrt(var_y))
        r = cov / np.outer(sd_x, sd_y)
        r[const_x, :] = 0.0
        r[:, const_y] = 0.0
        return np.clip(r, -1.0, 1.0), np.flatnonzero(const_x), np.flatnonzero(const_y)


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correlation matrix of x's columns against y's columns (x: n x dx, y: n x dy)."""
    acc = PearsonAccumulator(x.shape[1], y.shape[1])
    acc.update(x, y)
    return acc.result()[0]


@dataclass
class LayerCorrelation:
    student_layer: int
    teacher_layers: list[int]
    space: str
    r: np.ndarray  # student dims x teacher dims


@dataclass
class Correlation:
    mapping: str
    teacher: dict
    student: dict
    num_tokens: int
    layers: list[LayerCorrelation] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors = {f"{lc.space}{lc.student_layer}": lc.r.astype(np.float32) for lc in self.layers}
        meta = {
            "mapping": self.mapping, "teacher": self.teacher, "student": self.student, "num_tokens": self.num_tokens,
            "layers": [{"student": lc.student_layer, "teacher": lc.teacher_layers, "space": lc.space} for lc in self.layers],
        }
        save_file(tensors, str(path), metadata={"transmod": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> "Correlation":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise TransmodError(f"{path}: no such correlation file; run `transmod correlate` first")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {})["transmod"])
                layers = [
                    LayerCorrelation(d["student"], d["teacher"], d["space"], f.get_tensor(f"{d['space']}{d['student']}"))
                    for d in meta["layers"]
                ]
        except Exception as exc:  # a foreign or damaged file: safetensors, JSON and key errors alike
            raise TransmodError(f"{path}: not a transmod correlation file ({exc}); write it with `transmod correlate`") from None
        return cls(meta["mapping"], meta["teacher"], meta["student"], meta["num_tokens"], layers)


def _describe(sample: SampleFile) -> dict:
    return {k: sample.meta[k] for k in ("model", "model_type", "num_layers", "hidden_size")}


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


def _masked(stream: Iterator[dict[str, np.ndarray]], mask: np.ndarray | None) -> Iterator[dict[str, np.ndarray]]:
    offset = 0
    for batch in stream:
        n = len(next(iter(batch.values())))
        if mask is None:
            yield batch
        else:
            keep = mask[offset : offset + n]
            yield {k: v[keep] for k, v in batch.items()}
        offset += n


def _rechunk(stream: Iterator[dict[str, np.ndarray]], size: int) -> Iterator[dict[str, np.ndarray]]:
    """Re-cut a row stream into chunks of exactly `size` rows (the last may be shorter).

    Two files whose kept rows correspond one to one then yield matching chunks under zip().
    """
    buffer: list[dict[str, np.ndarray]] = []
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


def correlate_samples(
    teacher: SampleFile, student: SampleFile, mapping: str, batch_size: int = 2048
) -> Correlation:
    """Correlate each student layer with its mapped teacher layer(s) (AVG: the group's mean state)."""
    if teacher.meta["hook"] != student.meta["hook"]:
        raise TransmodError(
            f"{teacher.path} samples {teacher.meta['hook']} inputs but {student.path} samples "
            f"{student.meta['hook']} inputs; sample both with the same --peft"
        )
    groups = layer_map(mapping, teacher.num_layers, student.num_layers)
    spaces = [s for s in student.meta["spaces"] if s in teacher.meta["spaces"]]
    acc = {(l, s): PearsonAccumulator(student.hidden_size, teacher.hidden_size) for l in range(len(groups)) for s in spaces}
    t_cols = sorted({f"{s}{t}" for s in spaces for g in groups for t in g})
    s_cols = [f"{s}{l}" for s in spaces for l in range(len(groups))]
    masks = aligned_rows(teacher, student)
    mask_t, mask_s = masks if masks else (None, None)
    stream = zip(
        _rechunk(_masked(teacher.iter_columns(t_cols, batch_size), mask_t), batch_size),
        _rechunk(_masked(student.iter_columns(s_cols, batch_size), mask_s), batch_size),
    )
    for t_batch, s_batch in stream:
        for (l, s), a in acc.items():
            group = [t_batch[f"{s}{t}"] for t in groups[l]]
            y = group[0] if len(group) == 1 else np.mean(group, axis=0, dtype=np.float64)
            a.update(s_batch[f"{s}{l}"], y)
    result = Correlation(mapping, _describe(teacher), _describe(student), 0)
    for (l, s), a in acc.items():
        r, const_s, const_t = a.result()
        for dims, who, where in ((const_s, student, [l]), (const_t, teacher, groups[l])):
            if len(dims):
                warnings.warn(
                    f"{who.path}: {len(dims)} constant dimension(s) at layer(s) {where} space {s} get r = 0: "
                    f"{', '.join(map(str, dims[:20]))}{' ...' if len(dims) > 20 else ''}",
                    stacklevel=2,
                )
        result.layers.append(LayerCorrelation(l, groups[l], s, r))
        result.num_tokens = a.n
    return result
