"""Alignments between a teacher's and a student's hidden spaces, folded into a module's own weights.

Convention, per student module layer `l` (a depth; ALBERT's one shared layer, fitted on all its depths pooled)
and space (`h`: what the module reads; `q`/`v`: LoRA B's outputs):
- the *in* map `M_in` (d_t x d_s) and offset `c` (d_t) take a student state into the teacher's
  space, `h_t ~ M_in h_s + c`. A weight that reads the teacher space (adapter down, LoRA A; b x d_t)
  becomes `W M_in` (b x d_s); the adapter's down bias becomes `b + W c`, which is exact. LoRA A has
  no bias, so for LoRA the offset is not used (the fit is then made through the origin instead).
- the *out* map `M_out` (d_s x d_t) takes a teacher-space write into the student's space. A weight that
  writes (adapter up and its bias, LoRA B) becomes `M_out W`. A write is a change of state, so
  `M_out` is a slope: it has no offset.
A selection sigma (student dim i takes teacher dim sigma[i], times sign[i]) is `M_in[sigma[i], i] = sign[i]`
and `M_out = M_in^T`; such maps are kept as (sigma, sign) and applied by indexing, so `lsa` folds
bit for bit as the study's permutation does. The folded module is an ordinary module of the
student's shape: the student's inference cost does not change.

Methods: `lsa` (the study: assignment on signed r), `lsa-signed` (assignment on |r|, each match's sign
folded in), `linear` (ridge least squares, student -> teacher for reads, teacher -> student for
writes), `procrustes` (orthogonal map between per-dimension standardised states, the smaller space
zero-padded: the orthogonal relaxation of `lsa` on the same r), `select` (every k-th teacher
dimension, no data), `embed` (no samples: the residual stream from the input embeddings of the shared
vocabulary, `transmod.align.embeddings`). `linear` and `procrustes` shrink towards the `lsa-signed` map (weight `ridge`):
directions the samples do not span (a LayerNorm output lies in a hyperplane) then follow the
assignment instead of collapsing to zero, which keeps planted symmetries exact.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transmod.align.correlation import (
    Correlation,
    MomentAccumulator,
    PearsonAccumulator,
    accumulate,
    layer_chunks,
)
from transmod.align.heads import (
    assign_heads,
    check_heads,
    head_dims,
    head_scores,
    select_heads,
)
from transmod.align.layermap import layer_map, pooled_groups
from transmod.align.layersim import layer_groups
from transmod.align.methods import DEFAULT_RIDGE, METHODS, WEIGHTS, check_method, data_free, dense
from transmod.align.pairing import check_pair, paired_share, shared_rows, split_point
from transmod.align.samplefile import SampleFile
from transmod.atomic import MARK
from transmod.errors import TransmodError
from transmod.modules.architectures import (
    HEAD_SPACES,
    ModelShape,
    module_depths,
    module_layers,
    space_width,
)
from transmod.modules.kinds import get_kind

MAP_ARRAYS = ("sigma", "sign", "m_in", "offset", "m_out")  # a LayerMap's arrays, as an alignment file names them


def assign(r: np.ndarray) -> tuple[np.ndarray, float]:
    """The study's linear sum assignment, maximising the summed signed r: sigma[i] is the teacher dim of student dim i."""
    from scipy.optimize import linear_sum_assignment

    if r.ndim != 2 or r.shape[0] > r.shape[1]:
        raise TransmodError(
            f"a correlation of shape {r.shape} cannot be assigned: the student must not be wider than the teacher"
        )
    rows, cols = linear_sum_assignment(-r)
    sigma = np.empty(r.shape[0], dtype=np.int64)
    sigma[rows] = cols
    return sigma, float(r[rows, cols].mean())


@dataclass
class LayerMap:
    """The in/out maps of one student layer and space (see the module docstring for the convention)."""

    student_layer: int
    teacher_layers: list[int]
    space: str
    sigma: np.ndarray | None = None  # (d_s,) teacher dim of each student dim, for selections
    sign: np.ndarray | None = None  # (d_s,) +-1 of each match (lsa-signed)
    m_in: np.ndarray | None = None  # (d_t, d_s) dense read map
    offset: np.ndarray | None = None  # (d_t,) constant of the read map
    m_out: np.ndarray | None = None  # (d_s, d_t) dense write map
    mean_r: float = float("nan")  # mean matched r (|r| for the signed assignment); NaN when data-free

    def read(self, w: np.ndarray) -> np.ndarray:
        """A weight reading the teacher space along its last axis, made to read the student's."""
        if self.sigma is not None:
            w2 = np.take(w, self.sigma, axis=-1)
            return w2 if self.sign is None else (w2 * self.sign).astype(w.dtype)
        return (np.asarray(w, np.float64) @ self.m_in).astype(w.dtype)

    def write(self, w: np.ndarray) -> np.ndarray:
        """A weight writing the teacher space along its first axis, made to write the student's."""
        if self.sigma is not None:
            w2 = np.take(w, self.sigma, axis=0)
            return w2 if self.sign is None else (w2 * self.sign.reshape(-1, *[1] * (w.ndim - 1))).astype(w.dtype)
        return np.tensordot(self.m_out, np.asarray(w, np.float64), axes=1).astype(w.dtype)


