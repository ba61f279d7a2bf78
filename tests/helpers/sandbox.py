"""A folder's exact state, to show that a refused command changed nothing in it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its kind, mode and content digest (symlinks by their target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.startswith(".snakemake"):
            continue  # Snakemake's own bookkeeping of a dry run
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode)
        else:
            out[rel] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def refused_in_one_line(argv: list[str], root: Path, capfd, expected) -> None:
    """`transmod <argv>` refused with one error line (two at most) holding each of `expected`, no traceback, and
    nothing under `root` changed."""
    from transmod.cli import main

    before = tree(root)
    capfd.readouterr()
    code = main(argv)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), err
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    assert all(text in err for text in expected), err
    assert tree(root) == before, "the sandbox changed"
