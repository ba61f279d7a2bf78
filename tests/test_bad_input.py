"""Nothing lost, nothing silently wrong: every `transmod` verb and the workflow's config validation
against malformed, mismatched and dangerous input.

Each case runs in a sandbox folder that holds the inputs and unrelated user files, and asserts: a
non-zero exit, at most two lines on stderr and no traceback, the sandbox unchanged byte for byte
(and mode for mode), and no output left behind. No model is trained.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from helpers import REPO
from helpers.commands import TRANSMOD, snakemake
from helpers.config import SCHEMA, study_config
from helpers.sandbox import tree

from transmod.atomic import MARK_FILE
from transmod.cli import main
from transmod.errors import TransmodError
from transmod.workflow.config import validate_config, validate_section


def _broken(sandbox: Path, name: str, source: str, edit) -> Path:
    """A damaged copy of an input, made once inside the sandbox (so the checksum covers it)."""
    path = sandbox / "broken" / name
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        src = sandbox / "inputs" / source
        (shutil.copytree if src.is_dir() else shutil.copy)(src, path)
        edit(path)
    return path


def _write(text: str | bytes, relative: str):
    def edit(path: Path) -> None:
        target = path / relative if relative else path
        (target.write_bytes if isinstance(text, bytes) else target.write_text)(text)
    return edit


def _truncate(relative: str, keep: int = 40):
    def edit(path: Path) -> None:
        target = path / relative
        target.write_bytes(target.read_bytes()[:keep])
    return edit


def _json_edit(relative: str, change):
    def edit(path: Path) -> None:
        target = path / relative
        data = json.loads(target.read_text())
        change(data)
        target.write_text(json.dumps(data))
    return edit


def _poison(relative: str, value: float = float("nan")):
    """Set one number of a safetensors file's first tensor to `value` (NaN, inf), the file otherwise intact."""
    def edit(path: Path) -> None:
        from safetensors.numpy import load_file, save_file

        tensors = load_file(str(path / relative))
        first = sorted(tensors)[0]
        tensors[first] = tensors[first].copy()
        tensors[first].flat[0] = value
        save_file(tensors, str(path / relative))
    return edit


