"""`transmod tables` regenerates the fidelity table with the others, from the fidelity files that exist: the plan
lists them, the table averages those written so far and says so, and a bad one is refused before anything is
written (as in test_bad_input_tables.py: one line naming the file, the sandbox unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.results import edit_plan, make_results, refused, results_of, run_info

from transmod.atomic import MARK_FILE
from transmod.cli import main
from transmod.results.runs import Plan
from transmod.results.tables import load_plan, write_plan

CELLS = [("matching", "pi", lang, "adapter") for lang in ("en", "de")] + \
        [("incompatible", "pi", lang, "adapter") for lang in ("en", "de")]


def fidelity_file(results: Path, cell: tuple, rel_error: float) -> str:
    """A fidelity file of the workflow's fidelity rule for one cell (seed 1): skip and avg-procrustes."""
    pair, task, lang, peft = cell
    path = results / "fidelity" / pair / task / lang / peft / "seed1.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    inits = {"skip": {"mapping": "skip", "method": None, "overall": {"rel_error": rel_error, "cosine": 0.9, "cka": 0.8}},
             "avg-procrustes": {"mapping": "avg", "method": "procrustes",
                                "overall": {"rel_error": 2 * rel_error, "cosine": 0.5, "cka": None}}}
    path.write_text(json.dumps({"run": dict(pair=pair, task=task, lang=lang, peft=peft, seed="1"), "inits": inits}))
    return str(path.relative_to(results))


def plan_fidelity(root: Path, files: list[str]) -> None:
    edit_plan(root, lambda data: data.update(fidelity=files))


@pytest.fixture
def sandbox(tmp_path) -> Path:
    make_results(tmp_path / "root")
    return tmp_path / "root"


def fidelity_rows(results: Path) -> pd.DataFrame:
    return pd.read_csv(results / "tables" / "fidelity.csv").set_index(["setting", "mapping", "method"])


def test_tables_write_the_fidelity_table_from_the_fidelity_files_written_so_far(sandbox, capsys):
    results = results_of(sandbox)
    files = [fidelity_file(results, cell, 0.1 * (i + 1)) for i, cell in enumerate(CELLS)]
    (results / files[1]).unlink()  # not run yet
    plan_fidelity(sandbox, files)
    assert main(["tables", str(results)]) == 0
    assert "fidelity table: Mean over the 3 of 4 fidelity files written so far" in capsys.readouterr().out
    rows = fidelity_rows(results)
    assert rows.loc[("matching", "skip", "identity"), "rel_error"] == pytest.approx(0.1)  # de is not written yet
    assert rows.loc[("incompatible", "avg", "procrustes"), "rel_error"] == pytest.approx(2 * (0.3 + 0.4) / 2)
    assert "3 of 4 fidelity files" in (results / "tables" / "fidelity.md").read_text()
    assert (results / "plots" / "fidelity.png").stat().st_size > 1000
    listed = json.loads((results / "tables" / MARK_FILE).read_text())["files"]
    assert {"fidelity.md", "fidelity.csv"} <= set(listed)  # transmod's own now, checked like the others

    fidelity_file(results, CELLS[1], 0.3)  # the missing cell finishes: the next run regenerates the table
    assert main(["tables", str(results)]) == 0
    assert "fidelity table:" not in capsys.readouterr().out
    assert fidelity_rows(results).loc[("matching", "skip", "identity"), "rel_error"] == pytest.approx(0.2)
    assert "fidelity files written so far" not in (results / "tables" / "fidelity.md").read_text()


def test_the_fidelity_table_shows_the_zero_shot_runs_that_finished(sandbox):
    results = results_of(sandbox)
    plan_fidelity(sandbox, [fidelity_file(results, cell, 0.2) for cell in CELLS])
    runs = {}
    for pair, task, lang, peft in CELLS[2:]:
        path = results / "runs" / pair / task / lang / peft / "student-zs-skip" / "seed1" / "metrics.json"
        info = run_info(pair, task, lang, peft, "student-zs-skip", 1, epochs=1)  # a budget of its own
        runs[str(path.relative_to(results))] = info
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"run": info, "score": 0.5 + 0.1 * (lang == "de"), "metric": "accuracy"}))
    edit_plan(sandbox, lambda data: data["runs"].update(runs))
    assert main(["tables", str(results)]) == 0
    rows = fidelity_rows(results)
    assert rows.loc[("incompatible", "skip", "identity"), "zero_shot"] == pytest.approx(55.0)
    assert pd.isna(rows.loc[("matching", "skip", "identity"), "zero_shot"])  # no zero-shot run of that setting


def test_no_fidelity_file_yet_means_no_fidelity_table(sandbox):
    results = results_of(sandbox)
    plan_fidelity(sandbox, ["fidelity/matching/pi/en/adapter/seed1.json"])
    assert main(["tables", str(results)]) == 0
    assert not (results / "tables" / "fidelity.md").exists() and not (results / "plots" / "fidelity.png").exists()


@pytest.mark.parametrize("content,expected", [
    ("{oops", "not a fidelity file of the workflow"),
    (json.dumps({"run": {"pair": "matching", "peft": "adapter", "task": "pi", "lang": "en"},
                 "inits": {"skip": {"mapping": "skip", "method": None, "overall": {"rel_error": float("nan")}}}}),
     "rel_error NaN is not a number"),
])
def test_a_bad_fidelity_file_is_refused_naming_it(sandbox, capfd, content, expected):
    results = results_of(sandbox)
    path = results / "fidelity/matching/pi/en/adapter/seed1.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    plan_fidelity(sandbox, ["fidelity/matching/pi/en/adapter/seed1.json"])
    refused(sandbox, capfd, str(path), expected)


def test_the_plan_carries_the_fidelity_files_inside_the_results_folder(tmp_path, capfd):
    results = tmp_path / "results"
    plan = Plan(runs={}, align=[], fidelity=[str(results / "fidelity/a/pi/en/lora/seed1.json")], tasks={})
    write_plan(plan, results, results / "plan.json")
    assert load_plan(results)["fidelity"] == plan["fidelity"]
    data = json.loads((results / "plan.json").read_text())
    assert data["fidelity"] == ["fidelity/a/pi/en/lora/seed1.json"]
    (results / "plan.json").write_text(json.dumps({**data, "fidelity": ["../../elsewhere.json"]}))
    assert main(["tables", str(results)]) == 2
    err = capfd.readouterr().err
    assert "fidelity[0]: '../../elsewhere.json' is not a path inside the results folder" in err and err.count("\n") == 1
