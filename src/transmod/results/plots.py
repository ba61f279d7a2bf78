"""Figures of the results (matplotlib, PNG and PDF), from the same runs as the tables.

- `score_bars`: per-language test scores of Teacher / Student / TM-Students for one setting, task
  and module type (mean over seeds, SD as error bars, significance markers on AVG);
- `alignment_quality`: per student layer, the mean matched correlation that `solve_lsa` keeps
  (docs/method.md, section 5: it falls in deeper layers), SKIP and AVG, mean over languages with a band;
- `correlation_heatmap`: Pearson r of one mapped layer pair, as computed and with the teacher
  dimensions reordered by the assignment (the matched r then lie on the diagonal).

Figures are built on `matplotlib.figure.Figure` (no pyplot state, no display needed) and written
atomically; PDFs carry no creation date, so an unchanged input gives an unchanged file. A figure without
data (no finished run, no alignment file yet) is not written at all. Names from the config show as
written: `$` starts no mathtext.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from transmod.results.stats import stars

COLORS = {"Teacher": "#4d4d4d", "Student": "#b3b3b3", "TM-Student SKIP": "#1f77b4", "TM-Student AVG": "#ff7f0e"}
MAPPING_COLORS = {"skip": "#1f77b4", "avg": "#ff7f0e"}
PLOT_KINDS = ("scores", "alignment", "correlation")
PLOT_FORMATS = (".png", ".pdf")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save(fig, stem: str | Path) -> list[Path]:
    """stem.png and stem.pdf, each written whole or not at all."""
    from transmod.atomic import atomic_path

    written = []
    for ext, fmt, meta in ((".png", "png", {"Software": None}), (".pdf", "pdf", {"CreationDate": None})):
        target = Path(f"{stem}{ext}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, metadata=meta)
        written.append(target)
    return written


def score_bars(
    mean: pd.DataFrame,
    sd: pd.DataFrame | None,
    stem: str | Path,
    title: str,
    ylabel: str,
    p: Mapping[str, float] | None = None,
    partial: pd.DataFrame | None = None,
) -> list[Path]:
    """score_figure, written to stem.png and stem.pdf."""
    return save(score_figure(mean, sd, title, ylabel, p, partial), stem)


def score_figure(
    mean: pd.DataFrame,
    sd: pd.DataFrame | None,
    title: str,
    ylabel: str,
    p: Mapping[str, float] | None = None,
    partial: pd.DataFrame | None = None,
):
    """Grouped bars: x = the columns of `mean` (languages, then AVG), one bar per row (model).

    A NaN mean (no metrics file) is drawn as no bar with "n/a" on the axis, never as a zero; SD
    error bars where finite; `p` (per row) puts * / ** over that row's AVG bar; a True in `partial`
    (a mean over fewer seeds than configured) hatches the bar.
    """
    models = list(mean.index)
    columns = list(mean.columns)
    fig = _figure(max(6.0, 0.32 * len(models) * len(columns) + 2.2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    x = np.arange(len(columns), dtype=float)
    shown_values = mean.to_numpy(float)[np.isfinite(mean.to_numpy(float))]
    top = shown_values.max() if shown_values.size else 1.0
    bottom = min(0.0, shown_values.min()) if shown_values.size else 0.0  # a Matthews correlation may be negative
    for i, model in enumerate(models):
        values = mean.loc[model].to_numpy(float)
        errors = sd.loc[model].reindex(columns).to_numpy(float) if sd is not None and model in sd.index else None
        pos = x - 0.4 + width * (i + 0.5)
        shown = np.isfinite(values)
        hatched = (partial.loc[model].reindex(columns).fillna(False).to_numpy(bool)
                   if partial is not None and model in partial.index else np.zeros(len(columns), bool))
        bars = ax.bar(pos[shown], values[shown], width, label=model, color=COLORS.get(model, f"C{i}"),
                      edgecolor="white", linewidth=0.5)
        for bar, hatch in zip(bars, hatched[shown]):
            if hatch:
                bar.set_hatch("///")
        if errors is not None:
            has = shown & np.isfinite(errors)
            ax.errorbar(pos[has], values[has], yerr=errors[has], fmt="none", ecolor="black", elinewidth=0.8,
                        capsize=2)
        for xpos in pos[~shown]:
            ax.text(xpos, 0.01 * top, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="#a33")
        mark = stars(p.get(model, math.nan)) if p is not None else ""
        if mark and "AVG" in columns and np.isfinite(values[columns.index("AVG")]):
            j = columns.index("AVG")
            height = values[j] + (errors[j] if errors is not None and np.isfinite(errors[j]) else 0.0)
            ax.text(pos[j], height + 0.01 * top, mark, ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, columns)
    if "AVG" in columns:
        ax.axvline(columns.index("AVG") - 0.5, color="#999", linewidth=0.6, linestyle=":")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom * 1.12, top * 1.12 if top > 0 else 1)
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, ncols=min(4, len(models)), loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    notes = (["hatched: fewer seeds than configured"] if partial is not None and partial.to_numpy(bool).any() else [])
    notes += ["n/a: no metrics file"] if not np.isfinite(mean.to_numpy(float)).all() else []
    if notes:
        ax.text(1.0, -0.13, "; ".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7, color="#a33")
    return fig


def layer_quality(assignment, space: str = "h") -> tuple[list[int], list[float]]:
    """(student layers, mean matched r) of one assignment, for one space (h: the module's input)."""
    pairs = sorted((la.student_layer, la.mean_r) for la in assignment.layers if la.space == space)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def alignment_quality(
    curves: Mapping[str, Sequence[tuple[Sequence[int], Sequence[float]]]],
    stem: str | Path,
    title: str,
) -> list[Path]:
    """alignment_figure, written to stem.png and stem.pdf."""
    return save(alignment_figure(curves, title), stem)


def alignment_figure(curves: Mapping[str, Sequence[tuple[Sequence[int], Sequence[float]]]], title: str):
    """Per mapping (skip, avg): the mean over its curves (one per language) and a min-max band."""
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot()
    lowest = 0.0
    for mapping, lines in curves.items():
        if not lines:
            continue
        layers = sorted({layer for ls, _ in lines for layer in ls})
        grid = np.full((len(lines), len(layers)), np.nan)
        for i, (ls, rs) in enumerate(lines):
            for layer, r in zip(ls, rs):
                grid[i, layers.index(layer)] = r
        mid = np.nanmean(grid, axis=0)
        color = MAPPING_COLORS.get(mapping)
        label = f"{mapping.upper()} (mean of {len(lines)} language{'s' if len(lines) > 1 else ''})"
        ax.plot(layers, mid, marker="o", color=color, label=label)
        if len(lines) > 1:
            ax.fill_between(layers, np.nanmin(grid, axis=0), np.nanmax(grid, axis=0), color=color, alpha=0.2,
                            linewidth=0)
        lowest = min(lowest, float(np.nanmin(grid)))
    ax.set_xlabel("student layer")
    ax.set_ylabel("mean matched Pearson r")
    ax.set_ylim(min(0.0, lowest - 0.05), 1.02)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(linewidth=0.4, alpha=0.5)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig


def correlation_heatmap(corr, stem: str | Path, title: str, student_layer: int | None = None,
                        space: str = "h") -> list[Path]:
    """heatmap_figure, written to stem.png and stem.pdf."""
    return save(heatmap_figure(corr, title, student_layer, space), stem)


def heatmap_figure(corr, title: str, student_layer: int | None = None, space: str = "h"):
    """Pearson r of one layer pair (student dims x teacher dims): as computed, and with the teacher
    dimensions reordered by the assignment (matched dimension of student dim i in column i)."""
    from transmod.align.alignment import assign

    layers = [lc for lc in corr.layers if lc.space == space]
    if not layers:
        raise ValueError(f"no layer of space {space!r} in the correlation")
    chosen = layers[-1] if student_layer is None else next(lc for lc in layers if lc.student_layer == student_layer)
    r = np.asarray(chosen.r, dtype=np.float64)
    sigma, mean_r = assign(r)
    rest = np.setdiff1d(np.arange(r.shape[1]), sigma)
    ordered = r[:, np.concatenate([sigma, rest])]
    fig = _figure(10.0, 4.4)
    axes = fig.subplots(1, 2)
    teacher = ", ".join(map(str, chosen.teacher_layers))
    panels = ((axes[0], r, "as computed"), (axes[1], ordered, f"teacher dims ordered by the assignment (mean matched r = {mean_r:.2f})"))
    image = None
    for ax, matrix, label in panels:
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(f"teacher dimension (layer {teacher})")
        ax.set_ylabel(f"student dimension (layer {chosen.student_layer})")
    fig.colorbar(image, ax=list(axes), shrink=0.85, label="Pearson r")
    fig.suptitle(f"{title}: student layer {chosen.student_layer} vs teacher layer(s) {teacher}", fontsize=10)
    return fig


def _rows(frame, pair: str, peft: str):
    """The rows of one setting and module of a (pair, peft, row)-indexed frame, indexed by row."""
    keep = (frame.index.get_level_values(0) == pair) & (frame.index.get_level_values(1) == peft)
    out = frame[keep]
    out.index = out.index.get_level_values(2)
    return out


def figure_paths(outdir: str | Path, pair: str, task: str, peft: str) -> dict[str, list[Path]]:
    """Where write_all puts the figures of one setting, task and module: {kind: [png, pdf]}."""
    from transmod.results.runs import inside

    return {kind: [inside(outdir, pair, task, f"{kind}.{peft}{ext}") for ext in PLOT_FORMATS] for kind in PLOT_KINDS}


def write_all(runs, align: Iterable[Mapping[str, str]], outdir: str | Path) -> list[Path]:
    """Every figure with data of every (setting, task, module) in the runs' plan, under outdir/<pair>/<task>/.

    `align` lists the alignment files of the plan, each a mapping with keys pair, task, lang, peft,
    mapping, assignment and correlation (paths; a missing file is left out of the figure).
    """
    import matplotlib

    from transmod.results.cells import task_stats, unique

    align = list(align)
    plan = runs.plan
    written: list[Path] = []
    with matplotlib.rc_context({"text.parse_math": False}):  # names from the config are plain text
        for task in unique(plan.task):
            st = task_stats(runs, task)
            for pair in unique(plan[plan.task == task].pair):
                for peft in unique(plan[(plan.task == task) & (plan.pair == pair)].peft):
                    mine = [a for a in align if (a["pair"], a["task"], a["peft"]) == (pair, task, peft)]
                    written += _setting_figures(runs, st, mine, figure_paths(outdir, pair, task, peft), (pair, task, peft))
    return written


def _setting_figures(runs, st, align: list[Mapping[str, str]], paths: Mapping[str, list[Path]],
                     key: tuple[str, str, str]) -> list[Path]:
    """The figures of one setting, task and module that have data: scores where a run finished, alignment
    quality where an assignment file exists, the heatmap where a SKIP correlation file does."""
    from transmod.align.alignment import Alignment
    from transmod.align.correlation import Correlation
    from transmod.results.cells import metric_label

    pair, task, peft = key
    stems = {kind: files[0].with_suffix("") for kind, files in paths.items()}
    name = f"{pair} · {runs.task(task).short} · {peft}"
    mean, sd, p, partial = (_rows(x, pair, peft) for x in (st.mean, st.sd, st.p, st.partial))
    written: list[Path] = []
    if np.isfinite(mean.to_numpy(float)).any():
        written += score_bars(mean, sd, stems["scores"], f"{name}: per language (mean ± SD over seeds)",
                              metric_label(runs.task(task), st.metric).split(": ", 1)[1], p.to_dict(), partial)
    curves: dict[str, list] = {}
    for a in align:
        if Path(a["assignment"]).is_file():
            curves.setdefault(a["mapping"], []).append(layer_quality(Alignment.load(a["assignment"])))
    if curves:
        written += alignment_quality(curves, stems["alignment"], f"{name}: alignment quality per layer")
    source = next((a for a in align if a["mapping"] == "skip" and Path(a["correlation"]).is_file()), None)
    if source is not None:
        corr = Correlation.load(source["correlation"])
        written += correlation_heatmap(corr, stems["correlation"], f"{name} · {source['lang']} · SKIP")
    return written
