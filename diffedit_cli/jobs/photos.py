"""File-level runs on real photos: ``diffedit align``, ``align`` on encode / edit / interpolate,
``paste_back``, and the identity / fidelity evaluation of edits on photos.

Per photo: read it upright (:mod:`.photos`), detect faces (:mod:`.detection`), pick them (``face``),
compute the FFHQ quads and crops at the model's size (:mod:`.align`). Per-face outputs are named
``<stem>_<NN>`` (NN: the face number, 0 = leftmost); ``paste_back`` writes the whole photo instead.
Every output is written atomically; a photo without a face is a per-file failure.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .. import pipeline
from ..editing.attributes import edit_z_sem
from ..editing.plan import EditPlan
from ..errors import DiffeditError, InputError, InputWarning, opt
from ..faces.align import FaceAlignment, aligned_crop, quad_from_landmarks
from ..faces.blend import paste_back
from ..faces.detection import Face, check_face_spec, make_detector, select_faces
from ..faces.identity import IdentityModel, identity_scores
from ..faces.parsing import FaceParser, edit_region, parsing_weights_present
from ..faces.photos import Photo, load_photo, save_photo
from ..io import images as imageio
from ..io.files import atomic_write
from ..io.outputs import OutputPlan
from ..sampling import EVALUATION, Sampling
from .filejobs import edit_info, edit_units
from .generate import check_interpolation, interpolate_codes, interpolation_folder, write_interpolation
from .inputs import Item, batched, collect_inputs, plan_outputs, report_existing
from .options import RunOptions
from .report import Reporter
from .runner import Slot, Unit, encode_codes, encode_units

ALIGNMENT_KEY = "diffedit_alignment"  # PNG text chunk of crops written by 'diffedit align'


@dataclass
class FaceOptions:
    """How faces are found in photos.

    ``detector``: auto, facexlib, facexlib-mobile or dlib; ``face``: all, largest or a face number;
    ``weights``: facexlib weight folder (default: see :func:`.detection.weights_dir`); ``parsing``: use
    facexlib face parsing for paste-back masks when its weights are present.
    """

    detector: str = "auto"
    face: str = "all"
    weights: Optional[str] = None
    parsing: bool = True
    device: str = "cpu"
    _detector: object = field(default=None, repr=False)

    def get_detector(self):
        if self._detector is None:
            self._detector = make_detector(self.detector, self.weights, self.device)
        return self._detector


@dataclass
class AlignedFace:
    """One face of a photo: its number (0 = leftmost), detection, alignment and crop (S, S, 3) uint8."""

    number: int
    face: Face
    alignment: FaceAlignment
    crop: np.ndarray

    def metadata(self, detector: str, source: str) -> Dict:
        return {"source": source, "face": self.number, "detector": detector,
                "box": np.round(self.face.box, 2).tolist(), "score": round(float(self.face.score), 4),
                "landmarks": np.round(self.face.landmarks, 2).tolist(), **self.alignment.to_dict()}

    @property
    def tensor(self) -> torch.Tensor:
        return imageio.from_u8(np.ascontiguousarray(self.crop))


def warn_if_not_photo_model(model) -> None:
    """One ``warning:`` line when the model's index says it is not made for photos (the shipped toy models)."""
    if model.index.get("photos", True) is False:
        about = model.index.get("about", "not trained on photos")
        warnings.warn(InputWarning(
            f"model '{model.model_id}' is not a photo model ({about}): faces come back as blurred "
            f"{model.image_size} px cartoons; for real photos use {opt('model')} ffhq256 ('diffedit models')"))


def align_photo(photo: Photo, size: int, options: FaceOptions) -> List[AlignedFace]:
    """Detect, select and align the faces of ``photo`` at ``size`` pixels."""
    rgb = photo.rgb8
    faces = options.get_detector().detect(rgb)
    out = []
    for number, face in select_faces(faces, options.face):
        try:
            quad = quad_from_landmarks(face.landmarks)
            crop = aligned_crop(rgb, quad, size)
        except ValueError:  # degenerate landmarks, or a face entirely outside the photo
            continue
        alignment = FaceAlignment(quad, size, photo.size)
        out.append(AlignedFace(number, face, alignment, crop))
    return out


