"""sample_embeddings: the hidden states one module type reads (its hook point), for one base model,
on the task's text."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.train.gpu_slots import claim_gpu

claim_gpu()  # a device of its own where the machine has several (profiles/local)

import torch

from transmod.align.sampling import sample_model
from transmod.align.texts import examples_from_columns
from transmod.atomic import atomic_path
from transmod.train.data import load_split
from transmod.train.tasks import Task
from transmod.workflow.assets import require_fetched

torch.set_num_threads(snakemake.threads)
w, p = snakemake.wildcards, snakemake.params
require_fetched(model=p.model, dataset=p.dataset)  # assets.fetch: the copies must be here
task = Task.from_dict(p.task)
rows = load_split(p.dataset, task, w.lang, p.split)
examples = examples_from_columns(rows.to_dict(), task.text_columns,
                                f"dataset {p.dataset} (task {task.name}, language {w.lang}, split {p.split})")
with atomic_path(snakemake.output[0]) as out:
    n = sample_model(p.model, examples, {w.peft: out}, max_tokens=p.max_tokens, batch_size=p.batch_size,
                     lora_outputs=p.lora_outputs, dtype=p.dtype)
print(f"sampled {n} tokens of {p.model}")
