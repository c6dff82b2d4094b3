"""What a newcomer meets first: honest behaviour of the toy model on photos, whole-photo before/after, labelled
comparisons at a size people can see, --threads, --relative-to, clear model-path messages, the README's Python
example, value completion, and the small things (plurals, help wording, sample report lines)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "examples" / "face.png"
FACE2 = ROOT / "examples" / "face2.png"
ASTRONAUT = ROOT / "examples" / "astronaut.png"
FAST = ["--steps", "2", "--inv-steps", "2", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True)
def no_face_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFEDIT_FACE_WEIGHTS", str(tmp_path / "no-face-weights"))


def err_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_the_toy_model_on_a_photo_says_so_once(tiny_model_dir, tmp_path, capsys):
    args = ["edit", str(ASTRONAUT), "--align", "--paste-back", "--attr", "Smiling", "--detector", "dlib", *FAST]
    assert main([*args, "--out", str(tmp_path / "toy.png")]) == 0
    warnings = [line for line in err_lines(capsys) if line.startswith("warning:")]
    assert len(warnings) == 1 and "'toyfaces' is not a photo model" in warnings[0] and "--model ffhq256" in warnings[0]
    assert main([*args, "--model", str(tiny_model_dir), "--out", str(tmp_path / "converted.png")]) == 0
    assert not [line for line in err_lines(capsys) if line.startswith("warning:")]  # official weights: no warning
    assert main(["align", str(ASTRONAUT), "--detector", "dlib", "--out", str(tmp_path / "crops"), "-q"]) == 0
    assert any("not a photo model" in line for line in err_lines(capsys))


def test_compare_with_paste_back_is_the_whole_photo_before_and_after(tiny_model_dir, tmp_path, capsys):
    args = ["edit", str(ASTRONAUT), "--align", "--paste-back", "--attr", "Smiling", "--detector", "dlib",
            "--model", str(tiny_model_dir), *FAST]
    assert main([*args, "--out", str(tmp_path / "edited.png")]) == 0
    assert main([*args, "--compare", "--out", str(tmp_path / "compare.png")]) == 0
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    edited = np.asarray(Image.open(tmp_path / "edited.png"))
    both = np.asarray(Image.open(tmp_path / "compare.png"))
    assert both.shape == (photo.shape[0], 2 * photo.shape[1], 3)
    assert np.array_equal(both[:, :photo.shape[1]], photo) and np.array_equal(both[:, photo.shape[1]:], edited)
    assert not np.array_equal(edited, photo)
    assert "1 photo edited" in capsys.readouterr().err  # not "1 photos edited"


def dark_pixels(region: np.ndarray) -> int:
    return int((region.max(-1) < 100).sum())


def test_sweeps_and_overviews_are_labelled_and_large_enough(tmp_path, capsys):
    out = tmp_path / "sweep.png"
    assert main(["edit", str(FACE), "--attr", "Smiling", "--alpha-sweep", "-0.5:0.5:3", "--compare", "--out", str(out),
                 *FAST]) == 0
    grid = np.asarray(Image.open(out))
    tile, pad = 256, 2  # the 64 px model's tiles shown 4x, nearest-neighbour
    band = grid.shape[0] - (tile + 2 * pad)
    assert grid.shape[1] == 4 * (tile + pad) + pad and band > 10
    for column in range(4):  # a label above each column: input, Smiling -0.50, +0.00, +0.50
        left = pad + column * (tile + pad)
        assert dark_pixels(grid[:band, left:left + tile]) > 20
        cell = grid[band + pad:band + pad + tile, left:left + tile]
        assert np.array_equal(cell, np.repeat(np.repeat(cell[::4, ::4], 4, 0), 4, 1))  # enlarged, not resampled
    # the unlabelled edit stays at the model's size
    assert main(["edit", str(FACE), "--attr", "Smiling", "--out", str(tmp_path / "plain.png"), *FAST]) == 0
    assert Image.open(tmp_path / "plain.png").size == (64, 64)
    # directions show: a name before each row
    assert main(["directions", "pca", str(FACE), str(FACE2), str(ROOT / "docs" / "images"), "--components", "2",
                 "--out", str(tmp_path / "d.safetensors"), "--device", "cpu"]) in (0, 1)
    assert main(["directions", "show", str(tmp_path / "d.safetensors"), "--inputs", str(FACE), "--faces", "1",
                 "--columns", "3", "--out", str(tmp_path / "show.png"), *FAST]) == 0
    show = np.asarray(Image.open(tmp_path / "show.png"))
    rows = 2
    top = show.shape[0] - rows * (tile + pad) - pad
    left = show.shape[1] - 3 * (tile + pad) - pad
    assert left > 10 and top > 10
    for row in range(rows):
        y = top + pad + row * (tile + pad)
        assert dark_pixels(show[y:y + tile, :left]) > 20


def test_threads_are_honoured(tmp_path, capsys, monkeypatch):
    before = torch.get_num_threads()
    try:
        assert main(["encode", str(FACE), "--threads", "1", "--inv-steps", "2", "--out", str(tmp_path / "a"), "-q"]) == 0
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("DIFFEDIT_THREADS", "2")
        assert main(["decode", str(tmp_path / "a"), "--steps", "2", "--out", str(tmp_path / "b"), "-q"]) == 0
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("DIFFEDIT_THREADS", "many")
        assert main(["decode", str(tmp_path / "a"), "--steps", "2", "--out", str(tmp_path / "c"), "-q"]) == 2
        assert err_lines(capsys)[-1] == "error: $DIFFEDIT_THREADS must be a whole number >= 1, got 'many'"
        assert main(["encode", str(FACE), "--threads", "0", "--out", str(tmp_path / "d")]) == 2
        assert "--threads" in err_lines(capsys)[-1]
    finally:
        torch.set_num_threads(before)


def test_relative_to_keeps_the_tree_of_listed_files(tmp_path, capsys, monkeypatch):
    import io

    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b c").mkdir()
    shutil.copy(FACE, root / "a" / "000001.png")
    shutil.copy(FACE2, root / "b c" / "000001.png")
    listing = f"{root / 'a' / '000001.png'}\n{root / 'b c' / '000001.png'}\n{FACE}\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(listing))
    assert main(["encode", "-", "--inv-steps", "2", "--out", str(tmp_path / "flat"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "would both be written to" in err and "--relative-to DIR keeps their folders" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(listing))
    assert main(["encode", "-", "--relative-to", str(root), "--inv-steps", "2", "--out", str(tmp_path / "tree"),
                 "-q"]) == 1  # the third file is outside the folder: a per-file failure, the rest is written
    assert "is not inside the --relative-to folder" in capsys.readouterr().err
    written = sorted(p.relative_to(tmp_path / "tree").as_posix() for p in (tmp_path / "tree").rglob("*.safetensors"))
    assert written == ["a/000001.safetensors", "b c/000001.safetensors"]


def test_model_paths_and_names_get_the_right_message(tmp_path, capsys, monkeypatch):
    assert main(["encode", str(FACE), "--model", "./nowhere/ffhq256", "--out", str(tmp_path / "x")]) == 2
    assert err_lines(capsys) == ["error: model folder './nowhere/ffhq256' not found; did you mean ffhq256?"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["encode", str(FACE), "--model", "models/ffhq256", "--out", str(tmp_path / "x")]) == 2
    line = err_lines(capsys)[-1]
    assert "not in the local cache" in line and "no local folder 'models/ffhq256' exists either" in line


def test_the_readme_python_edit_gives_the_commands_output(tmp_path, capsys, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "edit_files" in snippet
    (tmp_path / "examples").mkdir()
    shutil.copy(FACE, tmp_path / "examples" / "face.png")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["code"] == 0
    assert main(["edit", "examples/face.png", "--attr", "Smiling", "--alpha", "0.7", "--out", "cli.png", "-q"]) == 0
    assert (tmp_path / "smiling.png").read_bytes() == (tmp_path / "cli.png").read_bytes()


def tile(grid: np.ndarray, k: int, size: int = 256, pad: int = 2) -> np.ndarray:
    band = grid.shape[0] - (size + 2 * pad)
    left = pad + k * (size + pad)
    return grid[band + pad:band + pad + size, left:left + size]


def test_compare_shows_a_latent_donor_from_its_own_x_T(tmp_path, capsys):
    """swap / recombine --compare: a donor given as a latent file is decoded from its stored x_T."""
    assert main(["encode", str(FACE2), "--out", str(tmp_path / "donor.safetensors"), "--inv-steps", "2", "-q"]) == 0
    assert main(["decode", str(tmp_path / "donor.safetensors"), "--out", str(tmp_path / "donor.png"), "--steps", "2",
                 "--device", "cpu", "-q"]) == 0
    decoded = np.asarray(Image.open(tmp_path / "donor.png"))
    expected = np.repeat(np.repeat(decoded, 4, 0), 4, 1)
    assert main(["swap", str(FACE), str(tmp_path / "donor.safetensors"), "--attr", "hair", "--compare",
                 "--out", str(tmp_path / "swap.png"), *FAST]) == 0
    assert np.array_equal(tile(np.asarray(Image.open(tmp_path / "swap.png")), 1), expected)
    assert main(["recombine", "--base", str(FACE), "--hair", str(tmp_path / "donor.safetensors"), "--compare",
                 "--out", str(tmp_path / "recombined.png"), *FAST]) == 0
    assert np.array_equal(tile(np.asarray(Image.open(tmp_path / "recombined.png")), 1), expected)


def test_recombine_list_slices_needs_no_base(capsys):
    assert main(["recombine", "--list-slices"]) == 0
    assert "hair" in capsys.readouterr().out.split()
    assert main(["recombine", "--hair", str(FACE)]) == 2
    assert "give --base IMAGE" in capsys.readouterr().err


def test_small_things(tmp_path, capsys):
    assert main(["align", "--help"]) == 0
    assert "With --align" not in capsys.readouterr().out
    assert main(["sample", "--n", "2", "--latent-steps", "2", "--seed", "5", "--json", "--out",
                 str(tmp_path / "s"), "--steps", "2", "-q"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["input"], line["seed"], line["index"]) for line in lines] == [("sample 0", 5, 0), ("sample 1", 5, 1)]
    assert main(["style-mix", str(FACE), str(FACE2), "--levels", "1", "--out", str(tmp_path / "mix"), *FAST]) == 0


def complete(words: str) -> list:
    env = dict(os.environ, _DIFFEDIT_COMPLETE="complete_bash", COMP_WORDS=words,
               COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    proc = subprocess.run([sys.executable, "-m", "diffedit_cli"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_shell_completion_completes_values():
    assert complete("diffedit edit --attr Smi") == ["Smiling"]
    assert "No_Beard" in complete("diffedit edit --attr No_B")
    assert complete("diffedit edit --model ffh") == ["ffhq256"]
    assert complete("diffedit swap a.png b.png --attr ha") == ["hair"]
