"""Whether the single-node SLURM test cluster (tests/slurm/start_cluster.sh) is up, probed once."""

from __future__ import annotations

import shutil
import subprocess


def slurm_cluster() -> tuple[bool, str]:
    """Whether the test cluster of tests/slurm/start_cluster.sh is up, and if not, why."""
    if shutil.which("sbatch") is None:
        return False, "sbatch not on PATH (run tests/slurm/start_cluster.sh as root)"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"sinfo failed: {exc}"
    if res.returncode != 0:
        return False, f"SLURM cluster not up (sinfo: {res.stderr.strip()})"
    states = res.stdout.split()
    if not any(s.rstrip("*~#") in {"idle", "mix", "alloc", "comp"} for s in states):
        return False, f"no usable SLURM node (sinfo states: {states})"
    return True, ""


SLURM_UP, SLURM_WHY = slurm_cluster()
