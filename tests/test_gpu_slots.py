"""GPU slots (profiles/local): each concurrent job gets a device of its own, tested with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from transmod.train import gpu_slots

CLAIM = """
import os, sys, time
from transmod.train.gpu_slots import claim_gpu
device = claim_gpu(devices=int(sys.argv[1]), lock_dir=sys.argv[2], poll_s=0.05)
print(device, os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep(float(sys.argv[3]))
"""


def _job(devices: int, lock_dir, hold_s: float, env: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(devices), str(lock_dir), str(hold_s)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _first_line(proc: subprocess.Popen) -> list[str]:
    return proc.stdout.readline().split()


def test_concurrent_jobs_get_distinct_devices_and_a_freed_slot_is_reused(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": None}
    running = [_job(3, tmp_path, 3.0, env) for _ in range(3)]
    claimed = sorted(_first_line(p)[0] for p in running)
    assert claimed == ["0", "1", "2"]
    waiting = _job(3, tmp_path, 0.0, env)  # a fourth job waits for a slot ...
    time.sleep(0.5)
    assert waiting.poll() is None
    started = time.monotonic()
    device, visible = _first_line(waiting)  # ... and takes the first one freed when its job exits
    assert time.monotonic() - started > 1.0 and device == visible and device in claimed
    for proc in [*running, waiting]:
        assert proc.wait(timeout=30) == 0


def test_a_killed_job_frees_its_slot(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": None}
    first = _job(2, tmp_path, 60.0, env)
    second = _job(2, tmp_path, 60.0, env)
    devices = {_first_line(first)[0], _first_line(second)[0]}
    assert devices == {"0", "1"}
    first.kill()
    first.wait()
    third = _job(2, tmp_path, 0.0, env)
    assert _first_line(third)[0] in devices
    second.kill()
    second.wait()
    third.wait(timeout=30)


def test_nothing_to_choose_leaves_the_environment_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # a scheduler (SLURM) chose already
    assert gpu_slots.claim_gpu(devices=4, lock_dir=tmp_path) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    for devices in (0, 1):  # a CPU machine, or a single GPU
        assert gpu_slots.claim_gpu(devices=devices, lock_dir=tmp_path) is None
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not any(tmp_path.iterdir())
