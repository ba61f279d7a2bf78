"""What each table cell holds: per task and language, mean and SD over seeds; per task the summary's
AVG, REL and GAP, and the paired test of every TM-Student against its Student (`transmod.results.stats`).

Tables, per setting (pair) and module type, with rows Teacher / Student / TM-Student SKIP / AVG:
- per task, one column per language and AVG (mean over languages), mean ± SD over seeds;
- a summary: per task AVG, REL (relative change against the Student row, in %) and GAP (the share
  of the Teacher - Student gap that the TM-Student closed, in %).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from transmod.align.inits import DEFAULT, LIGHT_BASELINE, ZERO_SHOT_BASELINE
from transmod.errors import TransmodError
from transmod.results.runs import BUDGET_ROWS, ROWS, ZERO_SHOT_ROW, Runs, baseline_row, budget_of, run_id
from transmod.results.stats import holm, sign_flip_test
from transmod.train.tasks import METRICS, Task

GAP_MIN_POINTS = 1.0  # score points (x 100): a smaller Teacher - Student difference leaves GAP empty
GAP_NOTE = "GAP is empty where Teacher and Student differ by less than the noise (see above)"
KEPT_NOTE = ("KEPT % (decoder LLMs, zero-shot rows): of the Teacher's own gain from its LoRA (Teacher - the teacher "
             "alone), the share that the moved LoRA gives the student with no training (TM zero-shot - the student "
             f"alone); empty where the Teacher gained less than {GAP_MIN_POINTS:g} point")


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
    digits: int = 1  # decimals shown (0 for counts)


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
    scored: str = ""  # what the scores are, per task: "accuracy for PI and NLI; ..."
    caption: str = ""  # what the table shows, where it is not test scores (then the scores' caption is left out)

    def for_setting(self, pair: str) -> "Table":
        keep = self.index.get_level_values(0) == pair
        idx = self.index[keep]

        def sub(s: pd.Series | None) -> pd.Series | None:
            return None if s is None else s.reindex(idx)

        cols = [replace(c, mean=sub(c.mean), sd=sub(c.sd), partial=sub(c.partial), p=sub(c.p), p_holm=sub(c.p_holm))
                for c in self.columns if c.task is None or pair not in self.tasks or c.task in self.tasks[pair]]
        return Table(self.title, idx, cols, self.missing.reindex(idx), {pair: self.settings.get(pair, "")},
                     self.notes, {k: v.reindex(idx) for k, v in self.extra_csv.items()},
                     {pair: self.tasks[pair]} if pair in self.tasks else {}, self.scored, self.caption)


def _order(keys: Iterable[tuple]) -> pd.MultiIndex:
    """Rows (pair, peft, row): settings and modules in the order they first appear (the config's), then
    Teacher, Student, TM-Student SKIP, TM-Student AVG, other methods, then the light and the zero-shot rows."""
    keys = list(keys)
    first_pair = {p: i for i, p in enumerate(unique(k[0] for k in keys))}
    first_peft = {p: i for i, p in enumerate(unique(k[1] for k in keys))}
    rank = {name: i for i, name in enumerate(ROWS.values())}
    budgets = {budget: i for i, budget in enumerate(["", LIGHT_BASELINE.budget, ZERO_SHOT_BASELINE.budget])}
    keys = sorted(set(keys), key=lambda k: (first_pair[k[0]], first_peft[k[1]], budgets[budget_of(k[2])],
                                            rank.get(k[2], 99), str(k[2])))
    return pd.MultiIndex.from_tuples(keys, names=["pair", "peft", "row"])


def unique(values: Iterable) -> list:
    """Distinct values in first-seen order (the config's order of settings, tasks and languages)."""
    return list(dict.fromkeys(values))


def _settings_of(plan: pd.DataFrame) -> dict[str, str]:
    return {p: f"{g.teacher.iloc[0]} → {g.student.iloc[0]}" for p, g in plan.groupby("pair", sort=False)}


def _is_transferred(row: str) -> bool:
    return row != ROWS[("teacher", None)] and row != baseline_row(row)


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


def metric_label(task: Task, metric: str) -> str:
    """'NER: test entity-level F1 (conlleval) x 100' (table titles and plot axes), from the declaration."""
    named = METRICS.get(metric or task.metric)
    return f"{task.caption}: test {named.description if named else metric or 'score'} x 100"


def scored(runs: Runs, tasks: Iterable[str]) -> str:
    """What the scores of these tasks are, from their declarations: 'accuracy for PI and NLI; macro-F1 for TOPIC'."""
    by_metric: dict[str, list[str]] = {}
    for task in tasks:
        spec = runs.task(task)
        by_metric.setdefault(METRICS[spec.metric].description, []).append(spec.short)
    return "; ".join(f"{metric} for {' and '.join(names)}" for metric, names in by_metric.items())


def per_language_table(runs: Runs, task: str) -> Table:
    st = task_stats(runs, task)
    cols = [Column(lang, lang, st.mean[lang], st.sd[lang], f"{lang} SD", st.partial[lang]) for lang in st.languages]
    cols.append(Column("AVG", "AVG", st.mean["AVG"], st.sd["AVG"], "SD", st.partial["AVG"], st.p, "p",
                       p_holm=pd.Series(holm(st.p.to_numpy()), index=st.p.index)))
    plan = runs.plan[runs.plan.task == task]
    return Table(f"{metric_label(runs.task(task), st.metric)}, per language", st.index, cols, st.missing, _settings_of(plan),
                 extra_csv={"n_pairs": st.n_pairs, "seeds": _seed_counts(st)}, scored=scored(runs, [task]))


def _seed_counts(st: TaskStats) -> pd.Series:
    """Seeds with a complete set of languages, per row (what the AVG SD is taken over)."""
    return pd.Series({k: int(sum(st.scores.loc[k].xs(s, level="seed").notna().all() for s in st.seeds))
                      for k in st.index}, dtype=int).reindex(st.index)


def summary_long(runs: Runs) -> pd.DataFrame:
    """One row per (setting, module, model, task): AVG, SD, REL, GAP, p, n_pairs, seeds, missing."""
    rows = []
    starts = runs.finished.groupby(["pair", "peft", "task", "row"]).start.mean()  # decoder runs' untrained scores
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
                         "KEPT": kept_share(key[2], value, base, top, starts.get((key[0], key[1], task, "Teacher"))),
                         "p": st.p[key],
                         "n_pairs": st.n_pairs[key] if _is_transferred(key[2]) else math.nan,
                         "seeds": seeds[key], "partial": bool(st.partial["AVG"][key]),
                         "missing": ";".join(st.missing[key])})
    long = pd.DataFrame(rows, columns=["setting", "module", "model", "task", "metric", "AVG", "SD", "REL", "GAP",
                                       "gap_within_noise", "KEPT", "p", "n_pairs", "seeds", "partial", "missing"])
    long.insert(long.columns.get_loc("p") + 1, "p_holm", holm(long.p.to_numpy(float)))  # over the whole summary
    return long


