"""The workflow's config checks before any job: numbers that are not finite, names too long for a path,
model names that are neither a model folder nor a hub id, two models that would share a results folder,
and config files that would make Snakemake run code (YTE templating).

Each case is refused with one line naming the key (or the file and line), as in test_bad_input.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from helpers import REPO
from helpers.commands import snakemake
from helpers.config import SCHEMA, study_config
from helpers.models import make_model
from helpers.sandbox import tree

from transmod.atomic import MAX_NAME
from transmod.errors import TransmodError
from transmod.hub import slug
from transmod.workflow.config import validate_config

NAN, INF = float("nan"), float("inf")
LONG = "p" * 300  # a pair name that once failed only after sampling, with "File name too long"


def _renamed(old: str, new: str | bool) -> dict:
    """config.yaml with one pair renamed."""
    config = study_config()
    config["pairs"] = {new if name == old else name: spec for name, spec in config["pairs"].items()}
    return config


def _task_named(name: str, f: dict) -> dict:
    """config.yaml with a part-of-speech task of this name declared on local data, run by the matching pair."""
    task = {"dataset": f["pos"], "languages": ["en"], "kind": "token-classification", "text_columns": ["tokens"],
            "label_column": "upos", "metric": "accuracy"}
    return study_config(**{f"tasks.{name}": task, "pairs.matching.tasks": ["ner", name]})


CASES = {
    # every number finite: YAML's .nan and .inf pass every schema bound
    "learning_rate: .nan": (lambda f: study_config(**{"training.teacher.learning_rate": NAN}),
                            "config key training.teacher.learning_rate: nan is not a finite number"),
    "learning_rate: .inf": (lambda f: study_config(**{"training.student.learning_rate": INF}),
                            "config key training.student.learning_rate: inf is not a finite number"),
    "a task's learning_rate: -.inf": (lambda f: study_config(**{"tasks.ner.training": {"teacher": {"learning_rate": -INF}}}),
                                      "config key tasks.ner.training.teacher.learning_rate: -inf is not a finite"),
    "zero_shot learning_rate: .nan": (lambda f: study_config(**{"zero_shot.learning_rate": NAN}),
                                      "config key zero_shot.learning_rate: nan"),
    "holdout: .nan": (lambda f: study_config(**{"alignment.holdout": NAN}), "config key alignment.holdout: nan"),
    "alpha: .inf": (lambda f: study_config(**{"modules.lora.alpha": INF}), "config key modules.lora.alpha: inf"),
    "alpha: 8.5": (lambda f: study_config(**{"modules.lora.alpha": 8.5}),
                   "config key modules.lora.alpha: 8.5 is not of type 'integer'"),
    "sampling dtype float16": (lambda f: study_config(**{"sampling.dtype": "float16"}),
                               "config key sampling.dtype: 'float16' is not one of ['float32', 'bfloat16']"),
    "a seed past 2**32": (lambda f: study_config(seeds=[2**32]),
                          "config key seeds.0: 4294967296 is greater than the maximum"),
    "a pair named `yes` (a bool in YAML)": (lambda f: _renamed("matching", True),
                                            "config key pairs: the name True is read as a bool, not as text; quote it"),
    # model names: a model folder (config.json) or a hub id
    "teacher: ..": (lambda f: study_config(**{"pairs.matching.teacher": ".."}),
                    "config key pairs.matching.teacher: '..' is not a model folder (it holds no config.json)"),
    "teacher: /": (lambda f: study_config(**{"pairs.matching.teacher": "/"}),
                   "config key pairs.matching.teacher: '/' is not a model folder"),
    "student: .": (lambda f: study_config(**{"pairs.matching.student": "."}),
                   "config key pairs.matching.student: '.' is not a model folder"),
    "teacher: a data folder": (lambda f: study_config(**{"pairs.matching.teacher": f["pos"]}),
                               "(it holds no config.json); give a model folder or a hub id"),
    "teacher: neither a folder nor a hub id": (lambda f: study_config(**{"pairs.matching.teacher": "my teacher"}),
                                               "config key pairs.matching.teacher: 'my teacher' is neither a local "
                                               "folder nor a hub id"),
    "dataset: neither a folder nor a hub id": (lambda f: study_config(**{"tasks.ner.dataset": "wiki neural"}),
                                               "config key tasks.ner.dataset: 'wiki neural' is neither"),
    # names that become folder names
    "a pair name of 300 characters": (lambda f: _renamed("matching", LONG),
                                      f"config key pairs: the name {'p' * 24}... has 300 characters; it names folders "
                                      f"under results/: use at most {MAX_NAME}"),
    # decoder tasks (completion, multiple choice) run on decoder pairs, with LoRA only
    "a completion task on an encoder pair": (lambda f: study_config(**{
        "tasks.qa": {"dataset": "someone/qa", "languages": ["en"], "kind": "completion", "text_columns": ["prompt"],
                     "label_column": "completion", "metric": "exact_match"},
        "pairs.matching.teacher": f["t"], "pairs.matching.tasks": ["ner", "qa"]}),
        "config key pairs.matching.tasks: task qa is a completion task, and the teacher"),
    "a decoder pair with adapters": (lambda f: study_config(**{
        "tasks.qa": {"dataset": "someone/qa", "languages": ["en"], "kind": "completion", "text_columns": ["prompt"],
                     "label_column": "completion", "metric": "exact_match"},
        "pairs.matching": {"teacher": f["d"], "student": f["d"], "aligned": False, "tasks": ["qa"],
                           "inits": ["default", "skip"]}}),
        "config key peft: the completion task qa of pair matching trains a LoRA on a decoder LLM, and peft also "
        "lists adapter; give the pair its own `peft: [lora]` (pairs.matching.peft)"),
    "a decoder pair sampling fewer tokens than its MLP is wide": (lambda f: study_config(**{
        "pairs.matching": {"teacher": f["d"], "student": f["d"], "aligned": False, "tasks": ["pi"], "peft": ["lora"]},
        "sampling.max_tokens": 160}),
        "config key sampling.max_tokens: the fidelity jobs of pair matching fit a 128 x 128 map per layer (lora) on "
        "the sampled tokens before the held-out 20%: 128 of 160, and need at least 129; raise sampling.max_tokens to "
        "161 or more"),
    "a decoder teacher with an encoder student": (lambda f: study_config(**{
        "pairs.matching": {"teacher": f["d"], "student": f["s"], "aligned": False, "tasks": ["pi"], "peft": ["lora"]}}),
        "is an encoder and the teacher"),
    "a task named as a table of every task": (lambda f: _task_named("steps", f),
                                              "config key tasks.steps: results/tables/steps.md is the table of every "
                                              "task; rename the task"),
    "a task name one past the limit": (lambda f: _task_named("n" * (MAX_NAME + 1), f),
                                       f"config key tasks: the name {'n' * 24}... has {MAX_NAME + 1} characters"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_refused_naming_the_key(model_folders, case):
    make, expected = CASES[case]
    with pytest.raises(TransmodError) as info:
        validate_config(make(model_folders), SCHEMA)
    assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_decoder_pair_may_answer_a_sentence_task_by_label_words(model_folders):
    config = study_config(**{"pairs.matching": {"teacher": model_folders["d"], "student": model_folders["d"],
                                                "aligned": False, "tasks": ["pi"], "peft": ["lora"]}})
    validate_config(config, SCHEMA)
    config["pairs"]["matching"]["tasks"] = ["ner"]
    with pytest.raises(TransmodError, match="is a decoder LLM; decoder LLMs run completion, multiple-choice and "
                                            "sentence classification tasks"):
        validate_config(config, SCHEMA)


def test_a_decoder_pair_sampling_as_many_tokens_as_asked_passes(model_folders):
    config = study_config(**{"pairs.matching": {"teacher": model_folders["d"], "student": model_folders["d"],
                                                "aligned": False, "tasks": ["pi"], "peft": ["lora"]},
                             "sampling.max_tokens": 161})
    validate_config(config, SCHEMA)  # the least the refusal asks for


def test_names_at_the_limit_pass(model_folders):
    """The limit refuses only what it must: a pair and a task of MAX_NAME characters pass."""
    config = _task_named("n" * MAX_NAME, model_folders)
    config["pairs"]["m" * MAX_NAME] = config["pairs"].pop("matching")
    validate_config(config, SCHEMA)


@pytest.fixture
def colliding(tmp_path, monkeypatch) -> dict:
    """A model at resources/demo/models/teacher-bert and another in a local folder of that path's results folder
    name (resources--demo--models--teacher-bert), as the two teachers of two pairs; run from their folder."""
    first = "resources/demo/models/teacher-bert"
    for folder in (first, slug(first), "elsewhere"):
        make_model("bert", 4, hidden=24).config.save_pretrained(tmp_path / folder)
    make_model("distilbert", 2, hidden=24).config.save_pretrained(tmp_path / "student")
    monkeypatch.chdir(tmp_path)
    pairs = {"one": {"teacher": first, "student": "student", "aligned": False, "tasks": ["ner"]},
             "two": {"teacher": slug(first), "student": "student", "aligned": False, "tasks": ["ner"]}}
    return study_config(pairs=pairs, **{"modules.adapter.bottleneck": 8})


def test_two_models_with_one_results_folder_are_refused(colliding):
    with pytest.raises(TransmodError) as info:
        validate_config(colliding, SCHEMA)
    message = str(info.value)
    assert message.startswith("config key pairs.two.teacher: 'resources--demo--models--teacher-bert' and "
                              "'resources/demo/models/teacher-bert' (pairs.one.teacher) are different models whose "
                              "results would share one folder (results/teachers/resources--demo--models--teacher-bert)")
    assert "\n" not in message
    colliding["pairs"]["two"]["teacher"] = "elsewhere"  # the same config, with a teacher of its own name
    validate_config(colliding, SCHEMA)
    colliding["pairs"]["two"]["teacher"] = "resources/demo/models/teacher-bert/"  # one model, spelled twice
    validate_config(colliding, SCHEMA)


# A YTE template whose payload would create `pwned` where Snakemake runs.
YTE = '__use_yte__: true\nseeds:\n  - ?__import__("pathlib").Path("pwned").touch() or 1\n'

WORKFLOW_CASES = {
    "learning_rate: .nan": ("training:\n  teacher: {learning_rate: .nan, batch_size: 16, epochs: 1, max_length: 64}\n"
                            "  student: {learning_rate: 1.0e-5, batch_size: 16, epochs: 1, max_length: 64}\n",
                            "config key training.teacher.learning_rate: nan is not a finite number"),
    "alpha: 8.5": ("modules: {adapter: {bottleneck: 16}, lora: {r: 4, alpha: 8.5}}\n",
                   "config key modules.lora.alpha: 8.5 is not of type 'integer'"),
    "teacher: ..": ("pairs:\n  matching: {teacher: .., student: distilbert-base-multilingual-cased, aligned: false, "
                    "tasks: [ner]}\n", "config key pairs.matching.teacher: '..' is not a model folder"),
    "a pair name of 300 characters": (f"pairs:\n  {LONG}: {{teacher: bert-base-multilingual-cased, student: "
                                      "distilbert-base-multilingual-cased, aligned: false, tasks: [ner]}\n",
                                      "config key pairs: the name pppp"),
}


@pytest.mark.parametrize("case", list(WORKFLOW_CASES))
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, case):
    text, expected = WORKFLOW_CASES[case]
    (tmp_path / "mine.yaml").write_text(text)
    before = tree(tmp_path)
    done = snakemake("-n", "--configfile", tmp_path / "mine.yaml", cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert expected in done.stdout and "Traceback (most recent call last)" not in done.stdout, done.stdout
    assert tree(tmp_path) == before


def test_snakemake_refuses_two_models_with_one_results_folder(tmp_path):
    """The demo's teacher, still to be built by its rules, beside a local folder named like its results folder."""
    demo = yaml.safe_load((REPO / "profiles" / "demo" / "demo-config.yaml").read_text())
    other = slug(demo["pairs"]["matching"]["teacher"])
    make_model("bert", 4, hidden=24).config.save_pretrained(tmp_path / other)
    demo["pairs"]["incompatible"]["teacher"] = other
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(demo, sort_keys=False))
    before = tree(tmp_path)
    done = snakemake("-n", "--configfile", tmp_path / "mine.yaml", cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert ("config key pairs.incompatible.teacher: 'resources--demo--models--teacher-bert' and "
            "'resources/demo/models/teacher-bert' (pairs.matching.teacher) are different models") in done.stdout, \
        done.stdout
    assert tree(tmp_path) == before


def test_yte_in_the_workflows_config_is_refused_before_it_runs(tmp_path):
    """The Snakefile reads its own config.yaml before Snakemake does: the template's code never runs."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    config = tmp_path / "config.yaml"
    config.write_text(YTE + config.read_text().replace("seeds: [1]\n", ""))
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", tmp_path / "Snakefile"], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert done.returncode != 0
    assert f"{config}, line 1: __use_yte__ makes Snakemake run" in done.stdout, done.stdout
    assert "Traceback (most recent call last)" not in done.stdout
    assert not (tmp_path / "pwned").exists()


def test_yte_in_a_configfile_is_refused(tmp_path):
    """Snakemake renders a --configfile's template while it parses its command line, before the Snakefile
    runs: the workflow refuses the file, but only after its code ran (the README says so)."""
    (tmp_path / "evil.yaml").write_text(YTE)
    done = snakemake("-n", "--configfile", tmp_path / "evil.yaml", cwd=tmp_path, check=False)
    assert done.returncode != 0
    assert f"{tmp_path / 'evil.yaml'}, line 1: __use_yte__ makes Snakemake run" in done.stdout, done.stdout
    assert "Traceback (most recent call last)" not in done.stdout
    assert (tmp_path / "pwned").exists()  # Snakemake's order, not ours: when this fails, update the README
