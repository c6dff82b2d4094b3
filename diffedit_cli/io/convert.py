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
import re
import shutil
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import ModelError, opt, reason
from ..networks.autoencoder import AutoencoderConfig
from ..networks.classifier import CELEBA_ATTRIBUTES, ClassifierConfig
from ..networks.latent_mlp import LatentMLPConfig
from .components import (COMPONENTS, INDEX_FILE, load_state_strict, read_json, read_safetensors, save_component,
                         write_index)
from .outputs import OutputPlan

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
        raise ModelError(f"cannot read checkpoint '{path}': not a PyTorch checkpoint or corrupt ({reason(err)})") from None


def _read_checkpoint(path: Path, trust_pickle: bool) -> Tuple[dict, List[str]]:
    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False), []
    try:
        try:  # memory-mapped: a multi-GB checkpoint is not read into memory twice
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True), []
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True), []  # legacy (non-zip) format
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
        image_size = size_from_attention(attn_levels)
    attn = tuple(image_size // (2 ** lv) for lv in attn_levels)
    return AutoencoderConfig(
        image_size=image_size, model_channels=model_ch, channel_mult=tuple(mult), num_res_blocks=nres,
        attention_resolutions=attn, embed_channels=embed_ch, enc_out_channels=enc_out,
        enc_channel_mult=tuple(enc_mult), enc_num_res_block=enc_per_level - 1,
    )


OFFICIAL_ATTENTION_PX = 16
"""Every official configuration attends at 16 px (one level), so the level holding attention gives the image size
of a state dict that carries no ``x_T`` buffer: 16 * 2**level."""


def size_from_attention(attn_levels: List[int]) -> int:
    """The image size of a network whose only attention level is ``attn_levels[0]`` (official: at 16 px)."""
    if len(attn_levels) != 1:
        raise ModelError(f"cannot infer the image size: no x_T buffer and attention at {len(attn_levels)} levels "
                         f"(official models attend at one, 16 px); give the size ({opt('image_size')}, or MODEL:ffhq256)")
    return OFFICIAL_ATTENTION_PX * 2 ** attn_levels[0]


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


# -- reading any official weight file -----------------------------------------------

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".pkl")
"""Files that may hold official weights: Lightning checkpoints, plain state dicts, safetensors, latent.pkl."""


