"""Face detector backends and the weight files they need.

* ``facexlib`` (RetinaFace ResNet-50, 5 landmarks; ``facexlib-mobile``: RetinaFace MobileNet-0.25): weights
  are read from a cache folder (``face_weights DIR``, else ``$DIFFEDIT_FACE_WEIGHTS``, else
  ``$XDG_CACHE_HOME/diffedit/facexlib`` = ``~/.cache/diffedit/facexlib``) and, when missing, downloaded there
  on first use with facexlib's own downloader (``load_file_from_url(save_dir=...)``, i.e. facexlib's
  ``model_rootpath``), never into site-packages; ``$DIFFEDIT_FACEXLIB_MIRROR`` (a base URL) replaces
  facexlib's release URLs (``<mirror>/<file name>``). Offline (``DIFFEDIT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``, or
  when the download fails) the error names each missing file, its URL and the folder to put it in.
  The files are plain state dicts, loaded with ``torch.load(weights_only=True)`` (nothing is unpickled
  beyond tensors) and ``load_state_dict(strict=True)`` into facexlib's own network classes.
* ``dlib`` (HOG detector + 68-point shape predictor): the ``dlib-bin`` and ``face-recognition-models``
  packages from PyPI; fully offline. The model files are located with ``importlib.util.find_spec`` without
  importing ``face_recognition_models`` (its ``__init__`` needs setuptools' ``pkg_resources``).
* ``auto`` (default): facexlib when it is installed and its detection weights are in the cache, else dlib
  when installed, else facexlib (downloading its weights).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import DiffeditError, InputError, ModelError, opt, reason
from ..io.downloads import load_state_dict, mirrored, network_timeout, offline

FACEXLIB_WEIGHTS: Dict[str, Tuple[str, str]] = {
    "retinaface_resnet50": (
        "detection_Resnet50_Final.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"),
    "retinaface_mobile0.25": (
        "detection_mobilenet0.25_Final.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth"),
    "parsing_bisenet": (
        "parsing_bisenet.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth"),
}
"""facexlib model name -> (file name, download URL); the names and URLs facexlib's ``init_*_model`` use."""

DETECTORS = ("auto", "facexlib", "facexlib-mobile", "dlib")
DLIB_FILES = {"landmarks68": "shape_predictor_68_face_landmarks.dat",
              "landmarks5": "shape_predictor_5_face_landmarks.dat",
              "descriptor": "dlib_face_recognition_resnet_model_v1.dat"}


@dataclass
class Face:
    """One detected face in photo pixel-index coordinates.

    ``box`` (4,) x0, y0, x1, y1; ``score`` the detector's confidence; ``landmarks`` (5, 2) RetinaFace points
    (left eye, right eye, nose, left / right mouth corner; left = image left) or (68, 2) iBUG points.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


# -- weight files ----------------------------------------------------------------------------------------

def weights_dir(path: Optional[os.PathLike] = None) -> Path:
    """The facexlib weight folder: ``path``, else ``$DIFFEDIT_FACE_WEIGHTS``, else the user cache."""
    if path:
        return Path(path).expanduser()
    if os.environ.get("DIFFEDIT_FACE_WEIGHTS"):
        return Path(os.environ["DIFFEDIT_FACE_WEIGHTS"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "diffedit" / "facexlib"


def facexlib_available() -> bool:
    return importlib.util.find_spec("facexlib") is not None


def missing_weights_message(names: Sequence[str], folder: Path, cause: str = "") -> str:
    files = "; ".join(f"{FACEXLIB_WEIGHTS[n][0]} (from {weight_url(n)})" for n in names)
    why = f" ({cause})" if cause else ""
    return (f"facexlib weights missing{why}: put {files} into {folder} (or pass {opt('face_weights')} DIR / set "
            f"DIFFEDIT_FACE_WEIGHTS), or use {opt('detector')} dlib, which works offline")


def weight_url(name: str) -> str:
    """Download URL of facexlib weight ``name``: facexlib's own, or ``$DIFFEDIT_FACEXLIB_MIRROR/<file name>``."""
    return mirrored(FACEXLIB_WEIGHTS[name][1], "DIFFEDIT_FACEXLIB_MIRROR")