def _scored_alone(runs: Runs, task: str) -> bool:
    """Whether a task's teacher runs scored their start (decoder teachers: the teacher alone), which KEPT reads."""
    return bool(runs.finished[runs.finished.task == task].start.notna().any())


def kept_share(row: str, value: float, student_alone: float, teacher: float, teacher_alone: float | None) -> float:
    """KEPT, for a zero-shot row of a decoder task: the share (in %) of the teacher's own gain from its LoRA that
    the moved LoRA gives the student with no training, `(TM zero-shot - Student zero-shot) / (Teacher - Teacher
    alone)` (a decoder's zero-shot Student is the student alone). Empty elsewhere, and where the teacher gained
    less than GAP_MIN_POINTS from its LoRA."""
    if not (row.endswith(ZERO_SHOT_ROW) and _is_transferred(row)) or teacher_alone is None:
        return math.nan
    gain = teacher - teacher_alone
    return 100 * (value - student_alone) / gain if math.isfinite(gain) and gain >= GAP_MIN_POINTS else math.nan


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
        name = runs.task(task).short
        cols.append(Column(f"{name} AVG", f"{task} AVG", part.AVG, part.SD, f"{task} SD",
                           part.partial.astype("boolean").fillna(False).astype(bool), part.p, f"{task} p", task=task,
                           p_holm=part.p_holm))
        cols.append(Column(f"{name} REL %", f"{task} REL", part.REL, signed=True, task=task))
        cols.append(Column(f"{name} GAP %", f"{task} GAP", part.GAP, task=task))
        if _scored_alone(runs, task):
            cols.append(Column(f"{name} KEPT %", f"{task} KEPT", part.KEPT, signed=True, task=task))
        for key, text in part.missing.dropna().items():
            if text:
                missing[key].extend(text.split(";"))
    tasks = {p: set(g.task) for p, g in runs.plan.groupby("pair")}
    noisy = long[long.gap_within_noise.astype(bool)]
    notes = [f"{GAP_NOTE}: " + ", ".join(sorted({f"{r.setting} {r.module} {runs.task(r.task).short}" for r in noisy.itertuples()})) + "."
             ] if len(noisy) else []
    if any(_scored_alone(runs, task) for task in unique(long.task)):
        notes.append(KEPT_NOTE + ".")
    return Table("Summary: AVG over languages, REL and GAP per task", index, cols, missing,
                 _settings_of(runs.plan), notes=notes, tasks=tasks, scored=scored(runs, unique(long.task)))


