"""`diffedit convert`: safe reading of Lightning checkpoints, EMA/raw, presets, model folder checks."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffedit_cli.cli import main
from diffedit_cli.io.convert import read_checkpoint
from diffedit_cli.errors import ModelError
from diffedit_cli.io.models import load_component, load_model


class ModelCheckpoint:
    """Stands in for Lightning's callback class, used as a dict key as Lightning 1.4.5 does."""


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def lightning_style_checkpoint(reference, tmp_path, extra):
    ckpt = torch.load(reference / "tiny_autoenc" / "last.ckpt", weights_only=True)
    ckpt.update(extra)
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    return path


def test_callbacks_and_optimizer_states_are_read_safely(reference, tmp_path, ref_tensors):
    path = lightning_style_checkpoint(reference, tmp_path, {
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5), "dirpath": "/x"}},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]}],
    })
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    ckpt, stubbed = read_checkpoint(path)
    assert any("ModelCheckpoint" in s for s in stubbed)
    assert "state_dict" in ckpt and ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-4
    assert main(["convert", str(path), "--out", str(tmp_path / "m")]) == 0
    ae = load_component(tmp_path / "m" / "autoencoder", "autoencoder")
    with torch.no_grad():
        z = ae.encode(ref_tensors["tiny_autoenc"]["x0"])
    assert (z - ref_tensors["tiny_autoenc"]["z_sem"]).abs().max() < 1e-5


def test_pickled_code_is_not_executed_without_trust(reference, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = lightning_style_checkpoint(reference, tmp_path, {"callbacks": {"x": Exploit(marker)}})
    assert main(["convert", str(path), "--out", str(tmp_path / "safe")]) == 0
    assert not marker.exists()
    assert "io.open" in capsys.readouterr().err
    # --trust-pickle really unpickles (and so runs) the file's code
    assert main(["convert", str(path), "--out", str(tmp_path / "trusted"), "--trust-pickle"]) == 0
    assert marker.exists()


def test_ema_and_raw_weights_differ(reference, tmp_path):
    src = str(reference / "tiny_autoenc" / "last.ckpt")
    assert main(["convert", src, "--out", str(tmp_path / "ema")]) == 0
    assert main(["convert", src, "--out", str(tmp_path / "raw"), "--weights", "raw"]) == 0
    ema = load_file(str(tmp_path / "ema" / "autoencoder" / "model.safetensors"))
    raw = load_file(str(tmp_path / "raw" / "autoencoder" / "model.safetensors"))
    official = torch.load(src, weights_only=True)["state_dict"]
    key = "encoder.out.3.weight"
    assert torch.equal(ema[key], official["ema_model." + key])
    assert torch.equal(raw[key], official["model." + key])
    assert not torch.equal(ema[key], raw[key])


def test_convert_refuses_to_replace_components(reference, tmp_path, capsys):
    src = str(reference / "tiny_autoenc" / "last.ckpt")
    out = tmp_path / "m"
    assert main(["convert", src, "--out", str(out)]) == 0
    before = (out / "autoencoder" / "model.safetensors").read_bytes()
    assert main(["convert", src, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "autoencoder" / "model.safetensors").read_bytes() == before
    # a classifier can be added to the same folder later
    assert main(["convert", str(reference / "tiny_classifier" / "last.ckpt"), "--out", str(out)]) == 0
    assert json.loads((out / "model_index.json").read_text())["components"] == ["autoencoder", "classifier"]


def test_preset_and_bad_inputs(reference, tmp_path, capsys):
    src = str(reference / "tiny_autoenc" / "last.ckpt")
    assert main(["convert", src, "--out", str(tmp_path / "a"), "--preset", "ffhq128"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "do not fit" in err
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    assert main(["convert", str(junk), "--out", str(tmp_path / "b")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "c")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["convert", src, "--out", str(tmp_path / "d"), "--weights", "best"]) == 2
    assert not (tmp_path / "d" / "autoencoder").exists()


def test_tampered_and_wrong_components(tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    # wrong component in the autoencoder slot
    shutil.rmtree(model / "autoencoder")
    shutil.copytree(tiny_model_dir / "latent", model / "autoencoder")
    with pytest.raises(ModelError, match="holds a latent component, not an autoencoder"):
        load_model(str(model))
    # tampered safetensors header
    shutil.rmtree(model / "autoencoder")
    shutil.copytree(tiny_model_dir / "autoencoder", model / "autoencoder")
    weights = model / "autoencoder" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"{garbage!!!!"
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt or tampered"):
        load_model(str(model))
    # a header claiming a different shape
    data = bytearray((tiny_model_dir / "autoencoder" / "model.safetensors").read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["shape"] = [1] + header[key]["shape"]
    blob = json.dumps(header).encode()
    blob += b" " * (n - len(blob)) if len(blob) <= n else b""
    if len(blob) == n:
        weights.write_bytes(bytes(data[:8]) + blob + bytes(data[8 + n:]))
        with pytest.raises(ModelError):
            load_model(str(model))
