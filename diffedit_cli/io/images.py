"""Reading and writing images.

Images are float32 tensors in [-1, 1]: one image is (3, H, W), a batch is
(N, 3, H, W). Reading follows the official Diff-AE data pipeline (see
:data:`PREPROCESSING`); every problem with an input file is raised as a
one-line :class:`~diffedit_cli.errors.InputError` naming the file. Writing is
atomic: a temporary file in the target directory is renamed over the target.

Mode policy when reading:

* alpha (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited
  over a WHITE background;
* L / 1 are replicated to RGB, CMYK / YCbCr / ... use Pillow's conversion;
* 16-bit integer images ('I;16*', 'I') use the full 0..65535 range and are
  mapped to 8 bits as ``value >> 8`` (Pillow itself does this for 16-bit RGB
  PNGs, which it opens as 8-bit 'RGB'); 'I' values outside 0..65535 are clipped;
* float 'F' images are read as 0..1 if their largest value is <= 1, else as
  0..255; values are clipped to that range and NaN becomes 0;
* animated images give their first frame.
"""

import os
import warnings
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from ..errors import InputError, InputWarning, NumericalError, opt
from .files import atomic_write

PathLike = Union[str, "os.PathLike[str]"]

PREPROCESSING = (
    "exif_transpose,rgb_alpha_over_white,resize_short_side_bilinear_antialias,center_crop"
)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)

