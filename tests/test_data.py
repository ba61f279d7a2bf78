"""Task data: hub ids and local hub-layout folders load through the same call, offline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from transmod.errors import TransmodError
from transmod.train.data import load_split, write_hub_folder
from transmod.train.tasks import BUILTIN_TASKS, SPLITS, get_task

ROWS = {
    "ner": lambda lang, split: [
        {"tokens": ["Anna", "lives", "in", "Berlin", "."], "ner_tags": [1, 0, 0, 5, 0], "lang": lang},
        {"tokens": ["The", "Acme", "Corp", "sells", f"{split}", "."], "ner_tags": [0, 3, 4, 0, 0, 0], "lang": lang},
    ],
    "pi": lambda lang, split: [
        {"id": 0, "sentence1": f"a {lang} {split}", "sentence2": "b", "label": 0},
        {"id": 1, "sentence1": "c", "sentence2": "c", "label": 1},
    ],
    "nli": lambda lang, split: [
        {"premise": f"p {lang} {split}", "hypothesis": "h", "label": 0},
        {"premise": "p2", "hypothesis": "h2", "label": 2},
    ],
}


def rows_for(task, langs=("en", "de"), splits=SPLITS):
    return {(lang, split): ROWS[task](lang, split) for lang in langs for split in splits}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF offline everywhere, and a private datasets cache."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return str(tmp_path / "cache")


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_round_trip_through_local_folder(task, tmp_path, offline):
    folder = write_hub_folder(tmp_path / task, task, rows_for(task))
    for lang in ("en", "de"):
        for split in SPLITS:
            dataset = load_split(str(folder), task, lang, split, cache_dir=offline)
            assert [dict(r) for r in dataset] == ROWS[task](lang, split)
    label_column = BUILTIN_TASKS[task].label_column
    feature = dataset.features[label_column]
    feature = getattr(feature, "feature", feature)  # ner: a sequence of class labels
    assert tuple(feature.names) == BUILTIN_TASKS[task].labels


def test_folder_layout_mirrors_the_hub(tmp_path):
    ner = write_hub_folder(tmp_path / "ner", "ner", rows_for("ner", ("en",)))
    assert sorted(p.name for p in (ner / "default").iterdir()) == ["test_en.parquet", "train_en.parquet",
                                                                   "val_en.parquet"]
    readme = (ner / "README.md").read_text()
    assert "config_name: default" in readme and "split: val_en" in readme
    pi = write_hub_folder(tmp_path / "pi", "pi", rows_for("pi", ("de",)))
    assert sorted(p.name for p in (pi / "de").iterdir()) == ["test.parquet", "train.parquet", "validation.parquet"]
    assert "config_name: de" in (pi / "README.md").read_text()


def test_hub_ids_and_folders_take_the_same_call(monkeypatch):
    import datasets

    calls = []

    class Fake:
        column_names = ["tokens", "ner_tags", "lang", "sentence1", "sentence2", "premise", "hypothesis", "label"]

    def fake_load(path, name=None, split=None, cache_dir=None):
        calls.append((path, name, split))
        return Fake()

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    load_split("Babelscape/wikineural", "ner", "de", "validation")
    load_split("google-research-datasets/paws-x", "pi", "fr", "test")
    load_split("facebook/xnli", "nli", "sw", "train")
    assert calls == [("Babelscape/wikineural", None, "val_de"), ("google-research-datasets/paws-x", "fr", "test"),
                     ("facebook/xnli", "sw", "train")]


def test_missing_language_names_source_task_language_and_split(tmp_path, offline):
    folder = write_hub_folder(tmp_path / "pi", "pi", rows_for("pi", ("en",)))
    with pytest.raises(TransmodError) as err:
        load_split(str(folder), "pi", "fr", "train", cache_dir=offline)
    message = str(err.value)
    assert str(folder) in message and "task pi" in message and "language fr" in message and "split train" in message
    assert "'fr'" in message  # the underlying reason: no such config


def test_missing_split_is_reported(tmp_path, offline):
    folder = write_hub_folder(tmp_path / "nli", "nli", rows_for("nli", ("en",), ("train", "validation")))
    with pytest.raises(TransmodError, match=r"language en, split test.*'test'"):
        load_split(str(folder), "nli", "en", "test", cache_dir=offline)
    ner = write_hub_folder(tmp_path / "ner", "ner", rows_for("ner", ("en",)))
    with pytest.raises(TransmodError, match=r"language de.*'test_de'"):
        load_split(str(ner), "ner", "de", "test", cache_dir=offline)


def test_missing_folder_and_bad_arguments(tmp_path, offline):
    with pytest.raises(TransmodError, match="no such folder"):
        load_split(str(tmp_path / "absent"), "pi", "en", "train", cache_dir=offline)
    with pytest.raises(TransmodError, match="not a built-in task \\(ner, pi, nli\\); pass its declaration"):
        load_split(str(tmp_path), "pos", "en", "train")
    with pytest.raises(TransmodError, match="split 'dev'"):
        load_split(str(tmp_path), "pi", "en", "dev")
    with pytest.raises(TransmodError, match="facebook/xnli has no language 'ja'"):
        load_split("facebook/xnli", "nli", "ja", "train")
    with pytest.raises(TransmodError, match="offline machines need a local copy"):
        load_split("nobody/nothing", "pi", "en", "train", cache_dir=offline)


def test_wrong_schema_names_the_missing_columns(tmp_path, offline):
    folder = write_hub_folder(tmp_path / "pi", "pi", rows_for("pi", ("en",)))
    with pytest.raises(TransmodError, match="no column premise, hypothesis .*fix tasks.nli.text_columns"):
        load_split(str(folder), "nli", "en", "train", cache_dir=offline)


def test_regenerated_or_same_named_folders_never_share_a_stale_cache(tmp_path, offline):
    # datasets keys a local folder's cache by its name and YAML only; load_split must not.
    def one(text):
        return {("en", s): [{"id": 0, "sentence1": text, "sentence2": text, "label": 1}] for s in SPLITS}

    a = write_hub_folder(tmp_path / "a" / "pi", "pi", one("first"))
    b = write_hub_folder(tmp_path / "b" / "pi", "pi", one("second"))
    assert load_split(str(a), "pi", "en", "train", cache_dir=offline)[0]["sentence1"] == "first"
    assert load_split(str(b), "pi", "en", "train", cache_dir=offline)[0]["sentence1"] == "second"
    write_hub_folder(a, "pi", one("third"))
    assert load_split(str(a), "pi", "en", "train", cache_dir=offline)[0]["sentence1"] == "third"


def test_loads_in_a_fresh_offline_process(tmp_path):
    """The env vars set before anything is imported, as a cluster job would have them."""
    folder = write_hub_folder(tmp_path / "ner", "ner", rows_for("ner", ("de",)))
    code = textwrap.dedent(f"""
        from transmod.train.data import load_split
        d = load_split({str(folder)!r}, "ner", "de", "validation", cache_dir={str(tmp_path / 'cache')!r})
        print(len(d), d[0]["tokens"][0], d[0]["lang"])
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "Anna", "de"]


def test_get_task_describes_the_hub_datasets():
    assert get_task("ner").config_and_split("it", "validation") == (None, "val_it")
    assert get_task("pi").config_and_split("ko", "train") == ("ko", "train")
    assert BUILTIN_TASKS["ner"].labels[:3] == ("O", "B-PER", "I-PER") and len(BUILTIN_TASKS["ner"].labels) == 9
    assert BUILTIN_TASKS["nli"].labels == ("entailment", "neutral", "contradiction")
    assert "ja" in BUILTIN_TASKS["pi"].languages and "sw" in BUILTIN_TASKS["nli"].languages and "ru" in BUILTIN_TASKS["ner"].languages
