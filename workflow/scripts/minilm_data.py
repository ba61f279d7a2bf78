"""minilm_data: next-sentence pairs (pi schema, English) from Python's own documentation."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.atomic import atomic_path
from transmod.demo.minilm import write_next_sentence_data

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    write_next_sentence_data(tmp, max_rows=snakemake.params.sizes)
print(f"wrote {snakemake.output[0]}")
