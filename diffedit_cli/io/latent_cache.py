"""Encode once, edit many: a content-addressed cache of inverted codes.

An image the model has inverted (z_sem and x_T) is stored under a key made of everything the result depends on:
the exact pixels fed to the network (so an aligned face of a photo is keyed by its crop: the photo, the alignment
and the face all count), the autoencoder's fingerprint, the inversion's steps and spacing, the compute precision
and the device type. A later run that needs the same image inverted the same way (a second edit strength, an
interpolation, a swap) reads the codes instead of running the 50 inversion calls again.

Entries are ordinary latent files (:mod:`diffedit_cli.io.latents`: ``z_sem``, ``x_T`` and their provenance,
written atomically) under ``$DIFFEDIT_CACHE/latents`` (``~/.cache/diffedit/latents``). The cache holds at most
``$DIFFEDIT_LATENT_CACHE_MB`` megabytes (default 2048; 0 turns it off); beyond that the least recently used
entries are removed. A corrupt entry is ignored and replaced.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import DiffeditError
from .latents import LatentCode, load_latent, save_latent
from .pretrained import cache_root

SIZE_ENV = "DIFFEDIT_LATENT_CACHE_MB"
DEFAULT_MB = 2048
KEY_VERSION = "2"  # bump when what a key covers changes


def cache_folder() -> Path:
    return cache_root() / "latents"


def size_limit_mb() -> int:
    """``$DIFFEDIT_LATENT_CACHE_MB`` (a whole number >= 0; 0: no cache), else the default."""
    raw = os.environ.get(SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_MB
    if not raw.isdigit():
        raise DiffeditError(f"${SIZE_ENV} must be a whole number of megabytes (0 turns the cache off), got '{raw}'")
    return int(raw)


@dataclass
class CacheInfo:
    folder: Path
    entries: int
    bytes: int
    limit_bytes: int


class LatentCache:
    """The cache in ``folder``, bounded to ``max_bytes`` (least recently used entries go first)."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self._size: Optional[int] = None  # bytes held, scanned once on the first write
        self.hits = 0
        self.misses = 0

    @classmethod
    def default(cls) -> Optional["LatentCache"]:
        """The user's cache, or None where ``$DIFFEDIT_LATENT_CACHE_MB`` is 0."""
        limit = size_limit_mb()
        return cls(cache_folder(), limit * 2 ** 20) if limit > 0 else None

    @staticmethod
    def key(pixels: torch.Tensor, fingerprint: str, inv_steps: int, spacing: str, precision: str,
            device_type: str, inv_sampler: str = "ddim") -> str:
        """The entry of one image (3, S, S) in [-1, 1], as the network sees it, inverted with these settings."""
        digest = hashlib.sha256()
        digest.update(f"{KEY_VERSION}|{fingerprint}|{inv_sampler}|{inv_steps}|{spacing}|{precision}|{device_type}|"
                      f"{tuple(pixels.shape)}|".encode())
        digest.update(pixels.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """(z_sem (D,), x_T (3, S, S)) of an entry, marked as just used; None when absent or unreadable."""
        path = self.path(key)
        try:
            code = load_latent(path)
        except (DiffeditError, OSError):
            self.misses += 1
            return None
        if code.x_T is None or code.meta.get("cache_key") != key:
            self.misses += 1
            return None
        try:
            os.utime(path)  # least recently *used* goes first
        except OSError:
            pass
        self.hits += 1
        return code.z_sem, code.x_T

    def put(self, key: str, z_sem: torch.Tensor, x_T: torch.Tensor, meta: Dict[str, str]) -> None:
        """Store one entry (atomically), then evict down to the bound. A cache that cannot be written (a read-only
        or full disk) is skipped silently: it only ever saves time."""
        path = self.path(key)
        try:
            save_latent(path, LatentCode(z_sem.detach().float().cpu(), x_T.detach().float().cpu(),
                                         {**meta, "cache_key": key}))
        except (DiffeditError, OSError):
            return
        if self._size is None:
            self._size = sum(p.stat().st_size for p in self._entries())
        else:
            self._size += path.stat().st_size
        if self._size > self.max_bytes:
            self.evict()

    def _entries(self) -> List[Path]:
        return list(self.folder.glob("??/*.safetensors")) if self.folder.is_dir() else []

    def evict(self) -> int:
        """Remove the least recently used entries until the cache is within its bound; returns bytes freed."""
        entries = []
        for p in self._entries():
            try:
                st = p.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        freed = 0
        while entries and total > self.max_bytes:
            _, size, p = entries.pop(0)
            try:
                p.unlink()
            except OSError:
                continue
            total -= size
            freed += size
        self._size = total
        return freed

    def info(self) -> CacheInfo:
        sizes = [p.stat().st_size for p in self._entries()]
        return CacheInfo(self.folder, len(sizes), sum(sizes), self.max_bytes)

    def clear(self) -> CacheInfo:
        """Remove every entry; returns what was removed."""
        removed = self.info()
        for p in self._entries():
            try:
                p.unlink()
            except OSError:
                pass
        self._size = 0
        return removed
