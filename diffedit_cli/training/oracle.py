"""Training and scoring the attribute oracle (:mod:`diffedit_cli.networks.oracle`) on rendered toy faces.

Faces for training, validation and :func:`evaluate_oracle` come from seed ranges disjoint from the default
dataset (``face_seed(0, i)``): ``face_seed(seed, i)`` for training, ``face_seed(seed + 1, i)`` for validation
and ``face_seed(999, i)`` for evaluation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from ..data import toyfaces
from ..io import models
from ..io.images import to_model_range
from ..networks.oracle import COMPONENT, AttributeOracle, OracleConfig


def render_faces(seed: int, n: int, size: int, attribute_names: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Faces ``face_seed(seed, 0..n-1)``: images uint8 (n, 3, size, size) and labels float32 (n, K) in {0, 1}."""
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    labels = torch.empty(n, len(attribute_names))
    for i in range(n):
        face = toyfaces.sample_face(toyfaces.face_seed(seed, i))
        image, _ = toyfaces.render(face, size)
        images[i] = torch.from_numpy(image).permute(2, 0, 1)
        present = toyfaces.attributes(face)
        labels[i] = torch.tensor([present[name] for name in attribute_names], dtype=torch.float32)
    return images, labels


@torch.no_grad()
def accuracy(oracle: AttributeOracle, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 256) -> Dict[str, float]:
    """Fraction of correct predictions per attribute; images uint8 (N, 3, S, S), labels (N, K) in {0, 1}."""
    was_training = oracle.training
    oracle.eval()
    correct = torch.zeros(len(oracle.attributes))
    for start in range(0, len(images), batch_size):
        predicted = oracle.predict(to_model_range(images[start:start + batch_size]))
        correct += (predicted == labels[start:start + batch_size].bool()).sum(dim=0)
    oracle.train(was_training)
    return {name: float(c) / len(images) for name, c in zip(oracle.attributes, correct)}


def evaluate_oracle(oracle: AttributeOracle, n: int = 500, seed: int = 999) -> Dict[str, float]:
    """Accuracy per attribute on ``n`` fresh faces ``face_seed(seed, i)`` (disjoint from training and validation)."""
    images, labels = render_faces(seed, n, oracle.config.image_size, oracle.attributes)
    return accuracy(oracle, images, labels)


def degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training augmentation: half the batch Gaussian-blurred (sigma 0.3-1.2 px), half with noise (sigma <= 0.06).

    Decoded images are softer and noisier than rendered ones; the oracle must judge them the same.
    images: (N, 3, S, S) in [-1, 1] -> same shape.
    """
    out = images.clone()
    blur = torch.rand(len(images), generator=generator) < 0.5
    if blur.any():
        sigma = 0.3 + 0.9 * torch.rand(1, generator=generator).item()
        out[blur] = gaussian_blur(out[blur], kernel_size=5, sigma=sigma)
    noisy = torch.rand(len(images), generator=generator) < 0.5
    if noisy.any():
        scale = 0.06 * torch.rand(1, generator=generator).item()
        out[noisy] = out[noisy] + scale * 2 * torch.randn(out[noisy].shape, generator=generator)
    return out.clamp(-1, 1)


def train_oracle(run: Path, n_train: int = 20000, n_val: int = 2000, seed: int = 1234, epochs: int = 10,
                 batch_size: int = 64, lr: float = 2e-3, config: Optional[OracleConfig] = None,
                 log: Optional[Callable[[dict], None]] = None) -> Dict[str, float]:
    """Train an oracle on ``n_train`` rendered faces and write it to ``run/oracle``; returns validation accuracy.

    Training faces are ``face_seed(seed, i)``, validation faces ``face_seed(seed + 1, i)``; images are
    rendered once and kept in memory as uint8. Loss: BCE with logits, Adam with a cosine learning-rate decay,
    random horizontal flips (every attribute is symmetric) and :func:`degrade` (blur / noise). ``log`` gets one dict per epoch (epoch, epochs,
    loss, val_accuracy_min, seconds). Returns ``{attribute: accuracy}`` on the validation faces.
    """
    run = Path(run)
    cfg = config or OracleConfig()
    start_time = time.perf_counter()
    train_images, train_labels = render_faces(seed, n_train, cfg.image_size, cfg.attributes)
    val_images, val_labels = render_faces(seed + 1, n_val, cfg.image_size, cfg.attributes)
    torch.manual_seed(seed)
    augment_gen = torch.Generator().manual_seed(seed)
    oracle = AttributeOracle(cfg)
    opt = torch.optim.Adam(oracle.parameters(), lr=lr)
    steps_per_epoch = -(-n_train // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    val_accuracy: Dict[str, float] = {}
    for epoch in range(1, epochs + 1):
        oracle.train()
        order = torch.randperm(n_train)
        total_loss = 0.0
        for start in range(0, n_train, batch_size):
            idx = order[start:start + batch_size]
            images = to_model_range(train_images[idx])
            flip = torch.rand(len(idx)) < 0.5
            images[flip] = images[flip].flip(-1)
            images = degrade(images, augment_gen)
            loss = F.binary_cross_entropy_with_logits(oracle(images), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
        val_accuracy = accuracy(oracle, val_images, val_labels)
        if log is not None:
            log({"epoch": epoch, "epochs": epochs, "loss": total_loss / n_train,
                 "val_accuracy_min": min(val_accuracy.values()), "seconds": time.perf_counter() - start_time})
    oracle.eval()
    training = {"n_train": n_train, "n_val": n_val, "train_seed": seed, "val_seed": seed + 1, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "augmentation": "flip, blur sigma 0.3-1.2, noise sigma <= 0.06", "seconds": round(time.perf_counter() - start_time, 1)}
    models.save_component(oracle, run / COMPONENT, COMPONENT,
                          extra={"training": training, "val_accuracy": val_accuracy})
    models.add_to_index(run, run.name, COMPONENT)
    return val_accuracy
