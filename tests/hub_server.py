"""Loopback stand-in for the Hugging Face Hub, for tests that use the REAL client.

``LoopbackHub`` is a tiny HTTP server on ``127.0.0.1`` (ephemeral port, daemon
thread) that serves local folders as Hub *model* repos.  Point the real
``huggingface_hub`` client at it (``hub_env``) and ``snapshot_download`` /
``hf_hub_download`` run their real code paths (HTTP, cache layout, refs,
offline fallback, error mapping) against it.  Nothing is mocked client-side.

Written against ``huggingface_hub`` 2.4.0 (httpx2-based).  Endpoints served
(``{rev}`` is a branch name registered with ``add_repo``, or a commit sha, URL
quoted with ``safe=""``; ``{repo_id}`` is ``org/name`` or a bare ``name``):

* ``GET /api/models/{repo_id}`` and ``GET /api/models/{repo_id}/revision/{rev}``
  -> model info JSON (``id``, ``sha``, ``siblings`` [+ ``size``/``blobId``/
  ``lfs`` with ``?blobs=true``], ``lastModified``, ``private``, ``gated``,
  ``disabled``...).  ``repo_info``/``model_info``; first call of
  ``snapshot_download`` when the revision is not already a commit sha.
* ``GET /api/models/{repo_id}/tree/{rev}[/{path}]?recursive=...`` -> JSON list
  of ``{"type": "file"|"directory", "oid", "size", "path", ["lfs"]}`` (one
  page, no ``Link`` header).  ``list_repo_tree``; ``snapshot_download`` calls it
  with the resolved sha, then caches it on disk under
  ``models--org--name/trees/<sha>.json`` (and in process memory).
* ``HEAD``/``GET /{repo_id}/resolve/{rev}/{path}`` -> file content with
  ``X-Repo-Commit``, ``ETag`` (quoted git blob sha1 for regular files; quoted
  sha256 for "LFS" files, plus ``X-Linked-Etag``/``X-Linked-Size``, like the
  real Hub), ``Content-Length``, ``Accept-Ranges``.  No redirects.  Single
  ``Range: bytes=a-[b]`` is honoured (206) - the client only sends it to resume
  an interrupted download.
* Anything else -> plain 404 (``HfHubHTTPError``).

Errors carry the real Hub's headers, which ``hf_raise_for_status`` maps:
unknown repo -> 401 (404 if an ``Authorization`` header was sent) with
``X-Error-Code: RepoNotFound`` -> ``RepositoryNotFoundError``; unknown revision
-> 404 ``RevisionNotFound`` -> ``RevisionNotFoundError``; missing file -> 404
``EntryNotFound`` (+ ``X-Repo-Commit``) -> ``RemoteEntryNotFoundError``
(subclass of ``EntryNotFoundError``).

No ``X-Xet-*`` headers and no ``xetHash`` in tree entries are ever sent, so
the client always takes the plain HTTP download path (``hf_xet`` is installed
here; ``hub_env`` additionally sets ``HF_HUB_DISABLE_XET``).

What the 2.4.0 client sends (see ``tests/test_hub_server.py``):

* ``snapshot_download(repo, revision="main")``, cold cache:
  ``GET /api/models/{repo}/revision/main``, ``GET /api/models/{repo}/tree/<sha>``,
  then per file ``HEAD`` + ``GET /{repo}/resolve/<sha>/<file>``.
* same again, warm cache: only ``GET /api/models/{repo}/revision/main``.
* ``snapshot_download(repo, revision=<sha>)`` warm: no request at all.
* offline (``constants.HF_HUB_OFFLINE``): no request; cached snapshot returned,
  else ``LocalEntryNotFoundError``.
* ``hf_hub_download(repo, f, revision="main")`` warm: one ``HEAD`` (no GET).

Why ``hub_env`` patches ``huggingface_hub.constants`` and not only env vars
---------------------------------------------------------------------------
``huggingface_hub.constants`` reads the environment ONCE, at import.  Setting
``HF_ENDPOINT``/``HF_HOME``/``HF_HUB_OFFLINE`` after ``huggingface_hub`` was
imported (by any earlier test or module) has no effect.  ``hub_env`` therefore
sets the env vars (for subprocesses and not-yet-imported libraries) AND
monkeypatches the already-computed values: ``ENDPOINT``,
``HUGGINGFACE_CO_URL_TEMPLATE`` (used by ``hf_hub_url``), ``HF_URL_HOSTS``,
``HF_HOME``, ``HF_HUB_CACHE``/``HUGGINGFACE_HUB_CACHE``,
``HF_ASSETS_CACHE``/``HUGGINGFACE_ASSETS_CACHE``, ``HF_XET_CACHE``,
``HF_TOKEN_PATH``, ``HF_STORED_TOKENS_PATH``, ``AGENT_HARNESSES_PATH``,
``HF_HUB_OFFLINE`` (read by ``constants.is_offline_mode()`` in the request hook),
``HF_HUB_DISABLE_TELEMETRY``, ``HF_HUB_DISABLE_XET``; plus the copies made by
``from ..constants import X``: ``utils._cache_manager.HF_HUB_CACHE`` and
``utils._cache_assets.HF_ASSETS_CACHE``; plus the endpoint of the module-level
``huggingface_hub.hf_api.api`` (behind ``huggingface_hub.model_info`` etc.),
which froze ``constants.ENDPOINT`` at import.

Gotchas:

* Telemetry MUST stay disabled: otherwise building the User-Agent calls
  ``detect_agent()`` which (once per process) GETs ``{ENDPOINT}/api/agent-harnesses``
  - a stray request in ``.requests``, or a 3 s connect timeout if it hits the
  real endpoint.
* ``HfApi()`` objects created before ``hub_env`` keep their old endpoint.
* The client keeps ONE shared httpx client (keep-alive pool, proxy settings read
  at creation); ``hub_env`` calls ``huggingface_hub.close_session()`` so a fresh
  one is built (with ``NO_PROXY`` covering 127.0.0.1).
* Tree listings are also cached in process memory, keyed by absolute path of
  ``trees/<sha>.json``: deleting the cache folder inside one test does not make
  the client re-request the tree (use a new ``HF_HOME``).
* ``add_repo`` hashes the folder at registration time (the commit sha depends
  on every file's content).  Re-call ``add_repo`` after changing files to
  simulate a new commit; the previous sha of that branch is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LoopbackHub", "hub_env", "HubFile", "HubRevision"]

# Files the real Hub would store with git-lfs (default .gitattributes patterns,
# abridged) or that are >= 10 MiB.  Their ETag is the sha256, like on the Hub.
_LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack",
    ".npy", ".npz", ".pkl", ".pickle", ".gguf", ".tflite", ".ot", ".model",
    ".tar", ".gz", ".zip", ".zst", ".7z", ".arrow", ".parquet", ".joblib",
)
_LFS_MIN_SIZE = 10 * 1024 * 1024
_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class HubFile:
    path: str  # repo-relative, "/"-separated
    local: Path
    size: int
    blob_id: str  # git blob sha1
    sha256: str
    lfs: bool

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class HubRevision:
    repo_id: str
    name: str  # branch/tag name as registered
    folder: Path
    sha: str
    files: dict[str, HubFile] = field(default_factory=dict)

    def dirs(self) -> list[str]:
        out: set[str] = set()
        for p in self.files:
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return sorted(out)


def _hash_file(path: Path) -> tuple[int, str, str]:
    size = path.stat().st_size
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    sha256 = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha1.update(chunk)
            sha256.update(chunk)
    return size, sha1.hexdigest(), sha256.hexdigest()


def _scan_folder(repo_id: str, revision: str, folder: Path) -> HubRevision:
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NotADirectoryError(folder)
    files: dict[str, HubFile] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if rel.split("/")[0] == ".git":
            continue
        size, blob_id, sha256 = _hash_file(p)
        lfs = rel.lower().endswith(_LFS_SUFFIXES) or size >= _LFS_MIN_SIZE
        files[rel] = HubFile(rel, p, size, blob_id, sha256, lfs)
    commit = hashlib.sha1(f"{repo_id}\0{revision}\0".encode())
    for rel, f in files.items():
        commit.update(f"{rel}\0{f.sha256}\0".encode())
    return HubRevision(repo_id, revision, folder, commit.hexdigest(), files)


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub
    server_version = "LoopbackHub/1.0"
    timeout = 30  # idle keep-alive connections do not pin handler threads forever
    hub: "LoopbackHub"  # set on the per-hub subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def setup(self) -> None:
        super().setup()
        self.hub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.hub._track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _not_allowed(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.hub._log(self.command, self.path)["status"] = 405
        self._send_error(_HubError(405, None, "Method not allowed"), head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    # ------------------------------------------------------------------ routing
    def _dispatch(self, head: bool) -> None:
        # Log BEFORE answering: the client may act on the response before this thread resumes.
        entry = self.hub._log(self.command, self.path)
        status = 500
        try:
            split = urlsplit(self.path)
            segments = [unquote(s) for s in split.path.split("/")[1:]]
            query = parse_qs(split.query)
            if segments[:2] == ["api", "models"] and len(segments) >= 3:
                status = self._api_models(segments[2:], query, head)
            elif "resolve" in segments[1:3]:
                status = self._resolve(segments, head)
            else:
                raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")
        except _HubError as e:
            status = e.status
            self._send_error(e, head)
        except (BrokenPipeError, ConnectionResetError):
            status = 499
        finally:
            entry["status"] = status

    def _split_repo(self, segments: list[str], marker_positions: tuple[int, ...], markers: set[str]) -> tuple[str, list[str]]:
        for pos in marker_positions:
            if len(segments) > pos and segments[pos] in markers:
                return "/".join(segments[:pos]), segments[pos:]
        return "/".join(segments), []

    def _api_models(self, segments: list[str], query: dict[str, list[str]], head: bool) -> int:
        # segments: <org>/<name>[/revision/<rev> | /tree/<rev>[/<path...>]]  or a 1-segment repo id
        repo_id, rest = self._split_repo(segments, (2, 1), {"revision", "tree"})
        if not rest:
            rev = self.hub._get_revision(repo_id, None, self._authed())
            return self._send_json(self._model_info(rev, query), head)
        if len(rest) < 2:
            raise _HubError(404, None, "Not found")
        kind, revision, path = rest[0], rest[1], "/".join(rest[2:])
        rev = self.hub._get_revision(repo_id, revision, self._authed())
        if kind == "revision":
            if path:
                raise _HubError(404, None, "Not found")
            return self._send_json(self._model_info(rev, query), head)
        return self._send_json(self._tree(rev, path, _truthy(query.get("recursive"))), head)

    def _resolve(self, segments: list[str], head: bool) -> int:
        repo_id, rest = self._split_repo(segments, (2, 1), {"resolve"})
        if len(rest) < 3:
            raise _HubError(404, None, "Not found")
        rev = self.hub._get_revision(repo_id, rest[1], self._authed())
        filename = "/".join(rest[2:])
        f = rev.files.get(filename)
        if f is None:
            raise _HubError(
                404, "EntryNotFound", f"{filename} does not exist on \"{rev.name}\"",
                {"X-Repo-Commit": rev.sha},
            )
        return self._send_file(rev, f, head)

    # ----------------------------------------------------------------- payloads
    def _authed(self) -> bool:
        return self.headers.get("Authorization") is not None

    @staticmethod
    def _model_info(rev: HubRevision, query: dict[str, list[str]]) -> dict[str, Any]:
        blobs = _truthy(query.get("blobs"))
        siblings = []
        for f in rev.files.values():
            s: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                s["size"] = f.size
                s["blobId"] = f.blob_id
                if f.lfs:
                    s["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(s)
        return {
            "_id": rev.sha[:24],
            "id": rev.repo_id,
            "modelId": rev.repo_id,
            "author": rev.repo_id.split("/")[0] if "/" in rev.repo_id else None,
            "sha": rev.sha,
            "lastModified": _LAST_MODIFIED,
            "createdAt": _LAST_MODIFIED,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in rev.files.values()),
        }

    @staticmethod
    def _tree(rev: HubRevision, path: str, recursive: bool) -> list[dict[str, Any]]:
        path = path.strip("/")
        dirs = rev.dirs()
        if path and path not in dirs:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on \"{rev.name}\"",
                            {"X-Repo-Commit": rev.sha})
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            if not p.startswith(prefix) or p == path:
                return False
            return recursive or "/" not in p[len(prefix):]

        out: list[dict[str, Any]] = []
        for d in dirs:
            if wanted(d):
                oid = hashlib.sha1(f"tree\0{rev.sha}\0{d}".encode()).hexdigest()
                out.append({"type": "directory", "oid": oid, "size": 0, "path": d})
        for f in rev.files.values():
            if wanted(f.path):
                entry: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                out.append(entry)
        return out

    # ------------------------------------------------------------------ senders
    def _send_json(self, payload: Any, head: bool, status: int = 200, extra: dict[str, str] | None = None) -> int:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return status

    def _send_error(self, e: _HubError, head: bool) -> None:
        extra = dict(e.headers)
        if e.code:
            extra["X-Error-Code"] = e.code
        extra["X-Error-Message"] = e.message
        try:
            self._send_json({"error": e.message}, head, e.status, extra)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send_file(self, rev: HubRevision, f: HubFile, head: bool) -> int:
        start, end = 0, f.size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng:
            parsed = _parse_range(rng, f.size)
            if parsed is None:
                raise _HubError(416, None, "Requested range not satisfiable",
                                {"Content-Range": f"bytes */{f.size}"})
            start, end = parsed
            status = 206
        length = max(end - start + 1, 0)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{f.etag}"')
        self.send_header("X-Repo-Commit", rev.sha)
        if f.lfs:
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(f.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.send_header("Content-Disposition", f'inline; filename="{f.path.rsplit("/", 1)[-1]}"')
        self.end_headers()
        if not head and length:
            with f.local.open("rb") as fh:
                fh.seek(start)
                remaining = length
                while remaining > 0:
                    chunk = fh.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        return status


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in {"1", "true", "yes", "on"}


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":  # suffix range: last N bytes
            n = int(last)
            if n <= 0:
                return None
            return max(size - n, 0), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


class LoopbackHub:
    """Loopback HTTP server impersonating the Hugging Face Hub for model repos.

    >>> with LoopbackHub() as hub:
    ...     sha = hub.add_repo("diffedit/tiny-autoenc", folder)
    ...     hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
    ...     path = snapshot_download("diffedit/tiny-autoenc")

    ``requests`` holds ``(method, path)`` (path without query string, as sent,
    i.e. still URL-quoted) of every request received; ``request_log`` holds
    dicts with ``method``, ``path``, ``query``, ``status``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repos: dict[str, dict[str, HubRevision]] = {}  # repo_id -> name/sha -> revision
        self._default: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.request_log: list[dict[str, Any]] = []
        self._conns: set[socket.socket] = set()
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoopbackHub":
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"LoopbackHub:{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # unblock keep-alive handler threads
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- repos
    def add_repo(self, repo_id: str, folder: Path | str, revision: str = "main") -> str:
        """Register ``folder`` as branch/tag ``revision`` of model repo ``repo_id``.

        Returns the fake commit sha, which is also accepted as a revision.
        Files are hashed now; re-register after changing them.  The first
        revision registered (or ``main``) is the repo's default branch.
        """
        if not repo_id or repo_id.startswith("/") or repo_id.count("/") > 1:
            raise ValueError(f"invalid repo_id {repo_id!r}")
        rev = _scan_folder(repo_id, revision, Path(folder))
        with self._lock:
            revs = self._repos.setdefault(repo_id, {})
            old = revs.get(revision)
            if old is not None and old.name == revision:
                revs.pop(old.sha, None)
            revs[revision] = rev
            revs[rev.sha] = rev
            if revision == "main" or repo_id not in self._default:
                self._default[repo_id] = revision
        return rev.sha

    def sha(self, repo_id: str, revision: str = "main") -> str:
        return self._repos[repo_id][revision].sha

    # ----------------------------------------------------------------- requests
    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_log.clear()

    def downloads(self) -> list[str]:
        """Paths of file-content GETs (``GET /{repo}/resolve/...``)."""
        with self._lock:
            return [p for m, p in self.requests if m == "GET" and "/resolve/" in p]

    # ---------------------------------------------------------------- internals
    def _log(self, method: str, raw_path: str) -> dict[str, Any]:
        split = urlsplit(raw_path)
        entry: dict[str, Any] = {"method": method, "path": split.path, "query": split.query, "status": None}
        with self._lock:
            self.requests.append((method, split.path))
            self.request_log.append(entry)
        return entry

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _get_revision(self, repo_id: str, revision: str | None, authed: bool) -> HubRevision:
        with self._lock:
            revs = self._repos.get(repo_id)
            if revs is None:
                raise _HubError(404 if authed else 401, "RepoNotFound", "Repository not found")
            name = revision if revision is not None else self._default[repo_id]
            rev = revs.get(name)
        if rev is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {name}")
        return rev


