"""`transmod tables RESULTS_DIR` and the workflow's aggregate_tables: tables and figures from finished runs.

The workflow's `plan` job writes RESULTS_DIR/plan.json: every metrics file the config requests, with the
run info the workflow records in it, the alignment files the figures read and the fidelity files of the grid
(paths inside RESULTS_DIR), and the tasks' declarations (the tables' names, metrics and captions).
From that plan and whatever runs have finished, `write_results` writes RESULTS_DIR/tables/ and
RESULTS_DIR/plots/, the fidelity table (`transmod.results.fidelity_table`) included. It trains nothing: a run
without a metrics file is an empty cell with a footnote, the fidelity table averages the fidelity files that
exist (saying so when some do not), and metrics of another config are refused before anything is written.

The two folders are one set: both are written as temporary siblings and moved into place together at the
end, so a reader, a failed run (a full disk) and an interrupted one (Ctrl-C, SIGTERM) see the old set or
the new one, never a mix. Each folder's mark (`atomic.MARK_FILE`) lists what transmod wrote there, with
checksums; a file it did not write, or one changed since, is named and refused instead of being dropped with
the old set.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from transmod.atomic import (
    MARK,
    atomic_path,
    files_under,
    foreign_file,
    mark_folder,
    uninterrupted,
)
from transmod.errors import TransmodError
from transmod.results import plots, render
from transmod.results.fidelity_table import NAME as FIDELITY
from transmod.results.fidelity_table import fidelity_of_runs, write_fidelity
from transmod.results.runs import (
    NAME_KEYS,
    PLAN_FIX,
    RUN_KEYS,
    Plan,
    Runs,
    check_names,
    gather,
    inside,
)
from transmod.train.tasks import BUILTIN_TASKS, METRICS, Task

PLAN_FILE = "plan.json"
TABLES_DIR, HTML_DIR, PLOTS_DIR, RUNS_DIR = "tables", "tables/html", "plots", "runs"
ALIGN_FILES = ("assignment", "correlation")  # the path-valued keys of a plan's alignment records
KIND = "tables"  # the mark of tables/ and plots/
# The fidelity table's files, which an older workflow's fidelity_table rule wrote without listing them: transmod's
# own, replaced with the rest of the set.
UNLISTED_OWN = {TABLES_DIR: (f"{FIDELITY}.md", f"{FIDELITY}.csv"), PLOTS_DIR: (f"{FIDELITY}.png",)}
LOCK = ".transmod-tables.lock"  # in RESULTS_DIR: one writer of tables/ and plots/ at a time


def write_plan(plan: Plan, results_dir: str | Path, target: str | Path) -> None:
    """The workflow's plan (paths under results_dir) as RESULTS_DIR/plan.json, paths relative to results_dir."""
    def inside_results(path: str) -> str:
        return Path(path).relative_to(results_dir).as_posix()

    data = {MARK: "plan", "runs": {inside_results(p): info for p, info in plan["runs"].items()},
            "align": [{k: inside_results(v) if k in ALIGN_FILES else v for k, v in a.items()} for a in plan["align"]],
            "fidelity": [inside_results(p) for p in plan.get("fidelity", [])], "tasks": plan.get("tasks", {})}
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


