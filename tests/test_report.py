"""Tables, plots and the HTML report: `transmod tables` on finished runs, mixed configs, `snakemake
--report` and a look at the report in headless Chromium.

Fast tests run a small workflow on synthetic predictions (only the `plan` and `evaluate` rules run:
nothing is trained). Tests on the `demo` fixture check the demo's tables, figures and report.

As a script, it takes a screenshot of a report:
    python tests/test_report.py report.html shot.png [matching.summary.html]
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import REPO, REQUIRED_ON_CI
from helpers.commands import job_counts, snakemake
from helpers.config import DEMO_CONFIG

from transmod.hub import slug
from transmod.results.stats import sign_flip_test
from transmod.results.tables import LOCK

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and REQUIRED_ON_CI:
    raise pytest.UsageError("TRANSMOD_CI=1 but headless Chromium is not installed; .ci/run installs it as root")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")

# Opens one result of a Snakemake report (its path ends with `want`) the way a click in the menu does.
SHOW_RESULT = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var want = %s;
    var path = Object.keys(results).find(function (p) { return p.endsWith(want); });
    var cat, sub;
    for (var c in categories) for (var s in categories[c]) if (categories[c][s].indexOf(path) >= 0) { cat = c; sub = s; }
    var html = results[path].mime_type === "text/html";
    app.setView({navbarMode: "subcategory", category: cat, subcategory: sub, content: html ? "html" : "img",
                 contentPath: results[path].data_uri, resultPath: path});
  }, 200);
});
</script>"""


def screenshot(report: Path, out: Path, show: str | None = None, size=(1400, 900)) -> str:
    """A PNG of the report as headless Chromium renders it (optionally with one result opened); returns the DOM."""
    page = report
    if show:
        head, body, tail = report.read_text(encoding="utf-8").rpartition("</body>")
        page = out.with_suffix(".view.html")
        page.write_text(head + SHOW_RESULT % json.dumps(show) + body + tail, encoding="utf-8")
    args = [CHROMIUM or "chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--virtual-time-budget=8000", f"--window-size={size[0]},{size[1]}"]
    url = page.resolve().as_uri()
    subprocess.run(args + [f"--screenshot={out}", url], check=True, capture_output=True, timeout=180)
    return subprocess.run(args + ["--dump-dom", url], check=True, capture_output=True, text=True, timeout=180).stdout


def report_json(report: Path, name: str) -> dict:
    """One of the JSON blobs a Snakemake report embeds (`results`, `categories`)."""
    match = re.search(rf"var {name} = (\{{.*?\}});\n", report.read_text(encoding="utf-8"), re.S)
    assert match, f"no {name} in {report}"
    return json.loads(match.group(1))


def assert_rendered(png: Path, dom: str) -> None:
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (900, 1400)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "a blank page"
    assert "Snakemake" in dom and ("<iframe" in dom or "<img" in dom), "the result did not open"


# ----------------------------------------------------------------------------------------------
# A small workflow on synthetic predictions

SMALL = {
    "pairs": {"matching": {"tasks": ["pi"]}, "incompatible": {"tasks": ["pi"], "inits": ["default", "skip", "avg"]}},
    "tasks": {"pi": {"languages": ["en", "de"]}},
    "peft": ["adapter"],
    "seeds": [1, 2],
}
RUNS = {"teacher": 8, "student-default": 5, "student-skip": 7, "student-avg": 6}  # correct of 10, before offsets
NOT_RUN = ("incompatible", "de", "student-skip", 2)  # a failed job: no predictions, no metrics


def small_config() -> dict:
    """The demo's config with only SMALL's pairs (the decoder pairs and their task left out), SMALL laid over it."""
    def merged(base: dict, over: dict) -> dict:
        return {**base, **{k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in over.items()}}

    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["pairs"] = {pair: spec for pair, spec in config["pairs"].items() if pair in SMALL["pairs"]}
    config["tasks"].pop("cloze")
    return merged(config, SMALL)


