"""evaluate: the test metrics of one run, by its task's declaration (kind and metric)."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.train.evaluation import write_metrics
from transmod.train.tasks import Task

metrics = write_metrics(snakemake.input[0], snakemake.output[0], snakemake.params.info,
                        Task.from_dict(snakemake.params.task))
print(metrics)
