"""Numbers and texts that used to pass silently: a --max-length that truncates nothing, a text line with
extra tabs, a null text cell, an environment switch that reads every value as "on", and training options
that are not finite or out of range. Each is refused in one line naming the file, row, variable or key.

The CLI cases run as `test_bad_input.py` runs its cases: non-zero exit, at most two lines on stderr and
no traceback, the sandbox unchanged byte for byte, and no output left.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.models import SENTENCES, make_model, save_model
from helpers.sandbox import refused_in_one_line

from transmod import environment
from transmod.cli import main
from transmod.errors import TransmodError
from transmod.train.config import TrainConfig
from transmod.train.runtime import configure_threads


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A tiny model and malformed text inputs beside a user file that no case may touch."""
    root = tmp_path_factory.mktemp("numbers")
    inputs = root / "inputs"
    save_model(make_model("bert", 2), inputs / "model")
    (inputs / "text.txt").write_text("\n".join(SENTENCES[:6]) + "\n")
    (inputs / "tabs.txt").write_text(f"{SENTENCES[0]}\n{SENTENCES[1]}\t{SENTENCES[2]}\n{SENTENCES[3]}\t{SENTENCES[4]}\t"
                                     f"{SENTENCES[5]}\n")
    (inputs / "pairs.txt").write_text(f"{SENTENCES[0]}\t{SENTENCES[1]}\n{SENTENCES[2]}\n")
    (inputs / "half.txt").write_text(f"{SENTENCES[0]}\t{SENTENCES[1]}\n{SENTENCES[2]}\t \n")
    pairs = {"sentence1": SENTENCES[:3], "sentence2": SENTENCES[3:6], "label": [0, 1, 0]}
    pq.write_table(pa.table({**pairs, "sentence2": [SENTENCES[3], SENTENCES[4], None]}), inputs / "null.parquet")
    words = [s.split() for s in SENTENCES[:3]]
    pq.write_table(pa.table({"tokens": [words[0], [words[1][0], None], words[2]], "ner_tags": [[0], [0, 0], [0]]}),
                   inputs / "null-word.parquet")
    pq.write_table(pa.table({**pairs, "sentence1": [1.5, 2.0, 3.0]}), inputs / "numbers.parquet")
    (root / "notes.txt").write_text("my notes\n")
    return root


def sample(data: str, *extra: str) -> list[str]:
    return ["sample", "--model", "inputs/model", "--peft", "adapter", "--data", f"inputs/{data}", *extra]


