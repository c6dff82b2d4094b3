"""HDAE: shapes and conditioning routes of HDAE(E)/HDAE(U), model-folder round trips, style mixing,
level-restricted edits and interpolation end to end on a tiny randomly initialised HDAE model folder, and a few
training steps of --arch hdae-u with resume."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli import pipeline
from diffedit_cli.sampling import DEFAULT, EVALUATION, OFFICIAL
from diffedit_cli.cli import main
from diffedit_cli.editing.attributes import edit_z_sem
from diffedit_cli.errors import InputError, ModelError
from diffedit_cli.networks.hierarchy import level_mask, level_styles, mix_codes, parse_levels
from diffedit_cli.io.latents import load_latent
from diffedit_cli.io.models import load_model, save_model_folder
from diffedit_cli.networks.autoencoder import DiffAEAutoencoder
from diffedit_cli.networks.classifier import AttributeClassifier, ClassifierConfig
from diffedit_cli.networks.hdae import (HDAEConfig, HierarchicalAutoencoder, autoencoder_config, block_levels,
    build_autoencoder)

# 3 UNet levels (16, 8, 4 px) + middle; 3 encoder levels; 8 values per level -> 24-d code
TINY = dict(image_size=16, model_channels=16, channel_mult=(1, 1, 1), num_res_blocks=1, attention_resolutions=(8,),
            embed_channels=32, enc_out_channels=8, enc_channel_mult=(1, 1, 1), enc_num_res_block=1, dropout=0.0)
FAST = ["--steps", "3", "--inv-steps", "3", "--quiet"]
CLI = DEFAULT.replace(steps=3, precision="fp32")  # what the commands decode with (at --steps 3 --precision fp32)


def tiny(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_autoencoder(autoencoder_config(arch, **TINY)).eval()


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("arch", ["hdae-e", "hdae-u"])
def test_shapes_and_code_layout(arch):
    model = tiny(arch)
    assert isinstance(model, HierarchicalAutoencoder) and model.config.arch == arch
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    z = model.encode(x)
    assert z.shape == (3, 3 * 8) and model.config.style_channels == 24
    levels = model.encode_levels(x)
    assert [tuple(c.shape) for c in levels] == [(3, 8)] * 3
    assert torch.equal(torch.cat(levels, 1), z)
    eps = model(torch.randn(3, 3, 16, 16), torch.tensor([10, 10, 10]), z_sem=z)
    assert eps.shape == (3, 3, 16, 16) and torch.isfinite(eps).all()
    # AdaGN projections read the whole code (E) or one level (U)
    widths = {b.cond_emb_layers[1].in_features for b in model.styled_blocks}
    assert widths == ({24} if arch == "hdae-e" else {8})
    # UNet levels: input path fine -> coarse, middle = coarsest, output path coarse -> fine
    assert model.style_levels == block_levels(model)
    assert model.style_levels[0] == 0 and model.style_levels[-1] == 0 and max(model.style_levels) == 2
    middle = [i for i, (part, _) in enumerate(model.block_resolutions()) if part == "middle"]
    assert [model.style_levels[i] for i in middle] == [2, 2]


def _record(model, x_t, t, z):
    """Per styled ResBlock: (its AdaGN projection, its output) for one forward pass."""
    proj, outs = {}, {}
    hooks = []
    for i, block in enumerate(model.styled_blocks):
        hooks.append(block.cond_emb_layers.register_forward_hook(lambda m, a, o, i=i: proj.__setitem__(i, o.clone())))
        hooks.append(block.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o.clone())))
    model(x_t, t, z_sem=z)
    for h in hooks:
        h.remove()
    return proj, outs


@pytest.mark.parametrize("level", [0, 1, 2])
def test_hdae_u_level_code_reaches_only_its_blocks(level):
    model = tiny("hdae-u")
    z = model.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    z2 = z.clone()
    z2[:, model.config.level_slices()[level]] += 1.0
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([500, 500])
    proj_a, out_a = _record(model, x_t, t, z)
    proj_b, out_b = _record(model, x_t, t, z2)
    changed = {i for i in proj_a if not torch.equal(proj_a[i], proj_b[i])}
    assert changed == {i for i, lv in enumerate(model.style_levels) if lv == level}
    # block outputs: everything before the first block of that level is untouched, that block changes
    first = model.style_levels.index(level)
    for i in range(first):
        assert torch.equal(out_a[i], out_b[i]), i
    assert not torch.allclose(out_a[first], out_b[first])


def test_hdae_e_every_block_sees_every_level():
    model = tiny("hdae-e")
    z = model.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    for level in range(3):
        z2 = z.clone()
        z2[:, model.config.level_slices()[level]] += 1.0
        proj_a, _ = _record(model, torch.randn(2, 3, 16, 16), torch.tensor([5, 5]), z)
        proj_b, _ = _record(model, torch.randn(2, 3, 16, 16), torch.tensor([5, 5]), z2)
        assert all(not torch.equal(proj_a[i], proj_b[i]) for i in proj_a)


def test_encoder_levels_follow_resolutions():
    """HDAE(E): the finest code depends on the finest features only through the down path; the coarsest code is
    Diff-AE's bottom head. HDAE(U): the finest code sees the coarse bottleneck (U path)."""
    for arch in ("hdae-e", "hdae-u"):
        model = tiny(arch)
        enc = model.encoder
        x = torch.rand(2, 3, 16, 16) * 2 - 1
        taps, bottom = enc.features(x)
        assert [t.shape[-1] for t in taps] == [16, 8, 4]
        assert torch.equal(enc.encode_levels(x)[-1], enc.down.out(bottom))
        # perturb the middle block: HDAE(E)'s finest code cannot change, HDAE(U)'s must
        before = enc.encode_levels(x)[0]
        with torch.no_grad():
            enc.down.middle_block[0].in_layers[2].bias += 1.0
        after = enc.encode_levels(x)[0]
        assert torch.equal(before, after) == (arch == "hdae-e")


