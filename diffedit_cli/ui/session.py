"""One interactive editing session: a photo or an aligned face, edit settings from sliders, renders, and the exact
``diffedit edit`` command that reproduces each render. The browser editor (:mod:`diffedit_cli.ui.app`) is a thin
layer over this; it works without a browser, from Python.

A session owns one folder: the uploaded input is copied into it (checked like any command-line input: a decompression
bomb or a non-image is refused) and every render is a new file there, never written over. The inversion of the
input is done once: renders go through the latent cache (:mod:`diffedit_cli.io.latent_cache`), so only the first
render of an input pays for it.
"""

from __future__ import annotations

import itertools
import shlex
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..editing.plan import plan_edit
from ..errors import InputError

from ..faces.photos import load_photo
from ..io.images import IMAGE_EXTENSIONS, load_image_u8
from ..io.latents import check_latent_model, is_latent_path, load_latent
from ..io.latent_cache import LatentCache
from ..jobs.filejobs import edit_files, encode_files
from ..jobs.options import RunOptions
from ..jobs.photos import FaceOptions, align_photo, edit_photos, encode_photos
from ..jobs.report import Reporter
from ..sampling import DEFAULT, Sampling

PREVIEW_STEPS = 5  # decoding steps of a preview (the inversion is the full one, cached)


@dataclass
class EditSettings:
    """What the sliders say: ``attrs`` {attribute: alpha} and ``directions`` {``FILE:NAME``: alpha} (zeros are left
    out), ``topk``, ``levels`` (0-based), ``face`` (photos: largest, all or a face number)."""

    attrs: Dict[str, float] = field(default_factory=dict)
    topk: Optional[int] = None
    levels: Optional[List[int]] = None
    directions: Dict[str, float] = field(default_factory=dict)
    face: str = "largest"

    def edits(self) -> List[str]:
        return [f"{name}={alpha:g}" for name, alpha in self.attrs.items() if alpha]

    def direction_edits(self) -> List[str]:
        return [f"{name}={alpha:g}" for name, alpha in self.directions.items() if alpha]


