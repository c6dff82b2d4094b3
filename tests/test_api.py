"""The batch operators for data engines (diffedit_cli.api): one model load, a batch dict of numpy columns in and
out, per-row errors, and the same numbers as the command line."""

from pathlib import Path

import numpy as np
from PIL import Image

from diffedit_cli.api import Decoder, Editor, Encoder
from diffedit_cli.cli import main
from diffedit_cli.io.latents import load_latent
from diffedit_cli.sampling import DEFAULT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLING = DEFAULT.replace(steps=3, inv_steps=3, precision="fp32")
FLAGS = ["--steps", "3", "--inv-steps", "3", "--precision", "fp32", "--device", "cpu", "-q"]


def _face(name="face.png"):
    return np.asarray(Image.open(EXAMPLES / name).convert("RGB"))


def test_encoder_matches_encode_and_reports_bad_rows(tmp_path):
    encoder = Encoder("toyfaces", SAMPLING, "cpu")
    batch = {"image": [_face(), np.zeros((4, 4), np.float32), _face("face2.png")], "path": np.array(["a", "b", "c"])}
    out = encoder(batch)
    assert list(out["path"]) == ["a", "b", "c"] and "image" not in out
    assert out["error"][0] == out["error"][2] == "" and "uint8" in out["error"][1]
    assert out["z_sem"].shape == (3, 256) and not out["z_sem"][1].any()
    assert main(["encode", str(EXAMPLES / "face.png"), "--out", str(tmp_path / "a.safetensors"), "-b", "1",
                 *FLAGS[2:]]) == 0
    cli = load_latent(tmp_path / "a.safetensors")
    lone = encoder({"image": [_face()]})  # batch 1, as the command ran it
    assert np.array_equal(lone["z_sem"][0], cli.z_sem.numpy()) and np.array_equal(lone["x_T"][0], cli.x_T.numpy())


def test_editor_output_equals_the_edit_command(tmp_path):
    editor = Editor("toyfaces", ["Smiling=0.5"], sampling=SAMPLING, device="cpu")
    out = editor({"image": [_face()]})
    assert out["error"][0] == ""
    assert main(["edit", str(EXAMPLES / "face.png"), "--attr", "Smiling=0.5", "--out", str(tmp_path / "e.png"),
                 *FLAGS]) == 0
    assert np.array_equal(out["image"][0], np.asarray(Image.open(tmp_path / "e.png")))


def test_decoder_round_trip_keeps_other_columns():
    codes = Encoder("toyfaces", SAMPLING, "cpu")({"image": [_face()], "id": np.array([7])})
    images = Decoder("toyfaces", SAMPLING, "cpu")(codes)
    assert list(images["id"]) == [7] and images["image"].shape == (1, 64, 64, 3) and images["error"][0] == ""
    assert "z_sem" not in images


def test_the_encoder_on_a_local_ray_cluster_matches_the_cli_and_keeps_going_past_a_bad_row(tmp_path):
    """16 generated faces and one bad row through Ray Data (ray.init(num_cpus=2), two actors): the codes equal
    'diffedit encode' of the same files within the batch-invariance bounds (fp32: 1e-5 / 1e-3), the bad row is
    an error in its row and the 16 others are kept."""
    ray = __import__("pytest").importorskip("ray", reason="Ray is the [ray] extra, which the test extra includes")
    import os

    assert main(["data", "toyfaces", "--n", "16", "--seed", "5", "--out", str(tmp_path / "faces"), "-q"]) == 0
    files = sorted((tmp_path / "faces" / "images").glob("*.png"))
    assert len(files) == 16
    assert main(["encode", str(tmp_path / "faces" / "images"), "--out", str(tmp_path / "cli"), *FLAGS[2:]]) == 0
    rows = [{"image": np.asarray(Image.open(p).convert("RGB")), "path": p.name} for p in files]
    rows.insert(5, {"image": np.zeros((3, 3, 3), np.uint8)[:, :, :1], "path": "broken.png"})  # no RGB image
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items(rows).map_batches(
            Encoder, fn_constructor_kwargs={"model": "toyfaces", "sampling": SAMPLING, "device": "cpu"},
            batch_size=4, concurrency=2, num_cpus=1, batch_format="numpy")
        out = {row["path"]: row for row in ds.take_all()}
    finally:
        ray.shutdown()
    assert set(out) == {p.name for p in files} | {"broken.png"}
    assert "(H, W, 3) uint8 image" in out["broken.png"]["error"]
    for p in files:
        cli = load_latent(tmp_path / "cli" / f"{p.stem}.safetensors")
        row = out[p.name]
        assert row["error"] == ""
        assert np.abs(row["z_sem"] - cli.z_sem.numpy()).max() < 1e-5
        assert np.abs(row["x_T"] - cli.x_T.numpy()).max() < 1e-3
