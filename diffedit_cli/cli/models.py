"""``diffedit models`` and ``diffedit cache``: the shipped and known models, their provenance, the model cache and
the latent cache."""

from __future__ import annotations

import json

import typer
from typing_extensions import Annotated



def models_cmd(ctx: typer.Context):
    """List the shipped models, the known pretrained ones (cached or not) and other converted models in the cache.

    Examples:

      diffedit models

      diffedit models pull ffhq256      (download + convert now, for offline use)

      diffedit models info ffhq256

      diffedit models rm ffhq256
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..io.catalog import list_models
    from ..io.registry import HDAE_NOTE

    rows = list_models()
    header = ("name", "what", "px", "components", "size", "source")
    table = [header] + [(r.name, r.what, str(r.resolution or "?"), ",".join(r.components), r.size, r.source) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo(f"\n{HDAE_NOTE}.\nAny folder or Hub repo of official Diff-AE weights also works: --model org/name[:NAME].")


def models_info_cmd(name: Annotated[str, typer.Argument(help="A model name (shipped or known), Hub id or folder.")]):
    """Show what a model is and where it comes from: paper, licence, repo, revision, each file's sha256.

    Example: diffedit models info ffhq256
    """
    from ..io.catalog import model_info

    for key, value in model_info(name).items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, indent=2)
        typer.echo(f"{key}: {value}")


def models_pull_cmd(name: Annotated[str, typer.Argument(help="A known model (ffhq256) or Hub id org/name[@revision][:NAME].")]):
    """Download and convert a model now, so that later runs work offline (HF_HUB_OFFLINE=1).

    Example: diffedit models pull ffhq256
    """
    from ..io.catalog import pull

    typer.echo(f"{name}: {pull(name)}")


def models_rm_cmd(name: Annotated[str, typer.Argument(help="A known model or Hub id whose cached files to delete.")]):
    """Delete a model's converted folder and its downloaded files from the caches.

    Example: diffedit models rm ffhq256
    """
    from ..io.catalog import human_size, remove

    typer.echo(f"{name}: removed, {human_size(remove(name))} freed")


def cache_info_cmd():
    """Show the latent cache: where it is, how many inverted images it holds, its size and bound.

    Every command that inverts images (encode, decode of images, edit, interpolate, style-mix, swap, recombine,
    directions show) keeps the codes there, keyed by the exact pixels, the model and the inversion settings, so
    a second run on the same image skips the inversion. Bound: $DIFFEDIT_LATENT_CACHE_MB (default 2048; 0 turns
    it off); the least recently used entries go first. --no-cache on a command bypasses it.

    Example: diffedit cache info
    """
    from ..io.catalog import human_size
    from ..io.latent_cache import LatentCache, cache_folder, size_limit_mb

    cache = LatentCache.default()
    if cache is None:
        typer.echo(f"latent cache: off ($DIFFEDIT_LATENT_CACHE_MB=0); folder {cache_folder()}")
        return
    info = cache.info()
    typer.echo(f"latent cache: {info.folder}\n{info.entries} inverted image{'' if info.entries == 1 else 's'}, {human_size(info.bytes)} of "
               f"{human_size(info.limit_bytes)} ($DIFFEDIT_LATENT_CACHE_MB={size_limit_mb()})")


def cache_clear_cmd():
    """Delete every entry of the latent cache (later runs invert again).

    Example: diffedit cache clear
    """
    from ..io.catalog import human_size
    from ..io.latent_cache import LatentCache, cache_folder

    removed = LatentCache(cache_folder(), 0).clear()
    typer.echo(f"latent cache: {removed.entries} entries removed, {human_size(removed.bytes)} freed")
