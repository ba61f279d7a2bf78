"""fit_alignment: one alignment method's per-layer maps from the two models' sampled states."""

import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.alignment import fit_alignment
from transmod.atomic import atomic_path
from transmod.samplefile import SampleFile

w = snakemake.wildcards
result = fit_alignment(SampleFile.open(snakemake.input.teacher), SampleFile.open(snakemake.input.student),
                       w.mapping, w.method, holdout=snakemake.params.holdout)
with atomic_path(snakemake.output[0]) as tmp:
    result.save(tmp)
print(f"fitted {w.method} ({w.mapping}) on {result.num_tokens} tokens")
