"""Where transmod writes: whole or not at all, with the user's umask, never over what it did not write.

Every output appears by renaming a temporary sibling into place, so a failed or killed job never
leaves a file that looks finished. Outputs that a user names (`--out`) are also marked with their
kind (`MARK` in a file's own metadata, or a `MARK_FILE` inside a folder that also lists the files
transmod wrote there, with their SHA-256 where transmod replaces the folder unasked, as `transmod tables`
does), so that transmod can tell its own earlier output, which `--overwrite` may replace, from anything
else, which it never touches. Creating a new output is one atomic step (a
hard link or a rename that fails if the name exists), so of two concurrent writers exactly one wins.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from transmod.errors import TransmodError

MARK = "transmod_output"  # metadata key naming the kind of a transmod output (samples, correlation, ...)
MARK_FILE = "transmod.json"  # inside an output folder: {MARK: kind, "files": what transmod wrote, provenance...}
_OLD_MARK_FILE = ".transmod-output"  # the plain-text mark of transmod 0.x folders: read, never written
_OLD_LIST_FILE = ".transmod-files.json"  # where `transmod tables` listed its files before MARK_FILE: read, never written
_MARK_FILES = (MARK_FILE, _OLD_LIST_FILE, _OLD_MARK_FILE)
_HELD = (signal.SIGINT, signal.SIGTERM)  # what `uninterrupted` holds back
_HOST = socket.gethostname().replace(".", "-")
WRITTEN: list[Path] = []  # what this process has moved into place, for an honest message when it is stopped
MAX_NAME = 64  # longest name (pair, task, language, model folder) that becomes one path component


def plain_name(name: object, where: str) -> str:
    """`name` if it is one plain path component that every derived file name can hold; else one line naming `where`."""
    text = name if isinstance(name, str) else ""
    if (not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text or text != text.strip()
            or len(text) > MAX_NAME):
        raise TransmodError(f"{where}: {name!r} is not a plain name of 1 to {MAX_NAME} characters without '/' or "
                            "'\\' (it becomes part of file paths); rename it")
    return text


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


def _replace(tmp: Path, target: Path) -> None:
    """Move `tmp` onto `target`, replacing what is there (a folder is moved aside first: rename cannot replace
    a non-empty one)."""
    if target.is_dir() and not target.is_symlink():
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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, is_dir: bool = False,
                commit: Callable[[Path, Path], None] = _replace) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; `commit` moves it onto `target` only if the block succeeds.

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
        with uninterrupted():  # a signal now would leave an old folder moved aside, or a false "nothing written"
            commit(tmp, target)
            WRITTEN.append(target)
    except BaseException as exc:
        full = _out_of_space(exc, target.parent)
        _remove(tmp)
        WRITTEN[:] = [p for p in WRITTEN if not p.is_relative_to(tmp)]  # written into a temporary now gone
        for folder in created:  # innermost first; only folders this call made, and only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from None
        raise
    _remove(tmp)  # a hard-linked file's temporary name (gone already after a rename)


@contextlib.contextmanager
def uninterrupted(on_signal: Callable[[str], None] | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM held back while the block moves outputs into place, and delivered when it ends (after
    `on_signal` hears the name of the first that came). Held by handlers, not a signal mask: a mask on the main
    thread holds nothing once other threads run (torch's, BLAS's), since the kernel then hands the signal to one of
    them. Only the main thread sets handlers: elsewhere the block runs unguarded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    saved = {number: signal.signal(number, lambda number, frame: caught.append(number)) for number in _HELD}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        if caught:
            if on_signal is not None:
                on_signal(signal.Signals(caught[0]).name)
            signal.raise_signal(caught[0])  # an enclosing `uninterrupted` holds it in turn


def _out_of_space(exc: BaseException, folder: Path) -> bool:
    """Whether a writer failed for a full disk but said so without an OSError: safetensors raises its own error
    ("os error 28"), torch.save a RuntimeError ("iostream error") that names no cause at all."""
    if isinstance(exc, (OSError, TransmodError)) or not isinstance(exc, Exception):
        return False
    if "(os error 28)" in str(exc):
        return True
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    free = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail  # root may write into the reserved blocks
    return free * stat.f_frsize < 1 << 20  # the failed write's partial temporary has not been removed yet


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


def _folder_mark(path: Path) -> dict | None:
    """The mark of an output folder: {MARK: kind, "files": [names] or {name: sha256}} (no "files" for a 0.x
    folder), or None (a file of that name that is no mark is the user's)."""
    for name in (MARK_FILE, _OLD_LIST_FILE):
        marker = path / name
        if marker.is_file() and not marker.is_symlink():
            try:
                data = json.loads(marker.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                return None
            return data if isinstance(data, dict) and isinstance(data.get(MARK), str) else None
    old = path / _OLD_MARK_FILE
    if old.is_file() and not old.is_symlink():
        return {MARK: old.read_text(encoding="utf-8").strip()}
    return None


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind of transmod output at `path` (its mark), or None for anything transmod did not write."""
    path = Path(path)
    try:
        if path.is_symlink():
            return None
        if path.is_dir():
            return (_folder_mark(path) or {}).get(MARK)
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


def files_under(folder: Path) -> list[str]:
    """Every entry under `folder` that is not a folder (links included), as relative POSIX paths, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_symlink() or not p.is_dir())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mark_folder(folder: Path, kind: str, digests: bool = False) -> None:
    """Write `folder`'s mark: its kind and the files in it, with their SHA-256 where `digests` (then a file changed
    since no longer counts as transmod's). Whatever a writer put in `MARK_FILE` first (provenance) is kept."""
    marker = folder / MARK_FILE
    mark = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
    names = [name for name in files_under(folder) if name != MARK_FILE]
    files = {name: _sha256(folder / name) for name in names} if digests else names
    marker.write_text(json.dumps({**mark, MARK: kind, "files": files}, indent=2, sort_keys=True) + "\n",
                      encoding="utf-8")


def foreign_file(folder: Path, written: Iterable[str] = (), unlisted: Iterable[str] = ()) -> str | None:
    """The first file in an earlier output folder that transmod did not write there, or that changed since (where
    the mark holds digests). A folder whose mark lists nothing (transmod 0.x, or no mark) counts the names of the
    new output, `written`, as its own; `unlisted`: files an older transmod wrote there without listing them."""
    mark = _folder_mark(folder)
    listed = (mark or {}).get("files")
    own = set(written if listed is None else listed) | set(unlisted)
    for name in files_under(folder):
        if mark is not None and name in _MARK_FILES:
            continue
        path = folder / name
        if name not in own or (isinstance(listed, dict) and name in listed
                               and (path.is_symlink() or _sha256(path) != listed[name])):
            return name
    return None


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _refuse_foreign(option: str, target: str | os.PathLike, name: str) -> None:
    raise TransmodError(f"{option} {target}: {name} there was not written by transmod, and --overwrite replaces only "
                        "what transmod wrote; move it away or choose a new path")


def check_output(target: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike | None] = (),
                 overwrite: bool = False, option: str = "--out") -> Path:
    """Refuse an output path that would lose data: one that is, holds or lies inside an input, or an existing
    path that is not an earlier transmod output of this kind (replaced only with `overwrite`, and only while it
    holds nothing but what transmod wrote)."""
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
        if path.is_dir() and "files" in (_folder_mark(path) or {}) and (name := foreign_file(path)):
            _refuse_foreign(option, target, name)  # a 0.x folder lists nothing: checked against the new files
    return path


