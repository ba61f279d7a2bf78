"""Label-free healing: a moved module trained, briefly and without labels, to do in the student what the teacher's
module does in the teacher.

Per student module layer and site, on the fit tokens of the two sample files (the shared tokens before the
held-out ones, so fidelity measured afterwards stays honest), the target is the teacher module's effect on the
teacher's own states (averaged over the teacher layers the student layer stands for), taken into the student's
space by the write map the transfer used (the alignment's, or the identity for an unaligned pair); the moved
module's effect on the student's own states is fitted to it (feature distillation of the module's change, no
labels, no task data). Each layer and site is fitted apart, on the states the base models produce, so the cost
is a few hundred small matrix products per cell, not forward passes of the model. A cell whose moved module
already reproduces the target (relative error below `EXACT`) is left as it is, and a healed cell is kept only
if its error on the fit tokens went down. A LoRA moved with `linear` is typically already the best fit of its
rank (its read map is the least-squares map onto the same tokens, and a LoRA is linear), so healing then keeps
it; a selection (`lsa`), `procrustes` and the non-linear adapter are where it has room to work.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from transmod.align.alignment import Alignment
from transmod.align.fidelity import sample_shape, teacher_effect
from transmod.align.layersim import layer_groups
from transmod.align.pairing import check_pair, paired_batches, shared_rows, split_point
from transmod.align.samplefile import SampleFile
from transmod.errors import TransmodError
from transmod.modules.architectures import module_depths
from transmod.modules.module import Module

EXACT = 1e-6  # relative error below which a moved module is left as it is
Cell = tuple[int, str]  # (student module layer, site)


def heal(
    teacher_module: Module, moved: Module, teacher: SampleFile, student: SampleFile, mapping: str,
    alignment: Alignment | None, *, lora_b: str = "study", holdout: float = 0.2, steps: int = 200,
    learning_rate: float = 1e-3, max_tokens: int = 4096, batch_size: int = 256, seed: int = 0,
) -> tuple[Module, dict]:
    """`moved` with each cell's weights fitted to the teacher module's mapped effect on at most `max_tokens` fit
    tokens (Adam, `steps` steps of `batch_size` tokens), and what it did: per cell the relative error before and
    after, the steps and the seconds."""
    import torch

    check_pair(teacher, student)
    _check_budget(steps, learning_rate, max_tokens, batch_size)
    data = _targets(teacher_module, moved, teacher, student, mapping, alignment, lora_b, holdout, max_tokens)
    start = time.perf_counter()
    weights, report = dict(moved.weights), {}
    generator = torch.Generator().manual_seed(seed)
    for (l, site), (x, y) in data.items():
        own = {p: t for (layer, s, p), t in moved.weights.items() if layer == l and s == site}
        effect = _effect_of(moved)
        fitted, before, after = _fit(own, effect, x, y, steps, learning_rate, batch_size, generator)
        weights.update({(l, site, p): t for p, t in fitted.items()})
        report[f"{site}{l}"] = {"rel_error_before": before, "rel_error_after": after}
    healed = Module(moved.path, {**moved.config, "transmod": {**moved.config.get("transmod", {}), "healed": {
        "steps": steps, "learning_rate": learning_rate, "tokens": len(next(iter(data.values()))[0]),
        "seconds": round(time.perf_counter() - start, 3), "cells": report}}}, weights, moved.peft_config)
    return healed, report


def _check_budget(steps: int, learning_rate: float, max_tokens: int, batch_size: int) -> None:
    for name, value, ok in (("steps", steps, steps >= 0), ("learning_rate", learning_rate, 0 < learning_rate < np.inf),
                            ("max_tokens", max_tokens, max_tokens >= 1), ("batch_size", batch_size, batch_size >= 1)):
        if isinstance(value, bool) or not ok:
            raise TransmodError(f"healing {name} is {value!r}; give a positive number (steps: 0 or more)")


def _effect_of(module: Module) -> Callable:
    section = module.config["config"]
    return lambda w, h: module.spec.effect(w, section, h, str(module.path))


def _targets(
    teacher_module: Module, moved: Module, teacher: SampleFile, student: SampleFile, mapping: str,
    alignment: Alignment | None, lora_b: str, holdout: float, max_tokens: int,
) -> dict[Cell, tuple[np.ndarray, np.ndarray]]:
    """Per cell: the student's read states and the mapped teacher effects on the first fit tokens (float32)."""
    kind = moved.spec
    groups = layer_groups(mapping, teacher, student, holdout)  # per student depth, as fidelity reads them
    depths = module_depths(student.describe())  # per student module layer: the depths it acts at
    t_shape = sample_shape(teacher)
    mask_t, mask_s, n = shared_rows(teacher, student)
    stop = min(split_point(n, holdout), max_tokens)
    if stop < 1:
        raise TransmodError(f"{teacher.path} and {student.path}: no fit tokens to heal on; sample more")
    cells = sorted({(l, s) for l, s, _ in moved.weights})
    reads = {site: kind.input_space(site) for _, site in cells}
    t_cols = sorted({f"{reads[s]}{t}" for l, s in cells for a in depths[l] for t in groups[a]})
    s_cols = sorted({f"{reads[s]}{a}" for l, s in cells for a in depths[l]})
    xs: dict[Cell, list] = {c: [] for c in cells}
    ys: dict[Cell, list] = {c: [] for c in cells}
    for t_batch, s_batch in paired_batches(teacher, student, t_cols, s_cols, 2048, 0, stop, (mask_t, mask_s)):
        for (l, site), a in ((c, a) for c in cells for a in depths[c[0]]):
            own = teacher_effect(teacher_module, t_shape, groups[a], site, t_batch, reads[site])
            if own is None:
                continue
            lm = None if alignment is None else alignment.get(l, kind.space(site, "out", lora_b == "output"))
            xs[(l, site)].append(s_batch[f"{reads[site]}{a}"])
            ys[(l, site)].append(own if lm is None else lm.write(own.T).T)
    return {c: (np.concatenate(xs[c]).astype(np.float32), np.concatenate(ys[c]).astype(np.float32))
            for c in cells if xs[c]}


def _fit(weights: dict[str, np.ndarray], effect: Callable, x: np.ndarray, y: np.ndarray, steps: int,
         learning_rate: float, batch_size: int, generator) -> tuple[dict[str, np.ndarray], float, float]:
    """One cell's weights after Adam on ||effect(w, x) - y||^2 / ||y||^2, with the relative error on all of the
    cell's tokens before and of the weights returned: those given where the error did not go down."""
    import torch

    x_all, y_all = torch.from_numpy(x), torch.from_numpy(y)
    params = {p: torch.tensor(t, dtype=torch.float32, requires_grad=True) for p, t in weights.items()}

    def rel_error() -> float:
        with torch.no_grad():
            return float(torch.linalg.norm(effect(params, x_all) - y_all) / torch.linalg.norm(y_all).clamp_min(1e-30))

    before = rel_error()
    if before < EXACT or steps == 0:
        return weights, before, before
    optimizer = torch.optim.Adam(params.values(), lr=learning_rate)
    scale = float((y_all**2).sum(1).mean().clamp_min(1e-30))
    for _ in range(steps):
        rows = torch.randint(len(x_all), (min(batch_size, len(x_all)),), generator=generator)
        loss = ((effect(params, x_all[rows]) - y_all[rows]) ** 2).sum(1).mean() / scale
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = rel_error()
    if not after < before:  # NaN included
        return weights, before, before
    return {p: t.detach().numpy().astype(weights[p].dtype) for p, t in params.items()}, before, after
