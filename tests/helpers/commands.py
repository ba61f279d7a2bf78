"""Running the project's commands as a user does: `transmod` (its console script, or its main in this process),
and Snakemake on the project's Snakefile (killed, with its SLURM jobs cancelled, when it runs too long)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

TRANSMOD = str(Path(sys.executable).parent / "transmod")  # the console script of this environment
DEMO_RUN_LOG = "demo-run.log"  # the demo fixture's snakemake output, in its working directory


def run_cli(capsys, *argv) -> tuple[int | None, str, str]:
    """`transmod ARGV` in this process: its exit code, stdout and stderr."""
    from transmod.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_snakemake(args, cwd, timeout: int) -> subprocess.CompletedProcess:
    """`python -m snakemake ARGS` in its own session; on timeout kill it and cancel its SLURM jobs."""
    cmd = [sys.executable, "-m", "snakemake", *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake ignores SIGTERM while it waits for jobs
        out, _ = proc.communicate()
        ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True)
        pytest.fail(f"snakemake timed out after {timeout}s:\n{out[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def snakemake(*args, cwd=REPO, check=True, timeout=1800) -> subprocess.CompletedProcess:
    """The project's Snakefile, run in `cwd`; its stdout holds stdout and stderr."""
    done = run_snakemake(["-s", REPO / "Snakefile", *args], cwd, timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed:\n{done.stdout[-8000:]}")
    return done


def job_counts(output: str) -> dict[str, int]:
    """Per-rule job counts from a dry-run's 'Job stats' table."""
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0] if "Job stats:" in output else ""
    counts = {}
    for line in block.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def dry_run(*args, cwd) -> dict[str, int]:
    """Per-rule job counts of the demo profile's dry run in `cwd`."""
    done = snakemake("-n", "--profile", REPO / "profiles" / "demo", *args, cwd=cwd)
    return job_counts(done.stdout)


def plan_profile(name: str, cwd: Path) -> tuple[dict[str, int], str]:
    """Per-rule job counts and the text of profile `name`'s dry run in `cwd` (its `profiles/` linked there, as in a
    checkout); the dry run builds nothing."""
    (cwd / "profiles").symlink_to(REPO / "profiles")
    done = snakemake("-n", "--profile", REPO / "profiles" / name, cwd=cwd, timeout=300)
    assert not (cwd / "resources").exists()
    return job_counts(done.stdout), done.stdout


def sigint_default() -> None:
    """In a child before exec: SIGINT as the default, so Python installs its KeyboardInterrupt handler even where
    this test process runs with SIGINT ignored (as a background job does); the tests send it SIGINT."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
