"""Where transmod writes: whole or not at all, with the user's umask, never over what it did not write.

Every output appears by renaming a temporary sibling into place, so a failed or killed job never
leaves a file that looks finished. Outputs that a user names (`--out`) are also marked with their
kind (`MARK` in a file's own metadata, or a `MARK_FILE` inside a folder), so that transmod can tell
its own earlier output, which `--overwrite` may replace, from anything else, which it never touches.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from transmod.errors import TransmodError

MARK = "transmod_output"  # metadata key naming the kind of a transmod output (samples, correlation, ...)
MARK_FILE = ".transmod-output"  # inside an output folder: its kind
_HOST = socket.gethostname().replace(".", "-")


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{_HOST}-{os.getpid()}."


def _clean_stale(target: Path) -> None:
    """Remove temporary siblings that a killed transmod process on this host left for `target`."""
    for tmp in target.parent.glob(f".{target.name}.{_HOST}-*.tmp"):
        pid = tmp.name[len(f".{target.name}.{_HOST}-"):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; move it onto `target` only if the block succeeds.

    For paths that transmod owns (the workflow's results/); user-named outputs go through `new_output`.
    """
    target = Path(target)
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _share(tmp, umask())
        if target.is_dir() and not target.is_symlink():
            # A folder cannot be renamed over a non-empty one: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent))
            os.replace(target, old / "old")
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / "old", target)  # the previous output stays where it was
                raise
            _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        for folder in created:  # innermost first; only folders this call made, and only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _share(path: Path, mask: int) -> None:
    """The modes a plain `open` or `mkdir` would give under the user's umask: temporary files are created
    0600 and some writers (safetensors) keep that, which would hide results from a research group."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not item.is_symlink():
            item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind of transmod output at `path` (its mark), or None for anything transmod did not write."""
    path = Path(path)
    try:
        if path.is_symlink():
            return None
        if path.is_dir():
            marker = path / MARK_FILE
            return marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head[:4] == b"PAR1":
            import pyarrow.parquet as pq

            meta = (pq.read_metadata(path).metadata or {}).get(b"transmod")
            return json.loads(meta).get(MARK) if meta else None
        if head.lstrip()[:1] == b"{":
            data = json.loads(path.read_text(encoding="utf-8"))
            return data.get(MARK) if isinstance(data, dict) else None
        if len(head) == 8:  # safetensors: an 8-byte header length, then the JSON header
            (size,) = struct.unpack("<Q", head)
            if size < 1 << 24:
                with open(path, "rb") as handle:
                    handle.seek(8)
                    header = json.loads(handle.read(size))
                return (header.get("__metadata__") or {}).get(MARK)
    except (OSError, ValueError, AttributeError):
        return None
    return None


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def check_output(target: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike | None] = (),
                 overwrite: bool = False, option: str = "--out") -> Path:
    """Refuse an output path that would lose data: one that is, holds or lies inside an input, or an existing
    path that is not an earlier transmod output of this kind (replaced only with `overwrite`)."""
    path = Path(target).expanduser()
    resolved = _resolved(path)
    for source in inputs:
        if source is None or not Path(source).expanduser().exists():
            continue  # hub ids are not files
        src = _resolved(source)
        if resolved == src or src.is_relative_to(resolved) or resolved.is_relative_to(src):
            raise TransmodError(f"{option} {target}: the output would be, hold or lie inside the input {source}; "
                                "choose an output path outside every input")
    if path.is_symlink() or path.exists():
        found = output_kind(path)
        if found != kind:
            what = f"a transmod {found} output" if found else "not a transmod output"
            raise TransmodError(f"{option} {target}: the path exists and is {what}; transmod replaces only its own "
                                f"{kind} output: choose a new path")
        if not overwrite:
            raise TransmodError(f"{option} {target}: a transmod {kind} output is already there; "
                                "pass --overwrite to replace it")
    return path


@contextlib.contextmanager
def new_output(target: str | os.PathLike, kind: str, *, inputs: Iterable[str | os.PathLike | None] = (),
               overwrite: bool = False, is_dir: bool = False, option: str = "--out") -> Iterator[Path]:
    """`atomic_path` for a user-named output, after `check_output`. A folder gets its mark here; a file's
    writer must put `MARK: kind` in the file's metadata (checked before it is moved into place)."""
    path = check_output(target, kind, inputs, overwrite, option)  # an existing path holds this kind: same form
    with atomic_path(path, is_dir=is_dir) as tmp:
        yield tmp
        if is_dir:
            (tmp / MARK_FILE).write_text(kind + "\n", encoding="utf-8")
        elif output_kind(tmp) != kind:
            raise AssertionError(f"the {kind} writer did not mark {tmp}")
