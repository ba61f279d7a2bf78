"""evaluate: the test metric of one run (seqeval entity F1 for NER, accuracy otherwise)."""

import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.evaluation import write_metrics

metrics = write_metrics(snakemake.input[0], snakemake.output[0], snakemake.params.info)
print(metrics)
