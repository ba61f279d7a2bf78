"""correlate: Pearson r of every student dim against every teacher dim, per mapped layer pair."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.align.correlation import correlate_samples
from transmod.align.samplefile import SampleFile
from transmod.atomic import atomic_path

corr = correlate_samples(
    SampleFile.open(snakemake.input.teacher), SampleFile.open(snakemake.input.student), snakemake.wildcards.mapping,
    workers=snakemake.threads, holdout=snakemake.params.holdout,  # fitted on the tokens every method fits on
)
with atomic_path(snakemake.output[0]) as tmp:
    corr.save(tmp)
print(f"correlated {len(corr.layers)} layer pairs over {corr.num_tokens} tokens")
