"""The training-free comparison of alignment methods: transfer fidelity per setting, module and method.

One row per (setting, module type, mapping, method); the relative error and cosine of the transferred
module's effect against the teacher module's, and the map-free linear CKA between the two (see
`transmod.align.fidelity`), averaged over tasks, languages and seeds; where a zero-shot run of that init
exists (`zs-<init>`), its mean test score beside them. Markdown, CSV and a bar plot for the report, written
with the other tables by `transmod tables` and aggregate_tables (`transmod.results.tables`) from the fidelity
files that exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from transmod.align.inits import Init
from transmod.atomic import atomic_path
from transmod.errors import TransmodError
from transmod.results.render import md_literal
from transmod.results.runs import Runs, init_of, read_metrics

CAPTION = (
    "Transfer fidelity on held-out sampled tokens that no fit read (every method, the study's `lsa` included, "
    "is fitted on the same first tokens), before any training. rel. error: "
    "||effect_student - M effect_teacher|| / ||M effect_teacher||, and cosine, of the transferred module's effect "
    "against the teacher module's mapped into the student's space by a ridge map fitted on the other tokens "
    "(M; the same for every method, and also `linear`'s write map, which favours `linear`). "
    "CKA: linear centred kernel alignment between the two effects, each in its own model's space; it needs no "
    "map, so it favours no method (0 to 1, unchanged by rotating or scaling either space). Mean over tasks, "
    "languages and seeds; lower error, higher cosine and CKA are better. zero-shot: mean test score x 100 of the "
    "`zs-` run of that init (module frozen, head trained; a decoder's trains nothing), where the config has one. "
    "`lsa` is the study's assignment; unaligned (same-width) pairs are measured with the identity."
)


NAME = "fidelity"  # tables/fidelity.md, tables/fidelity.csv, plots/fidelity.png
MEASURES = ["rel_error", "cosine", "cka"]
RANGES = {"rel_error": (0.0, math.inf), "cosine": (-1.0, 1.0), "cka": (0.0, 1.0)}
SLACK = 1e-9  # rounding of a cosine or CKA of 1


def _measure(path: str | Path, name: str, value: Any) -> float | None:
    """One measure of a fidelity file: None (undefined, e.g. CKA of a constant effect) or a number in its range."""
    low, high = RANGES[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low - SLACK <= value <= high + SLACK \
            or not math.isfinite(value):
        raise TransmodError(f"{path}: {name} {json.dumps(value)} is not a number from {low:g} to {high:g}; "
                            "re-run the fidelity rule that writes it")
    return float(value)


def collect_fidelity(files: Iterable[str | Path], zero_shot: Iterable[str | Path] = ()) -> pd.DataFrame:
    """`files`: fidelity JSON of the workflow; `zero_shot`: metrics.json of zero-shot runs (`zs-<init>`)."""
    rows = []
    for path in files:
        try:
            data = json.loads(Path(path).read_text())
            run = data["run"]
            for init, result in data["inits"].items():
                rows.append({"setting": run["pair"], "module": run["peft"], "task": run["task"], "lang": run["lang"],
                             "init": init, "mapping": result["mapping"], "method": result["method"] or "identity",
                             **{m: _measure(path, m, result["overall"].get(m)) for m in MEASURES}})
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TransmodError(f"{path}: not a fidelity file of the workflow ({exc}); re-run the fidelity rule") from None
    if not rows:
        raise TransmodError("no fidelity files to tabulate; run the fidelity rule first")
    keys = ["setting", "module", "mapping", "method"]
    table = pd.DataFrame(rows).astype({m: float for m in MEASURES})
    out = table.groupby(keys, sort=True)[MEASURES].mean().reset_index()
    scores = []
    for path in zero_shot:
        run = read_metrics(path)
        scores.append({"setting": run["run"]["pair"], "module": run["run"]["peft"],
                       "init": Init.parse(run["run"]["init"], f"{path}: run.init").base.name,
                       "zero_shot": 100 * run["score"]})
    if scores:
        by_init = pd.DataFrame(scores).groupby(["setting", "module", "init"])["zero_shot"].mean()
        inits = table.drop_duplicates(keys).set_index(keys)["init"]
        out["zero_shot"] = [by_init.get((s, mod, inits[(s, mod, mp, me)])) for s, mod, mp, me in out[keys].itertuples(index=False)]
    else:
        out["zero_shot"] = float("nan")
    return out


def fidelity_of_runs(files: Iterable[str | Path], runs: Runs) -> tuple[pd.DataFrame | None, str]:
    """The fidelity table of the fidelity files that exist and the finished zero-shot runs of transferred modules
    (None before any fidelity file), and a note naming how many of `files` it averages when some are missing."""
    files = [str(f) for f in files]
    present = [f for f in files if Path(f).is_file()]
    if not present:
        return None, ""
    zero_shot = [run["file"] for run in runs.finished.to_dict("records")
                 if (init := init_of(run)) is not None and init.zero_shot and init.transferred]
    note = "" if len(present) == len(files) else \
        f"Mean over the {len(present)} of {len(files)} fidelity files written so far."
    return collect_fidelity(present, zero_shot), note


def write_fidelity(table: pd.DataFrame, tables: str | Path, plots: str | Path, note: str = "") -> list[Path]:
    """fidelity.md and fidelity.csv in `tables`, a PNG bar plot of the relative error and CKA per method in
    `plots` (the staged folders of `transmod.results.tables`, which hold the one writer's lock)."""
    def num(value: float, digits: int) -> str:
        return "" if pd.isna(value) else f"{value:.{digits}f}"

    names = ("setting", "module", "mapping", "method")
    lines = ["### Transfer fidelity per alignment method", "",
             "| setting | module | mapping | method | rel. error | cosine | CKA | zero-shot |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(md_literal(getattr(r, n)) for n in names) + f" | {num(r.rel_error, 3)} | "
              f"{num(r.cosine, 3)} | {num(r.cka, 3)} | {num(r.zero_shot, 1)} |" for r in table.itertuples()]
    written = [Path(tables) / f"{NAME}.md", Path(tables) / f"{NAME}.csv", Path(plots) / f"{NAME}.png"]
    with atomic_path(written[0]) as tmp:
        tmp.write_text("\n".join(lines + ["", CAPTION] + ([note] if note else []) + [""]))
    with atomic_path(written[1]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    _write_plot(table, written[2])
    return written


def _write_plot(table: pd.DataFrame, plot: str | Path) -> None:
    """Relative error and CKA per mapping and method; an undefined measure has no bar (never a zero)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table.groupby(["setting", "module"]))
    fig, axes = plt.subplots(2, len(groups), figsize=(4.5 * len(groups), 6.0), squeeze=False)
    for col, ((setting, module), sub) in enumerate(groups):
        labels = [f"{m}\n{meth}" for m, meth in zip(sub.mapping, sub.method)]
        colors = ["#4c72b0" if m == "skip" else "#dd8452" for m in sub.mapping]
        for ax, measure, label in ((axes[0][col], "rel_error", "relative error (lower is better)"),
                                   (axes[1][col], "cka", "CKA, map-free (higher is better)")):
            shown = sub[measure].notna().to_numpy()
            ax.bar([i for i, s in enumerate(shown) if s], sub[measure][shown],
                   color=[c for c, s in zip(colors, shown) if s])
            ax.set_xticks(range(len(sub)), labels, rotation=60, fontsize=7)
            ax.set_title(f"{setting}, {module}", fontsize=9)
            ax.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    with atomic_path(plot) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
