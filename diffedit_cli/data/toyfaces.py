"""Procedural "toy faces": cartoon faces whose attributes, part masks and counterfactuals are known exactly.

Real face datasets are not available, so the Diff-AE models are trained and benchmarked on these. A face is
a :class:`FaceParams` (scalar parameters sampled from one integer seed); :func:`render` draws it at 4x and
box-downsamples, so every output pixel depends only on its own 4x4 block of sub-samples. That makes the part
masks exact and counterfactual edits local: :func:`with_attribute` changes one attribute, and for a part-local
attribute (Smiling, Mouth_Slightly_Open, Narrow_Eyes, Eyeglasses, ...) only pixels inside that part's masks
(before or after the edit) change.

Conventions: every float parameter lies in [0, 1] and is mapped to geometry/colour by :func:`render`; ints are
category indices; bools are the attribute switches. Every face carries the appearance parameters of every
optional part (frame colour, hat colour, beard extent, gap size, ...) even when the part is off, so switching a
part on is deterministic.

Attributes (CelebA names and meanings) and parameter groups, for group-supervised swapping (:func:`share_group`):

============  ===========================================  ===============================================
group         attributes                                   other parameters
============  ===========================================  ===============================================
identity      Male, No_Beard, Pale_Skin                    skin tone, face aspect, jaw, brows, nose, lips,
                                                           beard extent
hair          Bangs, Black_Hair, Blond_Hair                colour (black/blond/brown/red/grey), shade,
                                                           style (short/medium/long), volume, fringe length
mouth         Smiling, Mouth_Slightly_Open                 smile/opening amount, mouth width
eyes          Narrow_Eyes                                  openness, spacing, iris colour, gaze
accessories   Eyeglasses, Wearing_Hat                      frame colour/shape/size, hat colour/height
background    -                                            pattern (plain/gradient/stripes), colours,
                                                           angle, stripe period
pose          -                                            position, scale, tilt, lighting gradient
============  ===========================================  ===============================================

The beard (No_Beard) is in ``identity``: it is tied to Male (no woman has a beard), and swapping the ``mouth``
group must not put a beard on a woman. What each attribute looks like at 64x64:

- Smiling: mouth corners clearly above its middle (curved arc); otherwise a flat or slightly down-turned mouth.
- Mouth_Slightly_Open: a dark gap between the lips (with teeth when also smiling).
- Narrow_Eyes: eyes are thin slits (height ~0.2 of width instead of ~0.7), iris mostly hidden.
- Eyeglasses: dark frames around both eyes, a bridge and temple arms.
- Wearing_Hat: a coloured crown with a darker brim covering the head down to the hairline.
- Bangs: a fringe of hair over the forehead, ending above the brows. The hat's brim sits on the hairline,
  so a fringe stays visible under a hat: Bangs is labelled exactly when the fringe is drawn.
- Blond_Hair / Black_Hair: hair colour; brown, red and grey hair are neither. Brows follow the hair colour.
- Pale_Skin: very light, low-saturation skin; other skin tones are clearly more saturated or darker.
- No_Beard: False draws a dark beard over the jaw, chin and upper lip.
- Male: a broader, squarer jaw, thicker brows, a wider face and neck and less red lips (geometry, not only the
  correlated short hair and beard).

Sampling correlations (:func:`sample_face`):

=====================================  ==========================================================
quantity                               probability
=====================================  ==========================================================
Male                                   0.5
beard (No_Beard False)                 0.6 if Male, 0 otherwise
hair colour black/blond/brown/red/grey male 0.35/0.15/0.35/0.07/0.08, female 0.25/0.32/0.28/0.08/0.07
hair style short/medium/long           male 0.85/0.15/0, female 0.10/0.35/0.55
Bangs                                  0.20 if Male, 0.45 otherwise
Pale_Skin                              0.40 with blond or red hair, 0.18 otherwise
Mouth_Slightly_Open                    0.60 if Smiling, 0.25 otherwise
Narrow_Eyes                            0.35 if Smiling, 0.15 otherwise
Smiling                                0.5
Eyeglasses                             0.30 if Male, 0.20 otherwise
Wearing_Hat                            0.22
=====================================  ==========================================================

Resulting frequencies are 0.2-0.7 for every attribute. Blond_Hair and Black_Hair are mutually exclusive
(one hair colour).
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DiffeditError, InputError

ATTRIBUTES = [
    "Bangs", "Black_Hair", "Blond_Hair", "Eyeglasses", "Male", "Mouth_Slightly_Open",
    "Narrow_Eyes", "No_Beard", "Pale_Skin", "Smiling", "Wearing_Hat",
]  # CelebA's relative order

PARTS = ["background", "hair", "skin", "beard", "nose", "mouth", "eyes", "brows", "glasses", "hat"]
"""Mask names; the index is the part's label while drawing (ears and neck count as skin)."""

