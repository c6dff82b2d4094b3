"""Group-supervised autoencoder (GAE): GROUP(C, 1) sampling, slice swapping, resumable training, swap / recombine.

A tiny model (tiny32 autoencoder, small untrained oracle, GAE trained a few steps on its codes) makes the
end-to-end tests cheap; the tests marked "shipped" run on the default model's GAE when it is installed.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli.data import groups as groups_mod
from diffedit_cli.sampling import OFFICIAL
from diffedit_cli.data import toyfaces
from diffedit_cli.cli import main
from diffedit_cli.errors import DiffeditError, InputError
from diffedit_cli.training.gae import GAETrainConfig, gae_losses, train_gae
from diffedit_cli.data.groups import table_groups, toyface_group
from diffedit_cli.io.models import load_component, load_model, save_model_folder
from diffedit_cli.networks.gae import GAEConfig, GroupAutoencoder, swap_slices
from diffedit_cli.editing.swapping import recombine_codes, swap_codes
from diffedit_cli.cli.edit import parse_part_args

GROUP_NAMES = list(toyfaces.GROUPS)


def _group_values(face, group):
    return {f: getattr(face, f) for f in toyfaces.GROUPS[group].fields}


# -- GROUP(C, 1) sampling --------------------------------------------------------------------------------------

def test_toyface_groups_share_exactly_one_group():
    for index in range(5):
        faces = toyface_group(100, index, GROUP_NAMES)
        assert len(faces) == 1 + len(GROUP_NAMES)
        anchor = faces[0]
        for member, shared in zip(faces[1:], GROUP_NAMES):
            assert _group_values(member, shared) == _group_values(anchor, shared)
            for other in GROUP_NAMES:
                if other != shared:  # continuous parameters: every other group differs
                    assert _group_values(member, other) != _group_values(anchor, other), (index, shared, other)
        assert toyface_group(100, index, GROUP_NAMES) == faces  # deterministic
    assert toyface_group(100, 0, ["hair"])[0] == toyface_group(100, 0, ["hair"])[0]
    with pytest.raises(InputError, match="no parameter group 'hat'"):
        toyface_group(100, 0, ["hat"])


def test_table_groups_match_labels_and_prefer_different_others():
    rng = np.random.default_rng(0)
    names = ["A1", "A2", "B1", "C1", "C2"]
    labels = rng.integers(0, 2, size=(300, len(names))).astype(np.int8)
    spec = {"a": ["A1", "A2"], "b": ["B1"], "c": ["C1", "C2"]}
    rows = table_groups(labels, names, spec, n_groups=50, seed=1)
    assert rows.shape == (50, 4)
    cols = {"a": [0, 1], "b": [2], "c": [3, 4]}
    for group in rows:
        anchor = group[0]
        for member, g in zip(group[1:], spec):
            assert member != anchor
            assert (labels[member, cols[g]] == labels[anchor, cols[g]]).all()
            others = [c for h in spec if h != g for c in cols[h]]
            # with 300 random rows a candidate differing on every other attribute exists and is chosen
            assert (labels[member, others] != labels[anchor, others]).all()
    # an attribute group whose label combination never repeats cannot form groups
    unique = np.array([[0], [1]], dtype=np.int8)
    with pytest.raises(InputError, match="no GROUP"):
        table_groups(unique, ["X"], {"x": ["X"]}, n_groups=3)


# -- network and slice swapping --------------------------------------------------------------------------------

def _small_gae(seed=0):
    torch.manual_seed(seed)
    gae = GroupAutoencoder(GAEConfig(z_sem_dim=12, hidden=16, slices=[("hair", 3), ("mouth", 2), ("background", 4)]))
    gae.z_mean.copy_(torch.randn(12))
    gae.z_std.copy_(torch.rand(12) + 0.5)
    return gae.eval()


def test_swap_slices_replaces_only_the_named_columns():
    gae = _small_gae()
    ranges = gae.slice_ranges()
    assert ranges == {"hair": slice(0, 3), "mouth": slice(3, 5), "background": slice(5, 9)}
    a, b = torch.randn(4, 9), torch.randn(4, 9)
    out = swap_slices(a, b, [ranges["mouth"]])
    assert torch.equal(out[:, 3:5], b[:, 3:5])
    assert torch.equal(out[:, :3], a[:, :3]) and torch.equal(out[:, 5:], a[:, 5:])
    assert torch.equal(swap_slices(a, b[0], [ranges["hair"]])[:, :3], b[0, :3].expand(4, 3))  # one donor for all
    assert not torch.equal(out, a)  # a is not modified in place
    assert torch.equal(swap_slices(a, b, []), a)


def test_gae_codes_normalisation_and_swap_codes():
    gae = _small_gae()
    z_a, z_b = torch.randn(3, 12) * 2 + 1, torch.randn(3, 12)
    with torch.no_grad():
        assert torch.allclose(gae.denormalize(gae.normalize(z_a)), z_a, atol=1e-6)
        assert gae.encode(z_a).shape == (3, 9) and gae(z_a).shape == (3, 12)
        d_a, d_b = gae.encode(z_a), gae.encode(z_b)
        expected = gae.decode(torch.cat([d_a[:, :3], d_b[:, 3:5], d_a[:, 5:]], 1))
    assert torch.allclose(swap_codes(gae, z_a, z_b, ["Mouth"]), expected, atol=1e-6)  # case-insensitive
    # swapping a slice with itself changes nothing beyond the GAE's reconstruction; with residual, nothing
    assert torch.allclose(swap_codes(gae, z_a, z_a, ["hair"], residual=True), z_a, atol=1e-5)
    both = recombine_codes(gae, z_a[0], {"hair": z_b[1], "background": z_b[2]})
    with torch.no_grad():
        manual = gae.decode(torch.cat([d_b[1:2, :3], d_a[0:1, 3:5], d_b[2:3, 5:]], 1))
    assert torch.allclose(both, manual, atol=1e-6)
    with pytest.raises(InputError, match="did you mean hair"):
        gae.resolve_slice("hiar")


def test_losses_are_finite_and_training_lowers_them():
    torch.manual_seed(0)
    gae = GroupAutoencoder(GAEConfig(z_sem_dim=8, hidden=32, slices=[("a", 2), ("b", 2)]))
    # codes built from two independent factors: member j shares factor j with the anchor
    fa, fb = torch.randn(64, 3, 4), torch.randn(64, 3, 4)
    fa[:, 1], fb[:, 2] = fa[:, 0], fb[:, 0]
    codes = torch.cat([fa, fb], -1)
    members = [(1, "a"), (2, "b")]
    gen = torch.Generator().manual_seed(0)
    first = gae_losses(gae, codes, members, gen)
    assert set(first) == {"r", "ss", "ur"} and all(torch.isfinite(v) for v in first.values())
    opt = torch.optim.Adam(gae.parameters(), lr=2e-3)
    for _ in range(150):
        losses = gae_losses(gae, codes, members, gen)
        loss = losses["r"] + losses["ss"] + 0.5 * losses["ur"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = gae_losses(gae, codes, members, torch.Generator().manual_seed(0))
    assert last["r"] < 0.5 * first["r"] and last["ss"] < 0.7 * first["ss"]


def test_part_arguments():
    assert parse_part_args(["--hair", "b.png", "--background=c.png"]) == {"hair": "b.png", "background": "c.png"}
    for bad in (["b.png"], ["--hair"], ["--hair", "a", "--hair", "b"]):
        with pytest.raises(InputError):
            parse_part_args(bad)


# -- tiny model: training with resume, swap and recombine end to end -------------------------------------------

def _tiny_autoencoder_folder(path: Path) -> Path:
    from diffedit_cli.networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder
    from diffedit_cli.networks.oracle import AttributeOracle, OracleConfig
    from diffedit_cli.training.diffae import AUTOENCODER_PRESETS

    torch.manual_seed(0)
    ae = DiffAEAutoencoder(AutoencoderConfig(**AUTOENCODER_PRESETS["tiny32"]))
    oracle = AttributeOracle(OracleConfig(image_size=32, channels=(8, 8)))
    return save_model_folder(path, "tiny", {"autoencoder": ae, "oracle": oracle})


TINY = dict(groups=16, hidden=32, slice_size=4, batch_size=4, lr=1e-3)


@pytest.fixture(scope="module")
def tiny_gae_model(tmp_path_factory):
    folder = _tiny_autoencoder_folder(tmp_path_factory.mktemp("gae") / "tiny")
    train_gae(GAETrainConfig(model=str(folder), steps=6, **TINY))
    return folder


def test_training_resumes_exactly(tiny_gae_model, tmp_path):
    straight = tmp_path / "straight"
    shutil.copytree(tiny_gae_model, straight)
    shutil.rmtree(straight / "gae")
    (straight / "train_state" / "gae.pt").unlink(missing_ok=True)
    chunked = tmp_path / "chunked"
    shutil.copytree(straight, chunked)
    train_gae(GAETrainConfig(model=str(straight), steps=6, save_every=2, **TINY))
    train_gae(GAETrainConfig(model=str(chunked), steps=6, save_every=2, **TINY), stop_after=4)
    state = torch.load(chunked / "train_state" / "gae.pt", weights_only=True)
    assert state["step"] == 4
    with pytest.raises(DiffeditError, match="--resume"):
        train_gae(GAETrainConfig(model=str(chunked), steps=6, **TINY))
    # the CLI continues the run; the cached group codes are reused
    code = main(["train", "gae", "--model", str(chunked), "--steps", "6", "--resume", "--quiet"])
    assert code == 0
    a = load_component(straight / "gae", "gae")
    b = load_component(chunked / "gae", "gae")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    meta = json.loads((chunked / "gae" / "config.json").read_text())
    assert meta["training"]["steps_done"] == 6 and meta["training"]["lr"] == TINY["lr"]
    assert "gae" in json.loads((chunked / "model_index.json").read_text())["components"]
    # the quiet runs left a record: one JSON line per 10 steps and the last step of each invocation
    logged = [json.loads(line)["step"] for line in (chunked / "train_log_gae.jsonl").read_text().splitlines()]
    assert logged == [4, 6]


def _face_png(path: Path, seed: int, size: int = 32) -> str:
    Image.fromarray(toyfaces.render(toyfaces.sample_face(seed), size)[0]).save(path)
    return str(path)


def test_swap_and_recombine_cli(tiny_gae_model, tmp_path, capsys):
    model = str(tiny_gae_model)
    a, b, c = (_face_png(tmp_path / f"{n}.png", s) for n, s in (("a", 1), ("b", 2), ("c", 3)))
    fast = ["--model", model, "--steps", "2", "--inv-steps", "2", "--quiet"]
    assert main(["swap", a, b, "--attr", "hair", "--compare", "--out", str(tmp_path / "s.png"), "--json"] + fast) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["status"] == "ok" and line["slices"] == ["hair"]
    assert Image.open(tmp_path / "s.png").size[0] > 3 * 32  # A | B | result
    # unknown slice: one line, suggestion, exit 2; existing output refused
    assert main(["swap", a, b, "--attr", "hari", "--out", str(tmp_path / "x.png")] + fast) == 2
    assert "did you mean hair" in capsys.readouterr().err
    assert main(["swap", a, b, "--attr", "hair", "--out", str(tmp_path / "s.png")] + fast) == 1
    # swapping A's slice with its own (residual) reproduces the plain reconstruction of A
    assert main(["swap", a, a, "--attr", "mouth", "--residual", "--out", str(tmp_path / "self.png")] + fast) == 0
    assert main(["decode", a, "--out", str(tmp_path / "rec.png")] + fast) == 0
    diff = np.abs(np.asarray(Image.open(tmp_path / "self.png"), dtype=int) - np.asarray(Image.open(tmp_path / "rec.png"), dtype=int))
    assert diff.max() <= 1
    # latent files work as inputs (x_T from the file); recombine with --SLICE FILE options
    assert main(["encode", a, "--out", str(tmp_path / "a.safetensors")] + fast[:-5] + ["--inv-steps", "2", "--quiet"]) == 0
    out = tmp_path / "mix.png"
    assert main(["recombine", "--base", str(tmp_path / "a.safetensors"), "--hair", b, f"--background={c}",
                 "--compare", "--out", str(out), "--json"] + fast) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["parts"] == {"hair": b, "background": c} and line["x_T"] == "base"
    assert Image.open(out).size[0] > 4 * 32  # base | hair | background | result
    assert main(["recombine", "--base", a, "--backgroud", c, "--out", str(tmp_path / "y.png")] + fast) == 2
    assert "did you mean background" in capsys.readouterr().err
    assert main(["recombine", "--base", a, "--hair", str(tmp_path / "missing.png"), "--out", str(tmp_path / "z.png")] + fast) == 2
    assert main(["recombine", "--base", a, "--mouth", b, "--random-xt", "--out", str(tmp_path / "r.png")] + fast) == 0
    assert Image.open(tmp_path / "r.png").size == (32, 32)


def test_eval_gae_runs_on_tiny_model(tiny_gae_model, capsys):
    code = main(["eval", "gae", "--model", str(tiny_gae_model), "--probe-n", "20", "--n", "2", "--steps", "2",
                 "--inv-steps", "2", "--json", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    matrix = result["perplexity"]
    assert matrix["rows"] == ["identity", "hair", "mouth", "eyes", "accessories", "background"]
    for key in ("z_dis", "z_sem"):
        for row in matrix["rows"]:
            assert set(matrix[key][row]) == set(GROUP_NAMES)
            assert all(0.0 <= v <= 1.0 for v in matrix[key][row].values())
    assert [r["slice"] for r in result["swap"]] == GROUP_NAMES
    assert result["swap"][5]["success"] is None  # background has no oracle attribute
    assert 0.0 <= result["summary"]["preserved"] <= 1.0


def test_model_without_gae_is_one_line(tmp_path, capsys):
    folder = _tiny_autoencoder_folder(tmp_path / "nogae")
    a = _face_png(tmp_path / "a.png", 1)
    assert main(["swap", a, a, "--attr", "hair", "--model", str(folder), "--quiet"]) == 2
    assert "has no gae component" in capsys.readouterr().err


# -- the shipped model's GAE -----------------------------------------------------------------------------------

def _shipped_gae():
    from diffedit_cli.errors import ModelError

    try:
        model = load_model(None, components=("gae", "oracle"))
    except ModelError as err:
        pytest.skip(f"default model not installed: {err}")
    if "gae" not in model.extra:
        pytest.skip("the default model has no GAE component yet")
    return model


def _pairs_differing_in(group: str, count: int, seed: int = 4321):
    """The first ``count`` pairs (A, B) of faces face_seed(seed, .) whose ``group`` attributes differ."""
    attrs = toyfaces.GROUPS[group].attributes
    pairs, i = [], 0
    while len(pairs) < count:
        a, b = (toyfaces.sample_face(toyfaces.face_seed(seed, 2 * i + k)) for k in (0, 1))
        if any(toyfaces.attributes(a)[n] != toyfaces.attributes(b)[n] for n in attrs):
            pairs.append((a, b))
        i += 1
    return pairs


@pytest.mark.parametrize("group", ["hair", "accessories"])
def test_shipped_gae_swaps_a_group(group):
    """On the default model: B's group shows in the swap (oracle), A's other attributes stay (>= 3 of 4 pairs)."""
    from diffedit_cli import pipeline
    from diffedit_cli.data.groups import render_faces
    from diffedit_cli.io.images import to_model_range

    model = _shipped_gae()
    gae, oracle = model.component("gae"), model.component("oracle")
    pairs = _pairs_differing_in(group, 4)
    size = model.image_size
    a = to_model_range(render_faces([p[0] for p in pairs], size))
    b = to_model_range(render_faces([p[1] for p in pairs], size))
    z_a, z_b = pipeline.encode_semantic(model.autoencoder, a, "fp32"), pipeline.encode_semantic(model.autoencoder, b, "fp32")
    x_T = pipeline.invert(model.autoencoder, a, z_a, OFFICIAL.replace(inv_steps=20))
    images = pipeline.decode(model.autoencoder, swap_codes(gae, z_a, z_b, [group]), x_T, OFFICIAL.replace(steps=20))
    seen = oracle.predict(images)
    names = oracle.attributes
    target = torch.tensor([[toyfaces.attributes(toyfaces.share_group(p[0], p[1], group))[n] for n in names]
                           for p in pairs])
    own = [k for k, n in enumerate(names) if n in toyfaces.GROUPS[group].attributes]
    other = [k for k in range(len(names)) if k not in own]
    assert int((seen[:, own] == target[:, own]).all(1).sum()) >= 3
    assert float((seen[:, other] == target[:, other]).float().mean()) >= 0.8


def test_shipped_gae_recombine_cli(tmp_path):
    model = _shipped_gae()
    size = model.image_size
    a, b, c = (_face_png(tmp_path / f"{n}.png", s, size) for n, s in (("a", 11), ("b", 12), ("c", 13)))
    out = tmp_path / "mix.png"
    assert main(["recombine", "--base", a, "--hair", b, "--background", c, "--steps", "5", "--inv-steps", "5",
                 "--compare", "--out", str(out), "--quiet"]) == 0
    width, height = Image.open(out).size  # base | hair | background | result, shown at >= 256 px, labelled on top
    tile = size * -(-256 // size)
    assert width == 4 * tile + 10 and tile + 4 + 10 < height < tile + 4 + 100


# -- joint fine-tuning (DiffuseGAE eq. 12) -------------------------------------------------------------------------

JOINT = dict(groups=8, batch_size=2, lr=1e-4)


def test_joint_losses_couple_encoder_unet_and_gae(tiny_gae_model):
    from diffedit_cli import diffusion
    from diffedit_cli.training.gae_joint import JointTrainConfig, GroupImages, joint_losses

    ae = load_component(tiny_gae_model / "autoencoder", "autoencoder").train().requires_grad_(True)
    gae = load_component(tiny_gae_model / "gae", "gae").train().requires_grad_(True)
    data = GroupImages(JointTrainConfig(model=str(tiny_gae_model), out="unused", **JOINT), gae.slice_names, 32)
    images = data.batch(torch.tensor([0, 3]))
    assert images.shape == (2, 1 + len(data.names), 3, 32, 32) and images.dtype == torch.uint8
    # member j of a group shares group names[j - 1] with the anchor, as in GAE training
    faces = groups_mod.toyface_group(data.seed, 3, data.names)
    assert torch.equal(images[1], groups_mod.render_faces(faces, 32))
    betas = diffusion.make_betas(ae.config.beta_schedule, ae.config.diffusion_steps)
    losses = joint_losses(ae, gae, images, groups_mod.group_spec_for(gae.slice_names, data.names),
                          torch.cumprod(1 - betas, 0).float(), torch.Generator().manual_seed(0), 0.5, 0.5)
    assert set(losses) >= {"simple", "dis", "r", "ss", "ur"} and all(torch.isfinite(v) for v in losses.values())
    # the denoising loss alone reaches the encoder *through* the GAE, and the GAE itself
    losses["simple"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ae.encoder.parameters())
    assert all(p.grad is not None for p in gae.parameters())


def test_joint_fine_tuning_writes_a_new_folder_and_resumes_exactly(tiny_gae_model, tmp_path, capsys):
    from diffedit_cli.training.gae_joint import JointTrainConfig, finetune_joint

    source_hash = (tiny_gae_model / "autoencoder" / "model.safetensors").read_bytes()
    straight, chunked = tmp_path / "straight", tmp_path / "chunked"
    finetune_joint(JointTrainConfig(model=str(tiny_gae_model), out=str(straight), steps=4, save_every=2, **JOINT))
    finetune_joint(JointTrainConfig(model=str(tiny_gae_model), out=str(chunked), steps=4, save_every=2, **JOINT),
                   stop_after=2)
    assert torch.load(chunked / "train_state" / "joint.pt", weights_only=True)["step"] == 2
    # a run interrupted before its first checkpoint resumes from step 0 (the folder is taken at once)
    early = tmp_path / "early"
    finetune_joint(JointTrainConfig(model=str(tiny_gae_model), out=str(early), steps=4, save_every=3, **JOINT),
                   stop_after=1)
    assert torch.load(early / "train_state" / "joint.pt", weights_only=True)["step"] == 1
    code = main(["train", "gae-joint", "--model", str(tiny_gae_model), "--out", str(chunked), "--steps", "4", "--resume",
                 "--quiet"])
    assert code == 0
    for component in ("autoencoder", "gae"):
        a, b = load_component(straight / component, component), load_component(chunked / component, component)
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), (component, key)
    before = load_component(tiny_gae_model / "autoencoder", "autoencoder").state_dict()
    after = load_component(straight / "autoencoder", "autoencoder").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the autoencoder was fine-tuned
    assert (tiny_gae_model / "autoencoder" / "model.safetensors").read_bytes() == source_hash  # source untouched
    index = json.loads((straight / "model_index.json").read_text())
    assert set(index["components"]) == {"autoencoder", "gae", "oracle"}
    meta = json.loads((straight / "gae" / "config.json").read_text())
    assert meta["training"]["steps_done"] == 4 and meta["training"]["gamma"] == 1.0
    logged = [json.loads(line) for line in (chunked / "train_log_joint.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [2, 4] and all({"simple", "dis", "time"} <= set(row) for row in logged)
    # the result is a model folder the swap command uses
    a, b = _face_png(tmp_path / "a.png", 1), _face_png(tmp_path / "b.png", 2)
    code = main(["swap", a, b, "--attr", "hair", "--model", str(straight), "--steps", "2", "--inv-steps", "2",
                 "--out", str(tmp_path / "swapped.png"), "--quiet"])
    assert code == 0 and (tmp_path / "swapped.png").is_file()
    # refusals: one line each
    capsys.readouterr()
    assert main(["train", "gae-joint", "--model", str(tiny_gae_model), "--out", str(straight), "--quiet"]) != 0
    assert "not empty" in capsys.readouterr().err
    no_gae = _tiny_autoencoder_folder(tmp_path / "no_gae")
    assert main(["train", "gae-joint", "--model", str(no_gae), "--out", str(tmp_path / "x"), "--quiet"]) != 0
    assert "no trained GAE" in capsys.readouterr().err


def test_joint_group_images_from_a_labelled_folder(tmp_path):
    """Real-dataset groups (table matching) index the images in load order, also in nested folders."""
    from diffedit_cli.training.gae_joint import GroupImages, JointTrainConfig
    from diffedit_cli.training.diffae import image_files

    out = toyfaces.write_dataset(tmp_path / "set", 60, seed=3, size=32, masks=False)
    table = next(out.rglob("list_attr*.txt"))
    cfg = JointTrainConfig(model="unused", out="unused", data=str(out), labels=str(table), groups=6, group_seed=1)
    data = GroupImages(cfg, ["hair", "mouth", "eyes"], 32)
    names, label_files, labels = toyfaces.read_attr_table(table)
    label_of = {Path(f).name: labels[i] for i, f in enumerate(label_files)}
    files = image_files(out)
    groups_attrs = groups_mod.default_group_attributes(names)
    batch = data.batch(torch.arange(data.count))
    for g, row in enumerate(data.rows.tolist()):
        anchor = label_of[files[row[0]].name]
        for j, group in enumerate(data.names, start=1):
            cols = [names.index(a) for a in groups_attrs[group]]
            assert np.array_equal(label_of[files[row[j]].name][cols], anchor[cols])
        for j, index in enumerate(row):
            pixels = torch.from_numpy(np.array(Image.open(files[index]).convert("RGB"))).permute(2, 0, 1)
            assert torch.equal(batch[g, j], pixels)
