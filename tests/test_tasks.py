"""Tasks as declarations: the built-in ones keep the study's naming, a declared one reads its own data,
its metrics are computed right, and word-level tasks work with WordPiece, byte-level BPE and SentencePiece."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from helpers import REPO
from transmod_demo.language import (
    DEMO_TASKS,
    TOPICS,
    UPOS,
    generate_task_data,
    write_demo_dataset,
)

from transmod.errors import TransmodError
from transmod.train.batching import IGNORE_INDEX, encode
from transmod.train.data import check_dataset, load_split
from transmod.train.evaluation import class_scores, score_lists
from transmod.train.model import load_tokenizer
from transmod.train.tasks import BUILTIN_TASKS, METRICS, TASK_KINDS, Task, declare_task


def test_builtin_declarations_keep_the_studys_dataset_naming():
    assert BUILTIN_TASKS["ner"].config_and_split("de", "validation") == (None, "val_de")
    assert BUILTIN_TASKS["pi"].config_and_split("ja", "test") == ("ja", "test")
    assert BUILTIN_TASKS["nli"].config_and_split("sw", "train") == ("sw", "train")
    assert (BUILTIN_TASKS["ner"].metric, BUILTIN_TASKS["pi"].metric) == ("f1", "accuracy")
    # a config entry overrides keys of the built-in one, and keeps the rest
    ner = declare_task("ner", {"dataset": "x", "languages": ["en"], "title": "WikiNeural NER"})
    assert ner.caption == "WikiNeural NER" and ner.short == "NER" and ner.splits == BUILTIN_TASKS["ner"].splits


def test_a_declared_task_names_its_config_and_split_per_language():
    task = declare_task("sst", {"kind": "sequence-classification", "text_columns": ["sentence"], "label_column": "y",
                                "metric": "matthews", "config": "default", "splits": {
                                    "train": "train.{lang}", "validation": "dev.{lang}", "test": "test.{lang}"}})
    assert task.config_and_split("fr", "validation") == ("default", "dev.fr")
    assert task.short == "SST" and task.caption == "SST"
    assert Task.from_dict(task.to_dict()) == task
    assert "title" not in task.to_dict(display=False)


def test_schema_enums_are_the_library_tables():
    from transmod.workflow.config import load_schema

    schema = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    task = schema["$defs"]["task"]["properties"]
    assert tuple(task["kind"]["enum"]) == TASK_KINDS
    assert tuple(task["metric"]["enum"]) == tuple(METRICS)


def test_label_names_come_from_the_classlabel_unless_declared(tmp_path):
    import datasets

    folder = write_demo_dataset(DEMO_TASKS["pos"], tmp_path / "pos", ["en"], {"train": 5, "validation": 2, "test": 2})
    spec = {"kind": "token-classification", "text_columns": ["tokens"], "label_column": "upos", "metric": "accuracy"}
    assert check_dataset(str(folder), declare_task("pos", spec), ["en"]) == UPOS
    lower = [t.lower() for t in UPOS]
    assert check_dataset(str(folder), declare_task("pos", {**spec, "labels": lower}), ["en"]) == tuple(lower)
    plain = datasets.Dataset.from_dict({"tokens": [["a", "b"]], "upos": [[0, 1]]})  # ids without names
    with pytest.raises(TransmodError, match="tasks.pos.labels: column 'upos' of the train split is not a ClassLabel"):
        declare_task("pos", spec).label_names(plain.features, "the train split")


def _reference_scores(pred, gold):
    """Independent definitions: per-class F1 by counting; Matthews as the Pearson correlation of one-hot codes."""
    classes = sorted(set(pred) | set(gold))
    f1 = []
    for c in classes:
        tp = sum(p == g == c for p, g in zip(pred, gold))
        fp, fn = sum(p == c != g for p, g in zip(pred, gold)), sum(g == c != p for p, g in zip(pred, gold))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    x = np.array([[p == c for c in classes] for p in pred], float)
    y = np.array([[g == c for c in classes] for g in gold], float)
    x, y = x - x.mean(0), y - y.mean(0)
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return {"accuracy": float(np.mean(np.array(pred) == np.array(gold))), "macro_f1": float(np.mean(f1)),
            "matthews": float((x * y).sum() / den) if den else 0.0}


@pytest.mark.parametrize("seed", range(6))
def test_class_scores_match_independent_definitions(seed):
    rng = random.Random(seed)
    k = rng.choice((2, 3, 7))
    gold = [rng.randrange(k) for _ in range(rng.choice((5, 40, 200)))]
    pred = [g if rng.random() < 0.6 else rng.randrange(k) for g in gold]
    got, want = class_scores(pred, gold), _reference_scores(pred, gold)
    assert got == pytest.approx(want, abs=1e-12)


def test_class_scores_edge_cases():
    assert class_scores([1, 1, 1], [1, 1, 1]) == {"accuracy": 1.0, "macro_f1": 1.0, "matthews": 0.0}  # one class
    assert class_scores([0, 1, 0, 1], [1, 0, 1, 0])["matthews"] == pytest.approx(-1.0)
    assert class_scores(["NOUN", "VERB"], ["NOUN", "VERB"])["macro_f1"] == 1.0  # label names work too


def test_token_tasks_score_each_word_once():
    pos = DEMO_TASKS["pos"]
    pred, gold = [["NOUN", "VERB"], ["DET"]], [["NOUN", "NOUN"], ["DET"]]
    scores = score_lists(pos, pred, gold)
    assert scores["accuracy"] == pytest.approx(2 / 3) and scores["n"] == 2
    flat = lambda s: list(itertools.chain(*s))
    assert scores == {**class_scores(flat(pred), flat(gold)), "n": 2}
    topic = DEMO_TASKS["topic"]
    assert score_lists(topic, [0, 2, 1], [0, 2, 2])["macro_f1"] == pytest.approx(_reference_scores([0, 2, 1], [0, 2, 2])["macro_f1"])


def _words_tokenizer(kind: str, tmp_path):
    """A fast tokenizer of each family, trained here on the demo's POS sentences and saved as a model's would be."""
    from tokenizers import (
        SentencePieceBPETokenizer,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import (
        PreTrainedTokenizerFast,
        RobertaTokenizerFast,
        XLMRobertaTokenizerFast,
    )

    rows = generate_task_data("pos", ["en"], 60, 2, 2)[("en", "train")]
    text = [" ".join(r["tokens"]) for r in rows]
    if kind == "bpe":  # byte-level BPE, as RoBERTa, GPT-2 and DeBERTa (v1) have
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                          add_prefix_space=False)
        fast = RobertaTokenizerFast(tokenizer_object=tok, add_prefix_space=False)
    elif kind == "sentencepiece":  # metaspace pieces (▁word), as XLM-R and DeBERTa-v2/v3 have
        tok = SentencePieceBPETokenizer()
        tok.train_from_iterator(text, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                           special_tokens=[("<s>", 0), ("</s>", 2)])
        fast = XLMRobertaTokenizerFast(tokenizer_object=tok._tokenizer)
    else:  # WordPiece, as BERT has
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(text, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
        tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                       sep_token="[SEP]")
    fast.save_pretrained(tmp_path / kind)
    return tmp_path / kind


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "sentencepiece"])
def test_word_level_labels_sit_on_each_words_first_subtoken(kind, tmp_path):
    folder = _words_tokenizer(kind, tmp_path)
    tokenizer = load_tokenizer(folder, words=True)
    rows = generate_task_data("pos", ["en"], 20, 2, 2)[("en", "test")][:2]
    data = {"tokens": [r["tokens"] for r in rows], "upos": [r["upos"] for r in rows]}
    examples = encode(data, tokenizer, DEMO_TASKS["pos"], 64, len(UPOS))
    for row, ex in zip(rows, examples):
        labelled = [i for i, t in enumerate(ex["labels"]) if t != IGNORE_INDEX]
        assert [ex["word_ids"][i] for i in labelled] == list(range(len(row["tokens"])))  # every word once, in order
        assert [ex["labels"][i] for i in labelled] == row["upos"]
        pieces = tokenizer.convert_ids_to_tokens(ex["input_ids"])
        ends = [*labelled[1:], len(pieces)]
        for start, end, word in zip(labelled, ends, row["tokens"]):  # a word's pieces run to the next word's first
            spelled = "".join(p.removeprefix("##") for p in pieces[start:end] if p not in tokenizer.all_special_tokens)
            assert spelled.lstrip("Ġ▁") == word, (kind, word, pieces[start:end])
    if kind == "bpe":  # without a space before each word, byte-level BPE would refuse pre-split words
        from transformers import AutoTokenizer

        with pytest.raises((ValueError, AssertionError), match="add_prefix_space"):
            AutoTokenizer.from_pretrained(folder)(rows[0]["tokens"], is_split_into_words=True)


def test_demo_tasks_have_seventeen_tags_and_three_topics():
    assert len(UPOS) == 17 and DEMO_TASKS["pos"].labels == UPOS
    rows = generate_task_data("topic", ["en"], 90, 2, 2)[("en", "train")]
    assert {r["label"] for r in rows} == set(range(len(TOPICS)))
    pos = generate_task_data("pos", ["en"], 30, 2, 2)[("en", "train")]
    used = {UPOS[t] for r in pos for t in r["upos"]}
    assert {"NOUN", "VERB", "DET", "ADP", "PROPN", "PUNCT"} <= used and "X" not in used


@pytest.mark.parametrize("kind", ["bpe", "sentencepiece"])
def test_a_declared_word_level_task_trains_on_a_bpe_or_sentencepiece_model(kind, tmp_path):
    """A RoBERTa-style model with each tokenizer trains the POS task end to end: one label per gold word."""
    import json

    from transformers import RobertaConfig, RobertaModel

    from transmod.train.config import TrainConfig
    from transmod.train.training import train

    folder = _words_tokenizer(kind, tmp_path)
    vocab = len(load_tokenizer(folder))
    RobertaModel(RobertaConfig(vocab_size=vocab, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=40, max_position_embeddings=80, pad_token_id=1)).save_pretrained(folder)
    data = write_demo_dataset(DEMO_TASKS["pos"], tmp_path / "pos", ["en"], {"train": 24, "validation": 6, "test": 6})
    task = declare_task("pos", {"kind": "token-classification", "text_columns": ["tokens"], "label_column": "upos",
                                "metric": "accuracy"})  # label names from the data's ClassLabel
    splits = [load_split(str(data), task, "en", split) for split in ("train", "validation", "test")]
    summary = train(folder, task, "lora", *splits, TrainConfig(seed=1, epochs=1, batch_size=8, modules={"lora": {"r": 2, "alpha": 2}}),
                    out_dir=tmp_path / "run")
    assert summary["task"] == "pos" and summary["metric"] == "accuracy"
    predictions = json.loads((tmp_path / "run" / "test_predictions.json").read_text())
    assert predictions["labels"] == list(UPOS)
    assert [len(p) for p in predictions["predictions"]] == [len(r["tokens"]) for r in splits[2]]
    assert all(label in UPOS for sentence in predictions["predictions"] for label in sentence)