def small_snakemake(work: Path, *args, check=True):
    return snakemake(*args, "--profile", REPO / "profiles" / "demo", "--configfile", work / "small.yaml", cwd=work,
                     check=check)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Metrics of a small grid made by the real evaluate rule from synthetic predictions, one run missing."""
    work = tmp_path_factory.mktemp("small")
    (work / "profiles").symlink_to(REPO / "profiles")
    (work / "small.yaml").write_text(yaml.safe_dump(small_config()))
    targets = []
    teachers = {pair: slug(spec["teacher"]) for pair, spec in yaml.safe_load(DEMO_CONFIG.read_text())["pairs"].items()}
    for pair in SMALL["pairs"]:
        for lang in ("en", "de"):
            for run, correct in RUNS.items():
                for seed in (1, 2):
                    if (pair, lang, run, seed) == NOT_RUN:
                        continue
                    k = correct + (seed == 2) - (lang == "de")
                    folder = work / "results/runs" / pair / "pi" / lang / "adapter" / run / f"seed{seed}"
                    # a teacher run lives under its model (shared by pairs); evaluate scores it per pair
                    trained = (work / "results/teachers" / teachers[pair] / "pi" / lang / "adapter" / f"seed{seed}"
                               if run == "teacher" else folder)
                    trained.mkdir(parents=True, exist_ok=True)
                    (trained / "test_predictions.json").write_text(
                        json.dumps({"task": "pi", "predictions": [1] * k + [0] * (10 - k), "gold": [1] * 10}))
                    targets.append(folder.relative_to(work) / "metrics.json")
    # Only plan and evaluate may run: the predictions stand in for finished training jobs.
    small_snakemake(work, "results/plan.json", *targets, "--allowed-rules", "plan", "evaluate")
    return work


def transmod_tables(work: Path, check=True) -> subprocess.CompletedProcess:
    """`transmod tables results` in the workflow's folder, as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "transmod.cli", "tables", "results"], cwd=work, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert not check or done.returncode == 0, done.stdout
    return done


