"""Model folders: one subfolder per component, each ``config.json`` + ``model.safetensors``.

Layout of a model (a local folder or a Hugging Face Hub model repo)::

    model_index.json           {"diffedit_format": 1, "name": ..., "components": [...]}
    autoencoder/config.json    {"component": "autoencoder", "config": {...}}
    autoencoder/model.safetensors
    latent/...                 latent DDIM (optional)
    classifier/...             linear attribute classifier (optional)

``model`` accepts a local folder, the name of a model shipped in ``weights/``,
or a Hub id ``org/name`` with an optional ``@revision`` (branch, tag or commit).
Hub downloads go through :func:`huggingface_hub.snapshot_download`, so the
standard cache (``HF_HOME``), ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` apply.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from huggingface_hub import constants, snapshot_download
from torch import nn

from ..errors import InputWarning, ModelError, opt
from ..networks.autoencoder import DiffAEAutoencoder
from ..networks.classifier import AttributeClassifier
from ..networks.latent_mlp import LatentMLP
from . import pretrained
from .components import (COMPONENTS, CONFIG_FILE, DEFAULT_MODEL, FORMAT_VERSION, INDEX_FILE,  # noqa: F401 (re-exported)
                         WEIGHTS_FILE, add_to_index, file_fingerprint, load_component, load_state_strict, read_json,
                         read_safetensors, save_component, save_model_folder, write_index)
from .pretrained import hub_errors
from .registry import KNOWN

# -- resolving model -----------------------------------------------------

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


def split_spec(spec: str) -> Tuple[str, Optional[str]]:
    """``SOURCE:NAME`` -> (SOURCE, NAME): NAME picks one model of a source holding several (``org/repo:ffhq256``)
    or names an official architecture the files cannot tell (``folder:ffhq256``). A path that exists is never split."""
    if ":" in spec and not Path(spec).expanduser().exists():
        base, _, selector = spec.rpartition(":")
        if base and selector and "/" not in selector:
            return base, selector
    return spec, None


def resolve_model(spec: Optional[str], log=None) -> ModelLocation:
    """Find the folder of ``spec``: a diffedit model folder, a shipped name, a known pretrained name (``ffhq256``),
    a Hub id ``org/name[@rev]``, or a folder / Hub repo of official weights (converted once into the cache);
    any of the last three may end in ``:NAME`` (see :func:`split_spec`)."""
    log = log or pretrained._stderr
    shipped = shipped_models()
    names = ", ".join(sorted(shipped)) or "none"
    if spec is None:  # the default is always the shipped model, never a folder that happens to share its name
        if DEFAULT_MODEL not in shipped:
            raise ModelError(f"the default model '{DEFAULT_MODEL}' is not installed (shipped models: {names}); pass {opt('model')}")
        return ModelLocation(shipped[DEFAULT_MODEL], DEFAULT_MODEL)
    base, selector = split_spec(spec)
    local = Path(base).expanduser()
    if local.is_dir():
        if (local / INDEX_FILE).is_file():
            if selector:
                raise ModelError(f"'{base}' is a diffedit model folder: it holds one model, so ':{selector}' has no meaning")
            return ModelLocation(local.resolve(), str(local.resolve()))
        folder = pretrained.convert_source(pretrained.FolderSource(local), selector, spec, local.resolve().name, log=log)
        return ModelLocation(folder, str(local.resolve()) + (f":{selector}" if selector else ""))
    if base in shipped and not selector:
        return ModelLocation(shipped[base], base)
    name, _, revision = base.partition("@")
    if name in KNOWN:
        known = KNOWN[name]
        return hub_model(known.repo, revision or None, selector or known.preset, spec, preset=known.preset,
                         model_id=known.name, provenance=known.provenance(), log=log)
    owner = Path(name).parent
    if _looks_like_hub_id(base) and not local.exists() and not owner.is_dir():
        try:
            return hub_model(name, revision or None, selector, spec, log=log)
        except ModelError as err:
            if "not found" in str(err) or "not in the local cache" in str(err):  # a mistyped path reads as a Hub id
                raise ModelError(f"{err}; no local folder '{name}' exists either") from None
            raise
    if local.exists():
        raise ModelError(f"model '{spec}' is a file, not a model folder (give the folder that holds it, or convert it: "
                         "'diffedit convert')")
    names_known = list(shipped) + list(KNOWN)
    close = (difflib.get_close_matches(base, names_known, n=2, cutoff=0.6)
             or difflib.get_close_matches(Path(base).name, names_known, n=2, cutoff=0.6))
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    if (owner.is_dir() and str(owner) != ".") or base.startswith((".", "/", "~")):  # a path, not a name
        raise ModelError(f"model folder '{spec}' not found{hint}")
    raise ModelError(f"model '{spec}' not found: not a folder, not a shipped model ({names}), not a known pretrained "
                     f"model ({', '.join(KNOWN)}; 'diffedit models'), not a Hub id 'org/name[@revision]'{hint}")


def hub_offline() -> bool:
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else constants.HF_HUB_OFFLINE)


def hub_model(repo_id: str, revision: Optional[str], selector: Optional[str], spec: str, preset: Optional[str] = None,
              model_id: Optional[str] = None, provenance: Optional[dict] = None, log=None) -> ModelLocation:
    """A Hub repo as a model folder: a diffedit-layout repo from the HF cache, an official-layout repo converted once."""
    model_id = model_id or repo_id
    slug = pretrained.hub_slug(repo_id)
    if hub_offline():
        folder = pretrained.read_ref(slug, revision, selector)
        if folder is not None:
            return ModelLocation(folder, model_id, revision)
        return ModelLocation(download_from_hub(repo_id, revision), model_id, revision)
    source = pretrained.HubSource(repo_id, revision)
    if any(f.path == INDEX_FILE for f in source.files):
        if selector and not preset:
            raise ModelError(f"Hub repo '{source.label}' is a diffedit model: it holds one model, so ':{selector}' has no meaning")
        return ModelLocation(download_from_hub(repo_id, revision), model_id, revision)
    folder = pretrained.convert_source(source, selector, spec, model_id, preset=preset, provenance=provenance, log=log)
    pretrained.write_ref(slug, revision, selector, folder.name, source.commit)
    return ModelLocation(folder, model_id, revision)


def download_from_hub(repo_id: str, revision: Optional[str], label: Optional[str] = None) -> Path:
    """snapshot_download a diffedit-layout model repo into the standard HF cache; errors become one line."""
    label = label or (f"{repo_id}@{revision}" if revision else repo_id)
    with hub_errors(label):
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.md"]))
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


PROCESS_FIELDS = ("prediction", "beta_schedule")


def check_process_recorded(folder: Path, index: dict) -> None:
    """An autoencoder config that does not say which diffusion process it was trained for decodes as the official
    one (eps prediction, linear schedule): said in one warning line, except for converted official weights."""
    config = read_json(folder / CONFIG_FILE, "autoencoder component").get("config", {})
    missing = [f for f in PROCESS_FIELDS if f not in config]
    if missing and "converted_from" not in index:
        warnings.warn(InputWarning(
            f"'{folder / CONFIG_FILE}' does not record {' or '.join(missing)} (written before diffedit recorded the "
            "diffusion process): decoding as the official eps prediction on the linear schedule; if it was trained "
            "otherwise (a v-prediction run, say), add those fields or results will be wrong"))


def check_trained_on(folder: Path, name: str, model: "DiffAEModel") -> None:
    """Refuse a component trained on the codes of other autoencoder weights than the model's (its config records
    their fingerprint): its directions, samples or swaps would silently be wrong."""
    trained_on = read_json(folder / CONFIG_FILE, f"{name} component").get("training", {}).get("autoencoder_fingerprint")
    if trained_on and model.fingerprint and trained_on != model.fingerprint:
        raise ModelError(f"the {name} of '{model.model_id}' was trained on other autoencoder weights ({trained_on}, "
                         f"this autoencoder is {model.fingerprint}); retrain it with 'diffedit train {name}'")


def load_model(spec: Optional[str] = None, device: str = "cpu", components: Iterable[str] = ("latent", "classifier"),
               log=None) -> DiffAEModel:
    """Load the autoencoder of ``spec`` plus whichever optional ``components`` it has (``log``: notes of a first-use
    download and conversion; default stderr)."""
    location = resolve_model(spec, log)
    index = read_json(location.path / INDEX_FILE, f"model '{location.model_id}'")
    available = set(index.get("components", []))
    if "autoencoder" not in available:
        raise ModelError(f"model '{location.model_id}' has no autoencoder component ({INDEX_FILE} lists {sorted(available)})")
    check_process_recorded(location.path / "autoencoder", index)
    model = DiffAEModel(location, index, load_component(location.path / "autoencoder", "autoencoder", device))
    model.fingerprint = file_fingerprint(location.path / "autoencoder" / WEIGHTS_FILE)
    for name in components:
        if name in available:
            module = load_component(location.path / name, name, device)
            check_trained_on(location.path / name, name, model)
            if name in ("latent", "classifier"):
                setattr(model, name, module)
            else:
                model.extra[name] = module
    return model