@dataclass
class Alignment:
    """Per student layer and space, the maps of one method.

    File format (safetensors, like the correlation file): tensors `{space}{layer}.{sigma|sign|m_in|offset|m_out}`
    (sigma int64, the rest float32; only those the method has), and metadata key `transmod_alignment`: JSON
    with method, mapping, teacher, student (model, model_type, num_layers, hidden_size), num_tokens fitted
    on, ridge, hook (adapter/lora; null when data-free) and layers [{student, teacher, space, mean_r}].
    """

    method: str
    mapping: str
    teacher: dict
    student: dict
    num_tokens: int
    ridge: float | None = DEFAULT_RIDGE  # None for methods without one (lsa from a correlation, select)
    hook: str | None = None  # the samples' hook (adapter, lora); None when data-free
    layers: list[LayerMap] = field(default_factory=list)
    paired_share: float | None = None  # share of the tokens the two tokenizations pair; None when data-free

    def get(self, student_layer: int, space: str = "h") -> LayerMap | None:
        for lm in self.layers:
            if lm.student_layer == student_layer and lm.space == space:
                return lm
        return None

    def groups(self) -> list[list[int]]:
        """The teacher depths of each student module layer, as the alignment was fitted (any layer map)."""
        return [self.get(l, self.layers[0].space).teacher_layers for l in range(module_layers(self.student))]

    def check_models(self, teacher: ModelShape, student: ModelShape, mapping: str, source: str) -> None:
        """Refuse an alignment computed for other model shapes or another layer mapping."""
        for who, shape in (("teacher", teacher), ("student", student)):
            recorded = getattr(self, who)
            want = (recorded["num_layers"], recorded["hidden_size"])
            sizes = {k: v for k, v in shape.describe().items() if k not in ("model", "model_type")}
            if want != (shape.num_layers, shape.hidden_size) or any(recorded.get(k, v) != v for k, v in sizes.items()):
                raise TransmodError(
                    f"{source}: computed for a {who} of {want[0]} layers x {want[1]} dims, but {shape.name} has "
                    f"{shape.num_layers} x {shape.hidden_size}; recompute it from samples of {shape.name}"
                )
        if self.mapping != mapping:
            raise TransmodError(f"{source}: computed for --mapping {self.mapping}, not {mapping}; use the same mapping")

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors: dict[str, np.ndarray] = {}
        for lm in self.layers:
            for name in MAP_ARRAYS:
                value = getattr(lm, name)
                if value is not None:
                    tensors[f"{lm.space}{lm.student_layer}.{name}"] = np.ascontiguousarray(value)
        meta = {
            "method": self.method, "mapping": self.mapping, "teacher": self.teacher, "student": self.student,
            "num_tokens": self.num_tokens, "ridge": self.ridge, "hook": self.hook, "paired_share": self.paired_share,
            "layers": [{"student": lm.student_layer, "teacher": lm.teacher_layers, "space": lm.space,
                        "mean_r": None if np.isnan(lm.mean_r) else lm.mean_r} for lm in self.layers],
        }
        save_file(tensors, str(path), metadata={"transmod_alignment": json.dumps(meta), MARK: "alignment"})

    @classmethod
    def load(cls, path: str | Path) -> Alignment:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise TransmodError(f"{path}: no such alignment file; run `transmod assign` or `transmod fit-alignment` first")
        with open(path, "rb") as handle:
            head = handle.read(8)  # safetensors: a header length; an older assignment: JSON text
        if head[:1] == b"{" and (len(head) < 8 or struct.unpack("<Q", head)[0] > path.stat().st_size):
            return cls._load_assignment(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {})["transmod_alignment"])
                keys = set(f.keys())
                layers = []
                for d in meta["layers"]:
                    prefix = f"{d['space']}{d['student']}."
                    arrays = {n: f.get_tensor(prefix + n) if prefix + n in keys else None
                              for n in MAP_ARRAYS}
                    mean_r = float("nan") if d["mean_r"] is None else d["mean_r"]
                    layers.append(LayerMap(d["student"], d["teacher"], d["space"], mean_r=mean_r, **arrays))
            check_method(meta["method"])
        except Exception as exc:  # a foreign or damaged file: safetensors, JSON and key errors alike
            raise TransmodError(f"{path}: not a transmod alignment file ({exc}); write it with `transmod assign` or "
                               "`transmod fit-alignment`") from None
        bad = [f"{lm.space}{lm.student_layer}.{n}" for lm in layers for n in MAP_ARRAYS
               if getattr(lm, n) is not None and not np.isfinite(getattr(lm, n)).all()]
        if bad:
            raise TransmodError(f"{path}: {', '.join(bad)} hold NaN or inf values, which would make the moved module "
                                "NaN; fit the alignment again")
        return cls(meta["method"], meta["mapping"], meta["teacher"], meta["student"], meta["num_tokens"],
                   meta["ridge"], meta["hook"], layers, meta.get("paired_share"))

    @classmethod
    def _load_assignment(cls, path: Path) -> Alignment:
        """An assignment .json written by transmod before alignments were one type: the `lsa` alignment it holds."""
        try:
            data = json.loads(path.read_text())
            if data.get(MARK) != "assignment":
                raise ValueError("no transmod assignment mark")
            layers = [LayerMap(d["student_layer"], d["teacher_layers"], d["space"],
                               sigma=np.asarray(d["sigma"], dtype=np.int64), mean_r=d["mean_r"]) for d in data["layers"]]
            return cls("lsa", data["mapping"], data["teacher"], data["student"], data["num_tokens"], None, None, layers)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TransmodError(f"{path}: not a transmod assignment file ({exc}); recreate it with `transmod assign`") from None


