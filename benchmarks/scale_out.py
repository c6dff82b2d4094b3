"""Throughput of a folder encode: one process, ``torchrun`` with N processes (``--shard`` from its environment), and
the Ray Data operator on a local cluster; images/s and seconds per image, side by side in one run.

    python benchmarks/scale_out.py                          # 24 generated faces, toy model, this CPU
    python benchmarks/scale_out.py --images 64 --procs 2 --inv-steps 50 --ray

Threads are split so processes do not fight: one process gets every core, N processes get cores / N each (the
``--threads`` every command takes). The numbers include process start-up and model loading, as a user pays them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd, env) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--inv-steps", type=int, default=50)
    parser.add_argument("--model", default="toyfaces")
    parser.add_argument("--ray", action="store_true", help="also the Ray Data operator (pip install -e '.[ray]')")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="scale-out-"))
    env = dict(os.environ, DIFFEDIT_LATENT_CACHE_MB="0")
    try:
        data = work / "data"
        subprocess.run([sys.executable, "-m", "diffedit_cli", "data", "toyfaces", "--n", str(args.images), "--out",
                        str(data), "--no-masks", "-q"], check=True, env=env)
        images = data / "images"
        common = ["encode", str(images), "--model", args.model, "--inv-steps", str(args.inv_steps), "--device", "cpu",
                  "-q"]
        print(f"# {args.images} images, {args.model}, {args.inv_steps} inversion steps, {cores} CPU cores")
        print(f"{'how':<34} {'seconds':>8} {'images/s':>9} {'s/image':>8}")
        rows = [("1 process", [sys.executable, "-m", "diffedit_cli", *common, "--out", str(work / "one"),
                               "--threads", str(cores)])]
        per = max(1, cores // args.procs)
        rows.append((f"torchrun, {args.procs} processes", [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.procs), "--master-port",
            "29621", "-m", "diffedit_cli", *common, "--out", str(work / "torchrun"), "--threads", str(per)]))
        if args.ray:
            rows.append(("Ray Data, 1 actor (local)", [sys.executable, str(ROOT / "examples" / "ray_encode.py"),
                                                       str(images), "--out", str(work / "ray"), "--model", args.model,
                                                       "--inv-steps", str(args.inv_steps)]))
        for name, cmd in rows:
            seconds = timed(cmd, env)
            print(f"{name:<34} {seconds:8.1f} {args.images / seconds:9.3f} {seconds / args.images:8.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
