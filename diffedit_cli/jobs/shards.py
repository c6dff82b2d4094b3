"""Splitting a folder run across processes: ``shard I/N`` or the environment torchrun / accelerate set.

A run's inputs are split by a stable hash of each input's output name (its path under ``out``), not by position:
adding files to a folder moves no other file to another shard, and every input belongs to exactly one shard (no
padding, no duplicates). Each shard writes its own outputs into the shared ``out`` (outputs are created
exclusively, so shards cannot clash) and, with a manifest, its own manifest file. Re-running the same command with
``skip_existing`` completes a run after a crash, also with another N.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..errors import DiffeditError

Shard = Tuple[int, int]  # (index I, count N), 0 <= I < N
MAX_SHARDS = 100_000


def parse_shard(text: str) -> Shard:
    """``"2/8"`` -> (2, 8): shard 2 of 8 (0-based)."""
    index, sep, count = str(text).partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise DiffeditError(f"shard '{text}': expected I/N, e.g. 0/4 (shard 0 of 4)", param="shard")
    i, n = int(index), int(count)
    if not 1 <= n <= MAX_SHARDS or not 0 <= i < n:
        raise DiffeditError(f"shard '{text}': need 0 <= I < N <= {MAX_SHARDS}", param="shard")
    return i, n


def shard_from_env(environ=None) -> Optional[Shard]:
    """(RANK, WORLD_SIZE) where torchrun or accelerate started this process as one of several, else None."""
    env = os.environ if environ is None else environ
    world, rank = env.get("WORLD_SIZE", "").strip(), env.get("RANK", "").strip()
    if not world or not rank:
        return None
    if not world.isdigit() or not rank.isdigit() or not 0 <= int(rank) < int(world):
        raise DiffeditError(f"RANK={rank!r} WORLD_SIZE={world!r} in the environment: not a process of a run")
    return (int(rank), int(world)) if int(world) > 1 else None


def device_from_env(device: str, environ=None) -> str:
    """``auto`` becomes ``cuda:LOCAL_RANK`` for one of several processes on a machine with GPUs."""
    env = os.environ if environ is None else environ
    local = env.get("LOCAL_RANK", "").strip()
    if device != "auto" or not local.isdigit():
        return device
    import torch

    return f"cuda:{int(local) % torch.cuda.device_count()}" if torch.cuda.is_available() else device


def in_shard(rel: Path, shard: Optional[Shard]) -> bool:
    """Whether the input whose output name is ``rel`` belongs to ``shard`` (always, without one)."""
    if shard is None:
        return True
    digest = hashlib.sha256(os.fsencode(Path(rel).as_posix())).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]


def select(items: Sequence, shard: Optional[Shard]) -> List:
    """The items (anything with a ``rel``) of ``shard``, in their order."""
    return [item for item in items if in_shard(item.rel, shard)]


def shard_path(path: Path, shard: Optional[Shard]) -> Path:
    """``manifest.jsonl`` -> ``manifest.shard-2-of-8.jsonl`` for shard 2 of 8 (unchanged without one)."""
    path = Path(path)
    if shard is None:
        return path
    return path.with_name(f"{path.stem}.shard-{shard[0]}-of-{shard[1]}{path.suffix}")
