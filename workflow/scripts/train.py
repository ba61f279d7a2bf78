"""train_teacher / train_student: one module + head on one task and language."""

from pathlib import Path

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.train.gpu_slots import claim_gpu

claim_gpu()  # a device of its own where the machine has several (profiles/local)

from transmod.train.tasks import Task
from transmod.train.training import train_run
from transmod.workflow.assets import require_fetched

w, p = snakemake.wildcards, snakemake.params
require_fetched(model=p.model, dataset=p.dataset)  # assets.fetch: the copies must be here
train_run(
    p.model, p.dataset, Task.from_dict(p.task), w.lang, w.peft, p.hyper, p.module, w.seed,  # from_dict checks the seed
    Path(snakemake.output.module).parent,
    # read here, not passed as a param: the checkpoint interval must not invalidate finished runs
    checkpoint_every=snakemake.config["checkpoints"]["every"],
    init_module=snakemake.input.get("init") or None,
    threads=snakemake.threads,
    state_dir=p.state,
    cache_dir=p.token_cache,
    score_start=snakemake.rule == "train_teacher",  # a decoder teacher alone: the tables' KEPT reads it
)
