"""evaluate: the test metric of one run (entity-level F1 for NER, conlleval as seqeval; accuracy otherwise)."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.train.evaluation import write_metrics

metrics = write_metrics(snakemake.input[0], snakemake.output[0], snakemake.params.info)
print(metrics)