# extension -> (Pillow format, save options); JPEG without chroma subsampling
_SAVE_FORMATS = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"quality": 95}),
    ".bmp": ("BMP", {}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
}

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def is_image_path(path: PathLike) -> bool:
    """True if ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def _high_bits_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer image -> 8-bit 'L' (0..65535 -> value >> 8)."""
    values = np.clip(np.asarray(img).astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(values.astype(np.uint8), "L")


def _float_to_l(img: Image.Image) -> Image.Image:
    """Float 'F' image -> 8-bit 'L' (0..1 if max <= 1, else 0..255; clipped)."""
    values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8), "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit 'RGB' following the module's mode policy."""
    if img.mode.startswith("I"):
        img = _high_bits_to_l(img)
    elif img.mode == "F":
        img = _float_to_l(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


# JPEGs above this many pixels are decoded at a reduced scale (Pillow's draft: DCT scaling by 1/2, 1/4 or 1/8)
# when the caller says how small the image will become, keeping memory bounded for large photos.
DRAFT_PIXELS = 16_000_000


def _draft(img: Image.Image, min_side: Optional[int]) -> None:
    """Let a large JPEG decode at the smallest scale whose shorter side is still >= 2 * ``min_side``."""
    width, height = img.size
    if min_side is None or img.format != "JPEG" or width * height <= DRAFT_PIXELS:
        return
    scale = 2 * min_side / min(width, height)
    if scale < 1:
        img.draft("RGB", (int(width * scale) + 1, int(height * scale) + 1))


def load_image_u8(path: PathLike, min_side: Optional[int] = None) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image.

    Applies EXIF orientation and the mode policy of this module; does not
    resize, except that a JPEG above :data:`DRAFT_PIXELS` is decoded at a reduced
    scale when ``min_side`` (the shorter side the caller will resize to) is given.
    An animated image gives its first frame, with a warning.
    Raises InputError for a missing, unreadable or damaged file.
    """
    name = os.fspath(path)
    if os.path.islink(name) and not os.path.exists(name):
        raise InputError(f"cannot read image '{name}': broken symlink or symlink loop")
    if not os.path.exists(name):
        raise InputError(f"cannot read image '{name}': no such file")
    if os.path.isdir(name):
        raise InputError(f"cannot read image '{name}': is a directory")
    if os.path.getsize(name) == 0:
        raise InputError(f"cannot read image '{name}': file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(name) as img:
                _draft(img, min_side)
                if getattr(img, "n_frames", 1) > 1:
                    warnings.warn(f"'{name}' is animated ({img.n_frames} frames): using its first frame", InputWarning)
                    img.seek(0)
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except UnidentifiedImageError as exc:
        raise InputError(
            f"'{name}' is not an image file (format not recognised or header damaged)"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"cannot read image '{name}': too many pixels "
            f"(more than {Image.MAX_IMAGE_PIXELS}; possible decompression bomb)"
        ) from exc
    except PermissionError as exc:
        raise InputError(f"cannot read image '{name}': permission denied") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read image '{name}': file is truncated or corrupt") from exc


def load_image(path: PathLike, size: int) -> torch.Tensor:
    """Read an image as a (3, size, size) float32 tensor in [-1, 1].

    Official Diff-AE preprocessing: :func:`load_image_u8`, then the shorter
    side is resized to ``size`` (bilinear, antialiased) and the centre
    ``size`` x ``size`` square is cropped.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    return fit_image(load_image_u8(path, size), size, os.fspath(path))


def fit_image(img: Image.Image, size: int, name: str = "image") -> torch.Tensor:
    """An RGB image -> (3, size, size) float32 in [-1, 1] as the official loader makes it: the shorter side resized
    to ``size`` (bilinear, antialiased), then the centre square cropped."""
    width, height = img.size
    resized_pixels = size * size * max(width, height) / min(width, height)
    if Image.MAX_IMAGE_PIXELS is not None and resized_pixels > Image.MAX_IMAGE_PIXELS:
        raise InputError(
            f"cannot read image '{name}': aspect ratio {width}x{height} "
            f"is too extreme to resize to {size}x{size}"
        )
    # torchvision's Resize(size) + CenterCrop(size) on a PIL image, step for step (importing torchvision costs
    # a command half a second): the shorter side to size, the longer truncated; PIL's antialiased bilinear
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return from_u8(np.asarray(img.crop((left, top, left + size, top + size))))


def from_u8(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) float32 tensor in [-1, 1].

    Same arithmetic as ``ToTensor()`` followed by ``Normalize(0.5, 0.5)``.
    """
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"expected an (H, W, 3) uint8 array, got {array.dtype} {tuple(array.shape)}"
        )
    tensor = torch.tensor(array).permute(2, 0, 1).contiguous()
    return tensor.to(torch.float32).div(255).sub(0.5).div(0.5)


def to_model_range(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [-1, 1]."""
    return batch_u8.float() / 127.5 - 1.0


def to_u8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor in [-1, 1] -> (H, W, 3) uint8 array.

    Values are clamped to [-1, 1] and rounded to nearest: floor((x+1)/2*255 + 0.5).
    """
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(img.shape)}")
    x = img.detach().to("cpu", torch.float32)
    if torch.isnan(x).any():
        raise NumericalError("the decoded image holds NaN values (a numerical overflow: an extreme edit or latent "
                             f"code, or reduced precision; {opt('precision')} fp32 rules out the last)")
    x = ((x.clamp(-1, 1) + 1) / 2 * 255 + 0.5).floor().clamp(0, 255)
    return x.to(torch.uint8).permute(1, 2, 0).numpy()


def check_writable_extension(path: PathLike) -> None:
    """Refuse an output name whose extension :func:`save_image` cannot write (before any work is done)."""
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if ext not in _SAVE_FORMATS:
        raise InputError(
            f"cannot write '{name}': unsupported extension '{ext}' "
            f"(use one of {', '.join(sorted(_SAVE_FORMATS))})"
        )


def save_image(img: torch.Tensor, path: PathLike, exclusive: bool = False) -> None:
    """Atomically write a (3, H, W) tensor in [-1, 1] as PNG, JPEG, WEBP, BMP or TIFF (by extension).

    ``exclusive``: refuse (InputError) if ``path`` exists, even if it appeared while the image was computed.
    """
    name = os.fspath(path)
    check_writable_extension(name)
    fmt, options = _SAVE_FORMATS[os.path.splitext(name)[1].lower()]
    pil = Image.fromarray(to_u8(img), "RGB")
    atomic_write(name, lambda f: pil.save(f, format=fmt, **options), exclusive)


def make_grid(
    images: torch.Tensor, ncol: int, pad: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Tile (N, 3, H, W) images row by row into one (3, H', W') image.

    ``ncol`` images per row (fewer if N < ncol); ``pad`` pixels of
    ``pad_value`` (1.0 = white) between images and around the border;
    empty cells of the last row are filled with ``pad_value``.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"expected (N, 3, H, W) images, got shape {tuple(images.shape)}")
    if ncol < 1:
        raise ValueError(f"ncol must be positive, got {ncol}")
    if images.shape[0] == 1:  # torchvision returns a single image without its border
        return torch.nn.functional.pad(images[0], (pad, pad, pad, pad), value=pad_value)
    import torchvision.utils  # here, not at the top: a command that draws no grid does not pay its import

    return torchvision.utils.make_grid(images, nrow=ncol, padding=pad, pad_value=pad_value)


DISPLAY_MIN_TILE = 256
"""Comparison pictures (side-by-side comparisons, sweeps, direction overviews) show each tile at least this many pixels wide:
smaller models' tiles are enlarged by an integer factor with nearest-neighbour (no new detail is invented)."""


def display_grid(images: torch.Tensor, ncol: int, col_labels: Optional[Sequence[str]] = None,
                 row_labels: Optional[Sequence[str]] = None, min_tile: int = DISPLAY_MIN_TILE) -> torch.Tensor:
    """A comparison grid for people: tiles (N, 3, S, S) in [-1, 1] enlarged to at least ``min_tile`` px
    (nearest-neighbour, integer factor), laid out ``ncol`` per row, with a label above each column and before
    each row when given. Returns (3, H, W) in [-1, 1]."""
    size = images.shape[-1]
    factor = max(1, -(-min_tile // size))
    if factor > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=factor, mode="nearest")
    grid = make_grid(images, ncol=ncol)
    if not col_labels and not row_labels:
        return grid

    tile, pad = images.shape[-1], 2
    try:
        font = ImageFont.load_default(size=max(12, tile // 14))
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_h = max(probe.textbbox((0, 0), "Ag+0.5", font=font)[3], 10) + 6
    left = max([probe.textbbox((0, 0), t, font=font)[2] for t in row_labels or []] + [0]) + (10 if row_labels else 0)
    top = text_h if col_labels else 0
    body = Image.fromarray(to_u8(grid))
    canvas = Image.new("RGB", (body.width + left, body.height + top), (255, 255, 255))
    canvas.paste(body, (left, top))
    draw = ImageDraw.Draw(canvas)
    step = tile + pad
    for c, text in enumerate(col_labels or []):
        width = draw.textbbox((0, 0), text, font=font)[2]
        draw.text((left + pad + c * step + (tile - width) // 2, 3), text, fill=(0, 0, 0), font=font)
    for r, text in enumerate(row_labels or []):
        height = draw.textbbox((0, 0), text, font=font)[3]
        draw.text((4, top + pad + r * step + (tile - height) // 2), text, fill=(0, 0, 0), font=font)
    return from_u8(np.asarray(canvas))


def save_gif(
    frames: Sequence[torch.Tensor],
    path: PathLike,
    duration_ms: int = 100,
    loop: int = 0,
    pingpong: bool = False,
    exclusive: bool = False,
) -> None:
    """Atomically write (3, H, W) frames in [-1, 1] as an animated GIF.

    ``loop=0`` repeats forever; ``pingpong`` plays the frames forward then
    backward (end frames not repeated). Pillow merges identical consecutive
    frames, adding up their durations.
    """
    name = os.fspath(path)
    if os.path.splitext(name)[1].lower() != ".gif":
        raise InputError(f"cannot write '{name}': an animation must have the extension .gif")
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    images: List[Image.Image] = [Image.fromarray(to_u8(f), "RGB") for f in frames]
    if pingpong:
        images = images + images[-2:0:-1]
    atomic_write(
        name,
        lambda f: images[0].save(
            f,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=duration_ms,
            loop=loop,
        ),
        exclusive,
    )
