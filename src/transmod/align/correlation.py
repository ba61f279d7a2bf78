"""Pearson correlation of every student dimension with every teacher dimension, in one streaming pass.

Running sums are shifted by the first batch's means (which keeps the one-pass formula free of
catastrophic cancellation), so memory depends on the widths, never on the token count. Each batch's own
sums and cross product run in float32; the per-dimension sums run on in float64 and the cross products
in float32 (half the memory of a decoder's statistics: 0.4 GB for SmolLM2-135M's 30 layers; r changes
by ~2e-7 over 20,000 tokens in batches of 340, against the 1e-6 the tests allow). The layer pairs of a
batch update in parallel, one thread per CPU.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from transmod.align.layermap import pooled_groups
from transmod.align.layersim import layer_groups
from transmod.align.pairing import (
    Batch,
    check_pair,
    paired_batches,
    paired_share,
    prefetched,
    shared_rows,
    split_point,
)
from transmod.align.samplefile import SampleFile
from transmod.atomic import MARK
from transmod.errors import TransmodError
from transmod.modules.architectures import module_depths, module_layers, space_width
from transmod.progress import Progress


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
        self.sxy = np.zeros((dx, dy), np.float32)  # the one large sum: float32 halves a decoder's statistics

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y need the same number of rows ({len(x)} != {len(y)})")
        if len(x) == 0:
            return
        if self.shift_x is None:
            self.shift_x, self.shift_y = x.mean(0, dtype=np.float64), y.mean(0, dtype=np.float64)
        # A batch's sums run in float32 on shifted data; the running sums across batches are float64.
        x = np.asarray(x, dtype=np.float32) - self.shift_x.astype(np.float32)
        y = np.asarray(y, dtype=np.float32) - self.shift_y.astype(np.float32)
        self.n += len(x)
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.sxx += np.einsum("ij,ij->j", x, x)
        self.syy += np.einsum("ij,ij->j", y, y)
        from scipy.linalg.blas import sgemm

        # sxy += x^T y in place (as sxy^T += y^T x on the Fortran-ordered views): no (dx x dy) temporary per batch.
        sgemm(1.0, y.T, x.T, beta=1.0, c=self.sxy.T, trans_b=True, overwrite_c=True)

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


class MomentAccumulator(PearsonAccumulator):
    """A PearsonAccumulator (its r unchanged) that also keeps every second moment in float64.

    Linear maps need full covariances, not only their diagonals; float64 products keep a planted
    symmetry exact (x^T y and x^T x then round alike).
    """

    def __init__(self, dx: int, dy: int) -> None:
        super().__init__(dx, dy)
        self.fx, self.fy = np.zeros(dx), np.zeros(dy)
        self.cxx, self.cyy, self.cxy = np.zeros((dx, dx)), np.zeros((dy, dy)), np.zeros((dx, dy))

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        super().update(x, y)
        if len(x) == 0:
            return
        x = np.asarray(x, dtype=np.float64) - self.shift_x
        y = np.asarray(y, dtype=np.float64) - self.shift_y
        self.fx += x.sum(0)
        self.fy += y.sum(0)
        self.cxx += x.T @ x
        self.cyy += y.T @ y
        self.cxy += x.T @ y

    def moments(self, centred: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(mean x, mean y, Cxx, Cyy, Cxy): covariances, or second moments about 0 if not `centred`."""
        if self.n == 0:
            raise TransmodError("no tokens to fit an alignment on")
        dx, dy = self.fx / self.n, self.fy / self.n
        cxx = self.cxx / self.n - np.outer(dx, dx)
        cyy = self.cyy / self.n - np.outer(dy, dy)
        cxy = self.cxy / self.n - np.outer(dx, dy)
        mx, my = self.shift_x + dx, self.shift_y + dy
        if not centred:
            cxx, cyy, cxy = cxx + np.outer(mx, mx), cyy + np.outer(my, my), cxy + np.outer(mx, my)
        return mx, my, cxx, cyy, cxy