WINS_NOTE = ("A cell is a task of a setting and module type (its score: the mean over languages and seeds). Won: the "
             "TM-Student's mean is above its Student's (zero-shot and light rows: the Student's of the same "
             "budget); mean REL: the mean over cells of 100 * (TM-Student - Student) / Student. Every cell counts, "
             "won or lost, whatever its p-value (the summary table has those).")


def wins_table(runs: Runs) -> Table:
    """Per setting and transferred start, over every module type and task: the cells it won against its Student, of
    how many, and its mean relative gain: whether a start helps, in two numbers."""
    long = summary_long(runs)
    moved = long[long.model.map(_is_transferred) & long.REL.notna()]
    moved = moved.assign(module=", ".join(unique(long.module)))  # one row per start, over the module types
    keys = ["setting", "module", "model"]
    grouped = moved.groupby(keys, sort=False).REL
    counts = pd.DataFrame({"won": grouped.apply(lambda rel: float((rel > 0).sum())), "cells": grouped.size().astype(float),
                           "rel": grouped.mean()})
    index = _order(counts.index)
    counts = counts.reindex(index)
    cols = [Column("cells won", "won", counts.won, digits=0), Column("cells", "cells", counts.cells, digits=0),
            Column("mean REL %", "mean_rel", counts.rel, signed=True)]
    return Table("Cells won: each transferred start against its Student", index, cols,
                 pd.Series([[] for _ in index], index=index, dtype=object), _settings_of(runs.plan), notes=[WINS_NOTE],
                 scored=scored(runs, unique(long.task)))


STEPS_NOTE = ("Steps to match: per language and seed, the first epoch at which a start's validation score reaches "
              "the best validation score of the Student (the default start) of the same seed: its optimizer steps "
              "and training seconds, averaged over the runs that reached it (reached: how many, of runs). The "
              "Student row: the steps and seconds to its own best epoch. Zero-shot and light runs (budgets of their "
              "own) are left out; so are runs written before the curve was recorded.")


def steps_long(runs: Runs) -> pd.DataFrame:
    """One row per trained student run with a curve: the steps and seconds at which it first reached its seed's
    Student's best validation score (NaN: never)."""
    student = ROWS[("student", DEFAULT.name)]
    trained = ~runs.finished.row.str.endswith(tuple(BUDGET_ROWS.values()))
    done = runs.finished[(runs.finished.role == "student") & trained]
    rows = []
    for (pair, peft, task, lang), cell in done.groupby(["pair", "peft", "task", "lang"], sort=False):
        best = {r.seed: max(v for _, _, v in r.curve) for r in cell[cell.row == student].itertuples() if r.curve}
        for r in cell.itertuples():
            if not r.curve or r.seed not in best:
                continue
            hit = next(((step, seconds) for step, seconds, v in r.curve if v >= best[r.seed]), (math.nan, math.nan))
            rows.append({"pair": pair, "peft": peft, "row": r.row, "task": task, "lang": lang, "seed": r.seed,
                         "steps": hit[0], "seconds": hit[1]})
    return pd.DataFrame(rows, columns=["pair", "peft", "row", "task", "lang", "seed", "steps", "seconds"])


def steps_table(runs: Runs) -> Table:
    """Per setting, module type and trained start: how fast it reaches what the default start reaches at best."""
    long = steps_long(runs)
    index = _order(zip(long.pair, long.peft, long.row))
    cols = []
    for task in unique(long.task):
        part = long[long.task == task].groupby(["pair", "peft", "row"])
        name = runs.task(task).short
        cols += [Column(f"{name} steps", f"{task} steps", part.steps.mean().reindex(index), task=task, digits=0),
                 Column(f"{name} s", f"{task} seconds", part.seconds.mean().reindex(index), task=task),
                 Column(f"{name} reached", f"{task} reached", part.steps.count().astype(float).reindex(index),
                        task=task, digits=0),
                 Column(f"{name} runs", f"{task} runs", part.size().astype(float).reindex(index), task=task, digits=0)]
    tasks = {p: set(g.task) for p, g in long.groupby("pair")}
    return Table("Steps to match: optimizer steps and seconds to the Student's best validation score", index, cols,
                 pd.Series([[] for _ in index], index=index, dtype=object), _settings_of(runs.plan),
                 tasks=tasks, caption=STEPS_NOTE)
