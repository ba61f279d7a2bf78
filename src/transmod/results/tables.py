"""Result tables in the study's shape, from the metrics files of finished runs (DESIGN.md section 7).

A *plan* maps every metrics file that the config requests to the run info the workflow records in
it (`run` in the metrics JSON). `gather` reads the files of the plan that exist, refuses one that a
different config wrote (naming the file and the differing key), lists the requested runs that have
no file yet (they become empty cells with a footnote, never zeros) and, when given the runs folder,
refuses metrics files there that come from another config than the one the tables are built for.

Tables, per setting (pair) and module type, with rows Teacher / Student / TM-Student SKIP / AVG:
- per task, one column per language and AVG (mean over languages), mean ± SD over seeds;
- a summary: per task AVG, REL (relative change against the Student row, in %) and GAP (the share
  of the Teacher - Student gap that the TM-Student closed, in %), with the paired significance test
  of `transmod.results.stats` for every TM-Student against the Student.
Written as Markdown, CSV and LaTeX (one file each, all settings) and HTML (one page per setting and
table, for `snakemake --report`).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transmod.errors import TransmodError
from transmod.inits import ZERO_SHOT
from transmod.results.stats import MARKER_NOTE, TEST_NAME, holm, sign_flip_test, stars

ROWS = {("teacher", None): "Teacher", ("student", "default"): "Student",
        ("student", "skip"): "TM-Student SKIP", ("student", "avg"): "TM-Student AVG",
        ("student", "zs-default"): "Student (zero-shot)"}
ZERO_SHOT_ROW = " (zero-shot)"
RUN_KEYS = ["pair", "task", "lang", "peft", "role", "init", "seed"]
SETTING_KEYS = ("teacher", "student", "training", "module")  # what makes two runs of one setting comparable
METRIC_NAMES = {"f1": "entity-level F1 (conlleval)", "accuracy": "accuracy"}
INDEX_NAMES = {"pair": "setting", "peft": "module", "row": "model"}
MAX_LISTED = 20

GAP_MIN_POINTS = 1.0  # score points (x 100): a smaller Teacher - Student difference leaves GAP empty
CAPTION = (
    "Test scores x 100 (entity-level F1, conlleval as in seqeval, for NER; accuracy for PI and NLI), mean ± SD over seeds "
    "(the SD only where a cell has more than one seed). AVG: mean over languages. REL: relative change of AVG "
    "against the Student row (default initialisation), in %: 100 * (AVG - AVG_Student) / AVG_Student. "
    "GAP: share of the Teacher - Student gap that the transferred module closed, in %: "
    "100 * (AVG - AVG_Student) / (AVG_Teacher - AVG_Student) (TM-Student rows only), left empty where "
    f"|AVG_Teacher - AVG_Student| is within noise: below {GAP_MIN_POINTS:g} point or below the pooled SD of the two "
    "rows over seeds, whichever is larger. "
    "Zero-shot rows keep the module frozen and train only the head, for a small fixed budget; they are "
    "compared with Student (zero-shot), a fresh module under the same budget, instead of Student."
)
GAP_NOTE = "GAP is empty where Teacher and Student differ by less than the noise (see above)"
EMPTY_NOTE = "An empty cell is a run without a metrics file (a failed or unfinished job), never a zero"
PARTIAL_NOTE = "† a mean over fewer seeds than the config asks for (some runs have no metrics file yet)."


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


def files_fingerprint(paths: Iterable[str | Path]) -> str:
    """A digest of which of these files exist and when they last changed (mtime and size)."""
    state = []
    for path in sorted(map(str, paths)):
        try:
            st = os.stat(path)
            state.append((path, st.st_mtime_ns, st.st_size))
        except OSError:
            state.append((path, None, None))
    return "sha256:" + digest(state)[:16]


# ----------------------------------------------------------------------------------------------
# Reading metrics files


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


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A metrics file of `transmod evaluate` (score in 0..1, metric, run info); TransmodError otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = [key for key in RUN_KEYS if key not in data["run"]]
        if missing:
            raise KeyError(f"run.{missing[0]}")
        score = float(data["score"])
        if not math.isfinite(score):
            raise ValueError(f"score is {data['score']}")
    except FileNotFoundError:
        raise TransmodError(f"{path}: no such metrics file; run the evaluate job that writes it") from None
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise TransmodError(f"{path}: not a metrics file of transmod evaluate ({exc!r}); re-run evaluate") from None
    return data


def _record(path: str | Path, data: Mapping[str, Any]) -> dict[str, Any]:
    run = data["run"]
    role, init = run["role"], run["init"]
    return {**{k: run[k] for k in RUN_KEYS}, "init": None if role == "teacher" else init,
            "teacher": run.get("teacher"), "student": run.get("student"),
            "score": 100 * float(data["score"]), "metric": data.get("metric", ""), "file": str(path),
            "row": row_name(role, init)}


def row_name(role: str, init: str | None) -> str:
    """Teacher, Student (default init) or TM-Student <INIT> (a transferred module: SKIP, AVG, SKIP-PROCRUSTES, ...);
    zero-shot runs (`zs-<init>`) get the row of <init> followed by ' (zero-shot)'."""
    key = (role, None if role == "teacher" else init)
    if key in ROWS:
        return ROWS[key]
    if role == "student" and str(init).startswith(ZERO_SHOT):
        return row_name(role, str(init)[len(ZERO_SHOT):]) + ZERO_SHOT_ROW
    return f"TM-Student {str(init).upper()}" if role == "student" else f"{role} {init}"


def baseline_row(row: str) -> str:
    """The row a transferred row is compared with: the default student under the same training."""
    return ROWS[("student", "zs-default")] if row.endswith(ZERO_SHOT_ROW) else ROWS[("student", "default")]


def _settings(run: Mapping[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in SETTING_KEYS}


def _setting_key(run: Mapping[str, Any]) -> tuple:
    """Zero-shot runs train under their own budget: a setting of their own."""
    return (run["pair"], run["task"], run["peft"], run["role"], str(run.get("init")).startswith(ZERO_SHOT))


FRAME_COLUMNS = RUN_KEYS + ["teacher", "student", "score", "metric", "file", "row"]


def _frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=FRAME_COLUMNS)
    frame["seed"] = frame["seed"].astype(int)
    frame["score"] = frame["score"].astype(float)
    return frame


@dataclass
class Runs:
    """What the tables are built from: finished runs, requested runs without a file, and the plan."""

    finished: pd.DataFrame  # FRAME_COLUMNS, one row per metrics file read
    missing: pd.DataFrame  # FRAME_COLUMNS (score NaN), one row per requested run without a metrics file
    ignored: list[str] = field(default_factory=list)  # unrequested files of the same config, not read

    @property
    def plan(self) -> pd.DataFrame:
        """Every requested run, finished or not."""
        parts = [f for f in (self.finished, self.missing) if len(f)]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else self.finished


def run_id(row: Mapping[str, Any]) -> str:
    run = "teacher" if row["role"] == "teacher" else f"{row['role']}-{row['init']}"
    return f"{row['pair']}/{row['task']}/{row['lang']}/{row['peft']}/{run}/seed{row['seed']}"


def gather(expected: Mapping[str, Mapping[str, Any]], scan: str | Path | None = None) -> Runs:
    """Read every requested metrics file that exists (see the module doc for what is refused)."""
    finished, missing = [], []
    current: dict[tuple, tuple[str, dict]] = {}
    for path, info in expected.items():
        info = normalise(info)
        current.setdefault(_setting_key(info), (path, normalise(_settings(info))))
        if not Path(path).is_file():
            missing.append({**{k: info[k] for k in RUN_KEYS}, "init": None if info["role"] == "teacher" else info["init"],
                            "teacher": info.get("teacher"), "student": info.get("student"), "score": math.nan,
                            "metric": "", "file": str(path), "row": row_name(info["role"], info["init"])})
            continue
        data = read_metrics(path)
        diff = first_difference(normalise(data["run"]), info, prefix="run")
        if diff:
            raise TransmodError(
                f"{path}: written by a different config than the current one ({diff}: this file vs the config); "
                f"tables never mix configs: run the workflow to redo it, or restore the config it was made with"
            )
        finished.append(_record(path, data))
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
    return Runs(_frame(finished), _frame(missing), ignored)


# ----------------------------------------------------------------------------------------------
# Table contents


@dataclass
class Column:
    """One displayed column: the mean per row, and what the renderers add to it."""

    name: str  # header in Markdown / LaTeX / HTML
    csv: str  # header in the CSV
    mean: pd.Series
    sd: pd.Series | None = None
    sd_csv: str | None = None
    partial: pd.Series | None = None  # a mean over fewer seeds than requested
    p: pd.Series | None = None  # raw p-value of this column's test (in the CSV)
    p_csv: str | None = None
    signed: bool = False
    task: str | None = None  # a summary column belongs to one task (left out for settings that do not run it)
    p_holm: pd.Series | None = None  # Holm-adjusted p-value: the marker, and `{p_csv}_holm` in the CSV


@dataclass
class Table:
    title: str
    index: pd.MultiIndex  # (pair, peft, row)
    columns: list[Column]
    missing: pd.Series  # per row: run ids without a metrics file
    settings: dict[str, str]  # pair -> "teacher -> student"
    notes: list[str] = field(default_factory=list)
    extra_csv: dict[str, pd.Series] = field(default_factory=dict)
    tasks: dict[str, set[str]] = field(default_factory=dict)  # pair -> its tasks (summary tables)

    def for_setting(self, pair: str) -> "Table":
        keep = self.index.get_level_values(0) == pair
        idx = self.index[keep]

        def sub(s: pd.Series | None) -> pd.Series | None:
            return None if s is None else s.reindex(idx)

        cols = [Column(c.name, c.csv, sub(c.mean), sub(c.sd), c.sd_csv, sub(c.partial), sub(c.p), c.p_csv, c.signed,
                       c.task, sub(c.p_holm))
                for c in self.columns if c.task is None or pair not in self.tasks or c.task in self.tasks[pair]]
        return Table(self.title, idx, cols, self.missing.reindex(idx), {pair: self.settings.get(pair, "")},
                     self.notes, {k: v.reindex(idx) for k, v in self.extra_csv.items()},
                     {pair: self.tasks[pair]} if pair in self.tasks else {})


def _order(keys: Iterable[tuple]) -> pd.MultiIndex:
    """Rows (pair, peft, row): settings and modules in the order they first appear (the config's), then
    Teacher, Student, TM-Student SKIP, TM-Student AVG, other methods, and the zero-shot rows last."""
    keys = list(keys)
    first_pair = {p: i for i, p in enumerate(unique(k[0] for k in keys))}
    first_peft = {p: i for i, p in enumerate(unique(k[1] for k in keys))}
    rank = {name: i for i, name in enumerate(ROWS.values())}
    keys = sorted(set(keys), key=lambda k: (first_pair[k[0]], first_peft[k[1]], k[2].endswith(ZERO_SHOT_ROW),
                                            rank.get(k[2], 99), str(k[2])))
    return pd.MultiIndex.from_tuples(keys, names=["pair", "peft", "row"])


def unique(values: Iterable) -> list:
    """Distinct values in first-seen order (the config's order of settings, tasks and languages)."""
    return list(dict.fromkeys(values))


def _settings_of(plan: pd.DataFrame) -> dict[str, str]:
    return {p: f"{g.teacher.iloc[0]} → {g.student.iloc[0]}" for p, g in plan.groupby("pair", sort=False)}


def _is_transferred(row: str) -> bool:
    return row not in (ROWS[("teacher", None)], ROWS[("student", "default")], ROWS[("student", "zs-default")])


@dataclass
class TaskStats:
    """Per-language statistics of one task (rows (pair, peft, row))."""

    languages: list[str]
    seeds: list[int]
    index: pd.MultiIndex
    scores: pd.DataFrame  # columns (lang, seed) -> score x 100 (NaN: no file)
    mean: pd.DataFrame  # columns languages + AVG
    sd: pd.DataFrame
    partial: pd.DataFrame
    p: pd.Series  # TM rows only
    n_pairs: pd.Series
    missing: pd.Series
    metric: str


def task_stats(runs: Runs, task: str, test=sign_flip_test) -> TaskStats:
    plan = runs.plan[runs.plan.task == task]
    if plan.empty:
        raise TransmodError(f"no run of task {task!r} in the plan; add it to a pair's tasks in the config")
    languages = unique(plan.lang)
    seeds = sorted(unique(plan.seed))
    index = _order(zip(plan.pair, plan.peft, plan.row))
    cols = pd.MultiIndex.from_product([languages, seeds], names=["lang", "seed"])
    done = runs.finished[runs.finished.task == task]
    if len(done):
        scores = done.pivot_table(index=["pair", "peft", "row"], columns=["lang", "seed"], values="score",
                                  aggfunc="mean").reindex(index=index, columns=cols)
    else:
        scores = pd.DataFrame(math.nan, index=index, columns=cols)
    expected = plan.groupby(["pair", "peft", "row", "lang"]).size()
    mean, sd, partial = {}, {}, {}
    for lang in languages:
        block = scores[lang]
        n = block.notna().sum(axis=1)
        want = pd.Series([expected.get((*k, lang), 0) for k in index], index=index)
        mean[lang] = block.mean(axis=1, skipna=True).where(n > 0)
        sd[lang] = block.std(axis=1, ddof=1, skipna=True).where(n > 1)
        partial[lang] = (n > 0) & (n < want)
    mean, sd, partial = pd.DataFrame(mean), pd.DataFrame(sd), pd.DataFrame(partial)
    mean["AVG"] = mean[languages].mean(axis=1, skipna=False)
    per_seed = pd.DataFrame({s: scores.xs(s, axis=1, level="seed")[languages].mean(axis=1, skipna=False) for s in seeds})
    complete = per_seed.notna().sum(axis=1)
    sd["AVG"] = per_seed.std(axis=1, ddof=1, skipna=True).where(complete > 1)
    partial["AVG"] = partial[languages].any(axis=1) & mean["AVG"].notna()
    p = pd.Series(math.nan, index=index)
    n_pairs = pd.Series(math.nan, index=index)
    for key in index:
        base = (key[0], key[1], baseline_row(key[2]))
        if _is_transferred(key[2]) and base in scores.index:
            t, c = scores.loc[key].to_numpy(float), scores.loc[base].to_numpy(float)
            n_pairs[key] = int(np.count_nonzero(np.isfinite(t) & np.isfinite(c)))
            p[key] = test(t, c)
    gone = runs.missing[runs.missing.task == task]
    missing = pd.Series([[] for _ in index], index=index, dtype=object)
    for _, row in gone.iterrows():
        missing[(row.pair, row.peft, row.row)].append(run_id(row))
    metric = unique(done.metric)[0] if len(done) else ""
    return TaskStats(languages, seeds, index, scores, mean, sd, partial, p, n_pairs, missing, metric)


def metric_label(task: str, metric: str) -> str:
    """'NER: test entity-level F1 (conlleval) x 100' (table titles and plot axes)."""
    return f"{task.upper()}: test {METRIC_NAMES.get(metric, metric or 'score')} x 100"


def per_language_table(runs: Runs, task: str) -> Table:
    st = task_stats(runs, task)
    cols = [Column(lang, lang, st.mean[lang], st.sd[lang], f"{lang} SD", st.partial[lang]) for lang in st.languages]
    cols.append(Column("AVG", "AVG", st.mean["AVG"], st.sd["AVG"], "SD", st.partial["AVG"], st.p, "p",
                       p_holm=pd.Series(holm(st.p.to_numpy()), index=st.p.index)))
    plan = runs.plan[runs.plan.task == task]
    return Table(f"{metric_label(task, st.metric)}, per language", st.index, cols, st.missing, _settings_of(plan),
                 extra_csv={"n_pairs": st.n_pairs, "seeds": _seed_counts(st)})


def _seed_counts(st: TaskStats) -> pd.Series:
    """Seeds with a complete set of languages, per row (what the AVG SD is taken over)."""
    return pd.Series({k: int(sum(st.scores.loc[k].xs(s, level="seed").notna().all() for s in st.seeds))
                      for k in st.index}, dtype=int).reindex(st.index)


def summary_long(runs: Runs) -> pd.DataFrame:
    """One row per (setting, module, model, task): AVG, SD, REL, GAP, p, n_pairs, seeds, missing."""
    rows = []
    for task in unique(runs.plan.task):
        st = task_stats(runs, task)
        avg = st.mean["AVG"]
        seeds = _seed_counts(st)
        for key in st.index:
            base = avg.get((key[0], key[1], baseline_row(key[2])), math.nan)
            top = avg.get((key[0], key[1], "Teacher"), math.nan)
            value = avg[key]
            rel = 100 * (value - base) / base if base and math.isfinite(base) else math.nan
            noise = gap_noise(st.sd["AVG"].get((key[0], key[1], "Teacher"), math.nan),
                              st.sd["AVG"].get((key[0], key[1], baseline_row(key[2])), math.nan))
            within = _is_transferred(key[2]) and math.isfinite(top - base) and abs(top - base) < noise
            gap = (100 * (value - base) / (top - base)
                   if _is_transferred(key[2]) and math.isfinite(top - base) and not within else math.nan)
            rows.append({"setting": key[0], "module": key[1], "model": key[2], "task": task, "metric": st.metric,
                         "AVG": value, "SD": st.sd["AVG"][key], "REL": rel, "GAP": gap, "gap_within_noise": within,
                         "p": st.p[key],
                         "n_pairs": st.n_pairs[key] if _is_transferred(key[2]) else math.nan,
                         "seeds": seeds[key], "partial": bool(st.partial["AVG"][key]),
                         "missing": ";".join(st.missing[key])})
    long = pd.DataFrame(rows, columns=["setting", "module", "model", "task", "metric", "AVG", "SD", "REL", "GAP",
                                       "gap_within_noise", "p", "n_pairs", "seeds", "partial", "missing"])
    long.insert(long.columns.get_loc("p") + 1, "p_holm", holm(long.p.to_numpy(float)))  # over the whole summary
    return long


def gap_noise(sd_teacher: float, sd_student: float) -> float:
    """The smallest Teacher - Student difference that GAP divides by: GAP_MIN_POINTS, or the pooled SD of
    the two rows over seeds when that is larger (a GAP over a difference within noise is meaningless)."""
    sds = [s for s in (sd_teacher, sd_student) if math.isfinite(s)]
    pooled = math.sqrt(sum(s * s for s in sds) / len(sds)) if sds else 0.0
    return max(GAP_MIN_POINTS, pooled)


def summary_table(runs: Runs) -> Table:
    long = summary_long(runs)
    index = _order(zip(long.setting, long.module, long.model))
    cols = []
    missing = pd.Series([[] for _ in index], index=index, dtype=object)
    for task in unique(long.task):
        part = long[long.task == task].set_index(["setting", "module", "model"])
        part.index.names = ["pair", "peft", "row"]
        part = part.reindex(index)
        name = task.upper()
        cols.append(Column(f"{name} AVG", f"{task} AVG", part.AVG, part.SD, f"{task} SD",
                           part.partial.astype("boolean").fillna(False).astype(bool), part.p, f"{task} p", task=task,
                           p_holm=part.p_holm))
        cols.append(Column(f"{name} REL %", f"{task} REL", part.REL, signed=True, task=task))
        cols.append(Column(f"{name} GAP %", f"{task} GAP", part.GAP, task=task))
        for key, text in part.missing.dropna().items():
            if text:
                missing[key].extend(text.split(";"))
    tasks = {p: set(g.task) for p, g in runs.plan.groupby("pair")}
    noisy = long[long.gap_within_noise.astype(bool)]
    notes = [f"{GAP_NOTE}: " + ", ".join(sorted({f"{r.setting} {r.module} {r.task.upper()}" for r in noisy.itertuples()})) + "."
             ] if len(noisy) else []
    return Table("Summary: AVG over languages, REL and GAP per task", index, cols, missing,
                 _settings_of(runs.plan), notes=notes, tasks=tasks)


# ----------------------------------------------------------------------------------------------
# Rendering


def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _cell(column: Column, key: tuple, fmt: str) -> str:
    mean = column.mean.get(key, math.nan)
    if _isnan(mean):
        return ""
    text = f"{mean:+.1f}" if column.signed else f"{mean:.1f}"
    sd = None if column.sd is None else column.sd.get(key, math.nan)
    mark = stars(column.p_holm.get(key, math.nan)) if column.p_holm is not None else ""
    partial = bool(column.partial.get(key, False)) if column.partial is not None else False
    if fmt == "tex":
        text = text + (rf" $\pm$ {sd:.1f}" if not _isnan(sd) else "")
        return text + (f"$^{{{mark}}}$" if mark else "") + (r"$^{\dagger}$" if partial else "")
    if fmt == "html":
        text = text + (f" ± {sd:.1f}" if not _isnan(sd) else "")
        return html.escape(text) + (f"<sup>{mark}</sup>" if mark else "") + ("<sup>†</sup>" if partial else "")
    return text + (f" ± {sd:.1f}" if not _isnan(sd) else "") + mark + ("†" if partial else "")


def _notes(table: Table) -> list[str]:
    notes = [CAPTION, MARKER_NOTE]
    gone = [run for runs in table.missing for run in runs]
    if any(c.partial is not None and c.partial.any() for c in table.columns):
        notes.append(PARTIAL_NOTE)
    if gone:
        listed = ", ".join(gone[:MAX_LISTED]) + (f" and {len(gone) - MAX_LISTED} more" if len(gone) > MAX_LISTED else "")
        notes.append(f"{EMPTY_NOTE}. Runs without a metrics file (results/runs/…/metrics.json): {listed}.")
    else:
        notes.append(f"{EMPTY_NOTE}; every requested run has one here.")
    return notes + table.notes


def _settings_in(table: Table) -> list[str]:
    return unique(table.index.get_level_values(0))


def to_markdown(table: Table) -> str:
    lines = [f"## {table.title}", ""]
    for pair in _settings_in(table):
        sub = table.for_setting(pair)
        names = ["module", "model"] + [c.name for c in sub.columns]
        lines += [f"### {pair}: {sub.settings[pair]}", "", "| " + " | ".join(names) + " |",
                  "|" + "---|" * 2 + "---:|" * len(sub.columns)]
        for key in sub.index:
            lines.append("| " + " | ".join([key[1], key[2]] + [_cell(c, key, "md") for c in sub.columns]) + " |")
        lines.append("")
    return "\n".join(lines + [note + "\n" for note in _notes(table)])


def _tex(text: str) -> str:
    out = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("^", r"\^{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                 ("#", r"\#"), ("→", r"$\rightarrow$"), ("±", r"$\pm$"), ("†", r"$^{\dagger}$"), ("…", r"\ldots{}"),
                 ("<=", r"$\leq$"), ("<", r"$<$")):
        out = out.replace(a, b)
    return out


def to_latex(table: Table) -> str:
    lines = []
    for pair in _settings_in(table):
        sub = table.for_setting(pair)
        names = ["module", "model"] + [c.name for c in sub.columns]
        lines += [r"\begin{table}[t]", r"\centering", r"\small",
                  r"\begin{tabular}{ll" + "r" * len(sub.columns) + "}", r"\toprule",
                  " & ".join(_tex(n) for n in names) + r" \\", r"\midrule"]
        previous = None
        for key in sub.index:
            if previous is not None and key[1] != previous:
                lines.append(r"\midrule")
            previous = key[1]
            lines.append(" & ".join([_tex(key[1]), _tex(key[2])] + [_cell(c, key, "tex") for c in sub.columns]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}",
                  rf"\caption{{{_tex(table.title)} --- {_tex(pair)}: {_tex(sub.settings[pair])}. "
                  rf"{' '.join(_tex(n) for n in _notes(sub))}}}",
                  rf"\label{{tab:{_label(table.title)}-{_label(pair)}}}", r"\end{table}", ""]
    return "\n".join(lines)


def _label(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:40]


def to_csv(table: Table) -> str:
    """Flat CSV: setting, module, model, then per column its mean (and SD and p where it has them)."""
    data: dict[str, Any] = {
        "setting": table.index.get_level_values(0), "module": table.index.get_level_values(1),
        "model": table.index.get_level_values(2),
    }
    for c in table.columns:
        data[c.csv] = c.mean.reindex(table.index).to_numpy(float)
    for c in table.columns:
        if c.sd is not None:
            data[c.sd_csv] = c.sd.reindex(table.index).to_numpy(float)
    for c in table.columns:
        if c.p is not None:
            data[c.p_csv] = c.p.reindex(table.index).to_numpy(float)
        if c.p_holm is not None:
            data[f"{c.p_csv}_holm"] = c.p_holm.reindex(table.index).to_numpy(float)
    for name, series in table.extra_csv.items():
        data[name] = series.reindex(table.index).to_numpy()
    data["missing"] = [";".join(m) for m in table.missing.reindex(table.index)]
    return pd.DataFrame(data).to_csv(index=False, float_format="%.4f")


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "th,td{border-bottom:1px solid #ccc;padding:0.25em 0.7em;text-align:right;white-space:nowrap}"
    "th{border-bottom:2px solid #444}td.k,th.k{text-align:left}"
    "tr.first td{border-top:2px solid #888}p.note{font-size:0.85em;color:#444;max-width:60em}"
    "td.empty{background:#fbeaea}"
)


def to_html(table: Table, pair: str) -> str:
    """One setting's table as a standalone HTML page (what `snakemake --report` shows)."""
    sub = table.for_setting(pair)
    head = "".join(f'<th class="k">{n}</th>' for n in ("module", "model"))
    head += "".join(f"<th>{html.escape(c.name)}</th>" for c in sub.columns)
    body, previous = [], None
    for key in sub.index:
        cells = []
        for c in sub.columns:
            text = _cell(c, key, "html")
            empty = not text and c.sd is not None  # a score cell without a metrics file behind it
            cells.append('<td class="empty" title="no metrics file"></td>' if empty else f"<td>{text}</td>")
        cls = ' class="first"' if previous is not None and key[1] != previous else ""
        previous = key[1]
        body.append(f'<tr{cls}><td class="k">{html.escape(key[1])}</td><td class="k">{html.escape(key[2])}</td>'
                    + "".join(cells) + "</tr>")
    title = f"{sub.title} — {pair}: {sub.settings[pair]}"
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in _notes(sub))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h3>{html.escape(title)}</h3>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}</body></html>\n")


