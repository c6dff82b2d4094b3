"""Scale-out: --shard I/N (or torchrun's environment) splits a folder run by a stable hash, every input in exactly one
shard; shards write into one --out; manifests record every input; a crashed run completes with --skip-existing,
also with another N."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffedit_cli.cli import main
from diffedit_cli.errors import DiffeditError
from diffedit_cli.jobs.shards import in_shard, parse_shard, shard_from_env, shard_path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENC = ["--inv-steps", "2", "--precision", "fp32", "-q"]


def _folder(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(n):
        shutil.copy(EXAMPLES / ("face.png" if k % 2 else "face2.png"), folder / f"f{k:02d}.png")
    return folder


def _manifest_lines(paths):
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()]


def test_every_input_is_in_exactly_one_shard_and_new_files_move_nothing():
    names = [Path(f"dir/{k}.png") for k in range(200)]
    for n in (1, 2, 3, 8):
        owners = [[i for i in range(n) if in_shard(name, (i, n))] for name in names]
        assert all(len(o) == 1 for o in owners)
        if n == 8:
            sizes = [sum(o == [i] for o in owners) for i in range(n)]
            assert min(sizes) > 10  # a hash, not a pile-up on one shard
    more = names + [Path(f"dir/new{k}.png") for k in range(50)]
    assert [in_shard(p, (1, 3)) for p in names] == [in_shard(p, (1, 3)) for p in more[:200]]
    assert parse_shard("2/8") == (2, 8) and shard_path(Path("m.jsonl"), (2, 8)) == Path("m.shard-2-of-8.jsonl")
    for bad in ("8/8", "-1/4", "1", "a/b", "0/0", "1/200000"):
        with pytest.raises(DiffeditError):
            parse_shard(bad)
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "4"}) == (1, 4)
    assert shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None and shard_from_env({}) is None


def test_shards_into_one_out_cover_the_folder_and_a_crash_completes_with_another_n(tmp_path, capsys):
    folder = _folder(tmp_path, 7)
    out = tmp_path / "out"
    for i in range(3):
        assert main(["encode", str(folder), "--out", str(out), "--shard", f"{i}/3", "--manifest",
                     str(tmp_path / "m.jsonl"), *ENC]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"f{k:02d}.safetensors" for k in range(7)]
    lines = _manifest_lines(sorted(tmp_path.glob("m.shard-*-of-3.jsonl")))
    assert sorted(Path(l["input"]).name for l in lines) == [f"f{k:02d}.png" for k in range(7)]  # no duplicates
    import hashlib
    for line in lines:
        assert line["status"] == "ok" and line["model_fingerprint"] and line["shard"].endswith("/3")
        assert line["sha256"] == hashlib.sha256(Path(line["output"]).read_bytes()).hexdigest()
    # a crash lost some outputs: the same command with --skip-existing, now as 2 shards, completes the run
    for k in (1, 4, 5):
        (out / f"f{k:02d}.safetensors").unlink()
    capsys.readouterr()
    encoded = skipped = 0
    for i in range(2):
        assert main(["encode", str(folder), "--out", str(out), "--shard", f"{i}/2", "--skip-existing", *ENC]) == 0
        summary = capsys.readouterr().err.strip().splitlines()[-1]  # "2 encoded, 2 skipped (exist)"
        encoded += int(summary.split(" encoded")[0])
        skipped += int(summary.split(", ")[1].split(" ")[0]) if "skipped" in summary else 0
    assert (encoded, skipped) == (3, 4)
    assert len(list(out.iterdir())) == 7
    # a manifest is an output: never replaced without a flag
    assert main(["encode", str(folder), "--out", str(tmp_path / "out2"), "--shard", "0/3", "--manifest",
                 str(tmp_path / "m.jsonl"), *ENC]) == 2
    assert "m.shard-0-of-3.jsonl" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_a_shard_of_one_output_file_and_a_bad_shard_are_refused(tmp_path, capsys):
    face = str(EXAMPLES / "face.png")
    assert main(["encode", face, "--out", str(tmp_path / "a.safetensors"), "--shard", "0/2", *ENC]) == 2
    assert "--shard" in capsys.readouterr().err
    assert main(["edit", face, "--attr", "Smiling", "--out", str(tmp_path / "o"), "--shard", "2/2", *ENC]) == 2
    assert "--shard" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_style_mix_shards_fill_one_folder_and_a_resumed_run_draws_the_grid(tmp_path, capsys):
    """A 3 x 2 style-mix grid as 2 shards: every pair made once, no grid by a shard; an unsharded --skip-existing
    run computes nothing and writes the grid, byte-equal to the grid of one unsharded run."""
    a, b = _folder(tmp_path, 3), tmp_path / "b"
    b.mkdir()
    for k in range(2):
        shutil.copy(EXAMPLES / ("face.png" if k else "face2.png"), b / f"g{k}.png")
    mix = ["--levels", "1", "--steps", "2", *ENC]
    out = tmp_path / "out"
    for i in range(2):
        assert main(["style-mix", str(a), str(b), "--out", str(out), "--shard", f"{i}/2", "--manifest",
                     str(tmp_path / "m.jsonl"), *mix]) == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"mix_f{i:02d}__g{j}.png" for i in range(3) for j in range(2))
    lines = _manifest_lines(sorted(tmp_path.glob("m.shard-*-of-2.jsonl")))
    assert sorted(Path(l["output"]).name for l in lines) == names  # each pair by exactly one shard
    capsys.readouterr()
    assert main(["style-mix", str(a), str(b), "--out", str(out), "--skip-existing", *mix]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == "0 mixes, 6 skipped (exist)"
    whole = tmp_path / "whole"
    assert main(["style-mix", str(a), str(b), "--out", str(whole), *mix]) == 0
    assert (out / "grid.png").read_bytes() == (whole / "grid.png").read_bytes()
    for name in names:
        assert (out / name).read_bytes() == (whole / name).read_bytes()
    # without --skip-existing or a shard, a filled folder is still refused before any work
    assert main(["style-mix", str(a), str(b), "--out", str(out), *mix]) == 2
    assert "--skip-existing" in capsys.readouterr().err


def _faces(tmp_path: Path, n: int) -> Path:
    """n generated faces (distinct images) in tmp_path/faces/images."""
    assert main(["data", "toyfaces", "--n", str(n), "--seed", "11", "--out", str(tmp_path / "faces"), "--no-masks",
                 "-q"]) == 0
    return tmp_path / "faces" / "images"


def test_torchrun_processes_split_the_folder_without_a_flag(tmp_path):
    """torchrun --nproc-per-node 2 (gloo, CPU) encodes 24 faces into exactly the files one process writes: none
    missing or doubled, the codes within the batch-invariance bounds of fp32 (1e-5 / 1e-3)."""
    from diffedit_cli.io.latents import load_latent

    folder = _faces(tmp_path, 24)
    names = sorted(p.stem for p in folder.glob("*.png"))
    assert len(names) == 24
    single = tmp_path / "single"
    assert main(["encode", str(folder), "--out", str(single), *ENC]) == 0
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           "29611", "-m", "diffedit_cli", "encode", str(folder), "--out", str(out), "--manifest",
                           str(tmp_path / "m.jsonl"), "--device", "cpu", *ENC],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.stem for p in out.iterdir()) == names
    lines = _manifest_lines(sorted(tmp_path.glob("m.shard-*-of-2.jsonl")))
    assert sorted(Path(l["input"]).stem for l in lines) == names  # each input by exactly one process
    assert {l["shard"] for l in lines} == {"0/2", "1/2"}
    for name in names:
        a, b = load_latent(single / f"{name}.safetensors"), load_latent(out / f"{name}.safetensors")
        assert float((a.z_sem - b.z_sem).abs().max()) < 1e-5 and float((a.x_T - b.x_T).abs().max()) < 1e-3


def test_a_killed_run_leaves_no_half_file_and_the_same_command_completes_it(tmp_path, capsys):
    """SIGKILL in the middle of a folder run: every latent file present is whole; the same command with
    --skip-existing writes exactly the missing ones."""
    import signal
    import time

    from diffedit_cli.io.latents import load_latent

    folder = _faces(tmp_path, 24)
    out = tmp_path / "out"
    argv = ["encode", str(folder), "--out", str(out), "--batch-size", "1", "--inv-steps", "20", "--precision", "fp32",
            "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "diffedit_cli", *argv], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.safetensors"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    written = sorted(out.glob("*.safetensors"))
    assert 3 <= len(written) < 24, len(written)
    for path in written:
        load_latent(path)  # whole: a torn file would not load
    capsys.readouterr()
    assert main([*argv, "--skip-existing"]) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary == f"{24 - len(written)} encoded, {len(written)} skipped (exist)"
    assert sorted(p.stem for p in out.glob("*.safetensors")) == sorted(p.stem for p in folder.glob("*.png"))


def test_the_ray_example_encodes_a_folder_on_a_local_cluster(tmp_path):
    """examples/ray_encode.py with the Encoder operator writes latent files that 'diffedit decode' reads, with their
    provenance (the [ray] extra; skipped where Ray is not installed)."""
    pytest.importorskip("ray", reason="Ray is the optional [ray] extra: pip install -e '.[ray]'")
    folder = _folder(tmp_path, 3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_DISABLE_USAGE_STATS": "1"}
    script = Path(__file__).resolve().parent.parent / "examples" / "ray_encode.py"
    done = subprocess.run([sys.executable, str(script), str(folder), "--out", str(tmp_path / "out"), "--inv-steps", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from diffedit_cli.io.latents import load_latent

    written = sorted((tmp_path / "out").glob("*.safetensors"))
    assert [p.stem for p in written] == ["f00", "f01", "f02"]
    assert main(["decode", str(written[0]), "--out", str(tmp_path / "d.png"), "--steps", "2", "-q"]) == 0
    assert load_latent(written[0]).meta["inv_steps"] == "2"
