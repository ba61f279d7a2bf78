"""Offline demo assets: learnable data in the hub schemas, a shared tokenizer, two model pairs."""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer
from transmod_demo.language import (
    DEMO_LANGS,
    folder_texts,
    generate_task_data,
    make_lexicon,
    write_demo_dataset,
)
from transmod_demo.models import (
    DEMO_MODELS,
    DEMO_PAIRS,
    STUDENT_LAYERS,
    build_demo_models,
)
from transmod_demo.tokenizer import train_tokenizer

from transmod.errors import TransmodError
from transmod.train.data import load_split
from transmod.train.tasks import BUILTIN_TASKS, SPLITS

LANGS = ("en", "de")


def build_demo_assets(out_root: Path, langs=DEMO_LANGS, seed: int = 0, vocab_size: int = 700) -> dict[str, Path]:
    """Everything the demo needs under out_root (data/<task>/, tokenizer/, models/<name>/), as its three rules do."""
    folders = {task: write_demo_dataset(task, out_root / "data" / task, langs, seed=seed) for task in BUILTIN_TASKS}
    paths = {f"data/{task}": folder for task, folder in folders.items()}
    paths["tokenizer"] = train_tokenizer(folder_texts(folders, dict.fromkeys(folders, langs)), out_root / "tokenizer",
                                         vocab_size)
    for name, path in build_demo_models(paths["tokenizer"], out_root / "models", seed).items():
        paths[f"models/{name}"] = path
    return paths


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return {**build_demo_assets(root, LANGS, seed=0), "cache": root / "cache"}


def _split(assets, task, lang, split):
    return load_split(str(assets[f"data/{task}"]), task, lang, split, cache_dir=str(assets["cache"]))


def _load(folder, cls="AutoModel", **kwargs):
    import transformers

    return getattr(transformers, cls).from_pretrained(folder, **kwargs).eval()


# --- data ---------------------------------------------------------------------------------------


def test_data_is_deterministic_and_languages_differ():
    assert generate_task_data("nli", LANGS, 20, 5, 5, seed=3) == generate_task_data("nli", LANGS, 20, 5, 5, seed=3)
    assert generate_task_data("nli", LANGS, 20, 5, 5, seed=3) != generate_task_data("nli", LANGS, 20, 5, 5, seed=4)
    en, de = make_lexicon("en", 0), make_lexicon("de", 0)
    assert not {w for pair in en.nouns for w in pair} & {w for pair in de.nouns for w in pair}


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_rows_follow_the_hub_schema(task):
    rows = generate_task_data(task, LANGS, 60, 10, 10, seed=0)
    assert set(rows) == {(lang, split) for lang in LANGS for split in SPLITS}
    assert [len(rows[("en", s)]) for s in SPLITS] == [60, 10, 10]
    spec = BUILTIN_TASKS[task]
    columns = set(spec.features())  # the declared columns, plus what the hub dataset also has
    columns |= {"ner": {"lang"}, "pi": {"id"}}.get(task, set())
    for (lang, _), split_rows in rows.items():
        for row in split_rows:
            assert set(row) == columns
            if task == "ner":
                assert row["lang"] == lang and len(row["tokens"]) == len(row["ner_tags"])
                tags = [spec.labels[t] for t in row["ner_tags"]]
                for prev, tag in zip(["O", *tags], tags):  # BIO: an I- continues its own type
                    assert not tag.startswith("I-") or prev[2:] == tag[2:]
    if task != "ner":
        labels = [r["label"] for r in rows[("en", "train")]]
        assert sorted(set(labels)) == list(range(len(spec.labels)))
        assert max(labels.count(i) for i in set(labels)) - min(labels.count(i) for i in set(labels)) <= 1
    else:
        tags = {spec.labels[t] for r in rows[("en", "train")] for t in r["ner_tags"]}
        assert tags == set(spec.labels)


def _pair_features(a: str, b: str) -> dict[str, int]:
    """Bag of words of what the second sentence adds, what it drops, and what both share."""
    def words(s):
        return set(s.replace(",", " ").replace(".", " ").lower().split())
    wa, wb = words(a), words(b)
    return {**{f"+{w}": 1 for w in wb - wa}, **{f"-{w}": 1 for w in wa - wb}, **{f"={w}": 1 for w in wa & wb}}


def _token_features(tokens, i):
    return {f"w={tokens[i]}": 1, f"prev={tokens[i - 1] if i else '<s>'}": 1, "cap": int(tokens[i][0].isupper())}


