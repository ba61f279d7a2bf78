"""fetch_assets: one hub model or dataset copied to resources/assets (the only job that goes online)."""

import os

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # set for every other job by the workflow
    os.environ.pop(var, None)

from transmod.atomic import atomic_path
from transmod.train.tasks import Task
from transmod.workflow.assets import fetch_dataset, fetch_model

w, p = snakemake.wildcards, snakemake.params
with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    if w.kind == "models":
        fetch_model(w.repo, tmp)
    else:
        fetch_dataset(w.repo, Task.from_dict(p.task), p.languages, tmp)
print(f"fetched {w.kind[:-1]} {w.repo} into {snakemake.output[0]}")
