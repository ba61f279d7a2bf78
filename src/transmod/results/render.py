"""Tables written as Markdown, CSV and LaTeX (one file each, all settings) and HTML (one page per
setting and table, for `snakemake --report`)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transmod.results.cells import (
    GAP_MIN_POINTS,
    Column,
    Table,
    per_language_table,
    steps_table,
    summary_long,
    summary_table,
    unique,
    wins_table,
)
from transmod.results.runs import Runs, inside
from transmod.results.stats import MARKER_NOTE, stars

MAX_LISTED = 20

CAPTION = (
    "Test scores x 100 ({scored}), mean ± SD over seeds "
    "(the SD only where a cell has more than one seed). AVG: mean over languages. REL: relative change of AVG "
    "against the Student row (default initialisation), in %: 100 * (AVG - AVG_Student) / AVG_Student. "
    "GAP: share of the Teacher - Student gap that the transferred module closed, in %: "
    "100 * (AVG - AVG_Student) / (AVG_Teacher - AVG_Student) (TM-Student rows only), left empty where "
    f"|AVG_Teacher - AVG_Student| is within noise: below {GAP_MIN_POINTS:g} point or below the pooled SD of the two "
    "rows over seeds, whichever is larger. "
    "Zero-shot rows keep the module frozen and train only the head, for a small fixed budget; they are "
    "compared with Student (zero-shot), a fresh module under the same budget, instead of Student. A decoder has "
    "no head: its zero-shot rows train nothing, and its Student (zero-shot) is the student alone. Light rows "
    "(LoRASuite's light fine-tune) train from the start for the short `light` budget and are compared with "
    "Student (light), a fresh module under the same budget."
)
EMPTY_NOTE = "An empty cell is a run without a metrics file (a failed or unfinished job), never a zero"
PARTIAL_NOTE = "† a mean over fewer seeds than the config asks for (some runs have no metrics file yet)."



def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _cell(column: Column, key: tuple, fmt: str) -> str:
    mean = column.mean.get(key, math.nan)
    if _isnan(mean):
        return ""
    text = f"{mean:+.{column.digits}f}" if column.signed else f"{mean:.{column.digits}f}"
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
    notes = [table.caption] if table.caption else [CAPTION.format(scored=table.scored or "the tasks' metrics"),
                                                  MARKER_NOTE]
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


MD_SPECIAL = frozenset("\\`*_[]<>#|&~$")  # Markdown syntax: emphasis, links, raw HTML, headings, table cells, math


def md_literal(text: str) -> str:
    """Text from the config or the plan (task titles and labels, settings, names) as literal Markdown on one
    line: no raw HTML, no heading or table row of its own, no extra cell."""
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in " ".join(str(text).split()))


def to_markdown(table: Table) -> str:
    lines = [f"## {md_literal(table.title)}", ""]
    for pair in _settings_in(table):
        sub = table.for_setting(pair)
        names = ["module", "model"] + [c.name for c in sub.columns]
        lines += [f"### {md_literal(pair)}: {md_literal(sub.settings[pair])}", "",
                  "| " + " | ".join(map(md_literal, names)) + " |", "|" + "---|" * 2 + "---:|" * len(sub.columns)]
        for key in sub.index:
            cells = [md_literal(key[1]), md_literal(key[2])] + [_cell(c, key, "md") for c in sub.columns]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines + [md_literal(note) + "\n" for note in _notes(table)])


TEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "#": r"\#",
       "_": r"\_", "^": r"\^{}", "~": r"\textasciitilde{}", "|": r"\textbar{}", "<": r"$<$", ">": r"$>$",
       "≤": r"$\leq$", "→": r"$\rightarrow$", "±": r"$\pm$", "†": r"$^{\dagger}$", "…": r"\ldots{}"}


def _tex(text: str) -> str:
    """Text as literal LaTeX on one line (a blank line would end the caption's paragraph)."""
    return "".join(TEX.get(ch, ch) for ch in " ".join(str(text).replace("<=", "≤").split()))


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


def write_tables(table: Table, stem: str | Path, csv: str | None = None) -> list[Path]:
    """stem.md, stem.csv (`csv`, or the table's own) and stem.tex (every setting in one file)."""
    return [write_text(f"{stem}.md", to_markdown(table)), write_text(f"{stem}.csv", csv or to_csv(table)),
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
    """summary.{md,csv,tex}, wins.{md,csv,tex}, steps.{md,csv,tex} and <task>.{md,csv,tex} under outdir; <pair>.summary.html and <pair>.<task>.html
    (one page per setting) under html_dir."""
    summary = summary_table(runs)
    summary.notes += ignored_note(runs)
    written = write_tables(summary, inside(outdir, "summary"), summary_csv(runs))
    tables = {"summary": summary}
    for task in unique(runs.plan.task):
        tables[task] = per_language_table(runs, task)
        tables[task].notes += ignored_note(runs)
        written += write_tables(tables[task], inside(outdir, task))
    written += write_tables(wins_table(runs), inside(outdir, "wins"))
    written += write_tables(steps_table(runs), inside(outdir, "steps"))
    if html_dir is not None:
        for name, table in tables.items():
            for pair in _settings_in(table):
                written.append(write_text(inside(html_dir, f"{pair}.{name}.html"), to_html(table, pair)))
    return written


