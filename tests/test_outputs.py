"""Where transmod writes, against real processes: `--overwrite` keeps what the user added, two writers of one
output never both succeed, SIGTERM and SIGINT leave nothing behind, and a full disk is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.commands import TRANSMOD, sigint_default
from helpers.models import SENTENCES, add_module, make_model, save_model

from transmod.align.samplefile import SampleFile
from transmod.atomic import MARK, MARK_FILE
from transmod.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    m = tmp_path_factory.mktemp("inputs")
    save_model(make_model("bert", 4), m / "teacher")
    save_model(make_model("distilbert", 2), m / "student")
    save_model(make_model("xlm-roberta", 4, hidden=24), m / "wide")
    save_model(make_model("xlm-roberta", 2, hidden=16), m / "narrow")
    add_module(make_model("bert", 4), "adapter").save_adapter(str(m / "adapter"), "task", use_safetensors=True)
    add_module(make_model("xlm-roberta", 4, hidden=24), "lora").save_adapter(str(m / "wide-lora"), "task",
                                                                             use_safetensors=True)
    (m / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    (m / "long.txt").write_text("\n".join(SENTENCES * 40) + "\n")  # slow enough to be stopped mid-way
    (m / "longer.txt").write_text("\n".join(SENTENCES * 600) + "\n")  # 100,000 tokens: several seconds of one shot
    for name, model in (("t", "wide"), ("s", "narrow")):
        assert main(["sample", "--model", str(m / model), "--peft", "lora", "--data", str(m / "text.txt"),
                     "--out", str(m / f"{name}.parquet")]) == 0
    return m


def _transfer(m: Path, out: Path, *extra) -> list[str]:
    return ["transfer", "--module", str(m / "adapter"), "--teacher-model", str(m / "teacher"), "--student-model",
            str(m / "student"), "--mapping", "skip", "--out", str(out), *extra]


def _one_line(err: str) -> None:
    """One error line; the progress lines of the steps before it (`transmod: ...`) aside."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("transmod: ")]
    assert len(lines) == 1 and "Traceback" not in err, err