def files(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_transmod_tables_trains_nothing(small):
    before = files(small / "results")
    transmod_tables(small)
    changed = {p for p, t in files(small / "results").items() if before.get(p) != t} - {small / "results" / LOCK}
    assert changed and all(p.is_relative_to(small / "results/tables") or p.is_relative_to(small / "results/plots")
                           for p in changed), sorted(changed)


def test_regenerated_tables_show_finished_runs_and_an_empty_cell(small):
    done = transmod_tables(small)
    tables = small / "results" / "tables"
    pi = pd.read_csv(tables / "pi.csv")
    for metrics in (small / "results/runs").rglob("metrics.json"):
        run = json.loads(metrics.read_text())["run"]
        name = {"teacher": "Teacher", "default": "Student", "skip": "TM-Student SKIP", "avg": "TM-Student AVG"}
        row = pi[(pi.setting == run["pair"]) & (pi.model == name[run["init"] or "teacher"])].iloc[0]
        scores = [json.loads((metrics.parents[1] / f"seed{s}" / "metrics.json").read_text())["score"]
                  for s in (1, 2) if (metrics.parents[1] / f"seed{s}" / "metrics.json").exists()]
        assert row[run["lang"]] == pytest.approx(100 * np.mean(scores), abs=1e-3)
    skip = pi[(pi.setting == "incompatible") & (pi.model == "TM-Student SKIP")].iloc[0]
    assert skip.de == pytest.approx(60.0) and np.isnan(skip["de SD"])  # seed 1 only (6 of 10)
    assert skip.missing == "incompatible/pi/de/adapter/student-skip/seed2"
    md = (tables / "pi.md").read_text()
    assert "| adapter | TM-Student SKIP | 75.0 ± 7.1 | 60.0† | 67.5† |" in md
    assert "Runs without a metrics file" in md and "incompatible/pi/de/adapter/student-skip/seed2" in md
    summary = pd.read_csv(tables / "summary.csv").set_index(["setting", "model"])
    assert summary.loc[("matching", "TM-Student SKIP"), "AVG"] == pytest.approx(70.0)
    assert summary.loc[("matching", "TM-Student SKIP"), "REL"] == pytest.approx(40.0)
    assert summary.loc[("matching", "TM-Student SKIP"), "GAP"] == pytest.approx(100 * 20 / 30)
    assert summary.loc[("matching", "TM-Student SKIP"), "p"] == pytest.approx(2 / 16)  # 4 pairs, all ahead
    for pair in SMALL["pairs"]:
        for ext in (".png", ".pdf"):
            assert (small / "results/plots" / pair / "pi" / f"scores.adapter{ext}").stat().st_size > 1000
            for kind in ("alignment", "correlation"):  # no alignment file was made: no empty figure either
                assert not (small / "results/plots" / pair / "pi" / f"{kind}.adapter{ext}").exists()
    assert done.stdout.splitlines()[0] == ("31 of 32 runs finished (1 without a metrics file: empty cells, listed "
                                           "under the tables)")
    assert len(done.stdout.splitlines()) == 2, done.stdout  # that line and the count of files written


def quiet_report(work: Path, report: Path) -> str:
    """`snakemake --report` of the tables, as the README shows it; its output, checked to be short."""
    done = small_snakemake(work, "--report", report, "results/tables/summary.md")
    assert done.stdout.count("Missing metadata") + done.stdout.count("no Snakemake metadata") <= 1, done.stdout
    assert len(done.stdout.splitlines()) < 30, done.stdout
    return done.stdout


def test_report_before_transmod_tables_shows_the_workflow_quietly(small, tmp_path):
    """Runs finished, no tables yet: the report is made (without them), in a few lines."""
    work = tmp_path / "work"
    shutil.copytree(small, work, symlinks=True, ignore=shutil.ignore_patterns("tables", "plots"))
    quiet_report(work, tmp_path / "report.html")
    assert report_json(tmp_path / "report.html", "categories") == {}


def test_report_of_finished_runs_renders_in_chromium(small, tmp_path):
    transmod_tables(small)
    report = tmp_path / "report.html"
    quiet_report(small, report)  # the tables and their figures
    categories = report_json(report, "categories")
    assert {c: sorted(s) for c, s in categories.items()} == {"incompatible": ["PI", "Summary"],
                                                             "matching": ["PI", "Summary"]}
    results = report_json(report, "results")
    assert sorted(Path(p).name for p in categories["matching"]["PI"]) == ["matching.pi.html", "scores.adapter.png"]
    page = next(r for p, r in results.items() if p.endswith("matching.summary.html"))
    assert "sign-flip permutation test" in page["caption"] and "REL" in page["caption"]
    assert page["labels"] == {"content": "summary table", "module": "adapter"}
    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    png = tmp_path / "report.png"
    dom = screenshot(report, png, "matching.summary.html")
    assert_rendered(png, dom)
    assert "<iframe" in dom and "Summary" in dom


def test_metrics_of_another_config_are_named_not_averaged(small):
    victim = small / "results/runs/matching/pi/en/adapter/student-avg/seed2/metrics.json"
    original = victim.read_text()
    stray = small / "results/runs/matching/pi/en/adapter/teacher/seed7/metrics.json"
    transmod_tables(small)
    previous = {p: p.read_bytes() for p in (small / "results/tables").rglob("*") if p.is_file()}
    try:
        data = json.loads(original)
        data["run"]["training"]["epochs"] = 99
        victim.write_text(json.dumps(data))
        done = transmod_tables(small, check=False)
        assert done.returncode != 0
        log = done.stdout
        assert str(victim.relative_to(small)) in log and "run.training.epochs" in log and "99" in log
        victim.write_text(original)
        # A seed the config does not ask for, made with other hyper-parameters, in the same folder.
        stray.parent.mkdir(parents=True)
        data = json.loads((small / "results/runs/matching/pi/en/adapter/teacher/seed1/metrics.json").read_text())
        data["run"].update(seed=7, training={**data["run"]["training"], "learning_rate": 0.5})
        stray.write_text(json.dumps(data))
        done = transmod_tables(small, check=False)
        assert done.returncode != 0
        log = done.stdout
        assert "seed7/metrics.json" in log and "run.training.learning_rate" in log
        # The failed runs kept the last good tables, byte for byte.
        assert {p: p.read_bytes() for p in (small / "results/tables").rglob("*") if p.is_file()} == previous
    finally:
        victim.write_text(original)
        shutil.rmtree(stray.parent, ignore_errors=True)


def test_all_target_keeps_aggregate_tables_on_every_metrics_file(small):
    done = small_snakemake(small, "-n", "results/tables/summary.md")
    counts = job_counts(done.stdout)
    assert counts.get("aggregate_tables") == 1 and "tables" not in counts
    assert counts.get("train_student", 0) >= 1  # the missing run would be trained first


# ----------------------------------------------------------------------------------------------
# The demo


def demo_metrics(demo: Path):
    for path in sorted((demo / "results/runs").rglob("metrics.json")):
        data = json.loads(path.read_text())
        yield path, data["run"], 100 * data["score"]


ROW_NAMES = {"teacher": "Teacher", "default": "Student", "skip": "TM-Student SKIP", "avg": "TM-Student AVG",
             "zs-default": "Student (zero-shot)", "zs-skip": "TM-Student SKIP (zero-shot)",
             "skip-auto-heal": "TM-Student SKIP-AUTO-HEAL", "skip-procrustes": "TM-Student SKIP-PROCRUSTES",
             "copy": "TM-Student COPY", "zs-copy": "TM-Student COPY (zero-shot)", "lt-default": "Student (light)",
             "lt-skip": "TM-Student SKIP (light)"}


def row_name(run) -> str:
    return ROW_NAMES[run["init"] or "teacher"]


def test_demo_tables_and_figures_are_the_metrics(demo):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    tables = demo / "results/tables"
    per_task = {task: pd.read_csv(tables / f"{task}.csv") for task in ("ner", "pi", "nli", "cloze")}
    scores = {}
    for _, run, score in demo_metrics(demo):
        table = per_task[run["task"]]
        row = table[(table.setting == run["pair"]) & (table.module == run["peft"]) & (table.model == row_name(run))]
        assert row[run["lang"]].iloc[0] == pytest.approx(score, abs=1e-3)
        scores[(run["pair"], run["task"], run["peft"], row_name(run), run["lang"])] = score
    summary = pd.read_csv(tables / "summary.csv")
    for _, row in summary.iterrows():
        langs = config["tasks"][row.task]["languages"]
        avg = np.mean([scores[(row.setting, row.task, row.module, row.model, lang)] for lang in langs])
        assert row.AVG == pytest.approx(avg, abs=1e-3)
        student = next((f"Student ({b})" for b in ("zero-shot", "light") if row.model.endswith(f"({b})")),
                       "Student")  # the same budget
        base = np.mean([scores[(row.setting, row.task, row.module, student, lang)] for lang in langs])
        top = np.mean([scores[(row.setting, row.task, row.module, "Teacher", lang)] for lang in langs])
        assert row.REL == pytest.approx(100 * (avg - base) / base, abs=1e-3)
        if row.model.startswith("TM-Student"):
            p = sign_flip_test([scores[(row.setting, row.task, row.module, row.model, lang)] for lang in langs],
                               [scores[(row.setting, row.task, row.module, student, lang)] for lang in langs])
            assert row.p == pytest.approx(p) and row.p_holm >= row.p
            if abs(top - base) < 1.0:  # one seed: the noise floor is 1 point
                assert np.isnan(row.GAP) and row.gap_within_noise
            else:
                assert row.GAP == pytest.approx(100 * (avg - base) / (top - base), abs=1e-2)
    assert not summary.missing.notna().any()
    for pair, spec in config["pairs"].items():
        assert (tables / "html" / f"{pair}.summary.html").is_file()
        for task in spec["tasks"]:
            assert (tables / "html" / f"{pair}.{task}.html").is_file()
            for peft in spec.get("peft", ("adapter", "lora")):
                for kind in ("scores", "alignment", "correlation"):
                    for ext in (".png", ".pdf"):
                        assert (demo / "results/plots" / pair / task / f"{kind}.{peft}{ext}").stat().st_size > 1000
    log = (demo / "results/logs/aggregate_tables.log").read_text()
    assert "runs finished" in log and "without a metrics file" not in log


def test_demo_report_renders(demo, tmp_path):
    report = tmp_path / "report.html"
    snakemake("--profile", REPO / "profiles" / "demo", "--report", report, cwd=demo)
    categories = report_json(report, "categories")
    assert {c: sorted(s) for c, s in categories.items()} == {
        "incompatible": ["NER", "Summary"], "matching": ["NER", "NLI", "PI", "Summary"],
        "decoder": ["CLOZE", "Summary"], "decoder-narrow": ["CLOZE", "Summary"],
        "Alignment methods": ["Transfer fidelity"]}
    assert len(categories["matching"]["NER"]) == 1 + 2 * 3  # the table and 3 figures per module type
    results = report_json(report, "results")
    assert all(r["caption"] for r in results.values())
    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    for show in ("matching.summary.html", "incompatible/ner/alignment.lora.png", "fidelity.png"):
        png = tmp_path / f"{Path(show).stem}.png"
        assert_rendered(png, screenshot(report, png, show))


def test_demo_regeneration_with_a_failed_run(demo, tmp_path):
    """A copy of the demo's finished results, one metrics file gone: `transmod tables` leaves that cell empty."""
    work = tmp_path / "copy"
    for path in (demo / "results/runs").rglob("metrics.json"):
        target = work / path.relative_to(demo)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    shutil.copytree(demo / "results/align", work / "results/align")
    shutil.copy(demo / "results/plan.json", work / "results/plan.json")
    gone = work / "results/runs/matching/pi/de/lora/student-avg/seed1/metrics.json"  # PI: the two-language task
    gone.unlink()
    transmod_tables(work)
    pi = pd.read_csv(work / "results/tables/pi.csv")
    original = pd.read_csv(demo / "results/tables/pi.csv")
    row = (pi.setting == "matching") & (pi.module == "lora") & (pi.model == "TM-Student AVG")
    assert np.isnan(pi[row].de.iloc[0]) and np.isnan(pi[row].AVG.iloc[0])
    assert pi[row].en.iloc[0] == pytest.approx(original[row].en.iloc[0])
    assert pi[~row].drop(columns="missing").equals(original[~row].drop(columns="missing"))
    assert "matching/pi/de/lora/student-avg/seed1" in (work / "results/tables/pi.md").read_text()

if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
    print(sys.argv[2])
