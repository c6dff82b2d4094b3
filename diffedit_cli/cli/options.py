"""Option aliases and the small parsers every command group shares (flag syntax -> values)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..errors import DiffeditError
from ..sampling import DEFAULT, EVALUATION, PRECISIONS, Sampling


# -- how library parameters are spelled on the command line: the one table (library messages name parameters) --

FLAGS = {"SLICE": "--SLICE", "json_lines": "--json", "random_xt": "--random-xt"}


def flag(name: str) -> str:
    """The command-line spelling of the library parameter ``name`` (``inv_steps`` -> ``--inv-steps``)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def complete_model(incomplete: str) -> List[str]:
    from ..io.models import shipped_models
    from ..io.registry import KNOWN

    return [name for name in [*shipped_models(), *KNOWN] if name.startswith(incomplete)]


def completion_config(ctx: typer.Context, component: str) -> dict:
    """The ``component``'s config of the model named on the command line so far (shipped, folder or cached)."""
    from ..io.catalog import converted_folders
    from ..io.models import DEFAULT_MODEL, INDEX_FILE, shipped_models
    from ..io.registry import KNOWN

    spec = (ctx.params or {}).get("model") or DEFAULT_MODEL
    shipped = shipped_models()
    if spec in shipped:
        folder = shipped[spec]
    elif Path(spec).expanduser().is_dir() and (Path(spec).expanduser() / INDEX_FILE).is_file():
        folder = Path(spec).expanduser()
    else:
        cached = converted_folders(KNOWN[spec].repo if spec in KNOWN else spec.split("@")[0].split(":")[0])
        if not cached:
            return {}
        folder = cached[0]
    try:
        return json.loads((folder / component / "config.json").read_text()).get("config", {})
    except (OSError, ValueError):
        return {}


def complete_attr(ctx: typer.Context, incomplete: str) -> List[str]:
    names = completion_config(ctx, "classifier").get("attributes", [])
    names = names + [f"No_{n}" for n in names if not n.startswith("No_")]
    return [n for n in names if n.lower().startswith(incomplete.lower())]


def complete_slice(ctx: typer.Context, incomplete: str) -> List[str]:
    slices = [str(s[0]) for s in completion_config(ctx, "gae").get("slices", [])]
    return [n for n in slices if n.lower().startswith(incomplete.lower())]


# -- shared options --------------------------------------------------------
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", autocompletion=complete_model, help="A shipped model (toyfaces: 64 px cartoon faces), a known pretrained one (ffhq256: the "
    "official FFHQ-256 Diff-AE, downloaded and converted on first use; 'diffedit models'), a Hub id "
    "'org/name[@revision]' or a local folder, holding a diffedit model or official Diff-AE weights (Lightning "
    "checkpoints or state dicts; ':NAME' picks one of several models, e.g. org/name:ffhq256). "
    "Default: the shipped 'toyfaces' model.", show_default=False)]


OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/) or, for one input, a file name.", show_default=False)]


DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]


def precision_choice(value: Optional[str]) -> Optional[str]:
    if value is not None and value not in PRECISIONS:
        raise typer.BadParameter(f"'{value}': choose {', '.join(PRECISIONS)}")
    return value


PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", callback=precision_choice, help="fp32, fp16 or bf16 (default: fp16 on CUDA; on a CPU bf16 where it is native (AVX512-BF16 / AMX), else fp32; $DIFFEDIT_CPU_PRECISION overrides). fp32 reproduces the official numbers.", show_default=False)]


MAX_BATCH = 4096  # larger asks only for memory: batches never change results


BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH, help="Images per batch.")]


MAX_FACES = 1_000_000  # evaluation and generated training sets


MAX_SEED = 2 ** 62  # torch generators take 64-bit seeds; image i of a run uses seed + i


SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed for random x_T; image i uses seed + i, so batching never changes results.")]


TrainSeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the run (initial weights, batch order, noise): the same seed and data give the same weights.")]


def check_lr(value: float) -> float:
    """--lr: a finite learning rate in (0, 1]."""
    import math

    if not math.isfinite(value) or not 0 < value <= 1:
        raise typer.BadParameter(f"{value} is not a learning rate: give a number in (0, 1], e.g. 1e-4")
    return value


def check_ema(value: float) -> float:
    """--ema-decay: in [0, 1) (0: no averaging; 1 or more would never move, or diverge)."""
    import math

    if not math.isfinite(value) or not 0 <= value < 1:
        raise typer.BadParameter(f"{value}: the EMA decay must be in [0, 1), e.g. 0.999")
    return value


def check_alpha_value(value: float) -> float:
    from ..editing.attributes import check_alpha

    try:
        return check_alpha(value, "--alpha")
    except DiffeditError as err:
        raise typer.BadParameter(str(err).split(": ", 1)[1]) from None


StepsOpt = Annotated[int, typer.Option("--steps", min=1, max=1000, help="Decoding steps = network calls (the official editing notebook: --sampler ddim --spacing uniform --steps 100; measured trade-off: docs/speed.md).")]