def load_plan(results_dir: str | Path) -> Plan:
    """RESULTS_DIR/plan.json, with paths under results_dir again; every name and path in it checked."""
    results_dir = Path(results_dir)
    path = results_dir / PLAN_FILE
    if not path.is_file():
        raise TransmodError(f"{path}: no plan of the workflow's runs here; give the results folder of a workflow "
                            "run, or write its plan with `snakemake results/plan.json -c1` in the workflow's folder "
                            "(a dry run, `snakemake -n`, writes none)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get(MARK) != "plan":
            raise ValueError("no transmod plan mark")
        runs, align, tasks = dict(data["runs"]), list(data["align"]), dict(data.get("tasks", {}))  # older: no tasks
        fidelity = list(data.get("fidelity", []))  # older: none
        declared = {name: Task.from_dict(task) for name, task in tasks.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise TransmodError(f"{path}: not a plan that transmod's workflow wrote ({exc}); run the workflow again "
                            "to rewrite it") from None
    _check_runs(path, runs, declared)
    for i, record in enumerate(align):
        check_names(record, f"{path}: align[{i}]", PLAN_FIX, NAME_KEYS + ("mapping",))
        for key in ALIGN_FILES:
            _check_relative(path, f"align[{i}].{key}", record.get(key))
    for i, file in enumerate(fidelity):
        _check_relative(path, f"fidelity[{i}]", file)
    return Plan(runs={str(results_dir / p): info for p, info in runs.items()},
                align=[{k: str(results_dir / v) if k in ALIGN_FILES else v for k, v in a.items()} for a in align],
                fidelity=[str(results_dir / p) for p in fidelity], tasks=tasks)


def _check_runs(path: Path, runs: Mapping[str, Any], declared: Mapping[str, Task]) -> None:
    """Every run of a plan: a metrics path inside the results folder, its run info complete and plainly named,
    its task declared with a metric the tables know."""
    for file, info in runs.items():
        where = f"{path}: runs[{json.dumps(file)}]"
        _check_relative(path, f"runs[{json.dumps(file)}]", file)
        if not isinstance(info, dict) or any(key not in info for key in RUN_KEYS):
            raise TransmodError(f"{where}: not run info with the keys {', '.join(RUN_KEYS)}; {PLAN_FIX}")
        if isinstance(info["seed"], bool) or not isinstance(info["seed"], int):
            raise TransmodError(f"{where}.seed: {info['seed']!r} is not a whole number; {PLAN_FIX}")
        check_names(info, where, PLAN_FIX)
        task = declared.get(info["task"]) or BUILTIN_TASKS.get(info["task"])
        if task is None or task.metric not in METRICS:
            raise TransmodError(f"{where}.task: {info['task']!r} has no declaration with a known metric under "
                                f"`tasks`; {PLAN_FIX}")


def _check_relative(path: Path, key: str, value: Any) -> None:
    """A path of the plan: relative, and never out of the results folder."""
    if not isinstance(value, str) or not value or "\0" in value or Path(value).is_absolute() \
            or ".." in Path(value).parts:
        raise TransmodError(f"{path}: {key}: {value!r} is not a path inside the results folder; {PLAN_FIX}")


def write_results(results_dir: str | Path, plan: Plan | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Tables (Markdown, CSV, LaTeX, HTML) and figures (PNG, PDF) of the finished runs and fidelity files under
    results_dir, for `plan` (the workflow's current one) or else the plan.json the workflow last wrote there."""
    results_dir = Path(results_dir)
    plan = load_plan(results_dir) if plan is None else plan
    tasks = {name: Task.from_dict(task) for name, task in plan.get("tasks", {}).items()}
    runs = gather(plan["runs"], scan=results_dir / RUNS_DIR, tasks=tasks)
    done, total = len(runs.finished), len(runs.finished) + len(runs.missing)
    missing = f" ({total - done} without a metrics file: empty cells, listed under the tables)" if done < total else ""
    log(f"{done} of {total} runs finished{missing}")
    if runs.ignored:
        log(f"{len(runs.ignored)} metrics files of the same settings that the config does not request were not "
            "read (listed under the tables)")
    fidelity, note = fidelity_of_runs(plan.get("fidelity", []), runs)
    if note:
        log(f"fidelity table: {note}")
    with exclusive(results_dir):
        return _replace_set(results_dir, runs, plan["align"], fidelity, note, log)


def _replace_set(results_dir: Path, runs: Runs, align: list[Mapping[str, str]], fidelity: pd.DataFrame | None,
                 note: str, log: Callable[[str], None]) -> list[Path]:
    """tables/ and plots/ written as temporary siblings, then moved into place one right after the other."""
    folders = {name: results_dir / name for name in (TABLES_DIR, PLOTS_DIR)}
    for folder in folders.values():
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise TransmodError(f"{folder}: not the folder transmod tables writes (a link or a file); move it away")
    # `held` is left last: once entered, signals wait until both folders are in place
    with contextlib.ExitStack() as held, atomic_path(folders[TABLES_DIR], is_dir=True) as tables, \
            atomic_path(folders[PLOTS_DIR], is_dir=True) as figures:
        staged = {TABLES_DIR: tables, PLOTS_DIR: figures}
        html = inside(tables, *Path(HTML_DIR).relative_to(TABLES_DIR).parts)
        written = render.write_all(runs, tables, html) + plots.write_all(runs, align, figures)
        if fidelity is not None:  # no fidelity file yet: no table
            written += write_fidelity(fidelity, tables, figures, note)
        final = [folders[name] / p.relative_to(tmp) for p in written for name, tmp in staged.items()
                 if p.is_relative_to(tmp)]
        twice = next((p for p in final if final.count(p) > 1), None)
        if twice is not None:
            raise TransmodError(f"{twice}: two tables would be written there (a task named like a table?); "
                                "rename the task in the config")
        for name, tmp in staged.items():
            _keep_others(folders[name], tmp, UNLISTED_OWN[name])
            mark_folder(tmp, KIND, digests=True)
        # from here on both folders are replaced, even if a signal comes: it stops the command once they are
        held.enter_context(uninterrupted(lambda name: log(f"{name} came while the new tables and plots replaced "
                                                           "the old ones: both are in place, whole; stopping now")))
    return final


def _keep_others(folder: Path, staged: Path, unlisted: tuple[str, ...]) -> None:
    """Refuse any file in the old `folder` that transmod tables did not write (or that changed since), naming it:
    the old folder goes as a whole."""
    if folder.is_dir() and (name := foreign_file(folder, files_under(staged), unlisted)):
        raise TransmodError(f"{folder / name}: not written by transmod tables, or changed since; move it out of "
                            f"{folder} (transmod tables replaces the folder whole), then run again")


@contextlib.contextmanager
def exclusive(folder: str | Path) -> Iterator[None]:
    """One writer of tables/ and plots/ at a time (transmod tables and aggregate_tables replace both folders), through a lock file in `folder` that stays. A file system
    without locks (Lustre mounted without flock) leaves it to the user not to run two at once."""
    import fcntl

    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / LOCK, "a") as handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
