"""aggregate_tables / tables: result tables (Markdown, CSV, LaTeX, HTML) and figures (PNG, PDF).

aggregate_tables runs once every metrics file exists; `tables` from whatever runs have finished
(a missing run is an empty cell with a footnote). Both refuse metrics files of another config.
"""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.results import plots, tables

plan = snakemake.params.plan
runs = tables.gather(plan["runs"], scan=snakemake.params.runs_dir)
print(f"{len(runs.finished)} runs with a metrics file, {len(runs.missing)} without one (empty cells)")
for path in runs.missing.file:
    print(f"  no metrics file: {path}")
for path in runs.ignored:
    print(f"  not requested by the config (same settings), not read: {path}")
for path in tables.write_all(runs, snakemake.params.outdir, snakemake.params.html_dir):
    print(path)
for path in plots.write_all(runs, plan["align"], snakemake.params.plots_dir):
    print(path)