def write_text(target: str | Path, text: str) -> Path:
    from transmod.atomic import atomic_path

    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_tables(table: Table, stem: str | Path) -> list[Path]:
    """stem.md, stem.csv and stem.tex (every setting in one file)."""
    return [write_text(f"{stem}.md", to_markdown(table)), write_text(f"{stem}.csv", to_csv(table)),
            write_text(f"{stem}.tex", to_latex(table))]


def summary_csv(runs: Runs) -> str:
    """The summary as a long CSV: one row per setting, module, model and task (see `summary_long`)."""
    return summary_long(runs).to_csv(index=False, float_format="%.4f")


def ignored_note(runs: Runs) -> list[str]:
    if not runs.ignored:
        return []
    listed = ", ".join(runs.ignored[:5]) + (" …" if len(runs.ignored) > 5 else "")
    return [f"Not read: {len(runs.ignored)} metrics file(s) of the same config that the config does not request "
            f"now (other seeds or languages): {listed}."]


def write_all(runs: Runs, outdir: str | Path, html_dir: str | Path | None = None) -> list[Path]:
    """summary.{md,csv,tex} and <task>.{md,csv,tex} under outdir; <pair>.summary.html and <pair>.<task>.html
    (one page per setting) under html_dir."""
    outdir = Path(outdir)
    summary = summary_table(runs)
    summary.notes += ignored_note(runs)
    written = [write_text(outdir / "summary.md", to_markdown(summary)),
               write_text(outdir / "summary.csv", summary_csv(runs)),
               write_text(outdir / "summary.tex", to_latex(summary))]
    tables = {"summary": summary}
    for task in unique(runs.plan.task):
        tables[task] = per_language_table(runs, task)
        tables[task].notes += ignored_note(runs)
        written += write_tables(tables[task], outdir / task)
    if html_dir is not None:
        for name, table in tables.items():
            for pair in _settings_in(table):
                written.append(write_text(Path(html_dir) / f"{pair}.{name}.html", to_html(table, pair)))
    return written


__all__ = ["CAPTION", "TEST_NAME", "Plan", "Runs", "Table", "files_fingerprint", "gather",
           "per_language_table", "read_metrics", "summary_csv", "summary_long", "summary_table",
           "task_stats",
           "to_csv", "to_html", "to_latex", "to_markdown", "write_all", "write_tables"]
