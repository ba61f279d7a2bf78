"""prune_align: the teacher's module, mapped to the student's layers and (if aligned) its dimensions."""

from transmod.joblog import log_to

log_to(snakemake.log[0])

from transmod.alignment import Alignment
from transmod.architectures import load_model_shape
from transmod.assets import require_fetched
from transmod.assignment import Assignment
from transmod.transfer import transfer_module

p, inp = snakemake.params, snakemake.input
require_fetched(teacher=p.teacher, student=p.student)
transfer_module(
    inp.module, load_model_shape(p.teacher), load_model_shape(p.student), p.mapping, snakemake.output[0],
    assignment=Assignment.load(inp.assignment) if "assignment" in inp.keys() else None,
    alignment=Alignment.load(inp.alignment) if "alignment" in inp.keys() else None,
    lora_b=p.lora_b, overwrite=True,  # Snakemake owns the output path
)
print(f"transferred {inp.module} -> {snakemake.output[0]}")