HAIR_COLORS = ("black", "blond", "brown", "red", "grey")
HAIR_STYLES = ("short", "medium", "long")
BACKGROUND_PATTERNS = ("plain", "gradient", "stripes")
IRIS_COLORS = ("brown", "dark", "blue", "green")
FRAME_COLORS = ("black", "brown", "navy", "wine")

_BLACK, _BLOND, _BROWN = 0, 1, 2
_SUPERSAMPLE = 4
_MIN_SIZE = 16


def _param(group: str):
    return dataclasses.field(metadata={"group": group})


@dataclasses.dataclass(frozen=True)
class FaceParams:
    """All parameters of one face. Floats are in [0, 1]; ints index the tuples named in the comments."""

    # identity
    male: bool = _param("identity")
    beard: bool = _param("identity")
    pale_skin: bool = _param("identity")
    skin_tone: float = _param("identity")  # 0 darkest .. 1 lightest (within pale / non-pale range)
    face_aspect: float = _param("identity")  # 0 round .. 1 long
    jaw_shape: float = _param("identity")  # 0 narrow .. 1 broad (within the male / female range)
    brow_thickness: float = _param("identity")
    brow_raise: float = _param("identity")
    brow_slant: float = _param("identity")
    nose_length: float = _param("identity")
    nose_width: float = _param("identity")
    lip_tint: float = _param("identity")
    beard_extent: float = _param("identity")  # how high the beard reaches
    # hair
    hair_color: int = _param("hair")  # HAIR_COLORS
    hair_shade: float = _param("hair")
    hair_style: int = _param("hair")  # HAIR_STYLES
    hair_volume: float = _param("hair")
    bangs: bool = _param("hair")
    bangs_length: float = _param("hair")
    # mouth
    smiling: bool = _param("mouth")
    mouth_open: bool = _param("mouth")
    smile_amount: float = _param("mouth")
    open_amount: float = _param("mouth")
    mouth_width: float = _param("mouth")
    # eyes
    narrow_eyes: bool = _param("eyes")
    eye_openness: float = _param("eyes")
    eye_spacing: float = _param("eyes")
    iris_color: int = _param("eyes")  # IRIS_COLORS
    gaze: float = _param("eyes")  # 0 left .. 1 right
    # accessories
    eyeglasses: bool = _param("accessories")
    frame_color: int = _param("accessories")  # FRAME_COLORS
    frame_shape: float = _param("accessories")  # 0 round .. 1 rectangular
    frame_size: float = _param("accessories")
    wearing_hat: bool = _param("accessories")
    hat_hue: float = _param("accessories")
    hat_shade: float = _param("accessories")
    hat_height: float = _param("accessories")
    # background
    bg_pattern: int = _param("background")  # BACKGROUND_PATTERNS
    bg_hue: float = _param("background")
    bg_saturation: float = _param("background")
    bg_value: float = _param("background")
    bg_contrast: float = _param("background")  # difference of the second colour
    bg_angle: float = _param("background")
    bg_period: float = _param("background")
    # pose
    center_x: float = _param("pose")
    center_y: float = _param("pose")
    head_scale: float = _param("pose")
    tilt: float = _param("pose")  # 0.5 upright
    light_angle: float = _param("pose")
    light_strength: float = _param("pose")


class ParamGroup(NamedTuple):
    """Attributes and parameter fields of one group."""

    attributes: tuple[str, ...]
    fields: tuple[str, ...]


_ATTRIBUTE_GROUP = {
    "Male": "identity", "No_Beard": "identity", "Pale_Skin": "identity",
    "Bangs": "hair", "Black_Hair": "hair", "Blond_Hair": "hair",
    "Smiling": "mouth", "Mouth_Slightly_Open": "mouth",
    "Narrow_Eyes": "eyes",
    "Eyeglasses": "accessories", "Wearing_Hat": "accessories",
}
_GROUP_NAMES = ("identity", "hair", "mouth", "eyes", "accessories", "background", "pose")

GROUPS: dict[str, ParamGroup] = {
    group: ParamGroup(
        attributes=tuple(a for a in ATTRIBUTES if _ATTRIBUTE_GROUP[a] == group),
        fields=tuple(f.name for f in dataclasses.fields(FaceParams) if f.metadata["group"] == group),
    )
    for group in _GROUP_NAMES
}

# attributes that are simply a bool field
_FLAG_FIELDS = {
    "Bangs": "bangs", "Eyeglasses": "eyeglasses", "Mouth_Slightly_Open": "mouth_open",
    "Narrow_Eyes": "narrow_eyes", "Pale_Skin": "pale_skin", "Smiling": "smiling", "Wearing_Hat": "wearing_hat",
}


