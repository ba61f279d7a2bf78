"""demo_models / demo_decoders: the demo's encoder pairs (matching: same width; incompatible: different widths),
or its decoder pairs (a tiny Llama, a student of its layers, a narrower one), as params.builder says."""

from pathlib import Path

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

import torch
from transmod_demo.decoders import build_decoder_pair
from transmod_demo.language import folder_texts
from transmod_demo.models import build_demo_models

BUILDERS = {"encoders": build_demo_models, "decoders": build_decoder_pair}

torch.set_num_threads(snakemake.threads)
folders = {task: path for task, path in snakemake.input.items() if task != "tokenizer"}
built = BUILDERS[snakemake.params.builder](snakemake.input.tokenizer, Path(snakemake.output[0]).parent,
                                          texts=folder_texts(folders, snakemake.params.langs),
                                          pretrain_steps=snakemake.params.pretrain_steps)
missing = sorted(set(map(str, snakemake.output)) - {str(p) for p in built.values()})
if missing:
    raise SystemExit(f"{snakemake.rule}: expected folders not built: {missing}")
print("built", ", ".join(sorted(map(str, built.values()))))