def test_overwrite_keeps_a_file_the_user_added_and_refuses(inputs, tmp_path, capfd):
    out = tmp_path / "o"
    assert main(_transfer(inputs, out)) == 0
    mark = json.loads((out / MARK_FILE).read_text())
    assert mark[MARK] == "module" and set(mark["files"]) == {p.name for p in out.iterdir()} - {MARK_FILE}
    (out / "NOTES.txt").write_text("mine\n")
    (out / "sub").mkdir()
    (out / "sub" / "more.txt").write_text("also mine\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capfd.readouterr()
    assert main(_transfer(inputs, out, "--overwrite")) == 2
    err = capfd.readouterr().err
    _one_line(err)
    assert "NOTES.txt" in err and "not written by transmod" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no temporaries left


def test_a_file_added_while_the_new_output_is_written_is_kept(inputs, tmp_path, monkeypatch):
    """The check runs again on the old folder after it is moved aside, where nothing can be added to it any more."""
    import safetensors.numpy

    out = tmp_path / "o"
    assert main(_transfer(inputs, out)) == 0
    real = safetensors.numpy.save_file

    def save_and_meddle(state, path, *a, **k):
        real(state, path, *a, **k)
        (out / "late.txt").write_text("added during the write\n")

    monkeypatch.setattr(safetensors.numpy, "save_file", save_and_meddle)
    assert main(_transfer(inputs, out, "--overwrite")) == 2
    assert (out / "late.txt").read_text() == "added during the write\n" and (out / MARK_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_an_output_of_an_older_transmod_is_replaced_only_by_the_same_files(inputs, tmp_path, capfd):
    out = tmp_path / "o"
    assert main(_transfer(inputs, out)) == 0
    (out / MARK_FILE).unlink()
    (out / ".transmod-output").write_text("module\n")  # how transmod 0.x marked a folder
    assert main(_transfer(inputs, out, "--overwrite")) == 0 and (out / MARK_FILE).is_file()
    (out / MARK_FILE).unlink()
    (out / ".transmod-output").write_text("module\n")
    (out / "NOTES.txt").write_text("mine\n")
    capfd.readouterr()
    assert main(_transfer(inputs, out, "--overwrite")) == 2 and "NOTES.txt" in capfd.readouterr().err
    assert (out / "NOTES.txt").read_text() == "mine\n"


@pytest.mark.parametrize("verb", ["sample", "transfer"])
def test_two_writers_of_one_output_exactly_one_wins(inputs, tmp_path, verb):
    out = tmp_path / ("same.parquet" if verb == "sample" else "same")
    argv = (["sample", "--model", str(inputs / "teacher"), "--peft", "adapter", "--data", str(inputs / "text.txt"),
             "--out", str(out)] if verb == "sample" else _transfer(inputs, out))
    procs = [subprocess.Popen([TRANSMOD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    _one_line(loser)
    assert "another process" in loser or "already there" in loser, loser
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporaries left


def _catches_sigterm(proc: subprocess.Popen) -> bool:
    """Whether the process has installed its SIGTERM handler (`transmod.cli.main` has started)."""
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except OSError:
        return False
    caught = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _stop_mid_write(argv: list[str], ready, sig: int, env: dict) -> subprocess.CompletedProcess:
    """Start a real `transmod`, wait until `ready(proc)`, then send `sig`."""
    proc = subprocess.Popen([TRANSMOD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=sigint_default)
    deadline = time.monotonic() + 120
    while not ready(proc) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"finished before it could be stopped: {proc.stderr.read()}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_sample_overwrite_leaves_the_old_file_and_nothing_else(inputs, tmp_path, sig):
    out = tmp_path / "s.parquet"
    argv = ["sample", "--model", str(inputs / "teacher"), "--peft", "adapter", "--data", str(inputs / "long.txt"),
            "--out", str(out), "--batch-size", "1"]
    assert main(argv[:-2] + ["--batch-size", "8"]) == 0
    old = out.read_bytes()
    done = _stop_mid_write(argv + ["--overwrite"], lambda _: any(p.name.endswith(".tmp") for p in tmp_path.iterdir()),
                           sig, dict(os.environ))
    assert done.returncode == 128 + sig, done.stderr
    _one_line(done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]
    if "interrupted; nothing was written" in done.stderr:
        assert out.read_bytes() == old
    else:  # on a loaded machine the signal may come after the new file is in place: then it says so
        assert f"interrupted; {out} was written whole before that" in done.stderr, done.stderr
        assert SampleFile.open(out).num_tokens > 0 and out.read_bytes() != old  # whole: its row count checks out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_one_shot_transfer_leaves_nothing(inputs, tmp_path, sig):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    argv = ["transfer", "--module", str(inputs / "wide-lora"), "--teacher-model", str(inputs / "wide"),
            "--student-model", str(inputs / "narrow"), "--mapping", "skip", "--samples", str(inputs / "longer.txt"),
            "--max-tokens", "100000", "--out", str(tmp_path / "moved")]  # on an idle machine 20,000 took 1.1 s
    def sampling(proc: subprocess.Popen) -> bool:  # the models load within a second of main's start
        if _catches_sigterm(proc):
            time.sleep(1.5)
            return True
        return False

    done = _stop_mid_write(argv, sampling, sig, dict(os.environ, TMPDIR=str(scratch)))
    assert done.returncode == 128 + sig, done.stderr
    _one_line(done.stderr)
    assert not list(scratch.rglob("*")), (list(scratch.rglob("*")), done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]


def test_sigterm_while_an_output_moves_into_place_waits_for_it_beside_other_threads(tmp_path):
    """A job installs no SIGTERM handler, and its process runs other threads (torch's, BLAS's), to which the kernel
    hands a signal that the main thread holds back: the default action then ends the process, but only once the
    output is in place."""
    out = tmp_path / "out.txt"
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, threading
        from transmod.atomic import atomic_path

        threading.Thread(target=threading.Event().wait, daemon=True).start()
        real_replace = os.replace

        def replace_after_sigterm(source, target):
            os.kill(os.getpid(), signal.SIGTERM)
            real_replace(source, target)

        os.replace = replace_after_sigterm
        with atomic_path({str(out)!r}) as tmp:
            tmp.write_text("whole\\n")
        print("not stopped")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stdout, done.stderr)
    assert out.read_text() == "whole\n" and "not stopped" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.py", "out.txt"]


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A real, nearly full file system: a small tmpfs (needs root, as on CI)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        if os.environ.get("TRANSMOD_CI"):
            pytest.fail("CI runs as root and must mount a tmpfs for the full-disk test")
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(inputs, tmp_path, full_disk):
    (full_disk / "mine.txt").write_bytes(b"kept" * 16 * 1024)  # the disk is full
    out = full_disk / "o"
    transfer = [TRANSMOD, "transfer", "--module", str(inputs / "wide-lora"), "--teacher-model", str(inputs / "wide"),
                "--student-model", str(inputs / "narrow"), "--mapping", "skip", "--align", "select"]
    for argv in (transfer + ["--out", str(out)],
                 [TRANSMOD, "sample", "--model", str(inputs / "teacher"), "--peft", "adapter", "--data",
                  str(inputs / "long.txt"), "--out", str(full_disk / "s.parquet")],
                 [TRANSMOD, "correlate", "--teacher", str(inputs / "t.parquet"), "--student", str(inputs / "s.parquet"),
                  "--mapping", "skip", "--out", str(full_disk / "corr.safetensors")]):
        done = subprocess.run(argv, capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        _one_line(done.stderr)
        assert "No space left on device" in done.stderr, done.stderr
        assert sorted(p.name for p in full_disk.iterdir()) == ["mine.txt"]
