"""Offline compute nodes: `fetch_assets` against a local stand-in for the hub, then jobs with the hub offline.

This machine has no network, so a small threaded HTTP server on 127.0.0.1 (`LocalHub`) serves
"local copies" of hub repos (tiny models built here, a hub-layout dataset written with
`write_hub_folder`) through the parts of the hub's HTTP API that the real clients use:
`huggingface_hub` 0.36 (`snapshot_download`: repo info, HEAD/GET `resolve`) and `datasets` 4.8
(`load_dataset(hub_id, name=..., split=...)`: README/`resolve` plus the `tree` and `paths-info`
listings). The clients are pointed at it with HF_ENDPOINT, in subprocesses, because both libraries
read HF_ENDPOINT and the offline switches at import time.

Covered:
- `fetch_model` copies a hub model (config, tokenizer, safetensors) that then loads offline, identical.
- `fetch_dataset` copies a hub dataset (and a local hub-layout folder) into a folder that `load_split`
  reads with HF_HUB_OFFLINE=1/HF_DATASETS_OFFLINE=1, row for row, without a single request.
- A wrong hub id (model or dataset) fails with a TransmodError that names the id, also as a real
  `fetch_assets` job (its log names the id; no output folder is left behind).
- The workflow with `assets: {fetch: true}` and hub ids for models and dataset: the dry-run plans one
  `fetch_assets` job per model and dataset and every other job reads resources/assets only;
  `snakemake --until fetch_assets` fetches them from the local hub; a second dry-run fetches nothing;
  then real `sample_embeddings` and `train_teacher` jobs run with HF_HUB_OFFLINE=1 and
  HF_DATASETS_OFFLINE=1 in their environment (recorded by a sitecustomize probe in each Python
  process) while the server, still up, sees no request at all.
- A fetched copy missing when a job runs (`require_fetched`, called by train.py and
  sample_embeddings.py, run here with a stand-in `snakemake` object) names the path and says that
  `fetch_assets` must run first.

Not covered: the real huggingface.co (tokens, gated or private repos, LFS/Xet redirects to a CDN),
jobs on real SLURM compute nodes (here they run locally with the environment the Snakefile sets), and
the scripts other than train.py and sample_embeddings.py (prune_align, fidelity read only the models'
config.json through the same resources/assets paths; they do not call `require_fetched`).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from helpers.commands import job_counts
from helpers.localhub import LocalHub
from helpers.models import WORDS, make_model, save_model

# ---------------------------------------------------------------------------------------------
# The served repos and how to run clients against them.

SIZES = {"train": 16, "validation": 8, "test": 8}


def pi_rows(lang: str, split: str) -> list[dict]:
    """Distinct PI rows per language and split, in the test tokenizer's vocabulary."""
    offset = 7 * ("en", "de").index(lang) + 3 * list(SIZES).index(split)

    def sentence(i: int, k: int) -> str:
        return " ".join(WORDS[(offset + i * 5 + k + j) % len(WORDS)] for j in range(4 + i % 3))

    return [{"id": i, "sentence1": sentence(i, 0), "sentence2": sentence(i, 2 * (i % 2)), "label": i % 2}
            for i in range(SIZES[split])]


PI_ROWS = {(lang, split): pi_rows(lang, split) for lang in ("en", "de") for split in SIZES}


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory) -> Path:
    from transmod.train.data import write_hub_folder

    root = tmp_path_factory.mktemp("hub")
    save_model(make_model("bert", 2, seed=0), root / "models" / "tiny" / "teacher")
    save_model(make_model("distilbert", 1, seed=1), root / "models" / "tiny" / "student")
    write_hub_folder(root / "datasets" / "tiny" / "pi-data", "pi", PI_ROWS)
    return root


@pytest.fixture(scope="module")
def hub(hub_root):
    with LocalHub(hub_root) as server:
        yield server