def sample_face(seed: int) -> FaceParams:
    """The face of ``seed`` (an int >= 0), drawn with ``numpy.random.default_rng(seed)``; see the module table."""
    rng = np.random.default_rng(seed)

    def unit() -> float:
        return float(rng.random())

    def chance(p: float) -> bool:
        return bool(rng.random() < p)

    def pick(probs: list[float]) -> int:
        return int(rng.choice(len(probs), p=probs))

    male = chance(0.5)
    hair_color = pick([0.35, 0.15, 0.35, 0.07, 0.08] if male else [0.25, 0.32, 0.28, 0.08, 0.07])
    smiling = chance(0.5)
    return FaceParams(
        male=male,
        beard=chance(0.6 if male else 0.0),
        pale_skin=chance(0.4 if HAIR_COLORS[hair_color] in ("blond", "red") else 0.18),
        skin_tone=unit(), face_aspect=unit(), jaw_shape=unit(), brow_thickness=unit(), brow_raise=unit(),
        brow_slant=unit(), nose_length=unit(), nose_width=unit(), lip_tint=unit(), beard_extent=unit(),
        hair_color=hair_color,
        hair_shade=unit(),
        hair_style=pick([0.85, 0.15, 0.0] if male else [0.10, 0.35, 0.55]),
        hair_volume=unit() * (0.5 if male else 1.0),
        bangs=chance(0.2 if male else 0.45),
        bangs_length=unit(),
        smiling=smiling,
        mouth_open=chance(0.6 if smiling else 0.25),
        smile_amount=unit(), open_amount=unit(), mouth_width=unit(),
        narrow_eyes=chance(0.35 if smiling else 0.15),
        eye_openness=unit(), eye_spacing=unit(),
        iris_color=pick([0.4, 0.25, 0.2, 0.15]),
        gaze=unit(),
        eyeglasses=chance(0.3 if male else 0.2),
        frame_color=pick([1.0 / len(FRAME_COLORS)] * len(FRAME_COLORS)),
        frame_shape=unit(), frame_size=unit(),
        wearing_hat=chance(0.22),
        hat_hue=unit(), hat_shade=unit(), hat_height=unit(),
        bg_pattern=pick([0.4, 0.35, 0.25]),
        bg_hue=unit(), bg_saturation=unit(), bg_value=unit(), bg_contrast=unit(), bg_angle=unit(),
        bg_period=unit(),
        center_x=unit(), center_y=unit(), head_scale=unit(), tilt=unit(), light_angle=unit(),
        light_strength=unit(),
    )


def attributes(params: FaceParams) -> dict[str, bool]:
    """The face's labels, ``{name: bool}`` in :data:`ATTRIBUTES` order; each is visible in the render."""
    labels = {
        "Black_Hair": params.hair_color == _BLACK,
        "Blond_Hair": params.hair_color == _BLOND,
        "Male": params.male,
        "No_Beard": not params.beard,
    }
    labels.update({name: getattr(params, field) for name, field in _FLAG_FIELDS.items()})
    return {name: bool(labels[name]) for name in ATTRIBUTES}


def with_attribute(params: FaceParams, name: str, value: bool) -> FaceParams:
    """The same face with attribute ``name`` set to ``value``; all other parameters are kept.

    Implied changes (everything else is a single switch):

    ====================  ==========================================================
    edit                  also changes
    ====================  ==========================================================
    Blond_Hair=True       hair colour := blond (so Black_Hair=False)
    Blond_Hair=False      blond hair becomes brown (neither Blond nor Black)
    Black_Hair=True       hair colour := black (so Blond_Hair=False)
    Black_Hair=False      black hair becomes brown
    Male=False            the beard is removed (No_Beard=True)
    No_Beard=False        Male=True (only men have beards)
    ====================  ==========================================================

    Switching a part on uses the face's own stored appearance of that part (frame colour, hat colour, beard
    extent, ...). Male changes jaw, brows, face/neck width and lip colour through the same latent parameters.
    """
    if name not in _ATTRIBUTE_GROUP:
        raise InputError(f"unknown attribute {name!r}; toy faces have: {', '.join(ATTRIBUTES)}")
    value = bool(value)
    if attributes(params)[name] == value:
        return params
    if name == "Blond_Hair":
        return dataclasses.replace(params, hair_color=_BLOND if value else _BROWN)
    if name == "Black_Hair":
        return dataclasses.replace(params, hair_color=_BLACK if value else _BROWN)
    if name == "Male":
        return dataclasses.replace(params, male=value, beard=params.beard and value)
    if name == "No_Beard":
        return dataclasses.replace(params, beard=not value, male=params.male or not value)
    return dataclasses.replace(params, **{_FLAG_FIELDS[name]: value})


def share_group(a: FaceParams, b: FaceParams, group: str) -> FaceParams:
    """A copy of ``a`` whose parameters of ``group`` (a key of :data:`GROUPS`) are those of ``b``."""
    if group not in GROUPS:
        raise InputError(f"unknown parameter group {group!r}; groups are: {', '.join(GROUPS)}")
    return dataclasses.replace(a, **{field: getattr(b, field) for field in GROUPS[group].fields})


def face_seed(dataset_seed: int, index: int) -> int:
    """Seed of face ``index`` of the dataset written with ``dataset_seed``."""
    return dataset_seed * 1_000_003 + index


# ---------------------------------------------------------------------------------------------- rendering

