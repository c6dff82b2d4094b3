"""Batch operators for data engines: load a model once, map a batch of rows to codes or images.

Each class is picklable (the model is loaded in ``__init__``, on the worker that runs it) and maps a batch given as
a dict of columns, as Ray Data's ``map_batches`` passes it (``ray.data.read_images(..., include_paths=True)``
yields ``{"image": (B, H, W, 3) uint8, "path": (B,)}``), to a dict of columns. A row that cannot be processed (a
wrong shape, a NaN decode) is reported in its ``error`` column (empty string: fine) and the others go on; nothing
is raised for one bad row.

    ds = ray.data.read_images("faces/", include_paths=True, mode="RGB")
    codes = ds.map_batches(Encoder, fn_constructor_kwargs={"model": "ffhq256"}, batch_size=16,
                           num_gpus=1, concurrency=8)

The same objects work without Ray: ``Encoder("toyfaces")({"image": array})``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from . import pipeline
from .editing.plan import plan_edit
from .errors import DiffeditError, reason
from .io.images import fit_image, to_u8
from .sampling import DEFAULT, Sampling

Batch = Dict[str, np.ndarray]


def _rows(batch: Batch) -> int:
    return len(next(iter(batch.values()))) if batch else 0


class _Operator:
    def __init__(self, model: str = "toyfaces", sampling: Sampling = DEFAULT, device: str = "auto",
                 components: Sequence[str] = ()):
        self.sampling = sampling
        self.model = pipeline.load(model, device, tuple(components))
        self.sampling.check(None)

    def _pixels(self, batch: Batch):
        """(tensor (n, 3, S, S) of the good rows, their indices, an error per row)."""
        images = batch["image"]
        errors = [""] * len(images)
        good, tensors = [], []
        for k, image in enumerate(images):
            try:
                array = np.asarray(image)
                if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
                    raise DiffeditError(f"expected an (H, W, 3) uint8 image, got {array.dtype} {array.shape}")
                tensors.append(fit_image(Image.fromarray(array[:, :, :3]), self.model.image_size, f"row {k}"))
                good.append(k)
            except (DiffeditError, ValueError) as err:
                errors[k] = reason(err)
        return (torch.stack(tensors) if tensors else None), good, errors


class Encoder(_Operator):
    """``{"image": (B, H, W, 3) uint8, ...}`` -> the same columns plus ``z_sem`` (B, D) float32, ``x_T`` (B, 3, S, S)
    float32 (DDIM inversion with ``sampling``; zeros on a failed row) and ``error`` (B,) str."""

    def __init__(self, model: str = "toyfaces", sampling: Sampling = DEFAULT, device: str = "auto",
                 with_xT: bool = True):
        super().__init__(model, sampling, device)
        self.with_xT = with_xT

    def __call__(self, batch: Batch) -> Batch:
        pixels, good, errors = self._pixels(batch)
        n, size = _rows(batch), self.model.image_size
        z = np.zeros((n, self.model.autoencoder.config.style_channels), np.float32)
        x_T = np.zeros((n, 3, size, size), np.float32)
        if pixels is not None:
            ae = self.model.autoencoder
            codes = pipeline.encode_semantic(ae, pixels, self.sampling.precision)
            z[good] = codes.cpu().numpy()
            if self.with_xT:
                x_T[good] = pipeline.invert(ae, pixels, codes, self.sampling).cpu().numpy()
        out = {k: v for k, v in batch.items() if k != "image"}
        out.update(z_sem=z, error=np.array(errors, dtype=object))
        if self.with_xT:
            out["x_T"] = x_T
        return out


class Decoder(_Operator):
    """``{"z_sem": (B, D), "x_T": (B, 3, S, S), ...}`` -> the same columns (codes dropped) plus ``image``
    (B, S, S, 3) uint8 and ``error``."""

    def __call__(self, batch: Batch) -> Batch:
        z = torch.as_tensor(np.asarray(batch["z_sem"], np.float32))
        x_T = torch.as_tensor(np.asarray(batch["x_T"], np.float32))
        out = {k: v for k, v in batch.items() if k not in ("z_sem", "x_T")}
        out.update(self._images(pipeline.decode(self.model.autoencoder, z, x_T, self.sampling)))
        return out

    @staticmethod
    def _images(decoded: torch.Tensor, errors: Optional[List[str]] = None, good: Optional[List[int]] = None) -> Batch:
        n = len(errors) if errors is not None else len(decoded)
        errors = list(errors) if errors is not None else [""] * n
        good = list(range(n)) if good is None else good
        size = decoded.shape[-1] if len(decoded) else 0
        images = np.zeros((n, size, size, 3), np.uint8)
        for j, k in enumerate(good):
            try:
                images[k] = to_u8(decoded[j])
            except DiffeditError as err:
                errors[k] = reason(err)
        return {"image": images, "error": np.array(errors, dtype=object)}


class Editor(_Operator):
    """``{"image": (B, H, W, 3) uint8, ...}`` -> the same columns with ``image`` edited (B, S, S, 3) and ``error``:
    encode, invert, move z_sem as :func:`diffedit_cli.editing.plan.plan_edit` says (``attrs``: ``NAME`` or
    ``NAME=ALPHA``; ``directions``: ``FILE:NAME[=ALPHA]``), decode; as ``diffedit edit`` does to aligned faces."""

    def __init__(self, model: str = "toyfaces", attrs: Sequence[str] = (), alpha: float = 0.3,
                 topk: Optional[int] = None, directions: Sequence[str] = (), sampling: Sampling = DEFAULT,
                 device: str = "auto"):
        super().__init__(model, sampling, device, components=("classifier",))
        self.plan = plan_edit(self.model, list(attrs), alpha, topk, directions=list(directions))

    def __call__(self, batch: Batch) -> Batch:
        pixels, good, errors = self._pixels(batch)
        out = {k: v for k, v in batch.items() if k != "image"}
        if pixels is None:
            size = self.model.image_size
            out.update(image=np.zeros((_rows(batch), size, size, 3), np.uint8), error=np.array(errors, dtype=object))
            return out
        ae = self.model.autoencoder
        z = pipeline.encode_semantic(ae, pixels, self.sampling.precision)
        x_T = pipeline.invert(ae, pixels, z, self.sampling)
        decoded = pipeline.decode_levels(ae, z, self.plan.move(z), self.plan.route, x_T, self.sampling)
        out.update(Decoder._images(decoded, errors, good))
        return out
