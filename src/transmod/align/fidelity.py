"""Transfer fidelity: how closely a transferred module reproduces the teacher module's effect, without training.

On held-out sampled tokens (the last `holdout` fraction of the tokens both sample files share), per
student module layer `l` and site (ALBERT's one shared layer: over all its depths together):
- the teacher's effect `D_t` is the teacher module applied to the teacher's own states (adapter:
  `up(act(down(h))) * scaling`; LoRA: `B A h * alpha / r`), averaged over the layer group that `l` stands
  for (one layer for SKIP);
- the student's effect `D_s` is the transferred module applied to the student's own states;
- both are compared in the student's space: `rel_error = ||D_s - M D_t|| / ||M D_t||` (Frobenius over
  tokens and dims) and `cosine` = mean over tokens of cos(D_s, M D_t).

A decoder LLM's LoRA is measured per projection: each site's module is applied to the space its A reads
(`h`, `f`, `a` or `m`, `transmod.modules.architectures.DECODER_SITES`), and its effect compared in the space
its B writes; heads (`a`, `kv`) are compared through the reference's whole-head selection.

The reference map `M` (teacher -> student) must not favour a method. By default it is the ridge
least-squares slope of the student's states on the teacher's (LoRA B's effects: of the query/value
outputs when both files sampled them, else of the hidden states), fitted on the first, not held-out,
tokens: the best linear account of how a teacher-space change looks in the student's space, a property
of the model pair and not of any method. The read side needs no map (each module reads its own model's
states). `linear` uses the same slope as its write map, so on the write side it is the reference by
definition: the other methods are constrained versions (selection, signed selection, orthogonal) and the
measure shows what each constraint costs. A known map (an exact synthetic pair) can be given instead.

Beside it, a method-neutral measure that needs no map at all: linear CKA (centred kernel alignment)
between `D_s` and the teacher's own `D_t` over the held-out tokens, in [0, 1], unchanged by any rotation
or isotropic scaling of either space. Every fitted method, the study's `lsa` included, is fitted on the
same first tokens; no held-out token is read by any fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from transmod.align.alignment import DEFAULT_RIDGE, Alignment, LayerMap, fit_alignment
from transmod.align.inits import Init
from transmod.align.layermap import pooled_groups
from transmod.align.layersim import layer_groups
from transmod.align.pairing import check_pair, paired_batches, shared_rows, split_point
from transmod.align.samplefile import SampleFile
from transmod.align.transfer import transfer
from transmod.errors import TransmodError
from transmod.modules.architectures import (
    BASE_CLASSES,
    DECODER_SITES,
    DECODER_SIZES,
    ModelShape,
    load_model_shape,
    module_depths,
)
from transmod.modules.io import read_module
from transmod.modules.module import Module
from transmod.progress import Progress


def sample_shape(sample: SampleFile) -> ModelShape:
    """The model shape a sample file was taken from (enough to read its modules)."""
    model_type = sample.meta["model_type"]
    return ModelShape(sample.meta["model"], model_type, sample.num_layers, sample.hidden_size,
                      BASE_CLASSES.get(model_type, "?"), **{k: sample.meta[k] for k in DECODER_SIZES if k in sample.meta})


def module_effect(module: Module, layer: int, site: str, h: np.ndarray) -> np.ndarray | None:
    """The change the module adds at (layer, site) for inputs h (tokens x hidden), in float64; None if absent."""
    w = {p: np.asarray(t, np.float64) for (l, s, p), t in module.weights.items() if l == layer and s == site}
    if not w:
        return None
    return module.spec.effect(w, module.config["config"], np.asarray(h, np.float64), str(module.path))


def _sites(module: Module) -> list[str]:
    present = {s for _, s, _ in module.weights}
    return [site for site in module.spec.sites if site in present]


def _check_width(module: Module, sample: SampleFile, who: str) -> None:
    reader = module.spec.reader
    for (_, site, p), t in module.weights.items():
        want = sample.width(module.spec.input_space(site))
        if p == reader and t.shape[-1] != want:
            raise TransmodError(
                f"{module.path}: the {who} module reads {t.shape[-1]} dims at {site} but {sample.path} has {want}; "
                f"give the {who} samples of the model the module belongs to"
            )


def _effect_space(site: str, spaces: list[str]) -> str:
    """The space a site's effect lands in, as the reference map sees it: a decoder projection's output space;
    an encoder's query/value outputs when sampled, else the hidden states."""
    if site in DECODER_SITES:
        return DECODER_SITES[site][2]
    own = {"query": "q", "value": "v"}.get(site)
    return own if own in spaces else "h"


