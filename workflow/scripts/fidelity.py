"""fidelity: how closely each transferred module reproduces the teacher module's effect, on held-out
tokens, for every mapping and alignment method of one grid cell (transferred in memory: no training)."""

import json

from threadpoolctl import threadpool_limits

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.align.fidelity import fidelity_of_inits
from transmod.atomic import atomic_path
from transmod.workflow.assets import require_fetched

inp, p = snakemake.input, snakemake.params
require_fetched(teacher=p.teacher, student=p.student)
threadpool_limits(snakemake.threads)  # BLAS uses the cores the rule declares, no more
results = fidelity_of_inits(
    inp.module, p.teacher, p.student, (inp.teacher, inp.student),
    {init: inp.get(f"{init}.alignment") for init in p.inits},  # none for an unaligned pair
    holdout=p.holdout, lora_b=p.lora_b,
)
for init, result in results.items():
    print(init, {k: v for k, v in result.items() if k != "layers"})
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps({"run": dict(snakemake.wildcards.items()), "inits": results}, indent=1))
