"""GROUP(C, 1) training data for the group-supervised autoencoder (DiffuseGAE section 3.3).

A group is an anchor sample C plus one member per attribute group g that shares exactly group g with C (and,
as far as the data allows, nothing else). Two sources:

* generated toy faces (:func:`toyface_group`): member g is a fresh random face re-rendered with C's parameters
  of group g (:func:`toyfaces.share_group`), so it shares group g exactly and every other group only by
  chance (the parameters are continuous);
* a real dataset with an attribute table in the CelebA annotation format (:func:`table_groups`): member g is an
  image whose labels on g's attributes equal C's, chosen among candidates to differ from C on as many other
  attributes as possible.

Group codes are z_sem of the group's images: a float32 tensor (G, 1 + M, D), index 0 the anchor and index j
the member sharing ``groups[j - 1]``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputError, opt
from . import toyfaces

Progress = Optional[Callable[[int, int], None]]


@dataclass
class GroupCodes:
    """codes (G, 1 + M, D) float32: anchor z_sem then one member per name in ``groups`` (M names)."""

    codes: torch.Tensor
    groups: List[str]


# -- generated faces ---------------------------------------------------------------------------------------------

def toyface_group(seed: int, index: int, groups: Sequence[str]) -> List[toyfaces.FaceParams]:
    """Faces of group ``index``: [anchor, member sharing groups[0] with it, ...] (1 + M faces).

    Face k of the group is ``sample_face(face_seed(seed, index * (1 + M) + k))``; member j then takes the
    anchor's parameters of ``groups[j - 1]``.
    """
    for name in groups:
        if name not in toyfaces.GROUPS:
            raise InputError(f"toy faces have no parameter group '{name}' (groups: {', '.join(toyfaces.GROUPS)})")
    base = index * (1 + len(groups))
    anchor = toyfaces.sample_face(toyfaces.face_seed(seed, base))
    members = [toyfaces.share_group(toyfaces.sample_face(toyfaces.face_seed(seed, base + 1 + j)), anchor, name)
               for j, name in enumerate(groups)]
    return [anchor] + members


def render_faces(faces: Sequence[toyfaces.FaceParams], size: int) -> torch.Tensor:
    """uint8 (N, 3, size, size) renders of ``faces``."""
    out = torch.empty(len(faces), 3, size, size, dtype=torch.uint8)
    for i, face in enumerate(faces):
        out[i] = torch.from_numpy(toyfaces.render(face, size)[0]).permute(2, 0, 1)
    return out


# -- attribute tables --------------------------------------------------------------------------------------------

def default_group_attributes(names: Sequence[str]) -> Dict[str, List[str]]:
    """The toy-face attribute groups (:data:`toyfaces.GROUPS`) restricted to the attributes in ``names``."""
    present = set(names)
    out = {group: [a for a in spec.attributes if a in present] for group, spec in toyfaces.GROUPS.items()}
    return {group: attrs for group, attrs in out.items() if attrs}


def parse_group_attributes(spec: str, names: Sequence[str]) -> Dict[str, List[str]]:
    """``"hair=Bangs,Black_Hair;mouth=Smiling"`` -> {group: [attribute, ...]}; names checked against ``names``."""
    out: Dict[str, List[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        group, eq, attrs = part.partition("=")
        if not eq or not group.strip() or not attrs.strip():
            raise InputError(f"group_attrs '{part}': expected GROUP=ATTR,ATTR;GROUP=ATTR", param="group_attrs")
        chosen = []
        for attr in filter(None, (a.strip() for a in attrs.split(","))):
            if attr not in names:
                close = difflib.get_close_matches(attr, list(names), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise InputError(f"attribute '{attr}' is not in the attribute table{hint}")
            chosen.append(attr)
        out[group.strip()] = chosen
    if not out:
        raise InputError("group_attrs names no group", param="group_attrs")
    return out


def table_groups(labels: np.ndarray, names: Sequence[str], group_attributes: Dict[str, List[str]], n_groups: int,
                 seed: int = 0, candidates: int = 256) -> np.ndarray:
    """GROUP(C, 1) from labels (n, K) in {0, 1}: row indices (G, 1 + M), member j sharing group j's labels.

    For each random anchor row and each group, the member is drawn among rows with the same labels on that
    group's attributes (the anchor itself excluded), taking, of up to ``candidates`` random such rows, one that
    differs from the anchor on the most attributes of the other groups. Anchors with no match for some group
    are skipped; an InputError if no anchor has all matches.
    """
    labels = np.asarray(labels)
    column = {name: k for k, name in enumerate(names)}
    group_cols = [[column[a] for a in attrs] for attrs in group_attributes.values()]
    rng = np.random.default_rng(seed)
    keys = []  # per group: the label combination of every row as one integer
    for cols in group_cols:
        weights = (1 << np.arange(len(cols))).astype(np.int64)
        keys.append(labels[:, cols].astype(np.int64) @ weights)
    by_key = [{} for _ in group_cols]
    for g, key in enumerate(keys):
        for value in np.unique(key):
            by_key[g][int(value)] = np.flatnonzero(key == value)
    rows = []
    tries = 0
    while len(rows) < n_groups and tries < 20 * n_groups:
        tries += 1
        anchor = int(rng.integers(len(labels)))
        group = [anchor]
        for g, cols in enumerate(group_cols):
            pool = by_key[g][int(keys[g][anchor])]
            pool = pool[pool != anchor]
            if len(pool) == 0:
                break
            pick = rng.choice(pool, size=min(candidates, len(pool)), replace=False)
            others = [c for h, cs in enumerate(group_cols) if h != g for c in cs]
            differ = (labels[pick][:, others] != labels[anchor, others]).sum(1) if others else np.zeros(len(pick))
            group.append(int(pick[int(np.argmax(differ))]))
        else:
            rows.append(group)
    if not rows:
        raise InputError("no GROUP(C, 1) can be formed from the attribute table: some attribute group has no "
                         "two images with equal labels")
    return np.asarray(rows, dtype=np.int64)


def table_group_rows(files: Sequence[str], table: Path, group_attributes: Optional[Dict[str, List[str]]],
                     n_groups: int, seed: int = 0) -> Tuple[np.ndarray, List[str]]:
    """GROUP(C, 1) of a real dataset as indices into ``files`` (G, 1 + M), and the group names.

    ``files`` are matched to rows of the CelebA-format ``table`` by path, else by file name.
    """
    names, label_files, labels = toyfaces.read_attr_table(table)
    row = {f: i for i, f in enumerate(label_files)}
    row.update({Path(f).name: i for i, f in enumerate(label_files)})
    keep = [(k, row.get(f, row.get(Path(f).name))) for k, f in enumerate(files)]
    keep = [(k, r) for k, r in keep if r is not None]
    if not keep:
        raise InputError(f"no image of the dataset is listed in '{table}'")
    group_attributes = group_attributes or default_group_attributes(names)
    if not group_attributes:
        raise InputError(f"'{table}' has none of the toy-face group attributes; pass {opt('group_attrs')}")
    index = table_groups(labels[[r for _, r in keep]], names, group_attributes, n_groups, seed)
    return np.asarray([k for k, _ in keep], dtype=np.int64)[index], list(group_attributes)


def table_group_codes(z_sem: torch.Tensor, files: Sequence[str], table: Path,
                      group_attributes: Optional[Dict[str, List[str]]], n_groups: int, seed: int = 0) -> GroupCodes:
    """GROUP(C, 1) codes of a real dataset: z_sem (N, D) of ``files`` matched to rows of a CelebA-format table."""
    rows, groups = table_group_rows(files, table, group_attributes, n_groups, seed)
    return GroupCodes(z_sem[torch.from_numpy(rows)], groups)


def group_spec_for(slices: Sequence[str], groups: Sequence[str]) -> List[Tuple[int, str]]:
    """[(member index j >= 1, slice name)] for the group names that are also GAE slices."""
    names = set(slices)
    return [(j + 1, g) for j, g in enumerate(groups) if g in names]