A = TypeVar("A", bound=PearsonAccumulator)


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
    paired_share: float | None = None  # share of the tokens the two tokenizations pair (None: not recorded)

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors = {f"{lc.space}{lc.student_layer}": lc.r.astype(np.float32) for lc in self.layers}
        meta = {
            "mapping": self.mapping, "teacher": self.teacher, "student": self.student, "num_tokens": self.num_tokens,
            "paired_share": self.paired_share,
            "layers": [{"student": lc.student_layer, "teacher": lc.teacher_layers, "space": lc.space} for lc in self.layers],
        }
        save_file(tensors, str(path), metadata={"transmod": json.dumps(meta), MARK: "correlation"})

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
        return cls(meta["mapping"], meta["teacher"], meta["student"], meta["num_tokens"], layers, meta.get("paired_share"))


def accumulate(
    teacher: SampleFile, student: SampleFile, mapping: str | list[list[int]],
    accumulator: Callable[[int, int], A] = PearsonAccumulator, holdout: float = 0.0, batch_size: int = 2048,
    workers: int | None = None, pearson_only: Sequence[str] = (), layers: Sequence[int] | None = None,
) -> tuple[list[list[int]], dict[tuple[int, str], A], int]:
    """One streaming pass over the shared rows of two sample files before the held-out tail (`accumulate_pairs`).
    Returns the teacher depths each student module layer read, the accumulators and how many rows the two files
    share. `mapping`: a name, or the teacher groups (per student depth) a name gave. `layers`: the student module
    layers of this pass (default: all; see `layer_chunks`)."""
    spaces = check_pair(teacher, student)
    groups = layer_groups(mapping, teacher, student, holdout) if isinstance(mapping, str) else mapping
    acc = new_accumulators(teacher.describe(), student.describe(), spaces, layers, accumulator, pearson_only)
    t_cols, s_cols = state_columns(acc, groups, module_depths(student.describe()))
    mask_t, mask_s, n = shared_rows(teacher, student)
    fit = split_point(n, holdout)
    pairs = paired_batches(teacher, student, sorted(t_cols), sorted(s_cols), batch_size, 0, fit, (mask_t, mask_s))
    what = f"{len(acc)} layer pairs of {teacher.path.name} x {student.path.name}"
    read = accumulate_pairs(prefetched(pairs), acc, groups, module_depths(student.describe()), what, fit, workers)
    return read, acc, n


def new_accumulators(teacher: dict, student: dict, spaces: Sequence[str], layers: Sequence[int] | None,
                     accumulator: Callable[[int, int], A] = PearsonAccumulator,
                     pearson_only: Sequence[str] = ()) -> dict[tuple[int, str], A]:
    """An accumulator per student module layer (default: all) and space of two models' shapes (`describe()`).
    `pearson_only`: spaces that need r alone (whole heads), whatever `accumulator` keeps for the others."""
    layers = range(module_layers(student)) if layers is None else layers
    return {(l, s): (PearsonAccumulator if s in pearson_only else accumulator)(space_width(student, s),
                                                                               space_width(teacher, s))
            for l in layers for s in spaces}


def state_columns(acc: Mapping[tuple[int, str], object], groups: Sequence[Sequence[int]],
                  depths: Sequence[Sequence[int]]) -> tuple[set[str], set[str]]:
    """The teacher and student state columns (`{space}{depth}`) that the accumulators `acc` read."""
    t_cols = {f"{s}{t}" for l, s in acc for a in depths[l] for t in groups[a]}
    return t_cols, {f"{s}{a}" for l, s in acc for a in depths[l]}