def test_diffae_route_swaps_block_styles():
    torch.manual_seed(0)
    cfg = autoencoder_config("diffae", **TINY)
    model = build_autoencoder(cfg)
    assert type(model) is DiffAEAutoencoder and "arch" not in cfg.to_dict()  # official layout untouched
    za, zb = torch.randn(2, 8), torch.randn(2, 8)
    styles = level_styles(model.eval(), za, zb, [1])
    base, other = model.project_style(za), model.project_style(zb)
    for s, b, o, lv in zip(styles, base, other, block_levels(model)):
        assert torch.equal(s, o if lv == 1 else b)
    # edit --levels: block route on Diff-AE, coordinate mask on HDAE
    from diffedit_cli.editing.attributes import level_edit_route

    assert level_edit_route(model, [1]) == (None, [1]) and level_edit_route(model, None) == (None, None)
    mask, route = level_edit_route(tiny("hdae-u"), [0, 2])
    assert route is None and mask.tolist() == [True] * 8 + [False] * 8 + [True] * 8


def test_parse_levels():
    assert parse_levels("3-4", 5) == [2, 3] and parse_levels("1,3", 5) == [0, 2] and parse_levels("all", 2) == [0, 1]
    assert parse_levels(None, 3) is None
    for bad in ("0", "6", "4-3", "x", ""):
        with pytest.raises(InputError, match="^levels "):
            parse_levels(bad, 5)


def test_library_takes_levels_as_values():
    from diffedit_cli.networks.hierarchy import check_levels, num_levels
    from diffedit_cli.io.models import load_model

    ae = load_model("toyfaces-hdae", components=()).autoencoder
    n = num_levels(ae)
    assert check_levels([1, 0, 1], ae) == [0, 1] and check_levels(None, ae) is None
    for bad in ([n], [-1], []):
        with pytest.raises(InputError, match="levels"):
            check_levels(bad, ae)


def test_unknown_arch_is_a_clear_error(tmp_path):
    model = tiny("hdae-u")
    save_model_folder(tmp_path / "m", "m", {"autoencoder": model})
    cfg_path = tmp_path / "m" / "autoencoder" / "config.json"
    meta = json.loads(cfg_path.read_text())
    meta["config"]["arch"] = "hdae-x"
    cfg_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="unknown autoencoder arch 'hdae-x'.*did you mean"):
        load_model(str(tmp_path / "m"), components=())
    with pytest.raises(ValueError):
        HDAEConfig(**TINY, arch="diffae")


