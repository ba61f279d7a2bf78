"""Workflow jobs write everything to their rule's `log:` file (progress lines included), fail on bad
input with one line, and import transmod from the workflow's own source."""

from __future__ import annotations

import os
import sys
from types import TracebackType

from transmod.errors import TransmodError
from transmod.progress import log_lines


def log_to(path: str | os.PathLike) -> None:
    """Send this job's stdout and stderr to `path`; a TransmodError that ends the job is written there
    as one line saying what to fix (exit status 1, as for any uncaught error) instead of a traceback.
    Other errors keep their traceback: they are bugs, not bad input."""
    stream = open(path, "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr = stream
    log_lines(stream)  # progress lines of long steps (training, sampling, correlation) with a timestamp
    default = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, TransmodError):
            print(f"error: {exc}", file=stream)
        else:
            default(kind, exc, tb)

    sys.excepthook = hook


def add_to_pythonpath(folder: str) -> None:
    """Put `folder` first on PYTHONPATH, so that every job's script imports transmod from the workflow's own
    source, also in a conda environment that holds the third-party packages only."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    os.environ["PYTHONPATH"] = os.pathsep.join([folder, *rest])
