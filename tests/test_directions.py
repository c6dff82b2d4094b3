"""Edit directions beyond the classifier: PCA, few-shot, orthogonal projection, direction files, the CLI."""

import json

import pytest
import torch
from PIL import Image

from diffedit_cli.editing import directions as dirs
from diffedit_cli.cli import main
from diffedit_cli.errors import InputError


def planted(n=4000, d=32, k=3, seed=0):
    """Codes with k orthonormal directions of decreasing variance (16, 9, 4) plus unit noise 0.05."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, k, generator=gen))
    scales = torch.tensor([4.0, 3.0, 2.0])[:k]
    z = (torch.randn(n, k, generator=gen) * scales) @ basis.T + 0.05 * torch.randn(n, d, generator=gen)
    return z + 3.0, basis.T


def test_pca_recovers_planted_directions_in_order():
    z, basis = planted()
    vectors, explained = dirs.pca_directions(z, 5)
    assert vectors.shape == (5, 32) and torch.allclose(vectors.norm(dim=1), torch.ones(5), atol=1e-5)
    for k in range(3):
        assert float((vectors[k] @ basis[k]).abs()) > 0.995
    assert explained[0] > explained[1] > explained[2] > 10 * explained[3]
    assert abs(float(explained[:3].sum()) - 1.0) < 0.02
    again, _ = dirs.pca_directions(z[torch.randperm(len(z))], 5)
    assert torch.allclose(again[:3], vectors[:3], atol=1e-3)  # the sign convention makes signs reproducible


def test_orthogonal_projection_is_exact_for_correlated_directions():
    gen = torch.Generator().manual_seed(1)
    d = torch.nn.functional.normalize(torch.randn(64, generator=gen), dim=0)
    a = torch.randn(64, generator=gen)
    b = torch.randn(64, generator=gen)
    others = torch.stack([a, a + 0.01 * torch.randn(64, generator=gen), 0.5 * d + b])  # nearly dependent, overlapping d
    out = dirs.orthogonal_to(d, others)
    assert abs(float(out.norm()) - 1) < 1e-6
    assert float((others @ out).abs().max() / others.norm(dim=1).max()) < 1e-6
    with pytest.raises(InputError, match="span"):
        dirs.orthogonal_to(others[0] / others[0].norm(), others[:1])


@pytest.mark.parametrize("per_side,method", [(5, "mean-difference"), (100, "logistic")])
def test_few_shot_direction_finds_the_planted_attribute(per_side, method):
    gen = torch.Generator().manual_seed(per_side)
    w = torch.nn.functional.normalize(torch.randn(48, generator=gen), dim=0)
    base = torch.randn(2 * per_side, 48, generator=gen)
    positive, negative = base[:per_side] + 3 * w, base[per_side:] - 3 * w
    found, used = dirs.example_direction(positive, negative)
    assert used == method
    # 5 per side: the mean difference's noise has norm ~sqrt(2 * 48 / 5) = 4.4 against a signal of 6 (cos ~0.8);
    # a random direction would give |cos| ~ 1/sqrt(48) = 0.14
    assert float(found @ w) > (0.7 if per_side == 5 else 0.95)


def test_direction_files_round_trip_and_refuse_corruption(tmp_path):
    vectors, explained = dirs.pca_directions(planted()[0], 4)
    original = dirs.DirectionSet(["pc01", "pc02", "Smile", "pc04"], vectors, torch.zeros(32), torch.ones(32) * 2,
                                 "m", "abc123", {"method": "pca", "codes": 4000}, explained)
    path = tmp_path / "d.safetensors"
    dirs.save_directions(path, original)
    back = dirs.load_directions(path)
    assert back.names == original.names and torch.equal(back.vectors, original.vectors)
    assert torch.equal(back.std, original.std) and torch.equal(back.explained, original.explained)
    assert back.fingerprint == "abc123" and back.provenance == {"method": "pca", "codes": 4000}
    assert back.index("smile") == 2
    with pytest.raises(InputError, match="did you mean Smile"):
        back.index("Smle")
    with pytest.raises(InputError, match="already exists"):
        dirs.save_directions(path, original, exclusive=True)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(InputError, match="corrupt"):
        dirs.load_directions(path)


def test_apply_edits_matches_the_classifier_formula():
    from diffedit_cli.editing.attributes import classifier_edit, edit_z_sem
    from diffedit_cli.io.models import load_model

    classifier = load_model(None, components=("classifier",)).classifier
    z = torch.randn(3, classifier.conds_mean.shape[1]) * classifier.conds_std + classifier.conds_mean
    official = edit_z_sem(z, classifier, {0: 0.3, 2: -0.2})
    ours = dirs.apply_edits(z, [classifier_edit(classifier, 0, 0.3), classifier_edit(classifier, 2, -0.2)])
    assert torch.allclose(ours, official, atol=1e-4)


# -- the CLI on the shipped default model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    assert main(["data", "toyfaces", "--n", "12", "--seed", "3", "--out", str(folder), "--no-masks", "--quiet"]) == 0
    attrs = (folder / "list_attr.txt").read_text().splitlines()
    names = attrs[1].split()
    smiling = names.index("Smiling")
    for line in attrs[2:]:
        file, *values = line.split()
        side = folder / ("pos" if values[smiling] == "1" else "neg")
        side.mkdir(exist_ok=True)
        if len(list(side.iterdir())) < 3:  # three examples per side: too few, and said so
            (side / file).write_bytes((folder / "images" / file).read_bytes())
    return folder


def test_directions_cli_end_to_end(faces, tmp_path, capsys):
    d = tmp_path / "dirs.safetensors"
    assert main(["directions", "pca", str(faces / "images"), "--components", "3", "--out", str(d), "-q"]) == 0
    assert "3 directions from 12 codes" in capsys.readouterr().out
    assert main(["directions", "rename", str(d), "pc02=Tilt"]) == 0
    assert dirs.load_directions(d).names == ["pc01", "Tilt", "pc03"]

    grid = tmp_path / "overview.png"
    assert main(["directions", "show", str(d), "--inputs", str(faces / "images"), "--out", str(grid), "--faces", "1",
                 "--columns", "3", "--steps", "2", "--inv-steps", "2", "-q"]) == 0
    width, height = Image.open(grid).size
    # 3 strengths x 1 face, 3 rows: 64 px tiles shown at 256 px (2 px padding), plus a label band on top and left
    assert (width - 2) // 258 == 3 and (height - 2) // 258 == 3 and width > 3 * 258 + 12 and height > 3 * 258 + 12

    few = tmp_path / "smile.safetensors"
    code = main(["directions", "from-examples", "--positive", str(faces / "pos"), "--negative", str(faces / "neg"),
                 "--name", "Smile", "--out", str(few), "-q"])
    err = capsys.readouterr()
    assert code == 0 and "mean-difference" in err.out
    assert any(line.startswith("warning:") and "fewer than 5" in line for line in err.err.splitlines())

    out = tmp_path / "edited"
    code = main(["edit", str(faces / "images" / "000000.png"), "--direction", f"{few}:Smile=0.4", "--direction",
                 f"{d}:Tilt", "--attr", "Eyeglasses=0.2", "--orthogonal-to", f"Male,{d}:pc01", "--steps", "2",
                 "--inv-steps", "2", "--out", str(out), "--json", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    line = json.loads(captured.out.splitlines()[-1])
    assert set(line["edits"]) == {"Eyeglasses", f"{few}:Smile", f"{d}:Tilt"} and line["orthogonal_to"]
    assert (out / "000000.png").is_file()

    sweep = tmp_path / "sweep.png"
    assert main(["edit", str(faces / "images" / "000001.png"), "--direction", f"{d}:pc01", "--alpha-sweep",
                 "-0.5:0.5:3", "--steps", "2", "--inv-steps", "2", "--out", str(sweep), "-q"]) == 0
    assert Image.open(sweep).size[0] > 3 * 64


def test_direction_file_for_another_model_is_refused(faces, tmp_path, capsys):
    d = tmp_path / "hdae.safetensors"
    assert main(["directions", "pca", str(faces / "images"), "--model", "toyfaces-hdae", "--components", "2",
                 "--out", str(d), "-q"]) == 0
    capsys.readouterr()
    code = main(["edit", str(faces / "images" / "000000.png"), "--direction", f"{d}:pc01", "--steps", "2",
                 "--inv-steps", "2", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "holds directions for model 'toyfaces-hdae'" in err
    code = main(["edit", str(faces / "images" / "000000.png"), "--direction", f"{d}:nope"])
    assert code == 2 and "error:" in capsys.readouterr().err
