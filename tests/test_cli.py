"""The `transmod` command end to end, and its answer to every kind of bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers.commands import TRANSMOD, run_cli
from helpers.models import SENTENCES, add_module, make_model, save_model

from transmod.align.samplefile import from_vectors, to_vectors


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = {
        "teacher": save_model(make_model("bert", 4, hidden=24), root / "teacher"),
        "student": save_model(make_model("distilbert", 2, hidden=24), root / "student"),
        "narrow": save_model(make_model("xlm-roberta", 2, hidden=16), root / "narrow"),
        "wide": save_model(make_model("xlm-roberta", 4, hidden=24), root / "wide"),
        "deep": save_model(make_model("bert", 6, hidden=24), root / "deep"),
        "shallow": save_model(make_model("bert", 2, hidden=24), root / "shallow"),
    }
    for name, base in (("module", "teacher"), ("wide_module", "wide")):
        from transformers import AutoModel

        model = add_module(AutoModel.from_pretrained(paths[base]), "adapter")
        model.save_adapter(str(root / name), "task", use_safetensors=True)
        paths[name] = str(root / name)
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=2, n_embd=24, n_head=2, vocab_size=50)).save_pretrained(root / "gpt2")
    paths["gpt2"] = str(root / "gpt2")
    return paths


def test_step_by_step_and_one_shot_agree(tmp_path, models, text_file, capsys):
    for who, model in (("t", models["wide"]), ("s", models["narrow"])):
        code, out, err = run_cli(capsys, "sample", "--model", model, "--peft", "adapter", "--data", text_file,
                             "--out", tmp_path / f"{who}.parquet", "--max-tokens", 200)
        assert code == 0, err
    assert run_cli(capsys, "correlate", "--teacher", tmp_path / "t.parquet", "--student", tmp_path / "s.parquet",
               "--mapping", "skip", "--out", tmp_path / "c.safetensors", "--teacher-model", models["wide"],
               "--student-model", models["narrow"])[0] == 0
    code, out, _ = run_cli(capsys, "assign", "--correlation", tmp_path / "c.safetensors", "--out", tmp_path / "a.safetensors")
    assert code == 0 and "mean matched r" in out
    common = ["--module", models["wide_module"], "--teacher-model", models["wide"], "--student-model", models["narrow"],
              "--mapping", "skip"]
    assert run_cli(capsys, "transfer", *common, "--alignment", tmp_path / "a.safetensors", "--out", tmp_path / "x")[0] == 0
    assert run_cli(capsys, "transfer", *common, "--samples", text_file, "--max-tokens", 200, "--out", tmp_path / "y")[0] == 0
    a = (tmp_path / "x" / "adapter.safetensors").read_bytes()
    assert a == (tmp_path / "y" / "adapter.safetensors").read_bytes()
    config = json.loads((tmp_path / "x" / "adapter_config.json").read_text())
    assert config["hidden_size"] == 16 and config["config"]["reduction_factor"] * 6 == pytest.approx(16)


def test_help_of_every_verb_has_runnable_examples():
    from transmod.cli import EXAMPLES

    for command in ("sample", "correlate", "assign", "transfer", "fit-alignment", "fidelity"):
        done = subprocess.run([TRANSMOD, command, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "examples:" in done.stdout, command
        examples = [line.strip() for line in EXAMPLES[command].splitlines() if line.strip().startswith("transmod ")]
        assert examples and all(line.split()[1] == command or command == "fit-alignment" for line in examples), command
    assert "model.load_adapter(OUT)" in subprocess.run([TRANSMOD, "transfer", "--help"], capture_output=True,
                                                       text=True).stdout


def test_help_lists_every_verb_and_puts_each_example_option_on_its_own_line():
    from transmod.cli import EXAMPLES

    usage = subprocess.run([TRANSMOD, "--help"], capture_output=True, text=True).stdout
    assert all(verb in usage.split("{", 1)[1].split("}", 1)[0].split(",") for verb in EXAMPLES), usage
    for command, text in EXAMPLES.items():
        help_text = subprocess.run([TRANSMOD, command, "--help"], capture_output=True, text=True).stdout
        for line in help_text.splitlines():  # a continued example ends in a backslash, the next line indented:
            assert "   --" not in line.strip(), (command, line)  # a lost line break leaves that indent mid-line


def _bad_module(tmp_path, models, what):
    folder = tmp_path / what
    shutil.copytree(models["module"], folder)
    if what == "no-weights":
        (folder / "adapter.safetensors").unlink()
    elif what == "no-config":
        (folder / "adapter_config.json").unlink()
    return folder


def _samples(tmp_path, models, capsys, model="teacher"):
    out = tmp_path / f"{model}.parquet"
    if not out.exists():
        text = tmp_path / "s.txt"
        text.write_text("\n".join(SENTENCES[:8]))
        assert run_cli(capsys, "sample", "--model", models[model], "--peft", "adapter", "--data", text, "--out", out)[0] == 0
    return out


def _poisoned(tmp_path, models, capsys):
    table = pq.read_table(_samples(tmp_path, models, capsys, "student"))
    meta = pq.ParquetFile(_samples(tmp_path, models, capsys, "student")).metadata.metadata
    values = from_vectors(table.column("h1").combine_chunks()).copy()
    values[3, 5] = np.nan
    table = table.set_column(table.schema.get_field_index("h1"), "h1", to_vectors(values))
    out = tmp_path / "nan.parquet"
    with pq.ParquetWriter(out, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(meta)
    return out


CASES = {
    "module without weights": lambda t, m, c: ["transfer", "--module", _bad_module(t, m, "no-weights"),
        "--teacher-model", m["teacher"], "--student-model", m["student"], "--mapping", "skip"],
    "module without config": lambda t, m, c: ["transfer", "--module", _bad_module(t, m, "no-config"),
        "--teacher-model", m["teacher"], "--student-model", m["student"], "--mapping", "skip"],
    "module layers missing in teacher": lambda t, m, c: ["transfer", "--module", m["module"],
        "--teacher-model", m["shallow"], "--student-model", m["shallow"], "--mapping", "skip"],
    "student deeper than teacher": lambda t, m, c: ["transfer", "--module", m["module"],
        "--teacher-model", m["teacher"], "--student-model", m["deep"], "--mapping", "skip"],
    "different widths, no samples": lambda t, m, c: ["transfer", "--module", m["wide_module"],
        "--teacher-model", m["wide"], "--student-model", m["narrow"], "--mapping", "skip"],
    "unsupported architecture": lambda t, m, c: ["transfer", "--module", m["module"],
        "--teacher-model", m["gpt2"], "--student-model", m["student"], "--mapping", "skip"],
    "parquet does not match the model": lambda t, m, c: ["correlate", "--teacher", _samples(t, m, c),
        "--student", _samples(t, m, c), "--teacher-model", m["narrow"], "--mapping", "skip"],
    "empty sample data": lambda t, m, c: ["sample", "--model", m["teacher"], "--peft", "adapter",
        "--data", (t / "empty.txt", (t / "empty.txt").write_text("\n"))[0]],
    "samples with NaN": lambda t, m, c: ["correlate", "--teacher", _samples(t, m, c, "teacher"),
        "--student", _poisoned(t, m, c), "--mapping", "skip"],
}
EXPECTED = {
    "module without weights": "no weights",
    "module without config": "no adapter_config.json",
    "module layers missing in teacher": "has only 2 layers",
    "student deeper than teacher": "deeper than",
    "different widths, no samples": "give --samples",
    "unsupported architecture": "supported model types are bert",
    "parquet does not match the model": "sample that model",
    "empty sample data": "holds no text",
    "samples with NaN": "NaN or inf",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_no_output(tmp_path, models, capsys, case):
    argv = CASES[case](tmp_path, models, capsys)
    out = tmp_path / "result"
    code, _, err = run_cli(capsys, *argv, "--out", out)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err
    assert EXPECTED[case] in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".result")]  # no temp leftovers


def test_console_script_exit_code(tmp_path, models):
    done = subprocess.run(
        [TRANSMOD, "transfer", "--module", str(tmp_path / "nowhere"), "--teacher-model", models["teacher"],
         "--student-model", models["student"], "--mapping", "skip", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no adapter_config.json" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_decoder_and_an_encoder_are_refused_as_such_whichever_is_deeper(tmp_path, capsys):
    """A Qwen teacher and a deeper BERT student: swapping them would not help, so the kinds are what is said."""
    pytest.importorskip("peft")
    from helpers.decoders import make_decoder, peft_lora, save_decoder

    teacher = make_decoder("qwen2", layers=2)
    peft_lora(teacher, tmp_path / "lora")
    make_model("bert", 4, hidden=64).save_pretrained(tmp_path / "bert")
    argv = ["transfer", "--module", tmp_path / "lora", "--teacher-model", save_decoder(teacher, tmp_path / "qwen"),
            "--student-model", tmp_path / "bert", "--mapping", "skip", "--out", tmp_path / "out"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1, err
    assert "is a decoder LLM (qwen2)" in err and "an encoder (bert)" in err and "swap" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_same_width_transfer_imports_neither_pyarrow_nor_scipy(tmp_path, models):
    """The command itself, in a fresh process: the sample reader (pyarrow) and the fitting (scipy) stay unloaded."""
    code = ("import sys, transmod.cli as c; code = c.main(sys.argv[1:]); "
            "print(code, 'pyarrow' in sys.modules, 'scipy' in sys.modules)")
    argv = ["transfer", "--module", models["module"], "--teacher-model", models["teacher"], "--student-model",
            models["student"], "--mapping", "skip", "--out", tmp_path / "out"]
    done = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True)
    assert done.stdout.split()[-3:] == ["0", "False", "False"], done.stdout + done.stderr
    assert (tmp_path / "out" / "adapter.safetensors").is_file()