# -- a tiny HDAE model folder ----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["hdae-u", "hdae-e"])
def hdae_dir(request, tmp_path_factory):
    """Randomly initialised HDAE autoencoder + linear classifier (random directions) saved as a model folder."""
    model = tiny(request.param, seed=1)
    torch.manual_seed(2)
    clf = AttributeClassifier(ClassifierConfig(num_features=24, attributes=["Smiling", "Male"]))
    clf.conds_std.uniform_(0.5, 1.5)
    out = tmp_path_factory.mktemp("hdae") / request.param
    save_model_folder(out, "tiny-hdae", {"autoencoder": model, "classifier": clf})
    return out


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("faces")
    for name in ["a0.png", "a1.png", "b0.png"]:
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")).save(folder / name)
    return folder


def test_model_folder_round_trip(hdae_dir):
    arch = hdae_dir.name
    original = tiny(arch, seed=1)
    loaded = load_model(str(hdae_dir))
    ae = loaded.autoencoder
    assert isinstance(ae, HierarchicalAutoencoder) and ae.config == original.config
    for key, value in original.state_dict().items():
        assert torch.equal(value, ae.state_dict()[key]), key
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(pipeline.encode_semantic(ae, x), pipeline.encode_semantic(original, x))
    assert loaded.classifier.linear.weight.shape == (2, 24)


def _pixels(path):
    return np.array(Image.open(path)).astype(np.int16)


def _u8(img):
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int16)