def weight_files(paths: List[Path]) -> List[Path]:
    """``paths`` with every folder replaced by the weight files under it (sorted, recursive)."""
    files: List[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
            if not found:
                raise ModelError(f"'{path}' holds no weight files ({', '.join(WEIGHT_SUFFIXES)})")
            files.extend(found)
        else:
            files.append(path)
    return files


def read_state(path: Path, trust_pickle: bool = False, log=print) -> Dict[str, torch.Tensor]:
    """The tensors of one official weight file, flat ``{key: tensor}``.

    A Lightning checkpoint gives its ``state_dict``; a plain state dict (``.pt``, ``.pth``, ``.bin``), a
    safetensors file or the latent statistics ``latent.pkl`` (``conds``, ``conds_mean``, ``conds_std``) give
    themselves. Nothing in the file is executed (see :func:`read_checkpoint`): Lightning's callbacks and
    optimizer state are skipped, while a state dict holding anything but tensors is refused.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return read_safetensors(path)
    ckpt, stubbed = read_checkpoint(path, trust_pickle)
    lightning = isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict)
    state = ckpt["state_dict"] if lightning else ckpt
    if not isinstance(state, dict):
        raise ModelError(f"'{path}' holds a {type(state).__name__}, not a state dict of tensors")
    odd = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if odd:
        objects = f"pickled objects ({', '.join(stubbed[:3])})" if stubbed else f"'{odd[0]}' ({type(state[odd[0]]).__name__})"
        raise ModelError(f"'{path}' holds {objects} besides tensors: refused without running them "
                         "(not a plain state dict or checkpoint)")
    if stubbed:
        log(f"{path}: skipped {len(stubbed)} non-tensor objects without executing them "
            f"({', '.join(stubbed[:3])}{', ...' if len(stubbed) > 3 else ''})")
    return state


# -- key mapping -----------------------------------------------------------

AUTOENCODER_KEY = "time_embed.time_embed.0.weight"
LATENT_NET_KEY = "layers.0.linear.weight"
STATS_KEYS = ("conds_mean", "conds_std")


def latent_stats(state: Dict[str, torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
    """``conds_mean`` / ``conds_std`` of ``state`` as (1, D), or None when it has none."""
    if not all(k in state for k in STATS_KEYS):
        return None
    return {k: state[k].reshape(1, -1) for k in STATS_KEYS}


def network_prefix(state: Dict[str, torch.Tensor], weights: str = "ema") -> Optional[str]:
    """Where the networks' keys start: ``ema_model.`` / ``model.`` (Lightning), ``""`` (a plain state dict with
    the official names, EMA-stripped), or None (no autoencoder or latent network in ``state``)."""
    wanted, other = ("ema_model.", "model.") if weights == "ema" else ("model.", "ema_model.")
    if any(k.startswith(wanted) for k in state):
        return wanted
    if any(k.startswith(other) for k in state):
        raise ModelError(f"no '{wanted}*' weights found, only '{other}*' (use {opt('weights')} {'raw' if weights == 'ema' else 'ema'})")
    if AUTOENCODER_KEY in state or LATENT_NET_KEY in state or any(k.startswith("latent_net.") for k in state):
        return ""
    return None


def split_official_state(state_dict: Dict[str, torch.Tensor], weights: str = "ema") -> Dict[str, Dict[str, torch.Tensor]]:
    """Split an official state dict into diffedit component state dicts.

    Handles Lightning's LitModel (``model.*`` / ``ema_model.*``, optional ``latent_net``) and ClsModel
    (``classifier.*``), the same networks saved EMA-stripped (official names without a prefix), and latent
    statistics alone (``conds_mean`` / ``conds_std``: the part ``"stats"``). A classifier or latent network
    without statistics gets none here; :func:`build_components` then takes them from ``stats``.
    """
    if weights not in ("ema", "raw"):
        raise ModelError(f"weights must be 'ema' or 'raw', not '{weights}'", param="weights")
    out: Dict[str, Dict[str, torch.Tensor]] = {}
    stats = latent_stats(state_dict)
    if "classifier.weight" in state_dict:
        out["classifier"] = {"linear.weight": state_dict["classifier.weight"], "linear.bias": state_dict["classifier.bias"]}
        out["classifier"].update(stats or {})
        return out
    prefix = network_prefix(state_dict, weights)
    if prefix is None:
        if stats is not None:
            return {"stats": stats}
        sample = ", ".join(list(state_dict)[:3]) or "none"
        raise ModelError(f"not an official Diff-AE checkpoint: no autoencoder, latent network, classifier or "
                         f"latent statistics among its {len(state_dict)} tensors (e.g. {sample})")
    plain_latent = prefix == "" and LATENT_NET_KEY in state_dict and AUTOENCODER_KEY not in state_dict
    auto, latent = {}, {}
    for key, value in state_dict.items():
        if not key.startswith(prefix) or (prefix == "" and key in ("x_T", "conds", *STATS_KEYS)):
            continue
        name = key[len(prefix):]
        if plain_latent or name.startswith("latent_net."):
            sub = name if plain_latent else name[len("latent_net."):]
            if ".cond_layers.1." in sub:  # official alias of linear_emb (same storage)
                twin = key.replace(".cond_layers.1.", ".linear_emb.")
                if twin not in state_dict:
                    raise ModelError(f"'{key}' has no twin '{twin}': corrupt latent checkpoint")
                if value.device.type != "meta" and not torch.equal(value, state_dict[twin]):
                    raise ModelError(f"'{key}' differs from its alias '{twin}': corrupt latent checkpoint")
                continue
            latent[sub] = value
        else:
            auto[name] = value
    if auto:
        out["autoencoder"] = auto
    if latent:
        latent.update(stats or {})
        out["latent"] = latent
    return out


def build_components(ckpt: dict, weights: str = "ema", preset: Optional[str] = None,
                     image_size: Optional[int] = None, device: str = "cpu",
                     stats: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, torch.nn.Module]:
    """Official checkpoint (or flat state dict) -> {component name: loaded diffedit module}, strict key/shape match.

    The image size: ``image_size``, else the preset's, else the ``x_T`` buffer's, else inferred from the layout
    (attention at 16 px). ``stats``: latent statistics for a classifier / latent network whose file has none.
    """
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) else ckpt
    if not isinstance(state, dict):
        raise ModelError("checkpoint has no state_dict: not a Lightning checkpoint or state dict")
    parts = split_official_state(state, weights)
    size = image_size or (state["x_T"].shape[-1] if "x_T" in state else None)
    return build_parts(parts, preset, size, device, stats)


def build_parts(parts: Dict[str, Dict[str, torch.Tensor]], preset: Optional[str], image_size: Optional[int],
                device: str = "cpu", stats: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, torch.nn.Module]:
    """Instantiate the networks of :func:`split_official_state`'s parts (the ``stats`` part builds none)."""
    modules: Dict[str, torch.nn.Module] = {}
    if "autoencoder" in parts:
        sd = parts["autoencoder"]
        if preset is not None:
            if preset not in PRESETS:
                raise ModelError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
            cfg = AutoencoderConfig(**PRESETS[preset])
            if image_size is not None:
                cfg = replace(cfg, image_size=image_size)
        else:
            cfg = infer_autoencoder_config(sd, image_size)
        modules["autoencoder"] = _instantiate("autoencoder", cfg, sd, device)
    for comp in ("latent", "classifier"):
        if comp not in parts:
            continue
        state = dict(parts[comp])
        if "conds_mean" not in state:
            if stats is None:
                raise ModelError(f"the {comp} has no latent statistics (conds_mean / conds_std): give the file that "
                                 "holds them too (latent.pkl, a *_latent or *_cls checkpoint)")
            state.update(stats)
        if comp == "latent":
            cfg = infer_latent_config(state)
        else:
            weight = state["linear.weight"]
            names = CELEBA_ATTRIBUTES if weight.shape[0] == len(CELEBA_ATTRIBUTES) else [f"attr_{i}" for i in range(weight.shape[0])]
            cfg = ClassifierConfig(num_features=weight.shape[1], attributes=list(names))
        modules[comp] = _instantiate(comp, cfg, state, device)
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
                        overwrite: bool = False, log=print, extra_index: Optional[dict] = None) -> Dict[str, str]:
    """Convert official weight files (or folders of them) into (or add them to) the model folder ``out_dir``.

    Each file is classified by its keys and shapes (:func:`split_official_state`): Lightning checkpoints,
    plain state dicts with the official names (EMA-stripped or prefixed), latent statistics. Returns
    {component: source file}. Existing components are only replaced with ``overwrite``; the folder is written
    component by component through temp folders, so an interrupted run leaves no half-written component.
    """
    out_dir = Path(out_dir)
    OutputPlan(paths).fresh_folder(out_dir, "a converted model (it is no diffedit model folder to add to)",
                                   accepts=lambda folder: (folder / INDEX_FILE).is_file())
    existing: List[str] = []
    if (out_dir / INDEX_FILE).is_file():
        existing = list(read_json(out_dir / INDEX_FILE, "model index").get("components", []))
    files = weight_files(paths)
    split: List[Tuple[Path, Dict[str, Dict[str, torch.Tensor]], Optional[int]]] = []
    for path in files:
        state = read_state(path, trust_pickle, log)
        try:
            parts = split_official_state(state, weights)
        except ModelError as err:
            raise ModelError(f"'{path}': {err}") from None
        split.append((path, parts, state["x_T"].shape[-1] if "x_T" in state else None))
        del state
    own_stats = [p.get(c) for _, p, _ in split for c in ("stats", "classifier", "latent") if c in p]
    stats = next((latent_stats(s) for s in own_stats if latent_stats(s) is not None), None)
    collected: Dict[str, Tuple[torch.nn.Module, str]] = {}
    for path, parts, xt_size in split:
        try:
            built = build_parts(parts, preset, image_size or xt_size, stats=stats)
        except ModelError as err:
            raise ModelError(f"'{path}': {err}") from None
        if "autoencoder" in built and not (image_size or xt_size or preset):
            log(f"{path}: no x_T buffer; image size {built['autoencoder'].config.image_size} inferred from the layout "
                f"(attention at {OFFICIAL_ATTENTION_PX} px, as in every official model)")
        for comp, module in built.items():
            if comp in collected:
                first = collected[comp][0].state_dict()
                same = all(torch.equal(first[k], v) for k, v in module.state_dict().items())
                if not same:
                    raise ModelError(f"'{path}' and '{collected[comp][1]}' both hold a different {comp}; convert them separately")
                continue
            collected[comp] = (module, str(path))
    if not collected:
        raise ModelError(f"no network in {', '.join(map(str, files))}: only latent statistics")
    clash = [c for c in collected if c in existing]
    if clash and not overwrite:
        raise ModelError(f"'{out_dir}' already has component(s) {', '.join(clash)}; pass {opt('overwrite')} to replace them")
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
    write_index(out_dir, name or out_dir.name, components,
                {"converted_from": "official Diff-AE checkpoints", **(extra_index or {})})
    return {comp: source for comp, (_, source) in collected.items()}