def assign_correlation(corr: Correlation) -> Alignment:
    """The study's alignment: per layer and space, the assignment on the signed correlation."""
    out = Alignment("lsa", corr.mapping, corr.teacher, corr.student, corr.num_tokens, None, None,
                    paired_share=corr.paired_share)
    for lc in corr.layers:
        if lc.space == "a":  # a decoder's query heads: whole heads, with their key/value heads
            out.layers += _head_maps(lc.student_layer, lc.teacher_layers, corr.teacher, corr.student, lc.r)
            continue
        sigma, mean_r = assign(lc.r)
        out.layers.append(LayerMap(lc.student_layer, lc.teacher_layers, lc.space, sigma=sigma, mean_r=mean_r))
    return out


def describe(sample: SampleFile) -> dict:
    return sample.describe()


def select_alignment(teacher: dict, student: dict, mapping: str, spaces: Sequence[str] = ("h",)) -> Alignment:
    """Data-free baseline: student dim i takes teacher dim floor(i * d_t / d_s) (every k-th, evenly spaced);
    a decoder's heads: evenly spaced whole heads (`transmod.align.heads.select_heads`)."""
    _check_spaces(teacher, student, spaces)
    groups = pooled_groups(layer_map(mapping, int(teacher["num_layers"]), int(student["num_layers"])),
                           module_depths(student))
    layers = []
    for s in spaces:
        d_t, d_s = space_width(teacher, s), space_width(student, s)
        sigma = (np.arange(d_s, dtype=np.int64) * d_t) // d_s
        for l, g in enumerate(groups):
            layers += _head_maps(l, g, teacher, student, None) if s == "a" else [LayerMap(l, g, s, sigma=sigma.copy())]
    return Alignment("select", mapping, teacher, student, 0, None, None, layers)


def _head_maps(l: int, group: list[int], teacher: dict, student: dict, r: np.ndarray | None) -> list[LayerMap]:
    """The query-head (`a`) and key/value-head (`kv`) selections of one layer: assigned on r, or evenly spaced."""
    hd = int(teacher["head_dim"])
    kv_s, kv_t = int(student["num_kv_heads"]), int(teacher["num_kv_heads"])
    if r is None:
        q, kv = select_heads(int(student["num_heads"]), int(teacher["num_heads"]), kv_s, kv_t)
        mean = float("nan")
    else:
        q, kv, mean = assign_heads(head_scores(r, hd), kv_s, kv_t)
    return [LayerMap(l, group, "a", sigma=head_dims(q, hd), mean_r=mean),
            LayerMap(l, group, "kv", sigma=head_dims(kv, hd), mean_r=mean)]