def face_target(target: Path, number: int) -> Path:
    """``out/photo.png`` -> ``out/photo_03.png`` for face 3."""
    return target.with_name(f"{target.stem}_{number:02d}{target.suffix}")


def blocked(plan: OutputPlan, target: Path, source: str, reporter: Reporter) -> bool:
    """True (and reported) when ``target`` must not be written: an input, or it exists and neither flag allows it."""
    try:
        plan.reserve(target, source)
    except DiffeditError as err:
        reporter.fail(source, str(err))
        return True
    return report_existing(plan, target, source, reporter)


def _faces_of(item: Item, size: int, options: FaceOptions, reporter: Reporter) -> Optional[Tuple[Photo, List[AlignedFace]]]:
    try:
        photo = load_photo(item.path)
        faces = align_photo(photo, size, options)
    except DiffeditError as err:
        if not isinstance(err, InputError):
            raise  # a missing detector or weights file stops the run: every photo would fail the same way
        reporter.fail(str(item.path), str(err))
        return None
    if not faces:
        what = "no face found" if options.face in ("all", "largest") else f"no face number {options.face}"
        reporter.fail(str(item.path), f"'{item.path}': {what} (detector {options.get_detector().name})")
        return None
    return photo, faces


# -- align ---------------------------------------------------------------------------------------------------

