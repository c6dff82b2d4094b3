"""Training commands: a few steps run, checkpoints resume exactly, DDP over gloo with 2 CPU processes."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from diffedit_cli import diffusion
from diffedit_cli.cli import main
from diffedit_cli.io.models import load_model
from diffedit_cli.training.diffae import AutoencoderTrainConfig, load_train_state, train_autoencoder


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from diffedit_cli.data.toyfaces import write_dataset

    out = tmp_path_factory.mktemp("data") / "faces"
    write_dataset(out, 24, seed=3, size=32, masks=False)
    return out


def cfg(faces, run, **kw):
    base = dict(data=str(faces / "images"), run=str(run), preset="tiny32", steps=4, batch_size=4, save_every=2,
                sample_every=0, precision="fp32", device="cpu")
    base.update(kw)
    return AutoencoderTrainConfig(**base)


RECIPE = dict(prediction="v", schedule="cosine", zero_terminal_snr=True, loss_weight="min-snr:4",
              timesteps="curriculum:3", offset_noise=0.05, lr_schedule="cosine", warmup=1, channels_last=True)


@pytest.mark.parametrize("recipe", [{}, RECIPE], ids=["official", "every-option"])
def test_resume_continues_exactly(faces, tmp_path, recipe):
    straight = tmp_path / "straight"
    train_autoencoder(cfg(faces, straight, **recipe))
    chunked = tmp_path / "chunked"
    train_autoencoder(cfg(faces, chunked, **recipe), stop_after=2)
    assert load_train_state(chunked / "train_state" / "autoencoder.pt")["step"] == 2
    with pytest.raises(Exception, match="--resume"):
        train_autoencoder(cfg(faces, chunked))
    train_autoencoder(cfg(faces, chunked), resume=True)  # the recipe comes from the run, not from these options
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


# -- objective options, init-from, eval semantics -----------------------------------------------------------

def test_every_option_round_trips_through_the_configs(faces, tmp_path):
    run = tmp_path / "run"
    train_autoencoder(cfg(faces, run, **RECIPE))
    saved = json.loads((run / "train_config.json").read_text())
    for key, value in RECIPE.items():
        assert saved[key] == value, key
    component = json.loads((run / "autoencoder" / "config.json").read_text())
    assert component["config"]["prediction"] == "v" and component["config"]["beta_schedule"] == "cosine"
    assert component["config"]["zero_terminal_snr"] is True and component["config"]["timestep_spacing"] == "linspace"
    assert component["training"]["loss_weight"] == "min-snr:4" and component["training"]["steps"] == 4
    model = load_model(str(run), components=())
    assert diffusion.Parameterization.of(model.autoencoder.config).prediction == "v"


def test_init_from_starts_from_the_given_weights(faces, tmp_path):
    source = tmp_path / "source"
    train_autoencoder(cfg(faces, source, steps=2))
    tuned = tmp_path / "tuned"
    train_autoencoder(cfg(faces, tuned, steps=2, init_from=str(source), prediction="v", lr=0.0), stop_after=0)
    before = load_model(str(source), components=()).autoencoder.state_dict()
    after = load_model(str(tuned), components=()).autoencoder
    assert after.config.prediction == "v"  # the new run's parameterisation, the source's weights
    for key, value in before.items():
        assert torch.equal(value, after.state_dict()[key]), key


def test_bad_recipes_are_one_line_errors(faces, tmp_path, capsys):
    base = ["train", "autoencoder", "--data", str(faces / "images"), "--preset", "tiny32", "--steps", "1", "--quiet"]
    for extra, message in ((["--zero-terminal-snr"], "needs v prediction"),
                           (["--prediction", "x0"], "unknown prediction"),
                           (["--loss-weight", "min-snr:five"], "weighting"),
                           (["--timesteps", "sometimes"], "timestep sampling"),
                           (["--schedule", "quadratic"], "schedule")):
        assert main(base + ["--out", str(tmp_path / "r"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.startswith("error:") and "\n" not in err, err
        assert not (tmp_path / "r" / "train_state").exists()


def test_eval_semantics_end_to_end(faces, tmp_path, capsys):
    run = tmp_path / "run"
    train_autoencoder(cfg(faces, run, steps=2, prediction="v", zero_terminal_snr=True, keep_every=1))
    assert main(["eval", "semantics", str(faces), "--model", str(run), "--n", "4", "--probe-n", "24", "--steps", "3",
                 "--json", "--quiet", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 4 and result["probe_n"] == 24 and result["steps"] == 3
    names = [row["attribute"] for row in result["probe"]]
    assert "Smiling" in names and len(names) == 11
    for row in result["probe"]:
        assert 0 <= row["probe"] <= 1 and 0 <= row["random encoder"] <= 1
    summary = result["summary"]
    assert 0 <= summary["x_T colour share"] <= 1
    assert summary["recon MSE inferred"] >= 0 and summary["mean colour MSE"] >= 0
    # the shipped oracle (64 px) judges the decodes of a model that has none
    assert 0 <= summary["random x_T labels kept"] <= 1
    assert main(["eval", "semantics", str(faces), "--model", str(run), "--n", "4", "--probe-n", "24", "--steps", "3",
                 "--quiet", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "random encoder" in table and "x_T colour share" in table
    # the latent DDIM and sampling work on the codes of a v-prediction model
    assert main(["train", "latent", "--model", str(run), "--data", str(faces / "images"), "--steps", "3",
                 "--batch-size", "8", "--quiet", "--device", "cpu"]) == 0
    assert main(["sample", "--n", "2", "--model", str(run), "--steps", "2", "--latent-steps", "2",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert len(list((tmp_path / "s").glob("sample_*.png"))) == 2
    capsys.readouterr()
    # the scaling curve: one row per EMA snapshot
    assert main(["eval", "semantics", str(faces), "--run", str(run), "--n", "2", "--probe-n", "16", "--steps", "2",
                 "--json", "--quiet", "--device", "cpu"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["step"] for row in rows] == [1, 2] and all(row["run"] == "run" for row in rows)
    assert all(0 <= row["probe mean"] <= 1 for row in rows)


# -- part-weighted loss -------------------------------------------------------------------------------------

def test_weight_map_covers_the_dilated_parts_only():
    import numpy as np

    from diffedit_cli.data.part_masks import parse_part_weights, weight_map

    mouth = np.zeros((8, 8), bool)
    mouth[4, 3] = True
    eyes = np.zeros((8, 8), bool)
    eyes[1, 1] = True
    w = weight_map({"mouth": mouth, "eyes": eyes, "skin": ~mouth}, parse_part_weights("mouth=8, eyes=3"), 8, dilate=1)
    assert w.shape == (1, 8, 8)
    assert w[0, 3:6, 2:5].eq(8).all() and w[0, 0:3, 0:3].eq(3).all()
    assert int(w.eq(8).sum()) == 9 and int(w.eq(3).sum()) == 9 and int(w.eq(1).sum()) == 64 - 18
    assert weight_map({"mouth": mouth}, {"mouth": 8.0}, 8, dilate=0).eq(8).sum() == 1
    for bad in ("mouth", "mouth=0.5", "=3", "mouth=x"):
        with pytest.raises(Exception, match="part weights"):
            parse_part_weights(bad)
    with pytest.raises(Exception, match="not in the masks"):
        weight_map({"mouth": mouth}, {"teeth": 2.0}, 8)


def test_weighted_loss_is_the_plain_loss_with_unit_weights_and_follows_the_weights():
    from diffedit_cli.training.diffae import weighted_mse

    gen = torch.Generator().manual_seed(0)
    out, target = torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    plain = (out - target).pow(2).mean(dim=(1, 2, 3))
    assert torch.allclose(weighted_mse(out, target, torch.ones(2, 1, 4, 4)), plain)
    w = torch.ones(2, 1, 4, 4)
    w[:, :, 0, 0] = 1e6  # nearly all weight on one pixel: the loss is that pixel's error
    assert torch.allclose(weighted_mse(out, target, w), (out - target)[:, :, 0, 0].pow(2).mean(dim=1), rtol=1e-4)


def test_part_weights_train_resume_and_need_masks(tmp_path, capsys):
    from diffedit_cli.data.toyfaces import write_dataset

    faces = write_dataset(tmp_path / "faces", 6, seed=4, size=32)
    run = tmp_path / "run"
    train_autoencoder(cfg(faces, run, part_weights="mouth=8,eyes=8", part_dilate=2), stop_after=2)
    train_autoencoder(cfg(faces, run), resume=True)
    saved = load_train_state(run / "train_state" / "autoencoder.pt")
    assert saved["step"] == 4 and saved["config"]["part_weights"] == "mouth=8,eyes=8"
    component = json.loads((run / "autoencoder" / "config.json").read_text())
    assert component["training"]["part_weights"] == "mouth=8,eyes=8" and component["training"]["part_dilate"] == 2
    base = ["train", "autoencoder", "--data", str(faces / "images"), "--preset", "tiny32", "--steps", "1", "--quiet"]
    for extra, message in ((["--part-weights", "mouth=8", "--masks", str(tmp_path / "nowhere")], "no part masks"),
                           (["--part-weights", "teeth=2"], "not in the masks"),
                           (["--part-weights", "mouth:8"], "part weights")):
        assert main(base + ["--out", str(tmp_path / "r"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.startswith("error:") and "\n" not in err, err


def test_cli_resume_keeps_the_run_controls_not_given_again(faces, tmp_path):
    run = tmp_path / "run"
    base = ["train", "autoencoder", "--data", str(faces / "images"), "--out", str(run), "--preset", "tiny32",
            "--batch-size", "4", "--device", "cpu", "--precision", "fp32", "--sample-every", "0", "--quiet"]
    assert main(base + ["--steps", "4", "--save-every", "1", "--keep-every", "1", "--chunk", "1"]) == 0
    # --resume alone: the run's own --save-every / --keep-every, not the command's defaults
    assert main(base + ["--steps", "3", "--resume", "--chunk", "1"]) == 0
    saved = json.loads((run / "train_config.json").read_text())
    assert (saved["steps"], saved["save_every"], saved["keep_every"]) == (3, 1, 1)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["autoencoder_0000001", "autoencoder_0000002"]
    # a control given again replaces the run's
    assert main(base + ["--steps", "3", "--resume", "--keep-every", "0"]) == 0
    assert json.loads((run / "train_config.json").read_text())["keep_every"] == 0
    assert len(list((run / "snapshots").iterdir())) == 2


def test_resumed_config_keeps_the_recipe_and_takes_the_run_controls():
    from diffedit_cli.errors import DiffeditError, flag_message
    from diffedit_cli.training.gae import GAETrainConfig

    saved = AutoencoderTrainConfig(data="d", run="r", lr=6e-4, prediction="v", steps=100, keep_every=0).to_dict()
    saved["a_field_of_a_newer_version"] = 1
    new = AutoencoderTrainConfig(data="d", run="r", lr=1e-4, steps=300, keep_every=50, device="cpu")
    resumed = new.resumed(saved)
    assert (resumed.lr, resumed.prediction) == (6e-4, "v")  # the recipe is the saved run's
    assert (resumed.steps, resumed.keep_every, resumed.device) == (300, 50, "cpu")  # the invocation's controls
    partly = new.resumed(saved, given={"steps"})  # only the controls given again replace the saved ones
    assert (partly.steps, partly.keep_every, partly.device) == (300, 0, "auto")
    assert AutoencoderTrainConfig.from_dict(json.loads(json.dumps(resumed.to_dict()))) == resumed

    with pytest.raises(DiffeditError) as err:
        GAETrainConfig(model="m", groups=0).check_positive("steps", "groups")
    assert flag_message(err.value) == "--groups must be >= 1"