def client_env(hub: LocalHub, home: Path, offline: bool = False) -> dict[str, str]:
    """The environment of a login node (or, offline, a compute node) whose hub is the local server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), TOKENIZERS_PARALLELISM="false")
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def checked(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


# ---------------------------------------------------------------------------------------------
# The library: fetch_model, fetch_dataset, require_fetched.


def test_fetch_model_copies_the_hub_model_that_then_loads_offline(hub, hub_root, tmp_path):
    dest = tmp_path / "teacher"
    hub.requests.clear()
    checked(run_python(f"""
        from transmod.workflow.assets import fetch_model
        fetch_model("tiny/teacher", {str(dest)!r})
    """, client_env(hub, tmp_path / "hf"), tmp_path))
    assert ("GET", "/api/models/tiny/teacher/revision/main") in hub.requests
    source = hub_root / "models" / "tiny" / "teacher"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (dest / name).read_bytes() == (source / name).read_bytes(), name

    import torch
    from transformers import AutoModel, AutoTokenizer

    fetched, original = AutoModel.from_pretrained(dest), AutoModel.from_pretrained(source)
    for (name, a), (_, b) in zip(fetched.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    text = "the cat sat on the mat"
    ids = [AutoTokenizer.from_pretrained(folder)(text)["input_ids"] for folder in (dest, source)]
    assert ids[0] == ids[1]


def test_fetch_dataset_copies_hub_and_local_datasets_that_load_split_reads_offline(hub, hub_root, tmp_path):
    from_hub, from_folder = tmp_path / "from-hub", tmp_path / "from-folder"
    folder = hub_root / "datasets" / "tiny" / "pi-data"
    checked(run_python(f"""
        from transmod.workflow.assets import fetch_dataset
        fetch_dataset("tiny/pi-data", "pi", ["en", "de"], {str(from_hub)!r})
        fetch_dataset({str(folder)!r}, "pi", ["en"], {str(from_folder)!r})
    """, client_env(hub, tmp_path / "hf"), tmp_path))
    assert any(path.startswith("/api/datasets/tiny/pi-data/") for _, path in hub.requests)

    hub.requests.clear()
    done = checked(run_python(f"""
        import json
        from transmod.train.data import load_split
        from transmod.train.tasks import SPLITS
        copies = (("hub", {str(from_hub)!r}, ["en", "de"]), ("folder", {str(from_folder)!r}, ["en"]))
        rows = {{f"{{name}} {{lang}} {{split}}": load_split(path, "pi", lang, split).to_list()
                for name, path, langs in copies for lang in langs for split in SPLITS}}
        print(json.dumps(rows))
    """, client_env(hub, tmp_path / "hf-offline", offline=True), tmp_path))
    assert hub.requests == [], "reading the fetched copies went online"
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(rows) == 9
    for key, got in rows.items():
        _, lang, split = key.split()
        assert got == PI_ROWS[(lang, split)], key


@pytest.mark.parametrize("call, hub_id", [
    ("fetch_model({hub_id!r}, {dest!r})", "no-such/model"),
    ("fetch_dataset({hub_id!r}, 'pi', ['en'], {dest!r})", "no-such/data"),
])
def test_fetch_with_a_wrong_hub_id_names_it(hub, tmp_path, call, hub_id):
    done = run_python(f"""
        from transmod.workflow.assets import fetch_dataset, fetch_model
        from transmod.errors import TransmodError
        try:
            {call.format(hub_id=hub_id, dest=str(tmp_path / "dest"))}
        except TransmodError as exc:
            print("TransmodError:", exc)
    """, client_env(hub, tmp_path / "hf"), tmp_path)
    message = checked(done).stdout.strip().splitlines()[-1]
    assert message.startswith("TransmodError: fetch_assets:") and repr(hub_id) in message, message
    if call.startswith("fetch_model"):
        assert "no such model on the hub" in message


def test_missing_fetched_copy_names_it_and_says_fetch_assets_first(tmp_path, monkeypatch):
    from transmod.errors import TransmodError
    from transmod.workflow.assets import require_fetched

    monkeypatch.chdir(tmp_path)
    model, data = "resources/assets/models/tiny/teacher", "resources/assets/datasets/tiny/pi-data"
    with pytest.raises(TransmodError, match=rf"model '{model}' is missing on this node: .*fetch_assets.* first"):
        require_fetched(model=model, dataset=data)
    Path(model).mkdir(parents=True)
    with pytest.raises(TransmodError, match=rf"dataset '{data}' is missing.*fetch_assets"):
        require_fetched(model=model, dataset=data)
    Path(data).mkdir(parents=True)
    require_fetched(model=model, dataset=data)
    # without assets.fetch, jobs read hub ids or the user's folders: not this check's business
    require_fetched(model="bert-base-multilingual-cased", dataset="data/pi")


@pytest.mark.parametrize("script", ["train.py", "sample_embeddings.py"])
def test_job_scripts_refuse_a_missing_fetched_copy(tmp_path, monkeypatch, script):
    """The job scripts themselves (with a stand-in `snakemake` object) stop before loading anything."""
    import torch

    from transmod.errors import TransmodError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the script sends both to its log; restored after
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    Path("resources/assets/datasets/tiny/pi-data").mkdir(parents=True)
    params = types.SimpleNamespace(model="resources/assets/models/tiny/teacher",
                                   dataset="resources/assets/datasets/tiny/pi-data")
    job = types.SimpleNamespace(log=[str(tmp_path / "job.log")], params=params, threads=torch.get_num_threads(),
                                wildcards=types.SimpleNamespace(pair="matching", task="pi", lang="en", seed="1",
                                                                peft="adapter", role="teacher"))
    try:
        with pytest.raises(TransmodError) as error:
            runpy.run_path(str(REPO / "workflow" / "scripts" / script), init_globals={"snakemake": job})
    finally:
        if sys.stdout is not sys.__stdout__ and getattr(sys.stdout, "name", None) == job.log[0]:
            sys.stdout.close()
    assert "'resources/assets/models/tiny/teacher' is missing on this node" in str(error.value)
    assert "fetch_assets" in str(error.value)


# ---------------------------------------------------------------------------------------------
# The workflow: fetch once where the network is, then every job offline.

PROBE = """\
import atexit, json, os, sys

