"""Figures from synthetic runs and alignment files: every file, the plotted numbers, and missing inputs."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest
from helpers.results import find, make_plan, write_metrics
from PIL import Image

from transmod.align.alignment import Alignment, assign, assign_correlation
from transmod.align.correlation import Correlation, LayerCorrelation
from transmod.results.cells import task_stats
from transmod.results.plots import (
    alignment_figure,
    figure_paths,
    heatmap_figure,
    layer_quality,
    score_figure,
    write_all,
)
from transmod.results.runs import gather
from transmod.train.tasks import Task, declare_task


def make_correlation(mapping: str, rng, student=(3, 6), teacher=(6, 8)) -> Correlation:
    """Student layer l correlates with a planted permutation at r = 0.9 - 0.2 l; the rest is noise."""
    corr = Correlation(mapping, {"num_layers": teacher[0], "hidden_size": teacher[1]},
                       {"num_layers": student[0], "hidden_size": student[1]}, 50)
    for layer in range(student[0]):
        r = rng.uniform(-0.2, 0.2, size=(student[1], teacher[1]))
        r[np.arange(student[1]), rng.permutation(teacher[1])[: student[1]]] = 0.9 - 0.2 * layer
        group = [2 * layer] if mapping == "skip" else [2 * layer, 2 * layer + 1]
        corr.layers.append(LayerCorrelation(layer, group, "h", r))
    return corr


def align_files(plan, root, skip=()):
    """Correlation and assignment files for every (pair, task, lang, peft) of the plan, as the plan's records."""
    rng = np.random.default_rng(0)
    records, seen = [], set()
    for info in plan.values():
        key = (info["pair"], info["task"], info["lang"], info["peft"])
        if key in seen:
            continue
        seen.add(key)
        for mapping in ("skip", "avg"):
            base = root / "results/align" / "/".join(key) / mapping
            record = dict(zip(("pair", "task", "lang", "peft"), key), mapping=mapping,
                          assignment=f"{base}.lsa.alignment.safetensors", correlation=f"{base}.correlation.safetensors")
            records.append(record)
            if (key, mapping) in skip:
                continue
            base.parent.mkdir(parents=True, exist_ok=True)
            corr = make_correlation(mapping, rng)
            corr.save(record["correlation"])
            assign_correlation(corr).save(record["assignment"])
    return records


def test_every_figure_is_a_png_and_a_pdf(tmp_path):
    plan = make_plan(tmp_path, seeds=(1,), langs=["en", "de"])
    write_metrics(plan)
    records = align_files(plan, tmp_path, skip={(("matching", "pi", "en", "lora"), "skip"),
                                                 (("matching", "pi", "de", "lora"), "skip"),
                                                 (("matching", "pi", "de", "lora"), "avg"),
                                                 (("matching", "pi", "en", "lora"), "avg")})
    written = write_all(gather(plan), records, tmp_path / "plots")
    expected = [p for pair, tasks in {"matching": ["ner", "pi"], "incompatible": ["ner"]}.items() for task in tasks
                for peft in ("adapter", "lora") for kind, paths in figure_paths(tmp_path / "plots", pair, task, peft).items()
                for p in paths if kind == "scores" or (pair, task, peft) != ("matching", "pi", "lora")]
    assert sorted(map(str, written)) == sorted(map(str, expected))
    for path in expected:
        if path.suffix == ".png":
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
                assert image.format == "PNG" and image.size[0] > 300 and len(np.unique(pixels, axis=0)) > 10
        else:
            assert path.read_bytes().startswith(b"%PDF")
    # Rewriting the same inputs gives byte-identical files (no timestamps), so reruns change nothing.
    again = write_all(gather(plan), records, tmp_path / "again")
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(written, again))