def save_crop(crop: np.ndarray, path: Path, metadata: Dict, exclusive: bool = False) -> None:
    """Atomically write an aligned crop as PNG with its alignment as a text chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_text(ALIGNMENT_KEY, json.dumps(metadata, sort_keys=True))
    image = Image.fromarray(np.ascontiguousarray(crop), "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(str(path), lambda f: image.save(f, format="PNG", pnginfo=info), exclusive)


def read_crop_alignment(path: os.PathLike) -> Optional[Dict]:
    """The alignment stored in a crop written by :func:`save_crop`, or None."""
    try:
        with Image.open(path) as img:
            text = img.info.get(ALIGNMENT_KEY)
        return json.loads(text) if text else None
    except Exception:
        return None


def align_files(specs: Sequence[str], out: Optional[str], size: int, options: FaceOptions, opts: RunOptions,
                reporter: Reporter) -> int:
    """Write the aligned crops ``<stem>_<NN>.png`` of every face in the photos; returns the exit code."""
    if size < 8:
        raise InputError(f"size {size}: too small", param="size")
    check_face_spec(options.face)
    options.get_detector()
    plan, todo = plan_outputs(specs, "images", out, ".png", {".png"}, opts, reporter, "aligning", "faces aligned",
                              per_face=True)
    for item, target in todo:
        found = _faces_of(item, size, options, reporter)
        if found is not None:
            photo, faces = found
            for face in faces:
                path = face_target(target, face.number)
                if blocked(plan, path, str(item.path), reporter):
                    continue
                try:
                    save_crop(face.crop, path, face.metadata(options.get_detector().name, str(item.path)),
                              exclusive=not opts.overwrite)
                    reporter.ok(str(item.path), str(path), face=face.number, box=np.round(face.face.box, 1).tolist())
                except DiffeditError as err:
                    reporter.fail(str(item.path), str(err))
        reporter.advance()
    return reporter.summary("faces aligned")


# -- encode --------------------------------------------------------------------------------------------------

def preprocessing(detector: str) -> str:
    return f"exif_transpose,rgb_alpha_over_white,ffhq_align(detector={detector})"


def photo_units(plan: OutputPlan, todo: Sequence[Tuple[Item, Path]], model, options: FaceOptions, opts: RunOptions, reporter: Reporter,
                whole_photo: Optional[Callable[[Item, Path, Photo, List[AlignedFace]], Callable]] = None) -> Iterable[Unit]:
    """Photos as units of one slot per selected face: its aligned crop, written to ``<stem>_<NN>``.

    With ``whole_photo(item, target, photo, faces) -> finish`` a photo has one output (pasted back) at its
    own target, made by ``finish`` from all its faces' results; that target is what an existing output
    blocks instead of each face's. A photo that cannot be read or holds no face is reported, without slots.
    """
    detector = options.get_detector().name
    for item, target in todo:
        source = str(item.path)
        if whole_photo is not None and blocked(plan, target, source, reporter):
            yield Unit(source, [])
            continue
        found = _faces_of(item, model.image_size, options, reporter)
        if found is None:
            yield Unit(source, [])
            continue
        photo, faces = found
        if whole_photo is None:
            faces = [f for f in faces if not blocked(plan, face_target(target, f.number), source, reporter)]
        slots = [Slot(source, face_target(target, f.number), item.index, pixels=f.tensor, info={"face": f.number},
                      extra={"face": f.metadata(detector, source)}) for f in faces]
        finish = whole_photo(item, target, photo, faces) if whole_photo is not None and faces else None
        yield Unit(source, slots, finish)


def encode_photos(model, specs: Sequence[str], out: Optional[str], opts: RunOptions, options: FaceOptions,
                  reporter: Reporter) -> int:
    """Encode every detected face to ``<stem>_<NN>.safetensors``; the alignment goes into the metadata
    (``extra`` JSON, key ``face``: quad, crop_to_photo / photo_to_crop affines, box, landmarks, detector)."""
    warn_if_not_photo_model(model)
    opts.validate(model, decode=False)
    check_face_spec(options.face)
    options.get_detector()
    outputs, todo = plan_outputs(specs, "images", out, ".safetensors", {".safetensors"}, opts, reporter,
                                 "encoding faces", "faces encoded", per_face=True)
    encode_units(model, photo_units(outputs, todo, model, options, opts, reporter), opts, reporter,
                 preprocessing(options.get_detector().name))
    return reporter.summary("faces encoded")


# -- edit ----------------------------------------------------------------------------------------------------

def blend_masks(crops: torch.Tensor, options: FaceOptions) -> Optional[torch.Tensor]:
    """Face-parsing blend masks (N, S, S) when parsing is enabled and its weights are present, else None."""
    if not options.parsing or not parsing_weights_present(options.weights):
        return None
    return FaceParser(options.weights, options.device).blend_masks(crops)


def edit_photos(model, specs: Sequence[str], out: Optional[str], plan: EditPlan, opts: RunOptions,
                options: FaceOptions, reporter: Reporter, compare: bool = False, paste_back: bool = False) -> int:
    """Edit the faces of photos as ``plan`` says (:func:`diffedit_cli.editing.plan.plan_edit`), as for files.

    Without ``paste_back``: one image per face, ``<stem>_<NN>.png`` (``compare``: aligned input first; a
    sweep: one decode per alpha in a row). With ``paste_back``: the whole photo ``<stem>.png`` with every
    selected face edited and blended back (pixels outside the blend masks byte-identical to the input);
    a sweep writes the photos side by side, one per alpha; ``compare`` puts the original photo first.
    """
    warn_if_not_photo_model(model)
    opts.validate(model)
    check_face_spec(options.face)
    options.get_detector()
    outputs, todo = plan_outputs(specs, "images", out, ".png", imageio.IMAGE_EXTENSIONS, opts, reporter, "editing faces",
                                 "faces edited", per_face=True)
    info = {**edit_info(plan), "detector": options.get_detector().name}

    def pasted_back(item: Item, target: Path, photo: Photo, faces: List[AlignedFace]):
        def finish(results):
            edited = torch.stack([outs for outs, _, _ in results])  # (faces, columns, 3, S, S)
            masks = blend_masks(torch.stack([f.tensor for f in faces]), options)
            pasted = [_paste(photo, edited[:, c], faces, masks) for c in range(plan.columns)]
            shown = ([photo] if compare else []) + [p for p, _ in pasted]  # compare: the original photo first
            result = shown[0] if len(shown) == 1 else _side_by_side(shown)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_photo(result, target, exclusive=not opts.overwrite)
            reporter.ok(str(item.path), str(target), faces=[f.number for f in faces],
                        changed_pixels=int(pasted[0][1].sum()), mask="parsing" if masks is not None else "ellipse", **info)
        return finish

    units = photo_units(outputs, todo, model, options, opts, reporter, pasted_back if paste_back else None)
    edit_units(model, units, plan, opts, reporter, compare and not paste_back, info)
    return reporter.summary("photos edited" if paste_back else "faces edited")


def _side_by_side(photos: Sequence[Photo]) -> Photo:
    """Photos of one size in a row, as one photo (an alpha sweep of pasted-back edits)."""
    alpha = None if photos[0].alpha is None else np.concatenate([p.alpha for p in photos], axis=1)
    return Photo(np.concatenate([p.pixels for p in photos], axis=1), alpha, photos[0].source)


def _paste(photo: Photo, edited: torch.Tensor, faces: Sequence[AlignedFace], masks: Optional[torch.Tensor]):
    return paste_back(photo, list(edited), [f.alignment for f in faces],
                      None if masks is None else list(masks))


# -- interpolate ---------------------------------------------------------------------------------------------

def interpolate_photos(model, a: str, b: str, out: Optional[str], frames: int, opts: RunOptions,
                       options: FaceOptions, reporter: Reporter, levels: Optional[Sequence[int]] = None) -> int:
    """Interpolate between the largest (or ``face``-numbered) faces of two photos, aligned first; ``levels`` as
    for :func:`.runner.interpolate_pair`."""
    warn_if_not_photo_model(model)
    level_list = check_interpolation(model, frames, levels, opts)
    check_face_spec(options.face)
    which = options.face if options.face != "all" else "largest"
    chooser = FaceOptions(options.detector, which, options.weights, options.parsing, options.device, options._detector)
    crops, stems, paths = [], [], []
    for spec in (a, b):
        items, errors = collect_inputs([spec], "images")
        if errors or len(items) != 1:
            raise InputError(errors[0][1] if errors else f"'{spec}' must be one image file")
        faces = align_photo(load_photo(items[0].path), model.image_size, chooser)
        if not faces:
            raise InputError(f"'{spec}': no face found")
        crops.append(faces[0].tensor)
        stems.append(items[0].path.stem)
        paths.append(items[0].path)
    plan = interpolation_folder(out, stems[0], stems[1], opts, frames, paths)
    reporter.start("interpolating", frames)
    z, x_T = encode_codes(model, torch.stack(crops), opts, reporter)
    imgs = interpolate_codes(model, z, x_T, frames, level_list, opts, reporter)
    return write_interpolation(imgs, plan, f"{a} {b}", reporter)


# -- evaluation on real photos -------------------------------------------------------------------------------

def _all_faces(items: Sequence[Item], size: int, options: FaceOptions) -> Tuple[List[Photo], List[AlignedFace]]:
    """Every selected face of the photos, aligned at ``size``, with the photo of each; none at all is an error."""
    photos, faces = [], []
    for item in items:
        photo = load_photo(item.path)
        for face in align_photo(photo, size, options):
            photos.append(photo)
            faces.append(face)
    if not faces:
        raise InputError("no face found in the given photos")
    return photos, faces


@torch.inference_mode()
def eval_photo_edits(model, specs: Sequence[str], options: FaceOptions, alphas: Sequence[float] = (0.3, 0.5),
                     topk: Optional[int] = None, sampling: Sampling = EVALUATION, batch_size: int = 8,
                     attributes: Optional[Sequence[str]] = None,
                     progress: Optional[Reporter] = None) -> Dict:
    """Identity and fidelity of attribute edits on real photos.

    Every selected face is aligned, inverted, edited along each attribute (toward the side opposite to the
    classifier's reading of the input) by each alpha and pasted back. Per attribute:

    * ``ID cos@ALPHA``: cosine similarity of dlib's 128-D descriptors of the original and the pasted-back
      photo at the detected box, in [-1, 1] (1: same);
    * ``ID dist``: Euclidean descriptor distance averaged over alphas (dlib: < 0.6 is the same person);
    * ``same person``: fraction of edits with distance < 0.6;
    * ``MSE outside``: HDAE fidelity, MSE (pixels in [0, 1]) between aligned input and edit outside the
      dilated face-parsing region of the attribute (only when the facexlib parsing weights are present).

    Returns {"n": faces, "rows": [...], "notes": [...]}.
    """
    warn_if_not_photo_model(model)

    classifier = model.component("classifier")
    names = list(attributes or classifier.attributes)
    unknown = [n for n in names if n not in classifier.attributes]
    if unknown:
        raise InputError(f"unknown attribute(s) {', '.join(unknown)}")
    items, errors = collect_inputs(specs, "images")
    if errors:
        raise InputError(errors[0][1])
    identity = IdentityModel()
    parser = FaceParser(options.weights, options.device) if parsing_weights_present(options.weights) else None
    notes = [f"sampling: {sampling.describe()}"]
    if parser is None:
        notes.append("MSE outside needs the facexlib parsing weights (parsing_bisenet.pth); not computed")
    ae = model.autoencoder
    photos, faces = _all_faces(items, model.image_size, options)
    if progress is not None:
        progress.start("evaluating", len(faces) * len(names) * len(alphas))
    crops = torch.stack([f.tensor for f in faces])
    z, x_T = pipeline.encode_and_invert(ae, crops, sampling, batch_size)
    with torch.no_grad():
        logits = classifier(z.to(next(classifier.parameters()).device)).cpu()
    originals = [identity.descriptor(photo.rgb8, face.face.box) for photo, face in zip(photos, faces)]
    labels = parser.labels(crops) if parser else None
    rows = []
    for name in names:
        index = classifier.attributes.index(name)
        row: Dict = {"attribute": name}
        distances, same, outside = [], [], []
        for alpha in alphas:
            sign = torch.where(logits[:, index] > 0, -1.0, 1.0)
            z_edit = torch.cat([edit_z_sem(z[i:i + 1].to(next(classifier.parameters()).device), classifier,
                                           {index: float(sign[i]) * alpha}, topk).cpu() for i in range(len(faces))])
            edited = torch.cat([pipeline.decode(ae, z_edit[c[0]:c[-1] + 1], x_T[c[0]:c[-1] + 1], sampling).cpu()
                                for c in batched(list(range(len(faces))), batch_size)])
            cosines = []
            for i, (photo, face) in enumerate(zip(photos, faces)):
                pasted, _ = paste_back(photo, [edited[i]], [face.alignment])
                scores = identity_scores(originals[i], identity.descriptor(pasted.rgb8, face.face.box))
                cosines.append(scores["cosine"])
                distances.append(scores["distance"])
                same.append(float(scores["same_person"]))
                if labels is not None:
                    keep = ~edit_region(labels[i], name)
                    diff = ((crops[i] - edited[i]) / 2).pow(2).mean(0)
                    outside.append(float(diff[keep].mean()) if keep.any() else float("nan"))
                if progress is not None:
                    progress.advance()
            row[f"ID cos@{alpha:g}"] = float(np.mean(cosines))
        row["ID dist"] = float(np.mean(distances))
        row["same person"] = float(np.mean(same))
        row["MSE outside"] = float(np.nanmean(outside)) if outside else None
        rows.append(row)
    return {"n": len(faces), "rows": rows, "notes": notes}