# case -> (argv without --out, what stderr must say)
CASES = {
    "--max-length 1 (the tokenizer would truncate nothing)": (sample("text.txt", "--max-length", "1"),
                                                              ["--max-length 1", "--max-length 3 or more"]),
    "--max-length 2 (special tokens only)": (sample("text.txt", "--max-length", "2"), ["--max-length 3 or more"]),
    "--max-length 3 for pairs": (sample("pairs.txt", "--max-length", "3"), ["3 special tokens", "each pair",
                                                                           "--max-length 4 or more"]),
    "a line with two tabs": (sample("tabs.txt"), ["inputs/tabs.txt", "line 3", "3 tab-separated fields"]),
    "a pair with an empty side": (sample("half.txt"), ["inputs/half.txt", "line 2", "empty text"]),
    "a null text cell": (sample("null.parquet"), ["inputs/null.parquet", "'sentence2'", "row 2", "null"]),
    "a null word in a word list": (sample("null-word.parquet"), ["inputs/null-word.parquet", "'tokens'", "row 1"]),
    "numbers as text": (sample("numbers.parquet"), ["inputs/numbers.parquet", "'sentence1'", "row 0", "1.5"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_sampling_input_is_refused_and_nothing_is_touched(sandbox, monkeypatch, capfd, case):
    argv, expected = CASES[case]
    monkeypatch.chdir(sandbox)
    refused_in_one_line(argv + ["--out", "out.parquet"], sandbox, capfd, expected)
    assert not (sandbox / "out.parquet").exists()


def test_the_smallest_max_length_the_refusal_names_keeps_one_token_per_text(sandbox, monkeypatch, tmp_path):
    """--max-length is applied: every stored text holds at most max_length minus the special tokens."""
    from transmod.align.samplefile import SampleFile

    monkeypatch.chdir(sandbox)
    assert main(sample("text.txt", "--max-length", "3") + ["--out", str(tmp_path / "s.parquet")]) == 0
    stored = SampleFile.open(tmp_path / "s.parquet")
    sents = pq.read_table(tmp_path / "s.parquet", columns=["sent", "token"]).to_pydict()
    assert stored.meta["max_length"] == 3 and stored.num_tokens == 6
    assert sents["sent"] == list(range(6)) and sents["token"] == [s.split()[0] for s in SENTENCES[:6]]


# ------------------------------------------------------------------------------------------ environment


@pytest.mark.parametrize("value, on", [("1", True), ("true", True), ("TRUE", True), ("Yes", True), ("on", True),
                                       (" on ", True), ("0", False), ("false", False), ("False", False), ("no", False),
                                       ("OFF", False), ("", False)])
def test_a_switch_reads_the_usual_spellings(monkeypatch, value, on):
    monkeypatch.setenv(environment.FP32, value)
    assert environment.switch(environment.FP32) is on


def test_an_unset_switch_is_off(monkeypatch):
    monkeypatch.delenv(environment.FP32, raising=False)
    assert environment.switch(environment.FP32) is False


@pytest.mark.parametrize("value", ["2", "enable", "fasle", "-1", "y"])
def test_any_other_switch_value_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(environment.FP32, value)
    refused = rf"\$TRANSMOD_FP32='{value}' is not a switch.*1/true/yes/on.*0/false/no/off"
    with pytest.raises(TransmodError, match=refused):
        environment.switch(environment.FP32)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", "²"])
def test_a_bad_thread_count_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(environment.THREADS, value)
    with pytest.raises(TransmodError, match=r"\$TRANSMOD_THREADS=.* is not a positive whole number"):
        configure_threads()


def test_no_transmod_variable_is_named_outside_the_environment_module():
    """One parser: every TRANSMOD_* variable of the library and the workflow is read through `environment`."""
    from helpers import REPO

    files = [*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*.py"), *(REPO / "workflow").rglob("*.smk"),
             REPO / "Snakefile"]
    named = {p.name for p in files if re.search(r"""["']TRANSMOD_\w+["']""", p.read_text())}
    assert named == {"environment.py"}


# ------------------------------------------------------------------------------------------ training options


@pytest.mark.parametrize("values, key", [
    ({"learning_rate": math.inf}, "learning_rate"), ({"learning_rate": "nan"}, "learning_rate"),
    ({"learning_rate": -1e-4}, "learning_rate"), ({"learning_rate": 0}, "learning_rate"),
    ({"epochs": math.inf}, "epochs"), ({"epochs": 0}, "epochs"), ({"epochs": True}, "epochs"),
    ({"epochs": 2.5}, "epochs"), ({"batch_size": "eight"}, "batch_size"), ({"batch_size": None}, "batch_size"),
    ({"eval_batch_size": 0}, "eval_batch_size"), ({"weight_decay": math.nan}, "weight_decay"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"warmup_ratio": math.inf}, "warmup_ratio"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"), ({"max_grad_norm": math.nan}, "max_grad_norm"),
    ({"max_grad_norm": math.inf}, "max_grad_norm"),
    ({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"), ({"seed": "12345678901234567890"}, "seed"),
    ({"patience": -1}, "patience"), ({"freeze_module": "yes"}, "freeze_module"),
])
def test_training_options_out_of_range_are_refused_naming_the_key(values, key):
    with pytest.raises(TransmodError, match=rf"^config.yaml training: option {key}\b"):
        TrainConfig.from_dict(values, "config.yaml training")


@pytest.mark.parametrize("modules, said", [
    ({"lora": {"dropout": -0.5}}, "modules.lora: dropout is -0.5, but it must be a number from 0 up to, not including, 1"),
    ({"lora": {"r": math.nan}}, "modules.lora: r is nan, but it must be a whole number of at least 1"),
    ({"adapter": {"bottleneck": 0}}, "modules.adapter: bottleneck is 0"),
    ({"lora": {"rank": 4}}, "modules.lora: unknown option.s. rank; known options are r, alpha, dropout"),
    ({"prefix": {}}, "unknown peft 'prefix'"),
])
def test_module_options_out_of_range_are_refused_naming_the_kind_and_key(modules, said):
    with pytest.raises(TransmodError, match=said):
        TrainConfig.from_dict({"modules": modules}, "config.yaml training")


def test_a_config_built_in_code_is_checked_as_well():
    for bad in (dict(learning_rate=math.inf), dict(batch_size=8.0), dict(weight_decay=math.nan), dict(epochs=True)):
        with pytest.raises(TransmodError, match=f"option {next(iter(bad))}"):
            TrainConfig(**bad).validate()


def test_numbers_spelled_as_strings_keep_their_value():
    cfg = TrainConfig.from_dict({"learning_rate": "1e-4", "epochs": "1e1", "seed": "4294967295", "weight_decay": 0,
                                 "modules": {"lora": {"alpha": 16.0}}})
    alpha = cfg.module_options("lora").alpha
    assert (cfg.learning_rate, cfg.epochs, cfg.seed, cfg.weight_decay, alpha) == (1e-4, 10, 2**32 - 1, 0.0, 16)
    assert type(cfg.weight_decay) is float and type(alpha) is int