def _nan_offset(path: Path) -> None:
    """An lsa alignment file given a NaN offset for layer 0, its metadata kept."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["h0.offset"] = np.full(24, np.nan, dtype=np.float32)
    save_file(tensors, str(path), metadata=meta)


def _module_config(source: str, name: str, **changes):
    """A module folder whose adapter_config.json has `changes` (in its `config` section for an adapters module)."""
    def change(config: dict) -> None:
        (config if "peft_type" in config else config["config"]).update(changes)
    return lambda s: transfer(s, _broken(s, name, source, _json_edit("adapter_config.json", change)))


def _parquet_meta(change):
    """Rewrite a sample parquet with its `transmod` metadata changed (`change(meta) -> bytes`) or rows cut."""
    def edit(path: Path) -> None:
        table = pq.read_table(path)
        meta = json.loads(pq.read_metadata(path).metadata[b"transmod"])
        raw, rows = change(meta)
        table = table.slice(0, rows(table.num_rows)).replace_schema_metadata({b"transmod": raw})
        pq.write_table(table, path)
    return edit


class _Pickled:
    """Not a tensor: a weights file holding this is a pickle that could run code."""


def _pickle_bin(path: Path) -> None:
    (path / "adapter.safetensors").unlink()
    torch.save({"x": _Pickled()}, path / "pytorch_adapter.bin", pickle_protocol=pickle.DEFAULT_PROTOCOL)


def I(s: Path, name: str) -> Path:  # noqa: E743
    return s / "inputs" / name


def _ref(s: Path, name: str | Path) -> str | Path:
    """An input of the sandbox by name; a path or a hub id as given."""
    return name if isinstance(name, Path) or not (s / "inputs" / name).exists() else s / "inputs" / name


def transfer(s: Path, module: str | Path = "adapter", teacher: str | Path = "teacher", student: str = "student", *extra):
    return ["transfer", "--module", _ref(s, module), "--teacher-model", _ref(s, teacher), "--student-model",
            _ref(s, student), "--mapping", "skip", *extra]


def pair(verb: str, s: Path, teacher: Path, student: Path, *extra):
    return [verb, "--teacher", teacher, "--student", student, "--mapping", "skip", *extra]


# case -> (argv without --out, the output path relative to the sandbox or None to add one, what stderr must say)
CASES = {
    # ---- data loss: the output path
    "transfer --out .": (lambda s: transfer(s), ".", "the input"),
    "transfer --out a user folder": (lambda s: transfer(s), "mydata", "not a transmod output"),
    "transfer --out ~": (lambda s: transfer(s), "~", "not a transmod output"),
    "transfer --out the module": (lambda s: transfer(s), "inputs/adapter", "the input"),
    "transfer --out inside the module": (lambda s: transfer(s), "inputs/adapter/sub", "the input"),
    "transfer --out holding the module": (lambda s: transfer(s), "inputs", "the input"),
    "transfer --out the student model": (lambda s: transfer(s), "inputs/student", "the input"),
    "transfer --out a user file": (lambda s: transfer(s), "notes.txt", "not a transmod output"),
    "transfer --out an earlier output, no --overwrite": (lambda s: transfer(s), "inputs/moved", "--overwrite"),
    "correlate --out a user folder": (lambda s: pair("correlate", s, I(s, "t.parquet"), I(s, "s.parquet")), "mydata",
                                      "not a transmod output"),
    "correlate --out a sample file (another kind)": (lambda s: pair("correlate", s, I(s, "t.parquet"), I(s, "s.parquet")),
                                                     "inputs/o.parquet", "transmod samples output"),
    "correlate --out its own input": (lambda s: pair("correlate", s, I(s, "t.parquet"), I(s, "s.parquet")),
                                      "inputs/t.parquet", "the input"),
    "sample --out the data": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data", I(s, "text.txt")],
                              "inputs/text.txt", "the input"),
    "sample --out a user folder": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data",
                                              I(s, "text.txt")], "mydata", "not a transmod output"),
    "sample --out .": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data", I(s, "text.txt")],
                       ".", "the input"),
    "assign --out a user json": (lambda s: ["assign", "--correlation", I(s, "corr.safetensors")], "results.json",
                                 "not a transmod output"),
    "assign --out a symlink": (lambda s: ["assign", "--correlation", I(s, "corr.safetensors")], "link.json",
                               "not a transmod output"),
    "assign --out an earlier correlation": (lambda s: ["assign", "--correlation", I(s, "corr.safetensors")],
                                            "inputs/corr.safetensors", "the input"),
    "fit-alignment --out an earlier correlation": (lambda s: pair("fit-alignment", s, I(s, "t.parquet"), I(s, "s.parquet"),
                                                                 "--method", "linear"),
                                                  "inputs/corr.safetensors", "transmod correlation output"),
    "fidelity --out a user json": (lambda s: ["fidelity", "--module", I(s, "adapter"), "--transferred", I(s, "moved"),
                                              "--teacher", I(s, "t.parquet"), "--student", I(s, "s.parquet"),
                                              "--mapping", "skip"], "results.json", "not a transmod output"),
    # ---- silently wrong: mismatched or damaged samples
    "correlate samples of different data": (lambda s: pair("correlate", s, I(s, "t.parquet"), I(s, "o.parquet")), None,
                                            "different data"),
    "fit-alignment samples of different data": (lambda s: pair("fit-alignment", s, I(s, "t.parquet"), I(s, "o.parquet"),
                                                               "--method", "procrustes"), None, "different data"),
    "fidelity samples of different data": (lambda s: ["fidelity", "--module", I(s, "adapter"), "--transferred",
                                                      I(s, "moved"), "--teacher", I(s, "t.parquet"), "--student",
                                                      I(s, "o.parquet"), "--mapping", "skip"], None, "different data"),
    "samples cut short": (lambda s: pair("correlate", s, I(s, "t.parquet"), _broken(
        s, "short.parquet", "s.parquet", _parquet_meta(lambda m: (json.dumps(m).encode(), lambda n: n - 5))),
    ), None, "cut or altered"),
    "sample metadata damaged": (lambda s: pair("correlate", s, I(s, "t.parquet"), _broken(
        s, "damaged.parquet", "s.parquet", _parquet_meta(lambda m: (b"{not json", lambda n: n))),
    ), None, "damaged"),
    "sample metadata without num_tokens": (lambda s: pair("correlate", s, I(s, "t.parquet"), _broken(
        s, "no-count.parquet", "s.parquet",
        _parquet_meta(lambda m: (json.dumps({k: v for k, v in m.items() if k != "num_tokens"}).encode(), lambda n: n))),
    ), None, "lacks num_tokens"),
    "samples from an older transmod (no fingerprint)": (lambda s: pair("correlate", s, I(s, "t.parquet"), _broken(
        s, "old.parquet", "s.parquet",
        _parquet_meta(lambda m: (json.dumps({k: v for k, v in m.items() if k != "data"}).encode(), lambda n: n))),
    ), None, "lacks data"),
    "a text file as samples": (lambda s: pair("correlate", s, I(s, "t.parquet"), I(s, "text.txt")), None,
                               "not a readable parquet"),
    "peft target_modules do not match the weights": (lambda s: transfer(s, _broken(
        s, "peft-targets", "peft", _json_edit("adapter_config.json", lambda c: c.update(target_modules=["query"]))),
    ), None, "target_modules"),
    "peft r does not match the weights": (lambda s: transfer(s, _broken(
        s, "peft-rank", "peft", _json_edit("adapter_config.json", lambda c: c.update(r=8)))), None, "rank"),
    "sample --max-length 0": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data",
                                         I(s, "text.txt"), "--max-length", "0"], None, "--max-length"),
    "adapter placed after the layer norm": (lambda s: transfer(s, _broken(
        s, "ln-after", "adapter", _json_edit("adapter_config.json", lambda c: c["config"].update(original_ln_before=False))),
    ), None, "original_ln_before=False"),
    # ---- one line, never a traceback
    "invalid JSON in adapter_config.json": (lambda s: transfer(s, _broken(
        s, "bad-config", "adapter", _write("{not json", "adapter_config.json"))), None, "not readable as JSON"),
    "adapter_config.json is a list": (lambda s: transfer(s, _broken(
        s, "list-config", "adapter", _write("[1, 2]", "adapter_config.json"))), None, "not a module config"),
    "invalid JSON in the teacher's config.json": (lambda s: transfer(s, "adapter", _broken(
        s, "bad-model", "teacher", _write("{oops", "config.json"))), None, "not readable as JSON"),
    "invalid JSON in the sampled model's config.json": (lambda s: ["sample", "--model", _broken(
        s, "bad-model", "teacher", _write("{oops", "config.json")), "--peft", "adapter", "--data", I(s, "text.txt")],
        None, "not readable as JSON"),
    "truncated adapter.safetensors": (lambda s: transfer(s, _broken(
        s, "short-weights", "adapter", _truncate("adapter.safetensors"))), None, "not a readable safetensors"),
    "garbage adapter.safetensors": (lambda s: transfer(s, _broken(
        s, "garbage-weights", "adapter", _write(b"\xff" * 64, "adapter.safetensors"))), None, "not a readable safetensors"),
    "truncated peft adapter_model.safetensors": (lambda s: transfer(s, _broken(
        s, "short-peft", "peft", _truncate("adapter_model.safetensors"))), None, "not a readable safetensors"),
    "fidelity --transferred truncated": (lambda s: ["fidelity", "--module", I(s, "adapter"), "--transferred", _broken(
        s, "short-moved", "moved", _truncate("adapter.safetensors")), "--teacher", I(s, "t.parquet"), "--student",
        I(s, "s.parquet"), "--mapping", "skip"], None, "not a readable safetensors"),
    "a pickle as pytorch_adapter.bin": (lambda s: transfer(s, _broken(s, "pickled", "adapter", _pickle_bin)), None,
                                        "refused"),
    "binary garbage as sample --data": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data",
                                                   I(s, "garbage.bin")], None, "not UTF-8 text"),
    "binary garbage as transfer --samples": (lambda s: transfer(s, "adapter", "teacher", "student", "--samples",
                                                                I(s, "garbage.bin")), None, "not UTF-8 text"),
    "garbage as a .parquet --data": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data",
                                                _broken(s, "data.parquet", "garbage.bin", lambda p: None)], None,
                                     "not a readable parquet"),
    "sample --batch-size 0": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data",
                                         I(s, "text.txt"), "--batch-size", "0"], None, "must be at least 1"),
    "sample --max-tokens -3": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "adapter", "--data",
                                          I(s, "text.txt"), "--max-tokens", "-3"], None, "must be at least 1"),
    "correlate --batch-size 0": (lambda s: pair("correlate", s, I(s, "t.parquet"), I(s, "s.parquet"), "--batch-size", "0"),
                                 None, "must be at least 1"),
    "fit-alignment --batch-size x": (lambda s: pair("fit-alignment", s, I(s, "t.parquet"), I(s, "s.parquet"), "--method",
                                                    "linear", "--batch-size", "x"), None, "not an integer"),
    "fit-alignment unknown method": (lambda s: pair("fit-alignment", s, I(s, "t.parquet"), I(s, "s.parquet"), "--method",
                                                    "magic"), None, "magic"),
    "fit-alignment --holdout 1.5": (lambda s: pair("fit-alignment", s, I(s, "t.parquet"), I(s, "s.parquet"), "--method",
                                                   "linear", "--holdout", "1.5"), None, "--holdout"),
    "assign garbage correlation": (lambda s: ["assign", "--correlation", I(s, "garbage.bin")], None,
                                   "not a transmod correlation"),
    "transfer garbage --assignment": (lambda s: transfer(s, "adapter", "wide", "narrow", "--assignment",
                                                         I(s, "garbage.bin")), None, "not a transmod alignment"),
    "transfer garbage --alignment": (lambda s: transfer(s, "adapter", "teacher", "student", "--alignment",
                                                        I(s, "garbage.bin")), None, "not a transmod alignment"),
    "sample a missing model folder": (lambda s: ["sample", "--model", "./no/such/model", "--peft", "adapter", "--data",
                                                 I(s, "text.txt")], None, "./no/such/model"),
    "transfer a hub id, offline": (lambda s: transfer(s, "adapter", "nobody/no-such-model"), None, "not reachable"),
    "transfer --format peft of an adapter": (lambda s: transfer(s, "adapter", "teacher", "student", "--format", "peft"),
                                             None, "LoRA modules only"),
    "sample --peft bogus": (lambda s: ["sample", "--model", I(s, "teacher"), "--peft", "bogus", "--data",
                                       I(s, "text.txt")], None, "invalid choice"),
    "correlate without --student": (lambda s: ["correlate", "--teacher", I(s, "t.parquet"), "--mapping", "skip"], None,
                                    "--student"),
    "module for another architecture": (lambda s: transfer(s, "adapter", "wide", "narrow", "--align", "select"), None,
                                        "saved for a bert model"),
    # ---- modules: config vs weights, non-finite numbers
    "adapters LoRA r 8, rank-4 weights": (_module_config("lora", "lora-r8", r=8), None,
                                          "config.r is 8, but the weights in"),
    "adapters LoRA r 1000000000": (_module_config("lora", "lora-r-huge", r=1_000_000_000), None,
                                   "config.r is 1000000000, but the weights in"),
    "reduction_factor 8, bottleneck-6 adapter": (_module_config("adapter", "rf-8", reduction_factor=8), None,
                                                 "config.reduction_factor is 8, which gives a bottleneck of 3"),
    "reduction_factor 1e9": (_module_config("adapter", "rf-huge", reduction_factor=1e9), None,
                             "which gives a bottleneck of 0 at hidden size 24, but the weights in"),
    "reduction_factor -4": (_module_config("adapter", "rf-negative", reduction_factor=-4), None,
                            "config.reduction_factor is -4, but it must be a finite number above 0"),
    "reduction_factor 0": (_module_config("adapter", "rf-zero", reduction_factor=0), None,
                           "config.reduction_factor is 0, but it must be"),
    "reduction_factor a string": (_module_config("adapter", "rf-string", reduction_factor="four"), None,
                                  "config.reduction_factor is 'four', but it must be"),
    "reduction_factor NaN": (_module_config("adapter", "rf-nan", reduction_factor=float("nan")), None,
                             "config.reduction_factor is nan, but it must be"),
    "adapter dropout 1.5": (_module_config("adapter", "dropout", dropout=1.5), None,
                            "config.dropout is 1.5, but it must be a number from 0 to 1"),
    "adapters LoRA alpha NaN": (_module_config("lora", "alpha-nan", alpha=float("nan")), None,
                                "config.alpha is nan, but it must be a finite number above 0"),
    "adapters LoRA alpha inf": (_module_config("lora", "alpha-inf", alpha=float("inf")), None, "config.alpha is inf"),
    "adapters LoRA alpha -1": (_module_config("lora", "alpha-negative", alpha=-1), None, "config.alpha is -1"),
    "peft lora_alpha NaN": (_module_config("peft", "peft-alpha-nan", lora_alpha=float("nan")), None,
                            "lora_alpha is nan, but it must be a finite number above 0"),
    "peft lora_alpha -2": (_module_config("peft", "peft-alpha-negative", lora_alpha=-2), None, "lora_alpha is -2"),
    "peft r a string": (_module_config("peft", "peft-r-string", r="4"), None,
                        "r is '4', but it must be a whole number of at least 1"),
    "NaN in adapter weights": (lambda s: transfer(s, _broken(s, "adapter-nan", "adapter", _poison("adapter.safetensors"))),
                               None, "adapter_down.0.bias' holds 1 NaN or inf values"),
    "inf in adapters LoRA weights": (lambda s: transfer(s, _broken(
        s, "lora-inf", "lora", _poison("adapter.safetensors", float("inf")))), None, "lora_A' holds 1 NaN or inf values"),
    "NaN in peft LoRA weights": (lambda s: transfer(s, _broken(
        s, "peft-nan", "peft", _poison("adapter_model.safetensors"))), None, "lora_A.weight' holds 1 NaN or inf values"),
    "transfer --ridge nan": (lambda s: transfer(s, "adapter", "teacher", "student", "--align", "linear", "--samples",
                                                I(s, "text.txt"), "--ridge", "nan"), None, "argument --ridge: must be a finite"),
    "transfer --ridge inf": (lambda s: transfer(s, "adapter", "teacher", "student", "--align", "linear", "--samples",
                                                I(s, "text.txt"), "--ridge", "inf"), None, "argument --ridge: must be a finite"),
    "fit-alignment --ridge -1": (lambda s: pair("fit-alignment", s, I(s, "t.parquet"), I(s, "s.parquet"), "--method",
                                                "linear", "--ridge", "-1"), None, "argument --ridge: must be a finite"),
    "transfer --align select --samples": (lambda s: transfer(s, "adapter", "teacher", "student", "--align", "select",
                                                             "--samples", I(s, "text.txt")), None,
                                          "would be ignored"),
    "transfer --align lsa, same width, no samples": (lambda s: transfer(s, "adapter", "teacher", "student", "--align", "lsa"),
                                                     None, "--align lsa fits the alignment on sampled hidden states"),
    "NaN in an alignment file": (lambda s: transfer(s, "adapter", "teacher", "student", "--alignment", _broken(
        s, "nan.alignment.safetensors", "lsa.safetensors", _nan_offset)), None, "h0.offset hold NaN or inf values"),
    # ---- options given and not used
    "transfer --ridge, no method": (lambda s: transfer(s, "adapter", "teacher", "student", "--ridge", "0.1"), None,
                                    "--ridge shrinks the maps of linear and procrustes only, so without --align"),
    "transfer --ridge with --samples (lsa)": (lambda s: transfer(s, "adapter", "teacher", "student", "--samples",
                                                                 I(s, "text.txt"), "--ridge", "0.1"), None,
                                              "so with --align lsa it would be ignored"),
    "transfer --ridge with --align select": (lambda s: transfer(s, "adapter", "teacher", "student", "--align", "select",
                                                                "--ridge", "0"), None, "so with --align select it would"),
    "transfer --ridge with --alignment": (lambda s: transfer(s, "adapter", "teacher", "student", "--alignment",
                                                             I(s, "lsa.safetensors"), "--ridge", "0.1"), None,
                                          "are fitted already, so it would be ignored"),
    "fit-alignment --ridge with --method lsa": (lambda s: pair("fit-alignment", s, I(s, "t.parquet"), I(s, "s.parquet"),
                                                               "--method", "lsa", "--ridge", "0.1"), None,
                                                "so with --method lsa it would be ignored"),
    "transfer --max-tokens without --samples": (lambda s: transfer(s, "adapter", "teacher", "student", "--max-tokens",
                                                                   "100"), None, "no --samples are given"),
    "transfer --max-tokens with --alignment": (lambda s: transfer(s, "adapter", "teacher", "student", "--alignment",
                                                                  I(s, "lsa.safetensors"), "--max-tokens", "100"), None,
                                               "drop --max-tokens, or give --samples"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_nothing_is_touched(cli_sandbox, monkeypatch, capfd, case):
    make, out, expected = CASES[case]
    monkeypatch.chdir(cli_sandbox)
    monkeypatch.setenv("HOME", str(cli_sandbox / "home"))
    argv = [str(a) for a in make(cli_sandbox)]
    out = out or "out"
    before = tree(cli_sandbox)
    capfd.readouterr()
    try:
        code = main(argv + ["--out", out])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), err
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    assert expected in err and "weights_only=False" not in err, err
    assert tree(cli_sandbox) == before, "the sandbox changed"
    assert not (cli_sandbox / "out").exists()


def test_overwrite_replaces_only_an_earlier_output_of_the_same_kind(cli_sandbox, tmp_path, capfd):
    m = cli_sandbox / "inputs"
    common = ["transfer", "--module", m / "adapter", "--teacher-model", m / "teacher", "--student-model", m / "student",
              "--mapping", "avg", "--out", tmp_path / "moved"]
    old = os.umask(0o002)  # a group-shared cluster folder
    try:
        assert main([str(a) for a in common]) == 0
        assert (tmp_path / "moved" / MARK_FILE).is_file()
        assert main([str(a) for a in common]) == 2 and "--overwrite" in capfd.readouterr().err
        first = {p.name: p.stat().st_ino for p in (tmp_path / "moved").iterdir()}
        assert main([str(a) for a in common + ["--overwrite"]]) == 0
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_ino for p in (tmp_path / "moved").iterdir()}.keys() == first.keys()
    assert not set(first.items()) & {(p.name, p.stat().st_ino) for p in (tmp_path / "moved").iterdir()}  # all new
    assert (tmp_path / "moved").stat().st_mode & 0o777 == 0o775
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "moved").iterdir()} == {0o664}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_a_killed_writers_temporary_is_cleaned_on_the_next_run(cli_sandbox, tmp_path):
    m = cli_sandbox / "inputs"
    argv = ["sample", "--model", m / "teacher", "--peft", "adapter", "--data", m / "text.txt", "--out", tmp_path / "s.parquet"]
    code = ("import os, sys, transmod.align.sampling as s; from transmod.cli import main\n"
            "s.sample_hidden_states = lambda *a, **k: os.kill(os.getpid(), 9)  # killed mid-sampling\n"
            "main(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True)
    assert done.returncode == -9
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers and not (tmp_path / "s.parquet").exists()
    assert main([str(a) for a in argv]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_hub_id_fails_at_once_without_a_route_to_the_hub(cli_sandbox, tmp_path):
    """Not in offline mode, but the endpoint refuses: one line within seconds, not a minute of retries."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    m = cli_sandbox / "inputs"
    started = time.monotonic()
    done = subprocess.run([TRANSMOD, "transfer", "--module", str(m / "adapter"), "--teacher-model", "nobody/no-model",
                           "--student-model", str(m / "student"), "--mapping", "skip", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env)
    assert time.monotonic() - started < 20
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not reachable" in done.stderr, done.stderr
    assert not (tmp_path / "o").exists()
    started = time.monotonic()  # a dataset by hub id, as a workflow job loads it
    code = ("from transmod.train.data import load_split\n"
            "from transmod.errors import TransmodError\n"
            "try:\n    load_split('nobody/no-data', 'pi', 'en', 'train')\n"
            "except TransmodError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert time.monotonic() - started < 20
    assert "nobody/no-data" in done.stdout and "OfflineModeIsEnabled" in done.stdout, done.stdout + done.stderr


# ---------------------------------------------------------------- the workflow's config validation

def _pos(folder: str, **changes) -> dict:
    """config.yaml with a declared part-of-speech task on `folder` (changes override its keys), run by the matching pair."""
    task = {"dataset": folder, "languages": ["en"], "kind": "token-classification", "text_columns": ["tokens"],
            "label_column": "upos", "metric": "accuracy", **changes}
    return study_config(**{"tasks.pos": task, "pairs.matching.tasks": ["ner", "pos"]})


CONFIG_CASES = {
    "seeds: [1.0]": (lambda f: study_config(seeds=[1.0]), "config key seeds.0"),
    "epochs: 1.5": (lambda f: study_config(**{"training.student.epochs": 1.5}), "config key training.student.epochs"),
    "unknown key": (lambda f: study_config(sedes=[1]), "unknown key(s) sedes"),
    "missing local teacher folder": (lambda f: study_config(**{"pairs.matching.teacher": "/no/such/teacher"}),
                                     "config key pairs.matching.teacher"),
    "missing local dataset folder": (lambda f: study_config(**{"tasks.ner.dataset": "./data/no-ner"}),
                                     "config key tasks.ner.dataset"),
    "aligned false across widths": (lambda f: study_config(**{"pairs.incompatible.aligned": False}),
                                    "config key pairs.incompatible.aligned"),
    "aligned false across local widths": (lambda f: study_config(**{"pairs.matching.teacher": f["w"],
                                                               "pairs.matching.student": f["n"]}),
                                          "config key pairs.matching.aligned"),
    "bottleneck wider than the model": (lambda f: study_config(**{"modules.adapter.bottleneck": 800}),
                                        "config key modules.adapter.bottleneck"),
    "method inits on an unaligned pair": (lambda f: study_config(inits=["default", "skip", "skip-procrustes"]),
                                          "config key inits"),
    "a pair's method inits, unaligned": (lambda f: study_config(**{"pairs.matching.inits": ["default", "avg-linear"]}),
                                         "config key pairs.matching.inits"),
    "student deeper than teacher": (lambda f: study_config(**{"pairs.matching.teacher": f["s"], "pairs.matching.student": f["t"]}),
                                    "config key pairs.matching.student"),
    "invalid model config.json": (lambda f: study_config(**{"pairs.matching.teacher": f["bad"]}), "not readable as JSON"),
    # tasks declared in the config
    "a task of unknown kind": (lambda f: _pos(f["pos"], kind="regression"), "config key tasks.pos.kind"),
    "an unknown metric": (lambda f: _pos(f["pos"], metric="bleu"), "config key tasks.pos.metric"),
    "a metric of another kind": (lambda f: _pos(f["pos"], kind="sequence-classification", metric="f1"),
                                 "config key tasks.pos.metric: f1 (entity-level F1 (conlleval)) does not score"),
    "entity F1 without BIO labels": (lambda f: _pos(f["pos"], metric="f1", labels=["NOUN", "VERB"]),
                                     "config key tasks.pos.metric: entity F1 reads BIO labels"),
    "a text pair given one column": (lambda f: _pos(f["pos"], kind="sequence-classification", text_pair=True),
                                     "config key tasks.pos.text_columns: a text-pair task"),
    "a label column missing from the data": (lambda f: _pos(f["pos"], label_column="tags"),
                                             "no column tags (it has tokens, upos); fix tasks.pos.label_column"),
    "label ids out of range": (lambda f: _pos(f["pos-bad-ids"]),
                               "column 'upos' holds 17, outside the label ids 0..16; fix the data or tasks.pos.labels"),
    "label names that miss classes": (lambda f: _pos(f["pos"], labels=["NOUN", "VERB"]),
                                      "tasks.pos.labels: 2 names, but dataset"),
    "a split name with a stray placeholder": (lambda f: _pos(f["pos"], splits={"train": "train_{language}",
                                                                                "validation": "v", "test": "t"}),
                                              "config key tasks.pos.splits.train"),
    "a custom task without its declaration": (lambda f: study_config(**{"tasks.pos": {"dataset": f["pos"], "languages": ["en"]}}),
                                              "config key tasks.pos: 'pos' is not a built-in task"),
    "a pair's task not declared": (lambda f: study_config(**{"pairs.matching.tasks": ["ner", "pos"]}),
                                   "config key pairs.matching.tasks: task 'pos' has no entry"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_refused_naming_the_key(model_folders, case):
    make, expected = CONFIG_CASES[case]
    with pytest.raises(TransmodError) as info:
        validate_config(make(model_folders), SCHEMA)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_shipped_configs_are_valid():
    validate_config(study_config(), SCHEMA, [REPO / "config.yaml"])
    for profile in ("demo", "minilm"):  # each profile's own section, against the schema that lives with it
        config = yaml.safe_load((REPO / "profiles" / profile / f"{profile}-config.yaml").read_text())
        validate_section(config, profile, REPO / "profiles" / profile / f"{profile}.schema.yaml")


BAD_FILES = {
    "duplicate key": ("seeds: [1]\npeft: [lora]\nseeds: [2]\n", "line 3: key 'seeds' is given twice"),
    "YAML syntax error": ("seeds: [1\npeft: lora\n", "line 2"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_config_file_names_file_and_line(tmp_path, case):
    text, expected = BAD_FILES[case]
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(TransmodError) as info:
        validate_config(study_config(), SCHEMA, [tmp_path / "c.yaml"])
    assert f"{tmp_path / 'c.yaml'}, {expected}" in str(info.value)


WORKFLOW_CASES = {
    "duplicate key": ("seeds: [1]\nseeds: [2]\n", "line 2: key 'seeds' is given twice"),
    "missing local model": ("pairs:\n  matching: {teacher: ./models/mbert, student: distilbert-base-multilingual-cased, "
                            "aligned: false, tasks: [ner]}\n", "config key pairs.matching.teacher"),
    "seeds: [1.0]": ("seeds: [1.0]\n", "config key seeds.0"),
    "method on an unaligned pair": ("inits: [default, skip-linear]\n", "config key inits"),
    "an init that names no mapping": ("inits: [default, sikp]\n", "config key inits.1: 'sikp' is not a student init"),
    "a bad demo section": ("demo: {sizes: {train: 0}}\n", "config key demo.sizes.train"),
    "a task of unknown kind": ("tasks:\n  pos: {dataset: data/pos, languages: [en], kind: tagging, text_columns: [tokens], "
                               "label_column: upos, metric: accuracy}\n", "config key tasks.pos.kind"),
}


@pytest.mark.parametrize("case", list(WORKFLOW_CASES))
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, case):
    text, expected = WORKFLOW_CASES[case]
    (tmp_path / "mine.yaml").write_text(text)
    (tmp_path / "notes.txt").write_text("mine\n")
    before = tree(tmp_path)
    done = snakemake("-n", "--configfile", tmp_path / "mine.yaml", cwd=tmp_path,
                     check=False)
    assert done.returncode != 0
    assert expected in done.stdout and "Traceback (most recent call last)" not in done.stdout, done.stdout
    assert tree(tmp_path) == before


def test_a_yaml_error_in_the_workflows_config_names_file_and_line(tmp_path):
    """The workflow's own config.yaml is read by the Snakefile, which checks it first."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    text = (tmp_path / "config.yaml").read_text().replace("seeds: [1]", "seeds: [1", 1)
    (tmp_path / "config.yaml").write_text(text)
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", tmp_path / "Snakefile"], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert done.returncode != 0
    assert f"{tmp_path / 'config.yaml'}, line " in done.stdout and "YAML syntax error" in done.stdout, done.stdout
    assert "Traceback (most recent call last)" not in done.stdout
