"""One 256 px real-photo edit end to end, at the CLI defaults and at the official setting, side by side in one run.

Each row is one fresh ``diffedit edit PHOTO --align --paste-back --attr Smiling`` process on a model with the
official FFHQ-256 shapes (random weights, written once by this script: they time exactly as the trained ones;
``--model`` takes a real one instead): wall-clock, peak resident memory (the process's ru_maxrss), and that time in
units of one fp32 UNet call of the same network measured in the same run, so the figure travels between machines.
Each setting is timed twice: the photo's first edit (cold) and a second edit of it at another strength, which reads
its inverted codes from the latent cache. The folder row edits ``--photos`` copies of the photo in one process
(images/s; ``--no-cache``, since copies would hit the cache where new photos do not). The official setting is the
official editing notebook's: 250 DDIM inversion steps, 100 DDIM decoding steps, uniform spacing, fp32.

The unit is measured as the official code runs: fp32, contiguous memory, glibc's allocator as it is. The rows
after it give the calls the commands make (channels_last, the tuned allocator of diffedit_cli/runtime.py) with
their GFLOP/s against this CPU's matmul peak (a 2048 x 2048 matrix product in the same precision, measured here);
``--malloc-compare`` adds the defaults with ``DIFFEDIT_MALLOC=system``.

    python benchmarks/photo_edit.py                       # defaults, official setting, folder of 4, on this CPU
    python benchmarks/photo_edit.py --settings defaults --photos 0
    python benchmarks/photo_edit.py --settings defaults previous --photos 0 --malloc-compare
    python benchmarks/photo_edit.py --device cuda --precisions fp16 --batches 1 8 32
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.png"
SETTINGS = {
    # the CLI's: DPM-Solver++ 2M inversion and decoding, 15 + 15 steps, quadratic spacing, bf16 where native
    "defaults": [],
    # the defaults before the second-order inversion: DDIM inversion 50 steps, DPM-Solver++ 2M decoding 20 steps
    "previous": ["--inv-sampler", "ddim", "--inv-steps", "50", "--steps", "20"],
    "official": ["--sampler", "ddim", "--inv-sampler", "ddim", "--spacing", "uniform", "--steps", "100",
                 "--inv-steps", "250", "--precision", "fp32"],
}


def standin_model(folder: Path) -> str:
    """A folder with the official FFHQ-256 autoencoder + classifier shapes (random weights), as the Hub mirror lays it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from official_layouts import autoencoder_state, classifier_state, stats_state
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(autoencoder_state("ffhq256"), str(folder / "ffhq256_autoenc_ema.safetensors"))
    save_file(classifier_state(with_stats=False), str(folder / "ffhq256_autoenc_cls.safetensors"))
    save_file(stats_state(), str(folder / "ffhq256_autoenc_latent.safetensors"))
    return f"{folder}:ffhq256"


