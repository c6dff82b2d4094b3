"""Would OpenVINO run the network faster than PyTorch on this CPU? One FFHQ-256 UNet call at batch 1, side by side.

The network (random weights of the official FFHQ-256 shapes) is converted with ``openvino.convert_model`` from the
same module the commands run and compiled for the CPU with the bf16 and f32 inference precision hints; each row is the
median of ``--calls`` calls after two warm-up calls, with the largest difference from PyTorch's fp32 output. The
project adopts an optional backend only if it beats the best PyTorch path (bf16 autocast + channels_last on CPUs
with native bf16) by 1.3x or more at equal quality (docs/speed.md). OpenVINO is not a dependency:

    pip install openvino && python benchmarks/openvino_backend.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from diffedit_cli import pipeline
from diffedit_cli.io.convert import PRESETS
from diffedit_cli.networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder


class WithCode(torch.nn.Module):
    """(x, t, z_sem) -> eps: the call as one graph (the style projections inside)."""

    def __init__(self, net: DiffAEAutoencoder):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor) -> torch.Tensor:
        return self.net(x, t, z_sem=z_sem)


def median_seconds(fn, calls: int) -> float:
    fn(), fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="ffhq256", choices=sorted(PRESETS))
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()
    try:
        import openvino as ov
    except ImportError:
        print("openvino is not installed: pip install openvino", file=sys.stderr)
        return 2

    torch.manual_seed(0)
    device = torch.device("cpu")
    net = pipeline.prepare(DiffAEAutoencoder(AutoencoderConfig(**PRESETS[args.arch])), device)
    size = net.config.image_size
    x = torch.randn(1, 3, size, size)
    t = torch.full((1,), 500, dtype=torch.long)
    z = torch.randn(1, net.config.enc_out_channels)
    model = WithCode(net).eval()
    xl = x.contiguous(memory_format=torch.channels_last)

    def torch_call(precision):
        def call():
            with torch.inference_mode(), pipeline.autocast(device, precision):
                return model(xl, t, z).float()
        return call

    reference = torch_call("fp32")()
    print(f"# {args.arch}, batch 1, CPU {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, openvino {ov.__version__}")
    print(f"{'backend':<32} {'ms/call':>9} {'max |diff| vs torch fp32':>25}")
    for precision in ("bf16", "fp32"):
        out = torch_call(precision)()
        seconds = median_seconds(torch_call(precision), args.calls)
        print(f"{'torch ' + precision + ' channels_last':<32} {seconds * 1e3:9.1f} "
              f"{float((out - reference).abs().max()):25.3g}", flush=True)
    start = time.perf_counter()
    with torch.no_grad():
        converted = ov.convert_model(WithCode(net.to(memory_format=torch.contiguous_format)).eval(),
                                     example_input=(x, t, z))
    print(f"# convert_model: {time.perf_counter() - start:.1f} s", flush=True)
    core = ov.Core()
    inputs = [x.numpy(), t.numpy(), z.numpy()]
    for hint in ("bf16", "f32"):
        start = time.perf_counter()
        compiled = core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                         "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        compile_seconds = time.perf_counter() - start
        request = compiled.create_infer_request()
        seconds = median_seconds(lambda: request.infer(inputs), args.calls)
        out = torch.from_numpy(request.infer(inputs)[compiled.outputs[0]].copy())
        print(f"{'openvino ' + hint:<32} {seconds * 1e3:9.1f} {float((out - reference).abs().max()):25.3g}"
              f"   (compile_model {compile_seconds:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
