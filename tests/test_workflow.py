"""The workflow for real: the demo end to end, caching, the paper grid's plan, lint and bad configs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO
from helpers.commands import DEMO_RUN_LOG, dry_run, job_counts, snakemake
from helpers.config import DEMO_CONFIG

from transmod.hub import slug


def demo_grid(decoders: bool = False):
    """The demo's (pair, task, lang, peft) cells: its encoder pairs' (the decoder pair's too with `decoders`)."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    for pair, spec in config["pairs"].items():
        if "peft" in spec and not decoders:  # the decoder pair names its own: [lora]
            continue
        for task in spec["tasks"]:
            for lang in config["tasks"][task]["languages"]:
                for peft in spec.get("peft", ("adapter", "lora")):
                    yield pair, task, lang, peft


def demo_inits(pair: str) -> list:
    """A demo pair's student inits, as the workflow runs them (zs-default and lt-default added where any run is
    zero-shot or light)."""
    from transmod.align.inits import DEFAULT
    from transmod.workflow.config import inits_of

    config = yaml.safe_load(DEMO_CONFIG.read_text())
    chosen = inits_of(config, pair)[1]
    return chosen + list(dict.fromkeys(i.baseline for i in chosen if i.baseline not in (DEFAULT, *chosen)))


def test_demo_produces_every_table_with_numbers(demo):
    tables = demo / "results" / "tables"
    for stem in ("summary", "wins", "steps", "ner", "pi", "nli", "cloze"):
        for ext in (".md", ".csv", ".tex"):
            assert (tables / f"{stem}{ext}").is_file(), f"{stem}{ext} missing"
    for task in ("ner", "pi", "nli"):
        table = pd.read_csv(tables / f"{task}.csv")
        for pair, t, lang, peft in demo_grid():
            if t != task:
                continue
            rows = table[(table.setting == pair) & (table.module == peft)]
            own = {"Student (zero-shot)", "TM-Student SKIP (zero-shot)", "TM-Student SKIP-AUTO-HEAL"} \
                if pair == "incompatible" else set()
            assert set(rows.model) == {"Teacher", "Student", "TM-Student SKIP", "TM-Student AVG"} | own
            assert rows[lang].notna().all(), (pair, task, lang, peft)
    summary = pd.read_csv(tables / "summary.csv")
    assert summary.filter(like="AVG").notna().all().all()


@pytest.mark.parametrize("pair, student, rows", [
    ("decoder", "student-llama", {"TM-Student SKIP", "TM-Student AVG", "TM-Student COPY", "Student (zero-shot)",
                                  "TM-Student COPY (zero-shot)", "TM-Student SKIP (zero-shot)", "Student (light)",
                                  "TM-Student SKIP (light)"}),
    ("decoder-narrow", "narrow-llama", {"TM-Student SKIP", "TM-Student SKIP-PROCRUSTES"}),
])
def test_the_decoder_pairs_run_the_grid_with_their_lora_in_pefts_format(demo, pair, student, rows):
    """The demo's tiny Llama pairs (same width; narrower, aligned): a LoRA trained on the cloze (multiple choice),
    moved, trained on and scored."""
    import peft
    from transformers import AutoModelForCausalLM

    results = demo / "results"
    table = pd.read_csv(results / "tables" / "cloze.csv")
    mine = table[(table.setting == pair) & (table.module == "lora")]
    assert set(mine.model) == {"Teacher", "Student"} | rows and mine.en.notna().all()
    moved = results / "transferred" / pair / "cloze" / "en" / "lora" / "skip" / "seed1"
    assert json.loads((moved / "adapter_config.json").read_text())["peft_type"] == "LORA"
    model = AutoModelForCausalLM.from_pretrained(demo / "resources/demo/models" / student)
    assert isinstance(peft.PeftModel.from_pretrained(model, str(moved)), peft.PeftModel)  # the plain call
    run = results / "runs" / pair / "cloze" / "en" / "lora" / "student-skip" / "seed1"
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = json.loads((run / "test_predictions.json").read_text())
    right = sum(p == g for p, g in zip(predictions["predictions"], predictions["gold"])) / len(predictions["gold"])
    assert metrics["metric"] == "accuracy" and metrics["score"] == right and 0 <= right <= 1
    assert (run / "module" / "adapter_model.safetensors").is_file()
    log = (results / "logs/train_student" / pair / "cloze/en/lora/skip/seed1.log").read_text()
    assert re.search(rf"training \S+{student} \+ a LoRA on cloze: [\d,]+ trainable parameters", log), log


def test_a_decoders_copy_is_the_teachers_lora_and_its_zero_shot_runs_train_nothing(demo):
    """copy: the teacher's layers 0 and 1 on the student's two, unchanged; zs-: scored as moved, with KEPT."""
    from safetensors.numpy import load_file

    cell = demo / "results" / "runs" / "decoder" / "cloze" / "en" / "lora"
    run = demo / "results" / "teachers" / slug("resources/demo/models/teacher-llama") / "cloze/en/lora/seed1"
    teacher = load_file(run / "module" / "adapter_model.safetensors")
    copied = load_file(demo / "results/transferred/decoder/cloze/en/lora/copy/seed1/adapter_model.safetensors")
    assert copied.keys() == {k for k in teacher if ".layers.0." in k or ".layers.1." in k}
    assert all((copied[k] == teacher[k]).all() for k in copied)
    for init in ("zs-copy", "zs-skip", "zs-default"):
        history = json.loads((cell / f"student-{init}" / "seed1" / "history.json").read_text())
        assert history["best_epoch"] == 0 and [e["train_loss"] for e in history["epochs"]] == [None], init
        metrics = json.loads((cell / f"student-{init}" / "seed1" / "metrics.json").read_text())
        assert metrics["start_score"] == metrics["score"], init  # its start is its end
    score = {run: json.loads((cell / run / "seed1" / "metrics.json").read_text()) for run in
             ("teacher", "student-zs-skip", "student-zs-default")}
    gain = score["teacher"]["score"] - score["teacher"]["start_score"]  # the teacher with its LoRA, and alone
    summary = pd.read_csv(demo / "results" / "tables" / "summary.csv")
    kept = summary[(summary.setting == "decoder") & (summary.model == "TM-Student SKIP (zero-shot)")].KEPT.iloc[0]
    assert 100 * gain >= 1  # the demo's teacher gains from its LoRA (KEPT is empty where it gains under a point)
    expected = 100 * (score["student-zs-skip"]["score"] - score["student-zs-default"]["score"]) / gain
    assert kept == pytest.approx(expected, abs=1e-3)
    steps = pd.read_csv(demo / "results" / "tables" / "steps.csv")
    assert set(steps[steps.setting == "decoder"].model) == {"Student", "TM-Student COPY", "TM-Student SKIP",
                                                            "TM-Student AVG"}


def test_an_auto_healed_start_records_its_choice_and_its_healing(demo):
    """skip-auto-heal: the method of best fidelity in the cell's fidelity file, then healed without labels."""
    from transmod.align.fidelity import choose_method

    for pair, task, lang, peft in demo_grid():
        if pair != "incompatible":
            continue
        fidelity = json.loads((demo / f"results/fidelity/{pair}/{task}/{lang}/{peft}/seed1.json").read_text())["inits"]
        folder = demo / "results" / "transferred" / pair / task / lang / peft / "skip-auto-heal" / "seed1"
        provenance = json.loads((folder / "adapter_config.json").read_text())["transmod"]
        assert provenance["align"] == choose_method(fidelity, "skip", "f") and provenance["chosen_by"].startswith("fidelity")
        cells = provenance["healed"]["cells"]
        assert cells and all(0 <= c["rel_error_after"] <= c["rel_error_before"] for c in cells.values())
        history = json.loads((demo / f"results/runs/{pair}/{task}/{lang}/{peft}/student-skip-auto-heal/seed1/history.json")
                             .read_text())
        assert history["init_module"].endswith("skip-auto-heal/seed1")
    wins = pd.read_csv(demo / "results" / "tables" / "wins.csv")
    assert set(wins[wins.setting == "incompatible"].model) >= {"TM-Student SKIP", "TM-Student SKIP-AUTO-HEAL"}


def test_table_numbers_are_the_metrics(demo):
    runs = demo / "results" / "runs"
    table = pd.read_csv(demo / "results" / "tables" / "ner.csv")
    for pair, task, lang, peft in demo_grid():
        if task != "ner":
            continue
        metrics = json.loads((runs / pair / task / lang / peft / "student-skip" / "seed1" / "metrics.json").read_text())
        assert metrics["metric"] == "f1" and metrics["run"]["init"] == "skip"
        row = table[(table.setting == pair) & (table.module == peft) & (table.model == "TM-Student SKIP")]
        assert row[lang].iloc[0] == pytest.approx(100 * metrics["score"], abs=1e-3)


def test_zero_shot_runs_keep_the_transferred_module(demo):
    from safetensors.numpy import load_file

    def weights(path):  # keyed without the base model's prefix, which only a model with a head writes
        return {k.split(".", 1)[1] if k.startswith(("bert.", "distilbert.", "roberta.")) else k: v
                for k, v in load_file(path).items()}

    for pair, task, lang, peft in demo_grid():
        if pair != "incompatible":  # the demo's only pair with zero-shot runs
            continue
        cell = demo / "results" / "runs" / pair / task / lang / peft
        transferred = weights(demo / "results" / "transferred" / pair / task / lang / peft / "skip" / "seed1"
                              / "adapter.safetensors")
        kept = weights(cell / "student-zs-skip" / "seed1" / "module" / "adapter.safetensors")
        assert kept.keys() == transferred.keys() and all((kept[k] == transferred[k]).all() for k in kept)
        history = json.loads((cell / "student-zs-skip" / "seed1" / "history.json").read_text())
        assert history["config"]["freeze_module"] and len(history["epochs"]) == 2  # the demo's zero_shot budget


def test_a_light_run_trains_the_moved_lora_for_the_light_budget(demo):
    """lt-skip: LoRASuite's light fine-tune, from the moved LoRA for the `light` budget (1 epoch, against the
    student's 4), beside lt-default, a fresh LoRA on the same budget."""
    cell = demo / "results" / "runs" / "decoder" / "cloze" / "en" / "lora"
    for init, start in (("lt-skip", "results/transferred/decoder/cloze/en/lora/skip/seed1"),
                        ("lt-default", "a fresh LoRA")):
        history = json.loads((cell / f"student-{init}" / "seed1" / "history.json").read_text())
        assert len(history["epochs"]) == 1 and not history["config"]["freeze_module"], init
        log = (demo / "results/logs/train_student/decoder/cloze/en/lora" / init / "seed1.log").read_text()
        assert re.search(rf"training .*: .* 1 epochs x .*, from {start}\n", log), log
    full = json.loads((cell / "student-skip" / "seed1" / "history.json").read_text())
    assert len(full["epochs"]) == 4


def test_every_stage_is_a_file_of_its_kind_made_from_its_inputs(demo):
    """Each stage's file reads back as what it claims to be, from the models and samples its path names."""
    from safetensors.numpy import load_file

    from transmod.align.alignment import Alignment
    from transmod.align.correlation import Correlation
    from transmod.align.samplefile import SampleFile

    results = demo / "results"
    pairs = yaml.safe_load(DEMO_CONFIG.read_text())["pairs"]
    for pair, task, lang, peft in demo_grid():
        models = {role: pairs[pair][role] for role in ("teacher", "student")}
        samples = {role: SampleFile.open(results / "samples" / slug(m) / task / lang / f"{peft}.parquet")
                   for role, m in models.items()}
        for role, sample in samples.items():
            assert sample.meta["hook"] == peft and sample.num_tokens > 0 and slug(sample.meta["model"]) == slug(models[role])
        assert samples["teacher"].meta["data"] == samples["student"].meta["data"]  # the same examples
        assert (results / "teachers" / slug(models["teacher"]) / task / lang / peft / "seed1" / "module" / "adapter_config.json").is_file()
        align = results / "align" / pair / task / lang / peft
        for mapping in ("skip", "avg"):
            corr = Correlation.load(align / f"{mapping}.correlation.safetensors")
            lsa = Alignment.load(align / f"{mapping}.lsa.alignment.safetensors")
            assert corr.mapping == lsa.mapping == mapping and lsa.method == "lsa"
            assert [lc.student_layer for lc in corr.layers if lc.space == "h"] == list(range(samples["student"].num_layers))
            assert lsa.student["hidden_size"] == samples["student"].hidden_size
            assert lsa.teacher["hidden_size"] == samples["teacher"].hidden_size
            moved = load_file(results / "transferred" / pair / task / lang / peft / mapping / "seed1" / "adapter.safetensors")
            widths = {t.shape[-1] for k, t in moved.items() if k.endswith(("adapter_down.0.weight", "lora_A"))}
            assert widths == {samples["student"].hidden_size}, (pair, peft, mapping, widths)


def test_every_job_wrote_a_log_without_a_traceback(demo):
    logs = set(re.findall(r"^\s+log: (\S+\.log)", (demo / DEMO_RUN_LOG).read_text(), re.M))
    counts = job_counts((demo / DEMO_RUN_LOG).read_text())
    assert len(logs) == sum(counts.values()) - counts["all"]  # one log per job, `all` has none
    for log in sorted(logs):
        text = (demo / log).read_text()
        assert text.strip(), f"{log} is empty"
        assert "Traceback" not in text, f"{log}:\n{text[-2000:]}"


def test_training_log_shows_progress(demo):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    teacher = slug(config["pairs"]["matching"]["teacher"])
    text = (demo / "results/logs/train_teacher" / teacher / "ner/en/adapter/seed1.log").read_text()
    epochs = config["training"]["teacher"]["epochs"]
    start = re.search(r"training .+ \+ adapter on ner: [\d,]+ trainable parameters, \d+ train / \d+ validation / \d+ "
                      r"test examples, \d+ epochs x \d+ steps of 16, lr 0\.005, on cpu \(fp32\)", text)
    done = list(re.finditer(r"epoch (\d+)/\d+ done, step \d+/\d+, lr \S+, [\d,]+ tokens/s, elapsed [\d.]+ s, ETA [\d.]+ s: "
                            r"train loss [\d.]+, validation f1 [\d.]+ \(best [\d.]+, epoch \d\)", text))
    end = re.search(r"trained in [\d.]+ s; best epoch \d, validation f1 [\d.]+; wrote \S+", text)
    assert start and end and [int(m.group(1)) for m in done] == list(range(1, epochs + 1)), text
    assert start.end() < done[0].start() and done[-1].end() < end.start()


def test_fidelity_measures_every_method_on_the_same_unseen_tokens(demo):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    methods = set(yaml.safe_load((REPO / "config.yaml").read_text())["alignment"]["methods"])
    methods = set(config.get("alignment", {}).get("methods", methods))
    for pair, task, lang, peft in demo_grid():
        inits = json.loads((demo / "results/fidelity" / pair / task / lang / peft / "seed1.json").read_text())["inits"]
        split = {(r["fit_tokens"], r["heldout_tokens"]) for r in inits.values()}
        assert len(split) == 1, split  # every method measured on the same held-out rows
        fit, held = split.pop()
        assert held > 0 and fit > held
        if pair == "incompatible":  # the study's lsa, and every other fit, read exactly the first `fit` rows
            align = demo / "results/align" / pair / task / lang / peft
            for mapping in ("skip", "avg"):
                for method in methods - {"select"}:
                    header = _safetensors_meta(align / f"{mapping}.{method}.alignment.safetensors")
                    assert json.loads(header["transmod_alignment"])["num_tokens"] == fit
        elif task == "ner":  # SKIP: the student's layer 0 is the teacher's layer 0 on the same input, same module
            # (single sentences only: DistilBERT has no token types, so a pair's second segment reads otherwise)
            layer0 = [d for d in inits["skip"]["layers"] if d["student_layer"] == 0]
            assert layer0 and all(d["rel_error"] < 1e-4 and d["cka"] > 0.9999 for d in layer0), layer0
    table = pd.read_csv(demo / "results" / "tables" / "fidelity.csv")
    for peft in ("adapter", "lora"):
        rows = table[(table.setting == "incompatible") & (table.module == peft)]
        assert {(m, meth) for m, meth in zip(rows.mapping, rows.method)} == {(m, x) for m in ("skip", "avg") for x in methods}
        assert rows.rel_error.notna().all() and (rows.rel_error > 0).all()
        assert rows.cka.between(0, 1).all()
        # the methods differ, and the map-free measure does not just repeat the map-based one
        assert rows.rel_error.nunique() == len(rows) and rows.cka.nunique() > 1
        zs = rows[(rows.mapping == "skip") & (rows.method == "lsa")]
        assert zs.zero_shot.between(0, 100).all() and len(zs) == 1  # the demo's zs-skip run, beside its fidelity
        matching = table[(table.setting == "matching") & (table.module == peft)]
        assert set(matching.method) == {"identity"}
    assert (demo / "results" / "plots" / "fidelity.png").stat().st_size > 1000


def _safetensors_meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return handle.metadata()


def test_finished_demo_has_nothing_to_do(demo):
    done = snakemake("-n", "--profile", REPO / "profiles" / "demo", cwd=demo)
    assert "Nothing to be done" in done.stdout


def _override(work: Path, role: str) -> Path:
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["training"][role]["epochs"] += 1
    path = work / f"override-{role}.yaml"
    path.write_text(yaml.safe_dump({"training": config["training"]}))
    return path


def test_student_change_reruns_only_student_stages(demo):
    counts = dry_run("--configfile", DEMO_CONFIG, _override(demo, "student"), cwd=demo)
    # every trained student; zero-shot and light runs take their epochs from `zero_shot` and `light`, unchanged
    students = sum(not init.budget for cell in demo_grid(decoders=True) for init in demo_inits(cell[0]))
    # plan: the runs' recorded settings changed, so the plan `transmod tables` reads is written again
    assert counts == {"train_student": students, "evaluate": students, "plan": 1, "aggregate_tables": 1, "all": 1}


def test_teacher_change_reruns_teacher_and_downstream_but_never_sampling(demo):
    counts = dry_run("--configfile", DEMO_CONFIG, _override(demo, "teacher"), cwd=demo)
    cells = list(demo_grid(decoders=True))
    pairs = yaml.safe_load(DEMO_CONFIG.read_text())["pairs"]
    teachers = len({(pairs[pair]["teacher"], *cell) for pair, *cell in cells})  # shared: once
    # every transferred start once (a zero-shot run reuses its base's), and every student run that reads one:
    # default students (zs-default too) do not read the teacher
    starts = sum(len({init.base for init in demo_inits(cell[0]) if init.transferred}) for cell in cells)
    students = sum(init.transferred for cell in cells for init in demo_inits(cell[0]))
    assert counts == {
        "train_teacher": teachers, "prune_align": starts, "train_student": students,
        "fidelity": len(cells), "evaluate": len(cells) + students, "plan": 1, "aggregate_tables": 1, "all": 1,
    }


def test_lora_only_option_never_reruns_the_adapter_chain(demo):
    path = demo / "override-lora-b.yaml"
    path.write_text(yaml.safe_dump({"alignment": {"lora_b": "output"}}))
    done = snakemake("-n", "--profile", REPO / "profiles" / "demo", "--configfile", DEMO_CONFIG, path, cwd=demo)
    jobs = [line.split(":", 1)[1] for line in done.stdout.splitlines() if line.strip().startswith("wildcards:")]
    assert jobs and all("peft=adapter" not in job for job in jobs), [j for j in jobs if "peft=adapter" in j][:3]
    counts = job_counts(done.stdout)
    n_lora = len([c for c in demo_grid() if c[3] == "lora"])
    assert "train_teacher" not in counts  # teachers do not read lora_b
    assert counts["sample_embeddings"] == len({(c[0], c[1], c[2]) for c in demo_grid()}) * 2  # lora samples, both models
    assert counts["fidelity"] == n_lora


def test_pairs_sharing_a_teacher_train_and_sample_it_once(demo):
    """A second student for the matching pair's teacher: its teacher runs and samples are reused."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    spec = config["pairs"]["matching"]
    path = demo / "override-second-student.yaml"
    path.write_text(yaml.safe_dump({"pairs": {"second": {**spec, "tasks": ["pi"]}}}))
    counts = dry_run("--configfile", DEMO_CONFIG, path, cwd=demo)
    cells = len(config["tasks"]["pi"]["languages"]) * 2  # languages x module types
    assert "train_teacher" not in counts and "sample_embeddings" not in counts, counts
    assert counts["train_student"] == 3 * cells  # default, skip, avg of the new pair
    assert counts["evaluate"] == 4 * cells  # its teacher rows read the shared teacher's predictions


def test_paper_grid_plans_a_shared_teacher_once(tmp_path):
    path = tmp_path / "two-students.yaml"
    path.write_text(yaml.safe_dump({
        "pairs": {"matching": {"tasks": ["pi"]}, "incompatible": {"tasks": ["pi"]},
                  "to-distil": {"teacher": "xlm-roberta-large", "student": "distilbert-base-multilingual-cased",
                                "aligned": True, "tasks": ["pi"]}},
        "tasks": {"pi": {"languages": ["en", "de"]}},
    }))
    counts = job_counts(snakemake("-n", "--cores", 1, "--configfile", REPO / "config.yaml", path, cwd=tmp_path).stdout)
    cells = 2 * 2  # languages x module types
    assert counts["train_teacher"] == 2 * cells  # mBERT and XLM-R large, each once
    assert counts["sample_embeddings"] == 4 * cells  # mBERT, DistilmBERT, XLM-R large and base, each once
    assert counts["evaluate"] == 3 * cells * (1 + 6)  # each pair's teacher row and six student inits


def test_failed_job_leaves_no_output(demo, tmp_path):
    results = demo / "results" / "align" / "incompatible" / "ner" / "en" / "adapter"
    backup = tmp_path / "corr"
    shutil.copy(results / "skip.correlation.safetensors", backup)
    try:
        (results / "skip.correlation.safetensors").write_bytes(b"not a correlation file")
        target = (results / "skip.lsa.alignment.safetensors").relative_to(demo)  # outputs are matched as relative paths
        done = snakemake("--profile", REPO / "profiles" / "demo", "--force", target, cwd=demo, check=False)
        assert done.returncode != 0
        assert not (results / "skip.lsa.alignment.safetensors").exists()
        log = demo / "results" / "logs" / "solve_lsa" / "incompatible" / "ner" / "en" / "adapter" / "skip.log"
        assert "not a transmod correlation file" in log.read_text() and "Traceback" not in log.read_text()
    finally:
        shutil.copy(backup, results / "skip.correlation.safetensors")
        snakemake("--profile", REPO / "profiles" / "demo", "--touch", cwd=demo, check=False)


def test_paper_grid_plan_offline(tmp_path):
    done = snakemake("-n", "--cores", 1, cwd=tmp_path)
    counts = job_counts(done.stdout)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    task_langs = sum(len(config["tasks"][t]["languages"]) for p in config["pairs"].values() for t in p["tasks"])
    aligned_langs = sum(len(config["tasks"][t]["languages"]) for p in config["pairs"].values() if p["aligned"]
                        for t in p["tasks"])
    assert (task_langs, aligned_langs) == (9 + 7 + 15 + 9 + 7, 9 + 7)
    per_lang = len(config["peft"]) * len(config["seeds"])
    runs = task_langs * per_lang
    assert config["inits"] == ["default", "skip", "avg", "zs-skip", "zs-avg"]
    students = len(config["inits"]) + 1  # and zs-default, the zero-shot baseline
    assert counts == {
        "train_teacher": runs,
        "train_student": students * runs,
        "sample_embeddings": 2 * task_langs * len(config["peft"]),  # no model is shared by two pairs
        "correlate": 2 * task_langs * len(config["peft"]),
        "solve_lsa": 2 * task_langs * len(config["peft"]),
        "fit_alignment": 2 * aligned_langs * len(config["peft"]),  # every extra method of a mapping in one job
        "prune_align": 2 * runs,  # zero-shot runs start from the same transferred modules
        "fidelity": runs,  # every mapping and method of a grid cell, transferred in memory
        "evaluate": (1 + students) * runs,
        "plan": 1,  # the runs `transmod tables` reads, written first
        "aggregate_tables": 1,  # the fidelity table too
        "all": 1,
    }


def test_lint_is_clean(tmp_path):
    done = snakemake("--lint", cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout
    assert "Lints for" not in done.stdout


BAD_CONFIGS = {
    "wrong type": ({"seeds": "one"}, "config key seeds"),
    "unknown key": ({"epochs": 3}, "unknown key(s) epochs"),
    "unknown task": ({"pairs": {"matching": {"tasks": ["ner", "qa"]}}},
                     "config key pairs.matching.tasks: task 'qa' has no entry under `tasks`"),
    "language the task lacks": ({"tasks": {"pi": {"languages": ["en", "ar"]}}}, "config key tasks.pi.languages: ar"),
    "missing dataset": ({"tasks": {"ner": {"dataset": ""}}}, "config key tasks.ner.dataset"),
    "student deeper than teacher": (
        {"pairs": {"matching": {"teacher": "distilbert-base-multilingual-cased",
                                "student": "bert-base-multilingual-cased"}}},
        "config key pairs.matching.student",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_before_any_job(tmp_path, case):
    override, message = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(override))
    done = snakemake("-n", "--cores", 1, "--configfile", REPO / "config.yaml", path, cwd=tmp_path, check=False)
    out = done.stdout
    assert done.returncode != 0
    assert message in out, out[-2000:]
    assert "Job stats" not in out


CHANCE = {"ner": 0.0, "pi": 50.0, "nli": 100 / 3, "cloze": 100 / 3}  # score x 100: entity F1 starts at 0, accuracy at 1 / classes


def test_demo_shows_the_gap_the_study_is_about(demo):
    """A teacher well above chance and above its student in every cell, so the gap is real, not noise between
    equals; transferred starts change the result: in every cell of the matching pair, and in some task of
    the incompatible one (where the study found transfer hardest)."""
    summary = pd.read_csv(demo / "results" / "tables" / "summary.csv")
    moved = {}
    for (setting, module, task), rows in summary.groupby(["setting", "module", "task"]):
        avg = rows.set_index("model").AVG
        assert avg["Teacher"] > CHANCE[task] + 10, (setting, module, task, avg.to_dict())
        assert avg["Teacher"] > avg["Student"] + 1, (setting, module, task, avg.to_dict())
        assert rows.set_index("model").GAP.filter(like="TM-Student").notna().any()  # a gap wide enough to measure
        transferred = [m for m in avg.index if m.startswith("TM-Student") and "zero-shot" not in m]
        moved[setting, module, task] = all(avg[m] != avg["Student"] for m in transferred)
    for (setting, module, task), changed in moved.items():
        assert changed or setting != "matching", (setting, module, task)
    for module in ("adapter", "lora"):
        assert any(changed for (setting, m, _), changed in moved.items() if setting == "incompatible" and m == module)
