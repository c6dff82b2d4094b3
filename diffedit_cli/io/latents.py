"""Latent files: one ``.safetensors`` per image holding z_sem, x_T and metadata.

Tensors: ``z_sem`` (D,) float32 (for HDAE models the whole hierarchical code, (L*D,), finest level first,
layout in the ``code_layout`` metadata JSON: arch, levels, level_channels) and, when inverted, ``x_T`` (3, S, S) float32.
Metadata (all strings in the safetensors header): ``diffedit_latent`` (format
version), ``model_id``, ``model_revision``, ``model_fingerprint`` (sha256 prefix
of the autoencoder weights), ``inv_steps``, ``inv_spacing`` (the inversion's timestep spacing:
uniform or quadratic; absent in files written before it was recorded), ``image_size``, ``source``,
``preprocessing`` and optional ``extra`` JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import torch
from safetensors.torch import load, save

from .. import __version__
from ..errors import InputError, opt, reason
from ..networks.hierarchy import level_layout
from .files import write_bytes

LATENT_FORMAT = "1"
# No encoder or DDIM inversion of a model's own images comes near this; a larger value means a damaged or
# hand-made file that would decode to garbage.
MAX_ABS_VALUE = 1e4
LATENT_SUFFIX = ".safetensors"


@dataclass
class LatentCode:
    """z_sem (D,) and optional x_T (3, S, S) of one image, with where they came from."""

    z_sem: torch.Tensor
    x_T: Optional[torch.Tensor]
    meta: Dict[str, str] = field(default_factory=dict)


def text_name(name: str) -> str:
    """A file name as text that any format can store: bytes that are not UTF-8 (kept by Python as surrogates)
    are written as backslash escapes (``b'\\xff'`` -> ``\\xff``), so the record stays readable and exact."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def latent_metadata(model, inv_steps: Optional[int], source: str, preprocessing: str,
                    extra: Optional[dict] = None, inv_spacing: Optional[str] = None,
                    inv_sampler: Optional[str] = None) -> Dict[str, str]:
    """Metadata identifying ``model`` (a loaded :class:`~diffedit_cli.io.models.DiffAEModel`)."""
    meta = {
        "diffedit_latent": LATENT_FORMAT,
        "diffedit_version": __version__,
        "model_id": model.model_id,
        "model_revision": model.location.revision or "",
        "model_fingerprint": model.fingerprint,
        "inv_steps": str(inv_steps or ""),
        "inv_spacing": str(inv_spacing or "") if inv_steps else "",
        "inv_sampler": str(inv_sampler or "ddim") if inv_steps else "",
        "image_size": str(model.image_size),
        "source": text_name(source),
        "preprocessing": preprocessing,
    }

    meta["code_layout"] = json.dumps(level_layout(model.autoencoder), sort_keys=True)
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True)
    return meta


def save_latent(path: Path, code: LatentCode, exclusive: bool = False) -> None:
    """Write atomically; ``exclusive``: refuse if ``path`` exists (InputError), even if it appeared meanwhile."""
    tensors = {"z_sem": code.z_sem.detach().float().cpu().contiguous()}
    if code.x_T is not None:
        tensors["x_T"] = code.x_T.detach().float().cpu().contiguous()
    data = save(tensors, metadata={k: str(v) for k, v in code.meta.items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, data, exclusive)


def is_latent_path(path: Path) -> bool:
    return Path(path).suffix.lower() == LATENT_SUFFIX


MAX_LATENT_BYTES = 64 << 20  # a 1024 px code is 12.6 MB; anything far larger is not a latent file


def load_latent(path: Path) -> LatentCode:
    """Read a latent file; anything else (or a corrupt one) is a one-line InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file '{path}' not found")
    if path.stat().st_size > MAX_LATENT_BYTES:
        raise InputError(f"'{path}' is {path.stat().st_size / 1e6:.0f} MB: too large for a latent file")
    try:  # read as bytes: the path need not be UTF-8, which safetensors' own file API requires
        data = path.read_bytes()
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        meta = dict(header.get("__metadata__") or {})
        if "diffedit_latent" not in meta or "z_sem" not in header:
            raise InputError(f"'{path}' is a safetensors file but not a diffedit latent (no z_sem / metadata)")
        tensors = load(data)
        z_sem = tensors["z_sem"].float()
        x_T = tensors["x_T"].float() if "x_T" in tensors else None
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read latent file '{path}': corrupt or not safetensors ({reason(err, 120)})") from None
    return LatentCode(z_sem, x_T, meta)


def check_latent_model(code: LatentCode, model, path: Path) -> None:
    """Refuse a latent encoded by a different model (fingerprint of the autoencoder weights), or with bad values."""
    fingerprint = code.meta.get("model_fingerprint", "")
    if fingerprint != model.fingerprint:
        raise InputError(
            f"'{path}' was encoded with model '{code.meta.get('model_id', '?')}' (weights {fingerprint or '?'}), "
            f"not with '{model.model_id}' (weights {model.fingerprint}); re-encode it or pass {opt('model')} "
            f"{code.meta.get('model_id', '?')}")
    check_latent_values(code, model, path)


def check_latent_values(code: LatentCode, model, path: Path) -> None:
    """Refuse wrong shapes and NaN / infinite / absurdly large values before any work is done."""
    width = model.autoencoder.config.style_channels
    if tuple(code.z_sem.shape) != (width,):
        shape = "x".join(map(str, code.z_sem.shape)) or "scalar"
        raise InputError(f"'{path}': z_sem has shape {shape}, the model expects {width} values")
    size = model.image_size
    if code.x_T is not None and tuple(code.x_T.shape) != (3, size, size):
        shape = "x".join(map(str, code.x_T.shape)) or "scalar"
        raise InputError(f"'{path}': x_T has shape {shape}, the model expects 3x{size}x{size}")
    for name, tensor in (("z_sem", code.z_sem), ("x_T", code.x_T)):
        if tensor is None:
            continue
        if torch.isnan(tensor).any():
            raise InputError(f"'{path}': {name} holds NaN values")
        if torch.isinf(tensor).any():
            raise InputError(f"'{path}': {name} holds inf values")
        largest = float(tensor.abs().max()) if tensor.numel() else 0.0
        if not math.isfinite(largest) or largest > MAX_ABS_VALUE:
            raise InputError(f"'{path}': {name} holds values too large for a code of this model "
                             f"(|value| up to {largest:.3g}, limit {MAX_ABS_VALUE:g})")