def accumulate_pairs(
    pairs: Iterable[tuple[Batch, Batch]], acc: Mapping[tuple[int, str], A], groups: Sequence[Sequence[int]],
    depths: Sequence[Sequence[int]], what: str, total: int | None = None, workers: int | None = None,
) -> list[list[int]]:
    """Update every accumulator with each (teacher, student) batch of states: a student module layer (and space)
    against its mapped teacher depth, or under AVG the mean state of its teacher group; a layer that serves the
    whole depth (ALBERT) pools every depth's pair (`transmod.modules.architectures.module_depths`). The batches come
    from two sample files (`accumulate`) or from two models run side by side (`transmod.align.streaming`).
    `workers`: threads that update layer pairs side by side (default: every core this process may use). Returns the
    teacher depths each student module layer read."""

    def update(key: tuple[int, str], t_batch: Batch, s_batch: Batch) -> None:
        l, s = key
        for a in depths[l]:  # one depth, or every depth that a shared layer's module acts at
            group = [t_batch[f"{s}{t}"] for t in groups[a]]
            acc[key].update(s_batch[f"{s}{a}"], group[0] if len(group) == 1 else np.mean(group, axis=0, dtype=np.float32))

    # One BLAS thread per worker: whole updates run side by side, their numpy steps included.
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(workers or len(os.sched_getaffinity(0))) as pool, \
            Progress(what, "tokens", total) as progress:
        for t_batch, s_batch in pairs:
            for done in [pool.submit(update, key, t_batch, s_batch) for key in acc]:
                done.result()
            progress.update(len(next(iter(s_batch.values()))))
    return pooled_groups(groups, depths)


STATISTICS_BUDGET = 4 << 30  # bytes of running sums one pass may hold; wider models take several passes


def layer_chunks(teacher: dict, student: dict, spaces: Sequence[str], moments: bool,
                 budget: int | None = None) -> list[list[int]]:
    """Student layers in passes whose running sums fit `budget` (at least one layer per pass), so memory
    stays bounded for decoders whose MLP spaces alone need gigabytes per layer (7B -> 1.5B: ~1.4 GB of
    cross products, ~4.3 GB more of covariances for the dense methods). `teacher`, `student`: the models'
    shapes (`describe()`)."""
    per_layer = 0
    for s in spaces:
        ds, dt = space_width(student, s), space_width(teacher, s)
        per_layer += 4 * ds * dt + 16 * (ds + dt)  # PearsonAccumulator's sums
        per_layer += 8 * (ds * dt + ds * ds + dt * dt) + 16 * (ds + dt) if moments else 0  # MomentAccumulator's
    step = max(1, (budget or STATISTICS_BUDGET) // max(per_layer, 1))
    count = module_layers(student)
    return [list(range(i, min(i + step, count))) for i in range(0, count, step)]


def correlate_samples(
    teacher: SampleFile, student: SampleFile, mapping: str, batch_size: int = 2048, workers: int | None = None,
    holdout: float = 0.0,
) -> Correlation:
    """Correlate each student layer with its mapped teacher layer(s) (AVG: the group's mean state), on the
    shared tokens before the `holdout` tail: the same tokens every fitted alignment method reads."""
    groups, acc, shared = accumulate(teacher, student, mapping, holdout=holdout, batch_size=batch_size, workers=workers)
    # Tokens, not pairs: a shared layer's accumulator counts each token once per depth it pools.
    return correlation(mapping, groups, acc, (teacher.describe(), student.describe()), split_point(shared, holdout),
                       paired_share(teacher, student, shared), (str(teacher.path), str(student.path)))


def correlation(mapping: str, groups: Sequence[list[int]], acc: Mapping[tuple[int, str], PearsonAccumulator],
                shapes: tuple[dict, dict], num_tokens: int, share: float, names: tuple[str, str]) -> Correlation:
    """The correlation file's content from a pass's accumulators; constant dimensions (r = 0) are warned of,
    naming the samples (`names`: teacher's and student's) and layers."""
    result = Correlation(mapping, *shapes, num_tokens, paired_share=share)
    for (l, s), a in acc.items():
        r, const_s, const_t = a.result()
        for dims, who, where in ((const_s, names[1], [l]), (const_t, names[0], groups[l])):
            if len(dims):
                warnings.warn(
                    f"{who}: {len(dims)} constant dimension(s) at layer(s) {where} space {s} get r = 0: "
                    f"{', '.join(map(str, dims[:20]))}{' ...' if len(dims) > 20 else ''}",
                    stacklevel=3,
                )
        result.layers.append(LayerCorrelation(l, groups[l], s, r))
    return result
