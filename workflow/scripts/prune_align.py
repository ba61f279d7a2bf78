"""prune_align: the teacher's module, mapped to the student's layers and (if aligned) its dimensions."""

import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.architectures import load_model_shape
from transmod.assignment import Assignment
from transmod.transfer import transfer_module

p = snakemake.params
assignment = Assignment.load(snakemake.input.assignment) if snakemake.input.get("assignment") else None
transfer_module(
    snakemake.input.module, load_model_shape(p.teacher), load_model_shape(p.student), snakemake.wildcards.mapping,
    snakemake.output[0], assignment, p.lora_b,
)
print(f"transferred {snakemake.input.module} -> {snakemake.output[0]}")
