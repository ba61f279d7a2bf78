import warnings

import numpy as np
import pytest

from transmod.assignment import assign
from transmod.correlation import PearsonAccumulator, pearson


def test_streaming_pearson_equals_numpy_corrcoef():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 7)) * 3 + 100  # large offset: the one-pass sums must not cancel
    y = x[:, [1, 0, 3]] @ np.diag([1.0, -2.0, 0.5]) + rng.normal(size=(500, 3)) + rng.normal(size=(500, 1))
    y = np.hstack([y, rng.normal(size=(500, 4))])
    acc = PearsonAccumulator(7, 7)
    for i in range(0, 500, 64):  # uneven batches
        acc.update(x[i : i + 64].astype(np.float32), y[i : i + 64].astype(np.float32))
    r, cx, cy = acc.result()
    expected = np.corrcoef(x.astype(np.float32), y.astype(np.float32), rowvar=False)[:7, 7:]
    np.testing.assert_allclose(r, expected, atol=1e-6)
    assert len(cx) == len(cy) == 0


def test_constant_dimension_gets_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3))
    x[:, 1] = 4.2
    y = rng.normal(size=(100, 2))
    acc = PearsonAccumulator(3, 2)
    acc.update(x, y)
    r, const_x, const_y = acc.result()
    assert np.all(r[1] == 0) and list(const_x) == [1] and len(const_y) == 0
    np.testing.assert_allclose(r[[0, 2]], np.corrcoef(x, y, rowvar=False)[[0, 2]][:, 3:], atol=1e-6)


def test_assignment_recovers_a_planted_permutation_and_prunes():
    rng = np.random.default_rng(2)
    teacher = rng.normal(size=(2000, 12))
    sigma = rng.permutation(12)[:8]  # student keeps 8 of the teacher's 12 dims, shuffled
    student = teacher[:, sigma] + 0.1 * rng.normal(size=(2000, 8))
    found, mean_r = assign(pearson(student, teacher))
    np.testing.assert_array_equal(found, sigma)
    assert 0.95 < mean_r <= 1.0


def test_assignment_maximises_signed_correlation():
    r = np.array([[-0.9, 0.1], [0.8, 0.2]])
    sigma, mean_r = assign(r)
    assert list(sigma) == [1, 0] and mean_r == pytest.approx(0.45)
