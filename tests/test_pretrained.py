"""Official-layout weights from a folder or the Hub (the real huggingface_hub client against a loopback Hub):
classified by keys and shapes, converted once into the cache, loaded strictly, offline afterwards; the 256 px
real-photo path end to end on random weights of the official FFHQ-256 shapes."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from diffedit_cli.cli import main
from diffedit_cli.errors import ModelError
from diffedit_cli.io.models import load_model
from hub_server import LoopbackHub, hub_env
from official_layouts import autoencoder_state, classifier_state, stats_state

MIRROR = "alexkrz/diffae-ffhq256"  # the repo `--model ffhq256` names (tests serve a stand-in of it)


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFEDIT_CACHE", str(tmp_path / "diffedit-cache"))
    monkeypatch.setenv("DIFFEDIT_FACE_WEIGHTS", str(tmp_path / "no-face-weights"))
    return tmp_path / "diffedit-cache"


@pytest.fixture(scope="module")
def ffhq256_layouts(tmp_path_factory):
    """The mirror's layouts: EMA-stripped safetensors (+ the .pt originals as a decoy), and .pt state dicts."""
    root = tmp_path_factory.mktemp("ffhq256")
    auto = autoencoder_state("ffhq256", seed=0)
    st, pt = root / "safetensors", root / "pt"
    st.mkdir()
    pt.mkdir()
    save_file(auto, str(st / "ffhq256_autoenc_ema.safetensors"))
    save_file(classifier_state(with_stats=False), str(st / "ffhq256_autoenc_cls.safetensors"))
    save_file(stats_state(), str(st / "ffhq256_autoenc_latent.safetensors"))
    (st / "README.md").write_text("state dicts of the ffhq256 autoencoder\n")
    torch.save({"ema_model." + k: v for k, v in auto.items()}, pt / "ffhq_autoenc_model.pt")
    torch.save(classifier_state(with_stats=True), pt / "ffhq_autoenc_cls.pt")
    (st / "originals").mkdir()
    shutil.copy(pt / "ffhq_autoenc_model.pt", st / "originals" / "ffhq_autoenc_model.pt")
    return {"safetensors": st, "pt": pt}


def whole_files(hub):
    """Files fetched whole (status 200); reading a safetensors header takes small range requests (206)."""
    return sorted(e["path"].rsplit("/", 1)[-1] for e in hub.request_log
                  if e["method"] == "GET" and "/resolve/" in e["path"] and e["status"] == 200)


