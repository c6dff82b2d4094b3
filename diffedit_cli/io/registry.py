"""Pretrained models known by name (``model ffhq256``): where they live and where they come from.

Each entry is a Hub repo in the official layout (converted on first use by :mod:`.pretrained`) with the facts a
user needs before downloading it: what it is, its resolution, its components, its download size, the paper and
the licence of the original weights, and who published the copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

DIFFAE_PAPER = ("Preechakul, Chatthee, Wizadwongsa, Suwajanakorn: Diffusion Autoencoders: Toward a Meaningful and "
                "Decodable Representation, CVPR 2022 (arXiv:2111.15640)")


@dataclass(frozen=True)
class KnownModel:
    name: str
    repo: str
    preset: str                  # the official architecture: the selector, and the image size the files lack
    resolution: int
    what: str
    components: Tuple[str, ...]  # what the repo is expected to give (classified from the files, not assumed)
    download: str
    paper: str
    license: str
    published_by: str

    def provenance(self) -> dict:
        return {"name": self.name, "repo": self.repo, "paper": self.paper, "license": self.license,
                "published_by": self.published_by}


KNOWN: Dict[str, KnownModel] = {
    "ffhq256": KnownModel(
        name="ffhq256",
        repo="alexkrz/diffae-ffhq256",
        preset="ffhq256",
        resolution=256,
        what="the official Diff-AE FFHQ-256 autoencoder (EMA weights) with its 40-attribute CelebA-HQ classifier: "
             "real face photos",
        components=("autoencoder", "classifier"),
        download="~0.7 GB",  # 168.5 M fp32 parameters (the official architecture) + the classifier; not measured
        paper=DIFFAE_PAPER,
        license="the authors' repository (phizaz/diffae), which publishes these weights, is MIT-licensed; the "
                "training images (FFHQ) are CC BY-NC-SA 4.0: check both before commercial use",
        published_by="community mirror (alexkrz) of the authors' checkpoints, not published by the authors",
    ),
}

HDAE_NOTE = ("HDAE: the HDAE paper published no weights; 'toyfaces-hdae' is diffedit's own HDAE(U), trained on "
             "64 px cartoon faces")
