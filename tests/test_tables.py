"""Result tables from synthetic metrics files: the numbers, mean ± SD, significance, empty cells and mixed configs."""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.results import (
    GRID,
    LANGS,
    find,
    make_plan,
    run_info,
    score_of,
    write_metrics,
)

from transmod.cli import main
from transmod.errors import TransmodError
from transmod.results.cells import (
    gap_noise,
    per_language_table,
    steps_table,
    summary_long,
    summary_table,
    wins_table,
)
from transmod.results.render import to_html, to_latex, to_markdown, write_all
from transmod.results.runs import Plan, gather, inside, normalise
from transmod.results.stats import holm, sign_flip_test, stars
from transmod.results.tables import load_plan, write_plan
from transmod.train.tasks import Task, declare_task

ROW = {"teacher": "Teacher", "student-default": "Student", "student-skip": "TM-Student SKIP",
       "student-avg": "TM-Student AVG"}


@pytest.fixture
def plan(tmp_path):
    p = make_plan(tmp_path)
    write_metrics(p)
    return p


def test_per_language_cells_are_the_metrics_mean_and_sd_over_seeds(plan, tmp_path):
    runs = gather(plan, tmp_path / "results/runs")
    written = write_all(runs, tmp_path / "tables", tmp_path / "html")
    assert {p.name for p in written} >= {"summary.md", "summary.csv", "summary.tex", "ner.csv", "pi.tex",
                                         "matching.summary.html", "incompatible.ner.html", "matching.pi.html"}
    assert not (tmp_path / "html" / "incompatible.pi.html").exists()  # the incompatible pair runs no PI
    table = pd.read_csv(tmp_path / "tables" / "ner.csv")
    assert list(table.columns[:3]) == ["setting", "module", "model"] and "AVG" in table.columns
    for info in plan.values():
        if info["task"] != "ner" or info["seed"] != 1:
            continue
        run = "teacher" if info["role"] == "teacher" else f"student-{info['init']}"
        row = table[(table.setting == info["pair"]) & (table.module == info["peft"]) & (table.model == ROW[run])]
        scores = [100 * score_of({**info, "seed": s}) for s in (1, 2)]
        assert row[info["lang"]].iloc[0] == pytest.approx(np.mean(scores), abs=1e-3)
        assert row[f"{info['lang']} SD"].iloc[0] == pytest.approx(np.std(scores, ddof=1), abs=1e-3)
    # AVG: the mean over languages; its SD: over the per-seed averages.
    row = table[(table.setting == "matching") & (table.module == "lora") & (table.model == "TM-Student SKIP")].iloc[0]
    assert row.AVG == pytest.approx(np.mean([row[lang] for lang in LANGS]), abs=1e-3)
    assert row.SD == pytest.approx(np.std([100 * (0.7 + 0.01 + 0.02 * s) for s in (1, 2)], ddof=1), abs=1e-3)
    # Rows in the study's order, settings in the plan's order.
    rows = table[(table.setting == "matching") & (table.module == "adapter")].model.tolist()
    assert rows == ["Teacher", "Student", "TM-Student SKIP", "TM-Student AVG"]
    assert table.setting.iloc[0] == "matching"


