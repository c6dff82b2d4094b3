"""The HDAE(U) shipped in weights/toyfaces-hdae: found by name, style mixing, level-restricted edits,
sampling and save/load round trips end to end on the trained model, and a guard that its edits act."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli import pipeline
from diffedit_cli.sampling import DEFAULT
from diffedit_cli.cli import main
from diffedit_cli.editing.attributes import edit_z_sem
from diffedit_cli.networks.hierarchy import level_mask, mix_codes, num_levels
from diffedit_cli.io.latents import load_latent
from diffedit_cli.io.models import load_model, save_model_folder, shipped_models
from diffedit_cli.networks.hdae import HierarchicalAutoencoder
from oracle_checks import assert_oracle_sees_only

ROOT = Path(__file__).resolve().parents[1]
HDAE_MODEL = "toyfaces-hdae"
FAST = ["--steps", "5", "--inv-steps", "5", "--quiet"]
FACE_A, FACE_B = ROOT / "examples" / "face.png", ROOT / "examples" / "face2.png"


@pytest.fixture(scope="module")
def hdae():
    return load_model(HDAE_MODEL, components=("latent", "classifier"))


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _pixels(path):
    return np.array(Image.open(path).convert("RGB")).astype(np.int16)


def _u8(img):
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int16)


def test_shipped_hdae_is_found_by_name_and_complete(hdae):
    assert HDAE_MODEL in shipped_models()
    ae = hdae.autoencoder
    assert isinstance(ae, HierarchicalAutoencoder) and ae.config.arch == "hdae-u"
    assert num_levels(ae) == 4 and ae.config.enc_out_channels == 256
    assert hdae.classifier.linear.weight.shape[1] == 1024 and hdae.latent is not None
    assert (hdae.location.path / "README.md").is_file()  # model card


def test_shipped_hdae_save_load_round_trip(hdae, tmp_path):
    save_model_folder(tmp_path / "copy", "copy", {"autoencoder": hdae.autoencoder, "classifier": hdae.classifier})
    again = load_model(str(tmp_path / "copy"))
    for key, value in hdae.autoencoder.state_dict().items():
        assert torch.equal(value, again.autoencoder.state_dict()[key]), key
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(pipeline.encode_semantic(again.autoencoder, x), pipeline.encode_semantic(hdae.autoencoder, x))


def test_style_mix_on_the_shipped_hdae(hdae, tmp_path, capsys):
    ae = hdae.autoencoder
    for name, face in (("a", FACE_A), ("b", FACE_B)):
        code, _, err = run(["encode", face, "--model", HDAE_MODEL, "--inv-steps", "5", "--out", tmp_path / f"{name}.safetensors",
                            "--quiet"], capsys)
        assert code == 0, err
    a, b = load_latent(tmp_path / "a.safetensors"), load_latent(tmp_path / "b.safetensors")
    assert a.z_sem.shape == (1024,)
    code, _, err = run(["style-mix", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--levels", "3-4",
                        "--model", HDAE_MODEL, "--out", tmp_path / "mix", *FAST], capsys)
    assert code == 0, err
    mixed = mix_codes(ae, a.z_sem[None], b.z_sem[None], [2, 3])
    assert torch.equal(mixed[0, :512], a.z_sem[:512]) and torch.equal(mixed[0, 512:], b.z_sem[512:])
    expected = pipeline.decode(ae, mixed, a.x_T[None], DEFAULT.replace(steps=5, precision="fp32"))[0]
    got = _pixels(tmp_path / "mix" / "mix_a__b.png")
    assert np.abs(got - _u8(expected)).max() <= 1
    plain = _u8(pipeline.decode(ae, a.z_sem[None], a.x_T[None], DEFAULT.replace(steps=5, precision="fp32"))[0])
    assert np.abs(got - plain).mean() > 0.5  # B's coarse levels changed A's picture
    assert Image.open(tmp_path / "mix" / "grid.png").size[0] > 64


def test_level_restricted_edit_on_the_shipped_hdae(hdae, tmp_path, capsys):
    ae, clf = hdae.autoencoder, hdae.classifier
    code, _, err = run(["encode", FACE_A, "--model", HDAE_MODEL, "--inv-steps", "5", "--out", tmp_path / "a.safetensors",
                        "--quiet"], capsys)
    assert code == 0, err
    lat = load_latent(tmp_path / "a.safetensors")
    code, _, err = run(["edit", tmp_path / "a.safetensors", "--model", HDAE_MODEL, "--attr", "smiling", "--alpha", "0.5",
                        "--levels", "1-2", "--topk", "64", "--out", tmp_path / "e.png", *FAST], capsys)
    assert code == 0, err
    index = clf.attributes.index("Smiling")
    mask = level_mask(ae, [0, 1])
    edited = edit_z_sem(lat.z_sem[None], clf, {index: 0.5}, topk=64, mask=mask)
    moved = (edited - lat.z_sem[None]).abs()[0] > 1e-6
    assert int(moved.sum()) == 64 and not moved[512:].any()  # only levels 1-2 move
    expected = pipeline.decode(ae, edited, lat.x_T[None], DEFAULT.replace(steps=5, precision="fp32"))[0]
    got = _pixels(tmp_path / "e.png")
    assert np.abs(got - _u8(expected)).max() <= 1
    plain = _u8(pipeline.decode(ae, lat.z_sem[None], lat.x_T[None], DEFAULT.replace(steps=5, precision="fp32"))[0])
    assert np.abs(got - plain).max() > 1  # the edit changed the picture


def test_sample_from_the_shipped_hdae(tmp_path, capsys):
    code, _, err = run(["sample", "--n", "2", "--model", HDAE_MODEL, "--steps", "5", "--latent-steps", "10",
                        "--out", tmp_path / "s", "--quiet"], capsys)
    assert code == 0, err
    files = sorted((tmp_path / "s").glob("sample_*.png"))
    assert len(files) == 2 and all(Image.open(f).size == (64, 64) for f in files)
    assert (tmp_path / "s" / "grid.png").is_file()


# A regression guard of the shipped HDAE(U): its classifier directions act in pixels as the default model's do.
def test_shipped_hdae_smile_edit_is_seen_by_the_oracle(tmp_path):
    assert main(["edit", str(FACE_A), "--model", HDAE_MODEL, "--attr", "Smiling", "--alpha", "0.7",
                 "--out", str(tmp_path / "smiling.png"), "--quiet"]) == 0
    oracle = load_model(HDAE_MODEL, components=("oracle",)).extra["oracle"]
    assert_oracle_sees_only(oracle, FACE_A, tmp_path / "smiling.png", "Smiling")
