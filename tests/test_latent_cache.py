"""The latent cache: a second run on an image already inverted with the same model and settings skips the inversion
and gives the same result; anything the result depends on changes the key; the bound evicts the least recently
used entries; a corrupt entry is ignored."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli import pipeline
from diffedit_cli.cli import main
from diffedit_cli.io.latent_cache import LatentCache, cache_folder
from diffedit_cli.io.latents import load_latent

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FAST = ["--steps", "3", "--inv-steps", "3", "--precision", "fp32", "-q"]
ENC = FAST[2:]  # encode decodes nothing


@pytest.fixture
def cache_on(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFEDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIFFEDIT_LATENT_CACHE_MB", "64")
    calls = []
    invert = pipeline.invert

    def counted(ae, images, z, sampling, progress=None):
        calls.append(len(images))
        return invert(ae, images, z, sampling, progress)

    monkeypatch.setattr(pipeline, "invert", counted)
    return calls


def _pixels(path: Path):
    return np.asarray(Image.open(path)).tolist()


def test_a_second_edit_of_the_same_image_skips_the_inversion(cache_on, tmp_path):
    face = str(EXAMPLES / "face.png")
    assert main(["edit", face, "--attr", "Smiling", "--alpha", "0.3", "--out", str(tmp_path / "a.png"), *FAST]) == 0
    assert cache_on == [1]
    assert main(["edit", face, "--attr", "Smiling", "--alpha", "0.6", "--out", str(tmp_path / "b.png"), *FAST]) == 0
    assert cache_on == [1]  # the second edit did not invert again
    assert main(["interpolate", face, str(EXAMPLES / "face2.png"), "--frames", "2", "--out", str(tmp_path / "i"),
                 *FAST]) == 0
    assert cache_on == [1, 1]  # only B, which the cache did not hold
    assert main(["edit", face, "--attr", "Smiling", "--alpha", "0.6", "--out", str(tmp_path / "c.png"), "--no-cache",
                 *FAST]) == 0
    assert cache_on == [1, 1, 1]
    assert _pixels(tmp_path / "b.png") == _pixels(tmp_path / "c.png")  # the cached codes decode to the same image
    entries = [load_latent(p) for p in cache_folder().glob("??/*.safetensors")]  # ordinary latent files
    assert len(entries) == 2
    entry = next(e for e in entries if e.meta["source"] == face)
    assert entry.meta["source"] == face and entry.meta["inv_steps"] == "3" and entry.meta["precision"] == "fp32"


def test_what_the_codes_depend_on_changes_the_key(cache_on, tmp_path):
    face = str(EXAMPLES / "face.png")
    out = tmp_path / "out"
    assert main(["encode", face, "--out", str(out / "1.safetensors"), *ENC]) == 0
    assert main(["encode", face, "--out", str(out / "2.safetensors"), *ENC]) == 0
    assert cache_on == [1]
    assert main(["encode", face, "--out", str(out / "3.safetensors"), "--inv-steps", "4", *ENC[2:]]) == 0
    assert main(["encode", face, "--out", str(out / "4.safetensors"), "--spacing", "uniform", *ENC]) == 0
    assert main(["encode", face, "--out", str(out / "5.safetensors"), "--model", "toyfaces-hdae", *ENC]) == 0
    assert main(["encode", str(EXAMPLES / "face2.png"), "--out", str(out / "6.safetensors"), *ENC]) == 0
    assert cache_on == [1] * 5
    one, two = load_latent(out / "1.safetensors"), load_latent(out / "2.safetensors")
    assert torch.equal(one.x_T, two.x_T) and torch.equal(one.z_sem, two.z_sem)
    x = torch.zeros(3, 8, 8)
    keys = {LatentCache.key(x, "f", 50, "quadratic", "fp32", "cpu"), LatentCache.key(x, "f", 50, "quadratic", "bf16", "cpu"),
            LatentCache.key(x, "f", 50, "quadratic", "fp32", "cuda"), LatentCache.key(x + 1e-3, "f", 50, "quadratic", "fp32", "cpu"),
            LatentCache.key(x, "f", 50, "quadratic", "fp32", "cpu", "ddim"),
            LatentCache.key(x, "f", 50, "quadratic", "fp32", "cpu", "dpmpp-2m")}
    assert len(keys) == 5  # ddim is the key's default inversion
    assert main(["encode", face, "--out", str(out / "7.safetensors"), "--inv-sampler", "ddim", *ENC]) == 0
    assert cache_on == [1] * 6  # another inversion solver: inverted again
    assert load_latent(out / "7.safetensors").meta["inv_sampler"] == "ddim"


def test_the_bound_evicts_the_least_recently_used(tmp_path):
    cache = LatentCache(tmp_path / "c", max_bytes=10 ** 9)
    z, x_T = torch.zeros(4), torch.zeros(3, 16, 16)
    keys = [f"{k:02d}" + "a" * 62 for k in range(4)]
    for k in range(3):
        cache.put(keys[k], z + k, x_T, {"diffedit_latent": "1"})
    size = cache.info().bytes // 3
    for k, when in enumerate((1, 2, 3)):
        os.utime(cache.path(keys[k]), (when, when))  # 00 the least recently used, then 01, 02
    assert cache.get(keys[0]) is not None  # reading marks it as used: 01 and 02 are now the oldest
    cache.max_bytes = 2 * size + size // 2
    cache.put(keys[3], z + 3, x_T, {"diffedit_latent": "1"})
    assert sorted(p.name[:2] for p in cache.folder.glob("??/*.safetensors")) == ["00", "03"]
    assert cache.info().bytes <= cache.max_bytes and cache.get(keys[1]) is None
    assert torch.equal(cache.get(keys[3])[0], z + 3)


def test_a_corrupt_entry_is_ignored_and_replaced(cache_on, tmp_path):
    face = str(EXAMPLES / "face.png")
    assert main(["encode", face, "--out", str(tmp_path / "a.safetensors"), *ENC]) == 0
    entry, = cache_folder().glob("??/*.safetensors")
    entry.write_bytes(b"\x00" * 40)
    assert main(["encode", face, "--out", str(tmp_path / "b.safetensors"), *ENC]) == 0
    assert cache_on == [1, 1]
    assert load_latent(entry).x_T is not None  # rewritten


def test_cache_info_and_clear(cache_on, tmp_path, capsys):
    assert main(["encode", str(EXAMPLES / "face.png"), "--out", str(tmp_path / "a.safetensors"), *ENC]) == 0
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    assert "1 inverted image," in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "1 entries removed" in capsys.readouterr().out
    assert not list(cache_folder().glob("??/*.safetensors"))


def test_a_bad_bound_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DIFFEDIT_LATENT_CACHE_MB", "lots")
    assert main(["cache", "info"]) == 2
    assert "DIFFEDIT_LATENT_CACHE_MB must be a whole number" in capsys.readouterr().err


WRITER = """
import sys, torch
from diffedit_cli.io.latent_cache import LatentCache
cache = LatentCache(sys.argv[1], 2 ** 30)
z, x = torch.arange(256.0), torch.arange(3 * 64 * 64.0).reshape(3, 64, 64)
for k in range(int(sys.argv[2])):
    cache.put("ab" + "0" * 62, z + k % 2, x, {"diffedit_latent": "1"})
"""


def test_concurrent_runs_never_read_a_half_written_entry(tmp_path):
    """Two processes keep rewriting one entry while this one reads it: once it exists, every read is a whole entry
    (atomic replacement), never a miss from a torn file or a mix of two writes."""
    import subprocess
    import sys
    import time

    folder = tmp_path / "latents"
    key = "ab" + "0" * 62
    cache = LatentCache(folder, 2 ** 30)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), "150"]) for _ in range(2)]
    reads = whole = 0
    seen = False
    try:
        while any(w.poll() is None for w in writers):
            hit = cache.get(key)
            if hit is None:
                assert not seen, "an existing entry read as missing: a half-written file"
                time.sleep(0.001)
                continue
            seen = True
            reads += 1
            z, x = hit
            step = float(z[0])
            whole += int(step in (0.0, 1.0) and torch.equal(z, torch.arange(256.0) + step)
                         and torch.equal(x, torch.arange(3 * 64 * 64.0).reshape(3, 64, 64)))
    finally:
        for w in writers:
            w.wait(timeout=120)
    assert all(w.returncode == 0 for w in writers)
    assert reads > 10 and whole == reads
