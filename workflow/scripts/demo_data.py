"""demo_data: small, learnable data for one task in its hub layout, generated offline."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.atomic import atomic_path
from transmod.demo.language import write_demo_dataset

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    write_demo_dataset(snakemake.wildcards.task, tmp, langs=snakemake.params.langs, sizes=snakemake.params.sizes)
print(f"wrote {snakemake.output[0]}")
