"""Convert official Diff-AE Lightning checkpoints (``last.ckpt``) to diffedit model folders.

Reading is safe by default: the file is first opened with
``torch.load(weights_only=True)``; files written by official training also hold
Lightning's ``callbacks`` (a dict keyed by a class object) and
``optimizer_states``, which that loader refuses, so they are then read with a
restricted unpickler that rebuilds tensors and plain containers and replaces
every other class or function by an inert stub (nothing from the file is
executed). ``trust_pickle=True`` uses plain ``torch.load`` and executes
whatever the pickle says: only for files you trust.

Weights: ``ema`` (default, ``ema_model.*``; what the official code samples
with) or ``raw`` (``model.*``). The architecture is inferred from key shapes
(image size from the ``x_T`` buffer) or taken from a ``preset``.
"""

from __future__ import annotations

import pickle
import warnings
import re
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import ModelError
from .models import COMPONENTS, INDEX_FILE, load_state_strict, read_json, save_component, write_index
from ..networks.autoencoder import AutoencoderConfig
from ..networks.classifier import CELEBA_ATTRIBUTES, ClassifierConfig
from ..networks.latent_mlp import LatentMLPConfig

# Official templates (templates.py); all use num_heads=1, resblock_updown=True, attention at 16.
_FFHQ128 = dict(image_size=128, model_channels=128, channel_mult=(1, 1, 2, 3, 4), enc_channel_mult=(1, 1, 2, 3, 4, 4),
                num_res_blocks=2, enc_num_res_block=2, attention_resolutions=(16,), embed_channels=512, enc_out_channels=512)
PRESETS: Dict[str, dict] = {
    "ffhq128": _FFHQ128,
    "bedroom128": _FFHQ128,
    "horse128": _FFHQ128,
    "ffhq256": dict(_FFHQ128, image_size=256, channel_mult=(1, 1, 2, 2, 4, 4), enc_channel_mult=(1, 1, 2, 2, 4, 4, 4)),
    "celeba64": dict(_FFHQ128, image_size=64, model_channels=64, channel_mult=(1, 2, 4, 8), enc_channel_mult=(1, 2, 4, 8, 8)),
}
# Latent MLPs of the official *_latent templates: 10 layers (ffhq, celeba) or 20 (bedroom, horse).
_SAFE_TORCH = re.compile(r"^(\w*Storage|Size|device|dtype|float\d*|bfloat16|half|double|int\d*|uint8|bool|long|complex\d*)$")


# -- safe reading ----------------------------------------------------------

class _Stub:
    """Inert stand-in for any class or function the restricted unpickler refuses to import."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):
        return self


class _RestrictedUnpickler(pickle.Unpickler):
    stubbed: List[str] = []

    def find_class(self, module: str, name: str):
        if (module == "torch._utils" and name.startswith("_rebuild_")) or (module == "torch" and _SAFE_TORCH.match(name)) \
                or (module, name) in {("collections", "OrderedDict"), ("torch.storage", "UntypedStorage"),
                                      ("torch.serialization", "_get_layout"), ("_codecs", "encode")}:
            return super().find_class(module, name)
        _RestrictedUnpickler.stubbed.append(f"{module}.{name}")
        return type(f"Stub[{module}.{name}]", (_Stub,), {})


class _RestrictedPickleModule:
    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(fh, **kwargs):
        return _RestrictedUnpickler(fh, **kwargs).load()


def read_checkpoint(path: Path, trust_pickle: bool = False) -> Tuple[dict, List[str]]:
    """Read a Lightning checkpoint without executing code; returns (checkpoint, stubbed globals)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint '{path}' not found")
    try:
        with warnings.catch_warnings():  # torch's note on foreign pickle protocols is noise to a user
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return _read_checkpoint(path, trust_pickle)
    except ModelError:
        raise
    except Exception as err:  # zip / pickle / EOF errors: not a readable checkpoint
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise ModelError(f"cannot read checkpoint '{path}': not a PyTorch checkpoint or corrupt ({reason})") from None


def _read_checkpoint(path: Path, trust_pickle: bool) -> Tuple[dict, List[str]]:
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False), []
    try:
        return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError:
        _RestrictedUnpickler.stubbed = []
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
        return ckpt, sorted(set(_RestrictedUnpickler.stubbed))


# -- architecture inference -------------------------------------------------

def _block_ids(sd: Dict[str, torch.Tensor], prefix: str) -> int:
    ids = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return max(ids) + 1 if ids else 0


def _has(sd, key_prefix: str) -> bool:
    return any(k.startswith(key_prefix) for k in sd)


