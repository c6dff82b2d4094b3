"""Evaluation library: image metrics, edit regions on toy faces, and small end-to-end benchmark runs."""

import copy
import json
import math

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from diffedit_cli.data import toyfaces  # noqa: E402
from diffedit_cli.sampling import EVALUATION
from diffedit_cli.evaluation.benchmarks import (EDIT_PARTS, dilate, edit_region, eval_editing, eval_reconstruction,
    format_table, load_lpips, lpips_unavailable, masked_mse, mse, psnr, ssim)
from diffedit_cli.networks.oracle import AttributeOracle, OracleConfig  # noqa: E402


def ssim_direct(a: np.ndarray, b: np.ndarray) -> float:
    """Textbook SSIM of two (C, H, W) images: explicit 11x11 Gaussian windows over a zero-padded border."""
    offsets = np.arange(11) - 5
    g = np.exp(-offsets ** 2 / (2 * 1.5 ** 2))
    window = np.outer(g, g) / g.sum() ** 2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for x, y in zip(np.pad(a, ((0, 0), (5, 5), (5, 5))), np.pad(b, ((0, 0), (5, 5), (5, 5)))):
        for i in range(a.shape[1]):
            for j in range(a.shape[2]):
                px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
                mx, my = (window * px).sum(), (window * py).sum()
                vx, vy = (window * px * px).sum() - mx ** 2, (window * py * py).sum() - my ** 2
                cov = (window * px * py).sum() - mx * my
                values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_identity_noise_and_direct_formula():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 24, 24, generator=gen)
    torch.testing.assert_close(ssim(images, images), torch.ones(2))
    scores = [ssim(images, (images + s * torch.randn(images.shape, generator=gen)).clamp(0, 1)).mean().item()
              for s in (0.02, 0.1, 0.3)]
    assert 1 > scores[0] > scores[1] > scores[2]

    a, b = torch.rand(1, 2, 13, 9, generator=gen), torch.rand(1, 2, 13, 9, generator=gen)
    assert ssim(a, b).item() == pytest.approx(ssim_direct(a[0].double().numpy(), b[0].double().numpy()), abs=1e-6)


def test_mse_psnr_known_values():
    black, grey = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.1)
    torch.testing.assert_close(mse(black, grey), torch.full((2,), 0.01))
    torch.testing.assert_close(psnr(black, grey), torch.full((2,), 20.0))
    assert math.isinf(psnr(grey, grey)[0].item())
    where = torch.zeros(2, 4, 4, dtype=torch.bool)
    where[0, :2] = True
    half = grey.clone()
    half[:, :, 2:] = 0.5  # differs only in rows the mask leaves out
    assert masked_mse(grey, half, where)[0].item() == 0.0
    assert math.isnan(masked_mse(grey, half, where)[1].item())  # no pixel selected


def test_lpips_is_optional_and_never_downloads():
    reason = lpips_unavailable()
    metric, _ = load_lpips("cpu")
    assert (metric is None) == (reason is not None)
    if reason is not None:
        assert "\n" not in reason