def facexlib_weight(name: str, folder: Optional[os.PathLike] = None) -> Path:
    """Path of facexlib weight ``name`` in the cache folder, downloading it there when allowed."""
    folder = weights_dir(folder)
    filename, url = FACEXLIB_WEIGHTS[name][0], weight_url(name)
    path = folder / filename
    if path.is_file():
        return path
    if offline():
        raise ModelError(missing_weights_message([name], folder, "offline mode"))
    try:
        from facexlib.utils import load_file_from_url  # optional: the [faces] extra

        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr), network_timeout():  # facexlib prints "Downloading: ..."
            return Path(load_file_from_url(url, model_dir=None, progress=True, save_dir=str(folder)))
    except Exception as err:  # no network, HTTP error, disk full: name the file and where it goes
        partial = folder / filename
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()
        raise ModelError(missing_weights_message([name], folder, f"download failed: {type(err).__name__}: "
                                                 f"{reason(err, 120)}")) from None


def load_facexlib_network(module: torch.nn.Module, path: Path) -> torch.nn.Module:
    try:
        module.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as err:
        raise ModelError(f"'{path}' does not match facexlib's {type(module).__name__}: "
                         f"{reason(err, 200)}") from None
    return module.eval()


# -- backends ------------------------------------------------------------------------------------------

class FacexlibDetector:
    """RetinaFace from facexlib: boxes, scores and 5 landmarks.

    ``network``: ``resnet50`` (facexlib's and GFPGAN's default) or ``mobile0.25``. Photos whose longer side
    exceeds ``max_side`` are detected on a downscaled copy (landmarks are scaled back).
    """

    def __init__(self, network: str = "resnet50", weights: Optional[os.PathLike] = None, device: str = "cpu",
                 min_score: float = 0.8, max_side: int = 1280):
        if not facexlib_available():
            raise ModelError("the facexlib detector needs the facexlib package: pip install 'diffedit[faces]' "
                         f"(or use {opt('detector')} dlib)")
        self.name = "facexlib" if network == "resnet50" else "facexlib-mobile"
        self.network = network
        self.weights = weights_dir(weights)
        self.device = torch.device(device)
        self.min_score = min_score
        self.max_side = max_side
        self._model = None

    @property
    def weight_name(self) -> str:
        return f"retinaface_{self.network}"

    def model(self):
        if self._model is None:
            from facexlib.detection.retinaface import RetinaFace  # optional: the [faces] extra

            path = facexlib_weight(self.weight_name, self.weights)
            with warnings.catch_warnings():  # facexlib builds its backbone with torchvision's deprecated 'pretrained'
                warnings.filterwarnings("ignore", message=".*(pretrained|weight enum)", category=UserWarning)
                net = RetinaFace(network_name=self.network, half=False, device=self.device)
            self._model = load_facexlib_network(net, path).to(self.device)
        return self._model

    @torch.inference_mode()
    def detect(self, rgb: np.ndarray) -> List[Face]:
        """rgb (H, W, 3) uint8 -> faces (any order)."""
        model = self.model()
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        image = rgb
        if scale < 1.0:
            image = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                           Image.BILINEAR))
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        rows = model.detect_faces(bgr, conf_threshold=self.min_score, nms_threshold=0.4, use_origin_size=True)
        faces = []
        for row in np.asarray(rows, np.float64).reshape(-1, 15):
            if not np.all(np.isfinite(row)):
                continue
            # facexlib's coordinates: pixel-edge boxes of the network's grid; landmarks as index coordinates
            faces.append(Face(row[:4] / scale, float(row[4]), row[5:15].reshape(5, 2) / scale))
        return faces


