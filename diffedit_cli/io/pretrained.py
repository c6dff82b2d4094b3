"""Models in the official layout, from a local folder or a Hub repo, converted once into the user cache.

``model`` accepts, besides diffedit model folders, any folder or Hub model repo that holds official Diff-AE
weights: the Lightning checkpoints as the official Drive folders lay them out (``ffhq256_autoenc/last.ckpt``,
``*_latent/last.ckpt``, ``*_cls/last.ckpt``, ``latent.pkl``), or plain state dicts with the official parameter
names (``.safetensors``, ``.pt``, ``.pth``, ``.bin``; EMA-stripped or ``ema_model.``-prefixed), as in the
community mirror ``alexkrz/diffae-ffhq256``.

How a source becomes a model:

1. The files are listed (a Hub repo: one metadata request, with each file's size and LFS sha256).
2. Each weight file is classified by its keys and shapes, never by its name (:func:`convert.split_official_state`):
   autoencoder, latent network, classifier, latent statistics, or unrelated. Safetensors files on the Hub are
   classified from their headers (two small range requests), so only the files the model needs are downloaded;
   pickle-format files are downloaded only when the safetensors hold no autoencoder.
3. One autoencoder is chosen: a source holding several (ffhq128 + ffhq256) is narrowed with ``SOURCE:NAME``
   (a part of the file name, a preset such as ``ffhq256``, or an image size such as ``256``) or refused with one
   line listing what it holds. Classifier, latent network and statistics of the same family
   (the ``ffhq256`` in ``ffhq256_autoenc_cls``) come with it.
4. The chosen files are downloaded (progress bars on stderr) and converted with :func:`convert.convert_checkpoints`
   into ``<cache>/models/<source>/<key>/``, keyed by repo, revision commit and every file's hash. The folder is
   built in a temporary folder and renamed into place, so an interrupted download or conversion leaves nothing
   half-written. Its ``model_index.json`` records the provenance (repo, commit, each file's sha256, role).
5. Later runs find the converted folder from the same metadata request, or, offline (``HF_HUB_OFFLINE=1``),
   from the reference kept under ``<cache>/models/<source>/refs/``.

The cache is ``$DIFFEDIT_CACHE`` or ``$XDG_CACHE_HOME/diffedit`` (``~/.cache/diffedit``); downloads go to the
standard Hugging Face cache (``HF_HOME``), so ``HF_ENDPOINT``, tokens and ``HF_HUB_OFFLINE`` apply.
Nothing beyond tensors and plain containers is unpickled; a state dict carrying other pickled objects is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                    RepositoryNotFoundError, RevisionNotFoundError)
from safetensors import safe_open

from ..errors import ModelError, opt, reason
from .components import COMPONENTS
from .convert import (PRESETS, WEIGHT_SUFFIXES, AutoencoderConfig, convert_checkpoints, infer_autoencoder_config,
                      latent_stats, read_state, split_official_state)

CACHE_ENV = "DIFFEDIT_CACHE"
CONFIG_SUFFIX = ".json"
Log = Callable[[str], None]


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


def cache_root() -> Path:
    """``$DIFFEDIT_CACHE``, else ``$XDG_CACHE_HOME/diffedit`` (``~/.cache/diffedit``)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffedit"


def models_cache() -> Path:
    return cache_root() / "models"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- sources -----------------------------------------------------------------------------------------------

@dataclass
class SourceFile:
    """One file of a source: ``path`` relative and ``/``-separated; ``digest`` identifies its content."""

    path: str
    size: int
    digest: str
    sha256: Optional[str] = None

    @property
    def is_weights(self) -> bool:
        return self.path.lower().endswith(WEIGHT_SUFFIXES)

    @property
    def is_safetensors(self) -> bool:
        return self.path.lower().endswith(".safetensors")


