"""The significance test and mean ± SD behind the tables, on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transmod.results.stats import sign_flip_test, stars


def test_all_positive_differences_give_two_patterns_in_2_to_the_n():
    # Only the observed signs and their mirror image reach |mean| >= observed: p = 2 / 2^5.
    treatment = [0.9, 0.8, 0.85, 0.7, 0.95]
    control = [0.5, 0.6, 0.55, 0.4, 0.45]
    assert sign_flip_test(treatment, control) == pytest.approx(2 / 32)
    assert sign_flip_test(control, treatment) == pytest.approx(2 / 32)  # two-sided


def test_sign_flip_counts_the_magnitudes():
    # d = 1, 2, 3, -1: |sum| = 5 observed; sums with |sum| >= 5 are +-7 (1 pattern each) and +-5
    # (flip one of the two 1s: 2 patterns each): 6 of 16.
    d = np.array([1.0, 2.0, 3.0, -1.0])
    assert sign_flip_test(d, np.zeros(4)) == pytest.approx(6 / 16)


def test_incomplete_pairs_are_dropped_and_no_pair_is_nan():
    assert sign_flip_test([1.0, math.nan, 2.0], [0.0, 0.0, math.nan]) == pytest.approx(1.0)  # one pair: 2 of 2
    assert math.isnan(sign_flip_test([math.nan], [1.0]))
    assert math.isnan(sign_flip_test([], []))
    assert sign_flip_test([0.5, 0.5], [0.5, 0.5]) == 1.0


def test_monte_carlo_agrees_with_exact_and_is_reproducible():
    rng = np.random.default_rng(3)
    control = rng.normal(size=14)
    treatment = control + rng.normal(0.4, 1.0, size=14)
    exact = sign_flip_test(treatment, control)
    approx = sign_flip_test(treatment, control, exact_max=0, samples=40_000, seed=1)
    assert approx == pytest.approx(exact, abs=0.01)
    assert approx == sign_flip_test(treatment, control, exact_max=0, samples=40_000, seed=1)
    # The +1 correction keeps a Monte Carlo p above zero.
    assert sign_flip_test(np.ones(30), np.zeros(30), exact_max=0, samples=999) == pytest.approx(1 / 1000)


def test_shapes_must_pair():
    with pytest.raises(ValueError, match="same 1-d shape"):
        sign_flip_test([1.0, 2.0], [1.0])


def test_markers():
    assert [stars(p) for p in (0.001, 0.02, 0.05, 0.5, math.nan)] == ["**", "*", "", "", ""]
