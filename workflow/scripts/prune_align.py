"""prune_align: the teacher's module, mapped to the student's layers and (if aligned) its dimensions."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.align.alignment import Alignment
from transmod.align.transfer import transfer_module
from transmod.modules.architectures import load_model_shape
from transmod.workflow.assets import require_fetched

p, inp = snakemake.params, snakemake.input
require_fetched(teacher=p.teacher, student=p.student)
transfer_module(
    inp.module, load_model_shape(p.teacher), load_model_shape(p.student), p.mapping, snakemake.output[0],
    alignment=Alignment.load(inp.alignment) if "alignment" in inp.keys() else None,
    lora_b=p.lora_b, overwrite=True,  # Snakemake owns the output path
)
print(f"transferred {inp.module} -> {snakemake.output[0]}")