def _check_spaces(teacher: dict, student: dict, spaces: Sequence[str]) -> None:
    if any(s in HEAD_SPACES for s in spaces):
        check_heads(teacher, student)
    for s in spaces:
        if s not in HEAD_SPACES:
            _check_widths(space_width(teacher, s), space_width(student, s), s)


def _check_widths(d_t: int, d_s: int, space: str = "h") -> None:
    if d_s > d_t:
        what = {"m": "MLP neurons", "f": "dims"}.get(space, "dims")
        raise TransmodError(
            f"the student ({d_s} {what}) is wider than the teacher ({d_t} {what}): alignments prune a wider "
            "teacher to a narrower or equal student; swap the models"
        )


def fit_alignment(
    teacher: SampleFile, student: SampleFile, mapping: str, method: str, *,
    ridge: float = DEFAULT_RIDGE, holdout: float = 0.0, batch_size: int = 2048, workers: int | None = None,
) -> Alignment:
    """Fit one method's maps from two sample files (AVG: the group's mean teacher state), first rows only.

    `holdout` leaves the last fraction of the shared tokens out, for `transmod.align.fidelity`.
    """
    spaces = check_pair(teacher, student)
    check_fit(describe(teacher), describe(student), spaces, method, ridge)
    if METHODS[method].reads == WEIGHTS:
        raise TransmodError(f"--method {method} reads the two models' weights, not samples: use `transmod transfer "
                            f"--align {method}` with --teacher-model and --student-model")
    if data_free(method):
        return METHODS[method].function()(describe(teacher), describe(student), mapping, spaces)
    shared = shared_rows(teacher, student)[2]  # checked before the pass over the samples
    n = split_point(shared, holdout)
    check_tokens(describe(teacher), describe(student), spaces, method, n, f"{teacher.path} and {student.path}")
    out = Alignment(method, mapping, describe(teacher), describe(student), n, ridge, teacher.meta["hook"],
                    paired_share=paired_share(teacher, student, shared))
    moments = dense(method)  # covariances; the assignments read r alone
    groups = layer_groups(mapping, teacher, student, holdout)
    for layers in layer_chunks(out.teacher, out.student, spaces, moments):  # bounded memory: a pass per chunk of layers
        read, acc, _ = accumulate(teacher, student, groups, accumulator(method), holdout, batch_size, workers,
                                  pearson_only=("a",), layers=layers)
        out.layers += fitted_maps(method, acc, read, ridge, out)
    return out


def accumulator(method: str) -> type[PearsonAccumulator]:
    """What a method's fit reads: covariances for the dense maps, r alone for the assignments."""
    return MomentAccumulator if dense(method) else PearsonAccumulator


def fitted_maps(method: str, acc: dict[tuple[int, str], PearsonAccumulator], read: list[list[int]], ridge: float,
                out: Alignment) -> list[LayerMap]:
    """The maps of one pass's accumulators (`read`: the teacher depths each student layer read), for `out`; each
    accumulator is dropped from `acc` as its maps are made (memory holds one layer's sums and maps at a time)."""
    intercept = get_kind(out.hook).read_bias is not None  # a bias to fold the read map's offset into
    fit = METHODS[method].function()
    maps = []
    for l, s in list(acc):
        a = acc.pop((l, s))
        if s == "a":  # whole heads whatever the method (transmod.align.heads)
            maps += _head_maps(l, read[l], out.teacher, out.student, a.result()[0])
        else:
            maps.append(fit(a, ridge, intercept, LayerMap(l, read[l], s)))
    return maps


def check_fit(teacher: dict, student: dict, spaces: Sequence[str], method: str, ridge: float) -> None:
    """Refuse a fit that cannot be made: an unknown method, a wider student, a ridge that is not a number."""
    check_method(method)
    _check_spaces(teacher, student, spaces)
    if not 0 <= ridge < np.inf:  # NaN or inf would make every map NaN
        raise TransmodError(f"--ridge must be a finite number of at least 0, got {ridge}")


def widest_map(teacher: dict, student: dict, spaces: Sequence[str]) -> tuple[int, int]:
    """The (teacher, student) widths of the widest space that a dense map fits (every space but heads, which are
    aligned whole): it needs more shared tokens than that."""
    widest = max((s for s in spaces if s not in HEAD_SPACES), key=lambda s: space_width(teacher, s))
    return space_width(teacher, widest), space_width(student, widest)