def same_tensors(folder_a, folder_b):
    comps = json.loads((folder_a / "model_index.json").read_text())["components"]
    assert comps == json.loads((folder_b / "model_index.json").read_text())["components"]
    for comp in comps:
        a, b = load_file(str(folder_a / comp / "model.safetensors")), load_file(str(folder_b / comp / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), comp
    return comps


def test_stand_in_has_the_official_ffhq256_keys_and_shapes(reference):
    listing = json.loads((reference / "official_shapes" / "ffhq256_autoenc.json").read_text())["state_dict"]
    official = {e["key"][len("ema_model."):]: tuple(e["shape"]) for e in listing if e["key"].startswith("ema_model.")}
    assert {k: tuple(v.shape) for k, v in autoencoder_state("ffhq256").items()} == official
    cls = json.loads((reference / "official_shapes" / "ffhq256_autoenc_cls.json").read_text())["state_dict"]
    assert {e["key"]: tuple(e["shape"]) for e in cls} == {k: tuple(v.shape) for k, v in classifier_state().items()}


@pytest.mark.parametrize("layout", ["safetensors", "pt"])
def test_ffhq256_from_the_hub_converts_once_and_works_offline(ffhq256_layouts, layout, monkeypatch, tmp_path):
    files = ffhq256_layouts[layout]
    with LoopbackHub() as hub:
        hub.add_repo(MIRROR, files)
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
        notes = []
        model = load_model("ffhq256", components=("classifier", "latent"), log=notes.append)
        assert model.image_size == 256 and model.classifier is not None and model.latent is None
        assert model.autoencoder.config.channel_mult == (1, 1, 2, 2, 4, 4)
        assert any("converting" in n for n in notes)
        downloaded = whole_files(hub)
        if layout == "safetensors":  # headers classify the safetensors; the .pt originals are never fetched
            assert downloaded == ["ffhq256_autoenc_cls.safetensors", "ffhq256_autoenc_ema.safetensors",
                                  "ffhq256_autoenc_latent.safetensors"]
        folder = model.location.path
        index = json.loads((folder / "model_index.json").read_text())
        assert index["source"]["repo"] == MIRROR and index["source"]["commit"] == hub.sha(MIRROR)
        assert index["provenance"]["published_by"].startswith("community mirror")
        for name, record in index["source"]["files"].items():
            assert len(record["sha256"]) == 64
        # the same tensors as `diffedit convert` of the same files
        sources = sorted(str(p) for p in files.iterdir() if p.is_file() and p.suffix != ".md")
        assert main(["convert", *sources, "--out", str(tmp_path / "converted")]) == 0
        assert same_tensors(folder, tmp_path / "converted") == ["autoencoder", "classifier"]
        # a second run downloads nothing; offline, no request at all
        hub.clear_requests()
        assert load_model("ffhq256", components=()).location.path == folder and not hub.downloads()
        assert [e["path"] for e in hub.request_log] == [f"/api/models/{MIRROR}"]  # one metadata request
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf", offline=True)
        hub.clear_requests()
        assert load_model("ffhq256", components=()).location.path == folder and hub.requests == []
        # the mirror's files as a local folder give the same model
        assert same_tensors(load_model(str(files), components=()).location.path, folder)


@pytest.fixture(scope="module")
def lightning_folders(reference, tmp_path_factory):
    """The tiny official fixtures laid out as the official Drive folders (with latent.pkl)."""
    root = tmp_path_factory.mktemp("drive")
    for src, dst in (("tiny_autoenc", "tiny32_autoenc"), ("tiny_latent", "tiny32_autoenc_latent"),
                     ("tiny_classifier", "tiny32_autoenc_cls")):
        (root / dst).mkdir()
        shutil.copy(reference / src / "last.ckpt", root / dst / "last.ckpt")
    ckpt = torch.load(reference / "tiny_latent" / "last.ckpt", weights_only=True)["state_dict"]
    torch.save({"conds": torch.randn(8, 64), "conds_mean": ckpt["conds_mean"][0], "conds_std": ckpt["conds_std"][0]},
               root / "tiny32_autoenc" / "latent.pkl")
    return root


def test_lightning_folders_from_the_hub(lightning_folders, reference, ref_tensors, monkeypatch, tmp_path):
    with LoopbackHub() as hub:
        hub.add_repo("someone/diffae-tiny", lightning_folders)
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
        model = load_model("someone/diffae-tiny", components=("latent", "classifier"), log=lambda *_: None)
        assert model.latent is not None and model.classifier is not None and model.image_size == 32
        ref = ref_tensors["tiny_autoenc"]
        with torch.no_grad():
            assert (model.autoencoder.encode(ref["x0"]) - ref["z_sem"]).abs().max() < 1e-5
        assert torch.equal(model.classifier.conds_mean, ref_tensors["tiny_classifier"]["conds_mean"])
        assert main(["convert", str(reference / "tiny_latent" / "last.ckpt"),
                     str(reference / "tiny_classifier" / "last.ckpt"), "--out", str(tmp_path / "c")]) == 0
        assert same_tensors(model.location.path, tmp_path / "c") == ["autoencoder", "classifier", "latent"]
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf", offline=True)
        hub.clear_requests()
        assert load_model("someone/diffae-tiny").location.path == model.location.path and hub.requests == []
        # a repo with two models asks for a choice, and takes one
        two = tmp_path / "two"
        shutil.copytree(lightning_folders, two)
        shutil.copytree(lightning_folders / "tiny32_autoenc", two / "horse32_autoenc")
        hub.add_repo("someone/two-models", two)
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
        with pytest.raises(ModelError, match=r"holds 2 models: .*choose one with --model someone/two-models:NAME"):
            load_model("someone/two-models")
        chosen = load_model("someone/two-models:tiny32", components=("latent", "classifier"), log=lambda *_: None)
        assert chosen.latent is not None and chosen.classifier is not None


def test_a_source_with_two_models_asks_for_a_choice(lightning_folders, tmp_path, capsys):
    two = tmp_path / "two"
    shutil.copytree(lightning_folders, two)
    shutil.copytree(lightning_folders / "tiny32_autoenc", two / "horse32_autoenc")
    assert main(["encode", str(ASTRONAUT), "--model", str(two), "--out", str(tmp_path / "x"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 2 models: horse32_autoenc (32 px), tiny32_autoenc (32 px)" in err[0]
    assert f"{two}:horse32" in err[0]
    model = load_model(f"{two}:horse32", components=("latent", "classifier"), log=lambda *_: None)
    index = json.loads((model.location.path / "model_index.json").read_text())
    assert sorted(index["source"]["files"]) == ["horse32_autoenc/last.ckpt"]  # tiny32's files stay with tiny32
    assert model.classifier is None  # the tiny32 classifier belongs to the other model
    with pytest.raises(ModelError, match="no model matching ':ffhq999'"):
        load_model(f"{two}:ffhq999")


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_bad_sources_are_one_line(ffhq256_layouts, tmp_path, capsys, own_cache):
    def run(model):
        code = main(["edit", str(ASTRONAUT), "--attr", "Smiling", "--model", str(model), "--out", str(tmp_path / "o.png"),
                     "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
        assert not (tmp_path / "o.png").exists()
        return err[0]

    marker = tmp_path / "pwned"
    bad = tmp_path / "payload"
    bad.mkdir()
    torch.save({"encoder.out.3.weight": torch.zeros(2, 2), "extra": Exploit(marker)}, bad / "model.pt")
    message = run(bad)
    assert "pickled objects (" in message and "open) besides tensors: refused without running them" in message
    assert not marker.exists()

    junk = tmp_path / "unrelated"
    junk.mkdir()
    torch.save({"fc.weight": torch.zeros(3, 3)}, junk / "resnet.pth")
    (junk / "notes.txt").write_text("hello")
    message = run(junk)
    assert "holds no Diff-AE autoencoder (found: resnet.pth (not a Diff-AE weight file" in message and "fc.weight" in message

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    assert "no .safetensors, .ckpt, .pt, .pth, .bin, .pkl files (found: notes.txt)" in run(empty)

    cut = tmp_path / "truncated"
    cut.mkdir()
    data = (ffhq256_layouts["safetensors"] / "ffhq256_autoenc_cls.safetensors").read_bytes()
    (cut / "cls.safetensors").write_bytes(data[: len(data) // 3])
    assert "cls.safetensors': corrupt or truncated safetensors file" in run(cut)
    leftovers = [p for p in own_cache.rglob("*") if p.is_file()] if own_cache.exists() else []
    assert leftovers == []


def test_an_interrupted_download_leaves_no_converted_folder(ffhq256_layouts, monkeypatch, tmp_path, own_cache):
    repo = tmp_path / "repo"
    shutil.copytree(ffhq256_layouts["safetensors"], repo, ignore=shutil.ignore_patterns("originals"))
    weights = repo / "ffhq256_autoenc_ema.safetensors"
    full = weights.read_bytes()
    with LoopbackHub() as hub:
        hub.add_repo(MIRROR, repo)
        weights.write_bytes(full[: len(full) // 2])  # the server announces the full size and stops halfway
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # each of the client's resume tries waits 1 s
        with pytest.raises(ModelError, match="cannot download Hub model 'alexkrz/diffae-ffhq256'.*run the command again"):
            load_model("ffhq256", log=lambda *_: None)
        assert not [p for p in own_cache.rglob("model_index.json")]
        assert not [p for p in own_cache.rglob("*") if p.name.startswith(".")]
        weights.write_bytes(full)
        model = load_model("ffhq256", components=(), log=lambda *_: None)
        assert model.image_size == 256


def test_models_list_info_pull_rm(ffhq256_layouts, monkeypatch, tmp_path, capsys):
    with LoopbackHub() as hub:
        hub.add_repo(MIRROR, ffhq256_layouts["safetensors"])
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
        assert main(["models"]) == 0
        out = capsys.readouterr().out
        rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
        assert "cartoon" in rows["toyfaces"] and " 64 " in rows["toyfaces"]
        assert "not downloaded" in rows["ffhq256"] and " 256 " in rows["ffhq256"] and MIRROR in rows["ffhq256"]
        assert "HDAE paper published no weights" in out
        assert main(["models", "info", "ffhq256"]) == 0
        info = capsys.readouterr().out
        assert "Diffusion Autoencoders" in info and "community mirror" in info and "cached: no" in info
        assert main(["models", "pull", "ffhq256"]) == 0
        capsys.readouterr()
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf", offline=True)
        hub.clear_requests()
        assert main(["models", "info", "ffhq256"]) == 0
        info = capsys.readouterr().out
        assert hub.requests == [] and "ffhq256_autoenc_ema.safetensors" in info and '"sha256"' in info
        assert main(["models"]) == 0
        assert "converted, in the cache" in capsys.readouterr().out
        assert main(["models", "rm", "ffhq256"]) == 0
        assert "GB freed" in capsys.readouterr().out
        assert main(["models", "rm", "ffhq256"]) == 2
        assert "not in the cache" in capsys.readouterr().err
        assert main(["encode", str(ASTRONAUT), "--model", "ffhq256", "--out", str(tmp_path / "e"), "-q"]) == 2
        assert "not in the local cache" in capsys.readouterr().err


from test_faces import ASTRONAUT, two_faces  # noqa: E402  (the photo helpers of the face tests)


def test_real_photo_path_at_256_px(ffhq256_layouts, monkeypatch, tmp_path, capsys):
    """The README command against the stand-in Hub: align -> encode at 256 px -> edit -> paste-back, on one photo
    and on a folder of photos with two faces each; pixels outside the pasted faces stay as they were."""
    with LoopbackHub() as hub:
        hub.add_repo(MIRROR, ffhq256_layouts["safetensors"])
        hub_env(monkeypatch, hub.endpoint, tmp_path / "hf")
        fast = ["--steps", "2", "--inv-steps", "2", "--detector", "dlib", "--device", "cpu", "-q"]
        out = tmp_path / "edited.png"
        assert main(["edit", str(ASTRONAUT), "--model", "ffhq256", "--align", "--paste-back", "--attr", "Smiling",
                     "--out", str(out), *fast]) == 0
        photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
        result = np.asarray(Image.open(out))
        assert result.shape == photo.shape
        changed = (result != photo).any(-1)
        ys, xs = np.nonzero(changed)
        assert changed.sum() > 5000  # the face was replaced by the decode of random weights
        assert ys.min() > 30 and ys.max() < 230 and xs.min() > 120 and xs.max() < 340  # around the face only
        photos = tmp_path / "photos"
        photos.mkdir()
        shutil.copy(two_faces(tmp_path), photos / "pair.png")
        shutil.copy(two_faces(tmp_path), photos / "pair2.png")
        assert main(["edit", str(photos), "--model", "ffhq256", "--align", "--paste-back", "--attr", "Smiling=0.2",
                     "--topk", "64", "--out", str(tmp_path / "edited"), "--json", *fast]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["faces"] for line in lines] == [[0, 1], [0, 1]]
        for name in ("pair.png", "pair2.png"):
            pair = np.asarray(Image.open(photos / name).convert("RGB"))
            edited = np.asarray(Image.open(tmp_path / "edited" / name))
            changed = (edited != pair).any(-1)
            assert changed[:, :512].sum() > 5000 and changed[:, 512:].sum() > 5000
            assert not changed[:, :110].any() and not changed[:, 360:660].any() and not changed[260:].any()


def test_every_command_runs_on_a_converted_official_model(lightning_folders, tmp_path, capsys):
    """interpolate, style-mix, sample, directions and edit along them, on the Lightning folders as --model."""
    model = ["--model", f"{lightning_folders}", "--steps", "2", "--inv-steps", "2", "--device", "cpu", "-q"]
    faces = tmp_path / "faces"
    faces.mkdir()
    for k in range(6):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(faces / f"f{k}.png")
    a, b = str(faces / "f0.png"), str(faces / "f1.png")
    assert main(["interpolate", a, b, "--frames", "3", "--out", str(tmp_path / "interp"), *model]) == 0
    assert len(list((tmp_path / "interp").glob("frame_*.png"))) == 3
    assert main(["style-mix", a, b, "--levels", "1", "--out", str(tmp_path / "mix"), *model]) == 0
    assert Image.open(tmp_path / "mix" / "mix_f0__f1.png").size == (32, 32)
    assert main(["sample", "--n", "2", "--latent-steps", "2", "--steps", "2", "--model", str(lightning_folders),
                 "--out", str(tmp_path / "samples"), "-q"]) == 0
    assert len(list((tmp_path / "samples").glob("sample_*.png"))) == 2
    assert main(["directions", "pca", str(faces), "--components", "2", "--out", str(tmp_path / "dirs.safetensors"),
                 "--model", str(lightning_folders), "--device", "cpu"]) == 0
    assert main(["edit", a, "--direction", f"{tmp_path / 'dirs.safetensors'}:pc01=0.5", "--attr", "Smiling=0.2",
                 "--topk", "8", "--out", str(tmp_path / "edited.png"), *model]) == 0
    assert Image.open(tmp_path / "edited.png").size == (32, 32)
    capsys.readouterr()
