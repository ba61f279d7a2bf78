"""Snakemake through a real SLURM cluster (snakemake-executor-plugin-slurm).

The cluster tests need the single-node cluster of tests/slurm/start_cluster.sh
(run it as root first) and are skipped when `sbatch` is missing or `sinfo`
fails. The profile tests need no cluster.

The workflow runs with the production profile plus the CI overrides, exactly
as CI runs the real workflow:

    snakemake --profile profiles/slurm --profile tests/slurm/profile

With the cluster up, one grid cell of the demo runs this way, every job of it
in sbatch, and must give the numbers of the local demo run (conftest.py's
`demo` fixture) exactly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm"
CI_PROFILE = ROOT / "tests" / "slurm" / "profile"

from helpers.commands import job_counts, run_snakemake
from helpers.config import DEMO_CONFIG
from helpers.slurm import SLURM_UP, SLURM_WHY

from transmod.workflow import profile_check

GPU_RULES = ("train_teacher", "train_student", "sample_embeddings")
CLUSTER_TIMEOUT_S = 240


def _load(profile_dir: Path) -> dict:
    return yaml.safe_load((profile_dir / "config.yaml").read_text())


needs_cluster = pytest.mark.skipif(not SLURM_UP, reason=SLURM_WHY)


# ------------------------------------------------------------------ profiles (no cluster)


def test_profile_every_entry_commented():
    """Each top-level entry and each resource line has a comment right above it."""
    lines = (PROFILE / "config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_-][\w-]*:", line) and not line.strip().startswith("#"):
            above = lines[i - 1].strip() if i else ""
            is_rule_name = re.match(r"^  \w+:$", line) and lines[i + 1].strip().startswith("#")
            assert above.startswith("#") or is_rule_name, f"uncommented profile entry: {line!r}"


def test_production_profile_contents():
    prof = _load(PROFILE)
    assert prof["executor"] == "slurm"
    assert prof["rerun-incomplete"] is True
    assert int(prof["jobs"]) > 0 and int(prof["retries"]) >= 1 and int(prof["latency-wait"]) > 0
    res = prof["default-resources"]
    assert profile_check.is_placeholder(res["slurm_partition"])
    assert profile_check.is_placeholder(res["slurm_account"])
    assert "attempt" in str(res["runtime"]) and "attempt" in str(res["mem_mb"])
    groups = prof["groups"]  # short jobs ride along with the job they follow
    assert groups["train_teacher"] == groups["train_student"] == groups["evaluate"]
    assert groups["correlate"] == groups["solve_lsa"] != groups["evaluate"]
    assert prof["group-components"] == {groups["sample_embeddings"]: 4}  # four samplings per sbatch job


def test_ci_profile_in_sync_with_production():
    """The CI layer restates whole keys; it must not drift from profiles/slurm."""
    prod, ci = _load(PROFILE), _load(CI_PROFILE)
    prod_res, ci_res = prod["default-resources"], ci["default-resources"]
    assert ci_res["slurm_partition"] == "ci"
    assert "slurm_account" not in ci_res  # no accounts without accounting DB
    for key in set(prod_res) - {"slurm_partition", "slurm_account"}:
        assert str(ci_res.get(key)) == str(prod_res[key]), f"default-resources: {key} differs"
    assert set(ci_res) - {"slurm_partition"} <= set(prod_res)
    assert ci.get("set-resources") == prod.get("set-resources")  # none: the rules declare their GPU
    assert ci["config"] == {"gpus_per_job": 0}  # no GPU on the CI node: the GPU rules ask for none
    assert set(prod["set-threads"]) == {"train_teacher", "train_student"} <= set(ci["set-threads"])
    assert set(ci["set-threads"].values()) == {1}  # two real cores on CI: one thread per job
    assert ci["slurm-status-command"] == "squeue"
    assert "groups" not in ci  # CI runs the production groups
    # MinJobAge (write_conf.sh: 3600 s, at least 600) must exceed 3x the initial interval,
    # otherwise the plugin silently switches to sacct.
    assert 3 * int(ci["slurm-init-seconds-before-status-checks"]) <= 600


def job_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job that a dry-run lists, the members of group jobs included."""
    jobs, rule = [], None
    for line in output.splitlines():
        if header := re.match(r"^\s*(?:local)?rule (\w+):$", line):
            rule = header.group(1)
        elif rule and (listed := re.match(r"^\s*resources: (.*)$", line)):
            jobs.append((rule, dict(item.split("=", 1) for item in listed.group(1).split(", "))))
            rule = None
    return jobs


