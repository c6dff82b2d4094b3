"""Every official checkpoint layout (keys + shapes) converts and loads with strict matching."""

import json

import pytest
import torch

from diffedit_cli.io.convert import PRESETS, build_components

CASES = ["ffhq256_autoenc", "ffhq128_autoenc_130M", "ffhq128_autoenc_72M", "bedroom128_autoenc", "horse128_autoenc",
         "celeba64d2c_autoenc", "ffhq128_autoenc_latent", "ffhq256_autoenc_latent", "bedroom128_autoenc_latent",
         "horse128_autoenc_latent", "celeba64d2c_autoenc_latent", "ffhq128_autoenc_cls", "ffhq256_autoenc_cls"]
PRESET_OF = {"ffhq256": "ffhq256", "ffhq128": "ffhq128", "bedroom128": "bedroom128", "horse128": "horse128",
             "celeba64d2c": "celeba64"}


def listing(reference, name):
    data = json.loads((reference / "official_shapes" / f"{name}.json").read_text())
    state = {e["key"]: torch.empty(e["shape"], device="meta") for e in data["state_dict"]}
    return data, state


@pytest.mark.parametrize("name", CASES)
def test_official_layout_loads_strictly(reference, name):
    data, state = listing(reference, name)
    assert len(state) == data["num_state_dict_keys"]
    modules = build_components({"state_dict": state}, device="meta")  # raises on any key/shape mismatch
    mc = data["model_config"]
    if name.endswith("_cls"):
        assert list(modules) == ["classifier"]
        assert modules["classifier"].linear.weight.shape == (40, 512)
        return
    ae = modules["autoencoder"]
    cfg = ae.config
    assert (cfg.image_size, cfg.model_channels, list(cfg.channel_mult), cfg.num_res_blocks,
            list(cfg.attention_resolutions), cfg.embed_channels, cfg.enc_out_channels, list(cfg.enc_channel_mult),
            cfg.enc_num_res_block) == (mc["image_size"], mc["model_channels"], mc["channel_mult"], mc["num_res_blocks"],
                                       mc["attention_resolutions"], mc["embed_channels"], mc["enc_out_channels"],
                                       mc["enc_channel_mult"], mc["enc_num_res_block"])
    n_params = sum(p.numel() for m in modules.values() for p in m.parameters())
    if "latent" in modules:
        lc = mc["latent_net_conf"]
        lat = modules["latent"].config
        assert (lat.num_layers, list(lat.skip_layers), lat.num_hid_channels, lat.num_channels) == (
            lc["num_layers"], lc["skip_layers"], lc["num_hid_channels"], lc["num_channels"])
    assert n_params == data["num_parameters_model"]
    # the preset gives the same architecture as the inference
    preset = PRESET_OF[name.split("_")[0]]
    by_preset = build_components({"state_dict": state}, preset=preset, device="meta")["autoencoder"].config
    assert by_preset == cfg


def test_wrong_layout_is_refused(reference):
    from diffedit_cli.errors import ModelError

    _, state = listing(reference, "ffhq128_autoenc_130M")
    with pytest.raises(ModelError, match="does not match"):
        build_components({"state_dict": state}, preset="ffhq256", device="meta")


@pytest.mark.parametrize("name", [c for c in CASES if not c.endswith("_cls")])
def test_ema_stripped_state_dicts_give_the_image_size_from_the_layout(reference, name):
    """Without the x_T buffer (a state dict as others publish it: EMA only, prefix stripped) the image size comes
    from the level that holds attention (16 px in every official model)."""
    data, state = listing(reference, name)
    stripped = {k[len("ema_model."):]: v for k, v in state.items() if k.startswith("ema_model.")}
    stripped.update({k: v for k, v in state.items() if k in ("conds_mean", "conds_std")})  # a latent's statistics
    modules = build_components(stripped, device="meta")
    assert modules["autoencoder"].config.image_size == data["model_config"]["image_size"]
    assert ("latent" in modules) == name.endswith("_latent")
