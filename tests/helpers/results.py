"""A workflow's results without training: a plan of runs, a metrics file per run with a known score, and a
results folder whose tables `transmod tables` has written; `refused` checks that a run of it on bad input
changed nothing."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.sandbox import refused_in_one_line
from transmod.cli import main
from transmod.results.runs import Plan
from transmod.results.tables import write_plan

RUNS = ["teacher", "student-default", "student-skip", "student-avg"]
GRID = {"matching": ["ner", "pi"], "incompatible": ["ner"]}
LANGS = ["en", "de", "fr"]
PI_GRID = {"matching": ["pi"], "incompatible": ["pi"]}  # make_results's: one task, both pairs


def run_info(pair, task, lang, peft, run, seed, epochs=3):
    """What the plan records of one run (`run`: teacher or student-<init>)."""
    role, _, init = run.partition("-")
    return dict(pair=pair, task=task, lang=lang, peft=peft, seed=seed, role=role, init=init or None,
                teacher=f"teacher-{pair}", student=f"student-{pair}",
                training={"learning_rate": 1e-3, "batch_size": 16, "epochs": epochs, "max_length": 64},
                module={"bottleneck": 16} if peft == "adapter" else {"r": 4, "alpha": 8})


def make_plan(root: Path, seeds=(1, 2), grid=None, langs=LANGS, pefts=("adapter", "lora")) -> Plan:
    """Every run of `grid` (GRID by default), its metrics file under root/results/runs."""
    plan = {}
    for pair, tasks in (grid or GRID).items():
        for task in tasks:
            for lang in langs:
                for peft in pefts:
                    for run in RUNS:
                        for seed in seeds:
                            path = root / "results/runs" / pair / task / lang / peft / run / f"seed{seed}" / "metrics.json"
                            plan[str(path)] = run_info(pair, task, lang, peft, run, seed)
    return Plan(plan)


def score_of(info) -> float:
    """A known score per run: teacher > skip > avg > student, varying with language and seed."""
    run = info["role"] if info["role"] == "teacher" else f"student-{info['init']}"
    base = {"teacher": 0.8, "student-default": 0.5, "student-skip": 0.7, "student-avg": 0.6}[run]
    return base + 0.01 * LANGS.index(info["lang"]) + 0.02 * info["seed"] + (0.05 if info["task"] == "pi" else 0)


def write_metrics(plan, skip=(), score=score_of, metric=None, **override) -> None:
    """A metrics file per run of the plan, as evaluate writes it (`metric`: the built-in task's by default)."""
    for path, info in plan.items():
        if path in skip:
            continue
        info = {**info, **override}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        scored = metric or ("f1" if info["task"] == "ner" else "accuracy")
        Path(path).write_text(json.dumps({"task": info["task"], "metric": scored, "score": score(info), "run": info}))


def find(plan, **keys) -> str:
    """The metrics file of the one run of the plan with these keys."""
    hits = [p for p, info in plan.items() if all(info[k] == v for k, v in keys.items())]
    assert len(hits) == 1, (keys, hits)
    return hits[0]


def results_of(root: Path) -> Path:
    """The results folder of a make_results root."""
    return root / "work" / "results"


def make_results(root: Path, grid=PI_GRID, langs=("en", "de"), pefts=("adapter",)) -> Path:
    """A workflow's results folder without training: plan.json, a metrics file per run, and the tables and
    plots of one `transmod tables` run. Returns the results folder."""
    results = results_of(root)
    plan = make_plan(root / "work", grid=grid, langs=list(langs), pefts=pefts)
    write_metrics(plan)
    write_plan(Plan(runs=dict(plan), align=[]), results, results / "plan.json")
    assert main(["tables", str(results)]) == 0
    (root / "notes.txt").write_text("the user's own notes\n")
    return results


def refused(root: Path, capfd, *expected: str) -> None:
    """`transmod tables` on the sandbox's results: refused in one line that holds `expected`, nothing changed."""
    refused_in_one_line(["tables", str(results_of(root))], root, capfd, expected)


def edit_plan(root: Path, change) -> None:
    """Rewrite the results' plan.json with `change` applied to its data."""
    path = results_of(root) / "plan.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
