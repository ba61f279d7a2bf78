"""Gathering the runs a table is built from: the plan, the metrics files that exist, and what is refused.

A *plan* maps every metrics file that the config requests to the run info the workflow records in
it (`run` in the metrics JSON). `gather` reads the files of the plan that exist, refuses one that a
different config wrote (naming the file and the differing key), lists the requested runs that have
no file yet (they become empty cells with a footnote, never zeros) and, when given the runs folder,
refuses metrics files there that come from another config than the one the tables are built for.
A score outside its metric's range, and a run name that is not a plain file name, are refused too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from transmod.align.inits import DEFAULT, LIGHT_BASELINE, ZERO_SHOT_BASELINE, Init, run_name
from transmod.atomic import plain_name
from transmod.errors import TransmodError
from transmod.train.tasks import BUILTIN_TASKS, METRICS, Task

ROWS = {("teacher", None): "Teacher", ("student", DEFAULT.name): "Student",
        ("student", Init("skip").name): "TM-Student SKIP", ("student", Init("avg").name): "TM-Student AVG",
        ("student", ZERO_SHOT_BASELINE.name): "Student (zero-shot)",
        ("student", LIGHT_BASELINE.name): "Student (light)"}
ZERO_SHOT_ROW = " (zero-shot)"
LIGHT_ROW = " (light)"
BUDGET_ROWS = {ZERO_SHOT_BASELINE.budget: ZERO_SHOT_ROW, LIGHT_BASELINE.budget: LIGHT_ROW}  # by init name prefix
RUN_KEYS = ["pair", "task", "lang", "peft", "role", "init", "seed"]
NAME_KEYS = ("pair", "task", "lang", "peft")  # run names that become folders and files (runs/, plots/, tables/)
PLAN_FIX = "rewrite the plan with `snakemake results/plan.json -c1` in the workflow's folder"
SETTING_KEYS = ("teacher", "student", "training", "module")  # what makes two runs of one setting comparable


class Plan(dict):
    """A dict (of the runs and files the tables read) whose repr is a digest.

    Passed as a Snakemake param, it keeps logs, reports and the params rerun trigger short while
    still changing whenever the plan does.
    """

    def __repr__(self) -> str:
        return f"Plan({len(self)} keys, sha256:{digest(dict(self))[:16]})"

    __str__ = __repr__

    def __reduce__(self):  # pickled (for Snakemake's script preamble) as a plain dict subclass
        return (Plan, (dict(self),))


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def normalise(info: Mapping[str, Any]) -> dict[str, Any]:
    """Run info as it reads back from a metrics file (JSON types; NaN as null, paths as strings)."""
    return json.loads(json.dumps(_nan_to_none(info), default=str))


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def first_difference(a: Any, b: Any, prefix: str = "run") -> str | None:
    """The first key where two run infos differ, as 'run.training.epochs: 3 vs 4'; None if equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{prefix}.{key}: {'missing' if key not in a else json.dumps(a[key])} vs " \
                       f"{'missing' if key not in b else json.dumps(b[key])}"
            found = first_difference(a[key], b[key], f"{prefix}.{key}")
            if found:
                return found
        return None
    if isinstance(a, float) or isinstance(b, float):
        try:
            if math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0):
                return None
        except (TypeError, ValueError):
            pass
    return None if a == b else f"{prefix}: {json.dumps(a, default=str)} vs {json.dumps(b, default=str)}"


def check_names(info: Mapping[str, Any], where: str, fix: str, keys: tuple[str, ...] = NAME_KEYS) -> None:
    """Refuse run info whose names (pair, task, language, module) are not plain file names, in one line."""
    for key in keys:
        try:
            plain_name(info.get(key), f"{where}.{key}")
        except TransmodError as exc:
            raise TransmodError(f"{exc}, then {fix}") from None


def check_init(info: Mapping[str, Any], where: str, fix: str) -> None:
    """Refuse a student run whose init is not an init's name (`transmod.align.inits`), in one line."""
    if info.get("role") == "student":
        try:
            Init.parse(info.get("init"), f"{where}.init")
        except TransmodError as exc:
            raise TransmodError(f"{exc}, then {fix}") from None


def init_of(run: Mapping[str, Any]) -> Init | None:
    """A checked run's student init; None for the teacher."""
    return Init.parse(run["init"]) if run["role"] == "student" else None


