"""plan: the runs the config requests and the alignment files the figures read, for `transmod tables`."""

from pathlib import Path

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.results.tables import write_plan

target = Path(snakemake.output[0])
write_plan(snakemake.params.plan, target.parent, target)
print(f"{len(snakemake.params.plan['runs'])} runs and {len(snakemake.params.plan['align'])} alignment records in {target}")
