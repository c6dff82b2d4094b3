"""Loading models from the Hub for real: the huggingface_hub client against a loopback server."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from diffedit_cli.errors import ModelError
from diffedit_cli.io.models import load_model
from hub_server import LoopbackHub, hub_env


@pytest.fixture()
def hub(tiny_model_dir, tmp_path):
    with LoopbackHub() as server:
        server.add_repo("diffedit/tiny", tiny_model_dir)
        yield server


def test_download_cache_and_offline(hub, monkeypatch, tmp_path, ref_tensors):
    cache = hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
    model = load_model("diffedit/tiny")
    assert cache in model.location.path.parents  # standard cache layout under HF_HOME
    assert model.location.model_id == "diffedit/tiny"
    assert hub.downloads(), "first load must download the files"
    with torch.no_grad():
        z = model.autoencoder.encode(ref_tensors["tiny_autoenc"]["x0"])
    assert (z - ref_tensors["tiny_autoenc"]["z_sem"]).abs().max() < 1e-5

    hub.clear_requests()
    again = load_model("diffedit/tiny")
    assert again.location.path == model.location.path
    assert not hub.downloads(), "a cached model must not be downloaded again"
    assert again.fingerprint == model.fingerprint

    hub_env(monkeypatch, hub.endpoint, tmp_path / "hf", offline=True)
    hub.clear_requests()
    offline = load_model("diffedit/tiny")
    assert offline.location.path == model.location.path and hub.requests == []
    with pytest.raises(ModelError, match="not in the local cache"):
        load_model("diffedit/other")


def test_revision_pinning(hub, tiny_model_dir, tmp_path, monkeypatch):
    v1 = tmp_path / "v1"
    shutil.copytree(tiny_model_dir, v1)
    shutil.rmtree(v1 / "classifier")
    (v1 / "model_index.json").write_text('{"diffedit_format": 1, "name": "v1", "components": ["autoencoder", "latent"]}')
    sha = hub.add_repo("diffedit/tiny", v1, revision="v1")
    hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
    assert load_model("diffedit/tiny").classifier is not None
    pinned = load_model("diffedit/tiny@v1")
    assert pinned.classifier is None and pinned.location.revision == "v1"
    assert load_model(f"diffedit/tiny@{sha}").classifier is None
    with pytest.raises(ModelError, match="has no revision 'v9'"):
        load_model("diffedit/tiny@v9")


def test_missing_repo_and_missing_file(hub, tiny_model_dir, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "autoencoder" / "model.safetensors").unlink()
    hub.add_repo("diffedit/broken", broken)
    hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
    with pytest.raises(ModelError, match="not found"):
        load_model("diffedit/nope")
    with pytest.raises(ModelError, match="model.safetensors' is missing"):
        load_model("diffedit/broken")


def test_cli_uses_hub_and_env(hub, monkeypatch, tmp_path, reference):
    """The installed `diffedit` command, in a subprocess, honours HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE."""
    hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 120, 40)).save(tmp_path / "a.png")
    cmd = [sys.executable, "-m", "diffedit_cli", "encode", str(tmp_path / "a.png"), "--model", "diffedit/tiny",
           "--inv-steps", "2", "--out", str(tmp_path / "lat"), "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert run.returncode == 0, run.stderr
    assert '"status": "ok"' in run.stdout
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd[cmd.index("--out") + 1] = str(tmp_path / "lat2")
    hub.clear_requests()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert hub.requests == []
