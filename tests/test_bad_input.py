"""Bad input and faults: a table of cases, each run through the real CLI in a temp dir.

Every case asserts the exit code, one ``error:`` line naming the file or flag (with the reason), no
traceback or internal error, inputs byte-for-byte unchanged, and exactly the expected outputs (no partial
or temporary files). The faults that need processes, signals or a small file system follow the table.
Models: the shipped ``toyfaces`` (and ``toyfaces-hdae`` as "another model"), so nothing here needs the
official reference fixtures.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli.cli import main
from diffedit_cli.io.latents import load_latent
from diffedit_cli.io.models import shipped_models

MODEL = "toyfaces"
OTHER = "toyfaces-hdae"
ENCODE = ["--model", MODEL, "--inv-steps", "2", "--out", "out", "-q"]
DECODE = ["--model", MODEL, "--steps", "2", "--out", "out", "-q"]
EDIT = ["--model", MODEL, "--steps", "2", "--inv-steps", "2", "--out", "out", "-q"]
MARKER = "pwned_marker"


# -- inputs ------------------------------------------------------------------------------------------------

def _rgb(h=24, w=24, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype("uint8")


def png(path: Path, h=24, w=24, seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(h, w, seed)).save(path)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming width x height, an empty IDAT: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def evil_pickle(path: Path, torch_wrapper: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if torch_wrapper:
        torch.save({"state_dict": _Evil()}, path)
    else:
        path.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    return path


def _one_latent(folder: Path, model: str, name: str) -> Path:
    """A latent file of ``model`` for one generated image (2 inversion steps)."""
    png(folder / "good.png")
    assert main(["encode", str(folder / "good.png"), "--model", model, "--inv-steps", "2", "--out",
                 str(folder / name), "-q"]) == 0
    return folder / name


@pytest.fixture(scope="module")
def good_latent(tmp_path_factory) -> Path:
    return _one_latent(tmp_path_factory.mktemp("latent"), MODEL, "good.safetensors")


@pytest.fixture(scope="module")
def other_latent(tmp_path_factory) -> Path:
    return _one_latent(tmp_path_factory.mktemp("other"), OTHER, "other.safetensors")


def latent_with(good: Path, path: Path, z=None, x=None) -> Path:
    """A copy of ``good`` with z_sem / x_T replaced (metadata kept, so only the values are wrong)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    if z is not None:
        tensors["z_sem"] = z(tensors["z_sem"]) if callable(z) else z
    if x is not None:
        tensors["x_T"] = x(tensors["x_T"]) if callable(x) else x
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def model_copy(tmp: Path, name="m", drop: Sequence[str] = ()) -> Path:
    """The default model's autoencoder (and index) copied under tmp/models/name."""
    src = shipped_models()[MODEL]
    dst = tmp / "models" / name
    (dst / "autoencoder").mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        if f not in drop:
            shutil.copy(src / "autoencoder" / f, dst / "autoencoder" / f)
    index = json.loads((src / "model_index.json").read_text())
    index["components"] = ["autoencoder"]
    (dst / "model_index.json").write_text(json.dumps(index))
    return dst


# -- the table -----------------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    make: Callable[..., List[str]]  # (tmp, latent, other) -> argv; inputs under tmp/in, outputs under tmp/out
    code: int  # expected exit status
    needle: Tuple[str, ...] = ()  # all of these appear in one error line
    written: Tuple[str, ...] = ()  # files expected under tmp/out afterwards, nothing else
    warning: Optional[str] = None  # a 'warning:' line containing this
    offline_hub: bool = False  # run with the Hub client offline (an empty cache, no network)


def encode(*inputs):
    return ["encode", *inputs, *ENCODE]


def _img(make_image, name):
    def make(tmp, *_):
        path = tmp / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make_image(path)
        return encode(f"in/{name}")
    return make


def _save(mode, fmt="PNG", size=(24, 24), **info):
    def make_image(path):
        img = Image.fromarray(_rgb(size[1], size[0])).convert(mode) if mode not in ("I;16", "P") else None
        if mode == "I;16":
            img = Image.fromarray((np.arange(size[0] * size[1]).reshape(size[::-1]) * 97 % 65536).astype("uint16"))
        elif mode == "P":
            img = Image.fromarray(_rgb(size[1], size[0])).convert("P")
            info.setdefault("transparency", 0)
        img.save(path, format=fmt, **info)
    return make_image


def _exif_rotated(path):
    img = Image.fromarray(_rgb(20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, format="JPEG", exif=exif)


def _gif(path):
    frames = [Image.fromarray(_rgb(24, 24, s)).convert("P") for s in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)


def _truncated(fmt):
    def make_image(path):
        buf = io.BytesIO()
        Image.fromarray(_rgb(64, 64)).save(buf, format=fmt)
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return make_image


def _stdin_case(text):
    def make(tmp, *_):
        png(tmp / "in" / "a.png")
        png(tmp / "in" / "b.png", seed=1)
        (tmp / "list.txt").write_text(text)
        return ["encode", "-", *ENCODE, "__stdin__=list.txt"]
    return make


def _symlink_loop(tmp, *_):
    (tmp / "in").mkdir()
    os.symlink("loop.png", tmp / "in" / "loop.png")
    return encode("in/loop.png")


def _dir_named_png(tmp, *_):
    (tmp / "in" / "x.png").mkdir(parents=True)
    return encode("in/x.png")


def _odd_path(tmp, *_):
    png(tmp / "in" / "my photos" / "été 1.png")
    return encode("in/my photos")


def _long_name(tmp, *_):
    png(tmp / "in" / ("a" * 243 + ".png"))
    return encode("in")


def _same_stem(tmp, *_):
    png(tmp / "in" / "good.png")
    Image.fromarray(_rgb(24, 24, 3)).save(tmp / "in" / "good.jpg")
    return encode("in/good.png", "in/good.jpg")


def _same_name_two_folders(tmp, *_):
    png(tmp / "in" / "dupA" / "x.png")
    png(tmp / "in" / "dupB" / "x.png", seed=2)
    return encode("in/dupA/x.png", "in/dupB/x.png")


def _latent_case(edit_values=None, name="bad.safetensors", extra_good=False):
    def make(tmp, latent, other):
        folder = tmp / "in"
        if extra_good:
            for stem in ("a", "b", "c"):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(latent, folder / f"{stem}.safetensors")
        edit_values(latent, folder / name)
        return ["decode", "in" if extra_good else f"in/{name}", *DECODE]
    return make


def _bytes_edit(fn):
    def edit_values(latent, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fn(latent.read_bytes()))
    return edit_values


def _tamper_header(data: bytes) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + n].replace(b'"data_offsets":[0,', b'"data_offsets":[9,', 1)
    return data[:8] + header + data[8 + n:]


