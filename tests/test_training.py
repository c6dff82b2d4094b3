"""Training commands: a few steps run, checkpoints resume exactly, DDP over gloo with 2 CPU processes."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from diffedit_cli.cli import main
from diffedit_cli.models import load_model
from diffedit_cli.training import AutoencoderTrainConfig, load_train_state, train_autoencoder


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from diffedit_cli.toyfaces import write_dataset

    out = tmp_path_factory.mktemp("data") / "faces"
    write_dataset(out, 24, seed=3, size=32, masks=False)
    return out


def cfg(faces, run, **kw):
    base = dict(data=str(faces / "images"), run=str(run), preset="tiny32", steps=4, batch_size=4, save_every=2,
                sample_every=0, precision="fp32", device="cpu")
    base.update(kw)
    return AutoencoderTrainConfig(**base)


def test_resume_continues_exactly(faces, tmp_path):
    straight = tmp_path / "straight"
    train_autoencoder(cfg(faces, straight))
    chunked = tmp_path / "chunked"
    train_autoencoder(cfg(faces, chunked), stop_after=2)
    assert load_train_state(chunked / "train_state" / "autoencoder.pt")["step"] == 2
    with pytest.raises(Exception, match="--resume"):
        train_autoencoder(cfg(faces, chunked))
    train_autoencoder(cfg(faces, chunked), resume=True)
    a = load_train_state(straight / "train_state" / "autoencoder.pt")
    b = load_train_state(chunked / "train_state" / "autoencoder.pt")
    assert a["step"] == b["step"] == 4
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], atol=1e-6), key
    # the run folder is a model folder
    model = load_model(str(chunked), components=())
    assert model.image_size == 32


def test_cli_trains_all_components_and_edits(faces, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "autoencoder", "--data", str(faces / "images"), "--out", str(run), "--preset", "tiny32",
                 "--steps", "3", "--batch-size", "4", "--sample-every", "3", "--quiet", "--device", "cpu"]) == 0
    assert (run / "samples" / "autoencoder_0000003.png").is_file()
    assert main(["train", "latent", "--model", str(run), "--data", str(faces / "images"), "--steps", "5",
                 "--batch-size", "8", "--quiet", "--device", "cpu"]) == 0
    assert main(["train", "classifier", "--model", str(run), "--data", str(faces / "images"), "--labels",
                 str(faces / "list_attr.txt"), "--epochs", "2", "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    latent_log = [json.loads(line) for line in (run / "train_log_latent.jsonl").read_text().splitlines()]
    assert [row["step"] for row in latent_log] == [5] and latent_log[0]["loss"] > 0
    index = json.loads((run / "model_index.json").read_text())
    assert index["components"] == ["autoencoder", "classifier", "latent"]
    model = load_model(str(run))
    assert model.classifier.attributes[:2] == ["Bangs", "Black_Hair"]
    img = faces / "images" / "000000.png"
    assert main(["edit", str(img), "--model", str(run), "--attr", "smiling", "--steps", "2", "--inv-steps", "2",
                 "--out", str(tmp_path / "e.png"), "--compare"]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "e.png").size[0] > 2 * 32  # input | output
    assert main(["sample", "--n", "2", "--model", str(run), "--steps", "2", "--latent-steps", "2",
                 "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "grid.png").is_file()


def test_data_command_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["data", "toyfaces", "--n", "3", "--size", "32", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert (out / "list_attr.txt").read_text().splitlines()[0] == "3"
    assert main(["data", "toyfaces", "--n", "3", "--out", str(out), "--quiet"]) == 2  # never overwritten
    assert "error:" in capsys.readouterr().err


def test_ddp_two_cpu_processes(faces, tmp_path):
    """torchrun with 2 processes over gloo; every rank holds identical weights afterwards."""
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "diffedit_cli", "train", "autoencoder", "--data", str(faces / "images"), "--out", str(run),
           "--preset", "tiny32", "--steps", "2", "--batch-size", "4", "--sample-every", "0", "--device", "cpu",
           "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        # torchrun's standalone rendezvous picks free ports at start; on a loaded machine that start can fail
        # rarely (seen in a few full-suite runs, never alone). One retry in a fresh folder; a real
        # bug fails both times, and the retry shows up as a warning in the test summary.
        first = proc
        warnings.warn(f"DDP run failed once and is retried: {first.stderr[-600:]}")
        run = tmp_path / "ddp-retry"
        cmd[cmd.index("--out") + 1] = str(run)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, ("first", first.stdout[-1000:], first.stderr[-2000:],
                                      "retry", proc.stdout[-1000:], proc.stderr[-2000:])
    state = load_train_state(run / "train_state" / "autoencoder.pt")
    assert state["step"] == 2 and state["world_size"] == 2
    assert state["ranks_in_sync"]  # gradients were averaged: both processes hold the same weights
    assert (run / "autoencoder" / "model.safetensors").is_file()


