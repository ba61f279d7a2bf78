"""demo_decoders: the demo's decoder pair (a tiny Llama and a student of its layers 0 and 2)."""

from pathlib import Path

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

import torch
from transmod_demo.decoders import build_decoder_pair
from transmod_demo.language import folder_texts

torch.set_num_threads(snakemake.threads)
folders = {task: path for task, path in snakemake.input.items() if task != "tokenizer"}
built = build_decoder_pair(snakemake.input.tokenizer, Path(snakemake.output[0]).parent,
                           texts=folder_texts(folders, snakemake.params.langs),
                           pretrain_steps=snakemake.params.pretrain_steps)
print("built", ", ".join(sorted(map(str, built.values()))))
