"""Weight files that do not come from the Hugging Face Hub: facexlib's detector / parser and LPIPS's AlexNet.

Both are fetched on first use into a cache folder and reused from there. Rules shared by both:

* ``DIFFEDIT_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) forbids any download; a missing file is then one line
  naming the file, its URL and the folder to put it in.
* A download gives up after 60 s without an answer (``DIFFEDIT_DOWNLOAD_TIMEOUT``) instead of hanging.
* Mirrors: ``DIFFEDIT_FACEXLIB_MIRROR`` (base URL: files are fetched from ``<mirror>/<file name>``) and
  ``DIFFEDIT_LPIPS_ALEXNET_URL`` (the AlexNet file's full URL) replace the public addresses, for firewalled
  machines (and for the tests, which serve stand-in files from a loopback HTTP server).
* A download goes to a temporary file beside the target and is renamed only when complete (and, for names
  carrying a hash such as ``alexnet-owt-7be5be79.pth``, when its sha256 starts with that hash, the torch hub
  convention), so a failed or interrupted download never leaves a half-written weight file.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import warnings
from pathlib import Path
from typing import Dict, Optional
from urllib.parse import urlparse

import torch

from ..errors import ModelError, reason

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
"""torch hub's convention: ``name-<sha256 prefix>.ext``."""


TIMEOUT_S = 60.0
"""Seconds a download may wait for the server (connect or read) before it fails, so a firewall that drops
packets gives an error instead of a hang (``$DIFFEDIT_DOWNLOAD_TIMEOUT`` overrides)."""


@contextlib.contextmanager
def network_timeout():
    """Within the block, sockets without their own timeout give up after ``TIMEOUT_S`` (urllib has none)."""
    previous = socket.getdefaulttimeout()
    try:
        seconds = float(os.environ.get("DIFFEDIT_DOWNLOAD_TIMEOUT", "") or TIMEOUT_S)
    except ValueError:
        seconds = TIMEOUT_S
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def offline() -> bool:
    """True when downloads are disabled (``DIFFEDIT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
               for name in ("DIFFEDIT_OFFLINE", "HF_HUB_OFFLINE"))


def file_name(url: str) -> str:
    """The last path component of ``url`` (the name the file is cached under)."""
    return os.path.basename(urlparse(url).path)


def mirrored(url: str, mirror_variable: str) -> str:
    """``url``, or ``$mirror_variable/<file name>`` when that environment variable is set."""
    mirror = os.environ.get(mirror_variable, "").strip()
    return f"{mirror.rstrip('/')}/{file_name(url)}" if mirror else url


def hash_prefix(name: str) -> Optional[str]:
    """The sha256 prefix a torch-hub style file name promises (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    found = HASH_IN_NAME.search(name)
    return found.group(1) if found else None


def fetch(url: str, target: Path, what: str) -> Path:
    """``target`` (a file), downloaded from ``url`` first when it is missing and downloads are allowed.

    Raises :class:`ModelError` (one line naming ``what``, the URL and the target) when offline or when the
    download fails; the hash in the file name, if any, is verified. Progress goes to stderr.
    """
    target = Path(target)
    if target.is_file():
        return target
    put_it = f"put {file_name(url)} from {url} at {target}"
    if offline():
        raise ModelError(f"{what} not found and downloads are off (DIFFEDIT_OFFLINE / HF_HUB_OFFLINE): {put_it}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # torch's downloader writes a temporary file in the target folder, checks the hash, then renames
        with network_timeout():
            torch.hub.download_url_to_file(url, str(target), hash_prefix=hash_prefix(target.name),
                                           progress=sys.stderr.isatty())
    except Exception as err:  # no network, HTTP error, hash mismatch, disk full
        detail = reason(err, 160)
        raise ModelError(f"could not download {what} ({type(err).__name__}: {detail}); {put_it}") from None
    return target


def load_state_dict(path: Path, what: str = "weights") -> Dict[str, torch.Tensor]:
    """A plain state dict, read with ``weights_only=True``; a ``module.`` prefix (DataParallel) is removed.

    Raises :class:`ModelError` (one line, naming ``what`` and ``path``) for a file that is corrupt or holds
    anything but tensors (pickled objects are refused, never run).
    """
    try:
        with warnings.catch_warnings():  # torch's note on foreign pickle protocols is noise to a user
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(f"cannot read {what} '{path}': {reason(err, 160)} "
                         "(corrupt, or not a plain state dict; delete it to download it again)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"'{path}' is not a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
