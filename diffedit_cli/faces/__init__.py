"""Real photos: face detection, FFHQ alignment, paste-back, face-part masks and identity similarity.

Modules (one concern each):

* :mod:`.detection` - detector backends (facexlib RetinaFace, 5 points; dlib HOG + 68 points) returning
  :class:`~.detection.Face` objects; weight files, their cache folder and offline errors;
* :mod:`.align` - the FFHQ alignment quad from landmarks, the aligned crop (FFHQ border handling) and the
  crop <-> photo similarity transform;
* :mod:`.blend` - paste-back: warp edited crops into the original photo, feathered masks;
* :mod:`.parsing` - facexlib BiSeNet face parsing mapped to named parts (eyes, brows, mouth, ...);
* :mod:`.identity` - dlib's 128-D face descriptor and identity similarity;
* :mod:`.photos` - reading photos losslessly (EXIF orientation, alpha, 16-bit) and writing them back.

The file-level runs behind ``diffedit align`` and ``align`` / ``paste_back`` are :mod:`diffedit_cli.jobs.photos`.
"""