class LinearCKA:
    """Linear CKA of two sets of vectors over the same tokens, from one streaming pass (float64 sums):
    ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with X, Y centred over the tokens."""

    def __init__(self, dx: int, dy: int) -> None:
        self.n = 0
        self.sx, self.sy = np.zeros(dx), np.zeros(dy)
        self.xx, self.yy, self.xy = np.zeros((dx, dx)), np.zeros((dy, dy)), np.zeros((dx, dy))

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.n += len(x)
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.xy += x.T @ y

    def result(self) -> float | None:
        """None when either side does not vary (no similarity to speak of)."""
        if self.n < 2:
            return None
        mx, my = self.sx / self.n, self.sy / self.n
        cxx = self.xx - self.n * np.outer(mx, mx)
        cyy = self.yy - self.n * np.outer(my, my)
        cxy = self.xy - self.n * np.outer(mx, my)
        denom = np.linalg.norm(cxx) * np.linalg.norm(cyy)
        return float(np.linalg.norm(cxy) ** 2 / denom) if denom > 1e-12 else None


def _check_modules(teacher_module: Module, student_module: Module, teacher: SampleFile, student: SampleFile) -> None:
    """Both modules of one kind, each reading its own samples' widths: else the effects cannot be compared."""
    if teacher_module.kind != student_module.kind:
        raise TransmodError(f"{teacher_module.path} is a {teacher_module.kind} but {student_module.path} is a {student_module.kind}")
    _check_width(teacher_module, teacher, "teacher")
    _check_width(student_module, student, "student")


def _held_out(teacher: SampleFile, student: SampleFile, holdout: float) -> tuple[tuple[np.ndarray, np.ndarray], int, int]:
    """The rows both files share (their masks), how many, and where the held-out ones start."""
    mask_t, mask_s, n = shared_rows(teacher, student)
    split = split_point(n, holdout)
    if split >= n:
        raise TransmodError(f"--holdout {holdout} leaves none of the {n} shared tokens to measure on; raise it or sample more")
    return (mask_t, mask_s), n, split


def _ridge_reference(teacher: SampleFile, student: SampleFile, mapping: str, split: int, *, holdout: float,
                     ridge: float = DEFAULT_RIDGE, batch_size: int = 2048) -> Alignment:
    """The default reference: the ridge slope on the tokens before the held-out ones (`split`), which must outnumber
    the dims. It depends on the mapping, never on the method: every init of one mapping is measured against one fit."""
    if split < max(teacher.hidden_size, student.hidden_size) + 1:
        raise TransmodError(
            f"the reference map needs at least {max(teacher.hidden_size, student.hidden_size) + 1} tokens to fit on "
            f"but the first {1 - holdout:.0%} of {teacher.path} and {student.path} give {split}; sample more (--max-tokens)"
        )
    return fit_alignment(teacher, student, mapping, "linear", ridge=ridge, holdout=holdout, batch_size=batch_size)


def _cells(teacher_module: Module, t_shape: ModelShape, read: list[list[int]], mapping: str) -> list[tuple[int, str]]:
    """The (student layer, site) pairs whose mapped teacher layers hold module weights: what can be measured."""
    present = {(t, s) for t, s, _ in teacher_module.weights}
    cells = [(l, site) for l in range(len(read)) for site in _sites(teacher_module)
             if any((t_shape.module_layer(t), site) in present for t in read[l])]
    if not cells:
        raise TransmodError(f"{teacher_module.path}: no module weights in the teacher layers that {mapping} maps to the student")
    return cells


def _write_maps(reference: Alignment, cells: list[tuple[int, str]],
                effect_space: dict[str, str]) -> dict[tuple[int, str], LayerMap]:
    """The reference's write map of each cell; all are checked before the pass over the samples starts."""
    maps: dict[tuple[int, str], LayerMap] = {}
    for l, site in cells:
        lm = reference.get(l, effect_space[site])
        if lm is None or (lm.m_out is None and lm.sigma is None):
            raise TransmodError(f"the reference has no write map for student layer {l} space {effect_space[site]!r}")
        maps[(l, site)] = lm
    return maps


