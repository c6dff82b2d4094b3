"""Shared assertion of the shipped models' guards: an edit is what the attribute oracle sees."""

from pathlib import Path

import torch


def assert_oracle_sees_only(oracle, source: Path, edited: Path, attribute: str, size: int = 64) -> None:
    """The oracle reads ``attribute`` on ``edited`` and not on ``source``; at most one other reading changes."""
    from diffedit_cli.io.images import load_image

    with torch.no_grad():
        before, after = (oracle(load_image(p, size)[None])[0] > 0 for p in (source, edited))
    column = oracle.attributes.index(attribute)
    assert not before[column] and after[column], f"{attribute}: source {bool(before[column])}, edit {bool(after[column])}"
    kept = [a for i, a in enumerate(oracle.attributes) if before[i] == after[i]]
    assert len(kept) >= len(oracle.attributes) - 2, kept  # the target, and at most one other reading, change