SamplerOpt = Annotated[str, typer.Option("--sampler", help="Decoder: dpmpp-2m (DPM-Solver++ 2M: better than DDIM at equal --steps) or ddim (official).")]


SpacingOpt = Annotated[str, typer.Option("--spacing", help="Timesteps of decoding and inversion: quadratic (dense at low noise: better at few --steps, docs/speed.md) or uniform (the model's own; official).")]


InvStepsOpt = Annotated[int, typer.Option("--inv-steps", min=1, max=1000, help="Inversion steps for x_T = network calls (official: 250 with --inv-sampler ddim --spacing uniform).")]


InvSamplerOpt = Annotated[str, typer.Option("--inv-sampler", help="Inversion: dpmpp-2m (DPM-Solver++ 2M run towards noise: as exact in 15 steps as DDIM in 50, docs/speed.md) or ddim (official).")]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line per output on stdout.")]


SkipOpt = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume an interrupted run).")]


OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never inputs).")]


ShardOpt = Annotated[Optional[str], typer.Option("--shard", help="Only shard I of N of the inputs (I/N, 0-based: 0/4 ... 3/4), split by a stable hash of each input's path; run the N shards anywhere, into one --out. Under torchrun / accelerate the shard (RANK/WORLD_SIZE) and the GPU (LOCAL_RANK) come from the environment.", show_default=False)]
ManifestOpt = Annotated[Optional[Path], typer.Option("--manifest", help="Also write a JSON-lines record of every input (input, output, status, error, sha256 of the output, model fingerprint, shard); sharded runs write FILE.shard-I-of-N.jsonl each.", show_default=False)]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Invert every image, neither reading nor storing the latent cache (inversions are kept there so that a second edit of the same image skips them; 'diffedit cache info').")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


RelativeToOpt = Annotated[Optional[str], typer.Option("--relative-to", help="Name each output by its input's path inside this folder (keeps the tree of files listed one by one or read from stdin: find DIR ... | diffedit encode - --relative-to DIR).", show_default=False)]


# -- HDAE: resolution levels of the semantic code --------------------------------------------
LevelsOpt = Annotated[Optional[str], typer.Option(
    "--levels", help="Resolution levels, 1 = finest ... L = coarsest (UNet levels; L = len(channel_mult)): "
    "e.g. 3-4, 1,3 or all. On plain Diff-AE models the levels select UNet blocks (our extension).",
    show_default=False)]


# -- real photos (faces) options: see diffedit_cli/faces ---------------------------------------------------
AlignOpt = Annotated[bool, typer.Option("--align", help="Inputs are photos: detect faces and FFHQ-align them to the model's size first.")]


AlignedOpt = Annotated[bool, typer.Option("--aligned", help="Inputs are already FFHQ-aligned crops: no detection (the default without --align).")]


FaceOpt = Annotated[str, typer.Option("--face", help="With --align: all, largest, or a face number (0 = leftmost). Outputs are named <stem>_<NN>.")]


AlignFaceOpt = Annotated[str, typer.Option("--face", help="all, largest, or a face number (0 = leftmost). Outputs are named <stem>_<NN>.")]


DetectorOpt = Annotated[str, typer.Option("--detector", help="auto (facexlib if its weights are cached, else dlib), facexlib, facexlib-mobile or dlib.")]


FaceWeightsOpt = Annotated[Optional[str], typer.Option("--face-weights", help="Folder of facexlib weights (default: $DIFFEDIT_FACE_WEIGHTS or ~/.cache/diffedit/facexlib); downloaded there on first use.", show_default=False)]


def face_options(align: bool, aligned: bool, face: str, detector: str, face_weights: Optional[str], device: str = "cpu"):
    """FaceOptions for --align, or None for aligned inputs; refuses contradictory flags."""
    from ..faces.detection import check_detector_name, check_face_spec

    if align and aligned:
        raise DiffeditError("--align and --aligned contradict each other: choose one")
    check_face_spec(face)
    check_detector_name(detector)
    if not align:
        return None
    from ..jobs.photos import FaceOptions
    from ..pipeline import pick_device

    return FaceOptions(detector=detector, face=face, weights=face_weights, device=str(pick_device(device)))


def run_options(device, precision, batch_size, seed, steps=None, inv_steps=None, skip_existing=False,
                overwrite=False, sampler=None, spacing=None, relative_to=None, cache=False, shard=None,
                inv_sampler=None):
    """The job's RunOptions from the common flags: a Sampling from the command line's defaults and the flags given;
    ``cache``: read and store inversions in the user's latent cache (unless ``$DIFFEDIT_LATENT_CACHE_MB`` is 0)."""
    from ..io.latent_cache import LatentCache
    from ..jobs.options import RunOptions

    given = dict(sampler=sampler, steps=steps, inv_steps=inv_steps, spacing=spacing, precision=precision,
                 inv_sampler=inv_sampler)
    sampling = DEFAULT.replace(**{k: v for k, v in given.items() if v is not None})
    return RunOptions(device=device, sampling=sampling, batch_size=batch_size, seed=seed,
                      skip_existing=skip_existing, overwrite=overwrite, relative_to=relative_to,
                      cache=LatentCache.default() if cache else None, shard=shard)


