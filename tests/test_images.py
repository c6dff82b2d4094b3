"""Tests for diffedit_cli.io.images: odd inputs, bad files, value mapping, atomic writes."""

import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from diffedit_cli.io import files, images
from diffedit_cli.errors import InputError, NumericalError
from diffedit_cli.io.images import (from_u8, is_image_path, load_image, load_image_u8, make_grid, save_gif, save_image,
    to_u8)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _solid(size, color, mode="RGB"):
    return Image.new(mode, size, color)


def _noise(w, h, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _u8(path):
    return np.asarray(load_image_u8(path))


def _write_png_rgb16(path, array):
    """Hand-written 16-bit RGB PNG (Pillow cannot write one); array (H, W, 3) uint16."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _files(directory):
    return sorted(p.name for p in directory.iterdir())


# --- value mapping ---------------------------------------------------------


def test_value_mapping_matches_official_transform(tmp_path):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[0], arr[1], arr[2] = 0, 255, 128
    path = tmp_path / "v.png"
    Image.fromarray(arr).save(path)
    x = load_image(path, 4)
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32
    assert torch.all(x[:, 0] == -1) and torch.all(x[:, 1] == 1)
    assert torch.allclose(x[:, 2], torch.tensor((128 / 255 - 0.5) / 0.5), rtol=0, atol=1e-7)


def test_from_u8_equals_totensor_normalize():
    arr = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3).astype(np.uint8)
    official = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.5)])
    assert torch.equal(from_u8(arr), official(Image.fromarray(arr)))


def test_to_u8_rounds_and_clamps():
    x = torch.tensor([-5.0, -1.0, 0.0, 1.0, 7.0, 2 * 100.4 / 255 - 1, 2 * 100.6 / 255 - 1])
    out = to_u8(x.view(1, 1, -1).expand(3, 1, -1))
    assert out.shape == (1, 7, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 0, 128, 255, 255, 100, 101]
    with pytest.raises(NumericalError, match="NaN"):  # a per-file failure, not a crash
        to_u8(torch.full((3, 2, 2), float("nan")))


def test_round_trip_is_exact(tmp_path):
    arr = np.arange(32 * 32 * 3).reshape(32, 32, 3).astype(np.uint8)
    src, dst = tmp_path / "src.png", tmp_path / "dst.png"
    Image.fromarray(arr).save(src)
    save_image(load_image(src, 32), dst)
    assert np.array_equal(np.asarray(Image.open(dst)), arr)
    assert np.array_equal(to_u8(from_u8(arr)), arr)


# --- geometry --------------------------------------------------------------


def test_matches_official_diffae_pipeline(tmp_path):
    path = tmp_path / "noise.png"
    _noise(100, 60).save(path)
    official = transforms.Compose(
        [
            transforms.Resize(64),
            transforms.CenterCrop(64),
            transforms.ToTensor(),
            transforms.Normalize(0.5, 0.5),
        ]
    )
    assert torch.equal(load_image(path, 64), official(Image.open(path).convert("RGB")))


def test_non_square_keeps_the_middle(tmp_path):
    img = _solid((100, 60), GREEN)
    img.paste(RED, (0, 0, 15, 60))
    img.paste(BLUE, (85, 0, 100, 60))
    path = tmp_path / "wide.png"
    img.save(path)
    x = load_image(path, 64)
    assert x.shape == (3, 64, 64)
    u8 = to_u8(x).astype(int)
    assert np.all(u8[..., 1] > 250) and np.all(u8[..., [0, 2]] < 5)


@pytest.mark.parametrize("wh", [(1, 1), (3, 500), (500, 3), (7, 5)])
def test_tiny_and_thin_images(tmp_path, wh):
    path = tmp_path / "tiny.png"
    _noise(*wh).save(path)
    x = load_image(path, 32)
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1


def test_extreme_aspect_ratio_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "thin.png"
    _noise(1, 200).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(InputError, match="thin.png.*aspect ratio"):
        load_image(path, 64)


def test_exif_orientation_is_applied(tmp_path):
    img = _solid((80, 40), GREEN)
    img.paste(RED, (0, 0, 10, 10))  # top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = tmp_path / "rot.png"
    img.save(path, exif=exif.tobytes())
    u8 = _u8(path)
    assert u8.shape == (80, 40, 3)
    assert tuple(u8[0, -1]) == RED and tuple(u8[0, 0]) == GREEN
    assert load_image(path, 32).shape == (3, 32, 32)


# --- modes -----------------------------------------------------------------


def test_rgba_transparent_over_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)  # transparent black
    arr[:4] = (255, 0, 0, 255)  # opaque red
    arr[4:6] = (0, 0, 0, 128)  # half-transparent black
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(path)
    u8 = _u8(path)
    assert np.all(u8[:4] == RED) and np.all(u8[6:] == WHITE)
    assert np.all(np.abs(u8[4:6].astype(int) - 127) <= 1)


def test_la_and_palette_transparency_over_white(tmp_path):
    la = tmp_path / "la.png"
    Image.new("LA", (4, 4), (0, 0)).save(la)
    assert np.all(_u8(la) == 255)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.paste(0, (0, 0, 2, 4))
    gif = tmp_path / "pal.gif"
    pal.save(gif, transparency=0)
    u8 = _u8(gif)
    assert np.all(u8[:, :2] == WHITE) and np.all(u8[:, 2:] == RED)


def test_grayscale_replicated(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L").save(path)
    u8 = _u8(path)
    assert u8.shape == (8, 8, 3)
    assert np.array_equal(u8[..., 0], u8[..., 1]) and np.array_equal(u8[..., 0], u8[..., 2])
    assert u8[7, 7, 0] == 252


def test_16bit_grayscale_uses_full_range(tmp_path):
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16)  # 0 .. 65535
    ramp = np.stack([ramp, ramp + np.minimum(200, 65535 - ramp).astype(np.uint16)])
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    u8 = _u8(path)
    assert np.array_equal(u8[..., 0], (ramp >> 8).astype(np.uint8))
    assert u8[0, :, 0].tolist() == list(range(256))


def test_32bit_int_tiff_treated_as_16bit(tmp_path):
    arr = np.array([[-5, 0, 255, 256, 65535, 100000]], np.int32)
    path = tmp_path / "i.tif"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode == "I"
    assert _u8(path)[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]


def test_16bit_rgb_png(tmp_path):
    arr = np.zeros((2, 3, 3), np.uint16)
    arr[0] = [[65535, 0, 257 * 10], [300, 65280, 255], [40000, 1, 2]]
    path = tmp_path / "rgb16.png"
    _write_png_rgb16(path, arr)
    assert Image.open(path).mode == "RGB"  # Pillow keeps the high byte itself
    assert np.array_equal(_u8(path), (arr >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "values, expected",
    [([0.0, 0.5, 1.0, -0.2, float("nan")], [0, 128, 255, 0, 0]), ([0.0, 100.0, 300.0], [0, 100, 255])],
)
def test_float_images(tmp_path, values, expected):
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([values], np.float32)).save(path)
    assert Image.open(path).mode == "F"
    assert _u8(path)[0, :, 0].tolist() == expected


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    _solid((16, 16), (0, 255, 255, 0), "CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    u8 = _u8(path).astype(int)
    assert np.all(np.abs(u8 - RED) <= 3)


def test_animated_gif_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [_solid((8, 8), RED), _solid((8, 8), BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert np.all(_u8(path) == RED)


# --- errors ----------------------------------------------------------------


def _truncated(tmp_path, name, fmt):
    path = tmp_path / name
    _noise(64, 64).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("name, fmt", [("cut.png", "PNG"), ("cut.jpg", "JPEG")])
def test_truncated_image(tmp_path, name, fmt):
    path = _truncated(tmp_path, name, fmt)
    with pytest.raises(InputError, match=f"'{path}'.*truncated or corrupt") as info:
        load_image(path, 32)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p.write_text("hello, I am text\n"), "is not an image file"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "is not an image file"),
    ],
    ids=["text", "empty", "missing", "directory", "bad-header"],
)
def test_bad_files(tmp_path, make, match):
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(InputError, match=match) as info:
        load_image(path, 32)
    message = str(info.value)
    assert "x.png" in message and "\n" not in message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    _noise(4, 4).save(path)
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        load_image_u8(path)


@pytest.mark.parametrize("pixels, kind", [(40 * 40, "warning"), (100 * 100, "error")])
def test_decompression_bomb(tmp_path, monkeypatch, pixels, kind):
    side = int(pixels**0.5)
    path = tmp_path / f"bomb_{kind}.png"
    _solid((side, side), RED).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warning above 1000, error above 2000
    with pytest.raises(InputError, match=f"bomb_{kind}.png.*decompression bomb"):
        load_image(path, 32)


# --- writing ---------------------------------------------------------------


@pytest.mark.parametrize("ext, tol", [(".png", 0), (".jpg", 3), (".jpeg", 3), (".webp", 3), (".PNG", 0)])
def test_save_formats(tmp_path, ext, tol):
    arr = np.zeros((16, 24, 3), np.uint8)
    arr[:, :12] = RED
    arr[:, 12:] = (20, 200, 90)
    path = tmp_path / f"out{ext}"
    save_image(from_u8(arr), path)
    back = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert back.shape == arr.shape
    error = np.abs(back - arr)
    assert error[:, :8].max() <= tol and error[:, 16:].max() <= tol  # lossy codecs blur the edge
    assert _files(tmp_path) == [path.name]
    assert (path.stat().st_mode & 0o777) == 0o666 & ~files._current_umask()


def test_save_overwrites_existing(tmp_path):
    path = tmp_path / "o.png"
    save_image(torch.ones(3, 4, 4), path)
    save_image(-torch.ones(3, 4, 4), path)
    assert np.all(np.asarray(Image.open(path)) == 0) and _files(tmp_path) == ["o.png"]


def test_save_unknown_extension(tmp_path):
    with pytest.raises(InputError, match=r"out\.xyz.*unsupported extension"):
        save_image(torch.zeros(3, 4, 4), tmp_path / "out.xyz")
    assert _files(tmp_path) == []


def test_save_wrong_shape_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        save_image(torch.zeros(4, 4), tmp_path / "bad.png")
    with pytest.raises(ValueError):
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "bad.png")
    assert _files(tmp_path) == []


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    save_image(torch.ones(3, 4, 4), path)
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial data")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(InputError, match="cannot write '.*keep.png': No space left on device"):
        save_image(torch.zeros(3, 4, 4), path)
    with pytest.raises(InputError):
        save_image(torch.zeros(3, 4, 4), tmp_path / "new.png")
    assert path.read_bytes() == before and _files(tmp_path) == ["keep.png"]


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(InputError, match="cannot write"):
        save_image(torch.zeros(3, 4, 4), tmp_path / "nope" / "x.png")


# --- grid and gif -----------------------------------------------------------


def test_make_grid_layout():
    batch = torch.stack([torch.full((3, 4, 6), v) for v in (-1.0, -0.5, 0.0, 0.5, 0.25)])
    grid = make_grid(batch, ncol=3, pad=2)
    assert grid.shape == (3, 2 * (4 + 2) + 2, 3 * (6 + 2) + 2)
    assert torch.all(grid[:, 2:6, 2:8] == -1) and torch.all(grid[:, 8:12, 10:16] == 0.25)
    assert torch.all(grid[:, 8:12, 18:24] == 1.0)  # empty cell = pad_value
    assert torch.all(grid[:, :2] == 1.0) and torch.all(grid[:, :, -2:] == 1.0)
    single = make_grid(batch[:1], ncol=3, pad=2, pad_value=-1.0)
    assert single.shape == (3, 8, 10) and torch.all(single == -1)
    with pytest.raises(ValueError):
        make_grid(batch[0], ncol=2)


def test_save_gif(tmp_path):
    colors = [(-1.0, 1.0, -1.0), (1.0, -1.0, -1.0), (-1.0, -1.0, 1.0)]
    frames = [torch.tensor(c).view(3, 1, 1).expand(3, 8, 8) for c in colors]
    path = tmp_path / "anim.gif"
    save_gif(frames, path, duration_ms=70, pingpong=True)
    assert _files(tmp_path) == ["anim.gif"]
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.info["loop"] == 0 and gif.info["duration"] == 70
        seen = []
        for i in range(gif.n_frames):
            gif.seek(i)
            seen.append(tuple(gif.convert("RGB").getpixel((4, 4))))
    assert seen == [GREEN, RED, BLUE, RED]
    with pytest.raises(InputError, match="anim.png"):
        save_gif(frames, tmp_path / "anim.png")


def test_is_image_path():
    assert is_image_path("a/b.PNG") and is_image_path("x.jpeg") and is_image_path("x.tiff")
    assert not is_image_path("x.txt") and not is_image_path("png")


def test_fit_image_is_torchvisions_resize_and_center_crop():
    """The official loader's Resize(size) + CenterCrop(size), done with PIL directly: the same bytes."""
    import numpy as np
    import torchvision.transforms.functional as TF
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    from diffedit_cli.io.images import fit_image, from_u8

    rng = np.random.default_rng(0)
    for width, height in [(64, 64), (65, 64), (64, 65), (100, 37), (37, 100), (300, 200), (257, 511), (31, 31),
                          (10, 700), (1000, 999)]:
        img = Image.fromarray((rng.random((height, width, 3)) * 255).astype("uint8"))
        for size in (64, 256):
            ref = TF.center_crop(TF.resize(img, size, interpolation=InterpolationMode.BILINEAR, antialias=True), size)
            assert torch.equal(fit_image(img, size), from_u8(np.asarray(ref))), (width, height, size)
