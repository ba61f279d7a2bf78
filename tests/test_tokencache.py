"""Tokenised splits are computed once per tokenizer and data, then read back identically."""

import datasets
import pytest
from helpers.models import SENTENCES, make_tokenizer

import transmod.train.tokencache as tokencache


@pytest.fixture
def ner():
    rows = [s.split() for s in SENTENCES[:12]]
    return datasets.Dataset.from_dict({"tokens": rows, "ner_tags": [[1] + [0] * (len(r) - 1) for r in rows]})


def test_second_call_reads_the_cache(tmp_path, ner, monkeypatch):
    tok = make_tokenizer()
    first = tokencache.cached_encode(ner, tok, "ner", 32, 9, source="t", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("ner-*.parquet"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr(tokencache, "encode", fail)
    assert tokencache.cached_encode(ner, tok, "ner", 32, 9, source="t", cache_dir=tmp_path) == first


def test_key_follows_tokenizer_data_and_settings(ner):
    tok = make_tokenizer()
    key = tokencache.cache_key(tok, ner, "ner", 32, 9)
    assert key == tokencache.cache_key(make_tokenizer(), ner, "ner", 32, 9)
    assert key != tokencache.cache_key(tok, ner, "ner", 16, 9)
    assert key != tokencache.cache_key(tok, ner.select(range(5)), "ner", 32, 9)
    other = make_tokenizer()
    other.add_tokens(["zebra"])
    assert key != tokencache.cache_key(other, ner, "ner", 32, 9)


def test_a_regenerated_local_folder_is_not_read_from_the_cache(tmp_path):
    """`datasets` gives a local folder the same fingerprint whatever its files hold: rebuilding the data in place
    (a new size in a profile's config) must not bring back the old folder's tokens."""
    import shutil

    from transmod.train.data import load_split, write_hub_folder

    tok, keys = make_tokenizer(), []
    for n in (5, 7):
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
        rows = [{"tokens": s.split(), "ner_tags": [0] * len(s.split())} for s in SENTENCES[:n]]
        write_hub_folder(tmp_path / "data", "ner", {("en", split): rows for split in ("train", "validation", "test")})
        dataset = load_split(str(tmp_path / "data"), "ner", "en", "train", cache_dir=str(tmp_path / "hf"))
        assert len(dataset) == n
        keys.append(tokencache.cache_key(tok, dataset, "ner", 32, 9))
    assert keys[0] != keys[1]


def test_no_cache_dir_means_no_files(tmp_path, ner, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a cache written to a default place would land here
    out = tokencache.cached_encode(ner, make_tokenizer(), "ner", 32, 9, source="t", cache_dir=None)
    assert out and not list(tmp_path.iterdir())


def test_damaged_entry_is_rebuilt_with_a_log_line(tmp_path, ner, capfd):
    tok = make_tokenizer()
    first = tokencache.cached_encode(ner, tok, "ner", 32, 9, source="t", cache_dir=tmp_path)
    (entry,) = tmp_path.glob("ner-*.parquet")
    entry.write_bytes(entry.read_bytes()[:100])  # cut short, as a killed copy or a full disk leaves it
    assert tokencache.cached_encode(ner, tok, "ner", 32, 9, source="t", cache_dir=tmp_path) == first
    assert f"token cache: {entry} is damaged" in capfd.readouterr().err
    assert tokencache.cached_encode(ner, tok, "ner", 32, 9, source="t", cache_dir=tmp_path) == first
    assert capfd.readouterr().err == ""  # rebuilt on disk: read back without complaint