def test_summary_avg_rel_gap_and_p(plan, tmp_path):
    runs = gather(plan)
    summary = summary_long(runs)
    part = summary[(summary.setting == "matching") & (summary.module == "adapter") & (summary.task == "pi")]
    get = part.set_index("model")
    teacher, student, skip = (get.loc[m, "AVG"] for m in ("Teacher", "Student", "TM-Student SKIP"))
    assert student == pytest.approx(100 * np.mean([0.55 + 0.01 * i + 0.02 * s for i in range(3) for s in (1, 2)]))
    assert get.loc["TM-Student SKIP", "REL"] == pytest.approx(100 * (skip - student) / student)
    assert get.loc["TM-Student SKIP", "GAP"] == pytest.approx(100 * (skip - student) / (teacher - student))
    assert get.loc["TM-Student SKIP", "GAP"] == pytest.approx(100 * 0.2 / 0.3)
    assert get.loc["Student", "REL"] == 0 and math.isnan(get.loc["Teacher", "GAP"])
    # Known answer: 3 languages x 2 seeds, the TM-Student always ahead: p = 2 / 2^6.
    assert get.loc["TM-Student SKIP", "p"] == pytest.approx(2 / 64)
    assert get.loc["TM-Student SKIP", "n_pairs"] == 6
    assert math.isnan(get.loc["Student", "p"])
    write_all(runs, tmp_path / "tables")
    csv = pd.read_csv(tmp_path / "tables" / "summary.csv")
    assert list(csv.columns[:6]) == ["setting", "module", "model", "task", "metric", "AVG"]
    assert csv.filter(like="AVG").notna().all().all()
    # Raw p = 2/64 < 0.05 in every TM-Student row, but Holm over all of the summary's tests lifts it: no marker.
    tested = summary.p.notna()
    assert summary.p_holm[tested].tolist() == pytest.approx(list(holm(summary.p[tested].to_numpy())))
    assert (summary.p_holm[tested] > 0.05).all() and (summary.p[tested] < 0.05).all()
    assert (csv.p_holm.dropna() >= csv.p.dropna()).all() and csv.p_holm.notna().sum() == tested.sum()
    md = (tmp_path / "tables" / "summary.md").read_text()
    assert "| adapter | TM-Student SKIP | 74.0 ± 1.4 |" in md  # NER: 100 * (0.7 + 0.01 + 0.03), SD 1.41
    assert "sign-flip permutation test" in md and "Holm" in md
    tex = (tmp_path / "tables" / "summary.tex").read_text()
    assert r"74.0 $\pm$ 1.4 &" in tex and r"\begin{tabular}" in tex


def test_markers_follow_holm_adjusted_p_values():
    raw = np.array([0.001, 0.04, 0.03, np.nan, 0.2])
    adjusted = holm(raw)
    # sorted 0.001, 0.03, 0.04, 0.2 (m = 4): 0.004, 0.09, max(0.09, 0.08), 0.2
    assert adjusted[[0, 2, 1, 4]] == pytest.approx([0.004, 0.09, 0.09, 0.2]) and np.isnan(adjusted[3])
    assert [stars(p) for p in adjusted] == ["**", "", "", "", ""]


def test_gap_is_empty_when_teacher_and_student_are_within_noise(tmp_path):
    plan = make_plan(tmp_path, grid={"matching": ["pi"]}, pefts=("adapter",))
    teacher_at = {"teacher": 0.555, "default": 0.55, "skip": 0.6, "avg": 0.52}  # Teacher - Student: 0.5 point

    def score(info):
        return teacher_at["teacher" if info["role"] == "teacher" else info["init"]] + 0.001 * info["seed"]

    write_metrics(plan, score=score)
    runs = gather(plan)
    got = summary_long(runs).set_index("model")
    assert got.loc[["TM-Student SKIP", "TM-Student AVG"], "GAP"].isna().all()
    assert got.loc[["TM-Student SKIP", "TM-Student AVG"], "gap_within_noise"].all()
    assert got.loc["TM-Student SKIP", "REL"] == pytest.approx(100 * (60.15 - 55.15) / 55.15)
    md = to_markdown(summary_table(runs))
    assert "GAP is empty where Teacher and Student differ by less than the noise" in md and "matching adapter PI" in md
    assert gap_noise(2.0, 0.0) == pytest.approx(2 ** 0.5) and gap_noise(0.1, math.nan) == 1.0


