"""Joint fine-tuning of the autoencoder with its GAE (DiffuseGAE section 3.4, "fine-tuning via jointly training").

Eq. 12::

    L = L_simple + gamma * L_dis

* ``L_dis``: the GAE loss of :mod:`gae_training` (L_r + lambda_ss L_ss + lambda_ur L_ur) on GROUP(C, 1) images
  whose z_sem is computed every step by the (trainable) semantic encoder;
* ``L_simple``: the Diff-AE denoising loss on the same images, with the UNet conditioned on the GAE's
  reconstruction ``D(E(z_sem))`` (denormalised), which is what ``swap`` / ``recombine`` feed the decoder, so the
  gap between the encoder's code and the GAE's output shrinks (the paper's motivation).

Adam without weight decay, lr 1e-5, gamma 1, lambda_ss = lambda_ur = 0.5 (the paper's joint-training values),
fp32. The GAE's z_sem statistics stay fixed (buffers).

It changes the autoencoder, so it writes a **new** model folder (``out``): the fine-tuned autoencoder and GAE,
plus the source's oracle if it has one. The latent DDIM and classifier are not copied: they were fitted to the
old z_sem (retrain them on the new folder with ``train latent`` / ``train classifier``). Resumable:
``out/train_state/joint.pt`` holds both networks and the optimiser; every step's groups, timesteps and noise
come from a generator seeded with (seed, step), so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F

from .. import diffusion
from ..data import groups as grouping, toyfaces
from ..errors import DiffeditError, InputError, opt as named
from ..io.images import to_model_range
from ..io.models import load_component, save_component, write_index
from ..pipeline import pick_device
from .config import TrainConfig
from .diffae import append_train_log, image_files, load_image_folder, load_train_state, save_train_state
from .gae import combine, gae_losses, model_folder

StepLog = Callable[[dict], None]


@dataclass
class JointTrainConfig(TrainConfig):
    RUN_CONTROLS = ("out", "steps", "device", "save_every")

    model: str                          # source model folder with autoencoder/ and a trained gae/
    out: str                            # new model folder written by the fine-tuning
    data: Optional[str] = None          # image folder of a real dataset (None: generated toy faces)
    labels: Optional[str] = None        # its attribute table (CelebA format)
    group_attrs: Optional[str] = None   # "hair=Bangs,Black_Hair;mouth=Smiling" (default: toy-face groups)
    groups: int = 2000                  # GROUP(C, 1) samples to draw batches from
    group_seed: int = 100
    steps: int = 1000
    batch_size: int = 4                 # groups per step (each 1 + M images)
    lr: float = 1e-5
    gamma: float = 1.0
    lambda_ss: float = 0.5
    lambda_ur: float = 0.5
    save_every: int = 250
    seed: int = 0
    device: str = "auto"


class GroupImages:
    """GROUP(C, 1) images on demand: ``batch(indices)`` -> uint8 (B, 1 + M, 3, S, S), member j shares ``names[j-1]``."""

    def __init__(self, cfg: JointTrainConfig, slice_names: List[str], size: int):
        self.size = size
        if cfg.data is None:
            if cfg.labels:
                raise InputError(f"{named('labels')} needs {named('data')} (the images it describes)")
            self.names = [n for n in slice_names if n in toyfaces.GROUPS]
            self.images = None
            self.count = cfg.groups
            self.seed = cfg.group_seed
        else:
            if not cfg.labels:
                raise InputError(f"{named('data')} needs {named('labels')} (an attribute table in the CelebA format)")
            names, _, _ = toyfaces.read_attr_table(Path(cfg.labels))
            attrs = (grouping.parse_group_attributes(cfg.group_attrs, names) if cfg.group_attrs
                     else grouping.default_group_attributes(names))
            attrs = {g: a for g, a in attrs.items() if g in slice_names}
            self.names = list(attrs)
            if self.names:
                folder = Path(cfg.data)
                files = [str(f.relative_to(folder)) for f in image_files(folder)]
                rows, _ = grouping.table_group_rows(files, Path(cfg.labels), attrs, cfg.groups, cfg.group_seed)
                self.images = load_image_folder(folder, size)  # rows index these, in image_files order
                self.rows = torch.from_numpy(rows)
                self.count = len(rows)
        if not self.names:
            raise InputError(f"no GAE slice ({', '.join(slice_names)}) is an attribute group of the data")

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self.images is not None:
            return self.images[self.rows[indices]]
        faces = [f for k in indices.tolist() for f in grouping.toyface_group(self.seed, k, self.names)]
        return grouping.render_faces(faces, self.size).reshape(len(indices), 1 + len(self.names), 3, self.size, self.size)


def joint_losses(autoencoder, gae, images_u8: torch.Tensor, members, alphas_cumprod: torch.Tensor,
                 generator: torch.Generator, lambda_ss: float, lambda_ur: float) -> Dict[str, torch.Tensor]:
    """``{"simple", "dis", "r", "ss", "ur"}`` for one batch of groups, images uint8 (B, 1 + M, 3, S, S)."""
    b, per = images_u8.shape[:2]
    device = alphas_cumprod.device
    x0 = to_model_range(images_u8.reshape(b * per, *images_u8.shape[2:])).to(device)
    t = torch.randint(0, len(alphas_cumprod), (b * per,), generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    z_norm = gae.normalize(autoencoder.encode(x0).float())
    losses = gae_losses(gae, z_norm.reshape(b, per, -1), members, generator)
    z_hat = gae.denormalize(gae.decode_normalized(gae.encode_normalized(z_norm)))
    a = alphas_cumprod[t]
    out = autoencoder(diffusion.q_sample(x0, noise, a), t, z_sem=z_hat)
    target = diffusion.prediction_target(x0, noise, a, diffusion.Parameterization.of(autoencoder.config).prediction)
    losses["simple"] = F.mse_loss(out.float(), target)
    losses["dis"] = combine(losses, lambda_ss, lambda_ur)
    return losses


@dataclass
class JointRun:
    """A joint fine-tuning run, set up: the autoencoder and GAE (trainable, on the device), their optimiser,
    the group images, the members the swap loss uses, the schedule's alpha-bar, the step reached."""

    cfg: JointTrainConfig
    source: Path
    out: Path
    autoencoder: torch.nn.Module
    gae: torch.nn.Module
    opt: torch.optim.Optimizer
    data: GroupImages
    members: list
    alphas_cumprod: torch.Tensor
    step: int = 0

    @property
    def state_path(self) -> Path:
        return self.out / "train_state" / "joint.pt"


