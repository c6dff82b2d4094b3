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
    # the system allocator maps every 32 MiB block afresh (about 8,000 page faults each, several per pass)
    assert system_faults > 20_000
    assert faults < system_faults / 20


def test_prepare_tunes_the_allocator_on_cpu():
    from diffedit_cli import pipeline, runtime
    from diffedit_cli.io.models import load_model

    pipeline.prepare(load_model(None, components=()).autoencoder, pipeline.pick_device("cpu"))
    assert runtime._state["tuned"] == (platform.libc_ver()[0] == "glibc"
                                       and os.environ.get(runtime.MALLOC_ENV, "") != "system")
