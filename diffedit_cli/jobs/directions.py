"""Jobs behind ``diffedit directions``: codes of many inputs -> direction files; the overview grid; edits.

The math is in :mod:`diffedit_cli.editing.directions`; this module reads inputs (images are encoded, latent files
read and checked, failures per file), writes direction files and pictures, and turns ``direction`` /
``orthogonal_to`` texts into edits for :func:`diffedit_cli.jobs.filejobs.edit_files`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

from .. import __version__
from ..editing import directions as dirs
from ..editing.attributes import check_alpha
from ..errors import InputError, InputWarning, opt
from ..io import images as imageio
from ..io.models import DiffAEModel
from ..io.outputs import OutputPlan
from .inputs import batched, collect_inputs
from .options import RunOptions
from .report import Reporter
from .runner import decode_codes, load_codes


def semantic_codes(model: DiffAEModel, specs: Sequence[str], opts: RunOptions, reporter: Reporter,
                   what: str = "encoding") -> torch.Tensor:
    """z_sem (N, D) of every input that can be read (images encoded, latent files checked); failures per file."""
    items, errors = collect_inputs(specs, "any")
    for spec, msg in errors:
        reporter.fail(spec, msg)
    reporter.start(what, len(items), "encoded")
    codes = []
    for chunk in batched(items, opts.batch_size):
        good, z, _ = load_codes(model, chunk, opts, reporter, need_xT=False)
        if good:
            codes.append(z)
            reporter.done += len(good)
        reporter.advance(len(chunk))
    if not codes:
        raise InputError(f"no usable inputs among {', '.join(specs)}")
    return torch.cat(codes)


def _provenance(method: str, **extra) -> dict:
    return {"method": method, "diffedit_version": __version__, **extra}


def plan_output_file(out: Path, specs: Sequence[str], overwrite: bool, also: Sequence[Path] = ()) -> None:
    """Refuse, before any work, an ``out`` that is one of the inputs (``specs`` expanded, ``also``) or that exists."""
    items, _ = collect_inputs(specs, "any")
    OutputPlan([i.path for i in items] + list(also), overwrite).claim(Path(out))


def pca_file(model: DiffAEModel, specs: Sequence[str], out: Path, components: int, opts: RunOptions,
             reporter: Reporter) -> dirs.DirectionSet:
    """PCA of the normalised codes of ``specs``; writes ``out`` with components pc01, pc02, ..."""
    opts.validate(model, decode=False, invert=False)
    plan_output_file(out, specs, opts.overwrite)
    z = semantic_codes(model, specs, opts, reporter)
    mean, std, which = dirs.model_normalisation(model, z)
    vectors, explained = dirs.pca_directions(dirs.normalise(z, mean, std), components)
    names = [f"pc{k + 1:02d}" for k in range(len(vectors))]
    result = dirs.DirectionSet(names, vectors, mean, std, model.model_id, model.fingerprint,
                               _provenance("pca", codes=len(z), normalisation=which), explained)
    dirs.save_directions(out, result, exclusive=not opts.overwrite)
    return result


def check_new_name(name: str, what: str = "name") -> str:
    """A direction name the command line can address: non-empty, without ``: = ,`` (they separate FILE:NAME=ALPHA)."""
    if not name.strip() or any(c in name for c in dirs.NAME_FORBIDDEN):
        raise InputError(f"{what}: '{name}' must be non-empty and hold none of ': = ,' (they separate FILE:NAME=ALPHA)")
    return name


def examples_file(model: DiffAEModel, positive: Sequence[str], negative: Sequence[str], name: str, out: Path,
                  method: str, opts: RunOptions, reporter: Reporter) -> Tuple[dirs.DirectionSet, str]:
    """One direction ``name`` from example folders with / without the attribute; writes ``out``."""
    check_new_name(name, opt("name"))
    opts.validate(model, decode=False, invert=False)
    plan_output_file(out, [*positive, *negative], opts.overwrite)
    z_pos = semantic_codes(model, positive, opts, reporter, "encoding positives")
    z_neg = semantic_codes(model, negative, opts, reporter, "encoding negatives")
    if min(len(z_pos), len(z_neg)) < dirs.FEW_EXAMPLES:
        warnings.warn(f"only {len(z_pos)} positive and {len(z_neg)} negative examples: a direction from fewer than "
                      f"{dirs.FEW_EXAMPLES} per side is mostly noise", InputWarning)
    mean, std, which = dirs.model_normalisation(model, torch.cat([z_pos, z_neg]))
    vector, used = dirs.example_direction(dirs.normalise(z_pos, mean, std), dirs.normalise(z_neg, mean, std), method)
    result = dirs.DirectionSet([name], vector[None], mean, std, model.model_id, model.fingerprint,
                               _provenance(used, positives=len(z_pos), negatives=len(z_neg), normalisation=which))
    dirs.save_directions(out, result, exclusive=not opts.overwrite)
    return result, used


def rename_file(path: Path, renames: Sequence[str]) -> dirs.DirectionSet:
    """Rename directions in place: ``["pc01=Gender", "pc03=Smile"]``."""
    found = dirs.load_directions(path)
    names = list(found.names)
    for spec in renames:
        old, sep, new = spec.partition("=")
        if not sep or not new.strip():
            raise InputError(f"bad rename '{spec}': expected OLD=NEW")
        names[found.index(old.strip(), f"'{path}'")] = new.strip()
    for spec in renames:
        check_new_name(spec.partition("=")[2].strip(), "bad rename")
    if len(set(n.lower() for n in names)) != len(names):
        raise InputError(f"renaming would give two directions the same name: {', '.join(names)}")
    found.names = names
    dirs.save_directions(path, found)
    return found


# -- the overview picture ---------------------------------------------------------------------------------------

def show_grid(model: DiffAEModel, path: Path, specs: Sequence[str], out: Path, alpha: float, columns: int,
              faces: int, opts: RunOptions, reporter: Reporter, names: Optional[Sequence[str]] = None) -> Path:
    """One row per direction: for each of ``faces`` inputs, decodes at ``columns`` strengths in [-alpha, alpha]."""
    check_alpha(alpha, opt("alpha"))
    plan_output_file(out, specs, opts.overwrite, also=[path])
    found = dirs.load_directions(path)
    dirs.check_directions_model(found, model, path)
    opts.validate(model)
    rows = [found.index(n, f"'{path}'") for n in names] if names else list(range(len(found.names)))
    items, errors = collect_inputs(specs, "any")
    for spec, msg in errors:
        reporter.fail(spec, msg)
    good, z, x_T = load_codes(model, items[:faces], opts, reporter)
    if not good:
        raise InputError("no usable input faces for the overview")
    strengths = torch.linspace(-alpha, alpha, columns).tolist()
    reporter.start("decoding directions", len(rows), "rows")
    cells = []
    for row in rows:
        edits = [dirs.apply_edits(z, [dirs.Edit(found.names[row], found.raw(row), found.std, a)]) for a in strengths]
        codes = torch.stack(edits, dim=1).reshape(-1, z.shape[1])  # face-major: face 0's sweep, then face 1's
        xs = x_T.repeat_interleave(columns, dim=0)
        decoded = [decode_codes(model, cz, cx, opts) for cz, cx in zip(codes.split(opts.batch_size), xs.split(opts.batch_size))]
        cells.append(torch.cat(decoded))
        reporter.advance()
        reporter.done += 1
    col_labels = [f"{a:+.2f}" for _ in good for a in strengths]
    grid = imageio.display_grid(torch.cat(cells), columns * len(good), col_labels, [found.names[r] for r in rows])
    imageio.save_image(grid, out, exclusive=not opts.overwrite)
    return out
