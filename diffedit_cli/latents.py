"""Latent files: one ``.safetensors`` per image holding z_sem, x_T and metadata.

Tensors: ``z_sem`` (D,) float32 (for HDAE models the whole hierarchical code, (L*D,), finest level first,
layout in the ``code_layout`` metadata JSON: arch, levels, level_channels) and, when inverted, ``x_T`` (3, S, S) float32.
Metadata (all strings in the safetensors header): ``diffedit_latent`` (format
version), ``model_id``, ``model_revision``, ``model_fingerprint`` (sha256 prefix
of the autoencoder weights), ``inv_steps``, ``image_size``, ``source``,
``preprocessing`` and optional ``extra`` JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import torch

from .errors import InputError

LATENT_FORMAT = "1"
LATENT_SUFFIX = ".safetensors"


@dataclass
class LatentCode:
    """z_sem (D,) and optional x_T (3, S, S) of one image, with where they came from."""

    z_sem: torch.Tensor
    x_T: Optional[torch.Tensor]
    meta: Dict[str, str] = field(default_factory=dict)


def latent_metadata(model, inv_steps: Optional[int], source: str, preprocessing: str,
                    extra: Optional[dict] = None) -> Dict[str, str]:
    """Metadata identifying ``model`` (a loaded :class:`~diffedit_cli.models.DiffAEModel`)."""
    from . import __version__

    meta = {
        "diffedit_latent": LATENT_FORMAT,
        "diffedit_version": __version__,
        "model_id": model.model_id,
        "model_revision": model.location.revision or "",
        "model_fingerprint": model.fingerprint,
        "inv_steps": str(inv_steps or ""),
        "image_size": str(model.image_size),
        "source": source,
        "preprocessing": preprocessing,
    }
    from .hierarchy import level_layout

    meta["code_layout"] = json.dumps(level_layout(model.autoencoder), sort_keys=True)
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True)
    return meta


def save_latent(path: Path, code: LatentCode) -> None:
    """Write atomically (temp file in the same folder, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {"z_sem": code.z_sem.detach().float().cpu().contiguous()}
    if code.x_T is not None:
        tensors["x_T"] = code.x_T.detach().float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={k: str(v) for k, v in code.meta.items()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def is_latent_path(path: Path) -> bool:
    return Path(path).suffix.lower() == LATENT_SUFFIX


def load_latent(path: Path) -> LatentCode:
    """Read a latent file; anything else (or a corrupt one) is a one-line InputError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file '{path}' not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            keys = set(fh.keys())
            if "diffedit_latent" not in meta or "z_sem" not in keys:
                raise InputError(f"'{path}' is a safetensors file but not a diffedit latent (no z_sem / metadata)")
            z_sem = fh.get_tensor("z_sem").float()
            x_T = fh.get_tensor("x_T").float() if "x_T" in keys else None
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read latent file '{path}': corrupt or not safetensors ({' '.join(str(err).split())[:120]})") from None
    return LatentCode(z_sem, x_T, meta)


def check_latent_model(code: LatentCode, model, path: Path) -> None:
    """Refuse a latent encoded by a different model (fingerprint of the autoencoder weights)."""
    fingerprint = code.meta.get("model_fingerprint", "")
    if fingerprint != model.fingerprint:
        raise InputError(
            f"'{path}' was encoded with model '{code.meta.get('model_id', '?')}' (weights {fingerprint or '?'}), "
            f"not with '{model.model_id}' (weights {model.fingerprint}); re-encode it or pass --model "
            f"{code.meta.get('model_id', '?')}")
    if code.z_sem.shape[-1] != model.autoencoder.config.style_channels:
        raise InputError(f"'{path}': z_sem has {code.z_sem.shape[-1]} values, the model expects {model.autoencoder.config.style_channels}")