def gpus_asked(workdir: Path, *args: str) -> dict[str, set[str | None]]:
    """Rule -> the `gpu` resource of its jobs (None: not asked) in a dry-run of a small paper grid."""
    small = _write(workdir / "small.yaml", """
        pairs: {matching: {tasks: [pi]}, incompatible: {tasks: [pi]}}
        tasks: {pi: {languages: [en]}}
        """)
    done = run_snakemake(["-s", ROOT / "Snakefile", "-n", *args, "--configfile", ROOT / "config.yaml", small],
                         workdir, 300)
    assert done.returncode == 0, done.stdout[-4000:]
    jobs = job_resources(done.stdout)
    assert Counter(rule for rule, _ in jobs) == job_counts(done.stdout), "a job without its resources"
    asked: dict[str, set[str | None]] = {}
    for rule, resources in jobs:
        asked.setdefault(rule, set()).add(resources.get("gpu"))
    return asked


def test_the_rules_that_run_models_ask_for_a_gpu_and_no_profile_repeats_it(tmp_path):
    """The GPU rules declare `resources: gpu` (config gpus_per_job); a profile says how many GPUs there are
    (profiles/local) and nothing per rule, so the production cluster gets `--gpus=1` for those rules alone and
    the CI cluster, which has no GPU, none."""
    for profile in [*sorted((ROOT / "profiles").iterdir()), CI_PROFILE]:
        for rule, res in (_load(profile).get("set-resources") or {}).items():
            assert not {"gpu", "gres", "gpu_model"} & set(res), f"{profile}: {rule} repeats the GPU need"
    assert _load(ROOT / "profiles" / "local")["resources"] == {"gpu": 1}  # the machine's GPUs
    production = gpus_asked(tmp_path, "--profile", PROFILE, "--default-resources", "slurm_partition=gpu")
    assert {rule for rule, gpus in production.items() if gpus != {None}} == set(GPU_RULES), production
    assert all(production[rule] == {"1"} for rule in GPU_RULES), production
    ci = gpus_asked(tmp_path, "--profile", PROFILE, "--profile", CI_PROFILE)
    assert ci == {rule: {"0"} if rule in GPU_RULES else {None} for rule in production}, ci


def test_fewer_gpus_than_a_job_asks_for_is_refused_before_any_job(tmp_path):
    """profiles/local on a machine without a GPU: `resources: gpu=0` stops the run at once, naming both keys
    (Snakemake itself would stop at the first GPU job, blaming pipes); with `gpus_per_job: 0` it runs."""
    local = ("--profile", ROOT / "profiles" / "local", "--resources", "gpu=0")
    done = run_snakemake(["-s", ROOT / "Snakefile", "-n", *local], tmp_path, 300)
    assert done.returncode != 0
    assert "`resources: gpu` is 0" in done.stdout and "`gpus_per_job: 1` of the config" in done.stdout, done.stdout
    assert "Job stats" not in done.stdout
    cpu_only = gpus_asked(tmp_path, *local, "--config", "gpus_per_job=0")
    assert all(cpu_only[rule] == {"0"} for rule in GPU_RULES), cpu_only