def infer_autoencoder_config(sd: Dict[str, torch.Tensor], image_size: Optional[int]) -> AutoencoderConfig:
    """Recover an :class:`AutoencoderConfig` from prefix-stripped official keys and their shapes."""
    try:
        model_ch = sd["time_embed.time_embed.0.weight"].shape[1]
        embed_ch = sd["time_embed.time_embed.0.weight"].shape[0]
        enc_out = sd["encoder.out.3.weight"].shape[0]
        n_out = _block_ids(sd, "output_blocks.")
        n_in = _block_ids(sd, "input_blocks.")
        n_enc = _block_ids(sd, "encoder.input_blocks.")
        # an output block whose sub-module j >= 1 is a ResBlock ends a level with upsampling
        up_blocks = [i for i in range(n_out) if any(_has(sd, f"output_blocks.{i}.{j}.in_layers") for j in (1, 2))]
        per_level = (up_blocks[0] + 1) if up_blocks else n_out
        levels = n_out // per_level
        nres = per_level - 1
        if levels * per_level != n_out or n_in != levels * per_level:
            raise ModelError("unexpected block layout")
        mult = [sd[f"input_blocks.{1 + lv * per_level}.0.in_layers.2.weight"].shape[0] // model_ch for lv in range(levels)]
        attn_levels = [lv for lv in range(levels) if _has(sd, f"input_blocks.{1 + lv * per_level}.1.qkv")]
        enc_per_level = per_level if n_enc % per_level == 0 else None
        if enc_per_level is None:
            for cand in range(2, n_enc + 1):
                if n_enc % cand == 0:
                    enc_per_level = cand
                    break
        enc_levels = n_enc // enc_per_level
        enc_mult = [sd[f"encoder.input_blocks.{1 + lv * enc_per_level}.0.in_layers.2.weight"].shape[0] // model_ch
                    for lv in range(enc_levels)]
    except KeyError as err:
        raise ModelError(f"not a Diff-AE autoencoder state dict (missing {err})") from None
    if image_size is None:
        raise ModelError("cannot infer the image size (no x_T buffer); pass --preset or --image-size")
    attn = tuple(image_size // (2 ** lv) for lv in attn_levels)
    return AutoencoderConfig(
        image_size=image_size, model_channels=model_ch, channel_mult=tuple(mult), num_res_blocks=nres,
        attention_resolutions=attn, embed_channels=embed_ch, enc_out_channels=enc_out,
        enc_channel_mult=tuple(enc_mult), enc_num_res_block=enc_per_level - 1,
    )


def infer_latent_config(sd: Dict[str, torch.Tensor]) -> LatentMLPConfig:
    """Recover the latent MLP config from ``latent_net.*`` keys (prefix stripped)."""
    n_layers = _block_ids(sd, "layers.")
    channels = sd["time_embed.0.weight"].shape[0]
    hidden = sd["layers.0.linear.weight"].shape[0]
    skips = tuple(i for i in range(1, n_layers) if sd[f"layers.{i}.linear.weight"].shape[1] == hidden + channels)
    return LatentMLPConfig(
        num_channels=channels, num_hid_channels=hidden, num_layers=n_layers, skip_layers=skips,
        num_time_emb_channels=sd["time_embed.0.weight"].shape[1], num_time_layers=_block_ids(sd, "time_embed.") // 2 + 1,
        use_norm=_has(sd, "layers.0.norm."),
    )


# -- key mapping -----------------------------------------------------------

def split_official_state(state_dict: Dict[str, torch.Tensor], weights: str = "ema") -> Dict[str, Dict[str, torch.Tensor]]:
    """Split an official LitModel / ClsModel state dict into diffedit component state dicts."""
    if weights not in ("ema", "raw"):
        raise ModelError(f"weights must be 'ema' or 'raw', not '{weights}'", param="weights")
    out: Dict[str, Dict[str, torch.Tensor]] = {}
    if "classifier.weight" in state_dict:
        out["classifier"] = {
            "linear.weight": state_dict["classifier.weight"], "linear.bias": state_dict["classifier.bias"],
            "conds_mean": state_dict["conds_mean"], "conds_std": state_dict["conds_std"],
        }
        return out
    prefix = "ema_model." if weights == "ema" else "model."
    if not any(k.startswith(prefix) for k in state_dict):
        raise ModelError(f"no '{prefix}*' weights found: not an official Diff-AE checkpoint")
    auto, latent = {}, {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.startswith("latent_net."):
            sub = name[len("latent_net."):]
            if ".cond_layers.1." in sub:  # official alias of linear_emb (same storage)
                twin = prefix + "latent_net." + sub.replace(".cond_layers.1.", ".linear_emb.")
                if twin not in state_dict:
                    raise ModelError(f"'{key}' has no twin '{twin}': corrupt latent checkpoint")
                if value.device.type != "meta" and not torch.equal(value, state_dict[twin]):
                    raise ModelError(f"'{key}' differs from its alias '{twin}': corrupt latent checkpoint")
                continue
            latent[sub] = value
        else:
            auto[name] = value
    out["autoencoder"] = auto
    if latent:
        if "conds_mean" not in state_dict:
            raise ModelError("latent checkpoint has no conds_mean/conds_std statistics")
        latent["conds_mean"] = state_dict["conds_mean"]
        latent["conds_std"] = state_dict["conds_std"]
        out["latent"] = latent
    return out


def build_components(ckpt: dict, weights: str = "ema", preset: Optional[str] = None,
                     image_size: Optional[int] = None, device: str = "cpu") -> Dict[str, torch.nn.Module]:
    """Official checkpoint dict -> {component name: loaded diffedit module} (strict key/shape match)."""
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ModelError("checkpoint has no state_dict: not a Lightning checkpoint")
    parts = split_official_state(state, weights)
    modules: Dict[str, torch.nn.Module] = {}
    if "autoencoder" in parts:
        sd = parts["autoencoder"]
        if preset is not None:
            if preset not in PRESETS:
                raise ModelError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
            cfg = AutoencoderConfig(**PRESETS[preset])
        else:
            size = image_size or (state["x_T"].shape[-1] if "x_T" in state else None)
            cfg = infer_autoencoder_config(sd, size)
        if image_size is not None:
            cfg = replace(cfg, image_size=image_size)
        modules["autoencoder"] = _instantiate("autoencoder", cfg, sd, device)
    if "latent" in parts:
        modules["latent"] = _instantiate("latent", infer_latent_config(parts["latent"]), parts["latent"], device)
    if "classifier" in parts:
        weight = parts["classifier"]["linear.weight"]
        names = CELEBA_ATTRIBUTES if weight.shape[0] == len(CELEBA_ATTRIBUTES) else [f"attr_{i}" for i in range(weight.shape[0])]
        cfg = ClassifierConfig(num_features=weight.shape[1], attributes=list(names))
        modules["classifier"] = _instantiate("classifier", cfg, parts["classifier"], device)
    return modules


def _instantiate(component: str, cfg, state: Dict[str, torch.Tensor], device: str) -> torch.nn.Module:
    module_cls, _ = COMPONENTS[component]
    with torch.device(device):
        module = module_cls(cfg)
    if device == "meta":
        # shape-only check (used by the tests on the official key listings)
        load_state_strict_meta(module, state)
    else:
        load_state_strict(module, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, component)
    return module.eval()


def load_state_strict_meta(module: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    if own != theirs:
        missing = sorted(set(own) - set(theirs))[:3]
        extra = sorted(set(theirs) - set(own))[:3]
        wrong = [k for k in own if k in theirs and own[k] != theirs[k]][:3]
        raise ModelError(f"state dict does not match: missing {missing}, unexpected {extra}, wrong shape {wrong}")


def convert_checkpoints(paths: List[Path], out_dir: Path, weights: str = "ema", preset: Optional[str] = None,
                        image_size: Optional[int] = None, trust_pickle: bool = False, name: Optional[str] = None,
                        overwrite: bool = False, log=print) -> Dict[str, str]:
    """Convert one or more official checkpoints into (or add them to) the model folder ``out_dir``.

    Returns {component: source checkpoint}. Existing components are only
    replaced with ``overwrite``; the folder is written component by component
    through temp folders, so an interrupted run leaves no half-written component.
    """
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    existing: List[str] = []
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ModelError(f"out '{out_dir}' exists and is not a folder", param="out")
        if (out_dir / INDEX_FILE).is_file():
            existing = list(read_json(out_dir / INDEX_FILE, "model index").get("components", []))
        elif any(out_dir.iterdir()):
            raise ModelError(f"out '{out_dir}' is a non-empty folder that is not a diffedit model", param="out")
    collected: Dict[str, Tuple[torch.nn.Module, str]] = {}
    for path in paths:
        ckpt, stubbed = read_checkpoint(Path(path), trust_pickle)
        if stubbed:
            log(f"{path}: skipped {len(stubbed)} non-tensor objects without executing them ({', '.join(stubbed[:3])}{', ...' if len(stubbed) > 3 else ''})")
        try:
            built = build_components(ckpt, weights, preset, image_size)
        except ModelError as err:
            raise ModelError(f"'{path}': {err}") from None
        for comp, module in built.items():
            if comp in collected:
                first = collected[comp][0].state_dict()
                same = all(torch.equal(first[k], v) for k, v in module.state_dict().items())
                if not same:
                    raise ModelError(f"'{path}' and '{collected[comp][1]}' both hold a different {comp}; convert them separately")
                continue
            collected[comp] = (module, str(path))
    clash = [c for c in collected if c in existing]
    if clash and not overwrite:
        raise ModelError(f"'{out_dir}' already has component(s) {', '.join(clash)}; pass --overwrite to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    for comp, (module, source) in collected.items():
        tmp = Path(tempfile.mkdtemp(prefix=f".{comp}.", dir=out_dir))
        try:
            save_component(module, tmp, comp, extra={"source": {"checkpoint": Path(source).name, "weights": weights}})
            if (out_dir / comp).exists():
                shutil.rmtree(out_dir / comp)
            tmp.rename(out_dir / comp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    components = sorted(set(existing) | set(collected))
    write_index(out_dir, name or out_dir.name, components, {"converted_from": "official Diff-AE checkpoints"})
    return {comp: source for comp, (_, source) in collected.items()}
