"""aggregate_tables: summary and per-language tables (Markdown, CSV, LaTeX) from the metrics files."""

import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.tables import write_all

for path in write_all(snakemake.input, snakemake.params.outdir, snakemake.params.languages):
    print(path)
