"""`transmod tables` against bad input and interruptions: names in plan.json that would put files outside the
results folder, scores outside their metric's range, files of the user's in tables/ or plots/, and a run
interrupted, killed or out of disk space while it writes.

A refused case exits non-zero with at most two lines on stderr, no traceback, the file and key named, and the
sandbox (the results folder with its earlier tables and plots, and a user's file beside it) unchanged byte for
byte. An interrupted or failed run leaves the earlier tables and plots as they were.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers.commands import TRANSMOD, sigint_default
from helpers.results import (
    edit_plan,
    make_results,
    refused,
    results_of,
)
from helpers.sandbox import tree

from transmod.atomic import MARK, MARK_FILE
from transmod.cli import main
from transmod.train.tasks import declare_task


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_results(tmp_path_factory.mktemp("tables") / "root").parents[1]


@pytest.fixture
def sandbox(pristine, tmp_path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(pristine, root, symlinks=True)
    return root


def add_run(**names):
    """A plan edit: one more requested run (no metrics file yet) with some of its names changed."""
    def change(data: dict) -> None:
        info = next(iter(data["runs"].values()))
        data["runs"]["runs/more/metrics.json"] = {**info, **names}
    return change


def add_alignment(**record):
    def change(data: dict) -> None:
        data["align"].append({"pair": "matching", "task": "pi", "lang": "en", "peft": "adapter", "mapping": "skip",
                              "assignment": "align/a.safetensors", "correlation": "align/c.safetensors", **record})
    return change


PLAN_CASES = {
    "a pair that climbs out of the folder": (add_run(pair="../../../x"), ".pair: '../../../x' is not a plain name"),
    "a task with a slash": (add_run(task="pi/x"), ".task: 'pi/x' is not a plain name"),
    "a language '.'": (add_run(lang="."), ".lang: '.' is not a plain name"),
    "a module '..'": (add_run(peft=".."), ".peft: '..' is not a plain name"),
    "an empty pair": (add_run(pair=""), ".pair: '' is not a plain name"),
    "a task with a NUL": (add_run(task="pi\0"), ".task: 'pi\\x00' is not a plain name"),
    "a metrics path out of the folder": (lambda d: d["runs"].update({"../../x/metrics.json": next(iter(d["runs"].values()))}),
                                         "'../../x/metrics.json' is not a path inside the results folder"),
    "an absolute alignment path": (add_alignment(assignment="/etc/passwd"), "align[0].assignment: '/etc/passwd'"),
    "an alignment's pair '..'": (add_alignment(pair=".."), "align[0].pair: '..' is not a plain name"),
    "a run without a seed": (lambda d: next(iter(d["runs"].values())).pop("seed"), "not run info with the keys"),
    "a seed that is a word": (add_run(seed="one"), ".seed: 'one' is not a whole number"),
    "an undeclared task": (add_run(task="topic"), ".task: 'topic' has no declaration"),
}


@pytest.mark.parametrize("case", list(PLAN_CASES))
def test_a_bad_name_in_the_plan_is_refused_naming_plan_json_and_the_key(sandbox, capfd, case):
    change, expected = PLAN_CASES[case]
    edit_plan(sandbox, change)
    refused(sandbox, capfd, "plan.json: ", expected, "snakemake results/plan.json -c1")
    assert not (sandbox / "x").exists()


def test_a_task_named_like_a_table_is_refused_not_written_twice(sandbox, capfd):
    def change(data: dict) -> None:
        data["tasks"] = {"summary": {**declare_task("pi").to_dict(), "name": "summary"}}
        add_run(task="summary")(data)

    edit_plan(sandbox, change)
    refused(sandbox, capfd, "tables/summary.md: two tables would be written there", "rename the task")


def set_metrics(**values):
    def change(data: dict) -> None:
        data.update(values)
    return change


METRICS_CASES = {
    "accuracy 42": (set_metrics(score=42), "score 42 is not a number from 0 to 1, the range of accuracy"),
    "NaN": (set_metrics(score=math.nan), "score NaN is not a number"),
    "infinity": (set_metrics(score=math.inf), "score Infinity is not a number"),
    "a string": (set_metrics(score="0.5"), 'score "0.5" is not a number'),
    "true": (set_metrics(score=True), "score true is not a number"),
    "a negative accuracy": (set_metrics(score=-0.1), "score -0.1 is not a number from 0 to 1"),
    "a Matthews correlation below -1": (set_metrics(metric="matthews", score=-1.5),
                                        "score -1.5 is not a number from -1 to 1, the range of Matthews correlation"),
    "an unknown metric": (set_metrics(metric="bleu"), "unknown metric 'bleu'"),
    "another metric than the task's": (set_metrics(metric="macro_f1"), "scored by macro_f1, but the config scores "
                                                                       "task pi by accuracy"),
    "a run name with a slash": (lambda d: d["run"].update(lang="en/x"), "run.lang: 'en/x' is not a plain name"),
}


@pytest.mark.parametrize("case", list(METRICS_CASES))
def test_a_bad_metrics_file_is_refused_naming_it(sandbox, capfd, case):
    change, expected = METRICS_CASES[case]
    victim = results_of(sandbox) / "runs/matching/pi/de/adapter/student-skip/seed2/metrics.json"
    data = json.loads(victim.read_text())
    change(data)
    victim.write_text(json.dumps(data))
    refused(sandbox, capfd, f"{victim}: ", expected, "re-run the evaluate job")


def test_an_unrequested_metrics_file_with_a_bad_name_is_refused(sandbox, capfd):
    """Metrics files that the plan does not request are read back too (to refuse another config's)."""
    seed1 = results_of(sandbox) / "runs/matching/pi/en/adapter/teacher/seed1/metrics.json"
    stray = seed1.parents[1] / "seed9" / "metrics.json"
    stray.parent.mkdir()
    data = json.loads(seed1.read_text())
    data["run"].update(seed=9, task="../../x")
    stray.write_text(json.dumps(data))
    refused(sandbox, capfd, f"{stray}: run.task: '../../x' is not a plain name")


def user_file(relative: str, text: str = "mine\n"):
    def make(results: Path) -> None:
        (results / relative).parent.mkdir(parents=True, exist_ok=True)
        (results / relative).write_text(text)
    return make


def edited(relative: str):
    def make(results: Path) -> None:
        with open(results / relative, "a") as handle:
            handle.write("my own note\n")
    return make


def linked_tables(results: Path) -> None:
    (results.parents[1] / "mydata").mkdir()
    shutil.rmtree(results / "tables")
    (results / "tables").symlink_to(results.parents[1] / "mydata")


def older_folder_with(relative: str):
    """A tables folder of an older transmod (no list of what it wrote) holding a file of the user's."""
    def make(results: Path) -> None:
        (results / "tables" / MARK_FILE).unlink()
        user_file(relative)(results)
    return make


OLD_LIST = ".transmod-files.json"  # where transmod tables listed its files before it used the folder mark


def listed_the_old_way(results: Path) -> None:
    """tables/ and plots/ as the transmod before one folder mark left them: the same list, under another name."""
    for folder in ("tables", "plots"):
        (results / folder / MARK_FILE).rename(results / folder / OLD_LIST)


def old_list_with(relative: str, text: str = "mine\n"):
    def make(results: Path) -> None:
        listed_the_old_way(results)
        user_file(relative, text)(results)
    return make


def figure_where_plots_held_none(results: Path) -> None:
    """The user's figure, named as the next run names one, in plots/ that transmod left empty (no finished run):
    its mark lists no file, which must not read as a mark that lists nothing."""
    metrics = {path: path.read_bytes() for path in (results / "runs").rglob("metrics.json")}
    for path in metrics:
        path.unlink()
    assert main(["tables", str(results)]) == 0
    assert files_of(results / "plots") == [MARK_FILE]
    for path, data in metrics.items():
        path.write_bytes(data)
    user_file("plots/incompatible/pi/scores.adapter.png", "my figure")(results)


def files_of(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


USER_CASES = {
    "a file in tables/": (user_file("tables/mine.txt"), "tables/mine.txt: not written by transmod tables"),
    "a file in a plot folder": (user_file("plots/matching/pi/mine.png"), "plots/matching/pi/mine.png: not written"),
    "a table the user edited": (edited("tables/summary.md"), "tables/summary.md: not written by transmod tables, "
                                                              "or changed since"),
    "a figure the user replaced": (user_file("plots/incompatible/pi/scores.adapter.png", "my figure"),
                                   "scores.adapter.png: not written by transmod tables, or changed since"),
    "tables/ a link to the user's folder": (linked_tables, "tables: not the folder transmod tables writes"),
    "a file in an older transmod's tables/": (older_folder_with("tables/notes.md"), "tables/notes.md: not written"),
    "a file beside the old list of tables/": (old_list_with("tables/notes.md"), "tables/notes.md: not written"),
    "a table the user replaced, listed the old way": (old_list_with("tables/summary.md"),
                                                      "tables/summary.md: not written by transmod tables, or changed"),
    "a figure of the user's where plots/ held none": (figure_where_plots_held_none,
                                                       "scores.adapter.png: not written by transmod tables"),
}


@pytest.mark.parametrize("case", list(USER_CASES))
def test_a_file_of_the_users_in_tables_or_plots_is_named_never_dropped(sandbox, capfd, case):
    make, expected = USER_CASES[case]
    make(results_of(sandbox))
    refused(sandbox, capfd, expected)


def test_an_older_workflows_fidelity_files_and_stale_outputs_go(sandbox, capsys):
    """An older workflow's fidelity_table rule wrote into tables/ and plots/ without listing its files: they were
    transmod's own and go with the old set (this plan names no fidelity file: no fidelity table), as do figures
    and pages of a setting the plan no longer has."""
    results = results_of(sandbox)
    theirs = {"tables/fidelity.md": b"| fidelity |\n", "tables/fidelity.csv": b"a,b\n", "plots/fidelity.png": b"\x89PNG"}
    for name, data in theirs.items():
        (results / name).write_bytes(data)
    edit_plan(sandbox, lambda d: d.update(runs={k: v for k, v in d["runs"].items() if v["pair"] == "matching"}))
    assert main(["tables", str(results)]) == 0
    assert not any((results / name).exists() for name in theirs)
    assert not (results / "plots/incompatible").exists() and not (results / "tables/html/incompatible.pi.html").exists()
    assert (results / "plots/matching/pi/scores.adapter.pdf").is_file()
    listed = json.loads((results / "tables" / MARK_FILE).read_text())["files"]
    assert "summary.md" in listed and "fidelity.md" not in listed
    assert not [p for p in results.iterdir() if p.name.endswith(".tmp")]


def the_marks_list_every_file(results: Path) -> None:
    """Each folder holds one mark (no list of an older transmod beside it), listing every other file with its
    SHA-256."""
    for folder in (results / "tables", results / "plots"):
        mark = json.loads((folder / MARK_FILE).read_text())
        assert mark[MARK] == "tables" and not (folder / OLD_LIST).exists()
        assert {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files_of(folder)
                if name != MARK_FILE} == mark["files"]


@pytest.mark.parametrize("older", ["listed nothing", "listed its files apart"])
def test_an_older_transmods_folder_is_replaced(sandbox, older):
    """Tables and plots of a transmod that listed nothing (the files the new set writes were its own), or listed
    them in a file of their own: replaced, new scores and all, and marked like every transmod folder."""
    results = results_of(sandbox)
    if older == "listed nothing":
        for folder in ("tables", "plots"):
            (results / folder / MARK_FILE).unlink()
    else:
        listed_the_old_way(results)
    before = the_set(results)
    rescore(results)
    assert main(["tables", str(results)]) == 0
    after = the_set(results)
    assert after["tables/summary.md"] != before["tables/summary.md"]
    assert {name for name in after if not name.endswith(MARK_FILE)} == {
        name for name in before if not name.endswith((MARK_FILE, OLD_LIST))}
    the_marks_list_every_file(results)


def test_without_a_plan_the_error_names_the_command_that_writes_it(tmp_path, capfd):
    assert main(["tables", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "snakemake results/plan.json -c1" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_no_finished_run_says_so_in_one_line_and_draws_no_empty_figure(sandbox, capfd):
    results = results_of(sandbox)
    for metrics in (results / "runs").rglob("metrics.json"):
        metrics.unlink()
    assert main(["tables", str(results)]) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0] == "0 of 32 runs finished (32 without a metrics file: empty cells, listed under the tables)", out
    assert len(out) == 2 and "no metrics file" not in "\n".join(out), out
    assert files_of(results / "plots") == [MARK_FILE]
    assert "matching/pi/de/adapter/student-skip/seed2" in (results / "tables/pi.md").read_text()


# ---------------------------------------------------------------------------------------------- interruptions

def the_set(results: Path) -> dict:
    """tables/ and plots/ byte for byte (what a reader of the results sees)."""
    return {k: v for k, v in tree(results).items() if k.split("/")[0] in ("tables", "plots")}


def leftovers(results: Path) -> list[str]:
    return sorted(p.name for p in results.iterdir() if p.name.endswith(".tmp"))


def rescore(results: Path) -> None:
    """Change every score a little, so that a finished new set would differ from the old one in every file."""
    for metrics in (results / "runs").rglob("metrics.json"):
        data = json.loads(metrics.read_text())
        data["score"] = round(data["score"] * 0.9, 6)
        metrics.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def larger(tmp_path_factory) -> Path:
    """A results folder with six score figures: enough writing to interrupt in the middle."""
    return make_results(tmp_path_factory.mktemp("larger") / "root", grid={"matching": ["ner", "pi"],
                                                                          "incompatible": ["ner"]},
                        langs=("en", "de", "fr"), pefts=("adapter", "lora"))


def interrupt_midway(results: Path, number: int) -> subprocess.CompletedProcess:
    """`transmod tables` in a subprocess, sent `number` once it has written a first figure (anywhere)."""
    started = time.time_ns()
    proc = subprocess.Popen([TRANSMOD, "tables", str(results)], preexec_fn=sigint_default, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)
    deadline, sent = time.monotonic() + 120, False
    while time.monotonic() < deadline and proc.poll() is None and not sent:
        if any(p.stat().st_mtime_ns >= started for p in results.rglob("*.pdf")):
            proc.send_signal(number)
            sent = True
        time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    assert sent, f"transmod tables finished before it wrote a figure:\n{out}{err}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_keeps_the_previous_tables_and_plots(larger, tmp_path, number):
    root = tmp_path / "root"
    shutil.copytree(larger.parents[1], root, symlinks=True)
    results = results_of(root)
    before = the_set(results)
    rescore(results)
    done = interrupt_midway(results, number)
    assert the_set(results) == before, "the old set changed"
    assert done.returncode in (128 + number, -number), done.stderr  # a handled signal, or SIGTERM's default
    if done.returncode > 0:  # handled: one line, and the temporaries removed on the way out
        assert "interrupted" in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert leftovers(results) == []
    # The next run cleans what a killed one left, and writes the new set.
    assert main(["tables", str(results)]) == 0
    assert leftovers(results) == []
    assert the_set(results).keys() == before.keys() and the_set(results) != before


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_between_the_two_moves_waits_until_the_new_set_is_whole(sandbox, capfd, monkeypatch, request,
                                                                         number):
    """The worst moment: the new plots/ is in place, tables/ not yet. The signal waits for tables/, then stops the
    command, which says so; another thread (torch and BLAS run some in every job) does not let it through."""
    results = results_of(sandbox)
    rescore(results)
    real_replace = os.replace

    def replace_then_signal(source, target):
        real_replace(source, target)
        if Path(target) == results / "plots":
            os.kill(os.getpid(), number)

    monkeypatch.setattr(os, "replace", replace_then_signal)
    if number == signal.SIGINT:  # a test run started in the background inherits SIGINT ignored; a user's shell does not
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    other = threading.Event()
    threading.Thread(target=other.wait, daemon=True).start()
    capfd.readouterr()
    try:
        code = main(["tables", str(results)])
    finally:
        other.set()
        monkeypatch.undo()
    out, err = capfd.readouterr()
    name = signal.Signals(number).name
    assert code == 128 + number, err
    assert f"{name} came while the new tables and plots replaced the old ones: both are in place" in out, out
    assert err == f"transmod tables: interrupted; {results / 'tables'} was written whole before that\n", err
    assert leftovers(results) == []
    signalled = the_set(results)
    assert main(["tables", str(results)]) == 0
    assert the_set(results) == signalled  # the whole new set: a run that nothing stops writes the same
    the_marks_list_every_file(results)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (we run as root here and on CI)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({mounted.stderr.strip() or 'mount failed'})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_keeps_the_previous_tables_and_plots(small_disk, capfd):
    results = make_results(small_disk / "root", langs=("en",))
    before = the_set(results)
    rescore(results)
    stat = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 16 * 1024))  # less than a figure
    capfd.readouterr()
    assert main(["tables", str(results)]) == 2
    err = capfd.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1, err
    assert the_set(results) == before and leftovers(results) == []
    (small_disk / "filler").unlink()
    assert main(["tables", str(results)]) == 0 and the_set(results) != before
