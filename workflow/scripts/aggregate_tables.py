"""aggregate_tables: result tables (Markdown, CSV, LaTeX, HTML) and figures (PNG, PDF), once every run has
finished; `transmod tables RESULTS_DIR` runs the same code on whatever runs have finished so far."""

from pathlib import Path

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.results.tables import write_results

write_results(Path(snakemake.input.plan).parent, snakemake.params.plan)  # the config's plan, as `plan` wrote it