def dlib_models_dir() -> Path:
    """The folder of face_recognition_models' .dat files, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the dlib detector needs the face-recognition-models package: "
                         "pip install 'diffedit[faces]' (dlib-bin and face-recognition-models)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not folder.is_dir():
        raise ModelError(f"face_recognition_models is installed but has no models folder at {folder}")
    return folder


def dlib_file(key: str) -> Path:
    path = dlib_models_dir() / DLIB_FILES[key]
    if not path.is_file():
        raise ModelError(f"dlib model file missing: {path} (reinstall face-recognition-models)")
    return path


def import_dlib():
    try:
        import dlib  # optional: dlib-bin, imported when the dlib detector runs
    except ImportError:
        raise ModelError("the dlib backend needs the dlib-bin package: pip install 'diffedit[faces]'") from None
    return dlib


def dlib_available() -> bool:
    return importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None


class DlibDetector:
    """dlib's HOG frontal face detector + the 68-point shape predictor (iBUG 300-W points)."""

    name = "dlib"

    def __init__(self, upsample: int = 1, min_score: float = 0.5, max_side: int = 1024):
        self.dlib = import_dlib()
        self.upsample = upsample
        self.min_score = min_score
        self.max_side = max_side
        self._detector = None
        self._predictor = None

    def _load(self):
        if self._detector is None:
            self._detector = self.dlib.get_frontal_face_detector()
            self._predictor = self.dlib.shape_predictor(str(dlib_file("landmarks68")))

    def landmarks(self, rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """(68, 2) landmarks of the face in ``box`` (x0, y0, x1, y1)."""
        self._load()
        rect = self.dlib.rectangle(*[int(round(v)) for v in box])
        shape = self._predictor(np.ascontiguousarray(rgb), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)

    def detect(self, rgb: np.ndarray) -> List[Face]:
        """rgb (H, W, 3) uint8 -> faces. Large photos are searched at ``max_side`` pixels; the landmarks are
        always predicted at full resolution."""
        self._load()
        image = np.ascontiguousarray(rgb)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image if scale == 1.0 else np.asarray(
            Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
        rects, scores, _ = self._detector.run(small, self.upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            if score < self.min_score:
                continue
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64) / scale
            faces.append(Face(box, float(score), self.landmarks(image, box)))
        return faces


def check_detector_name(name: str) -> str:
    """The canonical detector name; unknown names are an InputError suggesting a close one."""
    key = name.strip().lower()
    if key not in DETECTORS:
        close = difflib.get_close_matches(key, DETECTORS, n=1)
        raise InputError(f"unknown detector '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                         + f" (choose from {', '.join(DETECTORS)})")
    return key


def make_detector(name: str = "auto", weights: Optional[os.PathLike] = None, device: str = "cpu"):
    """A detector by name (see :data:`DETECTORS`); unknown names suggest close ones."""
    key = check_detector_name(name)
    if key == "auto":
        if facexlib_available() and (weights_dir(weights) / FACEXLIB_WEIGHTS["retinaface_resnet50"][0]).is_file():
            key = "facexlib"
        elif dlib_available():
            key = "dlib"
        elif facexlib_available():
            key = "facexlib"
        else:
            raise ModelError("no face detector installed: pip install 'diffedit[faces]' (facexlib, dlib-bin, "
                             "face-recognition-models)")
    if key == "dlib":
        return DlibDetector()
    return FacexlibDetector("resnet50" if key == "facexlib" else "mobile0.25", weights, device)


def select_faces(faces: List[Face], which: str = "all") -> List[Tuple[int, Face]]:
    """Number faces left to right (by box centre) and pick ``all``, ``largest`` or index ``N``.

    Returns [(number, face)], the numbers used in output names ``<stem>_<NN>``.
    """
    ordered = sorted(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2))
    numbered = list(enumerate(ordered))
    spec = str(which).strip().lower()
    if spec == "all":
        return numbered
    if spec == "largest":
        return [max(numbered, key=lambda item: item[1].area)] if numbered else []
    try:
        index = int(spec)
    except ValueError:
        raise InputError(f"face '{which}': expected all, largest or a face number (0 = leftmost)", param="face") from None
    if index < 0:
        raise InputError(f"face {index}: face numbers start at 0", param="face")
    return [numbered[index]] if index < len(numbered) else []


def check_face_spec(which: str) -> None:
    """Validate ``face`` before any work starts."""
    select_faces([], which)


__all__ = ["Face", "FacexlibDetector", "DlibDetector", "make_detector", "select_faces", "weights_dir",
           "facexlib_weight", "FACEXLIB_WEIGHTS", "DETECTORS", "DiffeditError"]
