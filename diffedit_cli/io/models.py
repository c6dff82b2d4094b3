"""Model folders: one subfolder per component, each ``config.json`` + ``model.safetensors``.

Layout of a model (a local folder or a Hugging Face Hub model repo)::

    model_index.json           {"diffedit_format": 1, "name": ..., "components": [...]}
    autoencoder/config.json    {"component": "autoencoder", "config": {...}}
    autoencoder/model.safetensors
    latent/...                 latent DDIM (optional)
    classifier/...             linear attribute classifier (optional)

``--model`` accepts a local folder, the name of a model shipped in ``weights/``,
or a Hub id ``org/name`` with an optional ``@revision`` (branch, tag or commit).
Hub downloads go through :func:`huggingface_hub.snapshot_download`, so the
standard cache (``HF_HOME``), ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` apply.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from ..errors import ModelError
from ..networks.autoencoder import DiffAEAutoencoder
from ..networks.classifier import AttributeClassifier, ClassifierConfig
from ..networks.gae import GAEConfig, GroupAutoencoder
from ..networks.hdae import AnyAutoencoderConfig, build_autoencoder
from ..networks.latent_mlp import LatentMLP, LatentMLPConfig
from ..networks.oracle import AttributeOracle, OracleConfig

FORMAT_VERSION = 1
INDEX_FILE = "model_index.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_MODEL = "toyfaces"

# component name -> (module class or factory, config class with from_dict); the one table of what a model
# folder may hold. "autoencoder": the config's "arch" field (absent = "diffae") picks Diff-AE or
# HDAE(E)/HDAE(U) (networks/hdae.py).
COMPONENTS: Dict[str, Tuple[type, type]] = {
    "autoencoder": (build_autoencoder, AnyAutoencoderConfig),
    "latent": (LatentMLP, LatentMLPConfig),
    "classifier": (AttributeClassifier, ClassifierConfig),
    "gae": (GroupAutoencoder, GAEConfig),
    "oracle": (AttributeOracle, OracleConfig),
}


# -- saving ----------------------------------------------------------------

def save_component(module: nn.Module, folder: Path, component: str, extra: Optional[dict] = None) -> None:
    """Write ``config.json`` + ``model.safetensors`` for one component into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    meta = {"component": component, "diffedit_format": FORMAT_VERSION, "config": module.config.to_dict()}
    if extra:
        meta.update(extra)
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"component": component, "format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def write_index(folder: Path, name: str, components: Iterable[str], extra: Optional[dict] = None) -> None:
    index = {"diffedit_format": FORMAT_VERSION, "name": name, "components": sorted(components)}
    if extra:
        index.update(extra)
    (Path(folder) / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def add_to_index(folder: Path, name: str, component: str) -> None:
    """List ``component`` in ``folder``'s index (created if missing), keeping the components already there."""
    components = {component}
    if (Path(folder) / INDEX_FILE).is_file():
        components |= set(read_json(Path(folder) / INDEX_FILE, "model index").get("components", []))
    write_index(folder, name, components, {"trained_with": "diffedit train"})


def save_model_folder(out_dir: Path, name: str, components: Dict[str, nn.Module], overwrite: bool = False,
                      extra_index: Optional[dict] = None) -> Path:
    """Write a whole model folder atomically (built in a temp dir, then renamed)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ModelError(f"'{out_dir}' already exists and is not empty; choose another folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for comp, module in components.items():
            save_component(module, tmp / comp, comp)
        write_index(tmp, name, components, extra_index)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# -- loading ---------------------------------------------------------------

def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelError(f"{what}: '{path}' is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{what}: cannot parse '{path}' ({err})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{what}: '{path}' is not a JSON object")
    return data


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    """Load a safetensors file; a corrupt or tampered file is a one-line ModelError."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ModelError(f"weights file '{path}' is missing")
    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError, OSError, ... : all mean an unreadable file
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ModelError(f"cannot read weights '{path}': corrupt or tampered safetensors file ({reason})") from None


def load_state_strict(module: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` requiring identical keys and shapes."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of wrong shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise ModelError(f"weights in '{source}' do not fit the configured network: " + ", ".join(parts))
    module.load_state_dict(state, strict=True)


def load_component(folder: Path, component: str, device: str = "cpu") -> nn.Module:
    """Build a component from ``folder/config.json`` and load ``folder/model.safetensors`` strictly."""
    folder = Path(folder)
    meta = read_json(folder / CONFIG_FILE, f"{component} component")
    found = meta.get("component")
    if found != component:
        raise ModelError(f"'{folder}' holds a {found or 'unknown'} component, not a {component} component")
    if component not in COMPONENTS:
        raise ModelError(f"unknown component kind '{component}' in '{folder}'")
    module_cls, config_cls = COMPONENTS[component]
    try:
        cfg = config_cls.from_dict(meta.get("config", {}))
        module = module_cls(cfg)
    except (TypeError, ValueError, KeyError, ZeroDivisionError) as err:
        raise ModelError(f"invalid config in '{folder / CONFIG_FILE}': {err}") from None
    load_state_strict(module, read_safetensors(folder / WEIGHTS_FILE), str(folder / WEIGHTS_FILE))
    return module.to(device).eval().requires_grad_(False)


def file_fingerprint(path: Path) -> str:
    """First 16 hex digits of the sha256 of a file (identifies trained weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


# -- resolving --model -----------------------------------------------------

@dataclass
class ModelLocation:
    path: Path
    model_id: str
    revision: Optional[str] = None


def shipped_weights_dirs() -> list:
    """Folders that may hold shipped models: the source checkout's ``weights/`` and the wheel's copy."""
    package = Path(__file__).resolve().parent.parent
    return [package.parent / "weights", package / "weights"]


def shipped_models() -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for base in shipped_weights_dirs():
        if base.is_dir():
            for sub in sorted(base.iterdir()):
                if (sub / INDEX_FILE).is_file() and sub.name not in found:
                    found[sub.name] = sub
    return found


def _looks_like_hub_id(spec: str) -> bool:
    repo = spec.split("@", 1)[0]
    parts = repo.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def resolve_model(spec: Optional[str]) -> ModelLocation:
    """Find the folder of ``spec``: local path, shipped name, or Hub ``org/name[@rev]``."""
    shipped = shipped_models()
    names = ", ".join(sorted(shipped)) or "none"
    if spec is None:  # the default is always the shipped model, never a folder that happens to share its name
        if DEFAULT_MODEL not in shipped:
            raise ModelError(f"the default model '{DEFAULT_MODEL}' is not installed (shipped models: {names}); pass --model")
        return ModelLocation(shipped[DEFAULT_MODEL], DEFAULT_MODEL)
    local = Path(spec).expanduser()
    if local.is_dir():
        return ModelLocation(local.resolve(), str(local.resolve()))
    if spec in shipped:
        return ModelLocation(shipped[spec], spec)
    owner = Path(spec.split("@", 1)[0]).parent
    if _looks_like_hub_id(spec) and not local.exists() and not owner.is_dir():
        repo_id, _, revision = spec.partition("@")
        return ModelLocation(download_from_hub(repo_id, revision or None), repo_id, revision or None)
    if local.exists():
        raise ModelError(f"model '{spec}' is a file, not a model folder (to convert an official checkpoint: "
                         "'diffedit convert')")
    close = difflib.get_close_matches(spec, list(shipped), n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    if owner.is_dir() and str(owner) != ".":
        raise ModelError(f"model folder '{spec}' not found{hint}")
    raise ModelError(f"model '{spec}' not found: not a folder, not a shipped model ({names}), "
                     f"not a Hub id 'org/name[@revision]'{hint}")


def download_from_hub(repo_id: str, revision: Optional[str]) -> Path:
    """snapshot_download a model repo into the standard HF cache; errors become one line."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    label = f"{repo_id}@{revision}" if revision else repo_id
    try:
        path = snapshot_download(repo_id, revision=revision,
                                 allow_patterns=["*.json", "*.safetensors", "*.md"])
    except RevisionNotFoundError:
        raise ModelError(f"Hub model '{repo_id}' has no revision '{revision}'") from None
    except RepositoryNotFoundError:
        raise ModelError(f"Hub model '{repo_id}' not found (or it is private and no token is set)") from None
    except LocalEntryNotFoundError:
        raise ModelError(
            f"Hub model '{label}' is not in the local cache and the Hub cannot be reached "
            f"(offline mode or no network); download it once online or pass a local folder") from None
    except EntryNotFoundError as err:
        raise ModelError(f"Hub model '{label}' is missing a file: {' '.join(str(err).split())[:200]}") from None
    except OSError as err:
        raise ModelError(f"cannot download Hub model '{label}': {' '.join(str(err).split())[:200]}") from None
    path = Path(path)
    if not (path / INDEX_FILE).is_file():
        raise ModelError(f"Hub repo '{label}' is not a diffedit model: it has no {INDEX_FILE}")
    return path


@dataclass
class DiffAEModel:
    """A loaded model: components plus the identity recorded in latent files."""

    location: ModelLocation
    index: dict
    autoencoder: DiffAEAutoencoder
    latent: Optional[LatentMLP] = None
    classifier: Optional[AttributeClassifier] = None
    extra: Dict[str, nn.Module] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def image_size(self) -> int:
        return self.autoencoder.config.image_size

    @property
    def model_id(self) -> str:
        return self.location.model_id

    def component(self, name: str) -> nn.Module:
        module = getattr(self, name, None) if name in ("latent", "classifier") else self.extra.get(name)
        if module is None:
            have = ", ".join(self.index.get("components", []))
            raise ModelError(f"model '{self.model_id}' has no {name} component (it has: {have})")
        return module


def load_model(spec: Optional[str] = None, device: str = "cpu", components: Iterable[str] = ("latent", "classifier")) -> DiffAEModel:
    """Load the autoencoder of ``spec`` plus whichever optional ``components`` it has."""
    location = resolve_model(spec)
    index = read_json(location.path / INDEX_FILE, f"model '{location.model_id}'")
    available = set(index.get("components", []))
    if "autoencoder" not in available:
        raise ModelError(f"model '{location.model_id}' has no autoencoder component ({INDEX_FILE} lists {sorted(available)})")
    model = DiffAEModel(location, index, load_component(location.path / "autoencoder", "autoencoder", device))
    model.fingerprint = file_fingerprint(location.path / "autoencoder" / WEIGHTS_FILE)
    for name in components:
        if name in available:
            module = load_component(location.path / name, name, device)
            if name in ("latent", "classifier"):
                setattr(model, name, module)
            else:
                model.extra[name] = module
    return model
