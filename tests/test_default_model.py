"""The default model shipped in weights/: found by name, used without --model, edits / samples / evals offline."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli.cli import main
from diffedit_cli.io.models import DEFAULT_MODEL, load_model, shipped_models
from oracle_checks import assert_oracle_sees_only

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_model():
    return load_model(None, components=("latent", "classifier", "oracle"))


def test_default_model_is_shipped_and_complete(default_model):
    assert DEFAULT_MODEL in shipped_models()
    assert default_model.location.model_id == DEFAULT_MODEL
    assert set(default_model.index["components"]) >= {"autoencoder", "latent", "classifier", "oracle"}
    assert (default_model.location.path / "README.md").is_file()  # model card
    size = sum(p.stat().st_size for p in default_model.location.path.rglob("*") if p.is_file())
    assert size < 60e6


def test_oracle_accuracy_on_fresh_faces(default_model):
    from diffedit_cli.training.oracle import evaluate_oracle

    accuracy = evaluate_oracle(default_model.extra["oracle"], n=300, seed=4242)
    assert min(accuracy.values()) >= 0.98, accuracy


def test_quickstart_edit_offline_makes_the_face_smile(tmp_path, default_model):
    """The README's command (default steps), without --model, in a subprocess with the Hub switched off: the
    oracle reads Smiling on the output and not on the input, and the other attributes it reads stay."""
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    env.update({k: v for k, v in __import__("os").environ.items() if k in ("HOME", "PYTHONPATH", "LANG")})
    proc = subprocess.run([sys.executable, "-m", "diffedit_cli", "edit", str(ROOT / "examples" / "face.png"), "--attr",
                           "Smiling", "--alpha", "0.7", "--out", str(tmp_path / "smiling.png"), "--json"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = np.asarray(Image.open(tmp_path / "smiling.png"), dtype=np.float32)
    src = np.asarray(Image.open(ROOT / "examples" / "face.png"), dtype=np.float32)
    assert out.shape == src.shape
    assert 0 < np.abs(out - src).mean() < 60  # changed, but still the same picture
    assert json.loads(proc.stdout)["edits"] == {"Smiling": 0.7}
    assert_oracle_sees_only(default_model.extra["oracle"], ROOT / "examples" / "face.png", tmp_path / "smiling.png",
                            "Smiling")


def test_edit_sweep_topk_and_unknown_attribute(tmp_path, capsys):
    face = str(ROOT / "examples" / "face.png")
    assert main(["edit", face, "--attr", "smiling", "--alpha-sweep", "-0.5:0.5:3", "--topk", "32", "--compare",
                 "--steps", "5", "--inv-steps", "5", "--out", str(tmp_path / "sweep.png")]) == 0
    width = Image.open(tmp_path / "sweep.png").size[0]
    assert width > 4 * 64  # input + 3 decodes
    assert main(["edit", face, "--attr", "Smilling"]) == 2
    err = capsys.readouterr().err
    assert "unknown attribute 'Smilling'" in err and "Smiling" in err
    assert main(["edit", "--list-attrs"]) == 0
    assert "Eyeglasses" in capsys.readouterr().out


# A regression guard of the shipped model: what the classifier picks in z_sem shows after random-x_T decoding.
def test_sample_where(tmp_path, default_model):
    assert main(["sample", "--n", "4", "--where", "Eyeglasses", "--steps", "10", "--latent-steps", "10",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    images = sorted((tmp_path / "s").glob("sample_*.png"))
    assert len(images) == 4
    with torch.no_grad():
        from diffedit_cli.io.images import load_image

        batch = torch.stack([load_image(p, default_model.image_size) for p in images])
        predicted = default_model.extra["oracle"].predict(batch)
    column = default_model.extra["oracle"].attributes.index("Eyeglasses")
    assert predicted[:, column].float().mean() >= 0.5  # the classifier's choice is visible in pixels


def test_eval_commands_run(tmp_path, capsys):
    from diffedit_cli.data.toyfaces import write_dataset

    write_dataset(tmp_path / "held", 4, seed=77)
    assert main(["eval", "recon", str(tmp_path / "held"), "--n", "4", "--steps", "5", "--random-steps", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "inferred T=5" in out and "random T=5" in out
    assert main(["eval", "edit", str(tmp_path / "held"), "--n", "2", "--steps", "5", "--inv-steps", "5",
                 "--alphas", "0.5", "--quiet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["attribute"] == "mean" and 0 <= rows[-1]["flip@0.5"] <= 1
    assert main(["eval", "sample", str(tmp_path / "held"), "--n", "3", "--steps", "5", "--latent-steps", "5",
                 "--quiet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["attribute"] == "max" and all(0 <= r["samples"] <= 1 for r in rows[:-1])


def test_wheel_ships_the_weights(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("diffedit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for comp in ("autoencoder", "latent", "classifier", "oracle"):
        assert f"diffedit_cli/weights/{DEFAULT_MODEL}/{comp}/model.safetensors" in names
    assert f"diffedit_cli/weights/{DEFAULT_MODEL}/model_index.json" in names