def _values(**kw):
    return lambda latent, path: latent_with(latent, path, **kw)


def _copy_other(tmp, latent, other):
    (tmp / "in").mkdir()
    shutil.copy(other, tmp / "in" / "other.safetensors")
    return ["decode", "in/other.safetensors", *DECODE]


def _pickle_as_latent(tmp, *_):
    evil_pickle(tmp / "in" / "evil.safetensors")
    return ["decode", "in/evil.safetensors", *DECODE]


def _weights_as_latent(tmp, *_):
    (tmp / "in").mkdir()
    shutil.copy(shipped_models()[MODEL] / "classifier" / "model.safetensors", tmp / "in" / "weights.safetensors")
    return ["decode", "in/weights.safetensors", *DECODE]


def _model_case(prepare, spec=None):
    def make(tmp, *_):
        png(tmp / "in" / "a.png")
        target = prepare(tmp) if prepare else spec
        return ["encode", "in/a.png", *[a if a != MODEL else str(target) for a in ENCODE]]
    return make


def _model_missing_config(tmp):
    return model_copy(tmp, drop=("config.json",))


def _model_bad_config(tmp):
    m = model_copy(tmp)
    (m / "autoencoder" / "config.json").write_text("{not json")
    return m


def _model_truncated_weights(tmp):
    m = model_copy(tmp)
    w = m / "autoencoder" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100_000])
    return m


def _model_wrong_kind(tmp):
    m = model_copy(tmp)
    cls = shipped_models()[MODEL] / "classifier"
    for f in ("config.json", "model.safetensors"):
        shutil.copy(cls / f, m / "autoencoder" / f)
    return m


def _model_pickle_weights(tmp):
    m = model_copy(tmp)
    evil_pickle(m / "autoencoder" / "model.safetensors", torch_wrapper=True)
    return m


def _model_no_index(tmp):
    m = model_copy(tmp)
    (m / "model_index.json").unlink()
    return m


def _convert_evil(torch_wrapper):
    def make(tmp, *_):
        evil_pickle(tmp / "in" / "evil.ckpt", torch_wrapper)
        return ["convert", "in/evil.ckpt", "--out", "out/m"]
    return make