def test_encode_writes_all_levels_and_style_mix(hdae_dir, faces, tmp_path, capsys):
    model = load_model(str(hdae_dir))
    code, _, err = run(["encode", faces, "--model", hdae_dir, "--inv-steps", "3", "--out", tmp_path / "lat", "--quiet"], capsys)
    assert code == 0, err
    lat = {n: load_latent(tmp_path / "lat" / f"{n}.safetensors") for n in ("a0", "a1", "b0")}
    layout = json.loads(lat["a0"].meta["code_layout"])
    assert layout == {"arch": hdae_dir.name, "levels": 3, "level_channels": 8,
                      "order": "finest first: z_sem[l*D:(l+1)*D] is level l+1"}
    assert lat["a0"].z_sem.shape == (24,)
    code, _, err = run(["decode", tmp_path / "lat" / "a0.safetensors", "--model", hdae_dir, "--out", tmp_path / "rec.png",
                        *FAST], capsys)
    assert code == 0, err
    expected = pipeline.decode(model.autoencoder, lat["a0"].z_sem[None], lat["a0"].x_T[None], CLI)[0]
    assert np.abs(_pixels(tmp_path / "rec.png") - _u8(expected)).max() <= 1

    # 2 A x 1 B grid from latent files, x_T from A: equals decoding A's code with level 3 taken from B
    a_glob = str(tmp_path / "lat" / "a*.safetensors")
    code, out, err = run(["style-mix", a_glob, tmp_path / "lat" / "b0.safetensors", "--levels", "3", "--model", hdae_dir,
                          "--out", tmp_path / "mix", "--json", *FAST], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 2
    grid = Image.open(tmp_path / "mix" / "grid.png")
    assert grid.size == (2 * 256 + 3 * 2, 3 * 256 + 4 * 2)  # (1 + B) columns x (1 + A) rows, 16 px shown at 256
    ae = model.autoencoder
    for name in ("a0", "a1"):
        mixed = mix_codes(ae, lat[name].z_sem[None], lat["b0"].z_sem[None], [2])
        assert torch.equal(mixed[0, :16], lat[name].z_sem[:16]) and torch.equal(mixed[0, 16:], lat["b0"].z_sem[16:])
        expected = pipeline.decode(ae, mixed, lat[name].x_T[None], CLI)[0]
        got = _pixels(tmp_path / "mix" / f"mix_{name}__b0.png")
        assert np.abs(got - _u8(expected)).max() <= 1
        plain = pipeline.decode(ae, lat[name].z_sem[None], lat[name].x_T[None], CLI)[0]
        assert np.abs(got - _u8(plain)).max() > 1  # mixing did change the image
    # images as inputs with random x_T work too; bad levels are one clear line
    code, _, err = run(["style-mix", faces / "a0.png", faces / "b0.png", "--levels", "1-2", "--random-xt",
                        "--model", hdae_dir, "--out", tmp_path / "mix2", *FAST], capsys)
    assert code == 0, err
    assert (tmp_path / "mix2" / "mix_a0__b0.png").is_file() and (tmp_path / "mix2" / "grid.png").is_file()
    code, _, err = run(["style-mix", faces / "a0.png", faces / "b0.png", "--levels", "4", "--model", hdae_dir,
                        "--out", tmp_path / "mix3", *FAST], capsys)
    assert code == 2 and "levels 1..3" in err


def test_level_restricted_edit_and_interpolation(hdae_dir, faces, tmp_path, capsys):
    model = load_model(str(hdae_dir))
    ae, clf = model.autoencoder, model.classifier
    code, _, err = run(["encode", faces / "a0.png", "--model", hdae_dir, "--inv-steps", "3", "--out", tmp_path / "a0.safetensors", "--quiet"], capsys)
    assert code == 0, err
    lat = load_latent(tmp_path / "a0.safetensors")
    z = lat.z_sem[None]
    mask = level_mask(ae, [1])
    # library: only level 2's coordinates move; top-k over the whole code moves exactly k coordinates
    edited = edit_z_sem(z, clf, {0: 0.5}, mask=mask)
    moved = (edited - z).abs()[0] > 1e-6
    assert moved[8:16].all() and not moved[:8].any() and not moved[16:].any()
    assert int(((edit_z_sem(z, clf, {0: 0.5}, topk=5) - z).abs()[0] > 1e-6).sum()) == 5
    assert int(((edit_z_sem(z, clf, {0: 0.5}, topk=3, mask=mask) - z).abs()[0] > 1e-6)[8:16].sum()) == 3
    # CLI: edit --levels 2 --topk 4 on the latent file = decode of the library edit with the stored x_T
    code, _, err = run(["edit", tmp_path / "a0.safetensors", "--model", hdae_dir, "--attr", "smiling", "--alpha", "0.5",
                        "--levels", "2", "--topk", "4", "--out", tmp_path / "e.png", *FAST], capsys)
    assert code == 0, err
    expected = pipeline.decode(ae, edit_z_sem(z, clf, {0: 0.5}, topk=4, mask=mask), lat.x_T[None], CLI)[0]
    assert np.abs(_pixels(tmp_path / "e.png") - _u8(expected)).max() <= 1
    code, _, err = run(["edit", tmp_path / "a0.safetensors", "--model", hdae_dir, "--attr", "smiling", "--levels", "2",
                        "--topk", "9", "--out", tmp_path / "e2.png", *FAST], capsys)
    assert code == 2 and "--topk must be in 1..8" in err

    # interpolate --levels 3: last frame = A with level 3 of B, x_T stays A's
    code, _, err = run(["encode", faces / "b0.png", "--model", hdae_dir, "--inv-steps", "3", "--out", tmp_path / "b0.safetensors", "--quiet"], capsys)
    lat_b = load_latent(tmp_path / "b0.safetensors")
    code, _, err = run(["interpolate", tmp_path / "a0.safetensors", tmp_path / "b0.safetensors", "--levels", "3",
                        "--frames", "3", "--model", hdae_dir, "--out", tmp_path / "ip", *FAST], capsys)
    assert code == 0, err
    last = pipeline.decode(ae, mix_codes(ae, z, lat_b.z_sem[None], [2]), lat.x_T[None], CLI)[0]
    assert np.abs(_pixels(tmp_path / "ip" / "frame_002.png") - _u8(last)).max() <= 1
    first = pipeline.decode(ae, z, lat.x_T[None], CLI)[0]
    assert np.abs(_pixels(tmp_path / "ip" / "frame_000.png") - _u8(first)).max() <= 1


def test_style_mix_on_plain_diffae_routes_blocks(tmp_path, faces, capsys):
    torch.manual_seed(0)
    model = build_autoencoder(autoencoder_config("diffae", **TINY)).eval()
    save_model_folder(tmp_path / "dae", "dae", {"autoencoder": model})
    code, _, err = run(["style-mix", faces / "a0.png", faces / "b0.png", "--levels", "1", "--random-xt", "--seed", "4",
                        "--model", tmp_path / "dae", "--out", tmp_path / "mix", *FAST], capsys)
    assert code == 0, err
    za, zb = model.encode(torch.stack([_load(faces / "a0.png"), _load(faces / "b0.png")]))
    x_T = pipeline.random_x_T([0], 16, 4)
    expected = pipeline.decode_levels(model, za[None], zb[None], [0], x_T, CLI)[0]
    assert np.abs(_pixels(tmp_path / "mix" / "mix_a0__b0.png") - _u8(expected)).max() <= 1
    only_a = pipeline.decode(model, za[None], x_T, CLI)[0]
    only_b = pipeline.decode(model, zb[None], x_T, CLI)[0]
    assert not torch.allclose(expected, only_a) and not torch.allclose(expected, only_b)


def _load(path):
    from diffedit_cli.io.images import load_image

    return load_image(path, 16)


def test_train_hdae_u_resumes_exactly_and_trains_latent_classifier(tmp_path, capsys):
    from diffedit_cli.data.toyfaces import write_dataset
    from diffedit_cli.training.diffae import AutoencoderTrainConfig, load_train_state, train_autoencoder

    faces = tmp_path / "faces"
    write_dataset(faces, 16, seed=3, size=32, masks=False)

    def cfg(run):
        return AutoencoderTrainConfig(data=str(faces / "images"), run=str(run), preset="tiny32", arch="hdae-u", steps=4,
                                      batch_size=4, save_every=2, sample_every=0, precision="fp32", device="cpu",
                                      keep_every=2)

    train_autoencoder(cfg(tmp_path / "straight"))
    train_autoencoder(cfg(tmp_path / "chunked"), stop_after=2)
    train_autoencoder(cfg(tmp_path / "chunked"), resume=True)
    a = load_train_state(tmp_path / "straight" / "train_state" / "autoencoder.pt")
    b = load_train_state(tmp_path / "chunked" / "train_state" / "autoencoder.pt")
    assert a["step"] == b["step"] == 4 and b["config"]["arch"] == "hdae-u"
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], atol=1e-6), key
    run = tmp_path / "chunked"
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["autoencoder_0000002", "autoencoder_0000004"]
    model = load_model(str(run), components=())
    assert isinstance(model.autoencoder, HierarchicalAutoencoder) and model.autoencoder.config.arch == "hdae-u"
    # a run started from it trains (and records) its architecture, whatever the preset and --arch say
    continued = tmp_path / "continued"
    train_autoencoder(AutoencoderTrainConfig(data=str(faces / "images"), run=str(continued), init_from=str(run), steps=1,
                                             batch_size=4, sample_every=0, precision="fp32", device="cpu"), stop_after=0)
    record = json.loads((continued / "autoencoder" / "config.json").read_text())
    assert record["config"]["arch"] == "hdae-u" and record["training"]["arch"] == "hdae-u"
    assert record["training"]["preset"] is None and record["training"]["init_from"] == str(run)
    # latent DDIM and classifier on the concatenated code (2 levels x 32)
    assert main(["train", "latent", "--model", str(run), "--data", str(faces / "images"), "--steps", "2",
                 "--batch-size", "8", "--quiet", "--device", "cpu"]) == 0
    assert main(["train", "classifier", "--model", str(run), "--data", str(faces / "images"), "--labels",
                 str(faces / "list_attr.txt"), "--epochs", "1", "--quiet", "--device", "cpu"]) == 0
    model = load_model(str(run))
    assert model.latent.config.num_channels == 64 and model.classifier.linear.weight.shape[1] == 64
    assert main(["sample", "--n", "2", "--model", str(run), "--steps", "2", "--latent-steps", "2",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    # a bad arch is one clear line
    code, _, err = run_cli(["train", "autoencoder", "--data", faces / "images", "--out", tmp_path / "bad", "--preset",
                            "tiny32", "--arch", "hdae", "--steps", "1", "--quiet", "--device", "cpu"], capsys)
    assert code == 2 and "unknown autoencoder arch 'hdae'" in err


run_cli = run


# -- evaluation plumbing for the comparison ---------------------------------------------------------------------

def test_fidelity_compare_and_curve_rows(hdae_dir, tmp_path):
    from diffedit_cli.data import toyfaces
    from diffedit_cli.evaluation.comparison import compare_models, eval_fidelity, training_curve
    from diffedit_cli.evaluation.benchmarks import edit_region, load_face_params, load_faces, masked_mse, to_unit
    from diffedit_cli.networks.oracle import AttributeOracle, OracleConfig

    data = toyfaces.write_dataset(tmp_path / "held", 2, seed=5, size=16)
    model = load_model(str(hdae_dir))
    torch.manual_seed(0)
    model.extra["oracle"] = AttributeOracle(OracleConfig(image_size=16, channels=(8, 16))).eval()
    # alpha = 0: the fidelity is the reconstruction error outside the attribute's parts, computed directly here
    rows = eval_fidelity(model, data, n=2, alphas=(0.0,), sampling=EVALUATION.replace(steps=2, inv_steps=2))
    assert [r["attribute"] for r in rows] == ["Smiling", "Male", "mean"]
    faces = load_faces(data, 2, 16)
    params = load_face_params(data, faces.files)
    ae = model.autoencoder
    z = pipeline.encode_semantic(ae, faces.images, "fp32")
    rec = pipeline.decode(ae, z, pipeline.invert(ae, faces.images, z, OFFICIAL.replace(inv_steps=2)), OFFICIAL.replace(steps=2))
    keep = torch.stack([~edit_region(p, "Smiling", toyfaces.attributes(p)["Smiling"], 16) for p in params])
    direct = masked_mse(to_unit(faces.images), to_unit(rec), keep).mean().item()
    assert rows[0]["MSE outside"] == pytest.approx(direct, rel=1e-5)

    table = compare_models([model], data, n=2, topks=[4], fidelity_alphas=(-0.5, 0.5), edit_alphas=(0.5,),
                           sampling=EVALUATION.replace(steps=2, inv_steps=2), random_steps=2)
    label = "(HDAE(U))" if hdae_dir.name == "hdae-u" else "(HDAE(E))"
    assert [(r["model"].split(" ")[-1], r["top-k"]) for r in table] == [(label, "-"), (label, "4")]
    assert list(table[0]) == ["model", "top-k", "MSE out", "LPIPS out", "AD", "flip@0.5", "recon MSE inferred",
                              "recon MSE random"]
    assert table[0]["MSE out"] > 0 and table[0]["recon MSE inferred"] == table[1]["recon MSE inferred"]

    # training curve: one row per snapshot with its reconstruction error
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    from diffedit_cli.io.models import save_component

    save_component(ae, run / "snapshots" / "autoencoder_0000010", "autoencoder")
    (run / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (5, 10, 20)))
    curve = training_curve(run, data, n=2, sampling=EVALUATION.replace(steps=2, inv_steps=2), random_steps=2)
    assert [(r["step"], r["train loss"]) for r in curve] == [(10, 0.75)]
    assert curve[0]["recon MSE inferred"] == pytest.approx(mse_of(rec, faces.images), rel=1e-5)


def mse_of(a, b):
    from diffedit_cli.evaluation.benchmarks import mse, to_unit

    return mse(to_unit(a), to_unit(b)).mean().item()


def test_compare_loads_lpips_once(hdae_dir, tmp_path, monkeypatch):
    """eval compare builds LPIPS (and tries a missing AlexNet download) once for all its models and top-k rows."""
    pytest.importorskip("lpips", reason="the [test] extra installs lpips")
    from file_server import FileServer

    from diffedit_cli.data import toyfaces
    from diffedit_cli.evaluation.comparison import compare_models
    from diffedit_cli.networks.oracle import AttributeOracle, OracleConfig

    data = toyfaces.write_dataset(tmp_path / "held", 2, seed=5, size=16)
    model = load_model(str(hdae_dir))
    torch.manual_seed(0)
    model.extra["oracle"] = AttributeOracle(OracleConfig(image_size=16, channels=(8, 16))).eval()
    served = FileServer(tmp_path / "served")  # serves nothing: every download attempt is a 404
    try:
        monkeypatch.delenv("DIFFEDIT_OFFLINE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
        monkeypatch.setenv("DIFFEDIT_LPIPS_ALEXNET_URL", f"{served.url}/alexnet-missing-0123abcd.pth")
        rows = compare_models([model, model], data, n=2, topks=[4], fidelity_alphas=(-0.5, 0.5), edit_alphas=(0.5,),
                              sampling=EVALUATION.replace(steps=2, inv_steps=2), random_steps=2)
    finally:
        served.close()
    # 2 reconstructions + 4 fidelity evals (2 models x 2 top-k rows), one download attempt
    assert served.requests == ["/alexnet-missing-0123abcd.pth"]
    assert len(rows) == 4 and all(row["LPIPS out"] is None for row in rows)