def inside(folder: str | Path, *names: str) -> Path:
    """folder/names...: one path component per name, so that an output never lands outside the output folder."""
    path = Path(folder).joinpath(*names)
    relative = Path(os.path.relpath(os.path.normpath(path), os.path.normpath(folder)))
    if "\0" in str(path) or ".." in relative.parts or len(relative.parts) != len(names):
        raise TransmodError(f"{folder}: refused to write {'/'.join(names)!r} there (not one file name per part); "
                            f"rename them in the config, then {PLAN_FIX}")
    return path


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A metrics file of `transmod evaluate` (score within its metric's range, run info); TransmodError otherwise."""
    fix = "re-run the evaluate job that writes it (delete the file first)"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = [key for key in RUN_KEYS if key not in data["run"]]
        if missing:
            raise KeyError(f"run.{missing[0]}")
        metric = data["metric"]
        if "score" not in data:
            raise KeyError("score")
    except FileNotFoundError:
        raise TransmodError(f"{path}: no such metrics file; run the evaluate job that writes it") from None
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise TransmodError(f"{path}: not a metrics file of transmod evaluate ({exc!r}); {fix}") from None
    if metric not in METRICS:
        raise TransmodError(f"{path}: unknown metric {metric!r} (transmod scores {', '.join(METRICS)}); {fix}")
    low, high = METRICS[metric].bounds
    for key in ("score", "start_score"):  # the start's score: a decoder run's model before it trained
        value = data.get(key)
        if key in data and (isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high):
            raise TransmodError(f"{path}: {key} {json.dumps(value)} is not a number from {low:g} to {high:g}, the "
                                f"range of {METRICS[metric].description}; {fix}")
    _check_curve(path, data.get("curve", []), low, high, fix)
    check_names(data["run"], f"{path}: run", fix)
    check_init(data["run"], f"{path}: run", fix)
    return data


def _check_curve(path: str | Path, curve: Any, low: float, high: float, fix: str) -> None:
    """The validation score per epoch (`curve`: step, training seconds where recorded, score): numbers in range,
    steps rising."""
    def point(p: Any) -> bool:
        return (isinstance(p, dict) and _number(p.get("step")) and p["step"] >= 0 and float(p["step"]).is_integer()
                and (p.get("seconds") is None or _number(p["seconds"]) and p["seconds"] >= 0)
                and _number(p.get("val")) and low <= p["val"] <= high)

    if not isinstance(curve, list) or not all(map(point, curve)) or \
            any(a["step"] > b["step"] for a, b in zip(curve, curve[1:])):
        raise TransmodError(f"{path}: curve is not a list of {{step, seconds, val}} per epoch (steps rising, val from "
                            f"{low:g} to {high:g}); {fix}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _record(path: str | Path, data: Mapping[str, Any]) -> dict[str, Any]:
    run = data["run"]
    role, init = run["role"], run["init"]
    return {**{k: run[k] for k in RUN_KEYS}, "init": None if role == "teacher" else init,
            "teacher": run.get("teacher"), "student": run.get("student"),
            "score": 100 * float(data["score"]), "start": 100 * float(data.get("start_score", math.nan)),
            "curve": [(p["step"], p.get("seconds", math.nan), 100 * p["val"]) for p in data.get("curve", [])],
            "metric": data["metric"], "file": str(path),
            "row": row_name(role, init)}


def row_name(role: str, init: str | None) -> str:
    """Teacher, Student (default init) or TM-Student <INIT> (a transferred module: SKIP, AVG, SKIP-PROCRUSTES, ...);
    zero-shot and light runs (`zs-<init>`, `lt-<init>`) get the row of <init> followed by ' (zero-shot)' or
    ' (light)'."""
    key = (role, None if role == "teacher" else init)
    if key in ROWS:
        return ROWS[key]
    if role != "student":
        return f"{role} {init}"
    start = Init.parse(init)
    return row_name(role, start.base.name) + BUDGET_ROWS[start.budget] if start.budget else \
        f"TM-Student {start.name.upper()}"


def budget_of(row: str) -> str:
    """The budget (init name prefix: '', `zs-`, `lt-`) whose runs a table row holds."""
    return next((budget for budget, suffix in BUDGET_ROWS.items() if row.endswith(suffix)), "")


def baseline_row(row: str) -> str:
    """The row a transferred row is compared with: the default student under the same training."""
    return ROWS[("student", f"{budget_of(row)}{DEFAULT.name}")]


def _settings(run: Mapping[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in SETTING_KEYS}


def _setting_key(run: Mapping[str, Any]) -> tuple:
    """Zero-shot and light runs train under budgets of their own: settings of their own."""
    init = init_of(run)
    return (run["pair"], run["task"], run["peft"], run["role"], init.budget if init is not None else "")


FRAME_COLUMNS = RUN_KEYS + ["teacher", "student", "score", "start", "curve", "metric", "file", "row"]


def _frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=FRAME_COLUMNS)
    frame["seed"] = frame["seed"].astype(int)
    frame[["score", "start"]] = frame[["score", "start"]].astype(float)
    return frame


@dataclass
class Runs:
    """What the tables are built from: finished runs, requested runs without a file, and the plan."""

    finished: pd.DataFrame  # FRAME_COLUMNS, one row per metrics file read
    missing: pd.DataFrame  # FRAME_COLUMNS (score NaN), one row per requested run without a metrics file
    ignored: list[str] = field(default_factory=list)  # unrequested files of the same config, not read
    tasks: Mapping[str, Task] = field(default_factory=dict)  # declarations: the tables' names and captions

    def task(self, name: str) -> Task:
        """A task's declaration (the built-in one when the plan names none)."""
        return self.tasks.get(name) or BUILTIN_TASKS[name]

    @property
    def plan(self) -> pd.DataFrame:
        """Every requested run, finished or not."""
        parts = [f for f in (self.finished, self.missing) if len(f)]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else self.finished


def run_id(row: Mapping[str, Any]) -> str:
    return f"{row['pair']}/{row['task']}/{row['lang']}/{row['peft']}/{run_name(init_of(row))}/seed{row['seed']}"


def _read_requested(path: str, info: Mapping[str, Any], task: Task | None) -> dict[str, Any]:
    """A requested run's metrics file, refused if another config wrote it or it is scored by another metric."""
    data = read_metrics(path)
    diff = first_difference(normalise(data["run"]), info, prefix="run")
    if diff:
        raise TransmodError(
            f"{path}: written by a different config than the current one ({diff}: this file vs the config); "
            f"tables never mix configs: run the workflow to redo it, or restore the config it was made with"
        )
    declared = task or BUILTIN_TASKS.get(info["task"])
    if declared is not None and data["metric"] != declared.metric:
        raise TransmodError(f"{path}: scored by {data['metric']}, but the config scores task {info['task']} by "
                            f"{declared.metric}; tables never mix metrics: re-run the evaluate job that writes it")
    return data


def gather(expected: Mapping[str, Mapping[str, Any]], scan: str | Path | None = None,
           tasks: Mapping[str, Task] | None = None) -> Runs:
    """Read every requested metrics file that exists (see the module doc for what is refused)."""
    finished, missing = [], []
    current: dict[tuple, tuple[str, dict]] = {}
    for path, info in expected.items():
        info = normalise(info)
        check_names(info, f"the plan's run {path}", PLAN_FIX)
        check_init(info, f"the plan's run {path}", PLAN_FIX)
        current.setdefault(_setting_key(info), (path, normalise(_settings(info))))
        if not Path(path).is_file():
            missing.append({**{k: info[k] for k in RUN_KEYS}, "init": None if info["role"] == "teacher" else info["init"],
                            "teacher": info.get("teacher"), "student": info.get("student"), "score": math.nan,
                            "start": math.nan, "curve": [],
                            "metric": "", "file": str(path), "row": row_name(info["role"], info["init"])})
            continue
        finished.append(_record(path, _read_requested(path, info, (tasks or {}).get(info["task"]))))
    ignored = []
    if scan is not None and Path(scan).is_dir():
        requested = {Path(p).resolve() for p in expected}
        for path in sorted(Path(scan).glob("*/*/*/*/*/seed*/metrics.json")):  # pair/task/lang/peft/run/seedN
            if path.resolve() in requested:
                continue
            run = read_metrics(path)["run"]
            here = current.get(_setting_key(run))
            diff = here and first_difference(normalise(_settings(run)), here[1])
            if diff:
                raise TransmodError(
                    f"{path}: a metrics file of another config in {scan} ({diff}: this file vs {here[0]} of the "
                    f"current config); tables never mix configs: move it out of {scan} or restore its config"
                )
            ignored.append(str(path))
    return Runs(_frame(finished), _frame(missing), ignored, dict(tasks or {}))