class FolderSource:
    """A local folder of official weight files."""

    kind = "folder"

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        self.label = str(self.root)
        self.commit: Optional[str] = None
        self.files: List[SourceFile] = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
                stat = path.stat()
                self.files.append(SourceFile(rel, stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}"))

    def cache_slug(self) -> str:
        return f"folder--{_slug(self.root.name)}-{hashlib.sha256(self.label.encode()).hexdigest()[:8]}"

    def header(self, f: SourceFile) -> Dict[str, Tuple[int, ...]]:
        return safetensors_header(self.root / f.path)

    def fetch(self, files: Sequence[SourceFile], log: Log) -> Dict[str, Path]:
        return {f.path: self.root / f.path for f in files}


class HubSource:
    """A Hugging Face Hub model repo at one revision (its commit is resolved once, up front)."""

    kind = "hub"

    def __init__(self, repo_id: str, revision: Optional[str]):
        self.repo_id, self.revision = repo_id, revision
        self.label = f"{repo_id}@{revision}" if revision else repo_id
        self.api = HfApi()
        with hub_errors(self.label):
            info = self.api.model_info(repo_id, revision=revision, files_metadata=True)
        self.commit = info.sha
        self.files = []
        for s in info.siblings or []:
            lfs = getattr(s, "lfs", None)
            sha = getattr(lfs, "sha256", None) if lfs is not None else None
            self.files.append(SourceFile(s.rfilename, int(s.size or 0), sha or s.blob_id or "", sha))

    def cache_slug(self) -> str:
        return hub_slug(self.repo_id)

    def header(self, f: SourceFile) -> Dict[str, Tuple[int, ...]]:
        with hub_errors(self.label):
            meta = self.api.parse_safetensors_file_metadata(self.repo_id, f.path, revision=self.commit)
        return {name: tuple(info.shape) for name, info in meta.tensors.items()}

    def fetch(self, files: Sequence[SourceFile], log: Log) -> Dict[str, Path]:
        total = sum(f.size for f in files)
        if total > (1 << 20):
            log(f"downloading {len(files)} file(s), {total / 1e9:.2f} GB, from {self.label}")
        out = {}
        with hub_errors(self.label):
            for f in files:
                out[f.path] = Path(hf_hub_download(self.repo_id, f.path, revision=self.commit))
        return out


def hub_slug(repo_id: str) -> str:
    return "hub--" + "--".join(_slug(part) for part in repo_id.split("/"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "_"


@contextlib.contextmanager
def hub_errors(label: str) -> Iterator[None]:
    """huggingface_hub's exceptions as one-line ModelErrors naming the repo."""
    try:
        yield
    except RevisionNotFoundError:
        repo, _, revision = label.partition("@")
        raise ModelError(f"Hub model '{repo}' has no revision '{revision or 'main'}'") from None
    except RepositoryNotFoundError:
        raise ModelError(f"Hub model '{label.split('@')[0]}' not found (or it is private and no token is set)") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise ModelError(
            f"Hub model '{label}' is not in the local cache and the Hub cannot be reached "
            f"(offline mode or no network); download it once online ('diffedit models pull') or pass a local folder") from None
    except EntryNotFoundError as err:
        raise ModelError(f"Hub model '{label}' is missing a file: {reason(err, 200)}") from None
    except ModelError:
        raise
    except Exception as err:  # HTTP errors, a dropped connection, a full disk: the download did not complete
        detail = reason(err, 200)
        raise ModelError(f"cannot download Hub model '{label}' ({type(err).__name__}: {detail}); "
                         "nothing was converted, run the command again to resume") from None


def safetensors_header(path: Path) -> Dict[str, Tuple[int, ...]]:
    """Tensor names and shapes of a safetensors file, read from its header only."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as err:
        raise ModelError(f"cannot read '{path}': corrupt or truncated safetensors file ({reason(err)})") from None


# -- classification ------------------------------------------------------------------------------------------

FAMILY = re.compile(r"[a-z]+\d+")
ROLE_ORDER = ("autoencoder", "latent", "classifier", "stats")


def family(path: str) -> str:
    """The model family a file name speaks of: ``ffhq256`` for ``ffhq256_autoenc_cls/last.ckpt``, '' for none."""
    found = FAMILY.search(path.lower())
    return found.group(0) if found else ""


def model_name(path: str) -> str:
    """How a file is named in messages and selectors: its path without the suffix and a trailing ``/last``."""
    stem = path.rsplit(".", 1)[0]
    return stem[: -len("/last")] if stem.endswith("/last") else stem


@dataclass
class FileInfo:
    """What one weight file holds, from its keys and shapes."""

    file: SourceFile
    roles: Tuple[str, ...] = ()
    image_size: Optional[int] = None       # from an x_T buffer
    arch: Optional[AutoencoderConfig] = None
    problem: str = ""                      # why it holds nothing usable

    def describe(self) -> str:
        if not self.roles:
            return f"{self.file.path} ({self.problem})"
        size = f" {self.arch.image_size} px" if self.arch is not None else ""
        return f"{self.file.path} ({' + '.join(self.roles)}{size})"


def classify(f: SourceFile, shapes: Dict[str, Tuple[int, ...]]) -> FileInfo:
    """Classify a file from its tensor names and shapes (meta tensors: nothing is allocated)."""
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    try:
        parts = split_official_state(state)
    except ModelError as err:
        return FileInfo(f, problem=f"not a Diff-AE weight file: {err}")
    xt = int(shapes["x_T"][-1]) if "x_T" in shapes and len(shapes["x_T"]) == 4 else None
    arch = None
    if "autoencoder" in parts:
        try:
            arch = infer_autoencoder_config(parts["autoencoder"], xt)
        except ModelError as err:
            return FileInfo(f, problem=f"an autoencoder of unknown layout: {err}")
    roles = set(parts) | ({"stats"} if latent_stats(state) is not None else set())
    return FileInfo(f, tuple(r for r in ROLE_ORDER if r in roles), xt, arch)


def _quiet(_: str) -> None:
    """Notes of a read that :func:`convert.convert_checkpoints` repeats when it converts the file."""


def _state_shapes(path: Path) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in read_state(path, log=_quiet).items()}


# -- choosing the files of one model ----------------------------------------------------------------------

@dataclass
class Plan:
    """The files that make one model: the autoencoder file first."""

    autoencoder: FileInfo
    extras: List[FileInfo] = field(default_factory=list)
    preset: Optional[str] = None
    image_size: Optional[int] = None
    image_size_from: str = ""

    @property
    def files(self) -> List[SourceFile]:
        return [self.autoencoder.file] + [i.file for i in self.extras]


def parse_selector(selector: Optional[str]) -> Tuple[Optional[str], Optional[int]]:
    """``ffhq256`` -> (preset, None); ``256`` / ``256px`` -> (None, 256); anything else -> (None, None)."""
    if not selector:
        return None, None
    text = selector.lower()
    if text in PRESETS:
        return text, None
    digits = re.fullmatch(r"(\d+)(px)?", text)
    return None, int(digits.group(1)) if digits else None


def _matches(info: FileInfo, selector: str) -> bool:
    sel = selector.lower()
    return sel == family(info.file.path) or sel in model_name(info.file.path).lower()


def choose_model(source, infos: List[FileInfo], selector: Optional[str], spec: str) -> FileInfo:
    """The one autoencoder the model is built on, narrowed by ``selector``; otherwise a one-line refusal."""
    with_auto = [i for i in infos if "autoencoder" in i.roles]
    if not with_auto:
        found = "; ".join(i.describe() for i in infos) or "no weight files"
        raise ModelError(f"'{source.label}' holds no Diff-AE autoencoder (found: {found})")
    candidates: List[FileInfo] = []
    for fam in sorted({family(i.file.path) for i in with_auto}):
        members = [i for i in with_auto if family(i.file.path) == fam]
        standalone = [i for i in members if "latent" not in i.roles]
        candidates.extend(standalone or members)
    if selector:
        preset, size = parse_selector(selector)
        chosen = [i for i in candidates if _matches(i, selector)]
        if not chosen and preset is not None:
            chosen = [i for i in candidates if _same_arch(i.arch, AutoencoderConfig(**PRESETS[preset]))]
        if not chosen and size is not None:
            chosen = [i for i in candidates if i.arch is not None and i.arch.image_size == size]
        if not chosen:
            raise ModelError(f"'{source.label}' holds no model matching ':{selector}' (it holds: "
                             f"{', '.join(_short(i) for i in candidates)})")
        candidates = chosen
    if len(candidates) > 1:
        base = spec.rsplit(":", 1)[0] if selector else spec
        raise ModelError(f"'{source.label}' holds {len(candidates)} models: {', '.join(_short(i) for i in candidates)}; "
                         f"choose one with {opt('model')} {base}:NAME (e.g. {base}:{_selector_hint(candidates[0])})")
    return candidates[0]


def _short(info: FileInfo) -> str:
    size = f" ({info.arch.image_size} px)" if info.arch is not None else ""
    return f"{model_name(info.file.path)}{size}"


def _selector_hint(info: FileInfo) -> str:
    return family(info.file.path) or model_name(info.file.path)


def _same_arch(a: Optional[AutoencoderConfig], b: AutoencoderConfig) -> bool:
    keys = ("model_channels", "channel_mult", "num_res_blocks", "embed_channels", "enc_out_channels",
            "enc_channel_mult", "enc_num_res_block")
    return a is not None and all(getattr(a, k) == getattr(b, k) for k in keys) and a.image_size == b.image_size


def companions(chosen: FileInfo, infos: List[FileInfo], log: Log) -> List[FileInfo]:
    """Latent network, classifier and (where those lack them) latent statistics of the chosen autoencoder's
    family: the ``ffhq256`` of ``ffhq256_autoenc_cls``; files that name no family belong to every model."""
    fam = family(chosen.file.path)
    pool = [i for i in infos if i is not chosen and family(i.file.path) in (fam, "")]
    picked: List[FileInfo] = []

    def best(found: List[FileInfo], what: str) -> None:
        found.sort(key=lambda i: (family(i.file.path) != fam, len(i.roles), i.file.path))
        if len(found) > 1:
            log(f"note: several files hold {what}; using {found[0].file.path} "
                f"(not {', '.join(i.file.path for i in found[1:])})")
        picked.append(found[0])

    for role in ("latent", "classifier"):
        found = [i for i in pool if role in i.roles and role not in chosen.roles]
        if found:
            best(found, f"a {role}")
    if any("stats" not in i.roles for i in picked):
        found = [i for i in pool if "stats" in i.roles and not any(i is p for p in picked)]
        if found:
            best(found, "latent statistics")
    return picked


def read_config_size(paths: Dict[str, Path], fam: str) -> Optional[int]:
    """``image_size`` (or ``img_size``) from a JSON config in the source, preferring one of the model's family."""
    ranked = sorted(paths, key=lambda p: (family(p) != fam, p))
    for rel in ranked:
        try:
            data = json.loads(paths[rel].read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        for holder in (data, data.get("config") if isinstance(data, dict) else None):
            if isinstance(holder, dict):
                for key in ("image_size", "img_size"):
                    if isinstance(holder.get(key), int) and holder[key] > 0:
                        return holder[key]
    return None


def plan_model(source, selector: Optional[str], spec: str, preset: Optional[str] = None, log: Log = _stderr) -> Plan:
    """Classify the source's weight files and choose those of one model (downloading pickles only if needed)."""
    parts = sorted({f.path.split("/")[0] for f in source.files if f.path.count("/") == 1
                    and f.path.endswith("/config.json") and f.path.split("/")[0] in COMPONENTS})
    if parts:  # its weights follow its own configs (v prediction, schedules): never convert them as official ones
        raise ModelError(f"'{source.label}' looks like a diffedit model folder ({', '.join(parts)}) but has no "
                         "model_index.json; restore it (it lists the components) or re-save the model")
    weights = [f for f in source.files if f.is_weights]
    if not weights:
        listed = ", ".join(f.path for f in source.files[:5]) or "nothing"
        raise ModelError(f"'{source.label}' is neither a diffedit model (no model_index.json) nor official "
                         f"Diff-AE weights: no {', '.join(WEIGHT_SUFFIXES)} files (found: {listed})")
    infos = [classify(f, source.header(f)) for f in weights if f.is_safetensors]
    pickles = [f for f in weights if not f.is_safetensors]
    if pickles and not _any_candidate(infos, selector):
        if selector:  # only the pickles the selector names, plus those that name no family
            named = [f for f in pickles if selector.lower() in f.path.lower() or not family(f.path)]
            pickles = named or pickles
        local = source.fetch(pickles, log)
        infos += [classify(f, _state_shapes(local[f.path])) for f in pickles]
    chosen = choose_model(source, infos, selector, spec)
    plan = Plan(chosen, companions(chosen, infos, log))
    selector_preset, selector_size = parse_selector(selector)
    plan.preset = preset or selector_preset
    if plan.preset is not None:
        plan.image_size_from = f"preset {plan.preset}"
    elif selector_size is not None:
        plan.image_size, plan.image_size_from = selector_size, f"the selector ':{selector}'"
    elif chosen.image_size is not None:
        plan.image_size, plan.image_size_from = chosen.image_size, "the x_T buffer"
    else:
        configs = {f.path: f for f in source.files if f.path.lower().endswith(CONFIG_SUFFIX) and f.size < (1 << 20)}
        size = read_config_size(source.fetch(list(configs.values()), log), family(chosen.file.path)) if configs else None
        if size is not None:
            plan.image_size, plan.image_size_from = size, "the repo's config file"
        else:
            plan.image_size_from = "the layout (attention at 16 px, as in every official model)"
    return plan


def _any_candidate(infos: List[FileInfo], selector: Optional[str]) -> bool:
    autos = [i for i in infos if "autoencoder" in i.roles]
    if not selector or not autos:
        return bool(autos)
    preset, size = parse_selector(selector)
    return any(_matches(i, selector) or (preset and _same_arch(i.arch, AutoencoderConfig(**PRESETS[preset])))
               or (size and i.arch is not None and i.arch.image_size == size) for i in autos)


# -- the converted folder in the cache --------------------------------------------------------------------

def cache_key(source, selector: Optional[str], preset: Optional[str]) -> str:
    """The converted folder's name: a hash of the source, its revision commit, the selector and every file's hash."""
    listing = sorted((f.path, f.digest) for f in source.files if f.is_weights or f.path.endswith(CONFIG_SUFFIX))
    blob = json.dumps([source.kind, source.label if source.kind == "folder" else getattr(source, "repo_id", ""),
                       source.commit, selector or "", preset or "", listing])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _ref_file(slug: str, revision: Optional[str], selector: Optional[str]) -> Path:
    name = f"{_slug(revision or 'default')}--{_slug(selector or '')}.json"
    return models_cache() / slug / "refs" / name


def write_ref(slug: str, revision: Optional[str], selector: Optional[str], key: str, commit: Optional[str]) -> None:
    ref = _ref_file(slug, revision, selector)
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"folder": key, "commit": commit}) + "\n")
    os.replace(tmp, ref)


def read_ref(slug: str, revision: Optional[str], selector: Optional[str]) -> Optional[Path]:
    """The converted folder a previous online run recorded for this revision and selector (for offline runs)."""
    ref = _ref_file(slug, revision, selector)
    try:
        key = json.loads(ref.read_text())["folder"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    folder = models_cache() / slug / str(key)
    return folder if (folder / "model_index.json").is_file() else None


def convert_source(source, selector: Optional[str], spec: str, name: str, preset: Optional[str] = None,
                   provenance: Optional[dict] = None, log: Log = _stderr) -> Path:
    """The converted model folder of ``source`` (built on first use; see the module doc)."""
    slug = source.cache_slug()
    key = cache_key(source, selector, preset)
    folder = models_cache() / slug / key
    if (folder / "model_index.json").is_file():
        return folder
    plan = plan_model(source, selector, spec, preset, log)
    local = source.fetch(plan.files, log)
    log(f"converting {source.label} ({', '.join(f.path for f in plan.files)}) once into {folder}")
    files_record = {}
    for info in [plan.autoencoder] + plan.extras:
        f = info.file
        files_record[f.path] = {"sha256": f.sha256 or sha256_file(local[f.path]), "size": f.size, "holds": list(info.roles)}
    source_record = {"kind": source.kind, "location": source.label, "revision": getattr(source, "revision", None),
                     "commit": source.commit, "selector": selector, "files": files_record,
                     "image_size_from": plan.image_size_from}
    if source.kind == "hub":
        source_record["repo"] = source.repo_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        inputs = [local[plan.autoencoder.file.path]] + _compatible_extras(plan, local, log)
        convert_checkpoints(inputs, tmp, preset=plan.preset, image_size=plan.image_size, name=name,
                            log=lambda text: log(_relative(text, local)),
                            extra_index={"source": source_record, **({"provenance": provenance} if provenance else {})})
        try:
            os.rename(tmp, folder)
        except OSError:  # another process converted the same model meanwhile: use its folder
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _compatible_extras(plan: Plan, local: Dict[str, Path], log: Log) -> List[Path]:
    """The companion files, leaving out a latent checkpoint whose embedded autoencoder is another network."""
    keep = []
    auto_state = None
    for info in plan.extras:
        path = local[info.file.path]
        if "autoencoder" in info.roles:
            if auto_state is None:
                auto_state = split_official_state(read_state(local[plan.autoencoder.file.path], log=_quiet))["autoencoder"]
            theirs = split_official_state(read_state(path, log=_quiet)).get("autoencoder", {})
            probe = "encoder.out.3.weight"
            if probe not in theirs or not torch.equal(theirs[probe], auto_state.get(probe, torch.empty(0))):
                log(f"note: {info.file.path} was trained on another autoencoder; its latent network is left out")
                continue
        keep.append(path)
    return keep


def _relative(text: str, local: Dict[str, Path]) -> str:
    for rel, path in local.items():
        text = text.replace(str(path), rel)
    return text