def teacher_effect(module: Module, t_shape: ModelShape, depths: list[int], site: str, batch: dict,
                   space: str) -> np.ndarray | None:
    """The teacher module's effect in the teacher's space, averaged over the teacher depths one student depth stands
    for (None where none of them holds the module); fidelity and healing (`transmod.align.healing`) both read it."""
    effects = [e for t in depths
               if (e := module_effect(module, t_shape.module_layer(t), site, batch[f"{space}{t}"])) is not None]
    return np.mean(effects, axis=0) if effects else None


class _Agreement:
    """One cell's running comparison: the student's effect against the reference's image of the teacher's (error,
    cosine) and against the teacher's own effect (CKA, which needs no map)."""

    def __init__(self, d_student: int, d_teacher: int) -> None:
        self.sums = np.zeros(4)  # squared error, squared reference, summed cosine, cosine count
        self.cka = LinearCKA(d_student, d_teacher)

    def update(self, got: np.ndarray, ref: np.ndarray, own: np.ndarray) -> None:
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
        ok = norms > 0
        self.sums += [np.sum((got - ref) ** 2), np.sum(ref**2),
                      np.sum(np.einsum("ij,ij->i", got[ok], ref[ok]) / norms[ok]), ok.sum()]
        self.cka.update(got, own)


def _summary(s: np.ndarray) -> dict:
    """Relative error and mean cosine from an `_Agreement`'s sums; None where nothing was there to measure."""
    return {"rel_error": math.sqrt(s[0] / s[1]) if s[1] > 0 else None,
            "cosine": s[2] / s[3] if s[3] > 0 else None}


def transfer_fidelity(
    teacher_module: Module, student_module: Module, teacher: SampleFile, student: SampleFile, mapping: str, *,
    holdout: float = 0.2, ridge: float = DEFAULT_RIDGE, reference: Alignment | None = None, reference_name: str = "given",
    batch_size: int = 2048,
) -> dict:
    """Relative error and cosine of the student module's effect against the teacher's, per layer/site and overall.

    `reference`: an alignment whose write maps (`m_out`, or a selection) are the reference `M` (recorded as
    `reference_name`, which names a given one only); by default the ridge slope fitted on the non-held-out
    tokens (`_ridge_reference`).
    """
    spaces = check_pair(teacher, student)
    _check_modules(teacher_module, student_module, teacher, student)
    groups = layer_groups(mapping, teacher, student, holdout)  # per student depth
    depths = module_depths(student.describe())  # per student module layer: the depths it acts at
    t_shape = sample_shape(teacher)
    masks, n, split = _held_out(teacher, student, holdout)
    label = reference_name if reference is not None else "ridge"
    if reference is None:
        reference = _ridge_reference(teacher, student, mapping, split, holdout=holdout, ridge=ridge,
                                     batch_size=batch_size)
    effect_space = {site: _effect_space(site, spaces) for site in teacher_module.spec.sites}
    reads = {site: teacher_module.spec.input_space(site) for site in teacher_module.spec.sites}
    read = pooled_groups(groups, depths)
    cells = _cells(teacher_module, t_shape, read, mapping)
    maps = _write_maps(reference, cells, effect_space)
    agree = {(l, site): _Agreement(student.width(effect_space[site]), teacher.width(effect_space[site])) for l, site in cells}
    t_cols = sorted({f"{reads[site]}{t}" for l, site in cells for t in read[l]})
    s_cols = sorted({f"{reads[site]}{a}" for l, site in cells for a in depths[l]})
    progress = Progress(f"fidelity of {Path(student_module.path).name} on held-out tokens", "tokens", n - split)
    for t_batch, s_batch in paired_batches(teacher, student, t_cols, s_cols, batch_size, split, n, masks):
        progress.update(len(next(iter(s_batch.values()))))
        for (l, site), a in ((cell, a) for cell in cells for a in depths[cell[0]]):
            own = teacher_effect(teacher_module, t_shape, groups[a], site, t_batch, reads[site])
            ref = maps[(l, site)].write(own.T).T
            got = module_effect(student_module, l, site, s_batch[f"{reads[site]}{a}"])
            agree[(l, site)].update(np.zeros_like(ref) if got is None else got, ref, own)
    progress.close()

    layers = [dict(student_layer=l, teacher_layers=read[l], site=site, space=effect_space[site],
                   **_summary(agree[(l, site)].sums), cka=agree[(l, site)].cka.result()) for l, site in cells]
    ckas = [d["cka"] for d in layers if d["cka"] is not None]
    provenance = student_module.config.get("transmod") or {}
    return {
        "method": provenance.get("align"), "mapping": mapping, "kind": teacher_module.kind, "holdout": holdout,
        "heldout_tokens": n - split, "fit_tokens": split, "reference": label,
        "overall": {**_summary(np.sum([a.sums for a in agree.values()], axis=0)), "cka": float(np.mean(ckas)) if ckas else None},
        "layers": layers,
    }


