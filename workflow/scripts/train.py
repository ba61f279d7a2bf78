"""train_teacher / train_student: one module + head on one task and language."""

from pathlib import Path

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.train.gpu_slots import claim_gpu

claim_gpu()  # a device of its own where the machine has several (profiles/local)

from transmod.train.config import TrainConfig
from transmod.train.data import load_split
from transmod.train.tasks import SPLITS, Task
from transmod.train.training import train
from transmod.workflow.assets import require_fetched

w, p = snakemake.wildcards, snakemake.params
require_fetched(model=p.model, dataset=p.dataset)  # assets.fetch: the copies must be here
module = p.module
cfg = TrainConfig.from_dict(
    {
        **p.hyper,
        "seed": w.seed,  # a whole number, which from_dict checks
        # read here, not passed as a param: the checkpoint interval must not invalidate finished runs
        "checkpoint_every": snakemake.config["checkpoints"]["every"],
        **({"adapter_bottleneck": module["bottleneck"]} if w.peft == "adapter" else {}),
        **({"lora_r": module["r"], "lora_alpha": module["alpha"]} if w.peft == "lora" else {}),
    },
    source="config.yaml training",
)
task = Task.from_dict(p.task)
data = {split: load_split(p.dataset, task, w.lang, split) for split in SPLITS}
train(
    p.model, task, w.peft, data["train"], data["validation"], data["test"], cfg,
    out_dir=Path(snakemake.output.module).parent,
    init_module=snakemake.input.get("init") or None,
    threads=snakemake.threads,
    workers=snakemake.threads - 1,  # the job's other cores pad the next batches
    state_dir=p.state,
    cache_dir=p.token_cache,
)