def run_edit(args: list, env: dict) -> tuple:
    """(seconds, peak RSS in MB) of one diffedit process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "diffedit_cli", "edit", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"diffedit edit {' '.join(args)} failed:\n{err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def unet_call_seconds(device: torch.device, precision: str, batch: int, calls: int = 3) -> float:
    """Median seconds of one FFHQ-256 UNet call (conditioned, as in decoding)."""
    from diffedit_cli import pipeline
    from diffedit_cli.io.convert import PRESETS
    from diffedit_cli.networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder

    torch.manual_seed(0)
    net = DiffAEAutoencoder(AutoencoderConfig(**PRESETS["ffhq256"])).to(device).eval().requires_grad_(False)
    x = torch.randn(batch, 3, 256, 256, device=device)
    t = torch.full((batch,), 500, device=device, dtype=torch.long)
    with torch.inference_mode():
        styles = net.project_style(net.encode(x))  # once per batch, as decoding does
        times = []
        for k in range(calls + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with pipeline.autocast(device, precision):
                net(x, t, styles=styles)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if k:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(precision: str, size: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of a size x size matrix product in ``precision`` (fp32 | bf16), the best of ``reps``."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 1):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def command_calls(precisions) -> list:
    """(precision, seconds, GFLOP/s, share of the matmul peak) of one FFHQ-256 UNet call as the commands make it."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffedit_cli import pipeline, runtime
    from diffedit_cli.io.convert import PRESETS
    from diffedit_cli.networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder

    runtime.tune_allocator()
    torch.manual_seed(0)
    device = torch.device("cpu")
    net = pipeline.prepare(DiffAEAutoencoder(AutoencoderConfig(**PRESETS["ffhq256"])), device)
    x = torch.randn(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    t = torch.full((1,), 500, dtype=torch.long)
    rows = []
    with torch.inference_mode():
        styles = net.project_style(net.encode(x))
        with FlopCounterMode(display=False) as counter:
            net(x, t, styles=styles)
        flops = float(counter.get_total_flops())
        for precision in precisions:
            times = []
            for k in range(4):
                start = time.perf_counter()
                with pipeline.autocast(device, precision):
                    net(x, t, styles=styles)
                if k:
                    times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            rate = flops / seconds / 1e9
            rows.append((precision, seconds, rate, rate / matmul_peak(precision)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a real FFHQ-256 model (default: random weights of its shapes)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--photos", type=int, default=4, help="folder row: this many copies of the photo (0: none)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=None, help="CUDA: decode throughput rows at these precisions")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--malloc-compare", action="store_true",
                        help="also edit at the defaults with glibc's allocator as it is (DIFFEDIT_MALLOC=system)")
    args = parser.parse_args()
    if args.malloc_compare and "defaults" not in args.settings:
        parser.error("--malloc-compare reads the codes of the defaults' run: keep defaults in --settings")

    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="photo-edit-"))
    try:
        model = args.model or standin_model(work / "ffhq256")
        env = dict(os.environ, DIFFEDIT_CACHE=str(work / "cache"))
        common = ["--model", model, "--align", "--paste-back", "--attr", "Smiling", "--detector", "dlib", "--device",
                  args.device, "-q"]
        # the first run converts the model into the cache (not timed as an edit: reported on its own)
        start = time.perf_counter()
        run_edit([str(PHOTO), *common, "--steps", "1", "--inv-steps", "1", "--out", str(work / "warm.png")], env)
        print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; device {device}")
        print(f"# first use (convert into the cache + a 1+1-step edit): {time.perf_counter() - start:.1f} s")
        unit = unet_call_seconds(device, "fp32", 1)
        print(f"# one fp32 FFHQ-256 UNet call, batch 1, as the official code runs it: {unit:.2f} s (= 1 unit)")
        if device.type == "cpu":
            for precision, seconds, rate, share in command_calls(["fp32", "bf16"]):
                print(f"#   as the commands run it, {precision} channels_last, tuned allocator: {seconds:.2f} s "
                      f"({seconds / unit:.2f} units), {rate:.0f} GFLOP/s = {share:.0%} of this CPU's {precision} "
                      f"matmul peak")
        print()
        print(f"{'setting':<10} {'what':<28} {'seconds':>9} {'units':>7} {'peak MB':>8} {'images/s':>9}")
        runs = [(name, SETTINGS[name], env, []) for name in args.settings]
        if args.malloc_compare:
            # the cold run must not read the codes the defaults' run stored; its second run reads them
            runs.append(("defaults, system malloc", SETTINGS["defaults"], dict(env, DIFFEDIT_MALLOC="system"),
                         ["--no-cache"]))
        for name, setting, run_env, cold_extra in runs:
            # cold: the photo's first edit (inverted, and the codes stored in the latent cache); repeated: a second
            # edit of the same photo at another strength, which reads the codes from the cache
            for what, extra in (("one photo, cold", cold_extra), ("same photo again, cached", ["--alpha", "0.5"])):
                out = work / f"{name.replace(' ', '').replace(',', '-')}-{len(extra)}.png"
                seconds, peak = run_edit([str(PHOTO), *common, *setting, *extra, "--out", str(out)], run_env)
                print(f"{name:<10} {what:<28} {seconds:9.1f} {seconds / unit:7.1f} {peak:8.0f} {1 / seconds:9.4f}",
                      flush=True)
        if args.photos:
            folder = work / "photos"
            folder.mkdir()
            for k in range(args.photos):
                shutil.copy(PHOTO, folder / f"photo_{k}.png")
            # copies of one photo would hit the cache: new photos do not
            seconds, peak = run_edit([str(folder), *common, "--no-cache", "--out", str(work / "folder-out")], env)
            print(f"{'defaults':<10} {f'folder of {args.photos} photos':<28} {seconds:9.1f} {seconds / unit:7.1f} "
                  f"{peak:8.0f} {args.photos / seconds:9.4f}")
        if device.type == "cuda":
            print(f"\n{'precision':<10} {'batch':>5} {'ms/call':>9} {'images/s (100-step decode)':>28}")
            for precision in args.precisions or ["fp16"]:
                for batch in args.batches:
                    call = unet_call_seconds(device, precision, batch)
                    print(f"{precision:<10} {batch:>5} {call * 1e3:9.1f} {batch / (100 * call):28.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