def test_eval_reconstruction_computes_lpips_with_a_downloaded_backbone(model_with_oracle, dataset, tmp_path,
                                                                        monkeypatch):
    pytest.importorskip("lpips", reason="the [test] extra installs lpips")
    from file_server import FileServer, alexnet_standin

    served = FileServer(tmp_path / "served")
    try:
        path, _ = alexnet_standin(served.folder)
        monkeypatch.delenv("DIFFEDIT_OFFLINE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
        monkeypatch.setenv("DIFFEDIT_LPIPS_ALEXNET_URL", f"{served.url}/{path.name}")
        result = eval_reconstruction(model_with_oracle, dataset, n=2, steps=(2,), random_steps=2, batch_size=2)
    finally:
        served.close()
    assert served.requests == [f"/{path.name}"]
    rows = {row["x_T"]: row for row in result["rows"]}
    assert rows["inferred T=2"]["LPIPS"] > 0 and rows["random T=2"]["LPIPS"] > 0
    assert rows["input"]["LPIPS"] is None
    assert not any(note.startswith("LPIPS") for note in result["notes"])


def test_dilation_is_a_square():
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True
    grown = dilate(mask, 2)
    assert grown.sum().item() == 25 and grown[2:7, 2:7].all()
    assert torch.equal(dilate(mask, 0), mask)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return toyfaces.write_dataset(tmp_path_factory.mktemp("faces") / "data", 4, size=32)


def face_params(dataset):
    return [toyfaces.FaceParams(**json.loads(line)["params"])
            for line in (dataset / "params.jsonl").read_text().splitlines()]


def test_counterfactuals_change_only_pixels_inside_the_edit_region(dataset):
    assert set(EDIT_PARTS) == set(toyfaces.ATTRIBUTES)
    for params in face_params(dataset):
        image = torch.from_numpy(toyfaces.render(params, 32)[0]).permute(2, 0, 1)[None] / 255
        for name, value in toyfaces.attributes(params).items():
            edited = toyfaces.render(toyfaces.with_attribute(params, name, not value), 32)[0]
            edited = torch.from_numpy(edited).permute(2, 0, 1)[None] / 255
            region = edit_region(params, name, not value, 32, dilation=0)
            assert masked_mse(image, edited, ~region[None]).item() == 0.0, name
            assert masked_mse(image, edited, region[None]).item() > 0.0, name
            dilated = edit_region(params, name, not value, 32)
            assert (dilated >= region).all() and (dilated.sum() > region.sum() or dilated.all())
    smiling = edit_region(face_params(dataset)[0], "Smiling", True, 32)
    assert 0 < smiling.float().mean() < 0.25  # the mouth, not the whole face


@pytest.fixture
def model_with_oracle(tiny_model):
    """The session tiny model (untouched) with a small random oracle over the toy-face attributes."""
    torch.manual_seed(0)
    model = copy.copy(tiny_model)
    model.extra = {**tiny_model.extra, "oracle": AttributeOracle(OracleConfig(image_size=32, channels=(8, 16))).eval()}
    return model


def test_eval_reconstruction_rows(model_with_oracle, dataset):
    result = eval_reconstruction(model_with_oracle, dataset, n=2, steps=(2,), random_steps=2, batch_size=2)
    assert result["n"] == 2
    rows = {row["x_T"]: row for row in result["rows"]}
    assert list(rows) == ["inferred T=2", "random T=2", "input"]
    for label in ("inferred T=2", "random T=2"):
        row = rows[label]
        assert 0 <= row["MSE"] <= 1 and row["PSNR"] > 0 and -1 <= row["SSIM"] <= 1
        assert 0 <= row["Attr acc"] <= 1
        assert (row["LPIPS"] is None) == (lpips_unavailable() is not None)
    assert rows["input"]["MSE"] is None and 0 <= rows["input"]["Attr acc"] <= 1
    assert any(note.startswith("LPIPS n/a") for note in result["notes"]) == (lpips_unavailable() is not None)

    one_by_one = eval_reconstruction(model_with_oracle, dataset, n=2, steps=(2,), random_steps=2, batch_size=1)
    for row, same in zip(result["rows"], one_by_one["rows"]):
        assert_rows_close(row, same, rel=1e-5)

    table = format_table(result["rows"], result["notes"])
    assert table.splitlines()[0].split() == ["x_T", "MSE", "PSNR", "SSIM", "LPIPS", "Attr", "acc"]
    assert "inferred T=2" in table and "n/a" in table


def assert_rows_close(row: dict, same: dict, **tolerance) -> None:
    """Same keys; text and None values equal; numbers within ``tolerance`` (pytest >= 9.2's approx refuses text)."""
    assert list(row) == list(same)
    for key, value in row.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert value == pytest.approx(same[key], **tolerance), key
        else:
            assert value == same[key], key


def test_eval_reconstruction_without_oracle(tiny_model, dataset):
    result = eval_reconstruction(tiny_model, dataset, n=1, steps=(), random_steps=2)
    assert [row["x_T"] for row in result["rows"]] == ["random T=2"]
    assert result["rows"][0]["Attr acc"] is None
    assert any(note.startswith("Attr acc n/a") for note in result["notes"])


def test_eval_editing_rows(model_with_oracle, dataset):
    rows = eval_editing(model_with_oracle, dataset, n=2, alphas=(0.3, 0.5), sampling=EVALUATION.replace(steps=2, inv_steps=2), batch_size=5)
    classifier_names = model_with_oracle.classifier.attributes
    expected = [name for name in classifier_names if name in toyfaces.ATTRIBUTES]
    assert [row["attribute"] for row in rows] == expected + ["mean"]
    for row in rows:
        assert list(row) == ["attribute", "flip@0.3", "flip@0.5", "dependency", "MSE outside"]
        assert 0 <= row["flip@0.3"] <= 1 and 0 <= row["flip@0.5"] <= 1
        assert row["dependency"] >= 0 and row["MSE outside"] >= 0
    assert rows[-1]["dependency"] == pytest.approx(np.mean([row["dependency"] for row in rows[:-1]]))

    other_batches = eval_editing(model_with_oracle, dataset, n=2, alphas=(0.3, 0.5), sampling=EVALUATION.replace(steps=2, inv_steps=2),
                                 batch_size=3)
    for row, same in zip(rows, other_batches):
        assert_rows_close(row, same, rel=1e-4, abs=1e-6)
    assert "Smiling" in format_table(rows)