def ready_model(model: Optional[str], device: str, components=("latent", "classifier")):
    from ..pipeline import load

    return load(model, device, components)


MAX_SWEEP = 64


def parse_sweep(spec: str) -> List[float]:
    """``"-0.5:0.5:5"`` -> [-0.5, -0.25, 0, 0.25, 0.5]."""
    import torch

    from ..editing.attributes import check_alpha
    from ..errors import InputError

    try:
        start, stop, count = spec.split(":")
        n = int(count)
        if n < 2:
            raise ValueError
        start, stop = float(start), float(stop)
    except ValueError:
        raise InputError(f"--alpha-sweep '{spec}': expected START:STOP:COUNT, e.g. -0.5:0.5:5") from None
    if n > MAX_SWEEP:  # every column is decoded and held for the row image
        raise InputError(f"--alpha-sweep '{spec}': at most {MAX_SWEEP} strengths in one sweep")
    for value in (start, stop):
        check_alpha(value, f"--alpha-sweep {spec}")
    return torch.linspace(start, stop, n).tolist()


def levels_of(text: Optional[str], loaded) -> Optional[List[int]]:
    """The ``--levels`` text -> 0-based levels of the loaded model."""
    from ..networks.hierarchy import num_levels, parse_levels

    return parse_levels(text, num_levels(loaded.autoencoder))


def reporter_for(json_lines: bool, quiet: bool):
    from ..jobs.report import Reporter

    return Reporter(json_lines=json_lines, quiet=quiet or not sys.stderr.isatty() and os.environ.get("DIFFEDIT_PROGRESS") != "1")


def check_steps(values, flag: str, total: int = 1000) -> None:
    from ..diffusion import respaced_timesteps

    for value in values:
        try:
            respaced_timesteps(total, value)
        except ValueError as err:
            raise DiffeditError(f"{flag} {value}: {err}") from None


def int_list(text: str, flag: str) -> List[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DiffeditError(f"{flag} '{text}': expected comma-separated integers") from None


def float_list(text: str, flag: str) -> List[float]:
    import math

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError
        return values
    except ValueError:
        raise DiffeditError(f"{flag} '{text}': expected comma-separated numbers") from None


# -- the evaluation protocol: the official sampler unless told otherwise ------------------------------------------

EvalSamplerOpt = Annotated[str, typer.Option("--sampler", help="Decoder of the measurement (default: ddim, the official protocol; dpmpp-2m measures what 'edit' decodes with).")]
EvalInvSamplerOpt = Annotated[str, typer.Option("--inv-sampler", help="Inversion of the measurement (default: ddim, the official protocol; dpmpp-2m is what 'edit' inverts with).")]
EvalSpacingOpt = Annotated[str, typer.Option("--spacing", help="Timesteps of the measurement (default: uniform, the official protocol; quadratic is what 'edit' uses).")]
RowsJsonOpt = Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")]
EvalPrecisionOpt = Annotated[str, typer.Option("--precision", callback=precision_choice, help="fp32 (default: the official numbers), fp16 or bf16.")]


def eval_sampling(sampler: str, spacing: str, precision: str, steps: Optional[int] = None,
                  inv_steps: Optional[int] = None, inv_sampler: Optional[str] = None) -> Sampling:
    """The evaluation's :class:`Sampling`: :data:`EVALUATION` (official sampler, fp32) with the flags given, checked
    before any compute; every report states it."""
    changes = dict(sampler=sampler, spacing=spacing, precision=precision)
    changes.update({k: v for k, v in (("steps", steps), ("inv_steps", inv_steps), ("inv_sampler", inv_sampler))
                    if v is not None})
    return EVALUATION.replace(**changes).check(decode=True, invert=inv_steps is not None)


# -- scale-out: shards and manifests --------------------------------------------------------------------------------

class ScaleOut:
    """``--shard`` / the torchrun environment and ``--manifest`` of one folder command."""

    def __init__(self, shard: Optional[str], manifest: Optional[Path], device: str):
        from ..jobs.shards import device_from_env, parse_shard, shard_from_env

        self.shard = parse_shard(shard) if shard is not None else shard_from_env()
        self.device = device_from_env(device)
        self.manifest = manifest

    def attach(self, reporter, skip_existing: bool, overwrite: bool, model=None) -> None:
        """Open the run's manifest (this shard's) on ``reporter``, refused before any work if it exists and the
        run neither resumes nor overwrites."""
        from ..jobs.shards import shard_path

        if self.manifest is None:
            return
        reporter.open_manifest(shard_path(self.manifest, self.shard), resume=skip_existing, overwrite=overwrite)
        if model is not None:
            reporter.context["model_fingerprint"] = model.fingerprint
        if self.shard is not None:
            reporter.context["shard"] = f"{self.shard[0]}/{self.shard[1]}"