class _Layout(NamedTuple):
    """Derived geometry and colours; lengths are fractions of the image size, relative to the head centre."""

    center: tuple[float, float]
    tilt: float  # radians
    half_width: float  # A: face half-width
    half_height: float  # B: face half-height
    jaw: float  # width factor of the lower face at the chin end
    jaw_exponent: float  # superellipse exponent of the lower face (2 oval .. 3 square)
    hair_width: float  # half-axes of the hair ellipse
    hair_height: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]


def _lerp(c0, c1, t: float) -> tuple[float, float, float]:
    return tuple(x0 + (x1 - x0) * t for x0, x1 in zip(c0, c1))


def _scale(color, factor: float) -> tuple[float, float, float]:
    return tuple(min(1.0, x * factor) for x in color)


def _skin_color(p: FaceParams) -> tuple[float, float, float]:
    if p.pale_skin:
        return _lerp((0.94, 0.85, 0.80), (1.0, 0.94, 0.90), p.skin_tone)
    dark, medium, light = (0.36, 0.22, 0.14), (0.70, 0.48, 0.33), (0.87, 0.66, 0.51)
    if p.skin_tone < 0.4:
        return _lerp(dark, medium, p.skin_tone / 0.4)
    return _lerp(medium, light, (p.skin_tone - 0.4) / 0.6)


_HAIR_RGB = (  # darkest, lightest per HAIR_COLORS entry
    ((0.05, 0.04, 0.04), (0.15, 0.11, 0.09)),
    ((0.90, 0.74, 0.32), (1.0, 0.90, 0.55)),
    ((0.30, 0.17, 0.08), (0.47, 0.30, 0.16)),
    ((0.58, 0.20, 0.07), (0.78, 0.36, 0.15)),
    ((0.55, 0.55, 0.56), (0.80, 0.80, 0.80)),
)
_IRIS_RGB = ((0.38, 0.22, 0.10), (0.14, 0.09, 0.06), (0.30, 0.50, 0.78), (0.30, 0.55, 0.32))
_FRAME_RGB = ((0.05, 0.05, 0.05), (0.26, 0.14, 0.06), (0.08, 0.10, 0.32), (0.36, 0.05, 0.09))
_EYE_WHITE, _PUPIL, _LASH = (0.96, 0.96, 0.94), (0.03, 0.03, 0.03), (0.10, 0.07, 0.06)
_MOUTH_GAP, _TEETH = (0.22, 0.04, 0.06), (0.97, 0.95, 0.90)


def _layout(p: FaceParams) -> _Layout:
    half_width = 0.19 * (0.92 + 0.16 * p.head_scale) * (1.06 if p.male else 1.0)
    half_height = half_width * (1.22 + 0.16 * p.face_aspect) * (0.96 if p.male else 1.0)
    return _Layout(
        center=(0.5 + 0.1 * (p.center_x - 0.5), 0.53 + 0.08 * (p.center_y - 0.5)),
        tilt=math.radians(20.0 * (p.tilt - 0.5)),
        half_width=half_width,
        half_height=half_height,
        jaw=0.92 + 0.08 * p.jaw_shape if p.male else 0.62 + 0.14 * p.jaw_shape,
        jaw_exponent=2.8 + 0.6 * p.jaw_shape if p.male else 2.0 + 0.2 * p.jaw_shape,
        hair_width=half_width * (1.07 + 0.08 * p.hair_volume),
        hair_height=half_height * (1.05 + 0.12 * p.hair_volume),
        skin=_skin_color(p),
        hair=_lerp(*_HAIR_RGB[p.hair_color], p.hair_shade),
    )


class _Painter:
    """Fills polygons given in face coordinates into the colour image and the part-label map (both at 4x)."""

    def __init__(self, background: Image.Image, layout: _Layout):
        self.hi = background.size[0]
        self.image = background
        self.labels = Image.new("L", self.image.size, PARTS.index("background"))
        self._rgb = ImageDraw.Draw(self.image)
        self._label = ImageDraw.Draw(self.labels)
        self._center = layout.center
        self._cos, self._sin = math.cos(layout.tilt), math.sin(layout.tilt)

    def fill(self, u: np.ndarray, v: np.ndarray, color, part: str) -> None:
        """Fill the polygon with vertices (u, v) (face coordinates: right, down) with ``color`` (RGB in [0, 1])."""
        x = (self._center[0] + self._cos * u - self._sin * v) * self.hi
        y = (self._center[1] + self._sin * u + self._cos * v) * self.hi
        xy = np.stack([x, y], axis=1).ravel().tolist()
        self._rgb.polygon(xy, fill=tuple(int(round(255 * c)) for c in color))
        self._label.polygon(xy, fill=PARTS.index(part))


def _superellipse(cu: float, cv: float, a: float, b: float, exponent: float = 2.0, n: int = 32,
                  start: float = 0.0, stop: float = 2 * math.pi):
    """Points of |u/a|^e + |v/b|^e = 1 around (cu, cv) for angles in [start, stop) (``stop`` included if partial)."""
    t = np.linspace(start, stop, n, endpoint=stop - start < 2 * math.pi - 1e-9)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / exponent
    return cu + a * np.sign(c) * np.abs(c) ** e, cv + b * np.sign(s) * np.abs(s) ** e


