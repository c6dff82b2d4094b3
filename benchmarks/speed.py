"""Speed of one UNet call and of a whole edit, next to the official code's figures and the FLOP floor.

Per row: one network call (random weights, the official architectures) at a batch size, precision and
memory format: median ms per call over ``--calls`` calls after two warm-up calls, images/s of a 100-step
decode, GFLOP/s achieved (FLOPs counted by torch's FlopCounterMode) and, with ``--official DIR`` (a checkout of
phizaz/diffae: its ``model/``, ``choices.py`` and ``config_base.py`` are imported unchanged), the ratio to the
official network's call on the same input in the same run. ../shared/reference/official_timings.md has the
official figures measured on another day (printed for context only: machines differ). ``--e2e`` also times
``diffedit edit`` on one image with the defaults (a fresh process: start-up, model load, inversion, decode,
write).

    python benchmarks/speed.py                                          # CPU: fp32 and bf16, both formats
    python benchmarks/speed.py --archs ffhq128 --batches 1 --precisions fp32 --e2e --official ../diffae
    python benchmarks/speed.py --device cuda --precisions fp32 fp16 --batches 1 8 32 64
    python benchmarks/speed.py --archs ffhq256 --batches 1 --formats channels_last --compile   # + torch.compile rows

``--compile`` adds a row per setting for ``torch.compile(model)`` (inductor): the first call's seconds (compiling,
the warm-up a command would pay) and the median call after it. Inductor keeps what it compiled on disk
(``$TORCHINDUCTOR_CACHE_DIR``, default under /tmp): run the same command twice to see the warm-cache warm-up.
``--malloc system`` leaves glibc's allocator as it is (the default tunes it, as every command does:
diffedit_cli/runtime.py).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from diffedit_cli import pipeline
from diffedit_cli.io.convert import PRESETS
from diffedit_cli.networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT.parent / "shared" / "reference" / "official_timings.md"
CUDA_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense fp16/bf16 tensor-core peak


def official_ffhq128_call() -> float | None:
    """The official code's median seconds for one ffhq128 UNet call at batch 1, if the reference file is here."""
    if not OFFICIAL.is_file():
        return None
    for line in OFFICIAL.read_text().splitlines():
        if line.startswith("| ffhq128") and "eps prediction" in line:
            return float(re.split(r"\s*\|\s*", line)[3])
    return None


def official_network(root: Path, arch: str) -> torch.nn.Module:
    """The official BeatGANsAutoencModel of ``arch`` (random weights), built as its config.py builds it."""
    sys.path.insert(0, str(root))
    from model.unet_autoenc import BeatGANsAutoencConfig  # the official sources, unchanged

    p = PRESETS[arch]
    torch.manual_seed(0)
    cfg = BeatGANsAutoencConfig(
        attention_resolutions=p["attention_resolutions"], channel_mult=p["channel_mult"], conv_resample=True, dims=2,
        dropout=0.1, embed_channels=p["embed_channels"], enc_out_channels=p["enc_out_channels"],
        enc_pool="adaptivenonzero", enc_num_res_block=p["enc_num_res_block"], enc_channel_mult=p["enc_channel_mult"],
        enc_grad_checkpoint=False, enc_attn_resolutions=None, image_size=p["image_size"], in_channels=3,
        model_channels=p["model_channels"], num_classes=None, num_head_channels=-1, num_heads_upsample=-1,
        num_heads=1, num_res_blocks=p["num_res_blocks"], num_input_res_blocks=None, out_channels=3,
        resblock_updown=True, use_checkpoint=False, use_new_attention_order=False, resnet_two_cond=True,
        resnet_use_zero_module=True, latent_net_conf=None, resnet_cond_channels=None)
    return cfg.make_model().eval().requires_grad_(False)


def time_official(net, x, t, z, calls: int) -> float:
    times = []
    with torch.inference_mode():
        for k in range(calls + 2):
            start = time.perf_counter()
            net(x, t, cond=z)
            if k >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def call_flops(model: DiffAEAutoencoder, x, t, styles) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x, t, styles=styles)
    return float(counter.get_total_flops())


def time_calls(model, x, t, styles, device, precision, calls: int) -> float:
    """Median seconds of one network call."""
    times = []
    with torch.inference_mode():
        for k in range(calls + 2):
            sync(device)
            start = time.perf_counter()
            with pipeline.autocast(device, precision):
                model(x, t, styles=styles)
            sync(device)
            if k >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_compiled(model, x, t, styles, device, precision, calls: int):
    """(seconds of the first call, compile included; median seconds of a call after it) for torch.compile(model)."""
    import torch._dynamo

    torch._dynamo.reset()
    compiled = torch.compile(model)
    with torch.inference_mode():
        sync(device)
        start = time.perf_counter()
        with pipeline.autocast(device, precision):
            compiled(x, t, styles=styles)
        sync(device)
        first = time.perf_counter() - start
    return first, time_calls(compiled, x, t, styles, device, precision, calls)