def _convert_foreign(tmp, *_):
    (tmp / "in").mkdir()
    (tmp / "in" / "foreign.ckpt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    return ["convert", "in/foreign.ckpt", "--out", "out/m"]


def _flag(*argv, command="edit", inputs=("in/a.png",)):
    def make(tmp, *_):
        png(tmp / "in" / "a.png")
        png(tmp / "in" / "b.png", seed=1)
        base = {"edit": EDIT, "encode": ENCODE, "decode": DECODE}.get(command, EDIT[:-3])
        return [command, *inputs, *base, *argv]
    return make


def _out_is(out: str, n_inputs=1, command="encode"):
    def make(tmp, *_):
        png(tmp / "in" / "a.png")
        png(tmp / "in" / "b.png", seed=1)
        (tmp / "in" / "file.txt").write_text("a regular file")
        inputs = ["in/a.png", "in/b.png"][:n_inputs]
        base = [a for a in ENCODE if a not in ("--out", "out")] if command == "encode" else \
            [a for a in DECODE if a not in ("--out", "out")]
        return [command, *inputs, *base, "--out", out]
    return make


OK1 = ("a.safetensors",)

CASES = [
    # images
    Case("image-empty", _img(lambda p: p.write_bytes(b""), "empty.png"), 1, ("in/empty.png", "empty")),
    Case("image-truncated-png", _img(_truncated("PNG"), "trunc.png"), 1, ("in/trunc.png", "truncated")),
    Case("image-truncated-jpeg", _img(_truncated("JPEG"), "trunc.jpg"), 1, ("in/trunc.jpg", "truncated")),
    Case("image-text-as-png", _img(lambda p: p.write_text("hello"), "notes.png"), 1, ("in/notes.png", "not an image")),
    Case("image-wrong-extension", _img(_save("RGB", "PNG"), "a.jpg"), 0, written=OK1),
    Case("image-not-an-image-extension", _img(lambda p: p.write_text("x"), "a.txt"), 1, ("in/a.txt", "not an image")),
    Case("image-rgba", _img(_save("RGBA"), "a.png"), 0, written=OK1),
    Case("image-la", _img(_save("LA"), "a.png"), 0, written=OK1),
    Case("image-palette-transparent", _img(_save("P"), "a.png"), 0, written=OK1),
    Case("image-16bit-grey", _img(_save("I;16"), "a.png"), 0, written=OK1),
    Case("image-cmyk", _img(_save("CMYK", "JPEG"), "a.jpg"), 0, written=OK1),
    Case("image-1x1", _img(_save("RGB", size=(1, 1)), "a.png"), 0, written=OK1),
    Case("image-10000x10", _img(_save("RGB", size=(10000, 10)), "a.png"), 0, written=OK1),
    Case("image-decompression-bomb", _img(lambda p: png_header_only(p, 20000, 20000), "bomb.png"), 1,
         ("in/bomb.png", "too many pixels")),
    Case("image-exif-rotated", _img(_exif_rotated, "a.jpg"), 0, written=OK1),
    Case("image-animated-gif", _img(_gif, "a.gif"), 0, written=OK1, warning="first frame"),
    Case("image-webp", _img(_save("RGB", "WEBP"), "a.webp"), 0, written=OK1),
    Case("image-directory-named-png", _dir_named_png, 1, ("in/x.png", "no usable input")),
    Case("image-symlink-loop", _symlink_loop, 1, ("in/loop.png", "symlink")),
    Case("image-spaces-non-ascii", _odd_path, 0, written=("été 1.safetensors",)),
    Case("image-missing", lambda tmp, *_: encode("in/missing.png"), 1, ("in/missing.png", "not found")),
    Case("stdin-blank-lines-and-missing", _stdin_case("\nin/a.png\n\n  \nin/gone.png\nin/b.png\n"), 1,
         ("in/gone.png", "not found"), written=("a.safetensors", "b.safetensors")),
    Case("stdin-empty", _stdin_case(""), 2, ("stdin", "no input")),
    Case("output-name-255-bytes", _long_name, 0, written=("a" * 243 + ".safetensors",)),
    Case("two-inputs-same-stem", _same_stem, 1, ("in/good.jpg", "good.safetensors", "in/good.png"),
         written=("good.safetensors",)),
    Case("two-inputs-same-name", _same_name_two_folders, 1, ("in/dupB/x.png", "x.safetensors"),
         written=("x.safetensors",)),
    # latent files
    Case("latent-truncated", _latent_case(_bytes_edit(lambda b: b[: len(b) // 2])), 1, ("in/bad.safetensors", "corrupt")),
    Case("latent-tampered-header", _latent_case(_bytes_edit(_tamper_header)), 1, ("in/bad.safetensors", "corrupt")),
    Case("latent-wrong-z-shape", _latent_case(_values(z=torch.zeros(10))), 1, ("in/bad.safetensors", "z_sem", "256")),
    Case("latent-wrong-x-shape", _latent_case(_values(x=torch.zeros(3, 32, 32))), 1,
         ("in/bad.safetensors", "x_T", "3x64x64")),
    Case("latent-nan-in-folder", _latent_case(_values(z=lambda z: z * float("nan")), extra_good=True), 1,
         ("in/bad.safetensors", "z_sem", "NaN"), written=("a.png", "b.png", "c.png")),
    Case("latent-inf-x", _latent_case(_values(x=lambda x: x.index_fill(0, torch.tensor([1]), float("inf"))), extra_good=True), 1,
         ("in/bad.safetensors", "x_T", "inf"), written=("a.png", "b.png", "c.png")),
    Case("latent-huge-z", _latent_case(_values(z=lambda z: z * 1e30)), 1, ("in/bad.safetensors", "z_sem", "large")),
    Case("latent-other-model", _copy_other, 1, ("in/other.safetensors", "encoded with model")),
    Case("latent-pickle-renamed", _pickle_as_latent, 1, ("in/evil.safetensors", "not safetensors")),
    Case("latent-weights-file", _weights_as_latent, 1, ("in/weights.safetensors", "not a diffedit latent")),
    # models
    Case("model-missing", _model_case(None, "in/nomodel"), 2, ("in/nomodel", "not found")),
    Case("model-misspelt", _model_case(None, "toyface"), 2, ("toyface", "did you mean", "toyfaces")),
    Case("model-hub-id-offline", _model_case(None, "someone/faces@v1"), 2, ("someone/faces@v1", "cannot be reached"),
         offline_hub=True),
    Case("model-no-index", _model_case(_model_no_index), 2, ("model_index.json",)),
    Case("model-missing-config", _model_case(_model_missing_config), 2, ("config.json", "missing")),
    Case("model-bad-config", _model_case(_model_bad_config), 2, ("config.json", "cannot parse")),
    Case("model-truncated-weights", _model_case(_model_truncated_weights), 2, ("model.safetensors", "corrupt")),
    Case("model-wrong-kind", _model_case(_model_wrong_kind), 2, ("autoencoder",)),
    Case("model-pickle-weights", _model_case(_model_pickle_weights), 2, ("model.safetensors", "corrupt")),
    Case("convert-malicious-pickle", _convert_evil(False), 2, ("in/evil.ckpt",)),
    Case("convert-malicious-torch-save", _convert_evil(True), 2, ("in/evil.ckpt",)),
    Case("convert-foreign-pickle", _convert_foreign, 2, ("in/foreign.ckpt",)),
    # flags
    Case("alpha-nan", _flag("--attr", "Smiling", "--alpha", "nan"), 2, ("--alpha", "finite")),
    Case("alpha-inf", _flag("--attr", "Smiling", "--alpha", "inf"), 2, ("--alpha", "finite")),
    Case("alpha-huge", _flag("--attr", "Smiling", "--alpha", "1e9"), 2, ("--alpha", "1e+09")),
    Case("attr-alpha-inf", _flag("--attr", "Smiling=inf"), 2, ("Smiling=inf", "finite")),
    Case("attr-misspelt", _flag("--attr", "Smilng"), 2, ("Smilng", "Smiling")),
    Case("alpha-sweep-nan", _flag("--attr", "Smiling", "--alpha-sweep", "nan:1:3"), 2, ("--alpha-sweep", "finite")),
    Case("topk-0", _flag("--attr", "Smiling", "--topk", "0"), 2, ("--topk",)),
    Case("topk-negative", _flag("--attr", "Smiling", "--topk", "-3"), 2, ("--topk",)),
    Case("topk-too-large", _flag("--attr", "Smiling", "--topk", "100000"), 2, ("--topk", "256")),
    Case("steps-0", _flag("--attr", "Smiling", "--steps", "0"), 2, ("--steps",)),
    Case("batch-size-0", _flag("--batch-size", "0", command="encode"), 2, ("--batch-size",)),
    Case("frames-0", _flag("--frames", "0", command="interpolate", inputs=("in/a.png", "in/b.png")), 2, ("--frames",)),
    Case("frames-1", _flag("--frames", "1", command="interpolate", inputs=("in/a.png", "in/b.png")), 2, ("--frames",)),
    Case("levels-out-of-range", _flag("--attr", "Smiling", "--levels", "9"), 2, ("--levels", "1..4")),
    Case("seed-too-large", _flag("--random-xt", "--seed", str(2 ** 70), command="decode"), 2, ("--seed",)),
    Case("device-cuda-missing", _flag("--device", "cuda", command="encode"), 2, ("--device", "cuda")),
    Case("device-unknown", _flag("--device", "tpu", command="encode"), 2, ("--device", "tpu")),
    Case("out-existing-file-several-inputs", _out_is("in/file.txt", 2), 2, ("--out", "in/file.txt")),
    Case("out-existing-image-several-inputs", _out_is("in/a.png", 2, command="decode"), 2, ("--out", "in/a.png")),
    Case("out-equal-to-input", _out_is("in/a.png", 1, command="decode"), 1, ("in/a.png", "overwrite the input")),
    Case("out-under-a-file", _out_is("in/file.txt/sub", 2), 2, ("in/file.txt/sub", "Not a directory")),
    Case("out-under-proc", _out_is("/proc/diffedit-x/out", 2), 2, ("/proc/diffedit-x/out",)),
    Case("out-unsupported-extension", _out_is("out/a.gif", 1, command="decode"), 2, ("out/a.gif", "extension")),
    Case("out-image-name-for-latents", _out_is("out/a.png", 1), 2, ("--out", "out/a.png", ".safetensors")),
]


# -- every other writer and value: outputs planned before compute, values bounded at parse time, models and
# direction files validated on load, names that are not UTF-8 ------------------------------------------------------

FAST = ["--model", MODEL, "--steps", "2", "--inv-steps", "2", "-q"]


def _run(*argv, setup=None):
    """A case that runs ``argv`` after ``setup(tmp, good_latent)``; in/a.png, in/b.png and in/file.txt exist."""
    def make(tmp, good, other):
        png(tmp / "in" / "a.png")
        png(tmp / "in" / "b.png", seed=1)
        (tmp / "in" / "file.txt").write_text("a regular file")
        if setup is not None:
            setup(tmp, good)
        return list(argv)
    return make


def _frames(tmp, good):
    png(tmp / "d" / "frame_000.png", seed=2)


def _same_names(tmp, good):
    png(tmp / "in" / "ab" / "x" / "a.png", seed=3)
    png(tmp / "in" / "ab" / "y" / "a.png", seed=4)


def _grid_input(tmp, good):
    png(tmp / "in" / "grid.png", seed=5)


def _same_faces(tmp, good):
    from test_faces import ASTRONAUT

    for sub in ("x", "y"):
        (tmp / "in" / sub).mkdir(parents=True)
        shutil.copy(ASTRONAUT, tmp / "in" / sub / "a.png")


def _dangling(tmp, good):
    (tmp / "out").symlink_to(tmp / "nowhere")


def _latent_input(tmp, good):
    shutil.copy(good, tmp / "in" / "good.safetensors")


def _odd_name(tmp, good):
    png(tmp / "in" / "u" / os.fsdecode(b"\xff\xfe.png"), seed=6)


def _odd_latent(tmp, good):
    (tmp / "in" / "u").mkdir(parents=True)
    shutil.copy(good, tmp / "in" / "u" / os.fsdecode(b"\xff.safetensors"))


def _directions(vectors=None, names=None, std=None, where="in/dirs.safetensors"):
    def setup(tmp, good):
        from diffedit_cli.editing.directions import DirectionSet, save_directions
        from diffedit_cli.io.models import load_model

        model = load_model(MODEL, components=())
        width = model.autoencoder.config.style_channels
        vec = torch.randn(2, width, generator=torch.Generator().manual_seed(0)) if vectors is None else vectors(width)
        sd = torch.ones(width) if std is None else std(width)
        (tmp / where).parent.mkdir(parents=True, exist_ok=True)
        save_directions(tmp / where, DirectionSet(["pc01", "pc02"], vec, torch.zeros(width), sd, MODEL,
                                                  model.fingerprint, {}))
        if names:  # names save_directions refuses to write: put them into the file's metadata by hand
            from safetensors import safe_open
            from safetensors.torch import load_file, save_file

            with safe_open(str(tmp / where), "pt") as fh:
                meta = fh.metadata()
            save_file(load_file(tmp / where), tmp / where, metadata={**meta, "names": json.dumps(names)})
    return setup


def _zero_row(width):
    vec = torch.randn(2, width, generator=torch.Generator().manual_seed(0))
    vec[1] = 0
    return vec


def _model_edit(tmp, change):
    """A full copy of the default model, changed by ``change(folder)``."""
    dst = tmp / "models" / "m"
    shutil.copytree(shipped_models()[MODEL], dst)
    change(dst)
    return dst


def _nan_weights(folder):
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "autoencoder" / "model.safetensors"))
    key = next(iter(state))
    state[key][..., 0] = float("nan")
    save_file(state, str(folder / "autoencoder" / "model.safetensors"))


def _foreign_classifier(folder):
    meta = json.loads((folder / "classifier" / "config.json").read_text())
    meta.setdefault("training", {})["autoencoder_fingerprint"] = "0123456789abcdef"
    (folder / "classifier" / "config.json").write_text(json.dumps(meta))


def _no_process(folder):
    meta = json.loads((folder / "autoencoder" / "config.json").read_text())
    for field in ("diffusion_steps", "beta_schedule", "prediction", "zero_terminal_snr", "timestep_spacing"):
        del meta["config"][field]  # as written before diffedit recorded the process
    (folder / "autoencoder" / "config.json").write_text(json.dumps(meta))


def _with_model(change):
    def setup(tmp, good):
        _model_edit(tmp, change)
    return setup


def _trained_model(tmp, good):
    shutil.copytree(shipped_models()[MODEL], tmp / "in" / "m")
    for k in range(2):
        png(tmp / "in" / "imgs" / f"{k}.png", 64, 64, seed=k)


def _unrelated_weights(tmp, good):
    (tmp / "in" / "junk").mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp / "in" / "junk" / "resnet.pth")


def _huge_latent(tmp, good):
    with open(tmp / "in" / "huge.safetensors", "wb") as fh:
        fh.truncate(80 << 20)


M2 = ["--model", "models/m", "--steps", "2", "--inv-steps", "2", "-q"]
EXTRA_CASES = [
    # inputs are never outputs, even with --overwrite; outputs of one run never collide
    Case("interpolate-out-over-input", _run("interpolate", "d/frame_000.png", "in/b.png", "--frames", "2", "--out", "d",
                                            "--overwrite", *FAST, setup=_frames), 2, ("d/frame_000.png", "input")),
    Case("interpolate-out-is-file", _run("interpolate", "in/a.png", "in/b.png", "--out", "in/file.txt", *FAST), 2,
         ("in/file.txt", "not a folder")),
    Case("interpolate-out-dangling-symlink", _run("interpolate", "in/a.png", "in/b.png", "--out", "out", *FAST,
                                                  setup=_dangling), 2, ("out", "dangling")),
    Case("interpolate-empty-out", _run("interpolate", "in/a.png", "in/b.png", "--out", "", *FAST), 2, ("--out", "empty")),
    Case("stylemix-input-named-grid", _run("style-mix", "in/grid.png", "in/b.png", "--levels", "1", "--out", "in",
                                           "--overwrite", *FAST, setup=_grid_input), 2, ("in/grid.png", "input")),
    Case("stylemix-same-names", _run("style-mix", "in/ab", "in/b.png", "--levels", "1",
                                     "--out", "out", *FAST, setup=_same_names), 2, ("would both be written", "mix_a__b.png")),
    Case("stylemix-out-is-file", _run("style-mix", "in/a.png", "in/b.png", "--levels", "1", "--out", "in/file.txt",
                                      *FAST), 2, ("in/file.txt", "not a folder")),
    Case("sample-out-is-file", _run("sample", "--n", "2", "--out", "in/file.txt", *FAST[:-3], "-q"), 2,
         ("in/file.txt", "not a folder")),
    Case("swap-out-is-the-donor", _run("swap", "in/a.png", "in/b.png", "--attr", "hair", "--out", "in/b.png",
                                       "--overwrite", *FAST), 1, ("in/b.png", "overwrite the input")),
    Case("recombine-out-is-a-part", _run("recombine", "--base", "in/a.png", "--hair", "in/b.png", "--out", "in/b.png",
                                         "--overwrite", *FAST), 2, ("in/b.png", "overwrite the input")),
    Case("directions-show-out-is-input", _run("directions", "show", "in/dirs.safetensors", "--inputs", "in/a.png",
                                              "--out", "in/a.png", "--overwrite", *FAST, setup=_directions()), 2,
         ("in/a.png", "input")),
    Case("directions-pca-out-is-input", _run("directions", "pca", "in/a.png", "in/good.safetensors", "--out",
                                             "in/good.safetensors", "--overwrite", "--model", MODEL, "-q",
                                             setup=_latent_input), 2, ("in/good.safetensors", "input")),
    Case("train-over-a-finished-model", _run("train", "autoencoder", "--data", "in/imgs", "--out", "in/m", "--steps", "1",
                                             "--device", "cpu", setup=_trained_model), 2, ("in/m", "not empty")),
    # inputs of the wrong kind, names that are not UTF-8
    Case("encode-latent-among-images", _run("encode", "in/a.png", "in/good.safetensors", "in/b.png", "-b", "1",
                                            "--out", "out", "--inv-steps", "2", "-q", setup=_latent_input), 1,
         ("in/good.safetensors", "latent file"), written=("a.safetensors", "b.safetensors")),
    Case("align-latent-input", _run("align", "in/good.safetensors", "--detector", "dlib", "--out", "out", "-q",
                                    setup=_latent_input), 1, ("in/good.safetensors", "latent file")),
    Case("encode-name-not-utf8", _run("encode", "in/u", "--out", "out", "--inv-steps", "2", "-q", setup=_odd_name), 0,
         written=(os.fsdecode(b"\xff\xfe.safetensors"),)),
    Case("decode-name-not-utf8", _run("decode", "in/u", "--out", "out", "--steps", "2", "-q", setup=_odd_latent), 0,
         written=(os.fsdecode(b"\xff.png"),)),
    Case("latent-file-too-large", _run("decode", "in/huge.safetensors", "--out", "out", "--steps", "2", "-q",
                                       setup=_huge_latent), 1, ("in/huge.safetensors", "too large")),
    Case("empty-input-argument", _run("encode", "", "--out", "out", "-q"), 2, ("empty string",)),
    Case("empty-out", _run("encode", "in/a.png", "--out", "", "-q"), 2, ("--out", "empty string")),
    Case("relative-to-a-file", _run("encode", "in/a.png", "--relative-to", "in/file.txt", "--out", "out", "-q"), 2,
         ("--relative-to", "in/file.txt", "not a folder")),
    # values bounded where memory or time grows with them, checked before compute
    Case("sample-latent-steps-not-spaceable", _run("sample", "--n", "2", "--latent-steps", "60", "--out", "out",
                                                   *FAST[:-3], "-q"), 2, ("--latent-steps", "60")),
    Case("sample-n-huge", _run("sample", "--n", "1000000", "--out", "out", "-q"), 2, ("--n",)),
    Case("levels-huge-range", _flag("--attr", "Smiling", "--levels", "1-1000000000"), 2, ("--levels", "1..4")),
    Case("alpha-sweep-huge", _flag("--attr", "Smiling", "--alpha-sweep", "-0.5:0.5:100000"), 2,
         ("--alpha-sweep", "at most 64")),
    Case("frames-huge", _flag("--frames", "100000", command="interpolate", inputs=("in/a.png", "in/b.png")), 2,
         ("--frames",)),
    Case("align-size-huge", _run("align", "in/a.png", "--size", "100000", "--out", "out"), 2, ("--size",)),
    Case("train-lr-nan", _run("train", "autoencoder", "--data", "in", "--out", "out/run", "--lr", "nan"), 2, ("--lr",)),
    Case("train-lr-huge", _run("train", "autoencoder", "--data", "in", "--out", "out/run", "--lr", "5"), 2, ("--lr",)),
    Case("train-ema-decay-5", _run("train", "autoencoder", "--data", "in", "--out", "out/run", "--ema-decay", "5"), 2,
         ("--ema-decay",)),
    Case("eval-alphas-nan", _run("eval", "edit", "in", "--alphas", "nan", "--model", MODEL), 2, ("--alphas",)),
    Case("threads-0", _run("encode", "in/a.png", "--threads", "0", "--out", "out"), 2, ("--threads",)),
    Case("attr-repeated-past-the-limit", _flag("--attr", "Smiling=8", "--attr", "Smiling=8"), 2,
         ("--attr", "Smiling", "summed")),
    # direction files validated on load
    Case("direction-zero", _run("edit", "in/a.png", "--direction", "in/dirs.safetensors:pc01", "--out", "out/a.png",
                                *FAST, setup=_directions(vectors=_zero_row)), 2, ("in/dirs.safetensors", "pc02", "zero")),
    Case("direction-names-differ-in-case", _run("edit", "in/a.png", "--direction", "in/dirs.safetensors:smile",
                                                "--out", "out/a.png", *FAST,
                                                setup=_directions(names=["Smile", "smile"])), 2, ("differ only in case",)),
    Case("direction-name-with-colon", _run("edit", "in/a.png", "--direction", "in/dirs.safetensors:pc01", "--out",
                                           "out/a.png", *FAST, setup=_directions(names=["pc01", "a:b"])), 2,
         ("in/dirs.safetensors", "a:b")),
    Case("direction-absurd-std", _run("edit", "in/a.png", "--direction", "in/dirs.safetensors:pc01", "--out",
                                      "out/a.png", *FAST, setup=_directions(std=lambda w: torch.full((w,), 1e9))), 2,
         ("in/dirs.safetensors", "absurd")),
    Case("direction-path-with-equals", _run("edit", "in/a.png", "--direction", "in/a=b/dirs.safetensors:pc01=0.2",
                                            "--out", "out/a.png", *FAST,
                                            setup=_directions(where="in/a=b/dirs.safetensors")), 0, written=("a.png",)),
    # models validated on load
    Case("model-nan-weights", _run("encode", "in/a.png", "--out", "out", *M2[:2], "-q", setup=_with_model(_nan_weights)),
         2, ("model.safetensors", "NaN")),
    Case("model-classifier-of-other-weights", _run("edit", "in/a.png", "--attr", "Smiling", "--out", "out/a.png", *M2,
                                                   setup=_with_model(_foreign_classifier)), 2,
         ("classifier", "other autoencoder weights")),
    Case("model-config-without-process", _run("encode", "in/a.png", "--out", "out", "--inv-steps", "2", *M2[:2], "-q",
                                              setup=_with_model(_no_process)), 0, written=("a.safetensors",),
         warning="does not record prediction"),
    Case("align-same-names-from-two-folders", _run("align", "in/x/a.png", "in/y/a.png", "--detector", "dlib", "--size",
                                                   "64", "--out", "out", "--overwrite", "-q", setup=_same_faces), 1,
         ("in/y/a.png", "in/x/a.png", "--relative-to"), written=("a_00.png",)),
    Case("data-toyfaces-into-users-files", _run("data", "toyfaces", "--n", "2", "--out", "in"), 2, ("in", "not empty")),
    Case("model-folder-of-unrelated-weights", _run("encode", "in/a.png", "--out", "out", "--model", "in/junk", "-q",
                                                   setup=_unrelated_weights), 2, ("in/junk", "no Diff-AE autoencoder")),
]
CASES += EXTRA_CASES


def _synthetic(tmp, good):
    (tmp / "in" / "params.jsonl").write_text("")


def _official_autoencoder(tmp, good):
    shutil.copy(Path(__file__).parent / "fixtures" / "reference" / "tiny_autoenc" / "last.ckpt", tmp / "in" / "last.ckpt")


def _users_folder(tmp, good):
    _official_autoencoder(tmp, good)
    png(tmp / "in" / "mine" / "holiday.png")


def _recombine_output_exists(tmp, good):
    png(tmp / "out" / "r.png", seed=5)


LONG = "n" * 300
# found by running every option of every command with hostile values (empty, NaN, huge, over-long)
SWEEP_CASES = [
    Case("empty-model", _run("encode", "in/a.png", "--model", "", "--out", "out", "-q"), 2, ("--model", "empty string")),
    Case("empty-value-with-equals", _run("encode", "in/a.png", "--out=", "-q"), 2, ("--out", "empty string")),
    Case("empty-argument-in-the-middle", _run("style-mix", "in/a.png", "", "--levels", "1", "--out", "out"), 2,
         ("argument 3", "empty string")),
    Case("out-name-too-long", _run("encode", "in/a.png", "--out", LONG, *ENCODE[:4], "-q"), 1,
         ("file name too long",)),
    Case("model-name-too-long", _run("encode", "in/a.png", "--model", LONG, "--out", "out", "-q"), 1,
         ("file name too long",)),
    Case("eval-precision-unknown", _run("eval", "recon", "in", "--precision", "nan"), 2, ("--precision", "fp32")),
    Case("precision-unknown", _run("encode", "in/a.png", "--precision", "fp8", "--out", "out"), 2,
         ("--precision", "fp32")),
    Case("batch-size-huge", _run("encode", "in/a.png", "--batch-size", "999999999999", "--out", "out"), 2,
         ("--batch-size",)),
    Case("train-batch-size-huge", _run("train", "latent", "--model", "m", "--data", "in", "-b", "999999999999"), 2,
         ("--batch-size",)),
    Case("directions-show-columns-huge", _run("directions", "show", "in/dirs.safetensors", "--columns", "999999999",
                                              "--out", "out/s.png", setup=_directions()), 2, ("--columns",)),
    Case("train-oracle-size-huge", _run("train", "oracle", "--out", "out/m", "--size", "999999999999"), 2, ("--size",)),
    Case("train-oracle-n-train-huge", _run("train", "oracle", "--out", "out/m", "--n-train", "999999999999"), 2,
         ("--n-train",)),
    Case("eval-sample-n-huge", _run("eval", "sample", "in", "--n", "999999999999"), 2, ("--n",)),
    Case("data-toyfaces-size-huge", _run("data", "toyfaces", "--out", "out/d", "--size", "100000"), 2, ("--size",)),
    Case("eval-edit-photo-options-on-generated-faces", _run("eval", "edit", "in", "--attrs", "Smiling", "--model", MODEL,
                                                            setup=_synthetic), 2, ("--attrs", "only for real photos")),
    Case("recombine-output-exists", _run("recombine", "--base", "in/a.png", "--hair", "in/b.png", "--out", "out/r.png",
                                         *FAST, setup=_recombine_output_exists), 1, ("out/r.png", "already exists"),
         written=("r.png",)),
    Case("recombine-missing-part-before-compute", _run("recombine", "--base", "in/a.png", "--hair", "in/nope.png",
                                                       "--out", "out/r.png", *FAST), 2, ("--hair", "in/nope.png")),
    Case("convert-into-users-folder", _run("convert", "in/last.ckpt", "--out", "in/mine", setup=_users_folder), 2,
         ("in/mine", "not empty", "holiday.png")),
    Case("convert-out-is-the-checkpoint", _run("convert", "in/last.ckpt", "--out", "in/last.ckpt", "--overwrite",
                                               setup=_official_autoencoder), 2, ("in/last.ckpt", "not a folder")),
    Case("swap-missing-donor-before-compute", _run("swap", "in/a.png", "in/nope.png", "--attr", "hair", "--out", "out",
                                                   *FAST), 2, ("donor", "in/nope.png")),
    Case("directions-rename-to-an-unaddressable-name", _run("directions", "rename", "in/dirs.safetensors", "pc01=a:b",
                                                            setup=_directions()), 2, ("a:b", "FILE:NAME=ALPHA")),
    Case("directions-from-examples-bad-name", _run("directions", "from-examples", "--positive", "in/a.png", "--negative",
                                                   "in/b.png", "--name", "x=y", "--out", "out/d.safetensors",
                                                   "--model", MODEL, "-q"), 2, ("--name", "x=y")),
]
CASES += SWEEP_CASES


def _snapshot(root: Path, skip: Path) -> dict:
    found = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and skip not in p.parents:
            found[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def _files(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys, good_latent, other_latent):
    monkeypatch.chdir(tmp_path)
    argv = case.make(tmp_path, good_latent, other_latent)
    stdin = [a for a in argv if a.startswith("__stdin__=")]
    if stdin:
        argv.remove(stdin[0])
        monkeypatch.setattr(sys, "stdin", io.StringIO((tmp_path / stdin[0].split("=", 1)[1]).read_text()))
    if case.offline_hub:
        from hub_server import hub_env

        hub_env(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf", offline=True)
    before = _snapshot(tmp_path, tmp_path / "out")
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err and "internal error" not in err and "Warning:" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if case.code == 0:
        assert not errors, err
    else:
        assert errors, err
        assert any(all(n in line for n in case.needle) for line in errors), (case.needle, err)
    if case.warning:
        assert any(line.startswith("warning:") and case.warning in line for line in err.splitlines()), err
    assert _snapshot(tmp_path, tmp_path / "out") == before, "an input changed"
    assert _files(tmp_path / "out") == set(case.written), err
    assert not [p for p in tmp_path.rglob("*.tmp")], "temporary file left behind"
    assert not (tmp_path / MARKER).exists(), "pickled code was executed"
    for name in case.written:
        if name.endswith(".safetensors") and not name.startswith("m/"):
            load_latent(tmp_path / "out" / name)
        elif name.endswith(".png"):
            Image.open(tmp_path / "out" / name).load()


def test_the_matrix_has_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


# -- faults --------------------------------------------------------------------------------------------------

def _cli(*argv: str, cwd: Path, env=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "diffedit_cli", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def test_sigint_leaves_no_partial_files_and_skip_existing_completes(tmp_path):
    n = 8  # enough inputs that the interrupt lands while some are still to do
    for k in range(n):
        png(tmp_path / "in" / f"{k}.png", seed=k)
    argv = ["encode", "in", "--model", MODEL, "--batch-size", "1", "--out", "out"]
    # a shell that starts pytest in the background makes its children ignore SIGINT: give this one the default back
    proc = _cli(*argv, "--inv-steps", "20", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"},
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list((tmp_path / "out").glob("*.safetensors")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    done = sorted((tmp_path / "out").glob("*.safetensors"))
    assert 1 <= len(done) < n, err
    assert f"interrupted: {len(done)} encoded" in err, err
    assert not list(tmp_path.rglob("*.tmp"))
    for path in done:
        load_latent(path)
    again = _cli(*argv, "--inv-steps", "2", "--skip-existing", "-q", cwd=tmp_path)
    _, err2 = again.communicate(timeout=300)
    assert again.returncode == 0, err2
    assert f"{n - len(done)} encoded, {len(done)} skipped" in err2
    assert len(list((tmp_path / "out").glob("*.safetensors"))) == n


def test_output_that_appears_during_the_run_is_not_replaced(tmp_path, monkeypatch, capsys):
    from diffedit_cli import pipeline

    png(tmp_path / "in" / "a.png")
    png(tmp_path / "in" / "b.png", seed=1)
    real = pipeline.invert

    def invert_while_another_process_writes(*args, **kwargs):
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / "b.safetensors").write_bytes(b"written by someone else")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "invert", invert_while_another_process_writes)
    monkeypatch.chdir(tmp_path)
    code = main(["encode", "in", *ENCODE])
    err = capsys.readouterr().err
    assert code == 1
    assert any("out/b.safetensors" in l and "already exists" in l for l in err.splitlines() if l.startswith("error:")), err
    assert (tmp_path / "out" / "b.safetensors").read_bytes() == b"written by someone else"
    load_latent(tmp_path / "out" / "a.safetensors")
    assert "1 encoded, 1 failed" in err


def test_two_runs_into_one_folder_never_share_an_output(tmp_path):
    for k in range(4):
        png(tmp_path / "in" / f"{k}.png", seed=k)
    argv = ["encode", "in", "--model", MODEL, "--inv-steps", "2", "--batch-size", "1", "--out", "out", "--json", "-q"]
    runs = [_cli(*argv, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}) for _ in range(2)]
    claims = []
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert "Traceback" not in err and "internal error" not in err, err
        claims.append([json.loads(l) for l in out.splitlines()])
    ok = [c["output"] for run in claims for c in run if c["status"] == "ok"]
    assert len(ok) == len(set(ok)) == 4, claims  # every output written by exactly one run
    for run in claims:
        for c in run:
            assert c["status"] == "ok" or "already exists" in c["error"], c
    for k in range(4):
        load_latent(tmp_path / "out" / f"{k}.safetensors")
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.fixture()
def small_disk(tmp_path):
    """A 160 kB tmpfs (room for three latent files of the default model), or a skip when mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                                                   capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission) to fill a disk")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_full_disk_is_a_per_file_failure(tmp_path, small_disk, monkeypatch, capsys):
    for k in range(5):
        png(tmp_path / "in" / f"{k}.png", seed=k)
    monkeypatch.chdir(tmp_path)
    code = main(["encode", "in", "--model", MODEL, "--inv-steps", "2", "--out", str(small_disk), "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    written = sorted(small_disk.glob("*.safetensors"))
    failed = [l for l in err.splitlines() if l.startswith("error:")]
    assert written and failed and len(written) + len(failed) == 5, err
    assert all("No space left on device" in l for l in failed), err
    assert f"{len(written)} encoded, {len(failed)} failed" in err
    for path in written:
        load_latent(path)
    assert not list(small_disk.glob(".*"))  # no temporary file left


def test_latent_files_follow_the_umask_like_images(tmp_path, monkeypatch, capsys):
    png(tmp_path / "in" / "a.png")
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        assert main(["encode", "in/a.png", *ENCODE]) == 0
        assert main(["decode", "out/a.safetensors", "--model", MODEL, "--steps", "2", "--out", "rec.png", "-q"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "a.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "rec.png").stat().st_mode & 0o777 == 0o644


def test_default_model_is_not_replaced_by_a_folder_in_the_working_directory(tmp_path, monkeypatch, capsys):
    model_copy(tmp_path, name="toyfaces", drop=("model.safetensors",))
    shutil.move(str(tmp_path / "models" / "toyfaces"), str(tmp_path / "toyfaces"))
    png(tmp_path / "in" / "a.png")
    monkeypatch.chdir(tmp_path)
    assert main(["encode", "in/a.png", "--inv-steps", "2", "--out", "a.safetensors", "-q"]) == 0
    assert load_latent(tmp_path / "a.safetensors").meta["model_id"] == MODEL


def test_big_image_is_read_with_bounded_memory(tmp_path):
    """An 8000x8000 JPEG is decoded at a reduced scale (Pillow's draft), not as 192 MB of RGB."""
    path = tmp_path / "big.jpg"
    Image.new("RGB", (8000, 8000), (120, 30, 200)).save(path, quality=50)
    script = (
        "import resource, sys\n"
        "from diffedit_cli.io.images import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image = load_image(sys.argv[1], 64)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(after - before, float(image[0].mean()), tuple(image.shape))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True).stdout
    grown_kb, red, shape = out.split(" ", 2)
    assert shape.strip() == "(3, 64, 64)"
    assert abs(float(red) - (120 / 127.5 - 1)) < 0.02
    assert int(grown_kb) < 60_000, f"reading grew the process by {int(grown_kb) / 1e3:.0f} MB"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_out_fails_each_file_before_any_compute(tmp_path, monkeypatch, capsys):
    from diffedit_cli import pipeline

    png(tmp_path / "in" / "a.png")
    png(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o555)
    monkeypatch.setattr(pipeline, "invert", lambda *a, **k: pytest.fail("computed for a read-only --out"))
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["encode", "in", *ENCODE])
    finally:
        (tmp_path / "out").chmod(0o755)
    err = capsys.readouterr().err
    assert code == 1 and err.count("read-only folder") == 2 and "0 encoded, 2 failed" in err, err


def test_sample_writes_as_it_goes_and_resumes(tmp_path, capsys):
    """An interrupted sample run (here: files removed) is completed by --skip-existing, sample k the same."""
    args = ["sample", "--n", "5", "-b", "2", "--steps", "2", "--latent-steps", "2", "--model", MODEL, "-q"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    kept = {k: (tmp_path / "a" / f"sample_{k:04d}.png").read_bytes() for k in (0, 1, 3)}
    for k in (2, 4):
        (tmp_path / "a" / f"sample_{k:04d}.png").unlink()
    (tmp_path / "a" / "grid.png").unlink()
    assert main([*args, "--out", str(tmp_path / "a")]) == 2  # a non-empty folder needs a decision
    assert "--skip-existing" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "a"), "--skip-existing"]) == 0
    assert "2 samples, 3 skipped" in capsys.readouterr().err
    assert all((tmp_path / "a" / f"sample_{k:04d}.png").read_bytes() == v for k, v in kept.items())
    assert main([*args, "-b", "5", "--out", str(tmp_path / "b")]) == 0
    for k in range(5):
        a = np.asarray(Image.open(tmp_path / "a" / f"sample_{k:04d}.png"), dtype=int)
        b = np.asarray(Image.open(tmp_path / "b" / f"sample_{k:04d}.png"), dtype=int)
        assert np.abs(a - b).max() <= 1  # batch composition changes results by rounding only (fp32)
    assert (tmp_path / "a" / "grid.png").is_file() and not list(tmp_path.rglob("*.tmp"))


def test_library_messages_are_cut_at_a_word_not_mid_word():
    from diffedit_cli.errors import reason

    torch_says = Exception("Weights only load failed. This file can still be loaded, to do so you have two options, "
                           "do those steps only if you trust the source of the checkpoint. (1) ... WeightsUnpickler "
                           "error: Unsupported global: GLOBAL builtins.open was not an allowed global by default. "
                           "Please use `torch.serialization.add_safe_globals([open])`")
    assert reason(torch_says) == ("WeightsUnpickler error: Unsupported global: GLOBAL builtins.open was not an "
                                  "allowed global by default")
    long = reason(Exception("checkpoint " * 40), 50)
    assert long.endswith(" ...") and all(word == "checkpoint" for word in long[:-4].split())