def test_find_placeholders():
    rules = {
        "a": {"slurm_partition": "<set-me>", "slurm_account": "acc", "mem_mb": 10},
        "b": {"slurm_partition": "<set-me>", "slurm_account": "'<SET_ME>'"},
        "c": {"slurm_partition": "gpu", "slurm_account": "acc"},
    }
    found = profile_check.find_placeholders(rules)
    assert found == {"slurm_partition": ["a", "b"], "slurm_account": ["b"]}
    msg = profile_check.format_message(found, rules)
    assert "`slurm_partition` for rule(s) a, b" in msg
    assert "`slurm_account` for rule(s) b" in msg
    all_rules = profile_check.format_message({"slurm_account": ["a", "b", "c"]}, rules)
    assert "`default-resources: slurm_account`" in all_rules


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _snakemake(workdir: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return run_snakemake(["--directory", workdir, "--workflow-profile", "none", *args], workdir, timeout)


CHECK_SNIPPET = """
from transmod.workflow.profile_check import check_slurm_profile
"""


def test_placeholder_profile_fails_early_with_key_names(tmp_path):
    """Unedited profiles/slurm: the run stops before any submission and names the keys."""
    snakefile = _write(
        tmp_path / "Snakefile",
        CHECK_SNIPPET
        + """
rule all:
    input: "a.txt"

rule a:
    output: "a.txt"
    shell: "touch {output}"

check_slurm_profile(workflow)
""",
    )
    site = tmp_path / "my-site"  # a copy of the profile under another name: the message names the copy
    shutil.copytree(PROFILE, site)
    res = _snakemake(tmp_path, "-s", str(snakefile), "--profile", str(site), "--dry-run")
    assert res.returncode != 0, res.stdout
    assert "`default-resources: slurm_partition` is still a placeholder" in res.stdout, res.stdout
    assert "`default-resources: slurm_account` is still a placeholder" in res.stdout, res.stdout
    assert f"set it in {site / 'config.yaml'}" in res.stdout and "set it in profiles/slurm" not in res.stdout, res.stdout
    assert "submitted with SLURM jobid" not in res.stdout
    assert not (tmp_path / "a.txt").exists()


# ------------------------------------------------------------------ real cluster

@needs_cluster
def test_failed_slurm_job_is_reported(tmp_path):
    """A job that fails on the node is seen as FAILED through squeue; the run stops instead of hanging."""
    snakefile = _write(
        tmp_path / "Snakefile",
        """
        rule all:
            input: "never.txt"

        # named like a CPU-only workflow rule that the profile does not group
        rule aggregate_tables:
            output: "never.txt"
            log: "logs/aggregate_tables.log"
            shell: "echo failing in $SLURM_JOB_ID > {log}; exit 3"
        """,
    )
    res = _snakemake(
        tmp_path,
        "-s", str(snakefile),
        "--profile", str(PROFILE),
        "--profile", str(CI_PROFILE),
        "--retries", "0",
        timeout=CLUSTER_TIMEOUT_S,
    )
    assert res.returncode != 0
    ids = re.findall(r"submitted with SLURM jobid (\d+)", res.stdout)
    assert len(ids) == 1, res.stdout[-6000:]
    assert f"SLURM-job '{ids[0]}' failed, SLURM status is: 'FAILED'" in res.stdout, res.stdout[-6000:]
    assert (tmp_path / "logs/aggregate_tables.log").read_text().strip() == f"failing in {ids[0]}"
    assert not (tmp_path / "never.txt").exists()


# One cell of the demo's grid (pair, task, language, module): its teacher, every student init, and the
# alignment and fidelity jobs they need. The incompatible pair's cell holds every
# rule of a cell (fit_alignment only runs for aligned pairs) and NER scores that differ between inits.
CELL = ("incompatible", "ner", "en", "lora")


def cell_targets() -> list[str]:
    pair, task, lang, peft = CELL
    inits = yaml.safe_load(DEMO_CONFIG.read_text())["pairs"][pair]["inits"]
    runs = ["teacher", *(f"student-{init}" for init in inits), "student-zs-default"]
    cell = f"{pair}/{task}/{lang}/{peft}"
    return [*(f"results/runs/{cell}/{run}/seed1/metrics.json" for run in runs), f"results/fidelity/{cell}/seed1.json"]


@pytest.fixture(scope="module")
def slurm_cell(tmp_path_factory, demo) -> tuple[Path, str]:
    """The demo's CELL built through `--profile profiles/slurm` on the test cluster, from the local demo's
    models and data (copied with their times: the demo_* rules have nothing to do)."""
    work = tmp_path_factory.mktemp("slurm-cell")
    shutil.copytree(demo / "resources", work / "resources")
    profiles = ("--profile", PROFILE, "--profile", CI_PROFILE, "--configfile", DEMO_CONFIG)
    # targets first: --configfile takes every argument after it
    done = run_snakemake([*cell_targets(), "-s", ROOT / "Snakefile", *profiles], work, timeout=1200)
    assert done.returncode == 0, done.stdout[-8000:]
    return work, done.stdout


@needs_cluster
def test_demo_cell_runs_as_slurm_jobs(slurm_cell):
    work, out = slurm_cell
    ids = set(re.findall(r"submitted with SLURM jobid (\d+)", out))
    logs = {path: path.read_text() for path in (work / ".snakemake" / "slurm_logs").rglob("*.log")}
    # every job of the plan ran inside an sbatch job, alone or grouped
    planned = job_counts(out)
    assert {"train_teacher", "train_student", "sample_embeddings", "fit_alignment", "fidelity"} <= set(planned)
    executed = Counter(rule for text in logs.values() for rule in re.findall(r"^localrule (\w+):$", text, re.M))
    assert executed == planned
    # the profile's groups cut the sbatch count: each training run is evaluated in its own job
    train_jobs = [text for path, text in logs.items() if path.parent.name.startswith("group_train")]
    assert len(train_jobs) == planned["train_teacher"] + planned["train_student"]
    assert all(text.count("localrule evaluate:") == 1 for text in train_jobs)
    assert len(ids) == len(logs) < sum(planned.values())
    listed = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i %T %P"], capture_output=True, text=True).stdout
    seen = {job: (state, part) for job, state, part in (line.split() for line in listed.splitlines())}
    assert {seen.get(i) for i in ids} == {("COMPLETED", "ci")}


@needs_cluster
def test_demo_cell_through_slurm_gives_the_local_runs_numbers(slurm_cell, demo):
    """The same seeds give the same predictions and fidelity, whether a job ran in sbatch or locally."""
    work, _ = slurm_cell

    def exact(path: Path) -> dict:  # the training seconds (timing.json, in the curve) differ between any two runs
        data = json.loads(path.read_text())
        return {**data, "curve": [{k: v for k, v in p.items() if k != "seconds"} for p in data.get("curve", [])]}

    for target in map(Path, cell_targets()):
        for path in (target, target.with_name("test_predictions.json")):
            if path == target or (demo / path).exists():
                assert exact(work / path) == exact(demo / path), path
