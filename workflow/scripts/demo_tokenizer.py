"""demo_tokenizer: one WordPiece tokenizer trained offline on the demo's training text."""

from transmod.workflow.joblog import log_to

log_to(snakemake.log[0])

from transmod.atomic import atomic_path
from transmod.demo.language import folder_texts
from transmod.demo.tokenizer import train_tokenizer

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    train_tokenizer(folder_texts(dict(snakemake.input.items()), snakemake.params.langs), tmp)
print(f"wrote {snakemake.output[0]}")
