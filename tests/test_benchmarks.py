"""The benchmark scripts run and print their tables (their numbers are for people, not for asserts)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ddim_benchmark_prints_a_row_per_arch_batch_and_precision():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ddim.py"), "--device", "cpu", "--archs", "celeba64",
                           "--batches", "1", "--precision", "fp32", "bf16", "--steps", "2", "--repeat", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("celeba64")]
    assert [(r[1], r[2]) for r in rows] == [("1", "fp32"), ("1", "bf16")]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)  # ms/step, images/s


def test_hdae_parameter_count_script_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hdae_params.py")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HDAE(U)" in proc.stdout
