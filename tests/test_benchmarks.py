"""The benchmark scripts run and print their tables (their numbers are for people, not for asserts)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ddim_benchmark_prints_a_row_per_arch_batch_and_precision():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ddim.py"), "--device", "cpu", "--archs", "celeba64",
                           "--batches", "1", "2", "--precision", "fp32", "--steps", "2", "--repeat", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("celeba64")]
    assert [(r[1], r[2]) for r in rows] == [("1", "fp32"), ("2", "fp32")]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)  # ms/step, images/s


def test_hdae_parameter_count_script_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hdae_params.py")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HDAE(U)" in proc.stdout


@pytest.mark.parametrize("model", ["toyfaces", "toyfaces-hdae", str(ROOT / "checkpoints" / "toyfaces-hdae-eps")])
def test_xt_colour_diagnostic_runs_on_the_shipped_models(tmp_path, model):
    from diffedit_cli.data.toyfaces import write_dataset
    from diffedit_cli.io.models import load_model

    write_dataset(tmp_path / "faces", 4, seed=11, size=64, masks=False)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "xt_colour.py"), "--model", model, "--data",
                           str(tmp_path / "faces"), "--n", "4", "--t", "999", "500", "--decode-steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:3] in ("999", "500")]
    assert [int(r[0]) for r in rows] == [999, 500]
    assert all(float(r[3]) >= 0 and float(r[4]) >= 0 for r in rows)
    if load_model(model, components=()).autoencoder.config.prediction == "eps":
        # the first x0 estimate amplifies eps errors by 1/sqrt(alpha_bar): far larger at t=999 than at t=500
        assert float(rows[0][3]) > float(rows[1][3])
    else:
        # v prediction with a zero terminal SNR: x0 at t=999 comes from z_sem, no amplification of x_T's mean
        assert float(rows[0][3]) < 0.1
    kept = [float(line.rsplit(":", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("oracle labels kept")]
    assert len(kept) == 2 and all(0 <= k <= 1 for k in kept)


def test_train_speed_benchmark_prints_a_row_per_setting():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--preset", "tiny32", "--steps", "3",
                           "--batch-size", "2", "--precisions", "fp32"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip().split(" ")[0].isdigit()]
    assert len(rows) == 4  # contiguous + channels_last official, two more recipes on the last setting
    assert all(float(r[-1]) > 0 for r in rows)


def test_speed_benchmark_prints_a_row_per_setting():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--archs", "celeba64", "--batches", "1",
                           "--precisions", "fp32", "--formats", "contiguous", "channels_last", "--calls", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("celeba64")]
    assert [r[3] for r in rows] == ["contiguous", "channels_last"] and all(float(r[4]) > 0 for r in rows)
    assert "GFLOP per call" in proc.stdout


def test_nfe_benchmark_prints_a_row_per_sampler_and_steps(tmp_path):
    from diffedit_cli.cli import main

    assert main(["data", "toyfaces", "--n", "2", "--seed", "7", "--out", str(tmp_path / "d"), "--no-masks", "--quiet"]) == 0
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nfe.py"), "--data", str(tmp_path / "d" / "images"),
                           "--n", "2", "--inv-steps", "2", "--steps", "2", "3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["uniform"], ["quadratic"])]
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [
        (spacing, inverter, sampler, steps) for spacing in ("uniform", "quadratic") for inverter in ("ddim", "dpmpp-2m")
        for sampler in ("ddim", "dpmpp-2m") for steps in ("2", "3")]
    assert all(0 < float(r[5]) < 1 for r in rows)


def test_bf16_quality_benchmark_compares_round_trips(tmp_path):
    from diffedit_cli.data.toyfaces import write_dataset

    write_dataset(tmp_path / "faces", 2, seed=7, size=64, masks=False)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bf16_quality.py"), str(tmp_path / "faces" / "images"),
                           "--n", "2", "--inv-steps", "3", "--steps", "3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {line.split(":")[0].strip(): line for line in proc.stdout.splitlines() if ":" in line}
    round_trip = float(lines["round trip bf16 vs fp32"].split(":")[1].split("dB")[0])
    assert 20 < round_trip < 200  # bf16 differs from fp32, but not by much on the shipped model
    kept = float(lines["oracle labels kept (bf16 vs fp32 round trip)"].split(":")[1])
    assert 0.5 <= kept <= 1


def test_gae_ceiling_prints_a_row_per_probed_group():
    from diffedit_cli.data import toyfaces

    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gae_ceiling.py"), "--n", "100", "--train-sizes",
                           "40,80", "--epochs", "5"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in proc.stdout.splitlines()
            if line.split()[:1] and line.split()[0] in toyfaces.GROUPS}
    assert list(rows) == ["identity", "hair", "mouth", "eyes", "accessories", "background"]  # pose has no class
    assert all(len(r) == 4 and all(0 <= v <= 1 for v in r) for r in rows.values())  # chance, 2 linear, MLP
    # the shipped model's z_sem tells glasses and hats apart far better than always guessing the majority class
    assert rows["accessories"][2] > rows["accessories"][0] + 0.1
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gae_ceiling.py"), "--n", "100", "--train-sizes",
                           "90"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "--train-sizes up to 80" in proc.stderr