def setup_joint_run(cfg: JointTrainConfig, resume: bool = False, given: Optional[Iterable[str]] = None) -> JointRun:
    """Check ``cfg.out`` and the source model (a trained GAE on codes of its autoencoder), load both trainable,
    restore a resumed run's state."""
    device = pick_device(cfg.device)
    out = Path(cfg.out).expanduser()
    state_path = out / "train_state" / "joint.pt"
    if resume and not state_path.exists():
        raise DiffeditError(f"nothing to resume: '{state_path}' not found")
    if not resume and out.exists() and any(out.iterdir()):
        raise DiffeditError(f"'{out}' exists and is not empty; choose a new {named('out')} (or {named('resume')} its run)")
    state = load_train_state(state_path) if resume else None
    if state is not None:
        cfg = cfg.resumed(state["config"], given)
    cfg.check_positive("steps", "batch_size", "groups")
    source = model_folder(cfg.model)
    if not (source / "gae" / "model.safetensors").is_file():
        raise DiffeditError(f"'{source}' has no trained GAE; train one first ('diffedit train gae')")
    autoencoder = load_component(source / "autoencoder", "autoencoder", str(device)).requires_grad_(True)
    gae = load_component(source / "gae", "gae", str(device)).requires_grad_(True)
    size = autoencoder.config.image_size
    with torch.no_grad():
        code_dim = autoencoder.encode(torch.zeros(1, 3, size, size, device=device)).shape[1]
    if gae.z_mean.numel() != code_dim:
        raise DiffeditError(f"the GAE of '{source}' reads {gae.z_mean.numel()}-d codes but the autoencoder makes "
                            f"{code_dim}-d ones")
    data = GroupImages(cfg, gae.slice_names, autoencoder.config.image_size)
    members = grouping.group_spec_for(gae.slice_names, data.names)
    opt = torch.optim.Adam(list(autoencoder.parameters()) + list(gae.parameters()), lr=cfg.lr, weight_decay=0.0)
    step = 0
    if state is not None:
        autoencoder.load_state_dict(state["autoencoder"])
        gae.load_state_dict(state["gae"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    alphas_cumprod = diffusion.Parameterization.of(autoencoder.config).alphas_cumprod().float().to(device)
    return JointRun(cfg, source, out, autoencoder, gae, opt, data, members, alphas_cumprod, step)


def save_joint_checkpoint(r: JointRun, last: Dict[str, float]) -> None:
    """The resumable state and ``cfg.out`` as a model folder: autoencoder, GAE and the source's oracle."""
    cfg, out = r.cfg, r.out
    save_train_state(r.state_path, {"config": cfg.to_dict(), "step": r.step, "autoencoder": r.autoencoder.state_dict(),
                                    "gae": r.gae.state_dict(), "optimizer": r.opt.state_dict()})
    training = {**{k: v for k, v in cfg.to_dict().items() if k not in ("device", "out")}, "steps_done": r.step,
                "joint_fine_tuning": "DiffuseGAE eq. 12", "last_losses": last}
    save_component(r.autoencoder, out / "autoencoder", "autoencoder", extra={"training": training})
    save_component(r.gae, out / "gae", "gae", extra={"training": training})
    components = {"autoencoder", "gae"}
    if (r.source / "oracle").is_dir() and not (out / "oracle").exists():
        shutil.copytree(r.source / "oracle", out / "oracle")
    if (out / "oracle").is_dir():
        components.add("oracle")
    write_index(out, out.name, components, {"trained_with": "diffedit train gae-joint",
                                            "fine_tuned_from": str(cfg.model)})


def finetune_joint(cfg: JointTrainConfig, resume: bool = False, log: Optional[StepLog] = None,
                   stop_after: Optional[int] = None, given: Optional[Iterable[str]] = None) -> Path:
    """Fine-tune ``cfg.model``'s autoencoder and GAE jointly into ``cfg.out`` (or resume); returns ``cfg.out``.

    ``given``: the run controls a resume takes from ``cfg`` (default all).
    """
    r = setup_joint_run(cfg, resume, given)
    cfg = r.cfg
    if not resume:
        save_joint_checkpoint(r, {})  # a new run is resumable (and its folder taken) from its first step on
    end = cfg.steps if stop_after is None else min(cfg.steps, r.step + stop_after)
    r.autoencoder.train()
    r.gae.train()
    tick = time.perf_counter()
    last: Dict[str, float] = {}
    while r.step < end:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + r.step * 97 + 23)
        idx = torch.randint(0, r.data.count, (cfg.batch_size,), generator=gen)
        images = r.data.batch(idx)
        losses = joint_losses(r.autoencoder, r.gae, images, r.members, r.alphas_cumprod, gen, cfg.lambda_ss,
                              cfg.lambda_ur)
        loss = losses["simple"] + cfg.gamma * losses["dis"]
        r.opt.zero_grad(set_to_none=True)
        loss.backward()
        r.opt.step()
        r.step += 1
        now = time.perf_counter()
        last = {k: round(float(v.detach()), 6) for k, v in losses.items()}
        info = {"step": r.step, "steps": cfg.steps, "loss": loss.item(), **last,
                "images_per_s": images.shape[0] * images.shape[1] / max(now - tick, 1e-9)}
        tick = now
        if log is not None:
            log(info)
        append_train_log(r.out / "train_log_joint.jsonl", info, last=r.step == end)
        if r.step % cfg.save_every == 0 and r.step != end:
            save_joint_checkpoint(r, last)
    r.autoencoder.eval()
    r.gae.eval()
    save_joint_checkpoint(r, last)
    return r.out
