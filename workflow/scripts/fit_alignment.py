"""fit_alignment: each extra alignment method's per-layer maps from the two models' sampled states."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.align.alignment import fit_alignment
from transmod.align.samplefile import SampleFile
from transmod.atomic import atomic_path

teacher, student = SampleFile.open(snakemake.input.teacher), SampleFile.open(snakemake.input.student)
for method, out in zip(snakemake.params.methods, snakemake.output):
    result = fit_alignment(teacher, student, snakemake.wildcards.mapping, method, holdout=snakemake.params.holdout,
                           workers=snakemake.threads)
    with atomic_path(out) as tmp:
        result.save(tmp)
    print(f"fitted {method} on {result.num_tokens} tokens")
