"""What models there are: shipped, known pretrained (cached or not), converted sources; pull, info and removal.

Backs ``diffedit models``, ``models info``, ``models pull`` and ``models rm``; usable from Python.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from ..errors import ModelError
from . import pretrained
from .models import INDEX_FILE, resolve_model, shipped_models, split_spec
from .registry import HDAE_NOTE, KNOWN

SHIPPED_WHAT = {
    "toyfaces": "toy Diff-AE on 64 px procedural cartoon faces: offline smoke tests and benchmarks, not photos",
    "toyfaces-hdae": "toy HDAE(U) on the same cartoon faces (diffedit's own; the HDAE paper published no weights)",
}
PHOTO_MODELS = {"ffhq256"}


@dataclass
class ModelRow:
    name: str
    what: str
    resolution: Optional[int]
    components: List[str]
    size: str
    source: str


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _resolution(folder: Path) -> Optional[int]:
    try:
        return int(json.loads((folder / "autoencoder" / "config.json").read_text())["config"]["image_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _index(folder: Path) -> dict:
    try:
        data = json.loads((folder / INDEX_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def converted_folders(repo: Optional[str] = None) -> List[Path]:
    """Converted model folders in the cache (of one Hub repo, or all), newest first."""
    root = pretrained.models_cache()
    slugs = [root / pretrained.hub_slug(repo)] if repo else sorted(root.glob("*")) if root.is_dir() else []
    found = [index.parent for slug in slugs if slug.is_dir() for index in slug.glob(f"*/{INDEX_FILE}")]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def list_models() -> List[ModelRow]:
    """Shipped models, known pretrained models (cached or not), and other converted sources in the cache."""
    rows = []
    for name, folder in shipped_models().items():
        rows.append(ModelRow(name, SHIPPED_WHAT.get(name, "shipped model"), _resolution(folder),
                             _index(folder).get("components", []), human_size(folder_size(folder)),
                             "shipped (weights/), offline"))
    known_repos = set()
    for known in KNOWN.values():
        known_repos.add(pretrained.hub_slug(known.repo))
        cached = converted_folders(known.repo)
        if cached:
            size, components = human_size(folder_size(cached[0])), _index(cached[0]).get("components", [])
            state = "converted, in the cache"
        else:
            size, components, state = known.download, list(known.components), "not downloaded: diffedit models pull " + known.name
        rows.append(ModelRow(known.name, known.what, known.resolution, components, size,
                             f"Hub {known.repo} ({state})"))
    for folder in converted_folders():
        if folder.parent.name in known_repos:
            continue
        source = _index(folder).get("source", {})
        rows.append(ModelRow(str(source.get("location", folder.name)) + (f":{source['selector']}" if source.get("selector") else ""),
                             "official weights converted from a " + str(source.get("kind", "source")),
                             _resolution(folder), _index(folder).get("components", []), human_size(folder_size(folder)),
                             f"cache {folder}"))
    return rows


def model_info(spec: str) -> Dict[str, object]:
    """What is known of a model: its description and, once converted or shipped, its index (provenance included).

    Never downloads: a known model that is not in the cache is described from the registry."""
    base, selector = split_spec(spec)
    name = base.split("@", 1)[0]
    info: Dict[str, object] = {"name": spec}
    if name in KNOWN and not Path(base).expanduser().is_dir():
        known = KNOWN[name]
        info.update(what=known.what, resolution=known.resolution, repo=known.repo, download=known.download,
                    paper=known.paper, license=known.license, published_by=known.published_by)
        cached = converted_folders(known.repo)
        if not cached:
            info["cached"] = f"no: 'diffedit models pull {name}' downloads and converts it for offline use"
            return info
        folder = cached[0]
    elif base in shipped_models() and not selector:
        folder = shipped_models()[base]
        info["what"] = SHIPPED_WHAT.get(base, "shipped model")
    else:
        folder = resolve_model(spec).path if Path(base).expanduser().is_dir() else _cached_only(spec)
    index = _index(folder)
    info.update(folder=str(folder), cached=True, resolution=_resolution(folder), components=index.get("components", []),
                size=human_size(folder_size(folder)))
    for key in ("source", "provenance", "trained_with", "converted_from"):
        if key in index:
            info[key] = index[key]
    if "toyfaces-hdae" == base or "hdae" in base:
        info["note"] = HDAE_NOTE
    return info


def _cached_only(spec: str) -> Path:
    base, _ = split_spec(spec)
    cached = converted_folders(base.split("@", 1)[0])
    if not cached:
        raise ModelError(f"'{spec}' is not in the cache ('diffedit models pull {spec}' downloads and converts it)")
    return cached[0]


def pull(spec: str, log=None) -> Path:
    """Download and convert ``spec`` now, so that later runs work offline; returns the converted folder."""
    return resolve_model(spec, log).path


def remove(spec: str) -> int:
    """Delete the converted folders of ``spec`` (a known name or Hub id) and its files in the Hugging Face cache;
    returns the bytes freed. Shipped models are never removed."""
    base, _ = split_spec(spec)
    name = base.split("@", 1)[0]
    if name in shipped_models() and name not in KNOWN:
        raise ModelError(f"'{name}' is shipped with diffedit, not cached: there is nothing to remove")
    repo = KNOWN[name].repo if name in KNOWN else name
    freed = 0
    slug_dir = pretrained.models_cache() / pretrained.hub_slug(repo)
    if slug_dir.is_dir():
        freed += folder_size(slug_dir)
        shutil.rmtree(slug_dir)
    freed += _remove_hub_download(repo)
    if not freed:
        raise ModelError(f"'{spec}' is not in the cache (nothing to remove)")
    return freed


def _remove_hub_download(repo: str) -> int:
    try:
        cache = scan_cache_dir()
    except (CacheNotFound, OSError):
        return 0
    revisions = [rev.commit_hash for r in cache.repos if r.repo_id == repo and r.repo_type == "model" for rev in r.revisions]
    if not revisions:
        return 0
    strategy = cache.delete_revisions(*revisions)
    strategy.execute()
    return int(strategy.expected_freed_size)