def _committer(target: str | os.PathLike, kind: str, overwrite: bool, option: str) -> Callable[[Path, Path], None]:
    """How `new_output` moves its finished temporary into place: a new name is created exclusively (a hard link
    or a rename that fails if another writer got there first); an earlier output of this kind is replaced only
    with `overwrite`, after checking again, on the folder moved aside, that it holds nothing of the user's."""

    def commit(tmp: Path, path: Path) -> None:
        if path.is_symlink() or path.exists():
            if not overwrite or output_kind(path) != kind:
                raise TransmodError(f"{option} {target}: another process wrote it while this one ran; nothing was "
                                    "replaced")
            if not path.is_dir():
                os.replace(tmp, path)
                return
            aside = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
            os.replace(path, aside / "old")  # now no one can add to it behind our back
            if name := foreign_file(aside / "old", files_under(tmp)):
                os.replace(aside / "old", path)
                aside.rmdir()
                _refuse_foreign(option, target, name)
            os.replace(tmp, path)
            _remove(aside)
            return
        try:
            if tmp.is_dir():
                os.rename(tmp, path)  # fails on a folder another writer filled first
            else:
                os.link(tmp, path)  # fails if the name exists, unlike a rename
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise TransmodError(f"{option} {target}: another process wrote it while this one ran; nothing was "
                                    "replaced") from None
            raise

    return commit


@contextlib.contextmanager
def new_output(target: str | os.PathLike, kind: str, *, inputs: Iterable[str | os.PathLike | None] = (),
               overwrite: bool = False, is_dir: bool = False, option: str = "--out") -> Iterator[Path]:
    """`atomic_path` for a user-named output, after `check_output`. A folder gets its mark here, listing the
    files written (a writer may put provenance in `MARK_FILE` first: it is kept); a file's writer must put
    `MARK: kind` in the file's metadata (checked before it is moved into place)."""
    path = check_output(target, kind, inputs, overwrite, option)  # an existing path holds this kind: same form
    with atomic_path(path, is_dir=is_dir, commit=_committer(target, kind, overwrite, option)) as tmp:
        yield tmp
        if is_dir:
            mark_folder(tmp, kind)
        elif output_kind(tmp) != kind:
            raise AssertionError(f"the {kind} writer did not mark {tmp}")
