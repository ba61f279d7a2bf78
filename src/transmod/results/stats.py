"""Significance of a TM-Student against the Student baseline, and mean ± SD over seeds.

The tables test each TM-Student row against the Student row of the same setting, module and task,
paired over every (language, seed) that both have: a two-sided paired sign-flip permutation test
of the mean difference. Under the null hypothesis (no effect of the initialisation) each paired
difference is as likely to be positive as negative, so the p-value is the share of the 2^n sign
patterns whose mean difference is at least as far from zero as the observed one: exact for up to
`exact_max` pairs, a seeded Monte Carlo estimate (with the usual +1 correction) above that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TEST_NAME = "two-sided paired sign-flip permutation test of the mean difference"
EXACT_MAX = 20  # 2^20 sign patterns: exact enumeration stays well under a second


def paired_differences(treatment: Sequence[float], control: Sequence[float]) -> np.ndarray:
    """treatment - control over the pairs where both are finite numbers."""
    t = np.asarray(treatment, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    if t.shape != c.shape or t.ndim != 1:
        raise ValueError(f"paired samples need the same 1-d shape, got {t.shape} and {c.shape}")
    keep = np.isfinite(t) & np.isfinite(c)
    return t[keep] - c[keep]


def sign_flip_test(
    treatment: Sequence[float],
    control: Sequence[float],
    *,
    exact_max: int = EXACT_MAX,
    samples: int = 100_000,
    seed: int = 0,
) -> float:
    """Two-sided p-value of a paired sign-flip permutation test (NaN when no pair is complete).

    Exact (all 2^n sign patterns) for n <= exact_max pairs; otherwise `samples` random patterns from
    a generator seeded with `seed`, p = (1 + hits) / (1 + samples), so the result is reproducible.
    """
    d = paired_differences(treatment, control)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    if observed == 0.0:
        return 1.0
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= exact_max:
        hits = 0
        chunk = 1 << min(n, 16)
        bits = np.arange(n, dtype=np.int64)
        for start in range(0, 1 << n, chunk):
            codes = np.arange(start, min(start + chunk, 1 << n), dtype=np.int64)
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
            hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed - tol))
        return hits / float(1 << n)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, samples, 8192):
        size = min(8192, samples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))
        hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed - tol))
    return (1 + hits) / (1 + samples)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment for running many tests at once (NaN stays NaN, and is not counted).

    The k-th smallest of m p-values becomes max over j <= k of min(1, (m - j + 1) p_(j)): the chance of
    any false "significant" marker in the table stays below the level, whatever the tests' dependence."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    if len(idx) == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def stars(p: float) -> str:
    """The marker the Markdown, LaTeX and HTML tables put on a tested cell."""
    if p is None or not math.isfinite(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


MARKER_NOTE = (
    f"* p < 0.05, ** p < 0.01 after Holm's adjustment over every test of the table: TM-Student against "
    f"Student, {TEST_NAME} over every (language, seed) pair that both have (exact over all 2^n sign patterns "
    f"for n <= {EXACT_MAX}, else 100,000 seeded random ones); raw and Holm-adjusted p-values are in the CSV."
)
