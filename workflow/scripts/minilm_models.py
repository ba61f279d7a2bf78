"""minilm_models: the real teacher (all-MiniLM-L6-v2) and a student made of its layers 0, 2 and 4."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.minilm import STUDENT_LAYERS, build_pair, minilm_folder

from transmod.atomic import atomic_path

out = snakemake.output
with atomic_path(out.teacher, is_dir=True) as teacher, atomic_path(out.student, is_dir=True) as student:
    build_pair(minilm_folder(), teacher, student)
print(f"teacher {out.teacher} (6 layers), student {out.student} (its layers {list(STUDENT_LAYERS)})")
