"""prune_align: a student run's transferred start: the teacher's module mapped to the student's layers and (if
aligned) its dimensions, with the init's method (`auto`: chosen by fidelity), healed where the init says so."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.align.inits import Init
from transmod.align.starts import transferred_start
from transmod.workflow.assets import require_fetched

p, inp = snakemake.params, snakemake.input
require_fetched(teacher=p.teacher, student=p.student)
init = Init.parse(snakemake.wildcards.init, "wildcard init")
method = transferred_start(
    init, inp.module, p.teacher, p.student, {m: inp.get(f"alignment_{m}") for m in p.methods}, snakemake.output[0],
    lora_b=p.lora_b, fidelity=inp.get("fidelity"), holdout=p.holdout, healing=p.healing,
    samples=(inp.teacher_samples, inp.student_samples) if init.heal else None,
)
print(f"transferred {inp.module} -> {snakemake.output[0]} (method {method})")