def test_significance_marker_follows_the_test(tmp_path):
    # The TM-Student is ahead in one pair and behind in the other five: no marker.
    plan = make_plan(tmp_path, grid={"matching": ["pi"]}, pefts=("adapter",))

    def score(info):
        if info["init"] == "skip":
            return 0.6 if (info["lang"], info["seed"]) == ("en", 1) else 0.4
        return 0.5

    write_metrics(plan, score=score)
    runs = gather(plan)
    got = summary_long(runs).set_index("model").loc["TM-Student SKIP"]
    d = np.array([10.0] + [-10.0] * 5)
    assert got.p == pytest.approx(sign_flip_test(d, np.zeros(6)))
    assert got.p == pytest.approx(14 / 64)  # |sum| >= 40: 1 + 6 patterns on each side
    assert "*" not in to_markdown(per_language_table(runs, "pi")).split("\n\n")[2]


def test_missing_run_is_an_empty_cell_with_a_footnote_never_a_zero(tmp_path):
    plan = make_plan(tmp_path)
    gone = find(plan, pair="matching", task="ner", lang="de", peft="lora", role="student", init="skip", seed=2)
    every_seed = [find(plan, pair="incompatible", task="ner", lang="fr", peft="adapter", role="student", init="avg",
                       seed=s) for s in (1, 2)]
    write_metrics(plan, skip=[gone, *every_seed])
    runs = gather(plan)
    assert len(runs.missing) == 3 and len(runs.finished) == len(plan) - 3
    write_all(runs, tmp_path / "tables", tmp_path / "html")
    ner = pd.read_csv(tmp_path / "tables" / "ner.csv")
    avg_row = ner[(ner.setting == "incompatible") & (ner.module == "adapter") & (ner.model == "TM-Student AVG")].iloc[0]
    assert math.isnan(avg_row.fr) and math.isnan(avg_row.AVG)  # empty, not zero
    assert "incompatible/ner/fr/adapter/student-avg/seed1" in avg_row.missing
    skip_row = ner[(ner.setting == "matching") & (ner.module == "lora") & (ner.model == "TM-Student SKIP")].iloc[0]
    seed1 = find(plan, pair="matching", task="ner", lang="de", peft="lora", role="student", init="skip", seed=1)
    assert skip_row.de == pytest.approx(100 * json.loads(Path(seed1).read_text())["score"], abs=1e-3)
    assert math.isnan(skip_row["de SD"])
    md = (tmp_path / "tables" / "ner.md").read_text()
    assert "| adapter | TM-Student AVG | 63.0 ± 1.4 | 64.0 ± 1.4 |  |  |" in md
    assert "| lora | TM-Student SKIP | 73.0 ± 1.4 | 73.0† |" in md
    assert "Runs without a metrics file" in md and "matching/ner/de/lora/student-skip/seed2" in md
    assert "† a mean over fewer seeds" in md
    html = (tmp_path / "html" / "incompatible.ner.html").read_text()
    assert 'class="empty"' in html and "incompatible/ner/fr/adapter/student-avg/seed2" in html
    summary = pd.read_csv(tmp_path / "tables" / "summary.csv")
    row = summary[(summary.setting == "incompatible") & (summary.module == "adapter") & (summary.model == "TM-Student AVG")]
    assert row.AVG.isna().all() and row.REL.isna().all() and row.GAP.isna().all()
    assert bool(summary[(summary.setting == "matching") & (summary.module == "lora")
                        & (summary.model == "TM-Student SKIP") & (summary.task == "ner")].partial.iloc[0])
    # Nothing finished at all still gives tables (all empty).
    write_all(gather(make_plan(tmp_path / "none")), tmp_path / "empty")
    assert pd.read_csv(tmp_path / "empty" / "pi.csv")[LANGS].isna().all().all()


def test_a_file_from_another_config_is_named_not_averaged(plan):
    victim = find(plan, pair="matching", task="pi", lang="fr", peft="adapter", role="student", init="default", seed=2)
    data = json.loads(Path(victim).read_text())
    data["run"]["training"]["epochs"] = 10
    Path(victim).write_text(json.dumps(data))
    with pytest.raises(TransmodError) as err:
        gather(plan)
    message = str(err.value)
    assert victim in message and "run.training.epochs: 10 vs 3" in message and "\n" not in message