def hub_env(monkeypatch: Any, endpoint: str, hf_home: Path | str, offline: bool = False) -> Path:
    """Point the real ``huggingface_hub`` client at ``endpoint`` with cache ``hf_home``.

    Sets env vars (for subprocesses / later imports) and monkeypatches the
    values ``huggingface_hub`` already computed at import (see module doc).
    Everything is undone by ``monkeypatch`` at test teardown.  Call it again
    with ``offline=True`` to flip to offline mode within a test.  Returns the
    hub cache folder (``hf_home / "hub"``).
    """
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _cache_assets, _cache_manager

    endpoint = endpoint.rstrip("/")
    hf_home = Path(hf_home).expanduser().resolve()
    hub_cache = hf_home / "hub"
    assets_cache = hf_home / "assets"
    host = urlsplit(endpoint).hostname or "127.0.0.1"

    # -- environment (subprocesses, libraries imported later)
    for var in (
        "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HUGGINGFACE_ASSETS_CACHE",
        "HF_XET_CACHE", "HF_TOKEN_PATH", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE",
        "HF_OIDC_ID_TOKEN", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_CO_STAGING", "HF_HUB_ENABLE_HF_TRANSFER",
        "TRANSFORMERS_CACHE", "DIFFUSERS_CACHE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_UPDATE_CHECK", "1")
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), host, "localhost"]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)

    # -- values frozen at import time
    patches: dict[str, Any] = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {host.lower()}),
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(assets_cache),
        "HUGGINGFACE_ASSETS_CACHE": str(assets_cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(hf_home / ".check_for_update_done"),
        "HF_HUB_OFFLINE": bool(offline),
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
    }
    for name, value in patches.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", str(hub_cache), raising=False)
    monkeypatch.setattr(_cache_assets, "HF_ASSETS_CACHE", str(assets_cache), raising=False)
    from huggingface_hub import hf_api

    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)

    # Fresh shared httpx client: picks up NO_PROXY, drops keep-alive conns to old servers.
    huggingface_hub.close_session()
    return hub_cache
