"""Options given to `transmod transfer` are applied: --samples (and --align lsa) on a same-width pair fit the
alignment the data gives instead of moving the module with the identity; --ridge is checked by the library too.

The refusals (modules whose config disagrees with their weights, non-finite numbers, --ridge NaN, a data-free
--align with --samples) are cases of test_bad_input's CASES.
"""

from __future__ import annotations

import json

import pytest

from transmod.align.alignment import fit_alignment
from transmod.align.samplefile import SampleFile
from transmod.cli import main
from transmod.errors import TransmodError


def _transfer(sandbox, capsys, out, *extra) -> str:
    m = sandbox / "inputs"
    code = main([str(a) for a in ("transfer", "--module", m / "adapter", "--teacher-model", m / "teacher",
                                  "--student-model", m / "student", "--mapping", "skip", *extra, "--out", out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.parametrize("align", [[], ["--align", "lsa"]])
def test_samples_on_a_same_width_pair_fit_the_alignment(cli_sandbox, tmp_path, capsys, align):
    """Teacher and student are both 24 wide: the samples are sampled, correlated and assigned all the same, so the
    module equals the one moved with the step-by-step lsa alignment of the same text, not the unaligned one."""
    m = cli_sandbox / "inputs"
    out = _transfer(cli_sandbox, capsys, tmp_path / "one-shot", "--samples", m / "text.txt", *align)
    assert "lsa alignment on" in out
    _transfer(cli_sandbox, capsys, tmp_path / "step-by-step", "--alignment", m / "lsa.safetensors")
    weights = (tmp_path / "one-shot" / "adapter.safetensors").read_bytes()
    assert weights == (tmp_path / "step-by-step" / "adapter.safetensors").read_bytes()
    assert weights != (m / "moved" / "adapter.safetensors").read_bytes()  # the identity is not what the data says
    provenance = json.loads((tmp_path / "one-shot" / "adapter_config.json").read_text())["transmod"]
    assert provenance["aligned"] is True and provenance["align"] == "lsa"


@pytest.mark.parametrize("ridge", [float("nan"), float("inf"), -1.0])
def test_fit_alignment_refuses_a_ridge_that_is_not_finite_and_non_negative(cli_sandbox, ridge):
    m = cli_sandbox / "inputs"
    with pytest.raises(TransmodError, match="--ridge must be a finite number of at least 0"):
        fit_alignment(SampleFile.open(m / "t.parquet"), SampleFile.open(m / "s.parquet"), "skip", "linear", ridge=ridge)
