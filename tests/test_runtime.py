"""The CPU allocator setting: freed activations are reused instead of being faulted in again at every layer."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from diffedit_cli import runtime
tuned = runtime.tune_allocator()
torch.set_num_threads(1)
x = torch.randn(1, 128, 256, 256)   # a 256 px activation of the FFHQ-256 network's first level (32 MiB)
conv = torch.nn.Conv2d(128, 128, 3, padding=1)
faults = []
with torch.inference_mode():
    for k in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = torch.nn.functional.group_norm(conv(x), 32).mul(2).add(1)
        del y
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(tuned, sum(faults[1:]))
"""


def _probe(malloc: str):
    env = dict(os.environ, DIFFEDIT_MALLOC=malloc)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    tuned, faults = out.split()
    return tuned == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_tuned_allocator_reuses_freed_activations():
    tuned, faults = _probe("")
    untouched, system_faults = _probe("system")
    assert tuned and not untouched
    # the system allocator maps every 32 MiB block afresh (about 8,000 page faults each, several per pass: about
    # 49,000 per pass here); tuned, the blocks are reused (0 to one block's worth over the three passes)
    assert system_faults > 20_000
    assert faults < system_faults / 5


def test_prepare_tunes_the_allocator_on_cpu():
    from diffedit_cli import pipeline, runtime
    from diffedit_cli.io.models import load_model

    pipeline.prepare(load_model(None, components=()).autoencoder, pipeline.pick_device("cpu"))
    assert runtime._state["tuned"] == (platform.libc_ver()[0] == "glibc"
                                       and os.environ.get(runtime.MALLOC_ENV, "") != "system")


def test_loading_a_model_does_not_initialise_the_weights_it_replaces(monkeypatch):
    """Components are built on the meta device and take the file's tensors: no random initialisation (a third of
    a second per 100 M parameters), and nothing left on the meta device."""
    import torch

    from diffedit_cli.io.models import load_model

    devices = []
    original = torch.nn.init.kaiming_uniform_
    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_",
                        lambda tensor, *a, **k: devices.append(tensor.device.type) or original(tensor, *a, **k))
    model = load_model(None, components=("latent", "classifier"))
    assert devices and set(devices) == {"meta"}  # initialisers ran on shapes only, never on memory
    modules = [model.autoencoder, model.latent, model.classifier]
    assert all(not t.is_meta for m in modules for t in [*m.parameters(), *m.buffers()])
    assert all(p.dtype == torch.float32 and not p.requires_grad for m in modules for p in m.parameters())