def test_a_file_that_is_not_metrics_is_named(plan):
    victim = next(iter(plan))
    Path(victim).write_text("{not json")
    with pytest.raises(TransmodError, match="not a metrics file"):
        gather(plan)


def test_unrequested_metrics_files_in_the_results_folder(plan, tmp_path):
    runs_dir = tmp_path / "results/runs"
    # A third seed of the same config, left from an earlier run: not read, named in a note.
    extra = {path.replace("seed1", "seed3"): {**info, "seed": 3} for path, info in plan.items() if info["seed"] == 1}
    write_metrics(extra)
    runs = gather(plan, runs_dir)
    assert len(runs.ignored) == len(extra) and len(runs.finished) == len(plan)
    write_all(runs, tmp_path / "tables")
    assert "Not read: " in (tmp_path / "tables" / "summary.md").read_text()
    # The same seed made with other hyper-parameters: a different config in the same folder.
    other = next(p for p in extra if "/lora/" in p)
    data = json.loads(Path(other).read_text())
    data["run"]["module"]["r"] = 16
    Path(other).write_text(json.dumps(data))
    with pytest.raises(TransmodError) as err:
        gather(plan, runs_dir)
    assert other in str(err.value) and "run.module.r" in str(err.value)


def test_renderings_per_setting(plan):
    runs = gather(plan)
    from transmod.results.cells import summary_table

    table = summary_table(runs)
    md = to_markdown(table)
    matching, incompatible = md.split("### matching")[1].split("### incompatible")
    assert "PI AVG" in matching and "PI AVG" not in incompatible  # columns of tasks the setting runs
    assert "teacher-matching → student-matching" in matching
    tex = to_latex(table)
    assert tex.count(r"\begin{table}") == 2 and "REL \\%" in tex and "_" not in tex.replace("\\_", "")
    page = to_html(table, "incompatible")
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "NER GAP %" in page and "PI AVG" not in page


def test_plan_repr_is_short_and_pickles(plan, tmp_path):
    assert len(repr(plan)) < 80 and repr(plan) == str(plan)
    assert repr(plan) != repr(Plan({**plan, "x": {}}))
    again = pickle.loads(pickle.dumps(plan))
    assert isinstance(again, Plan) and dict(again) == dict(plan)


