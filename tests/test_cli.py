"""End-to-end CLI runs on the converted official fixture, in a temp dir, plus bad-input handling."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli.cli import main
from diffedit_cli.io.latents import load_latent

FAST = ["--inv-steps", "4", "--steps", "4"]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ["a.png", "b.jpg", "sub/c.png"]:
        Image.fromarray((rng.random((40, 56, 3)) * 255).astype("uint8")).save(folder / name)
    return folder


def test_encode_decode_roundtrip_and_metadata(tiny_model_dir, tiny_model, photos, tmp_path, capsys):
    code, out, err = run(["encode", photos, "--model", tiny_model_dir, "--inv-steps", "4", "--out", tmp_path / "lat", "--json"], capsys)
    assert code == 0, err
    lines = [json.loads(l) for l in out.splitlines()]
    assert {l["status"] for l in lines} == {"ok"} and len(lines) == 3
    assert (tmp_path / "lat" / "sub" / "c.safetensors").is_file()  # folder structure mirrored
    lat = load_latent(tmp_path / "lat" / "a.safetensors")
    assert lat.z_sem.shape == (64,) and lat.x_T.shape == (3, 32, 32)
    assert lat.meta["inv_steps"] == "4" and lat.meta["image_size"] == "32"
    assert lat.meta["inv_spacing"] == "quadratic"  # the default spacing, recorded
    assert lat.meta["model_fingerprint"] == tiny_model.fingerprint
    code, _, err = run(["encode", photos / "a.png", "--model", tiny_model_dir, "--inv-steps", "4", "--spacing", "uniform",
                        "--out", tmp_path / "a_uniform.safetensors"], capsys)
    assert code == 0, err
    uniform = load_latent(tmp_path / "a_uniform.safetensors")
    assert uniform.meta["inv_spacing"] == "uniform" and torch.allclose(uniform.z_sem, lat.z_sem, atol=1e-5)
    assert not torch.allclose(uniform.x_T, lat.x_T)  # another inversion path
    assert lat.meta["source"].endswith("a.png") and "center_crop" in lat.meta["preprocessing"]

    code, out, err = run(["decode", tmp_path / "lat", "--model", tiny_model_dir, "--steps", "4", "--out", tmp_path / "rec"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "rec" / "sub" / "c.png").size == (32, 32)
    # decoding an image directly = encode + decode in one go: the same pixels up to rounding (batch 1 vs 3)
    code, _, err = run(["decode", photos / "a.png", "--model", tiny_model_dir, *FAST, "--out", tmp_path / "direct.png"], capsys)
    assert code == 0, err
    direct = np.array(Image.open(tmp_path / "direct.png")).astype(int)
    assert np.abs(direct - np.array(Image.open(tmp_path / "rec" / "a.png")).astype(int)).max() <= 1


def test_batch_size_does_not_change_outputs(tiny_model_dir, photos, tmp_path, capsys):
    for bs in (1, 3):
        code, _, err = run(["decode", photos, "--model", tiny_model_dir, "--random-xt", "--seed", "5", "--steps", "4",
                            "--batch-size", bs, "--out", tmp_path / f"bs{bs}"], capsys)
        assert code == 0, err
    for name in ["a.png", "b.png", "sub/c.png"]:  # the same up to rounding: within one 8-bit level
        a = np.array(Image.open(tmp_path / "bs1" / name)).astype(int)
        b = np.array(Image.open(tmp_path / "bs3" / name)).astype(int)
        assert np.abs(a - b).max() <= 1, name


def test_interpolate_writes_frames_grid_gif(tiny_model_dir, photos, tmp_path, capsys):
    code, out, err = run(["interpolate", photos / "a.png", photos / "b.jpg", "--frames", "3", "--model", tiny_model_dir,
                          *FAST, "--out", tmp_path / "interp", "--json"], capsys)
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "interp").iterdir())
    assert files == ["frame_000.png", "frame_001.png", "frame_002.png", "grid.png", "interpolation.gif"]
    gif = Image.open(tmp_path / "interp" / "interpolation.gif")
    assert gif.n_frames >= 3
    assert json.loads(out.splitlines()[-1])["frames"] == 3


def test_stdin_skip_existing_and_no_overwrite(tiny_model_dir, photos, tmp_path, capsys, monkeypatch):
    listing = f"{photos / 'a.png'}\n{photos / 'b.jpg'}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing))
    code, out, err = run(["encode", "-", "--model", tiny_model_dir, "--inv-steps", "2", "--out", tmp_path / "lat"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "lat")) == ["a.safetensors", "b.safetensors"]
    before = (tmp_path / "lat" / "a.safetensors").read_bytes()
    code, out, err = run(["encode", photos, "--model", tiny_model_dir, "--inv-steps", "2", "--out", tmp_path / "lat"], capsys)
    assert code == 1 and "already exists" in err  # nothing overwritten without a flag
    assert (tmp_path / "lat" / "a.safetensors").read_bytes() == before
    assert (tmp_path / "lat" / "sub" / "c.safetensors").is_file()  # the others were still done
    code, out, err = run(["encode", photos, "--model", tiny_model_dir, "--inv-steps", "2", "--out", tmp_path / "lat",
                          "--skip-existing", "--json"], capsys)
    statuses = sorted(json.loads(l)["status"] for l in out.splitlines())
    assert code == 0 and statuses == ["skipped", "skipped", "skipped"]
    # an output that would land on an input is refused
    code, out, err = run(["decode", photos / "a.png", "--model", tiny_model_dir, *FAST, "--out", photos / "a.png"], capsys)
    assert code != 0 and "overwrite the input" in err


def test_bad_inputs_report_and_continue(tiny_model_dir, photos, tmp_path, capsys):
    (photos / "notes.png").write_text("not an image")
    good = np.zeros((20, 20, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (photos / "trunc.png").write_bytes(data[: len(data) // 2])
    code, out, err = run(["encode", photos, tmp_path / "missing.png", "--model", tiny_model_dir, "--inv-steps", "2",
                          "--out", tmp_path / "lat"], capsys)
    assert code == 1
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 3
    assert any("notes.png" in l for l in errors) and any("trunc.png" in l for l in errors)
    assert any("missing.png" in l and "not found" in l for l in errors)
    assert "3 encoded, 3 failed" in err
    assert "Traceback" not in err


def test_latent_from_other_model_is_refused(tiny_model_dir, photos, tmp_path, capsys, reference):
    assert run(["encode", photos / "a.png", "--model", tiny_model_dir, "--inv-steps", "2", "--out", tmp_path / "a.safetensors"], capsys)[0] == 0
    other = tmp_path / "raw_model"
    assert main(["convert", str(reference / "tiny_autoenc" / "last.ckpt"), "--out", str(other), "--weights", "raw"]) == 0
    code, out, err = run(["decode", tmp_path / "a.safetensors", "--model", other, "--steps", "2", "--out", tmp_path / "x.png"], capsys)
    assert code == 1 and "was encoded with model" in err


def test_errors_are_one_line(tiny_model_dir, tmp_path, capsys):
    for argv, needle in [
        (["decode", "x.png", "--model", tmp_path / "nope"], "not found"),
        (["decode", "x.png", "--steps", "abc"], "Invalid value"),
        (["encode", "x.png", "--frobnicate"], "No such option"),
        (["decode", "x.png", "--model", tiny_model_dir, "--device", "cuda:0"] if not torch.cuda.is_available() else
         (["decode", "x.png", "--model", tiny_model_dir, "--precision", "fp8"]), "cuda" if not torch.cuda.is_available() else "precision"),
        (["decode", "x.png", "--model", tiny_model_dir, "--steps", "999", "--spacing", "uniform"], "cannot be spaced"),
    ]:
        code, out, err = run(argv, capsys)
        assert code != 0
        assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, (argv, err)


def test_installed_entry_point(tiny_model_dir, photos, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "diffedit_cli", "decode", str(photos / "a.png"), "--model", str(tiny_model_dir),
                           "--steps", "2", "--inv-steps", "2", "--out", str(tmp_path / "o.png")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.png").is_file()
    bad = subprocess.run([sys.executable, "-m", "diffedit_cli", "decode", str(tmp_path / "none.png"), "--model",
                          str(tiny_model_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_help_texts_teach():
    for cmd in ["encode", "decode", "interpolate", "convert"]:
        proc = subprocess.run([sys.executable, "-m", "diffedit_cli", cmd, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "Example" in proc.stdout, cmd


def test_the_official_flags_compute_what_the_conformance_tests_pin(tiny_model_dir, ref_tensors, photos, tmp_path,
                                                                   capsys):
    """The defaults moved (DPM-Solver++ inversion and decoding, 15 + 15, quadratic): the official setting asked for
    on the command line still runs the official arithmetic. encode = pipeline.invert(..., OFFICIAL) of the same image
    (pinned to the official fixtures in test_conformance); decode of the fixture's codes = the official
    reconstruction, up to the 8-bit PNG."""
    from diffedit_cli import pipeline
    from diffedit_cli.io.images import load_image, load_image_u8
    from diffedit_cli.io.latents import LatentCode, latent_metadata, save_latent
    from diffedit_cli.io.models import load_model
    from diffedit_cli.sampling import OFFICIAL

    official = ["--sampler", "ddim", "--inv-sampler", "ddim", "--spacing", "uniform", "--precision", "fp32"]
    code, _, err = run(["encode", photos / "a.png", "--model", tiny_model_dir, "--inv-steps", "10", *official[2:],
                        "--out", tmp_path / "a.safetensors", "--no-cache"], capsys)
    assert code == 0, err
    lat = load_latent(tmp_path / "a.safetensors")
    assert (lat.meta["inv_sampler"], lat.meta["inv_spacing"]) == ("ddim", "uniform")
    model = load_model(str(tiny_model_dir), components=())
    ae = pipeline.prepare(model.autoencoder, torch.device("cpu"))
    x = load_image(photos / "a.png", model.image_size)[None]
    z = pipeline.encode_semantic(ae, x, "fp32")
    x_T = pipeline.invert(ae, x, z, OFFICIAL.replace(inv_steps=10))
    assert float((lat.z_sem - z[0]).abs().max()) < 1e-5 and float((lat.x_T - x_T[0]).abs().max()) < 1e-4

    ref = ref_tensors["tiny_autoenc"]
    save_latent(tmp_path / "ref.safetensors", LatentCode(ref["z_sem"][0], ref["xT_inv_T10"][0],
                                                         latent_metadata(model, 10, "fixture", "none")))
    code, _, err = run(["decode", tmp_path / "ref.safetensors", "--model", tiny_model_dir, "--steps", "10", *official,
                        "--out", tmp_path / "rec.png"], capsys)
    assert code == 0, err
    decoded = torch.from_numpy(np.asarray(load_image_u8(tmp_path / "rec.png"))).permute(2, 0, 1).float()
    expected = ((ref["x0_rec_T10"][0].clamp(-1, 1) + 1) * 127.5)
    assert float((decoded - expected).abs().max()) <= 1.0  # the official reconstruction, rounded to 8 bits
