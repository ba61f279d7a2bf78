"""The training-free comparison of alignment methods: transfer fidelity per setting, module and method.

One row per (setting, module type, mapping, method); the relative error and cosine of the transferred
module's effect against the teacher module's (see `transmod.fidelity`), averaged over tasks,
languages and seeds. Markdown, CSV and a bar plot for the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from transmod.atomic import atomic_path
from transmod.errors import TransmodError

CAPTION = (
    "Transfer fidelity on held-out sampled tokens, before any training: relative error "
    "||effect_student - M effect_teacher|| / ||M effect_teacher|| and cosine of the transferred module's effect "
    "against the teacher module's, mapped into the student's space by a ridge map fitted on the other tokens "
    "(M; the same for every method, and also `linear`'s write map, which favours `linear` on that side). Mean over tasks, languages and seeds; lower error and higher cosine are better. "
    "`lsa` is the study's assignment; unaligned (same-width) pairs are measured with the identity."
)


def collect_fidelity(files: Iterable[str | Path]) -> pd.DataFrame:
    rows = []
    for path in files:
        try:
            data = json.loads(Path(path).read_text())
            run = data["run"]
            for init, result in data["inits"].items():
                rows.append({"setting": run["pair"], "module": run["peft"], "task": run["task"], "lang": run["lang"],
                             "mapping": result["mapping"], "method": result["method"] or "identity",
                             "rel_error": result["overall"]["rel_error"], "cosine": result["overall"]["cosine"]})
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise TransmodError(f"{path}: not a fidelity file of the workflow ({exc}); re-run the fidelity rule") from None
    if not rows:
        raise TransmodError("no fidelity files to tabulate; run the fidelity rule first")
    return (pd.DataFrame(rows).groupby(["setting", "module", "mapping", "method"], sort=True)[["rel_error", "cosine"]]
            .mean().reset_index())


def write_fidelity(table: pd.DataFrame, stem: str | Path, plot: str | Path) -> None:
    """stem.md, stem.csv and a PNG bar plot of the relative error per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["### Transfer fidelity per alignment method", "",
             "| setting | module | mapping | method | rel. error | cosine |", "|---|---|---|---|---:|---:|"]
    lines += [f"| {r.setting} | {r.module} | {r.mapping} | {r.method} | {r.rel_error:.3f} | {r.cosine:.3f} |"
              for r in table.itertuples()]
    with atomic_path(f"{stem}.md") as tmp:
        tmp.write_text("\n".join(lines + ["", CAPTION, ""]))
    with atomic_path(f"{stem}.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    groups = list(table.groupby(["setting", "module"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.2), squeeze=False)
    for ax, ((setting, module), sub) in zip(axes[0], groups):
        labels = [f"{m}\n{meth}" for m, meth in zip(sub.mapping, sub.method)]
        ax.bar(range(len(sub)), sub.rel_error, color=["#4c72b0" if m == "skip" else "#dd8452" for m in sub.mapping])
        ax.set_xticks(range(len(sub)), labels, rotation=60, fontsize=7)
        ax.set_title(f"{setting}, {module}", fontsize=9)
        ax.set_ylabel("relative error (lower is better)", fontsize=8)
    fig.tight_layout()
    with atomic_path(plot) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
