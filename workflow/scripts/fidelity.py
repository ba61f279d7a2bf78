"""fidelity: how closely each transferred module reproduces the teacher module's effect, on held-out
tokens, for every mapping and alignment method of one grid cell (transferred in memory: no training)."""

import json

from threadpoolctl import threadpool_limits

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.align.alignment import Alignment
from transmod.align.fidelity import transfer_fidelity
from transmod.align.samplefile import SampleFile
from transmod.align.transfer import transfer
from transmod.atomic import atomic_path
from transmod.modules.architectures import load_model_shape
from transmod.modules.io import read_module
from transmod.workflow.assets import require_fetched

inp, p = snakemake.input, snakemake.params
require_fetched(teacher=p.teacher, student=p.student)
teacher_shape, student_shape = load_model_shape(p.teacher), load_model_shape(p.student)
samples = SampleFile.open(inp.teacher), SampleFile.open(inp.student)
module = read_module(inp.module, teacher_shape)
results = {}
threadpool_limits(snakemake.threads)  # BLAS uses the cores the rule declares, no more
for init in p.inits:
    mapping = init.partition("-")[0]
    alignment = Alignment.load(inp[f"{init}.alignment"]) if f"{init}.alignment" in inp.keys() else None
    moved = transfer(module, teacher_shape, student_shape, mapping, alignment, p.lora_b)
    results[init] = transfer_fidelity(module, moved, *samples, mapping, holdout=p.holdout)
    print(init, {k: v for k, v in results[init].items() if k != "layers"})
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps({"run": dict(snakemake.wildcards.items()), "inits": results}, indent=1))