def test_transmod_tables_regenerates_from_the_plan_in_a_moved_results_folder(plan, tmp_path, capsys):
    """The workflow's plan.json holds paths inside the results folder: a copied folder regenerates alike."""
    results = tmp_path / "results"
    align = [{"pair": "matching", "task": "pi", "lang": "en", "peft": "adapter", "mapping": "skip",
              "assignment": str(results / "align/x.lsa.alignment.safetensors"),
              "correlation": str(results / "align/x.correlation.safetensors")}]
    write_plan(Plan(runs=dict(plan), align=align), results, results / "plan.json")
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(results, moved)
    again = load_plan(moved)
    assert list(again["runs"]) == [p.replace(str(results), str(moved)) for p in plan]
    assert list(again["runs"].values()) == [normalise(i) for i in plan.values()]
    assert again["align"][0]["correlation"] == str(moved / "align/x.correlation.safetensors")
    assert main(["tables", str(moved)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert pd.read_csv(moved / "tables/pi.csv").equals(pd.read_csv(_written_pi(plan, tmp_path)))
    for bad, message in (("{}", "not a plan that transmod's workflow wrote"), (None, "no plan of the workflow's runs")):
        (moved / "plan.json").unlink()
        if bad is not None:
            (moved / "plan.json").write_text(bad)
        assert main(["tables", str(moved)]) == 2
        assert message in capsys.readouterr().err


def _written_pi(plan, tmp_path) -> Path:
    runs = gather(plan)
    write_all(runs, tmp_path / "direct", tmp_path / "direct-html")
    return tmp_path / "direct" / "pi.csv"


def test_csv_has_no_zero_for_missing(tmp_path):
    plan = make_plan(tmp_path, seeds=(1,), grid={"matching": ["pi"]}, pefts=("adapter",))
    gone = find(plan, pair="matching", task="pi", lang="en", peft="adapter", role="teacher", seed=1)
    write_metrics(plan, skip=[gone])
    write_all(gather(plan), tmp_path / "t")
    text = (tmp_path / "t" / "pi.csv").read_text()
    frame = pd.read_csv(io.StringIO(text))
    teacher = frame[frame.model == "Teacher"].iloc[0]
    assert math.isnan(teacher.en) and teacher.de > 0 and "0.0000" not in text.splitlines()[1]


def test_light_then_zero_shot_rows_come_last_each_compared_with_the_student_of_its_budget(tmp_path):
    plan = make_plan(tmp_path, grid={"incompatible": ["pi"]}, pefts=("adapter",))
    budgets = {"student-zs-default": 0.3, "student-zs-skip": 0.45, "student-lt-default": 0.5, "student-lt-skip": 0.4}
    for run in budgets:
        for lang in LANGS:
            for seed in (1, 2):
                path = tmp_path / "results/runs/incompatible/pi" / lang / "adapter" / run / f"seed{seed}" / "metrics.json"
                # A budget of its own (1 epoch) is no config mix-up with the trained students.
                plan[str(path)] = run_info("incompatible", "pi", lang, "adapter", run, seed, epochs=1)

    def score(info):
        run = f"student-{info['init']}"
        return budgets[run] + 0.01 * LANGS.index(info["lang"]) if run in budgets else score_of(info)

    write_metrics(plan, score=score)
    runs = gather(plan)
    got = summary_long(runs).set_index("model")
    assert list(got.index) == ["Teacher", "Student", "TM-Student SKIP", "TM-Student AVG",
                               "Student (light)", "TM-Student SKIP (light)",
                               "Student (zero-shot)", "TM-Student SKIP (zero-shot)"]
    zs, base = got.loc["TM-Student SKIP (zero-shot)"], got.loc["Student (zero-shot)"]
    assert zs.AVG == pytest.approx(46.0) and base.AVG == pytest.approx(31.0)
    assert zs.REL == pytest.approx(100 * (46 - 31) / 31)
    assert zs.GAP == pytest.approx(100 * (46 - 31) / (got.loc["Teacher", "AVG"] - 31))
    assert zs.p == pytest.approx(2 / 64) and math.isnan(base.p)
    light = got.loc["TM-Student SKIP (light)"]  # below its Student (light): a loss, said as plainly as a win
    assert light.REL == pytest.approx(100 * (41 - 51) / 51) and light.p == pytest.approx(2 / 64)
    wins = pd.DataFrame({c.csv: c.mean for c in wins_table(runs).columns}).droplevel(["pair", "peft"])
    assert wins.loc["TM-Student SKIP (light)", "won"] == 0 and wins.loc["TM-Student SKIP (zero-shot)", "won"] == 1


NASTY = "<b>x</b> | y\n# z $a_b}&%#\\ [l](u)"  # raw HTML, an extra cell, a heading of its own, math, LaTeX specials


def test_names_from_the_config_are_literal_text_in_every_format(tmp_path):
    plan = make_plan(tmp_path, seeds=(1,), grid={"matching": ["pi"]}, pefts=("adapter",), langs=["en"])
    write_metrics(plan)
    task = Task.from_dict({**declare_task("pi").to_dict(), "label": NASTY, "title": NASTY})
    runs = gather(plan, tasks={"pi": task})
    for table in (summary_table(runs), per_language_table(runs, "pi")):
        md = to_markdown(table)
        assert "<b>" not in md and r"\<b\>x\</b\> \| y \# z \$a\_b}\&%\#\\ \[l\](u)" in md
        assert [line for line in md.splitlines() if line.startswith("#")] == [
            line for line in md.splitlines() if line.startswith(("## ", "### "))][:2]  # the title and the setting
        rows = [line for line in md.splitlines() if line.startswith("|")]
        assert len({len(re.split(r"(?<!\\)\|", row)) for row in rows}) == 1, rows  # as many cells as the header
        tex = to_latex(table)
        assert r"$<$b$>$x$<$/b$>$ \textbar{} y \# z \$a\_b\}\&\%\#\textbackslash{} [l](u)" in tex
        assert "\n\n" not in tex.split(r"\caption{")[1].split(r"\label")[0]  # no paragraph break in a caption
        page = to_html(table, "matching")
        assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; | y\n# z $a_b}&amp;%#\\" in page


def test_an_output_path_stays_inside_its_folder(tmp_path):
    """The second line of defence behind the plan's name checks: every output path is built by `inside`."""
    assert inside(tmp_path, "matching", "pi", "scores.adapter.png") == tmp_path / "matching/pi/scores.adapter.png"
    for names in (("..",), ("a/b",), (".",), ("",), ("a", "../../x"), ("x\0",)):
        with pytest.raises(TransmodError, match="refused to write"):
            inside(tmp_path, *names)


def test_the_wins_table_counts_every_cell_won_or_lost_and_its_mean_relative_gain(tmp_path):
    def score(info):  # AVG loses to the Student with LoRA, wins with adapters
        if info["init"] == "avg" and info["peft"] == "lora":
            return score_of({**info, "init": "default"}) - 0.04
        return score_of(info)

    plan = make_plan(tmp_path)
    write_metrics(plan, score=score)
    runs = gather(plan, tmp_path / "results/runs")
    write_all(runs, tmp_path / "tables")
    wins = pd.read_csv(tmp_path / "tables" / "wins.csv").set_index(["setting", "model"])

    def cell_mean(pair, task, peft, init):  # the mean over languages and seeds, x 100
        return 100 * np.mean([score(i) for i in plan.values() if (i["pair"], i["task"], i["peft"], i["init"]) ==
                              (pair, task, peft, init)])

    for pair, tasks in GRID.items():
        for init, row in (("skip", "TM-Student SKIP"), ("avg", "TM-Student AVG")):
            rel = [100 * (cell_mean(pair, t, m, init) - cell_mean(pair, t, m, "default")) / cell_mean(pair, t, m, "default")
                   for t in tasks for m in ("adapter", "lora")]
            got = wins.loc[(pair, row)]
            assert (got.won, got.cells) == (sum(r > 0 for r in rel), len(rel)) and got.mean_rel == pytest.approx(np.mean(rel), abs=1e-3)
    assert wins.loc[("matching", "TM-Student AVG")].won == 2 and wins.loc[("matching", "TM-Student SKIP")].won == 4
    md = (tmp_path / "tables" / "wins.md").read_text()
    assert "| adapter, lora | TM-Student AVG | 2 | 4 |" in md and "Every cell counts, won or lost" in md


def test_kept_is_the_share_of_the_teachers_own_gain_a_moved_lora_gives_zero_shot(tmp_path):
    """A decoder's zero-shot rows: (TM zero-shot - the student alone) / (Teacher - the teacher alone), the
    teacher alone read from its runs' `start_score`; encoder tasks have no KEPT column."""
    cloze = declare_task("cloze", dict(kind="multiple-choice", text_columns=["q"], choices_column="c",
                                       label_column="a", metric="accuracy"))
    plan = make_plan(tmp_path, grid={"decoder": ["cloze"]}, pefts=("lora",), langs=["en"])
    zero_shot = {"student-zs-default": 0.3, "student-zs-skip": 0.45}
    for run in zero_shot:
        for seed in (1, 2):
            path = tmp_path / "results/runs/decoder/cloze/en/lora" / run / f"seed{seed}" / "metrics.json"
            plan[str(path)] = run_info("decoder", "cloze", "en", "lora", run, seed, epochs=1)
    write_metrics(plan, score=lambda info: zero_shot.get(f"student-{info['init']}") or score_of(info))
    for path in (find(plan, role="teacher", seed=seed) for seed in (1, 2)):
        data = json.loads(Path(path).read_text())
        Path(path).write_text(json.dumps({**data, "start_score": 0.25}))  # the teacher alone
    runs = gather(plan, tasks={"cloze": cloze})
    got = summary_long(runs).set_index("model")
    teacher = got.loc["Teacher", "AVG"]  # 80 + 2 * mean seed (1.5) = 83
    assert got.loc["TM-Student SKIP (zero-shot)", "KEPT"] == pytest.approx(100 * (45 - 30) / (teacher - 25))
    assert got.drop("TM-Student SKIP (zero-shot)").KEPT.isna().all()
    assert [c.csv for c in summary_table(runs).columns] == ["cloze AVG", "cloze REL", "cloze GAP", "cloze KEPT"]
    assert "KEPT %" in to_markdown(summary_table(runs)) and "of the Teacher's own gain" in to_markdown(summary_table(runs))
    path = find(plan, role="teacher", seed=1)
    Path(path).write_text(json.dumps({**json.loads(Path(path).read_text()), "start_score": 1.5}))
    with pytest.raises(TransmodError, match=r"start_score 1.5 is not a number from 0 to 1, the range of accuracy"):
        gather(plan, tasks={"cloze": cloze})


def test_steps_to_match_are_the_first_epoch_at_the_students_best_validation_score(tmp_path):
    plan = make_plan(tmp_path, grid={"matching": ["pi"]}, pefts=("adapter",), langs=["en"])
    curves = {"student-default": [0.5, 0.6, 0.55], "student-skip": [0.62, 0.7, 0.7], "student-avg": [0.4, 0.5, 0.59],
              "teacher": [0.7, 0.8, 0.8]}
    write_metrics(plan)
    for path, info in plan.items():
        run = "teacher" if info["role"] == "teacher" else f"student-{info['init']}"
        shift = 0.001 * info["seed"]  # the seed-2 Student's best is higher: each seed is matched against its own
        curve = [{"step": 10 * (e + 1), "seconds": 1.5 * (e + 1), "val": v + shift} for e, v in enumerate(curves[run])]
        Path(path).write_text(json.dumps({**json.loads(Path(path).read_text()), "curve": curve}))
    table = steps_table(gather(plan))
    got = pd.DataFrame({c.csv: c.mean for c in table.columns}).droplevel(["pair", "peft"])
    assert list(got.index) == ["Student", "TM-Student SKIP", "TM-Student AVG"]  # no teacher, no zero-shot rows
    assert got.loc["Student"].tolist() == [20, 3.0, 2, 2]  # its own best, in both seeds
    assert got.loc["TM-Student SKIP"].tolist() == [10, 1.5, 2, 2]
    assert math.isnan(got.loc["TM-Student AVG", "pi steps"]) and got.loc["TM-Student AVG", "pi reached"] == 0
    assert "the first epoch at which a start's validation score reaches" in to_markdown(table)
    assert "REL" not in to_markdown(table)  # its own caption, not the test scores' one
    path = find(plan, role="student", init="skip", seed=1)
    data = json.loads(Path(path).read_text())
    Path(path).write_text(json.dumps({**data, "curve": [{"step": 10, "seconds": -1.0, "val": 0.5}]}))
    with pytest.raises(TransmodError, match=r"curve is not a list of \{step, seconds, val\} per epoch"):
        gather(plan)
