"""smollm2_student: the teacher's every second layer, healed by a short continued pre-training (healing.json in
the folder records the held-out loss of the teacher, the cut student and the healed one)."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.smollm2 import STUDENT_LAYERS, build_student

from transmod.atomic import atomic_path
from transmod.train.runtime import configure_threads

configure_threads(snakemake.threads)
with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    record = build_student(snakemake.input[0], tmp, **snakemake.params.heal)
print(f"student of layers {list(STUDENT_LAYERS)}: held-out loss per token {record['cut_loss']:.2f} cut, "
      f"{record['healed_loss']:.2f} healed ({record['steps']} steps); the teacher's {record['teacher_loss']:.2f}")
