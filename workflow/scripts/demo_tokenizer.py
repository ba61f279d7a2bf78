"""demo_tokenizer: one WordPiece tokenizer trained offline on the demo's training text."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod_demo.language import folder_texts
from transmod_demo.tokenizer import train_tokenizer

from transmod.atomic import atomic_path

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    train_tokenizer(folder_texts(dict(snakemake.input.items()), snakemake.params.langs), tmp)
print(f"wrote {snakemake.output[0]}")
