# Input functions and params of the result rules (results.smk): the run plan, the outputs and their
# report entries. Kept beside common.smk so that rule files hold rules only (snakemake --lint).

import logging
from types import SimpleNamespace

from snakemake.logging import logger as snakemake_logger

from transmod.results.fidelity_table import NAME as FIDELITY_TABLE
from transmod.results.plots import PLOT_FORMATS, PLOT_KINDS
from transmod.results.runs import Plan
from transmod.results.tables import HTML_DIR, PLAN_FILE, PLOTS_DIR, TABLES_DIR

RESULTS = "results"
TABLES, HTML, PLOTS = (f"{RESULTS}/{d}" for d in (TABLES_DIR, HTML_DIR, PLOTS_DIR))
PLAN = f"{RESULTS}/{PLAN_FILE}"


def result_tasks():
    """Tasks that some pair runs, in the config's order."""
    return [task for task in config["tasks"] if any(task in spec["tasks"] for spec in config["pairs"].values())]


def results_plan():
    """Every metrics file the config requests (all_metrics), with the run info evaluate records in it, every
    alignment file the plots read, every fidelity file and the tasks' declarations (a digest as its repr: logs and
    reports stay short)."""
    runs = {metrics_file(w, init, seed): run_info(SimpleNamespace(**w, run=run_name(init), seed=seed))
            for w, init, seed in requested_runs()}
    align = [
        dict(**w, mapping=m, assignment=f"{ALIGN.format(**w)}/{m}.lsa.alignment.safetensors",
             correlation=f"{ALIGN.format(**w)}/{m}.correlation.safetensors")
        for w in grid()
        for m in MAPPINGS
    ]
    return Plan(runs=runs, align=align, fidelity=fidelity_files(), tasks={task: DECLARED_TASKS[task].to_dict() for task in result_tasks()})


RESULTS_PLAN = results_plan()


def heatmap_inputs():
    """The correlation file each heatmap shows: the SKIP one of the first language of (pair, task, peft)."""
    first = {}
    for a in RESULTS_PLAN["align"]:
        if a["mapping"] == "skip":
            first.setdefault((a["pair"], a["task"], a["peft"]), a["correlation"])
    return list(first.values())


def in_report(path, caption, category, subcategory, **labels):
    """An output shown in `snakemake --report`, with its caption from workflow/report/, if it exists now: a
    report made before `transmod tables` (or aggregate_tables) shows the workflow without them, and one made
    after shows the tables and the figures that have data. Make the report after the run, not with
    --report-after-run (whose flags were fixed before the run wrote the tables)."""
    if not Path(path).is_file():
        return path
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category=category,
        subcategory=subcategory,
        labels=labels,
    )


class OneMissingMetadataLine(logging.Filter):
    """`snakemake --report` warns once for every output without Snakemake's metadata: every job not run yet,
    and every table and figure that `transmod tables` wrote (thousands of lines for the study's grid). It
    says so once; the report still shows every flagged file that exists."""

    said = False

    def filter(self, record):
        if not str(record.msg).startswith("Missing metadata for file"):
            return True
        if self.said:
            return False
        self.said = True
        record.msg, record.args = (
            "Some outputs have no Snakemake metadata (jobs not run yet, or tables and figures that "
            "`transmod tables` wrote): the report shows them without job details"
        ), ()
        return True


snakemake_logger.addFilter(OneMissingMetadataLine())


def results_outputs():
    """Tables (Markdown, CSV, LaTeX), one HTML page per setting and table, the fidelity table, and the figures; the HTML
    pages and PNGs go into `snakemake --report`, grouped by setting (category) and task (subcategory)."""
    tasks = result_tasks()
    pages, figures = [], []
    for pair, spec in config["pairs"].items():
        modules = ", ".join(pefts_of(config, pair)[1])
        pages.append(in_report(f"{HTML}/{pair}.summary.html", "summary", pair, "Summary", content="summary table", module=modules))
        for task in [t for t in tasks if t in spec["tasks"]]:
            page = f"{HTML}/{pair}.{task}.html"
            pages.append(in_report(page, "per_language", pair, task.upper(), content="per-language table", module=modules))
            for peft in pefts_of(config, pair)[1]:
                for kind in PLOT_KINDS:
                    stem = f"{PLOTS}/{pair}/{task}/{kind}.{peft}"
                    figures.append(in_report(f"{stem}.png", kind, pair, task.upper(), content=f"{kind} plot", module=peft))
                    figures += [f"{stem}{ext}" for ext in PLOT_FORMATS if ext != ".png"]
    figures.append(in_report(f"{PLOTS}/{FIDELITY_TABLE}.png", "fidelity", "Alignment methods", "Transfer fidelity",
                             figure="transfer fidelity"))
    return dict(
        summary=multiext(f"{TABLES}/summary", ".md", ".csv", ".tex"),
        fidelity=multiext(f"{TABLES}/{FIDELITY_TABLE}", ".md", ".csv"),
        per_language=expand(f"{TABLES}/{{task}}{{ext}}", task=tasks, ext=(".md", ".csv", ".tex")),
        pages=pages,
        figures=figures,
    )