def e2e_edit_seconds() -> float:
    """Wall-clock of the README's edit command (default model and settings) in a fresh process."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "diffedit_cli", "edit", str(ROOT / "examples" / "face.png"), "--attr",
                        "Smiling", "--alpha", "0.3", "--out", str(Path(tmp) / "out.png"), "-q"], check=True,
                       capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--archs", nargs="+", default=["ffhq128", "ffhq256"], choices=sorted(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--precisions", nargs="+", default=None, help="default: fp32 bf16 on CPU, fp32 fp16 on CUDA")
    parser.add_argument("--formats", nargs="+", default=["contiguous", "channels_last"])
    parser.add_argument("--calls", type=int, default=3, help="timed calls per row (after 2 warm-up calls)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--e2e", action="store_true", help="also time 'diffedit edit' on one image with the defaults")
    parser.add_argument("--official", type=Path, default=None, help="checkout of phizaz/diffae to time side by side (CPU)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model) (first call and after)")
    parser.add_argument("--malloc", choices=["tuned", "system"], default="tuned",
                        help="tuned: glibc malloc keeps freed blocks (as every command); system: as it is")
    args = parser.parse_args()
    if args.malloc == "system":
        os.environ["DIFFEDIT_MALLOC"] = "system"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pipeline.pick_device(args.device)
    precisions = args.precisions or (["fp32", "fp16"] if device.type == "cuda" else ["fp32", "bf16"])
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in CUDA_PEAK_TFLOPS.items() if k in name), None)
    else:
        name, peak = f"CPU ({torch.backends.cpu.get_cpu_capability()}) x{torch.get_num_threads()} threads", None
    recorded = official_ffhq128_call()
    print(f"# one UNet call: {name}, torch {torch.__version__}, median of {args.calls} calls after 2 warm-up calls")
    print(f"{'arch':8} {'batch':>5} {'precision':>9} {'format':>13} {'ms/call':>9} {'img/s@100':>9} "
          f"{'GFLOP/s':>8} {'vs official':>11}" + ("  share of peak" if peak else ""))
    for arch in args.archs:
        torch.manual_seed(0)
        model = pipeline.prepare(DiffAEAutoencoder(AutoencoderConfig(**PRESETS[arch])), device)
        size = model.config.image_size
        for batch in args.batches:
            gen = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, 3, size, size, generator=gen).to(device)
            z = torch.randn(batch, model.config.enc_out_channels, generator=gen).to(device)
            t = torch.full((batch,), 500, dtype=torch.int64, device=device)
            with torch.inference_mode():
                styles = model.project_style(z)
            flops = call_flops(model, x, t, styles)
            official = None
            if args.official is not None:
                net = official_network(args.official, arch)
                official = time_official(net, x.cpu(), t.cpu(), z.cpu(), args.calls)
                del net
                print(f"{arch:8} {batch:5d} {'fp32':>9} {'official':>13} {1000 * official:9.1f} "
                      f"{batch / (100 * official):9.3f} {flops / official / 1e9:8.1f} {'1.00x':>11}", flush=True)
            for fmt in args.formats:
                memory = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
                model = model.to(memory_format=memory)
                xf = x.contiguous(memory_format=memory)
                for precision in precisions:
                    seconds = time_calls(model, xf, t, styles, device, precision, args.calls)
                    ratio = f"{seconds / official:.2f}x" if official else ""
                    share = f"  {flops / seconds / 1e12 / peak:.1%}" if peak else ""
                    print(f"{arch:8} {batch:5d} {precision:>9} {fmt:>13} {1000 * seconds:9.1f} "
                          f"{batch / (100 * seconds):9.3f} {flops / seconds / 1e9:8.1f} {ratio:>11}{share}", flush=True)
                    if args.compile:
                        first, seconds = time_compiled(model, xf, t, styles, device, precision, args.calls)
                        ratio = f"{seconds / official:.2f}x" if official else ""
                        share = f"  {flops / seconds / 1e12 / peak:.1%}" if peak else ""
                        print(f"{arch:8} {batch:5d} {precision:>9} {fmt + '+compile':>13} {1000 * seconds:9.1f} "
                              f"{batch / (100 * seconds):9.3f} {flops / seconds / 1e9:8.1f} {ratio:>11}{share}"
                              f"   (first call, compiling: {first:.1f} s)", flush=True)
            print(f"# {arch} batch {batch}: {flops / 1e9:.1f} GFLOP per call")
        del model
    if recorded:
        print(f"# recorded in {OFFICIAL.name} (another day, another machine of the type): official ffhq128 call "
              f"{1000 * recorded:.0f} ms")
    if args.e2e:
        print(f"# diffedit edit examples/face.png --attr Smiling --alpha 0.3 (defaults, fresh process): "
              f"{e2e_edit_seconds():.1f} s")


if __name__ == "__main__":
    main()
