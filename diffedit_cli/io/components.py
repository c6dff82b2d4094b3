"""Model components on disk: one subfolder per component, ``config.json`` + ``model.safetensors``.

The one table of what a model folder may hold (:data:`COMPONENTS`), writing and strict loading of a component,
and the model index. :mod:`.models` finds and loads whole models; :mod:`.convert` writes official weights here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import torch
from safetensors.torch import load_file, save
from torch import nn

from ..errors import ModelError
from ..networks.classifier import AttributeClassifier, ClassifierConfig
from ..networks.gae import GAEConfig, GroupAutoencoder
from ..networks.hdae import AnyAutoencoderConfig, build_autoencoder
from ..networks.latent_mlp import LatentMLP, LatentMLPConfig
from ..networks.oracle import AttributeOracle, OracleConfig
from .files import write_bytes

FORMAT_VERSION = 1
INDEX_FILE = "model_index.json"
SNAPSHOT_DIR = "snapshots"  # a training run's EMA autoencoder snapshots: snapshots/autoencoder_<step>/ components
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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    meta = {"component": component, "diffedit_format": FORMAT_VERSION, "config": module.config.to_dict()}
    if extra:
        meta.update(extra)
    # each file is written to a temporary name and renamed: a crash never leaves half a weight file
    write_bytes(folder / WEIGHTS_FILE, save(state, metadata={"component": component, "format": "pt"}))
    write_bytes(folder / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())


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
    if not Path(path).is_file():
        raise ModelError(f"weights file '{path}' is missing")
    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError, OSError, ... : all mean an unreadable file
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ModelError(f"cannot read weights '{path}': corrupt or tampered safetensors file ({reason})") from None


def load_state_strict(module: nn.Module, state: Dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Load ``state`` into ``module`` requiring identical keys and shapes. ``assign``: the module's tensors become
    the loaded ones (cast to the module's dtypes), for a module built on the meta device."""
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
    if assign:
        state = {k: v.to(own[k].dtype) for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=assign)


def load_component(folder: Path, component: str, device: str = "cpu") -> nn.Module:
    """Build a component from ``folder/config.json`` and load ``folder/model.safetensors`` strictly."""
    folder = Path(folder)
    meta = read_json(folder / CONFIG_FILE, f"{component} component")
    found = meta.get("component")
    if found != component:
        article = "an" if component[0] in "aeiou" else "a"
        raise ModelError(f"'{folder}' holds a {found or 'unknown'} component, not {article} {component} component")
    if component not in COMPONENTS:
        raise ModelError(f"unknown component kind '{component}' in '{folder}'")
    module_cls, config_cls = COMPONENTS[component]
    try:
        cfg = config_cls.from_dict(meta.get("config", {}))
        with torch.device("meta"):  # the architecture only: no random initialisation of weights the file replaces
            module = module_cls(cfg)
    except (TypeError, ValueError, KeyError, ZeroDivisionError) as err:
        raise ModelError(f"invalid config in '{folder / CONFIG_FILE}': {err}") from None
    state = read_safetensors(folder / WEIGHTS_FILE)
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ModelError(f"'{folder / WEIGHTS_FILE}' holds NaN or infinite weights (e.g. {bad}): a diverged or "
                         "corrupt model")
    load_state_strict(module, state, str(folder / WEIGHTS_FILE), assign=True)
    unset = next((name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta), None)
    if unset is not None:  # a tensor the state dict does not hold (none of the component kinds has one)
        raise ModelError(f"'{folder}': {component} tensor '{unset}' is not in its weights file")
    return module.to(device).eval().requires_grad_(False)


def file_fingerprint(path: Path) -> str:
    """First 16 hex digits of the sha256 of a file (identifies trained weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


