"""The Python API, as a notebook calls it: `transmod.transfer(...)`, then `.save(folder)` and the plain
`model.load_adapter(folder)`; it writes what `transmod transfer` writes for the same arguments."""

import json
import subprocess
import sys

import pytest
from helpers.models import add_module, make_model, save_model
from safetensors.numpy import load_file

import transmod
from transmod.align.api import TransferNotice
from transmod.cli import main
from transmod.errors import TransmodError


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    paths = {
        "teacher": save_model(make_model("bert", 4), root / "teacher"),
        "student": save_model(make_model("distilbert", 2, seed=3), root / "student"),
        "wide": save_model(make_model("xlm-roberta", 4, hidden=24), root / "wide"),
        "narrow": save_model(make_model("xlm-roberta", 2, hidden=16, seed=3), root / "narrow"),
    }
    for name, (kind, layers, hidden) in {"adapter": ("bert", 4, 24), "wide_lora": ("xlm-roberta", 4, 24)}.items():
        add_module(make_model(kind, layers, hidden=hidden), name.rsplit("_")[-1]).save_adapter(str(root / name), "task")
        paths[name] = str(root / name)
    return paths


def _loaded(student: str, folder) -> dict:
    """The module's weights as `adapters` loads them: the plain call, in a fresh model."""
    import adapters
    from transformers import AutoModel

    model = AutoModel.from_pretrained(student)
    adapters.init(model)
    name = model.load_adapter(str(folder))
    return {k: v.numpy() for k, v in model.state_dict().items() if f".{name}." in k}


def _cli(tmp_path, **options) -> str:
    argv = ["transfer"] + [str(a) for k, v in options.items() for a in (f"--{k.replace('_', '-')}", v)]
    assert main(argv + ["--out", str(tmp_path / "cli")]) == 0
    return str(tmp_path / "cli")


@pytest.mark.parametrize("pair", ["same width", "different widths, procrustes on samples"])
def test_a_notebook_call_writes_what_the_cli_writes(folders, tmp_path, text_file, pair):
    if pair == "same width":
        module, teacher, student, fit = folders["adapter"], folders["teacher"], folders["student"], {}
    else:
        module, teacher, student = folders["wide_lora"], folders["wide"], folders["narrow"]
        fit = {"samples": str(text_file), "method": "procrustes"}
    moved = transmod.transfer(module, teacher=teacher, student=student, mapping="skip", **fit)
    assert moved.mapping == "skip" and moved.method == fit.get("method")
    assert (moved.alignment is None) == (not fit)
    folder = moved.save(tmp_path / "api")
    cli = _cli(tmp_path, module=module, teacher_model=teacher, student_model=student, mapping="skip",
               **{"align" if k == "method" else k: v for k, v in fit.items()})
    written = (folder / "adapter.safetensors").read_bytes()
    assert written == (tmp_path / "cli" / "adapter.safetensors").read_bytes()
    expected = load_file(f"{cli}/adapter.safetensors")
    loaded = _loaded(student, folder)
    assert loaded.keys() == expected.keys() and expected
    assert all((loaded[k] == v).all() for k, v in expected.items())
    provenance = json.loads((folder / "adapter_config.json").read_text())["transmod"]
    assert provenance["align"] == fit.get("method") and provenance["mapping"] == "skip"


def test_out_saves_on_the_way_and_refuses_a_path_transmod_did_not_write(folders, tmp_path):
    same = dict(teacher=folders["teacher"], student=folders["student"], mapping="avg")
    moved = transmod.transfer(folders["adapter"], **same, out=tmp_path / "moved")
    assert moved.format == "adapters" and (tmp_path / "moved" / "adapter.safetensors").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    for overwrite in (False, True):
        with pytest.raises(TransmodError, match="not a transmod output"):
            transmod.transfer(folders["adapter"], **same, out=mine, overwrite=overwrite)
        with pytest.raises(TransmodError, match="not a transmod output"):
            moved.save(mine, overwrite=overwrite)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me\n"
    with pytest.raises(TransmodError, match="the input"):
        moved.save(folders["adapter"])
    with pytest.raises(TransmodError, match="pass --overwrite"):
        moved.save(tmp_path / "moved")
    assert moved.save(tmp_path / "moved", overwrite=True) == tmp_path / "moved"


def test_options_the_call_would_not_use_are_refused(folders, tmp_path, text_file):
    same = dict(teacher=folders["teacher"], student=folders["student"], mapping="skip")
    refused = {
        "overwrite=True replaces": dict(overwrite=True),
        "the samples would be ignored": dict(samples=text_file, alignment=text_file),
        "--ridge shrinks the maps of linear and procrustes only": dict(samples=text_file, ridge=0.1),
        "no --samples are given": dict(max_tokens=100),
        "--max-tokens must be a whole number": dict(samples=text_file, max_tokens=2.5),
        "--ridge must be a finite number": dict(samples=text_file, method="linear", ridge=float("nan")),
        "unknown --mapping 'skp'": dict(mapping="skp"),
        "unknown --lora-b": dict(lora_b="both"),
        "unknown alignment method 'magic'": dict(method="magic"),
        "--lora-b output aligns an encoder LoRA's B .* bottleneck adapter .* would be ignored": dict(lora_b="output"),
    }
    for expected, options in refused.items():
        with pytest.raises(TransmodError, match=expected):
            transmod.transfer(folders["adapter"], **{**same, **options})
    moved = transmod.transfer(folders["adapter"], **same)
    with pytest.raises(TransmodError, match="LoRA modules only"):
        moved.save(tmp_path / "peft", format="peft")
    assert not list(tmp_path.iterdir())


def test_a_max_length_beyond_the_models_positions_is_refused_before_a_pass(folders, tmp_path, text_file):
    from transmod.align.sampling import position_limit, sample_model
    from transmod.align.texts import read_texts
    from transformers import AutoConfig

    assert position_limit(AutoConfig.from_pretrained(folders["teacher"])) == 64
    wide = AutoConfig.from_pretrained(folders["wide"])
    assert position_limit(wide) == 64 - wide.pad_token_id - 1  # RoBERTa's positions start after the padding index
    with pytest.raises(TransmodError, match="--max-length 65 is longer than .* reads .64 positions.; give --max-length 64 or less"):
        sample_model(folders["teacher"], read_texts(text_file), {"adapter": tmp_path / "s.parquet"}, max_length=65)
    assert not list(tmp_path.iterdir())


def test_importing_transmod_loads_no_heavy_library():
    code = ("import sys, transmod; heavy = ('torch', 'pyarrow', 'scipy', 'transformers'); "
            "print([m for m in heavy if m in sys.modules], callable(transmod.transfer))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] True"


@pytest.mark.filterwarnings("ignore:Could not find a config file")
def test_a_decoders_data_free_fallback_is_a_warning(tmp_path):
    """What the CLI prints as a one-line notice a notebook sees as a warning (`TransferNotice`)."""
    pytest.importorskip("peft")
    from helpers.decoders import make_decoder, peft_lora, save_decoder

    teacher = make_decoder("qwen2", layers=4)
    peft_lora(teacher, tmp_path / "lora")
    student = make_decoder("qwen2", layers=2, hidden=48, heads=6, intermediate=96, seed=4)
    with pytest.warns(TransferNotice, match="--align embed"):
        moved = transmod.transfer(tmp_path / "lora", teacher=save_decoder(teacher, tmp_path / "t"),
                                  student=save_decoder(student, tmp_path / "s"), mapping="skip")
    assert moved.method == "embed" and moved.format == "peft"
