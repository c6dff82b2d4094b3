"""Shared fixtures: the official reference data in ../shared/reference and a converted tiny model."""

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
# The official code's fixtures, copied into the repository (tests/fixtures/README.md says where they come from);
# DIFFEDIT_REFERENCE points elsewhere (the project's shared/reference, say).
FIXTURES = TESTS / "fixtures" / "reference"
REFERENCE = Path(os.environ.get("DIFFEDIT_REFERENCE", FIXTURES))

torch.set_num_threads(min(2, torch.get_num_threads()))

# No test reaches the internet: downloads outside the Hub (LPIPS's AlexNet, facexlib's weights) are off unless
# a test turns them back on against a loopback server (tests/file_server.py). Subprocesses inherit this.
os.environ["DIFFEDIT_OFFLINE"] = "1"
# Numerical tests compare against fp32 references on every machine: the CPU default (bf16 where the CPU has it
# natively) is pinned to fp32 here; test_batching.py tests the default itself with this variable removed.
os.environ["DIFFEDIT_CPU_PRECISION"] = "fp32"
# Models converted from official weights go to a cache of this test session, never the user's.
os.environ.setdefault("DIFFEDIT_CACHE", tempfile.mkdtemp(prefix="diffedit-test-cache-"))
# every test inverts what it asks for: the latent cache is off unless a test turns it on
os.environ["DIFFEDIT_LATENT_CACHE_MB"] = "0"


def need_reference() -> Path:
    if not (REFERENCE / "tiny_autoenc" / "last.ckpt").is_file():
        pytest.skip(f"official reference fixtures not found at {REFERENCE} (set DIFFEDIT_REFERENCE)")
    return REFERENCE


@pytest.fixture(scope="session")
def reference() -> Path:
    return need_reference()


@pytest.fixture(scope="session")
def ref_tensors(reference):
    from safetensors.torch import load_file

    return {name: load_file(str(reference / name / "reference.safetensors"))
            for name in ("tiny_autoenc", "tiny_latent", "tiny_classifier")}


@pytest.fixture(scope="session")
def tiny_model_dir(reference, tmp_path_factory) -> Path:
    """The official tiny fixtures converted with `convert` (autoencoder + latent + classifier)."""
    from diffedit_cli.io.convert import convert_checkpoints

    out = tmp_path_factory.mktemp("models") / "tiny"
    convert_checkpoints([reference / "tiny_latent" / "last.ckpt", reference / "tiny_classifier" / "last.ckpt"], out,
                        log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from diffedit_cli.io.models import load_model

    return load_model(str(tiny_model_dir))
