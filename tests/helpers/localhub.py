"""A local stand-in for the Hugging Face hub: the parts of its HTTP API that `huggingface_hub`
(snapshot_download) and `datasets` (load_dataset by hub id) use, served from folders on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# ---------------------------------------------------------------------------------------------
# A local hub: just enough of the HTTP API for huggingface_hub's snapshot_download and datasets.


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _entry(folder: Path, relative: str) -> dict:
    """One file or folder as the hub's tree / paths-info endpoints describe it."""
    path = folder / relative
    if path.is_dir():
        return {"type": "directory", "path": relative, "oid": hashlib.sha1(relative.encode()).hexdigest()}
    data = path.read_bytes()
    return {"type": "file", "path": relative, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}


class LocalHub:
    """Serves `<root>/{models,datasets}/<owner>/<name>/` as hub repos (revision `main`) on 127.0.0.1.

    Unknown repos, revisions and files answer 404 with the hub's X-Error-Code header, so the client
    raises RepositoryNotFoundError, RevisionNotFoundError or EntryNotFoundError as with the real hub.
    Every request is recorded in `requests` as (method, path).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests: list[tuple[str, str]] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_HubHandler,), {"hub": self}))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def folder(self, kind: str, repo_id: str) -> Path | None:
        folder = self.root / kind / repo_id
        return folder if repo_id.count("/") == 1 and folder.is_dir() else None

    def files(self, folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                      if p.is_file() and not _hidden(p.relative_to(folder)))

    def sha(self, folder: Path) -> str:
        """The repo's commit: a hash of its files, so any change is a new revision."""
        digest = hashlib.sha1()
        for name in self.files(folder):
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
        return digest.hexdigest()


class _HubHandler(http.server.BaseHTTPRequestHandler):
    hub: LocalHub

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _send(self, status: int, body: bytes, headers: dict, head: bool, length: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data, head: bool) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"}, head)

    def _error(self, code: str, message: str, head: bool, **extra: str) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json", **extra}
        self._send(404, json.dumps({"error": message}).encode(), headers, head)

    def _dispatch(self, method: str) -> None:
        self.hub.requests.append((method, self.path))
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]  # tree paths come %2F-encoded: one part
        head = method == "HEAD"
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            # /api/{models,datasets}/<repo>[/revision/<rev> | /tree/<rev>[/<path>] | /paths-info/<rev>]
            folder = self.hub.folder(parts[1], "/".join(parts[2:4]))
            if folder is None:
                return self._error("RepoNotFound", "Repository not found", head)
            rest, sha = parts[4:], self.hub.sha(folder)
            if len(rest) >= 2 and rest[1] not in ("main", sha):
                return self._error("RevisionNotFound", f"Invalid rev id: {rest[1]}", head)
            if not rest or rest[0] == "revision":
                info = {"id": "/".join(parts[2:4]), "sha": sha, "private": False, "disabled": False, "gated": False,
                        "downloads": 0, "likes": 0, "tags": [], "lastModified": "2024-01-01T00:00:00.000Z",
                        "siblings": [{"rfilename": name} for name in self.hub.files(folder)]}
                return self._json(info, head)
            if rest[0] == "tree" and len(rest) >= 2:
                base = folder.joinpath(*rest[2:])
                if not base.is_dir():
                    return self._error("EntryNotFound", f"{'/'.join(rest[2:])} does not exist", head)
                recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
                children = sorted(base.rglob("*") if recursive else base.iterdir())
                return self._json([_entry(folder, str(p.relative_to(folder))) for p in children
                                   if not _hidden(p.relative_to(folder))], head)
            if rest[0] == "paths-info" and method == "POST":
                paths = parse_qs(body.decode()).get("paths", [])
                return self._json([_entry(folder, p) for p in paths if (folder / p).exists()], head)
            return self._error("EntryNotFound", "unknown API route", head)
        # /[datasets/]<repo>/resolve/<rev>/<file>
        kind = "models"
        if parts[:1] == ["datasets"]:
            kind, parts = "datasets", parts[1:]
        if len(parts) < 5 or parts[2] != "resolve" or method == "POST":
            return self._error("RepoNotFound", "Repository not found", head)
        folder = self.hub.folder(kind, "/".join(parts[:2]))
        if folder is None:
            return self._error("RepoNotFound", "Repository not found", head)
        sha = self.hub.sha(folder)
        if parts[3] not in ("main", sha):
            return self._error("RevisionNotFound", f"Invalid rev id: {parts[3]}", head)
        relative = "/".join(parts[4:])
        path = folder / relative
        if not path.is_file() or _hidden(Path(relative)):
            return self._error("EntryNotFound", f"{relative} does not exist", head, **{"X-Repo-Commit": sha})
        data = path.read_bytes()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        status, chunk = 200, data
        ranges = self.headers.get("Range", "")
        if ranges.startswith("bytes=") and not head:  # fsspec (datasets) reads parquet files by ranges
            start, _, end = ranges[len("bytes="):].partition("-")
            first = int(start) if start else max(len(data) - int(end), 0)
            last = min(int(end) if start and end else len(data) - 1, len(data) - 1)
            status, chunk = 206, data[first:last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        self._send(status, chunk, headers, head, length=len(data) if head else None)


