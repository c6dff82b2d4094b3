"""The official fixtures copied into tests/fixtures are intact, and equal the project's shared reference where it is."""

import hashlib
from pathlib import Path

from conftest import TESTS

FIXTURES = TESTS / "fixtures" / "reference"
SHARED = TESTS.parent.parent / "shared" / "reference"


def digests(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_fixtures_are_the_official_files():
    listed = {}
    for line in (TESTS / "fixtures" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.removeprefix("./")] = digest
    have = digests(FIXTURES)
    assert have == listed
    assert {"tiny_autoenc/last.ckpt", "tiny_latent/last.ckpt", "tiny_classifier/last.ckpt"} <= set(have)
    if SHARED.is_dir():  # inside the project's workspace: the copy is the shared reference, byte for byte
        assert digests(SHARED) == have
