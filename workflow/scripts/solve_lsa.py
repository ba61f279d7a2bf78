"""solve_lsa: the study's alignment, a teacher dimension for each student dimension per layer, and the mean matched r."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.align.alignment import assign_correlation
from transmod.align.correlation import Correlation
from transmod.atomic import atomic_path

result = assign_correlation(Correlation.load(snakemake.input[0]))
with atomic_path(snakemake.output[0]) as tmp:
    result.save(tmp)
for la in result.layers:
    print(f"student layer {la.student_layer} <- teacher {la.teacher_layers} [{la.space}]: mean r {la.mean_r:.3f}")
