import numpy as np
import pytest

from transmod.align.alignment import assign
from transmod.align.correlation import PearsonAccumulator


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
    acc = PearsonAccumulator(8, 12)
    acc.update(student, teacher)
    found, mean_r = assign(acc.result()[0])
    np.testing.assert_array_equal(found, sigma)
    assert 0.95 < mean_r <= 1.0


def test_assignment_maximises_signed_correlation():
    r = np.array([[-0.9, 0.1], [0.8, 0.2]])
    sigma, mean_r = assign(r)
    assert list(sigma) == [1, 0] and mean_r == pytest.approx(0.45)


def test_files_cut_into_different_row_groups_pair_the_same_rows(tmp_path):
    from helpers.models import SENTENCES, make_model, make_tokenizer

    from transmod.align.correlation import correlate_samples
    from transmod.align.samplefile import SampleFile
    from transmod.align.sampling import sample_hidden_states

    teacher, student = make_model("bert", 4), make_model("bert", 2, seed=1)
    paths = {}
    for name, model, batch in (("t", teacher, 32), ("s32", student, 32), ("s7", student, 7)):
        paths[name] = tmp_path / f"{name}.parquet"
        sample_hidden_states(model, make_tokenizer(), [(s,) for s in SENTENCES], {"adapter": paths[name]},
                             model_name=name, batch_size=batch)
    t, alike, other = (SampleFile.open(paths[k]) for k in ("t", "s32", "s7"))
    assert t.row_groups == alike.row_groups != other.row_groups
    want, got = correlate_samples(t, alike, "skip"), correlate_samples(t, other, "skip", batch_size=50)
    assert got.num_tokens == want.num_tokens == t.num_rows
    for a, b in zip(want.layers, got.layers):
        np.testing.assert_allclose(b.r, a.r, atol=1e-6)