def _band(u: np.ndarray, top: np.ndarray, bottom: np.ndarray):
    """Polygon between the curves v=top(u) and v=bottom(u), sampled at ``u``."""
    return np.concatenate([u, u[::-1]]), np.concatenate([top, bottom[::-1]])


def _cut(u: np.ndarray, v: np.ndarray, boundary: Callable[[np.ndarray], np.ndarray], keep_above: bool, n: int = 16):
    """The part of the open curve (u, v) above (or below) v=boundary(u), closed along the boundary."""
    keep = v < boundary(u) if keep_above else v > boundary(u)
    u, v = u[keep], v[keep]
    closing_u = np.linspace(u[-1], u[0], n)
    return np.concatenate([u, closing_u]), np.concatenate([v, boundary(closing_u)])


def _face_outline(lay: _Layout, start: float, stop: float, n: int = 48):
    """Face outline for angles [start, stop] (0 right, pi/2 chin): oval on top, jaw-shaped below."""
    t = np.linspace(start, stop, n)
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    e = np.where(lower, 2.0 / lay.jaw_exponent, 1.0)
    narrowing = np.where(lower, 1.0 - (1.0 - lay.jaw) * s ** 2, 1.0)
    u = lay.half_width * np.sign(c) * np.abs(c) ** e * narrowing
    v = lay.half_height * np.sign(s) * np.abs(s) ** e
    return u, v


def _background(p: FaceParams, hi: int) -> Image.Image:
    """Background at 4x, an RGB image (hi, hi)."""
    first = np.array(colorsys.hsv_to_rgb(p.bg_hue, 0.1 + 0.5 * p.bg_saturation, 0.35 + 0.6 * p.bg_value))
    second = np.array(colorsys.hsv_to_rgb((p.bg_hue + 0.1 + 0.3 * p.bg_contrast) % 1.0,
                                          0.1 + 0.5 * p.bg_saturation, 0.35 + 0.6 * (1.0 - p.bg_value)))
    pattern = BACKGROUND_PATTERNS[p.bg_pattern]
    if pattern == "plain":
        return Image.new("RGB", (hi, hi), tuple(int(round(255 * c)) for c in first))
    coords = (np.arange(hi, dtype=np.float32) + 0.5) / hi - 0.5
    angle = 2 * math.pi * p.bg_angle
    along = math.cos(angle) * coords[None, :] + math.sin(angle) * coords[:, None]
    if pattern == "gradient":
        level = np.clip(along * (255 / 1.42) + 128, 0, 255).astype(np.uint8)
    else:
        level = ((along * (1.0 / (0.08 + 0.12 * p.bg_period))) % 1.0 >= 0.5).astype(np.uint8) * 255
    palette = np.linspace(0.0, 1.0, 256)[:, None] * (second - first) + first
    return Image.fromarray((palette * 255).round().astype(np.uint8)[level])