def test_score_bars_show_the_means_and_no_bar_for_a_missing_run(tmp_path):
    plan = make_plan(tmp_path, seeds=(1, 2), grid={"matching": ["pi"]}, pefts=("adapter",), langs=["en", "de"])
    gone = [find(plan, lang="de", role="student", init="avg", seed=s) for s in (1, 2)]
    write_metrics(plan, skip=gone)
    from transmod.results.cells import task_stats

    st = task_stats(gather(plan), "pi")
    mean, sd = st.mean.droplevel([0, 1]), st.sd.droplevel([0, 1])
    fig = score_figure(mean, sd, "t", "accuracy", st.p.droplevel([0, 1]).to_dict(), st.partial.droplevel([0, 1]))
    ax = fig.axes[0]
    heights = sorted(round(bar.get_height(), 6) for bar in ax.patches)
    expected = sorted(round(v, 6) for v in mean.to_numpy().ravel() if np.isfinite(v))
    assert heights == expected and 0.0 not in heights  # de and AVG of TM-Student AVG: no bar
    assert len(heights) == mean.size - 2
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["en", "de", "AVG"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Teacher", "Student", "TM-Student SKIP",
                                                                  "TM-Student AVG"]


def test_alignment_curve_is_the_mean_matched_r_over_languages(tmp_path):
    rng = np.random.default_rng(1)
    files = []
    for lang in ("en", "de"):
        corr = make_correlation("skip", rng)
        path = tmp_path / f"{lang}.lsa.alignment.safetensors"
        assign_correlation(corr).save(path)
        files.append(Alignment.load(path))
    curves = {"skip": [layer_quality(a) for a in files]}
    assert curves["skip"][0][0] == [0, 1, 2]
    assert curves["skip"][0][1] == pytest.approx([0.9, 0.7, 0.5])  # the planted r per layer
    fig = alignment_figure(curves, "t")
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0, 1, 2]
    assert line.get_ydata() == pytest.approx([0.9, 0.7, 0.5])
    assert "SKIP (mean of 2 languages)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_heatmap_reordered_by_the_assignment_puts_the_matched_r_on_the_diagonal():
    corr = make_correlation("skip", np.random.default_rng(2))
    fig = heatmap_figure(corr, "t")
    last = corr.layers[-1].r
    raw, ordered = (ax.images[0].get_array() for ax in fig.axes[:2])
    assert np.allclose(raw, last)
    sigma, mean_r = assign(last)
    assert np.allclose(np.diag(ordered), last[np.arange(len(sigma)), sigma])
    assert mean_r == pytest.approx(0.5)
    assert "student layer 2 vs teacher layer(s) 4" in fig._suptitle.get_text()


def test_a_figure_without_data_is_not_written(tmp_path):
    """No alignment file: no alignment or heatmap figure (no placeholder); no finished run: no score figure."""
    plan = make_plan(tmp_path, seeds=(1,), grid={"incompatible": ["ner"]}, pefts=("lora",), langs=["en"])
    write_metrics(plan)
    records = align_files(plan, tmp_path, skip={(("incompatible", "ner", "en", "lora"), m) for m in ("skip", "avg")})
    written = write_all(gather(plan), records, tmp_path / "plots")
    assert written == figure_paths(tmp_path / "plots", "incompatible", "ner", "lora")["scores"]
    assert write_all(gather(make_plan(tmp_path / "none", seeds=(1,), grid={"incompatible": ["ner"]})), [],
                     tmp_path / "none-plots") == []
    assert not (tmp_path / "none-plots").exists()


def test_names_with_dollars_and_negative_scores_are_drawn_as_they_are(tmp_path):
    """A `$` in a task's label is text, not mathtext (which failed on an odd one); a Matthews correlation below
    zero is a bar below zero, not cut off at the axis."""
    plan = make_plan(tmp_path, seeds=(1,), grid={"matching": ["pi"]}, pefts=("adapter",), langs=["en"])
    write_metrics(plan, score=lambda info: -0.4 if info["role"] == "teacher" else 0.3, metric="matthews")
    task = Task.from_dict({**declare_task("pi").to_dict(), "metric": "matthews", "label": "P$^$I", "title": "a $}$"})
    runs = gather(plan, tasks={"pi": task})
    written = write_all(runs, [], tmp_path / "plots")
    assert [p.name for p in written] == ["scores.adapter.png", "scores.adapter.pdf"]
    fig = score_figure(*(x.droplevel([0, 1]) for x in (task_stats(runs, "pi").mean, task_stats(runs, "pi").sd)),
                       "P$^$I", "score")
    assert fig.axes[0].get_ylim()[0] <= -40 and min(bar.get_height() for bar in fig.axes[0].patches) == -40
