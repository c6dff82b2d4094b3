"""The attribute oracle: shapes, predict, component round trip and a short end-to-end training run."""

import json

import pytest
import torch

torch.set_num_threads(1)

from diffedit_cli.io import models
from diffedit_cli.data import toyfaces
from diffedit_cli.networks.oracle import AttributeOracle, OracleConfig
from diffedit_cli.training.oracle import evaluate_oracle, render_faces, train_oracle


@pytest.fixture
def oracle() -> AttributeOracle:
    torch.manual_seed(0)
    return AttributeOracle(OracleConfig()).eval()


def test_shapes_and_size(oracle):
    assert oracle.attributes == toyfaces.ATTRIBUTES
    assert sum(p.numel() for p in oracle.parameters()) < 1_000_000
    with torch.no_grad():
        assert oracle(torch.rand(5, 3, 64, 64) * 2 - 1).shape == (5, 11)
        assert oracle(torch.rand(2, 3, 32, 32) * 2 - 1).shape == (2, 11)  # resized to image_size


def test_predict_thresholds_logits_at_zero(oracle):
    bias = torch.tensor([2.0, -2.0, 0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 0.1, -0.1])
    with torch.no_grad():
        oracle.head.weight.zero_()
        oracle.head.bias.copy_(bias)
    predicted = oracle.predict(torch.rand(4, 3, 64, 64) * 2 - 1)
    assert predicted.dtype == torch.bool and predicted.shape == (4, 11)
    assert torch.equal(predicted, (bias > 0).expand(4, -1))


def test_config_round_trip_through_json():
    cfg = OracleConfig(image_size=32, attributes=["Smiling", "Male"], channels=(8, 16))
    assert OracleConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_component_save_load_round_trip(oracle, tmp_path):
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        oracle.features[0][1].running_mean.uniform_(-0.1, 0.1)  # a buffer must survive too
        expected = oracle(images)
    models.save_component(oracle, tmp_path / "oracle", "oracle")
    loaded = models.load_component(tmp_path / "oracle", "oracle")
    assert isinstance(loaded, AttributeOracle) and not loaded.training
    assert loaded.config == oracle.config
    torch.testing.assert_close(loaded(images), expected)


def test_render_faces_labels_match_generator():
    images, labels = render_faces(7, 3, 32, ["Male", "Smiling"])
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 32, 32)
    for i in range(3):
        truth = toyfaces.attributes(toyfaces.sample_face(toyfaces.face_seed(7, i)))
        assert labels[i].tolist() == [float(truth["Male"]), float(truth["Smiling"])]


def test_short_training_writes_loadable_component(tmp_path):
    run = tmp_path / "run"
    rows = []
    accuracy = train_oracle(run, n_train=300, n_val=100, epochs=1, batch_size=64, log=rows.append)
    assert list(accuracy) == toyfaces.ATTRIBUTES
    assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    assert [row["epoch"] for row in rows] == [1]
    assert "oracle" in json.loads((run / models.INDEX_FILE).read_text())["components"]
    meta = json.loads((run / "oracle" / models.CONFIG_FILE).read_text())
    assert meta["val_accuracy"] == accuracy and meta["training"]["n_train"] == 300
    loaded = models.load_component(run / "oracle", "oracle")
    evaluated = evaluate_oracle(loaded, n=40)
    assert list(evaluated) == toyfaces.ATTRIBUTES