def _draw_hair_back(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    u, v = _superellipse(0.0, 0.0, lay.hair_width, lay.hair_height, start=math.pi, stop=2 * math.pi)
    style = HAIR_STYLES[p.hair_style]
    if style != "short":
        bottom, flare = (0.65, 1.02) if style == "medium" else (1.9, 1.12)
        side = lay.hair_width * flare
        u = np.concatenate([u, [side, -side]])
        v = np.concatenate([v, [bottom * lay.half_height] * 2])
    paint.fill(u, v, lay.hair, "hair")


def _draw_head(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    A, B = lay.half_width, lay.half_height
    neck = A * (0.6 if p.male else 0.47)
    paint.fill(np.array([-neck, neck, neck, -neck]), np.array([0.4, 0.4, 3.0, 3.0]) * B,
               _scale(lay.skin, 0.86), "skin")
    for side in (-1.0, 1.0):
        paint.fill(*_superellipse(side * 0.98 * A, 0.06 * B, 0.13 * A, 0.21 * B, n=16), _scale(lay.skin, 0.93), "skin")
    paint.fill(*_face_outline(lay, 0.0, 2 * math.pi), lay.skin, "skin")


def _draw_beard(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    if not p.beard:
        return
    A, B = lay.half_width, lay.half_height
    top = B * (0.36 + 0.1 * (1.0 - p.beard_extent))

    def boundary(u):
        return top - 0.32 * B * (u / A) ** 2

    color = _lerp(_scale(lay.hair, 0.8), _scale(lay.skin, 0.45), 0.5)
    paint.fill(*_cut(*_face_outline(lay, 0.0, math.pi), boundary, keep_above=False), color, "beard")


def _draw_nose(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    A, B = lay.half_width, lay.half_height
    bottom = B * (0.26 + 0.08 * p.nose_length)
    ridge_v = np.array([0.02 * B, bottom - 0.06 * B])
    ridge_u = np.array([0.05 * A, 0.11 * A])
    paint.fill(*_band(ridge_u, ridge_v, ridge_v + 0.045 * A), _scale(lay.skin, 0.85), "nose")
    paint.fill(*_superellipse(0.0, bottom, A * (0.10 + 0.06 * p.nose_width), 0.035 * B, n=16),
               _scale(lay.skin, 0.7), "nose")


def _draw_mouth(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    A, B = lay.half_width, lay.half_height
    width = A * (0.32 + 0.08 * p.mouth_width) * (1.12 if p.smiling else 1.0)
    curve = width * (0.38 + 0.14 * p.smile_amount if p.smiling else -0.12 + 0.14 * p.smile_amount)
    u = width * np.linspace(-1.0, 1.0, 15)
    k = 1.0 - (u / width) ** 2
    middle = 0.56 * B + curve * k
    gap = width * (0.32 + 0.2 * p.open_amount) * k ** 0.8 if p.mouth_open else np.zeros_like(u)
    upper_lip = width * (0.13 * np.sqrt(k) + 0.02)
    lower_lip = width * (0.17 * np.sqrt(k) + 0.02)
    lip_color = _lerp(_scale(lay.skin, 0.8), (0.62, 0.16, 0.2), (0.35 + 0.35 * p.lip_tint) * (0.4 if p.male else 1.0))
    paint.fill(*_band(u, middle - upper_lip, middle + gap + lower_lip), lip_color, "mouth")
    if p.mouth_open:
        paint.fill(*_band(u, middle, middle + gap), _MOUTH_GAP, "mouth")
        if p.smiling:
            paint.fill(*_band(u, middle, middle + 0.4 * gap), _TEETH, "mouth")
    else:
        paint.fill(*_band(u, middle - 0.03 * width, middle + 0.03 * width), _scale(lip_color, 0.55), "mouth")


def _draw_eyes(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    A = lay.half_width
    half_w = 0.21 * A
    upper = half_w * (0.14 + 0.06 * p.eye_openness if p.narrow_eyes else 0.62 + 0.15 * p.eye_openness)
    lower = 0.75 * upper
    spacing = A * (0.35 + 0.07 * p.eye_spacing)
    gaze = (p.gaze - 0.5) * 0.25 * half_w
    iris_r = 0.5 * half_w

    def clip_to_eye(u, v):
        k = np.sqrt(np.clip(1.0 - (u / half_w) ** 2, 0.0, None))
        return u, np.clip(v, -upper * k, lower * k)

    lid_u = half_w * np.linspace(-1.0, 1.0, 12)
    lid_v = -upper * np.sqrt(1.0 - (lid_u / half_w) ** 2)
    lash = 0.07 * A
    for side in (-1.0, 1.0):
        eye_u, eye_v = _superellipse(0.0, 0.0, half_w, 1.0, n=24)
        eye_v = eye_v * np.where(eye_v < 0, upper, lower)
        paint.fill(eye_u + side * spacing, eye_v, _EYE_WHITE, "eyes")
        iris_u, iris_v = clip_to_eye(*_superellipse(gaze, 0.0, iris_r, iris_r, n=20))
        paint.fill(iris_u + side * spacing, iris_v, _IRIS_RGB[p.iris_color], "eyes")
        pupil_u, pupil_v = clip_to_eye(*_superellipse(gaze, 0.0, 0.45 * iris_r, 0.45 * iris_r, n=12))
        paint.fill(pupil_u + side * spacing, pupil_v, _PUPIL, "eyes")
        paint.fill(*_band(lid_u + side * spacing, lid_v - lash, lid_v + 0.2 * lash), _LASH, "eyes")


def _draw_brows(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    A, B = lay.half_width, lay.half_height
    half_len = 0.27 * A
    thickness = B * (0.075 + 0.03 * p.brow_thickness if p.male else 0.035 + 0.02 * p.brow_thickness)
    spacing = A * (0.35 + 0.07 * p.eye_spacing)
    x = half_len * np.linspace(-1.0, 1.0, 10)
    slant = 0.08 * B * (p.brow_slant - 0.5)
    color = _lerp(lay.hair, (0.1, 0.07, 0.05), 0.25)
    for side in (-1.0, 1.0):
        outward = side * x / half_len  # -1 at the inner end, 1 at the outer end
        centre = -B * (0.21 + 0.04 * p.brow_raise) - 0.03 * B * (1.0 - (x / half_len) ** 2) + slant * outward
        half_thick = 0.5 * thickness * (1.0 - 0.35 * outward)
        paint.fill(*_band(x + side * spacing, centre - half_thick, centre + half_thick), color, "brows")


def _hairline(lay: _Layout, u: np.ndarray) -> np.ndarray:
    return lay.half_height * (-0.68 + 0.53 * (u / lay.hair_width) ** 4)


def _draw_hair_front(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    A, B = lay.half_width, lay.half_height
    arc = _superellipse(0.0, 0.0, lay.hair_width, lay.hair_height, n=40, start=math.pi, stop=2 * math.pi)
    paint.fill(*_cut(*arc, lambda u: _hairline(lay, u), keep_above=True), lay.hair, "hair")
    style = HAIR_STYLES[p.hair_style]
    if style != "short":
        bottom, flare = (0.55, 1.02) if style == "medium" else (1.9, 1.12)
        v = B * np.linspace(-0.45, bottom, 12)
        inner = 0.84 * A * np.sqrt(np.maximum(1.0 - (v / B) ** 2, 0.5))
        outer_v = np.array([bottom * B, -0.45 * B])
        for side in (-1.0, 1.0):
            u = np.concatenate([side * inner, side * lay.hair_width * np.array([flare, 1.0])])
            paint.fill(u, np.concatenate([v, outer_v]), lay.hair, "hair")
    if p.bangs:
        base = -B * (0.3 + 0.06 * (1.0 - p.bangs_length))

        def fringe(u):
            return base + 0.04 * B * np.abs(np.sin(u * (math.pi / (0.22 * A))))

        paint.fill(*_cut(*arc, fringe, keep_above=True, n=33), _scale(lay.hair, 0.8), "hair")
        paint.fill(*_cut(*arc, lambda u: fringe(u) - 0.05 * B, keep_above=True, n=33), lay.hair, "hair")


def _draw_glasses(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    if not p.eyeglasses:
        return
    A = lay.half_width
    spacing = A * (0.35 + 0.07 * p.eye_spacing)
    half_w, half_h = A * (0.3 + 0.06 * p.frame_size), A * (0.22 + 0.04 * p.frame_size)
    frame = 0.085 * A
    exponent = 2.0 + 2.5 * p.frame_shape
    color = _FRAME_RGB[p.frame_color]
    for side in (-1.0, 1.0):
        outer_u, outer_v = _superellipse(side * spacing, 0.0, half_w, half_h, exponent, n=28)
        inner_u, inner_v = _superellipse(side * spacing, 0.0, half_w - frame, half_h - frame, exponent, n=28)
        # keyhole polygon: the outer loop, then the inner loop backwards, joined by a zero-width seam
        ring_u = np.concatenate([outer_u, outer_u[:1], inner_u[:1], inner_u[:0:-1], inner_u[:1]])
        ring_v = np.concatenate([outer_v, outer_v[:1], inner_v[:1], inner_v[:0:-1], inner_v[:1]])
        paint.fill(ring_u, ring_v, color, "glasses")
        arm_u = side * np.array([spacing + half_w - frame, 0.97 * A])
        paint.fill(*_band(arm_u, np.full(2, -0.45 * half_h), np.full(2, -0.45 * half_h + frame)), color, "glasses")
    bridge_u = np.array([-(spacing - half_w + frame), spacing - half_w + frame])
    paint.fill(*_band(bridge_u, np.full(2, -0.3 * half_h), np.full(2, -0.3 * half_h + frame)), color, "glasses")


def _draw_hat(paint: _Painter, p: FaceParams, lay: _Layout) -> None:
    if not p.wearing_hat:
        return
    B = lay.half_height
    brim = -0.66 * B
    crown_height = lay.hair_height + brim + B * (0.1 + 0.2 * p.hat_height)
    color = colorsys.hsv_to_rgb((0.22 + 0.8 * p.hat_hue) % 1.0, 0.7, 0.4 + 0.45 * p.hat_shade)
    paint.fill(*_superellipse(0.0, brim, 1.06 * lay.hair_width, crown_height, 2.5, n=32,
                              start=math.pi, stop=2 * math.pi), color, "hat")
    paint.fill(*_superellipse(0.0, brim, 1.2 * lay.hair_width, 0.08 * B, 4.0, n=24), _scale(color, 0.7), "hat")


_DRAW_ORDER = (_draw_hair_back, _draw_head, _draw_beard, _draw_nose, _draw_mouth, _draw_eyes, _draw_brows,
               _draw_hair_front, _draw_glasses, _draw_hat)


def _light_field(p: FaceParams, size: int) -> np.ndarray:
    """Multiplicative lighting, float32 (size, size), 1 +- up to 0.12 along a random direction."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    angle = 2 * math.pi * p.light_angle
    along = math.cos(angle) * coords[None, :] + math.sin(angle) * coords[:, None]
    return 1.0 + 0.24 * p.light_strength * along


def _part_masks(labels: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Per part, True where the part covers at least one of the pixel's 4x4 sub-samples."""
    bits = np.left_shift(np.uint16(1), labels.astype(np.uint16))
    blocks = bits.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE)
    present = np.bitwise_or.reduce(np.bitwise_or.reduce(blocks, axis=3), axis=1)
    return {part: (present & (1 << i)) != 0 for i, part in enumerate(PARTS)}


def render(params: FaceParams, size: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw a face.

    Returns the image, uint8 (size, size, 3), and a mask per name in :data:`PARTS`, bool (size, size): True
    where that part is visible in at least one of the pixel's 4x4 sub-samples after occlusion (a hat hides the
    hair under it, glasses hide eye pixels, ...). Masks of neighbouring parts overlap on their shared border
    pixels; every pixel is in at least one mask, and a pixel in no mask of a part contains none of it.
    """
    if int(size) != size or size < _MIN_SIZE:
        raise DiffeditError(f"toy face size must be an integer of at least {_MIN_SIZE} pixels, got {size}")
    size = int(size)
    lay = _layout(params)
    paint = _Painter(_background(params, size * _SUPERSAMPLE), lay)
    for draw in _DRAW_ORDER:
        draw(paint, params, lay)
    image = np.asarray(paint.image.reduce(_SUPERSAMPLE), dtype=np.float32)
    image = np.clip(image * _light_field(params, size)[..., None] + 0.5, 0.0, 255.0).astype(np.uint8)
    return image, _part_masks(np.asarray(paint.labels), size)


# ----------------------------------------------------------------------------------------------- datasets

def write_dataset(out_dir: str | os.PathLike, n: int, seed: int = 0, size: int = 64, masks: bool = True,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Write ``n`` faces to ``out_dir`` and return its path.

    Layout: ``images/000000.png ...`` (uint8 RGB, size x size); ``list_attr.txt`` in the CelebA format (count,
    attribute names, then ``000000.png  1 -1 ...``); ``masks/000000.npz`` (bool (size, size) per :data:`PARTS`
    name) when ``masks``; ``params.jsonl``: one ``{"file", "seed", "params"}`` object per face, where
    ``FaceParams(**params)`` and ``sample_face(seed)`` both give the face back. Image i uses
    ``face_seed(seed, i)``. ``progress(i)`` is called after face i is written. ``list_attr.txt`` is written
    last, so it marks a complete dataset; a directory that has one is refused (:class:`InputError`).
    """
    out = Path(out_dir)
    table = out / "list_attr.txt"
    if table.exists():
        raise InputError(f"{table} exists already: {out} holds a dataset; write to another directory")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):  # the user's files are never mixed with (or replaced by) a dataset
        held = ", ".join(sorted(p.name for p in out.iterdir())[:3])
        raise InputError(f"{out} is not empty ({held}); write the dataset to a new or empty directory")
    if int(n) != n or n < 1 or int(seed) != seed or seed < 0:
        raise DiffeditError(f"need a face count >= 1 and a seed >= 0, got n={n}, seed={seed}")
    (out / "images").mkdir(parents=True, exist_ok=True)
    if masks:
        (out / "masks").mkdir(exist_ok=True)
    digits = max(6, len(str(n - 1)))
    rows = []
    with open(out / "params.jsonl", "w") as params_file:
        for i in range(int(n)):
            face = sample_face(face_seed(int(seed), i))
            image, part_masks = render(face, size)
            stem = f"{i:0{digits}d}"
            Image.fromarray(image).save(out / "images" / f"{stem}.png")
            if masks:
                np.savez_compressed(out / "masks" / f"{stem}.npz", **part_masks)
            record = {"file": f"{stem}.png", "seed": face_seed(int(seed), i), "params": dataclasses.asdict(face)}
            params_file.write(json.dumps(record) + "\n")
            labels = attributes(face)
            rows.append(f"{stem}.png " + " ".join("%2d" % (1 if labels[a] else -1) for a in ATTRIBUTES))
            if progress is not None:
                progress(i)
    partial = table.with_name(table.name + ".partial")
    partial.write_text(f"{n}\n{' '.join(ATTRIBUTES)}\n" + "\n".join(rows) + "\n")
    os.replace(partial, table)
    return out


def read_attr_table(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Parse a CelebA-format attribute table (toy faces' ``list_attr.txt`` or CelebA's ``list_attr_celeba.txt``).

    Format: an optional first line with the row count, a line of attribute names, then one line per image:
    file name and one value per attribute (1 / -1; 0 is read as -1), separated by any whitespace.
    Returns (names, files, labels) with labels int8 (n_files, n_names) in {0, 1}.
    """
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read attribute table {path}: {err}") from err
    count = None
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():
        count = int(lines[0][0])
        lines = lines[1:]
    if not lines:
        raise InputError(f"attribute table {path} has no attribute-name line")
    names, rows = lines[0], lines[1:]
    if count is not None and count != len(rows):
        raise InputError(f"attribute table {path} announces {count} rows but has {len(rows)}")
    values = {"1": 1, "-1": 0, "0": 0}
    labels = np.zeros((len(rows), len(names)), dtype=np.int8)
    for r, row in enumerate(rows):
        if len(row) != len(names) + 1 or any(x not in values for x in row[1:]):
            raise InputError(f"attribute table {path}, row {r + 1} ({row[0]}): expected a file name and "
                             f"{len(names)} values of 1/-1")
        labels[r] = [values[x] for x in row[1:]]
    return names, [row[0] for row in rows], labels
