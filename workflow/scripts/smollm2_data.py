"""smollm2_data: one of the decoder profile's data sets (multiple choice or completion) from the standard
library's docstrings."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.smollm2 import DATASETS

from transmod.atomic import atomic_path

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    DATASETS[snakemake.wildcards.dataset](tmp, max_rows=snakemake.params.sizes)
print(f"wrote {snakemake.output[0]}")
