"""Training the group-supervised autoencoder (GAE) on GROUP(C, 1) z_sem codes (DiffuseGAE section 3.3).

Loss (eq. 11), all terms L1 on normalised z_sem unless noted::

    L_dis = L_r + lambda_ss * L_ss + lambda_ur * L_ur

* L_r: reconstruction D(E(z)) ~ z for every code of the batch;
* L_ss (supervised attribute swap): for each member j sharing group g with the anchor C, swapping slice g
  between E(z_C) and E(z_j) must still decode to z_C (resp. z_j); and the reassembly z_re, which takes every
  slice g from the member sharing g (other slices from C), must decode to z_C;
* L_ur (unsupervised attribute reassembly, a cycle): z_u takes each slice from a random code of the batch;
  E(D(z_u)) ~ z_u. The target is z_u detached and the L1 is divided by mean |z_u| (detached), so the encoder
  cannot lower it by shrinking z_dis.

Adam, learning rate 4e-5, no weight decay (paper). A run writes ``gae/`` into the model folder and keeps
resumable state in ``train_state/gae.pt`` (tensors and plain containers, read with ``weights_only=True``) and
the cached group codes in ``train_state/gae_codes.pt``. Every step's batch and mixing are drawn from a
generator seeded with (seed, step), so a resumed run continues exactly as an uninterrupted one.

Joint fine-tuning with the diffusion loss (eq. 12) is :mod:`gae_joint` (``train gae-joint``): it changes the
autoencoder, so it writes a new model folder instead of touching this one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .. import pipeline
from ..data import groups as grouping, toyfaces
from ..errors import DiffeditError, InputError, opt as named
from ..io.models import INDEX_FILE, add_to_index, file_fingerprint, load_component, resolve_model, save_component
from ..networks.gae import GAEConfig, GroupAutoencoder, swap_slices
from .config import TrainConfig
from .diffae import append_train_log, dataset_codes, load_train_state, save_train_state

StepLog = Callable[[dict], None]


@dataclass
class GAETrainConfig(TrainConfig):
    RUN_CONTROLS = ("model", "steps", "device", "save_every")

    model: str                          # local model folder with an autoencoder; gae/ is written into it
    data: Optional[str] = None          # image folder of a real dataset (None: generated toy faces)
    labels: Optional[str] = None        # its attribute table (CelebA format)
    group_attrs: Optional[str] = None   # "hair=Bangs,Black_Hair;mouth=Smiling" (default: toy-face groups)
    groups: int = 2000                  # GROUP(C, 1) samples
    group_seed: int = 100               # toy faces: dataset seed of the group faces (disjoint from 0, 999)
    slices: Optional[str] = None        # "identity=24,hair=16,..." (default: every group, slice_size each)
    slice_size: int = 16
    hidden: int = 256
    steps: int = 8000
    batch_size: int = 32                # groups per step
    lr: float = 4e-5
    lambda_ss: float = 1.0
    lambda_ur: float = 0.5
    save_every: int = 1000
    val_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"


def parse_slices(spec: Optional[str], groups: Sequence[str], slice_size: int) -> List[Tuple[str, int]]:
    """``"identity=24,hair=16"`` -> [("identity", 24), ("hair", 16)]; None -> every group with ``slice_size``."""
    if not spec:
        return [(g, slice_size) for g in groups]
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, size = part.partition("=")
        try:
            value = int(size) if eq else slice_size
        except ValueError:
            raise InputError(f"slices '{part}': expected NAME=SIZE", param="slices") from None
        if value < 1:
            raise InputError(f"slices '{part}': size must be >= 1", param="slices")
        out.append((name.strip(), value))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise InputError(f"slices '{spec}' names a slice twice", param="slices")
    return out


def model_folder(spec: str) -> Path:
    """A local model folder to write into (a folder path or the name of a shipped model; not a Hub id)."""
    local = Path(spec).expanduser()
    if local.is_dir():
        if not (local / INDEX_FILE).is_file():
            raise DiffeditError(f"'{local}' is not a model folder (no {INDEX_FILE}); train an autoencoder first")
        return local
    location = resolve_model(spec)
    if location.revision is not None or "huggingface" in str(location.path):
        raise DiffeditError(f"'{spec}' is a Hub model; download it to a local folder to add a GAE to it")
    return location.path


# -- losses ------------------------------------------------------------------------------------------------------

def gae_losses(gae: GroupAutoencoder, z_norm: torch.Tensor, members: Sequence[Tuple[int, str]],
               generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """L_r, L_ss, L_ur and their weighted sum ("total" needs the lambdas; see :func:`combine`).

    z_norm: normalised group codes (B, 1 + M, D); members: [(member index j, slice name it shares)].
    """
    b, per, d = z_norm.shape
    flat = z_norm.reshape(b * per, d)
    z_dis = gae.encode_normalized(flat)
    loss_r = F.l1_loss(gae.decode_normalized(z_dis), flat)
    z_dis = z_dis.reshape(b, per, -1)
    ranges = gae.slice_ranges()
    anchor = z_dis[:, 0]
    swapped, targets = [], []
    reassembled = anchor
    for j, name in members:
        cols = [ranges[name]]
        swapped += [swap_slices(anchor, z_dis[:, j], cols), swap_slices(z_dis[:, j], anchor, cols)]
        targets += [z_norm[:, 0], z_norm[:, j]]
        reassembled = swap_slices(reassembled, z_dis[:, j], cols)
    swapped.append(reassembled)
    targets.append(z_norm[:, 0])
    loss_ss = F.l1_loss(gae.decode_normalized(torch.cat(swapped)), torch.cat(targets))
    # unsupervised reassembly: every slice from a random code of the batch
    flat_dis = z_dis.reshape(b * per, -1)
    pick = torch.randint(0, b * per, (b, len(ranges)), generator=generator).to(flat_dis.device)
    z_u = torch.cat([flat_dis[pick[:, s], cols] for s, cols in enumerate(ranges.values())], dim=1)
    z_u_again = gae.encode_normalized(gae.decode_normalized(z_u))
    target = z_u.detach()
    loss_ur = F.l1_loss(z_u_again, target) / target.abs().mean().clamp_min(1e-6)
    return {"r": loss_r, "ss": loss_ss, "ur": loss_ur}


def combine(losses: Dict[str, torch.Tensor], lambda_ss: float, lambda_ur: float) -> torch.Tensor:
    return losses["r"] + lambda_ss * losses["ss"] + lambda_ur * losses["ur"]


# -- data --------------------------------------------------------------------------------------------------------

def group_codes(cfg: GAETrainConfig, folder: Path, autoencoder, progress=None) -> grouping.GroupCodes:
    """GROUP(C, 1) z_sem codes for ``cfg``, cached in ``train_state/gae_codes.pt`` (keyed by source and weights)."""
    key = {"autoencoder": file_fingerprint(folder / "autoencoder" / "model.safetensors"), "groups": cfg.groups,
           "data": cfg.data, "labels": cfg.labels, "group_attrs": cfg.group_attrs,
           "group_seed": cfg.group_seed if cfg.data is None else None}
    cache = folder / "train_state" / "gae_codes.pt"
    if cache.exists():
        saved = load_train_state(cache)
        if saved.get("key") == json.dumps(key, sort_keys=True):
            return grouping.GroupCodes(saved["codes"], list(saved["groups"]))
    if cfg.data is None:
        if cfg.labels:
            raise InputError(f"{named('labels')} needs {named('data')} (the images it describes)")
        names = [n for n, _ in parse_slices(cfg.slices, list(toyfaces.GROUPS), cfg.slice_size)]
        group_names = [n for n in names if n in toyfaces.GROUPS]
        if not group_names:
            raise InputError(f"no slice is a toy-face group ({', '.join(toyfaces.GROUPS)})")
        result = toyface_group_codes(autoencoder, cfg.groups, cfg.group_seed, group_names, progress=progress)
    else:
        if not cfg.labels:
            raise InputError(f"{named('data')} needs {named('labels')} (an attribute table in the CelebA format)")
        z, files = dataset_codes(folder, Path(cfg.data), autoencoder.config.image_size, autoencoder)
        names, _, _ = toyfaces.read_attr_table(Path(cfg.labels))
        attrs = grouping.parse_group_attributes(cfg.group_attrs, names) if cfg.group_attrs else None
        result = grouping.table_group_codes(z, files, Path(cfg.labels), attrs, cfg.groups, cfg.group_seed)
    save_train_state(cache, {"key": json.dumps(key, sort_keys=True), "codes": result.codes, "groups": result.groups})
    return result


# -- training ----------------------------------------------------------------------------------------------------

def toyface_group_codes(autoencoder, n_groups: int, seed: int, groups: Sequence[str], batch_size: int = 64,
                        progress: Optional[Callable[[int, int], None]] = None) -> grouping.GroupCodes:
    """Render ``n_groups`` GROUP(C, 1) face groups at the autoencoder's size and encode them -> GroupCodes."""
    size = autoencoder.config.image_size
    per = 1 + len(groups)
    chunk_groups = max(1, batch_size // per)
    codes = []
    for start in range(0, n_groups, chunk_groups):
        faces = [f for k in range(start, min(n_groups, start + chunk_groups)) for f in grouping.toyface_group(seed, k, groups)]
        codes.append(pipeline.encode_dataset(autoencoder, grouping.render_faces(faces, size), batch_size=len(faces),
                                             precision="fp32"))  # training targets in full precision
        if progress:
            progress(min(n_groups, start + chunk_groups), n_groups)
    z = torch.cat(codes)
    return grouping.GroupCodes(z.reshape(n_groups, per, z.shape[-1]), list(groups))


@dataclass
class GAERun:
    """A GAE run, set up: the network and optimiser on the device, the normalised train / validation codes
    (groups, 1 + C, D), the group members the swap loss uses, the step reached and where the run is kept."""

    cfg: GAETrainConfig
    folder: Path
    gae: GroupAutoencoder
    opt: torch.optim.Optimizer
    members: List[Tuple[int, str]]
    train_norm: torch.Tensor
    val_norm: Optional[torch.Tensor]
    data_groups: List[str]
    step: int = 0

    @property
    def state_path(self) -> Path:
        return self.folder / "train_state" / "gae.pt"


def setup_gae_run(cfg: GAETrainConfig, resume: bool = False, code_progress=None,
                  given: Optional[Iterable[str]] = None) -> GAERun:
    """Check the run folder, encode (or read the cached) group codes, build or restore the GAE and its optimiser."""
    device = pipeline.pick_device(cfg.device)
    folder = model_folder(cfg.model)
    state_path = folder / "train_state" / "gae.pt"
    if state_path.exists() and not resume:
        raise DiffeditError(f"'{folder}' already holds a GAE training run; pass {named('resume')} to continue it")
    if resume and not state_path.exists():
        raise DiffeditError(f"nothing to resume: '{state_path}' not found")
    state = load_train_state(state_path) if resume else None
    if state is not None:
        cfg = cfg.resumed(state["config"], given)
    cfg.check_positive("groups", "steps", "batch_size")
    autoencoder = load_component(folder / "autoencoder", "autoencoder", str(device))
    data = group_codes(cfg, folder, autoencoder, code_progress)
    del autoencoder
    slices = parse_slices(cfg.slices, data.groups, cfg.slice_size)
    members = grouping.group_spec_for([n for n, _ in slices], data.groups)
    if not members:
        raise InputError(f"no slice is one of the data's groups ({', '.join(data.groups)})")
    codes = data.codes.float()
    n_val = int(round(len(codes) * cfg.val_fraction)) if len(codes) > 1 else 0
    train_codes, val_codes = codes[: len(codes) - n_val], codes[len(codes) - n_val:]

    torch.manual_seed(cfg.seed)
    gae = GroupAutoencoder(GAEConfig(z_sem_dim=codes.shape[-1], hidden=cfg.hidden, slices=slices))
    flat = train_codes.reshape(-1, codes.shape[-1])
    gae.z_mean.copy_(flat.mean(0))
    gae.z_std.copy_(flat.std(0).clamp_min(1e-6))
    gae.to(device)
    opt = torch.optim.Adam(gae.parameters(), lr=cfg.lr, weight_decay=0.0)
    step = 0
    if state is not None:
        gae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    else:
        (folder / "train_log_gae.jsonl").unlink(missing_ok=True)  # a new run, a new record
    (folder / "train_state").mkdir(parents=True, exist_ok=True)
    return GAERun(cfg, folder, gae, opt, members, gae.normalize(train_codes.to(device)),
                  gae.normalize(val_codes.to(device)) if n_val else None, list(data.groups), step)


def validate_gae(r: GAERun) -> Dict[str, float]:
    """The losses on the validation groups (fixed mixing), rounded, with their weighted ``total``."""
    if r.val_norm is None:
        return {}
    r.gae.eval()
    with torch.no_grad():
        losses = gae_losses(r.gae, r.val_norm, r.members, torch.Generator().manual_seed(r.cfg.seed + 12345))
    r.gae.train()
    out = {k: round(float(v), 5) for k, v in losses.items()}
    out["total"] = round(float(combine(losses, r.cfg.lambda_ss, r.cfg.lambda_ur)), 5)
    return out


def save_gae_checkpoint(r: GAERun, val: Dict[str, float]) -> None:
    """The resumable state and the model folder's ``gae/`` component (with its recipe and validation losses)."""
    save_train_state(r.state_path, {"config": r.cfg.to_dict(), "step": r.step, "model": r.gae.state_dict(),
                                    "optimizer": r.opt.state_dict()})
    training = {**{k: v for k, v in r.cfg.to_dict().items() if k not in ("model", "device")}, "steps_done": r.step,
                "train_groups": len(r.train_norm), "val_groups": 0 if r.val_norm is None else len(r.val_norm),
                "data_groups": r.data_groups,
                "autoencoder_fingerprint": file_fingerprint(r.folder / "autoencoder" / "model.safetensors")}
    save_component(r.gae, r.folder / "gae", "gae", extra={"training": training, "val_losses": val})
    add_to_index(r.folder, r.folder.name, "gae")


def train_gae(cfg: GAETrainConfig, resume: bool = False, log: Optional[StepLog] = None,
              stop_after: Optional[int] = None, code_progress=None, given: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """Train (or resume) the GAE of ``cfg.model``; returns the final validation losses {r, ss, ur, total}.

    ``log`` gets a dict per step (step, steps, loss, r, ss, ur, groups_per_s); ``stop_after`` ends this
    invocation after that many steps (resume later); ``given``: the run controls a resume takes from ``cfg``.
    """
    r = setup_gae_run(cfg, resume, code_progress, given)
    cfg = r.cfg
    end = cfg.steps if stop_after is None else min(cfg.steps, r.step + stop_after)
    r.gae.train()
    tick = time.perf_counter()
    while r.step < end:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + r.step * 97 + 11)
        idx = torch.randint(0, len(r.train_norm), (cfg.batch_size,), generator=gen)
        losses = gae_losses(r.gae, r.train_norm[idx.to(r.train_norm.device)], r.members, gen)
        loss = combine(losses, cfg.lambda_ss, cfg.lambda_ur)
        r.opt.zero_grad(set_to_none=True)
        loss.backward()
        r.opt.step()
        r.step += 1
        now = time.perf_counter()
        info = {"step": r.step, "steps": cfg.steps, "loss": loss.item(), **{k: v.item() for k, v in losses.items()},
                "images_per_s": cfg.batch_size / max(now - tick, 1e-9)}
        tick = now
        if log is not None:
            log(info)
        append_train_log(r.folder / "train_log_gae.jsonl", info, last=r.step == end)
        if r.step % cfg.save_every == 0 and r.step != end:
            save_gae_checkpoint(r, validate_gae(r))
    val = validate_gae(r)
    save_gae_checkpoint(r, val)
    return val