class EditorSession:
    """Edits of one input at a time with ``model`` (a loaded model with a classifier), written under ``folder``.

    ``faces``: how photos are detected and aligned (None: inputs are aligned faces, as ``--aligned``)."""

    def __init__(self, model, model_spec: str, folder: Path, faces: Optional[FaceOptions] = None,
                 sampling: Sampling = DEFAULT, device: str = "auto", cache: Optional[LatentCache] = None):
        self.model, self.model_spec, self.faces = model, model_spec, faces
        self.folder = Path(folder)
        self.sampling, self.device = sampling, device
        self.cache = cache if cache is not None else LatentCache.default()
        self.input: Optional[Path] = None
        self._count = itertools.count(1)

    @property
    def attributes(self) -> List[str]:
        return list(self.model.component("classifier").attributes)

    @property
    def is_latent(self) -> bool:
        return self.input is not None and is_latent_path(self.input)

    @property
    def photo_mode(self) -> bool:
        """Whether renders detect, align and paste back (a photo; not an aligned face, not a latent file)."""
        return self.faces is not None and not self.is_latent

    def set_input(self, upload: Path) -> Path:
        """Copy an uploaded image or latent file into the session (checked first: an unreadable image, a latent file
        of another model, are InputErrors)."""
        upload = Path(upload)
        if is_latent_path(upload):
            check_latent_model(load_latent(upload), self.model, upload)
        elif upload.suffix.lower() not in IMAGE_EXTENSIONS:
            raise InputError(f"'{upload.name}' is not an image or latent file this editor reads "
                             f"({', '.join(sorted(IMAGE_EXTENSIONS | {'.safetensors'}))})")
        elif self.faces is not None:
            load_photo(upload)  # size / bomb / format checks
        else:
            load_image_u8(upload)
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"input_{next(self._count):03d}{upload.suffix.lower()}"
        shutil.copyfile(upload, target)
        self.input = target
        return target

    def faces_found(self) -> List[Tuple[int, Tuple[float, float, float, float]]]:
        """(face number, box (x0, y0, x1, y1)) of every face detected in a photo input; [] otherwise."""
        if not self.photo_mode:
            return []
        photo = load_photo(self.input)
        found = align_photo(photo, self.model.image_size, replace(self.faces, face="all"))
        return [(face.number, tuple(float(v) for v in face.face.box)) for face in found]

    def sampling_for(self, full: bool) -> Sampling:
        return self.sampling if full else self.sampling.replace(steps=min(PREVIEW_STEPS, self.sampling.steps))

    def render(self, settings: EditSettings, full: bool = True) -> Path:
        """Edit the current input; returns the new image (for a photo: the whole photo, the faces pasted back)."""
        if self.input is None:
            raise InputError("no input yet: drop a photo or an aligned face first")
        edits, directions = settings.edits(), settings.direction_edits()
        if not edits and not directions:
            raise InputError("move at least one slider away from 0")
        plan = plan_edit(self.model, edits, topk=settings.topk, levels=settings.levels, directions=directions)
        out = self.folder / f"{'render' if full else 'preview'}_{next(self._count):03d}.png"
        opts = RunOptions(device=self.device, sampling=self.sampling_for(full), batch_size=8, cache=self.cache)
        reporter = Reporter(quiet=True)
        if self.photo_mode:
            faces = replace(self.faces, face=settings.face)
            code = edit_photos(self.model, [str(self.input)], str(out), plan, opts, faces, reporter, paste_back=True)
        else:
            code = edit_files(self.model, [str(self.input)], str(out), plan, opts, reporter)
        if code != 0 or not out.is_file():
            raise InputError(reporter.failures[0][1] if reporter.failures else "the edit wrote nothing")
        return out

    def export_latent(self, settings: EditSettings) -> Path:
        """The input's codes (z_sem, x_T: an ordinary latent file, as 'diffedit encode' writes it; from the cache when
        a render inverted it already). A photo gives one file per selected face, ``<name>_<NN>.safetensors``."""
        if self.input is None:
            raise InputError("no input yet: drop a photo or an aligned face first")
        out = self.folder / f"latent_{next(self._count):03d}"
        opts = RunOptions(device=self.device, sampling=self.sampling, batch_size=8, cache=self.cache)
        reporter = Reporter(quiet=True)
        if self.is_latent:
            return self.input
        if self.photo_mode:
            code = encode_photos(self.model, [str(self.input)], str(out), opts, replace(self.faces, face=settings.face),
                                 reporter)
        else:
            code = encode_files(self.model, [str(self.input)], str(out), opts, reporter)
        written = sorted(out.glob("*.safetensors"))
        if code != 0 or not written:
            raise InputError(reporter.failures[0][1] if reporter.failures else "no face to encode")
        return written[0]

    def command(self, settings: EditSettings, out: str = "edited.png", full: bool = True) -> str:
        """The ``diffedit edit`` command that makes the same image from the shell."""
        sampling = self.sampling_for(full)
        argv = ["diffedit", "edit", str(self.input) if self.input else "INPUT", "--model", self.model_spec]
        for edit in settings.edits():
            argv += ["--attr", edit]
        for edit in settings.direction_edits():
            argv += ["--direction", edit]
        if settings.topk is not None:
            argv += ["--topk", str(settings.topk)]
        if settings.levels:
            argv += ["--levels", ",".join(str(level + 1) for level in settings.levels)]
        if self.photo_mode:
            argv += ["--align", "--paste-back", "--detector", self.faces.detector, "--face", settings.face]
        defaults = DEFAULT
        for flag, value, default in (("--sampler", sampling.sampler, defaults.sampler),
                                     ("--steps", sampling.steps, defaults.steps),
                                     ("--inv-steps", sampling.inv_steps, defaults.inv_steps),
                                     ("--inv-sampler", sampling.inv_sampler, defaults.inv_sampler),
                                     ("--spacing", sampling.spacing, defaults.spacing),
                                     ("--precision", sampling.precision, defaults.precision)):
            if value != default:
                argv += [flag, str(value)]
        argv += ["--out", out]
        return " ".join(shlex.quote(a) for a in argv)