def _vectorise(features: list[dict[str, int]], index: dict[str, int]) -> torch.Tensor:
    """Dense feature matrix; names not in `index` (unseen in training) are dropped."""
    x = torch.zeros(len(features), len(index), dtype=torch.float64)
    for row, feats in enumerate(features):
        for name, value in feats.items():
            if name in index:
                x[row, index[name]] = value
    return x


def _fit_logistic_regression(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Linear:
    """Multinomial logistic regression with an L2 penalty of 1/2 ||W||^2 (scikit-learn's default, C=1)."""
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1, dtype=torch.float64)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    optimiser = torch.optim.LBFGS(model.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(model(x), y, reduction="sum") + 0.5 * model.weight.square().sum()
        value.backward()
        return value

    optimiser.step(loss)
    return model


def _macro_f1(gold: list[int], predicted: list[int]) -> float:
    """Mean per-class F1 over the classes in gold or predictions (0 for a class never right)."""
    classes = set(gold) | set(predicted)
    f1 = []
    for c in classes:
        tp = sum(g == p == c for g, p in zip(gold, predicted))
        wrong = sum((g == c) != (p == c) for g, p in zip(gold, predicted))  # false positives + false negatives
        f1.append(2 * tp / (2 * tp + wrong) if tp else 0.0)
    return sum(f1) / len(f1)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("task,floor", [("pi", 0.75), ("nli", 0.7), ("ner", 0.9)])
def test_data_is_learnable_by_a_bag_of_words(task, floor, lang):
    """A logistic regression on 320 examples gets well above chance (pi 0.5, nli 0.33, ner macro-F1 ~0.1)."""
    rows = generate_task_data(task, LANGS, 320, 20, 120, seed=0)
    if task == "ner":
        def featurise(split):
            items = [(_token_features(r["tokens"], i), t) for r in rows[(lang, split)]
                     for i, t in enumerate(r["ner_tags"])]
            return [f for f, _ in items], [t for _, t in items]
    else:
        a, b = BUILTIN_TASKS[task].text_columns

        def featurise(split):
            return [_pair_features(r[a], r[b]) for r in rows[(lang, split)]], [r["label"] for r in rows[(lang, split)]]
    x_train, y_train = featurise("train")
    index = {name: i for i, name in enumerate(sorted({name for feats in x_train for name in feats}))}
    model = _fit_logistic_regression(_vectorise(x_train, index), torch.tensor(y_train))
    x_test, y_test = featurise("test")
    with torch.no_grad():
        predicted = model(_vectorise(x_test, index)).argmax(dim=1).tolist()
    if task == "ner":
        score = _macro_f1(y_test, predicted)
    else:
        score = sum(p == g for p, g in zip(predicted, y_test)) / len(y_test)
    assert score >= floor


def test_demo_dataset_folders_load_through_load_split(assets, tmp_path):
    ner = _split(assets, "ner", "de", "validation")
    assert ner.num_rows == 80 and set(ner["lang"]) == {"de"}
    assert ner.to_list() == generate_task_data("ner", LANGS, seed=0)[("de", "validation")]
    pi = _split(assets, "pi", "en", "test")
    assert pi.column_names == ["id", "sentence1", "sentence2", "label"]
    nli = _split(assets, "nli", "de", "train")
    assert nli.num_rows == 320 and sorted(set(nli["label"])) == [0, 1, 2]
    small = write_demo_dataset("pi", tmp_path / "pi", langs=["fr"], sizes={"train": 7}, seed=1)
    assert load_split(str(small), "pi", "fr", "train", cache_dir=str(tmp_path / "cache")).num_rows == 7


def test_bad_demo_arguments():
    with pytest.raises(TransmodError, match="unknown split"):
        write_demo_dataset("pi", "unused", LANGS, sizes={"dev": 3})
    with pytest.raises(TransmodError, match="at least one example"):
        generate_task_data("pi", LANGS, 0, 1, 1)
    with pytest.raises(TransmodError, match="task 'qa'"):
        generate_task_data("qa", LANGS)
    with pytest.raises(TransmodError, match="no tokenizer.json"):
        build_demo_models("/nonexistent/tokenizer", "unused")


# --- tokenizer ----------------------------------------------------------------------------------


def test_tokenizer_is_a_bert_style_fast_tokenizer(assets):
    tok = AutoTokenizer.from_pretrained(assets["tokenizer"])
    assert tok.is_fast
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id] == [0, 1, 2, 3, 4]
    text = _split(assets, "pi", "en", "train")[0]["sentence1"]
    enc = tok(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = enc["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and tok.unk_token_id not in ids
    assert enc["special_tokens_mask"] == [1] + [0] * (len(ids) - 2) + [1]
    pieces = [text[s:e] for s, e in enc["offset_mapping"][1:-1]]
    assert "".join(pieces) == text.replace(" ", "")
    assert tok.decode(ids, skip_special_tokens=True).replace(" ,", ",").replace(" .", ".") == text


def test_tokenizer_is_reproducible(tmp_path):
    folder = write_demo_dataset("nli", tmp_path / "nli", LANGS, {"train": 100, "validation": 1, "test": 1})
    texts = folder_texts({"nli": folder}, {"nli": LANGS})
    first, second = train_tokenizer(texts, tmp_path / "a", 300), train_tokenizer(texts, tmp_path / "b", 300)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert len(AutoTokenizer.from_pretrained(first)) == 300


def test_tokenizer_pairs_and_words(assets):
    bert = AutoTokenizer.from_pretrained(assets["models/teacher-bert"])
    pair = bert("Aa bb.", "Cc dd ee.", return_special_tokens_mask=True)
    sep = [i for i, t in enumerate(pair["input_ids"]) if t == bert.sep_token_id]
    assert pair["input_ids"][0] == bert.cls_token_id and len(sep) == 2 and sep[1] == len(pair["input_ids"]) - 1
    assert pair["token_type_ids"] == [0] * (sep[0] + 1) + [1] * (sep[1] - sep[0])
    assert sum(pair["special_tokens_mask"]) == 3
    for name in ("student-distilbert", "teacher-xlmr", "student-xlmr"):  # no token types, like the real models
        assert "token_type_ids" not in AutoTokenizer.from_pretrained(assets[f"models/{name}"])("Aa", "Bb")
    row = _split(assets, "ner", "en", "train")[0]
    words = bert(row["tokens"], is_split_into_words=True).word_ids()
    assert words[0] is None and words[-1] is None
    assert sorted({w for w in words if w is not None}) == list(range(len(row["tokens"])))


# --- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_model_folders_load_with_auto_classes(assets, name):
    folder = assets[f"models/{name}"]
    assert (folder / "model.safetensors").is_file() and not (folder / "pytorch_model.bin").exists()
    tok = AutoTokenizer.from_pretrained(folder)
    base = _load(folder)
    assert base.config.vocab_size == len(tok) and base.config.pad_token_id == tok.pad_token_id
    batch = tok(["Aa " * 200, "Bb"], ["Cc dd", "Ee"], truncation=True, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] == tok.model_max_length == 128
    ner = _load(folder, "AutoModelForTokenClassification", num_labels=9)
    nli = _load(folder, "AutoModelForSequenceClassification", num_labels=3)
    with torch.no_grad():
        assert ner(**batch).logits.shape == (2, 128, 9)
        assert nli(**batch).logits.shape == (2, 3)


def test_model_shapes_and_pairs(assets):
    shapes = {}
    for name in DEMO_MODELS:
        c = _load(assets[f"models/{name}"]).config
        shapes[name] = (c.model_type, getattr(c, "num_hidden_layers", getattr(c, "n_layers", None)),
                        getattr(c, "hidden_size", getattr(c, "dim", None)))
    assert shapes == {"teacher-bert": ("bert", 4, 64), "student-distilbert": ("distilbert", 2, 64),
                      "teacher-xlmr": ("xlm-roberta", 4, 64), "student-xlmr": ("xlm-roberta", 2, 48)}
    assert set(DEMO_PAIRS) == {"matching", "incompatible"}


def test_distilbert_student_is_every_second_teacher_layer(assets):
    teacher = _load(assets["models/teacher-bert"])
    student = _load(assets["models/student-distilbert"])
    # checked by what the layers compute, not by the builder's own name map (a copy of it would agree with a bug)
    assert torch.equal(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight)

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, student.config.vocab_size, (3, 11), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    ids[mask == 0] = 0
    hidden = torch.randn(3, 11, 64, generator=gen)
    with torch.no_grad():
        # same embeddings for single sentences (token type 0 folded into the positions)
        torch.testing.assert_close(student.embeddings(ids), teacher.embeddings(input_ids=ids), atol=1e-5, rtol=0)
        # student layer l computes teacher layer STUDENT_LAYERS[l] on the same input
        for i, j in enumerate(STUDENT_LAYERS):
            out_s, out_t = student.transformer.layer[i](hidden), teacher.encoder.layer[j](hidden)
            out_s = out_s[0] if isinstance(out_s, tuple) else out_s
            out_t = out_t[0] if isinstance(out_t, tuple) else out_t
            torch.testing.assert_close(out_s, out_t, atol=1e-5, rtol=0)
        # and the whole student is the teacher cut down to those layers, padding included
        cut = copy.deepcopy(teacher)
        cut.encoder.layer = torch.nn.ModuleList(teacher.encoder.layer[j] for j in STUDENT_LAYERS)
        expected = cut(input_ids=ids, attention_mask=mask).last_hidden_state
        got = student(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(got[mask == 1], expected[mask == 1], atol=1e-5, rtol=0)


def test_incompatible_pair_is_independent(assets):
    teacher = _load(assets["models/teacher-xlmr"]).embeddings.word_embeddings.weight
    student = _load(assets["models/student-xlmr"]).embeddings.word_embeddings.weight
    assert teacher.shape[1] == 64 and student.shape[1] == 48
    assert not torch.allclose(teacher[:, :48], student, atol=1e-3)


def test_model_files_follow_the_umask(assets, tmp_path):
    """safetensors writes its weights 0600: a group that shares the demo's folders must read them too."""
    old = os.umask(0o022)
    try:
        built = build_demo_models(assets["tokenizer"], tmp_path)
    finally:
        os.umask(old)
    for folder in built.values():
        assert folder.stat().st_mode & 0o777 == 0o755
        modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
        assert "model.safetensors" in modes and set(modes.values()) == {0o644}, modes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(DEMO_MODELS)  # no temporaries left


def test_models_are_reproducible_from_the_seed(assets, tmp_path):
    again = build_demo_models(assets["tokenizer"], tmp_path, seed=0)
    other = build_demo_models(assets["tokenizer"], tmp_path / "other", seed=1)

    def digest(folder):
        return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()

    for name in DEMO_MODELS:
        assert digest(again[name]) == digest(assets[f"models/{name}"])
        assert digest(other[name]) != digest(assets[f"models/{name}"])


# --- the decoder pair ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def decoders(assets, tmp_path_factory):
    from transmod_demo.decoders import build_decoder_pair

    texts = folder_texts({"pi": assets["data/pi"]}, {"pi": LANGS})
    return build_decoder_pair(assets["tokenizer"], tmp_path_factory.mktemp("decoders"), texts=texts, pretrain_steps=30)


def test_the_decoder_tokenizer_has_a_bos_and_no_pad_token(decoders):
    tok = AutoTokenizer.from_pretrained(decoders["teacher-llama"])
    ids = tok("Gring fiekuk")["input_ids"]
    assert tok.pad_token is None and ids[0] == tok.bos_token_id and tok.eos_token_id not in ids
    assert _load(decoders["teacher-llama"], "AutoModelForCausalLM").config.vocab_size == len(tok)


def test_the_narrow_decoder_has_fewer_heads_of_the_same_size(decoders):
    teacher = _load(decoders["teacher-llama"], "AutoModelForCausalLM").config
    narrow = _load(decoders["narrow-llama"], "AutoModelForCausalLM").config
    assert (teacher.hidden_size, teacher.num_attention_heads, teacher.num_key_value_heads) == (64, 4, 2)
    assert (narrow.hidden_size, narrow.num_attention_heads, narrow.num_key_value_heads) == (48, 2, 1)
    assert narrow.head_dim == teacher.head_dim == 16


def test_the_decoder_student_is_the_teacher_cut_to_layers_0_and_2(decoders):
    from transmod_demo.decoders import DECODER_LAYERS

    teacher = _load(decoders["teacher-llama"], "AutoModelForCausalLM")
    student = _load(decoders["student-llama"], "AutoModelForCausalLM")
    cut = copy.deepcopy(teacher)  # by what it computes, not by the builder's own name map
    cut.model.layers = torch.nn.ModuleList(teacher.model.layers[j] for j in DECODER_LAYERS)
    cut.config.num_hidden_layers = len(DECODER_LAYERS)
    ids = torch.randint(5, teacher.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = student(input_ids=ids, use_cache=False).logits
        torch.testing.assert_close(got, cut(input_ids=ids, use_cache=False).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(got, teacher(input_ids=ids, use_cache=False).logits, atol=1e-3)


def test_cloze_rows_end_their_sentence_with_one_of_three_choices():
    rows = generate_task_data("cloze", ["en"], 30, 5, 5, seed=0)[("en", "train")]
    assert all(len(set(r["choices"])) == 3 and 0 <= r["answer"] < 3 for r in rows)
    assert {r["answer"] for r in rows} == {0, 1, 2}  # the right one in every place