def fidelity_of_inits(
    module_dir: str | Path, teacher: str, student: str, samples: tuple[str | Path, str | Path],
    alignments: Mapping[str, str | Path | None], *, holdout: float = 0.2, lora_b: str = "study",
) -> dict[str, dict]:
    """The fidelity of each transferred init of one grid cell, keyed by its name: the teacher's module in
    `module_dir`, moved in memory with the init's mapping and alignment file (None: an unaligned pair keeps the
    dimensions), measured on the teacher's and the student's sample files (`samples`); nothing is trained."""
    teacher_shape, student_shape = load_model_shape(teacher), load_model_shape(student)
    teacher_samples, student_samples = SampleFile.open(samples[0]), SampleFile.open(samples[1])
    check_pair(teacher_samples, student_samples)
    split = _held_out(teacher_samples, student_samples, holdout)[2]  # once for every reference fit
    module = read_module(module_dir, teacher_shape)
    results, references = {}, {}
    for name, file in alignments.items():
        init = Init.parse(name, "fidelity init")
        if not init.transferred or init.budget:
            raise TransmodError(f"fidelity init {name!r}: fidelity measures a transferred module; name a layer mapping "
                                "(skip, avg-procrustes, ...)")
        alignment = None if file is None else Alignment.load(file)
        moved = transfer(module, teacher_shape, student_shape, init.mapping, alignment, lora_b)
        if init.mapping not in references:
            _check_modules(module, moved, teacher_samples, student_samples)  # before the fit, as transfer_fidelity
            references[init.mapping] = _ridge_reference(teacher_samples, student_samples, init.mapping, split,
                                                        holdout=holdout)
        results[init.name] = transfer_fidelity(module, moved, teacher_samples, student_samples, init.mapping,
                                               holdout=holdout, reference=references[init.mapping],
                                               reference_name="ridge")
    return results


CHOICE_MEASURE = "rel_error"  # what the `auto` init minimises: the moved module's error against the reference


def choose_method(fidelity: Mapping[str, Mapping], mapping: str, source: str | Path) -> str:
    """The alignment method of the `auto` init: among the inits of `mapping` that one grid cell's fidelity file
    (`fidelity_of_inits`) measured, the method whose moved module has the lowest relative error on held-out tokens
    (the first in the file's order on a tie). No test score, no training: it is known before any student trains.

    The reference map of that error is the ridge slope (see the module docstring), so `linear`'s write side is the
    reference itself: the choice leans towards `linear` wherever its read side is as good as the others'."""
    scores = {}
    for name, result in fidelity.items():
        init = Init.parse(name, f"{source}: init")
        value = (result.get("overall") or {}).get(CHOICE_MEASURE) if isinstance(result, Mapping) else None
        if init.mapping != mapping or init.heal or init.auto:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise TransmodError(f"{source}: {name}.overall.{CHOICE_MEASURE} is {value!r}, not a finite number of at "
                                "least 0; run the fidelity job again")
        scores[init.method] = value
    if not scores:
        raise TransmodError(f"{source}: no {mapping} init was measured, so there is no method to choose; measure "
                            f"{mapping} with the methods to choose from")
    return min(scores, key=scores.__getitem__)
