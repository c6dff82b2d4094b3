"""A loopback HTTP server for download tests: serves one local folder on 127.0.0.1 (ephemeral port).

The real downloaders (torch.hub's, facexlib's) fetch from it exactly as from the public URLs; ``requests``
lists the paths asked for, so a test can tell "downloaded", "reused from the cache" and "never asked".
"""

import functools
import hashlib
import http.server
import threading
from pathlib import Path
from typing import List, Optional

import torch


class FileServer:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.requests: List[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=str(self.folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def alexnet_standin(folder: Path, name_hash: Optional[str] = None):
    """Writes torchvision's AlexNet (seeded random weights) as ``alexnet-standin-<sha256[:8]>.pth`` in ``folder``.

    Returns (path, state dict). ``name_hash`` puts a different hash in the name (a file that fails the check).
    """
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"alexnet-standin-{name_hash or digest[:8]}.pth"
    tmp.rename(path)
    return path, state
