"""Weight downloads outside the Hub (diffedit_cli/io/downloads.py): LPIPS's AlexNet backbone.

The real downloader (torch.hub's, with its sha256-prefix check) fetches a stand-in AlexNet state dict
(torchvision's architecture, random weights made here) from a loopback HTTP server; LPIPS is then built
from it. facexlib's downloads are tested the same way in test_faces.py.
"""

import os

import pytest
import torch

from file_server import FileServer, alexnet_standin

pytest.importorskip("lpips", reason="the [test] extra installs lpips")
torchvision = pytest.importorskip("torchvision")

from diffedit_cli.io import downloads  # noqa: E402
from diffedit_cli.errors import ModelError  # noqa: E402
from diffedit_cli.evaluation.benchmarks import load_lpips, lpips_alexnet_path, lpips_network, lpips_unavailable  # noqa: E402


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.delenv("DIFFEDIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    served = FileServer(tmp_path / "served")
    yield served
    served.close()


def test_alexnet_is_downloaded_verified_and_then_reused(server, monkeypatch):
    path, state = alexnet_standin(server.folder)
    monkeypatch.setenv("DIFFEDIT_LPIPS_ALEXNET_URL", f"{server.url}/{path.name}")
    assert lpips_unavailable() is None  # not cached yet, but downloadable
    distance, reason = load_lpips("cpu")
    assert reason is None and server.requests == [f"/{path.name}"]
    cached = lpips_alexnet_path()
    assert cached.parent == (server.folder.parent / "torch-home" / "hub" / "checkpoints")
    assert cached.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in cached.parent.iterdir()) == [path.name]  # no temporary file left

    net = lpips_network("cpu")  # second build: from the cache, no request
    assert server.requests == [f"/{path.name}"]
    assert torch.equal(net.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(getattr(net.net.slice5, "10").bias, state["features.10.bias"])

    torch.manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.equal(distance(a, a), torch.zeros(2))
    ab, ba = distance(a, b), distance(b, a)
    assert (ab > 0).all() and torch.allclose(ab, ba)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision's 'pretrained' deprecation inside lpips
def test_backbone_loads_as_the_lpips_package_loads_it(server, monkeypatch):
    """Our mapping of AlexNet's features into lpips' slices gives lpips' own numbers for the same file."""
    import lpips

    path, _ = alexnet_standin(server.folder)
    # lpips' own constructor loads torchvision's file name from the torch hub cache (no download when present)
    official = torch.hub.get_dir() + "/checkpoints/alexnet-owt-7be5be79.pth"
    os.makedirs(os.path.dirname(official))
    os.link(path, official)
    monkeypatch.delenv("DIFFEDIT_LPIPS_ALEXNET_URL", raising=False)
    ours = lpips_network("cpu")
    theirs = lpips.LPIPS(net="alex", verbose=False).eval()
    torch.manual_seed(2)
    a, b = torch.rand(3, 3, 48, 48), torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(ours(a, b, normalize=True), theirs(a, b, normalize=True), atol=1e-6)
    assert server.requests == []


def test_a_wrong_hash_or_missing_file_is_one_line_and_leaves_nothing(server, monkeypatch):
    path, _ = alexnet_standin(server.folder, name_hash="deadbeef")  # content does not match the name
    monkeypatch.setenv("DIFFEDIT_LPIPS_ALEXNET_URL", f"{server.url}/{path.name}")
    distance, reason = load_lpips("cpu")
    assert distance is None and "invalid hash value" in reason and "\n" not in reason
    assert path.name in reason and str(lpips_alexnet_path()) in reason
    assert not lpips_alexnet_path().parent.exists() or not any(lpips_alexnet_path().parent.iterdir())

    monkeypatch.setenv("DIFFEDIT_LPIPS_ALEXNET_URL", f"{server.url}/missing-0123abcd.pth")
    with pytest.raises(ModelError, match="HTTP Error 404"):
        lpips_network("cpu")


def test_offline_asks_nothing_and_says_where_to_put_the_file(server, monkeypatch):
    path, _ = alexnet_standin(server.folder)
    monkeypatch.setenv("DIFFEDIT_LPIPS_ALEXNET_URL", f"{server.url}/{path.name}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reason = lpips_unavailable()
    assert reason is not None and "downloads are off" in reason and str(lpips_alexnet_path()) in reason
    assert load_lpips("cpu") == (None, reason)
    assert server.requests == []


@pytest.mark.filterwarnings("ignore::UserWarning")  # protocol notice from the weights-only unpickler
def test_a_pickled_object_is_never_executed(server, monkeypatch, tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    target = lpips_alexnet_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(pickle.dumps({"features.0.weight": Boom()}))
    with pytest.raises(ModelError, match="cannot read AlexNet weights"):
        lpips_network("cpu")
    assert not (tmp_path / "pwned").exists()


def test_mirror_keeps_the_file_name(monkeypatch):
    url = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"
    monkeypatch.delenv("DIFFEDIT_FACEXLIB_MIRROR", raising=False)
    assert downloads.mirrored(url, "DIFFEDIT_FACEXLIB_MIRROR") == url
    monkeypatch.setenv("DIFFEDIT_FACEXLIB_MIRROR", "http://mirror.local/weights/")
    assert downloads.mirrored(url, "DIFFEDIT_FACEXLIB_MIRROR") == "http://mirror.local/weights/detection_Resnet50_Final.pth"
    assert downloads.hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert downloads.hash_prefix("parsing_bisenet.pth") is None


def test_a_server_that_never_answers_times_out_with_one_line(server, monkeypatch):
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections are queued but never answered
    try:
        monkeypatch.setenv("DIFFEDIT_DOWNLOAD_TIMEOUT", "1")
        monkeypatch.setenv("DIFFEDIT_LPIPS_ALEXNET_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/a-0123abcd.pth")
        start = time.monotonic()
        distance, reason = load_lpips("cpu")
        assert distance is None and "timed out" in reason and "\n" not in reason
        assert time.monotonic() - start < 30
        assert socket.getdefaulttimeout() is None  # the process-wide default is restored
    finally:
        silent.close()
