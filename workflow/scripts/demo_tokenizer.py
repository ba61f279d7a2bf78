"""demo_tokenizer: one WordPiece tokenizer trained offline on the demo's training text."""

import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from transmod.atomic import atomic_path
from transmod.data import load_split
from transmod.demo import train_tokenizer
from transmod.texts import TEXT_COLUMNS, examples_from_columns

texts = []
for task, folder in snakemake.input.items():
    for lang in snakemake.params.langs[task]:
        rows = load_split(folder, task, lang, "train").to_dict()
        texts += [text for example in examples_from_columns(rows, TEXT_COLUMNS[task]) for text in example]
with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    train_tokenizer(texts, tmp)
