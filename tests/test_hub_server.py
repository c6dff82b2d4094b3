"""Real ``huggingface_hub`` client against the loopback Hub (``tests/hub_server.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import huggingface_hub  # noqa: E402
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_server import LoopbackHub, hub_env  # noqa: E402

REPO = "diffedit/tiny-autoenc"
FILES_MAIN = {
    "model_index.json": b'{"_class_name": "DiffAE", "autoencoder": ["diffedit_cli", "Autoencoder"]}\n',
    "autoencoder/config.json": b'{"ch": 32, "image_size": 16}\n',
    "autoencoder/model.safetensors": bytes(range(256)) * 40,
}
FILES_V1 = {
    "model_index.json": b'{"_class_name": "DiffAE", "version": 1}\n',
    "autoencoder/config.json": b'{"ch": 16, "image_size": 8}\n',
    "autoencoder/model.safetensors": b"\x01\x02v1-weights" * 100,
}


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return folder


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with LoopbackHub() as h:
        h.add_repo(REPO, _write(tmp_path / "src_main", FILES_MAIN))
        h.add_repo(REPO, _write(tmp_path / "src_v1", FILES_V1), revision="v1")
        hub_env(monkeypatch, h.endpoint, tmp_path / "hf")
        yield h


def _resolve_gets(hub: LoopbackHub) -> list[str]:
    return hub.downloads()


# 1. cold download -> standard cache layout, identical contents
def test_first_snapshot_download_fills_standard_cache(hub, tmp_path):
    sha = hub.sha(REPO)
    path = Path(snapshot_download(REPO))

    repo_cache = tmp_path / "hf" / "hub" / "models--diffedit--tiny-autoenc"
    assert path == repo_cache / "snapshots" / sha
    assert _read_tree(path) == FILES_MAIN
    assert (repo_cache / "refs" / "main").read_text() == sha
    # files are symlinks into blobs/<etag>: sha256 for LFS-like files, git sha1 otherwise
    blobs = {p.name for p in (repo_cache / "blobs").iterdir()}
    assert len(blobs) == 3
    assert any(len(b) == 64 for b in blobs) and sum(len(b) == 40 for b in blobs) == 2
    assert (path / "autoencoder" / "model.safetensors").resolve().parent == (repo_cache / "blobs").resolve()

    methods_paths = hub.requests
    assert methods_paths[0] == ("GET", f"/api/models/{REPO}/revision/main")
    assert methods_paths[1] == ("GET", f"/api/models/{REPO}/tree/{sha}")
    assert sorted(_resolve_gets(hub)) == sorted(f"/{REPO}/resolve/{sha}/{f}" for f in FILES_MAIN)
    assert all(e["status"] == 200 for e in hub.request_log)


def test_allow_patterns_only_fetches_matching_files(hub):
    path = Path(snapshot_download(REPO, allow_patterns=["autoencoder/*"]))
    assert _read_tree(path) == {k: v for k, v in FILES_MAIN.items() if k.startswith("autoencoder/")}
    assert len(_resolve_gets(hub)) == 2


# 2. warm cache -> metadata only
def test_second_snapshot_download_reuses_cache(hub):
    first = snapshot_download(REPO)
    hub.clear_requests()

    second = snapshot_download(REPO)
    assert second == first
    assert _resolve_gets(hub) == []
    # only the branch -> sha resolution; tree listing is cached in trees/<sha>.json
    assert hub.requests == [("GET", f"/api/models/{REPO}/revision/main")]

    hub.clear_requests()
    assert snapshot_download(REPO, revision=hub.sha(REPO)) == first
    assert hub.requests == []  # a commit sha needs no resolution at all

    hub.clear_requests()
    cfg = hf_hub_download(REPO, "autoencoder/config.json")
    assert Path(cfg).read_bytes() == FILES_MAIN["autoencoder/config.json"]
    assert hub.requests == [("HEAD", f"/{REPO}/resolve/main/autoencoder/config.json")]


# 3. offline
def test_offline_uses_cache_without_any_request(hub, tmp_path, monkeypatch):
    online = snapshot_download(REPO)
    hub.clear_requests()

    hub_env(monkeypatch, hub.endpoint, tmp_path / "hf", offline=True)
    assert constants.HF_HUB_OFFLINE is True and huggingface_hub.is_offline_mode()
    assert snapshot_download(REPO) == online
    cfg = hf_hub_download(REPO, "autoencoder/config.json")
    assert Path(cfg).read_bytes() == FILES_MAIN["autoencoder/config.json"]
    assert hub.requests == []

    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, revision="v1")  # never downloaded
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download("diffedit/never-downloaded")
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("diffedit/never-downloaded", "model_index.json")
    assert hub.requests == []


def test_offline_env_var_in_fresh_process(hub, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 in the environment is honoured when read at import (subprocess)."""
    online = snapshot_download(REPO)
    hub.clear_requests()
    hub_env(monkeypatch, hub.endpoint, tmp_path / "hf", offline=True)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    code = textwrap.dedent(
        f"""
        import json
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
        out = {{"path": snapshot_download({REPO!r})}}
        try:
            snapshot_download("diffedit/never-downloaded")
        except LocalEntryNotFoundError:
            out["uncached"] = "LocalEntryNotFoundError"
        print(json.dumps(out))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"path": online, "uncached": "LocalEntryNotFoundError"}
    assert hub.requests == []


# 4. missing file
def test_missing_file_raises_remote_entry_not_found(hub, tmp_path):
    with pytest.raises(RemoteEntryNotFoundError) as exc:
        hf_hub_download(REPO, "autoencoder/nope.bin")
    assert isinstance(exc.value, EntryNotFoundError)
    assert exc.value.response.status_code == 404
    assert exc.value.response.headers["X-Error-Code"] == "EntryNotFound"
    # the client caches the non-existence under .no_exist/<sha>/
    no_exist = tmp_path / "hf/hub/models--diffedit--tiny-autoenc/.no_exist" / hub.sha(REPO) / "autoencoder/nope.bin"
    assert no_exist.exists()
    assert _resolve_gets(hub) == []


def test_unknown_revision_raises_revision_not_found(hub):
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(REPO, revision="v9")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "model_index.json", revision="v9")


# 5. unknown repo, revision pinning
def test_unknown_repo_raises_repository_not_found(hub):
    with pytest.raises(RepositoryNotFoundError) as exc:
        snapshot_download("diffedit/does-not-exist")
    assert exc.value.response.status_code == 401  # like the Hub for anonymous requests
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("diffedit/does-not-exist", "model_index.json")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("diffedit/does-not-exist", token="hf_dummy")  # 404 when authenticated


def test_revision_pinning_by_name_and_sha(hub, tmp_path):
    sha_main, sha_v1 = hub.sha(REPO), hub.sha(REPO, "v1")
    assert sha_main != sha_v1 and len(sha_v1) == 40

    p_v1 = Path(snapshot_download(REPO, revision="v1"))
    assert p_v1.name == sha_v1
    assert _read_tree(p_v1) == FILES_V1
    assert (tmp_path / "hf/hub/models--diffedit--tiny-autoenc/refs/v1").read_text() == sha_v1

    p_sha = Path(snapshot_download(REPO, revision=sha_v1))
    assert p_sha == p_v1

    p_main = Path(snapshot_download(REPO, revision=sha_main))
    assert p_main.name == sha_main and _read_tree(p_main) == FILES_MAIN

    cfg = hf_hub_download(REPO, "autoencoder/config.json", revision="v1")
    assert Path(cfg).read_bytes() == FILES_V1["autoencoder/config.json"]


def test_fresh_repo_pinned_by_sha_cold(hub):
    sha_v1 = hub.sha(REPO, "v1")
    cfg = hf_hub_download(REPO, "autoencoder/config.json", revision=sha_v1)
    assert Path(cfg).read_bytes() == FILES_V1["autoencoder/config.json"]
    assert f"/{REPO}/resolve/{sha_v1}/autoencoder/config.json" in _resolve_gets(hub)


# API endpoints used by other client paths
def test_repo_info_and_tree_endpoints(hub):
    info = HfApi().model_info(REPO, files_metadata=True)
    assert info.sha == hub.sha(REPO)
    assert sorted(s.rfilename for s in info.siblings) == sorted(FILES_MAIN)
    st = next(s for s in info.siblings if s.rfilename.endswith(".safetensors"))
    assert st.size == len(FILES_MAIN["autoencoder/model.safetensors"]) and st.lfs is not None
    # module-level HfApi (huggingface_hub.model_info) was created at import: hub_env re-points it
    assert huggingface_hub.model_info(REPO, revision="v1").sha == hub.sha(REPO, "v1")

    top = {e.path for e in HfApi().list_repo_tree(REPO)}
    assert top == {"model_index.json", "autoencoder"}
    sub = {e.path for e in HfApi().list_repo_tree(REPO, path_in_repo="autoencoder", revision="v1")}
    assert sub == {"autoencoder/config.json", "autoencoder/model.safetensors"}
    with pytest.raises(EntryNotFoundError):
        list(HfApi().list_repo_tree(REPO, path_in_repo="nope"))


def test_range_and_headers(hub):
    sha = hub.sha(REPO)
    url = f"{hub.endpoint}/{REPO}/resolve/main/autoencoder/model.safetensors"
    req = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 206
        assert r.read() == FILES_MAIN["autoencoder/model.safetensors"][10:20]
        assert r.headers["X-Repo-Commit"] == sha
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(FILES_MAIN['autoencoder/model.safetensors'])}"
        assert not any(k.lower().startswith("x-xet") for k in r.headers)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{hub.endpoint}/{REPO}/resolve/main/missing.txt")
    exc.value.close()
    assert exc.value.code == 404 and exc.value.headers["X-Error-Code"] == "EntryNotFound"


def test_hub_env_is_undone(tmp_path):
    before = (constants.ENDPOINT, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, os.environ.get("HF_ENDPOINT"))
    mp = pytest.MonkeyPatch()
    with LoopbackHub() as h:
        hub_env(mp, h.endpoint, tmp_path / "hf", offline=True)
        assert constants.ENDPOINT == h.endpoint
        assert constants.HF_HUB_CACHE == str((tmp_path / "hf" / "hub").resolve())
        assert constants.HF_HUB_OFFLINE is True
        mp.undo()
    after = (constants.ENDPOINT, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, os.environ.get("HF_ENDPOINT"))
    assert after == before
