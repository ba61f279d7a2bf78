"""demo_data: small, learnable data for one task in its hub layout, generated offline."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.language import write_demo_dataset

from transmod.atomic import atomic_path
from transmod.train.tasks import Task

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    write_demo_dataset(Task.from_dict(snakemake.params.task), tmp, langs=snakemake.params.langs, sizes=snakemake.params.sizes)
print(f"wrote {snakemake.output[0]}")
