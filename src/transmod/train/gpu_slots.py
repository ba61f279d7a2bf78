"""One GPU per job on a machine with several (profiles/local).

Snakemake's local executor counts GPU jobs (`resources: gpu`) but does not say which device a job
gets, so every job would start on device 0. A job claims the first free slot instead: an exclusive
`flock` on one file per device, held until the process exits (a killed job frees its slot at once),
and makes that device its only visible one. A scheduler that already chose (SLURM sets
CUDA_VISIBLE_DEVICES) is left alone.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "CUDA_VISIBLE_DEVICES"
_held: list[int] = []  # descriptors of the claimed slot: open for the life of the process


def gpu_count() -> int:
    """Devices that `nvidia-smi` lists (0 without it). Asked without touching CUDA: once CUDA is
    initialised in a process, CUDA_VISIBLE_DEVICES no longer changes what it sees."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        done = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in done.stdout.splitlines()) if done.returncode == 0 else 0


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"transmod-gpu-slots-{os.getuid()}"


def claim_gpu(devices: int | None = None, lock_dir: str | os.PathLike | None = None,
              poll_s: float = 1.0) -> int | None:
    """Claim a free device for this process and make it the only visible one; the device index, or None
    where there is nothing to choose (CUDA_VISIBLE_DEVICES already set, fewer than two devices).

    Call it before anything initialises CUDA. With more GPU jobs than devices, a job waits for a slot.
    """
    if _held or os.environ.get(ENV) is not None:
        return None
    devices = gpu_count() if devices is None else devices
    if devices < 2:
        return None
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waiting = False
    while True:
        for device in range(devices):
            fd = os.open(folder / f"gpu{device}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _held.append(fd)
            os.environ[ENV] = str(device)
            log.info("running on GPU %d of %d (%s=%d)", device, devices, ENV, device)
            return device
        if not waiting:
            log.info("all %d GPUs are taken by other jobs; waiting for one", devices)
            waiting = True
        time.sleep(poll_s)
