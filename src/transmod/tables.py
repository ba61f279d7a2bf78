"""Result tables in the study's shape, from the metrics files of finished runs.

Summary: per setting (pair) and module type, rows Teacher / Student / TM-Student SKIP / AVG, and
per task the average over languages (AVG) and its relative change against the Student (REL).
Per-language tables: one per task, a column per language. Markdown, CSV and LaTeX.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from transmod.errors import TransmodError

ROWS = {("teacher", None): "Teacher", ("student", "default"): "Student",
        ("student", "skip"): "TM-Student SKIP", ("student", "avg"): "TM-Student AVG"}
RUN_KEYS = ["pair", "task", "lang", "peft", "role", "init", "seed"]
CAPTION = (
    "Test scores x 100 (entity-level F1 with seqeval for NER; accuracy for PI and NLI), mean over seeds. "
    "AVG: mean over languages. REL: relative change of AVG against the Student row (default initialisation), "
    "in %: 100 * (AVG - AVG_Student) / AVG_Student. An empty cell is a run without a metrics file."
)


def collect(metric_files: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: its keys and score x 100. Refuses two files claiming the same run."""
    records = []
    for path in metric_files:
        try:
            data = json.loads(Path(path).read_text())
            run = data["run"]
            records.append({**{k: run[k] for k in RUN_KEYS}, "score": 100 * float(data["score"]), "file": str(path)})
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise TransmodError(f"{path}: not a metrics file of transmod evaluate ({exc}); re-run evaluate") from None
    frame = pd.DataFrame.from_records(records, columns=RUN_KEYS + ["score", "file"])
    dup = frame[frame.duplicated(RUN_KEYS, keep=False)]
    if len(dup):
        raise TransmodError(f"{dup['file'].iloc[0]} and {dup['file'].iloc[1]} report the same run; remove one")
    frame["row"] = [ROWS.get((r, None if r == "teacher" else i), f"{r} {i}") for r, i in zip(frame.role, frame.init)]
    return frame


def per_language(frame: pd.DataFrame, task: str, languages: Sequence[str]) -> pd.DataFrame:
    """Rows (setting, module, model row), a column per language and AVG; mean over seeds."""
    sub = frame[frame.task == task]
    table = sub.pivot_table(index=["pair", "peft", "row"], columns="lang", values="score", aggfunc="mean")
    table = table.reindex(columns=list(languages))
    table["AVG"] = table[list(languages)].mean(axis=1, skipna=False)
    return _order(table)


def summary(frame: pd.DataFrame, tasks: Sequence[str], languages: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Per (setting, module, row): AVG and REL of each task."""
    columns = {}
    for task in tasks:
        avg = per_language(frame, task, languages[task])["AVG"]
        student = avg.xs("Student", level="row") if "Student" in avg.index.get_level_values("row") else None
        rel = pd.Series(float("nan"), index=avg.index)
        if student is not None:
            for key in avg.index:
                base = student.get(key[:2], float("nan"))
                rel[key] = 100 * (avg[key] - base) / base if base else float("nan")
        columns[(task, "AVG")] = avg
        columns[(task, "REL")] = rel
    return _order(pd.DataFrame(columns))


def _order(table: pd.DataFrame) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(ROWS.values())}
    keys = sorted(table.index, key=lambda k: (k[0], k[1], rank.get(k[2], 99), k[2]))
    return table.reindex(keys)


def _cell(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def _header(table: pd.DataFrame) -> list[str]:
    return [" ".join(c) if isinstance(c, tuple) else str(c) for c in table.columns]


def to_markdown(table: pd.DataFrame, title: str) -> str:
    names = ["setting", "module", "model"] + _header(table)
    lines = [f"### {title}", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for key, row in table.iterrows():
        lines.append("| " + " | ".join(list(key) + [_cell(v) for v in row]) + " |")
    return "\n".join(lines + ["", CAPTION, ""])


def to_latex(table: pd.DataFrame, title: str) -> str:
    def esc(text: str) -> str:
        return str(text).replace("_", r"\_").replace("%", r"\%")

    names = ["setting", "module", "model"] + _header(table)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lll" + "r" * len(table.columns) + "}",
             r"\toprule", " & ".join(esc(n) for n in names) + r" \\", r"\midrule"]
    for key, row in table.iterrows():
        lines.append(" & ".join([esc(k) for k in key] + [_cell(v) for v in row]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(title)}. {esc(CAPTION)}}}", r"\end{table}", ""]
    return "\n".join(lines)


def to_csv(table: pd.DataFrame) -> str:
    flat = table.copy()
    flat.columns = _header(table)
    return flat.reset_index().rename(columns={"pair": "setting", "peft": "module", "row": "model"}).to_csv(
        index=False, float_format="%.4f")


def write_tables(table: pd.DataFrame, stem: str | Path, title: str) -> list[Path]:
    """stem.md, stem.csv and stem.tex."""
    from transmod.atomic import atomic_path

    written = []
    for ext, text in ((".md", to_markdown(table, title)), (".csv", to_csv(table)), (".tex", to_latex(table, title))):
        target = Path(f"{stem}{ext}")
        with atomic_path(target) as tmp:
            tmp.write_text(text)
        written.append(target)
    return written


def write_all(metric_files: Iterable[str | Path], outdir: str | Path, languages: dict[str, Sequence[str]]) -> list[Path]:
    """Summary and per-language tables for every task in `languages`."""
    frame = collect(metric_files)
    outdir = Path(outdir)
    tasks = list(languages)
    written = write_tables(summary(frame, tasks, languages), outdir / "summary", "Summary: AVG and REL per task")
    for task in tasks:
        written += write_tables(per_language(frame, task, languages[task]), outdir / task, f"{task.upper()} per language")
    return written
