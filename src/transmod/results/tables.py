"""`transmod tables RESULTS_DIR` and the workflow's aggregate_tables: tables and figures from finished runs.

The workflow's `plan` job writes RESULTS_DIR/plan.json: every metrics file the config requests, with the
run info the workflow records in it, the alignment files the figures read (paths inside RESULTS_DIR) and
the tasks' declarations (the tables' names, metrics and captions).
From that plan and whatever runs have finished, `write_results` writes RESULTS_DIR/tables/ and
RESULTS_DIR/plots/. It trains nothing: a run without a metrics file is an empty cell with a footnote, and
metrics of another config are refused before anything is written. Every file appears whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from transmod.atomic import MARK, atomic_path
from transmod.errors import TransmodError
from transmod.results import plots, render
from transmod.results.runs import Plan, gather
from transmod.train.tasks import Task

PLAN_FILE = "plan.json"
TABLES_DIR, HTML_DIR, PLOTS_DIR, RUNS_DIR = "tables", "tables/html", "plots", "runs"
ALIGN_FILES = ("assignment", "correlation")  # the path-valued keys of a plan's alignment records


def write_plan(plan: Plan, results_dir: str | Path, target: str | Path) -> None:
    """The workflow's plan (paths under results_dir) as RESULTS_DIR/plan.json, paths relative to results_dir."""
    def inside(path: str) -> str:
        return Path(path).relative_to(results_dir).as_posix()

    data = {MARK: "plan", "runs": {inside(p): info for p, info in plan["runs"].items()},
            "align": [{k: inside(v) if k in ALIGN_FILES else v for k, v in a.items()} for a in plan["align"]],
            "tasks": plan.get("tasks", {})}
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


def load_plan(results_dir: str | Path) -> Plan:
    """RESULTS_DIR/plan.json, with paths under results_dir again."""
    results_dir = Path(results_dir)
    path = results_dir / PLAN_FILE
    if not path.is_file():
        raise TransmodError(f"{path}: no plan of the workflow's runs here; give the results folder of a workflow "
                            "run (any `snakemake` run writes the plan first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get(MARK) != "plan":
            raise ValueError("no transmod plan mark")
        runs = {str(results_dir / p): info for p, info in data["runs"].items()}
        align = [{k: str(results_dir / v) if k in ALIGN_FILES else v for k, v in a.items()} for a in data["align"]]
        tasks = data.get("tasks", {})  # plans of older versions: the built-in tasks only
        for task in tasks.values():
            Task.from_dict(task)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise TransmodError(f"{path}: not a plan that transmod's workflow wrote ({exc}); run the workflow again "
                            "to rewrite it") from None
    return Plan(runs=runs, align=align, tasks=tasks)


def write_results(results_dir: str | Path, plan: Plan | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Tables (Markdown, CSV, LaTeX, HTML) and figures (PNG, PDF) of the finished runs under results_dir, for
    `plan` (the workflow's current one) or else the plan.json the workflow last wrote there."""
    results_dir = Path(results_dir)
    plan = load_plan(results_dir) if plan is None else plan
    tasks = {name: Task.from_dict(task) for name, task in plan.get("tasks", {}).items()}
    runs = gather(plan["runs"], scan=results_dir / RUNS_DIR, tasks=tasks)
    log(f"{len(runs.finished)} runs with a metrics file, {len(runs.missing)} without one (empty cells)")
    for path in runs.missing.file:
        log(f"  no metrics file: {path}")
    for path in runs.ignored:
        log(f"  not requested by the config (same settings), not read: {path}")
    written = render.write_all(runs, results_dir / TABLES_DIR, results_dir / HTML_DIR)
    written += plots.write_all(runs, plan["align"], results_dir / PLOTS_DIR)
    for path in written:
        log(str(path))
    return written
