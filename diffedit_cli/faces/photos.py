"""Photos read and written without losing what paste-back must keep byte-identical.

A :class:`Photo` holds the upright pixels (EXIF orientation applied) in the photo's own depth: ``pixels``
(H, W, C) uint8 or uint16 with C = 1 (grey) or 3 (RGB), plus ``alpha`` (H, W) of the same dtype or None.
``rgb8`` (H, W, 3) uint8 is what detectors and aligned crops see (alpha composited over white and 16-bit
mapped to 8 bit as :mod:`diffedit_cli.io.images` does). Written back as PNG (or TIFF for 16-bit TIFF input),
untouched pixels keep their exact values.

Supported losslessly: RGB, RGBA, L, LA, 16-bit grey (I;16, and 'I' within 0..65535), palette images
(expanded to RGB / RGBA), and 16-bit colour PNG / TIFF (RGB, RGBA). Other modes (CMYK, YCbCr, float) are
converted to RGB first. Pillow has no 16-bit colour mode (it opens such files as 8-bit RGB), so 16-bit
colour files are read and written with OpenCV (``cv2``, installed with facexlib, the [faces] extra; without
it they are read as 8-bit), EXIF orientation applied by :func:`orient` exactly as Pillow's ``exif_transpose``.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError
from ..io import images as imageio
from ..io.files import atomic_write


@dataclass
class Photo:
    """An upright photo in its own depth (see the module docstring)."""

    pixels: np.ndarray
    alpha: Optional[np.ndarray]
    source: str

    @property
    def size(self):
        """(W, H)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def max_value(self) -> int:
        return 65535 if self.pixels.dtype == np.uint16 else 255

    @property
    def rgb8(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, alpha composited over white."""
        if self.pixels.dtype == np.uint8 and self.alpha is None:
            px = self.pixels
            return np.ascontiguousarray(np.repeat(px, 3, axis=2) if px.shape[2] == 1 else px)
        color = self.pixels.astype(np.float64) / self.max_value
        if color.shape[2] == 1:
            color = np.repeat(color, 3, axis=2)
        if self.alpha is not None:
            a = self.alpha.astype(np.float64)[..., None] / self.max_value
            color = color * a + (1 - a)
        return np.floor(np.clip(color, 0, 1) * 255 + 0.5).astype(np.uint8)

    def with_pixels(self, pixels: np.ndarray) -> "Photo":
        return Photo(pixels, self.alpha, self.source)


def _open(path: str) -> Image.Image:
    if not os.path.isfile(path):
        raise InputError(f"cannot read image '{path}': no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise InputError(f"'{path}' is not an image file (format not recognised or header damaged)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"cannot read image '{path}': too many pixels (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise InputError(f"cannot read image '{path}': file is truncated or corrupt") from None


def _is_16bit_colour(path: str) -> bool:
    """True for a PNG or TIFF storing colour (RGB / RGBA) with 16 bits per sample."""
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24] == 16 and head[25] in (2, 6)  # bit depth 16, colour type RGB / RGBA
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        with Image.open(path) as img:
            bits = img.tag_v2.get(258, ()) if hasattr(img, "tag_v2") else ()
            return len(bits) >= 3 and all(b == 16 for b in bits)
    return False


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to (H, W, ...) pixels, as Pillow's ``ImageOps.exif_transpose``."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
           8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](pixels)) if orientation in ops else pixels


def _have_opencv() -> bool:
    """OpenCV comes with the [faces] extra (facexlib); without it 16-bit colour is read as 8-bit by Pillow."""
    return importlib.util.find_spec("cv2") is not None


def _load_16bit_colour(name: str) -> Photo:
    import cv2  # optional: opencv comes with the [faces] extra

    data = np.fromfile(name, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"cannot read image '{name}': 16-bit colour file is truncated or corrupt")
    with Image.open(name) as img:
        orientation = int(img.getexif().get(0x0112, 1))
    arr = orient(arr, orientation)
    rgb = np.ascontiguousarray(arr[..., 2::-1])  # OpenCV's BGR(A) -> RGB
    return Photo(rgb, arr[..., 3].copy() if arr.shape[2] == 4 else None, name)


def _encode_16bit_colour(photo: Photo, ext: str) -> bytes:
    import cv2  # optional: opencv comes with the [faces] extra

    bgr = photo.pixels[..., ::-1]
    if photo.alpha is not None:
        bgr = np.dstack([bgr, photo.alpha])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    if not ok:
        raise InputError(f"cannot encode a 16-bit colour image as '{ext}'")
    return buf.tobytes()


def load_photo(path: os.PathLike) -> Photo:
    """Read ``path`` upright in its own depth; damaged files raise a one-line InputError."""
    name = os.fspath(path)
    img = _open(name)
    if img.mode in ("RGB", "RGBA") and _is_16bit_colour(name) and _have_opencv():
        return _load_16bit_colour(name)
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA" if ("transparency" in img.info or img.mode == "PA") else "RGB")
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img).astype(np.int64)
        return Photo(np.clip(values, 0, 65535).astype(np.uint16)[..., None], None, name)
    if img.mode == "1":
        img = img.convert("L")
    if img.mode == "L" and "transparency" in img.info:
        img = img.convert("LA")
    if img.mode == "RGB" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "L":
        return Photo(np.asarray(img)[..., None].copy(), None, name)
    if img.mode == "LA":
        arr = np.asarray(img)
        return Photo(arr[..., :1].copy(), arr[..., 1].copy(), name)
    if img.mode == "RGBA":
        arr = np.asarray(img)
        return Photo(arr[..., :3].copy(), arr[..., 3].copy(), name)
    if img.mode != "RGB":
        img = imageio._to_rgb(img)
    return Photo(np.asarray(img).copy(), None, name)


def to_pil(photo: Photo) -> Image.Image:
    """8-bit RGB(A) / L(A), or 'I;16' for 16-bit grey (16-bit colour goes to 8 bit: Pillow has no such mode)."""
    px = photo.pixels
    if px.dtype == np.uint16 and px.shape[2] == 3:
        return Image.fromarray(photo.rgb8, "RGB")
    if px.dtype == np.uint16:
        img = Image.fromarray(np.ascontiguousarray(px[..., 0]))  # uint16 -> 'I;16'
        assert img.mode == "I;16", img.mode
        return img
    if px.shape[2] == 1:
        if photo.alpha is not None:
            return Image.fromarray(np.dstack([px[..., 0], photo.alpha]), "LA")
        return Image.fromarray(px[..., 0], "L")
    if photo.alpha is not None:
        return Image.fromarray(np.dstack([px, photo.alpha]), "RGBA")
    return Image.fromarray(px, "RGB")


def save_photo(photo: Photo, path: os.PathLike, exclusive: bool = False) -> None:
    """Atomically write ``photo`` as PNG (lossless; .tif/.tiff keep TIFF; .jpg/.webp are lossy)."""
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    formats = {".png": ("PNG", {}), ".tif": ("TIFF", {}), ".tiff": ("TIFF", {}),
               ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}), ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
               ".webp": ("WEBP", {"quality": 95})}
    if ext not in formats:
        raise InputError(f"cannot write '{name}': unsupported extension '{ext}' (use .png)")
    fmt, options = formats[ext]
    if photo.pixels.dtype == np.uint16 and photo.pixels.shape[2] == 3 and fmt in ("PNG", "TIFF"):
        data = _encode_16bit_colour(photo, ".png" if fmt == "PNG" else ".tiff")
        atomic_write(name, lambda f: f.write(data), exclusive)
        return
    img = to_pil(photo)
    if fmt in ("JPEG", "WEBP") and (photo.pixels.dtype == np.uint16 or photo.alpha is not None):
        img = Image.fromarray(photo.rgb8, "RGB")
    atomic_write(name, lambda f: img.save(f, format=fmt, **options), exclusive)