def _record(path=os.environ.get("TRANSMOD_TEST_PROBE")):
    with open(path, "a") as out:
        env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
        out.write(json.dumps({"argv": sys.argv, **env}) + "\\n")

if os.environ.get("TRANSMOD_TEST_PROBE"):
    atexit.register(_record)
"""

OVERRIDE = {
    "assets": {"fetch": True},
    "pairs": {  # both pairs of config.yaml, on the local hub's tiny models
        "matching": {"teacher": "tiny/teacher", "student": "tiny/student", "aligned": False, "tasks": ["pi"]},
        "incompatible": {"teacher": "tiny/teacher", "student": "tiny/student", "aligned": True, "tasks": ["pi"]},
    },
    "tasks": {"pi": {"dataset": "tiny/pi-data", "languages": ["en"]}},
    "peft": ["adapter"],
    "inits": ["default", "skip"],
    "seeds": [1],
    "modules": {"adapter": {"bottleneck": 4}, "lora": {"r": 2, "alpha": 2}},
    "training": {role: {"learning_rate": 1.0e-3, "batch_size": 8, "epochs": 1, "max_length": 16}
                 for role in ("teacher", "student")},
    "sampling": {"split": "train", "max_tokens": 100, "batch_size": 8},
    "alignment": {"lora_b": "study", "holdout": 0.2, "methods": ["lsa"]},
}

ASSETS = ["resources/assets/models/tiny/teacher", "resources/assets/models/tiny/student",
          "resources/assets/datasets/tiny/pi-data"]


def workflow(work: Path, env: dict[str, str], *args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
                           str(REPO / "config.yaml"), str(work / "override.yaml"), *map(str, args)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    if check:
        command = " ".join(map(str, args))
        assert done.returncode == 0, f"snakemake {command}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def planned_jobs(output: str) -> list[tuple[str, str, str]]:
    """(rule, input line, output line) of every job a dry-run prints."""
    jobs = []
    for block in re.split(r"\n(?=(?:localrule|rule) \w+:)", output)[1:]:
        rule = re.match(r"(?:localrule|rule) (\w+):", block).group(1)
        fields = dict(re.findall(r"^\s+(input|output): (.*)$", block, re.M))
        jobs.append((rule, fields.get("input", ""), fields.get("output", "")))
    return jobs


@pytest.fixture
def workdir(tmp_path, hub) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "work"
    work.mkdir()
    (work / "override.yaml").write_text(yaml.safe_dump(OVERRIDE))
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    env = client_env(hub, tmp_path / "hf")
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")])),
               TRANSMOD_TEST_PROBE=str(tmp_path / "probe.jsonl"))
    return work, env


def test_workflow_fetches_assets_once_then_jobs_run_with_the_hub_offline(hub, workdir):
    work, env = workdir

    # the plan: one fetch_assets job per hub model and dataset; every other job reads the copies
    done = workflow(work, env, "-n", "--cores", 1)
    jobs = planned_jobs(done.stdout + done.stderr)
    assert job_counts(done.stdout + done.stderr)["fetch_assets"] == 3
    assert sorted(out for rule, _, out in jobs if rule == "fetch_assets") == sorted(ASSETS)
    readers = [(rule, inp) for rule, inp, _ in jobs if rule != "fetch_assets" and "tiny/" in inp]
    assert {rule for rule, _ in readers} >= {"sample_embeddings", "train_teacher", "train_student", "prune_align",
                                             "fidelity"}
    for rule, inp in readers:
        for path in inp.split(", "):
            assert "tiny/" not in path or path in ASSETS, (rule, path)

    # where the network is: fetch them from the (local) hub
    hub.requests.clear()
    workflow(work, env, "--cores", 2, "--until", "fetch_assets")
    for path in ASSETS:
        assert (work / path).is_dir(), path
    assert {path for _, path in hub.requests if path.startswith("/api/")} >= {
        "/api/models/tiny/teacher/revision/main", "/api/models/tiny/student/revision/main"}
    assert not (work / "results" / "samples").exists(), "--until fetch_assets ran more than the fetches"

    # with the assets present, nothing is fetched again
    counts = job_counts(workflow(work, env, "-n", "--cores", 1).stdout)
    assert "fetch_assets" not in counts and counts["sample_embeddings"] == 2  # the 2 models that both pairs share
    assert counts["train_teacher"] == 1  # one teacher, shared by both pairs

    # on a compute node: jobs read the local copies, the hub offline; the server sees no request
    hub.requests.clear()
    run = Path("results/teachers/tiny--teacher/pi/en/adapter/seed1")
    samples = Path("results/samples/tiny--teacher/pi/en/adapter.parquet")
    workflow(work, env, "--cores", 2, samples, run / "history.json")
    assert hub.requests == [], f"jobs went online: {hub.requests[:5]}"
    assert (work / samples).is_file()
    assert (work / run / "test_predictions.json").is_file()
    log = (work / "results" / "logs" / "sample_embeddings" / "tiny--teacher" / "pi" / "en" / "adapter.log").read_text()
    assert "of resources/assets/models/tiny/teacher" in log
    # every job's Python process recorded its environment at exit (the sitecustomize probe)
    jobs = {}
    for line in Path(env["TRANSMOD_TEST_PROBE"]).read_text().splitlines():
        record = json.loads(line)
        for arg in record["argv"]:
            if re.search(r"\.(fetch_assets|train|sample_embeddings)\.py$", arg):  # .snakemake/scripts/tmpXXX.<script>
                jobs.setdefault(Path(arg).name.split(".", 1)[1], []).append(record)
    assert {name: len(records) for name, records in jobs.items()} == {
        "fetch_assets.py": 3, "train.py": 1, "sample_embeddings.py": 1}, jobs
    for record in jobs["train.py"] + jobs["sample_embeddings.py"]:
        assert record["HF_HUB_OFFLINE"] == "1" and record["HF_DATASETS_OFFLINE"] == "1", record
    for record in jobs["fetch_assets.py"]:  # the one job that goes online lifts both switches
        assert record["HF_HUB_OFFLINE"] is None and record["HF_DATASETS_OFFLINE"] is None, record


def test_fetch_assets_job_with_a_wrong_hub_id_names_it(workdir):
    work, env = workdir
    target = "resources/assets/models/no-such/model"
    done = workflow(work, env, "--cores", 1, target, check=False)
    assert done.returncode != 0
    log = (work / "results" / "logs" / "fetch_assets" / "models" / "no-such" / "model.log").read_text()
    assert "fetch_assets: model 'no-such/model': no such model on the hub" in log, log[-2000:]
    parent = (work / target).parent
    assert not parent.exists() or list(parent.iterdir()) == [], "the failed fetch left files behind"
