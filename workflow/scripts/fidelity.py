"""fidelity: how closely the transferred module reproduces the teacher module's effect, on held-out tokens."""

import json
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.atomic import atomic_path
from transmod.fidelity import sample_shape, transfer_fidelity
from transmod.samplefile import SampleFile
from transmod.transfer import read_module

inp, p = snakemake.input, snakemake.params
teacher, student = SampleFile.open(inp.teacher), SampleFile.open(inp.student)
result = transfer_fidelity(read_module(inp.module, sample_shape(teacher)), read_module(inp.transferred, sample_shape(student)),
                           teacher, student, p.mapping, holdout=p.holdout)
result["run"] = dict(snakemake.wildcards.items())
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(json.dumps(result, indent=1))
print(json.dumps({k: v for k, v in result.items() if k != "layers"}))
