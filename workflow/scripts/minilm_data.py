"""minilm_data: one of the real-weights profile's data sets (next-sentence pairs in the pi schema, or
truecasing) from Python's own documentation."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.minilm import DATASETS

from transmod.atomic import atomic_path

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    DATASETS[snakemake.wildcards.dataset](tmp, max_rows=snakemake.params.sizes)
print(f"wrote {snakemake.output[0]}")
