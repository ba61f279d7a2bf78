"""sample_embeddings: the hidden states each module reads, for one base model, on the task's text."""

import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.atomic import atomic_path
from transmod.data import load_split
from transmod.sampling import sample_model
from transmod.texts import TEXT_COLUMNS, examples_from_columns

w, p = snakemake.wildcards, snakemake.params
rows = load_split(p.dataset, w.task, w.lang, p.split)
examples = examples_from_columns(rows.to_dict(), TEXT_COLUMNS[w.task])
with atomic_path(snakemake.output[0]) as tmp:
    n = sample_model(p.model, examples, tmp, peft=w.peft, max_tokens=p.max_tokens, batch_size=p.batch_size,
                     lora_outputs=p.lora_outputs)
print(f"sampled {n} tokens of {p.model} into {snakemake.output[0]}")