def check_tokens(teacher: dict, student: dict, spaces: Sequence[str], method: str, n: int, source: str) -> None:
    """Refuse too few shared tokens (`source`: where they come from): a dense map needs more than its width."""
    d_t, d_s = widest_map(teacher, student, spaces)
    if dense(method) and n < max(d_t, d_s) + 1:
        raise TransmodError(f"--align {method} fits a {d_t} x {d_s} map per layer and needs at least {max(d_t, d_s) + 1} "
                            f"shared tokens to fit on, but {source} give {n}; sample more (--max-tokens)")
    if n == 0:
        raise TransmodError(f"{source}: no shared tokens to fit on; sample more text")


def fit_lsa(acc: PearsonAccumulator, ridge: float, intercept: bool, lm: LayerMap) -> LayerMap:
    """The study's map: the assignment that maximises the summed signed r (student dims x teacher dims)."""
    lm.sigma, lm.mean_r = assign(acc.result()[0])
    return lm


def _signed_assignment(acc: PearsonAccumulator) -> tuple[np.ndarray, np.ndarray, float]:
    """The assignment on |r|, each match's sign, and its mean |r|: lsa-signed, and the dense maps' prior."""
    r = acc.result()[0]
    sigma, mean_r = assign(np.abs(r))
    sign = np.where(r[np.arange(len(sigma)), sigma] < 0, -1.0, 1.0)
    return sigma, sign, mean_r


def fit_lsa_signed(acc: PearsonAccumulator, ridge: float, intercept: bool, lm: LayerMap) -> LayerMap:
    lm.sigma, lm.sign, lm.mean_r = _signed_assignment(acc)
    return lm


def _prior(acc: MomentAccumulator, lm: LayerMap) -> np.ndarray:
    """The lsa-signed in-map (d_t x d_s) that a dense map shrinks towards; sets the layer's mean |r|."""
    sigma, sign, lm.mean_r = _signed_assignment(acc)
    prior = np.zeros((acc.result()[0].shape[1], len(sigma)))
    prior[sigma, np.arange(len(sigma))] = sign
    return prior


def fit_linear(acc: MomentAccumulator, ridge: float, intercept: bool, lm: LayerMap) -> LayerMap:
    """Ridge least squares, student -> teacher for reads, teacher -> student for writes."""
    prior = _prior(acc, lm)
    mx, my, cxx, cyy, cxy = acc.moments()
    if intercept:
        m_in = _ridge(cxy.T, cxx, prior, ridge)
        lm.offset = (my - m_in @ mx).astype(np.float32)
    else:  # LoRA A has no bias: the best map through the origin
        _, _, rxx, _, rxy = acc.moments(centred=False)
        m_in = _ridge(rxy.T, rxx, prior, ridge)
    lm.m_in, lm.m_out = m_in.astype(np.float32), _ridge(cxy, cyy, prior.T, ridge).astype(np.float32)
    return lm


def fit_procrustes(acc: MomentAccumulator, ridge: float, intercept: bool, lm: LayerMap) -> LayerMap:
    """An orthogonal map between per-dimension standardised states; the narrower space is zero-padded."""
    prior = _prior(acc, lm)
    mx, my, cxx, cyy, cxy = acc.moments()
    sd_x, sd_y = _std(cxx), _std(cyy)
    q = _polar(cxy.T / np.outer(sd_y, sd_x) + ridge * prior)
    m_in = sd_y[:, None] * q / sd_x[None, :]
    if intercept:
        lm.offset = (my - m_in @ mx).astype(np.float32)
    lm.m_in, lm.m_out = m_in.astype(np.float32), (sd_x[:, None] * q.T / sd_y[None, :]).astype(np.float32)
    return lm


def _ridge(c_ab: np.ndarray, c_bb: np.ndarray, prior: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_M E||a - M b||^2 + lam ||M - prior||^2 = (C_ab + lam prior)(C_bb + lam I)^-1, lam relative to C_bb."""
    from scipy.linalg import solve

    scale = np.trace(c_bb) / len(c_bb)
    lam = ridge * (scale if scale > 0 else 1.0)
    if lam == 0:
        lam = 1e-12 * max(scale, 1e-300)
    lhs = c_bb + lam * np.eye(len(c_bb))
    return solve(lhs, (c_ab + lam * prior).T, assume_a="pos").T


def _std(cov: np.ndarray) -> np.ndarray:
    var = np.maximum(np.diag(cov), 0.0)
    return np.where(var <= 1e-12 * max(var.max(initial=0.0), 1e-300), 1.0, np.sqrt(var))


def _polar(a: np.ndarray) -> np.ndarray:
    """The matrix with orthonormal columns nearest to `a` (d_t x d_s): U V^T of its thin SVD."""
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    return u @ vt
