"""``diffedit eval``: reconstruction, editing, sampling and semantics benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..sampling import EVALUATION

from ..errors import DiffeditError
from .options import (RowsJsonOpt, BatchOpt, DetectorOpt, DeviceOpt, FaceOpt, FaceWeightsOpt, LevelsOpt, MAX_FACES, ModelOpt, QuietOpt, SeedOpt, check_steps, face_options, float_list, int_list, ready_model, EvalPrecisionOpt, EvalSamplerOpt, EvalInvSamplerOpt, EvalSpacingOpt, eval_sampling, reporter_for)


def eval_recon_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder (diffedit data toyfaces), held out from training.", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 500,
    steps: Annotated[str, typer.Option("--steps", help="DDIM step counts for inferred x_T (inversion and decoding).")] = "10,20,50,100",
    random_steps: Annotated[int, typer.Option("--random-steps", min=1, help="Decoding steps with random x_T.")] = 100,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: EvalPrecisionOpt = EVALUATION.precision, sampler: EvalSamplerOpt = EVALUATION.sampler,
    spacing: EvalSpacingOpt = EVALUATION.spacing,
    json_out: RowsJsonOpt = False,
    quiet: QuietOpt = False,
):
    """Reconstruction quality (Diff-AE Table 2 protocol): MSE, PSNR, SSIM, LPIPS with inferred and random x_T.

    With an oracle in the model, also the fraction of attribute labels kept by random-x_T decodes.

    LPIPS needs the lpips package (the [metrics] extra, or pip install lpips) and torchvision's AlexNet weights,
    downloaded into the torch hub cache on first use (DIFFEDIT_LPIPS_ALEXNET_URL: another source); offline
    the column is n/a with a note saying why.

    Example: diffedit data toyfaces --n 500 --seed 7 --out heldout && diffedit eval recon heldout
    """
    from ..evaluation.benchmarks import eval_reconstruction, format_table

    step_list = int_list(steps, "--steps")
    check_steps(step_list, "--steps")
    check_steps([random_steps], "--random-steps")
    loaded = ready_model(model, device, components=("classifier", "latent", "oracle"))
    with reporter_for(False, quiet) as rep:
        result = eval_reconstruction(loaded, data, n=n, steps=step_list, random_steps=random_steps,
                                     batch_size=batch_size, seed=seed, progress=rep,
                                     sampling=eval_sampling(sampler, spacing, precision))
    typer.echo(json.dumps(result) if json_out else format_table(result["rows"], result["notes"]))


def eval_edit_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder with params.jsonl and masks, held out from training; or real photos (a photo or a folder without params.jsonl).", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 100,
    alphas: Annotated[str, typer.Option("--alphas", help="Edit strengths, comma-separated.")] = "0.3,0.5",
    topk: Annotated[Optional[int], typer.Option("--topk", min=1, help="HDAE truncated directions.", show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Decoding steps.")] = 20,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion steps.")] = 20,
    inv_sampler: EvalInvSamplerOpt = EVALUATION.inv_sampler,
    batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: EvalPrecisionOpt = EVALUATION.precision, sampler: EvalSamplerOpt = EVALUATION.sampler,
    spacing: EvalSpacingOpt = EVALUATION.spacing,
    json_out: RowsJsonOpt = False,
    quiet: QuietOpt = False, levels: LevelsOpt = None,
    face: FaceOpt = "all", detector: DetectorOpt = "auto", face_weights: FaceWeightsOpt = None,
    attrs: Annotated[Optional[str], typer.Option("--attrs", help="Real photos: comma-separated attributes (default: all of the classifier's).", show_default=False)] = None,
):
    """Editing quality per attribute: oracle flip rate, attribute dependency, MSE outside the edited parts.

    On real photos (DATA is a photo, or a folder without params.jsonl): faces are detected and aligned,
    edited, pasted back, and the report gives dlib identity similarity (cosine, distance, same-person
    rate) and, with facexlib parsing weights, MSE outside the attribute's dilated face parts.

    Examples:

      diffedit eval edit heldout --n 100 --topk 64

      diffedit eval edit heldout --model runs/hdae-u --levels 1-2

      diffedit eval edit photos/ --attrs Smiling,Eyeglasses --detector dlib
    """
    from ..evaluation.benchmarks import eval_editing, format_table
    from ..networks.hierarchy import num_levels, parse_levels

    sampling = eval_sampling(sampler, spacing, precision, steps, inv_steps, inv_sampler)
    if data.exists() and not (data / "params.jsonl").is_file():  # real photos
        from ..jobs.photos import eval_photo_edits

        faces = face_options(True, False, face, detector, face_weights, device)
        loaded = ready_model(model, device, components=("classifier",))
        with reporter_for(False, quiet) as rep:
            result = eval_photo_edits(loaded, [str(data)], faces, alphas=float_list(alphas, "--alphas"), topk=topk,
                                      sampling=sampling, batch_size=batch_size,
                                      attributes=[a.strip() for a in attrs.split(",") if a.strip()] if attrs else None,
                                      progress=rep)
        typer.echo(json.dumps(result) if json_out else format_table(result["rows"], result["notes"]))
        raise typer.Exit(0)
    photo_only = {"--attrs": attrs is not None, "--face": face != "all", "--detector": detector != "auto",
                  "--face-weights": face_weights is not None}
    if any(photo_only.values()):
        raise DiffeditError(f"{', '.join(k for k, v in photo_only.items() if v)}: only for real photos; '{data}' is a "
                            "generated face folder (params.jsonl), edited along every attribute")
    loaded = ready_model(model, device, components=("classifier", "latent", "oracle"))
    level_list = parse_levels(levels, num_levels(loaded.autoencoder))
    with reporter_for(False, quiet) as rep:
        rows = eval_editing(loaded, data, n=n, alphas=float_list(alphas, "--alphas"), topk=topk, sampling=sampling,
                            batch_size=batch_size, progress=rep, levels=level_list)
    typer.echo(json.dumps(rows) if json_out else format_table(rows, [f"sampling: {sampling.describe()}"]))


def eval_sample_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder whose list_attr.txt gives the data frequencies.", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Number of samples.")] = 500,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Image decoding steps.")] = 20,
    latent_steps: Annotated[int, typer.Option("--latent-steps", min=1, help="Latent DDIM steps.")] = 100,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: EvalPrecisionOpt = EVALUATION.precision, sampler: EvalSamplerOpt = EVALUATION.sampler,
    spacing: EvalSpacingOpt = EVALUATION.spacing,
    json_out: RowsJsonOpt = False,
    quiet: QuietOpt = False,
):
    """Attribute frequencies of unconditional samples (judged by the oracle) against the data's.

    Example: diffedit eval sample data/toyfaces --n 500
    """
    from ..evaluation.benchmarks import eval_sampling as sample_frequencies, format_table

    sampling = eval_sampling(sampler, spacing, precision, steps)
    check_steps([latent_steps], "--latent-steps")
    loaded = ready_model(model, device, components=("classifier", "latent", "oracle"))
    with reporter_for(False, quiet) as rep:
        rows = sample_frequencies(loaded, data, n=n, sampling=sampling, latent_steps=latent_steps, seed=seed,
                                  batch_size=batch_size, progress=rep)
    typer.echo(json.dumps(rows) if json_out else format_table(rows, [f"sampling: {sampling.describe(invert=False)}"]))


# -- HDAE: the paper's comparison and training curves ----------------------------------------
def eval_compare_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder with params.jsonl and masks, held out from training.", show_default=False)],
    models: Annotated[List[str], typer.Option("--model", "-m", help="Model to compare (repeatable), e.g. the Diff-AE and the HDAE(U) run.", show_default=False)],
    topk: Annotated[Optional[List[int]], typer.Option("--topk", min=1, help="Also rows with truncated directions (repeatable).", show_default=False)] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 50,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Decoding steps (edits and inferred-x_T reconstruction).")] = 20,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion steps.")] = 20,
    inv_sampler: EvalInvSamplerOpt = EVALUATION.inv_sampler,
    random_steps: Annotated[int, typer.Option("--random-steps", min=1, help="Decoding steps with random x_T.")] = 20,
    alphas: Annotated[str, typer.Option("--alphas", help="Signed alphas of the Tab. 2 fidelity average.")] = "-0.5,-0.25,0,0.25,0.5",
    edit_alphas: Annotated[str, typer.Option("--edit-alphas", help="Alphas toward the target for flip rate / AD.")] = "0.3,0.5",
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: EvalPrecisionOpt = EVALUATION.precision, sampler: EvalSamplerOpt = EVALUATION.sampler,
    spacing: EvalSpacingOpt = EVALUATION.spacing,
    json_out: RowsJsonOpt = False,
    quiet: QuietOpt = False,
):
    """HDAE's comparison (DAE vs HDAE(U) vs HDAE(U) + top-k): MSE / LPIPS outside the dilated part mask
    averaged over alpha in [-0.5, 0.5] (HDAE Tab. 2), attribute dependency, oracle flip rate, reconstruction
    MSE with inferred and random x_T. The first model holding an oracle judges all.

    Example: diffedit eval compare heldout --model runs/toyfaces --model runs/hdae-u --topk 64 --n 50
    """
    from ..evaluation.comparison import compare_models
    from ..evaluation.benchmarks import format_table, load_lpips

    sampling = eval_sampling(sampler, spacing, precision, steps, inv_steps, inv_sampler)
    check_steps([random_steps], "--random-steps")
    loaded = [ready_model(spec, device, components=("classifier", "latent", "oracle")) for spec in models]
    lpips = load_lpips(next(loaded[0].autoencoder.parameters()).device)
    with reporter_for(False, quiet) as rep:
        rows = compare_models(loaded, data, n=n, topks=topk or [], fidelity_alphas=float_list(alphas, "--alphas"),
                              edit_alphas=float_list(edit_alphas, "--edit-alphas"), sampling=sampling,
                              random_steps=random_steps, seed=seed, batch_size=batch_size, progress=rep, lpips=lpips)
    notes = [f"sampling: {sampling.describe()}"] + ([f"LPIPS n/a: {lpips[1]}"] if lpips[0] is None else [])
    typer.echo(json.dumps(rows) if json_out else format_table(rows, notes))


def eval_semantics_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder (diffedit data toyfaces), held out from training.", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to decode (the first N).")] = 100,
    probe_data: Annotated[Optional[Path], typer.Option("--probe-data", help="Labelled face folder for the linear probes (default: DATA).", show_default=False)] = None,
    probe_n: Annotated[int, typer.Option("--probe-n", min=8, max=MAX_FACES, help="Faces for the probes: 3/4 fit, 1/4 held out.")] = 2000,
    steps: Annotated[int, typer.Option("--steps", min=1, max=1000, help="DDIM steps of every decode and inversion.")] = 20,
    oracle: Annotated[Optional[str], typer.Option("--oracle", help="Model whose oracle judges random-x_T decodes (default: --model's own, else the shipped toyfaces).", show_default=False)] = None,
    runs: Annotated[Optional[List[Path]], typer.Option("--run", help="Training run folder (repeatable): evaluate every EMA snapshot (train --keep-every N), one row per step.", show_default=False)] = None,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    quiet: QuietOpt = False,
):
    """Does z_sem carry the semantics? Linear probes vs a random encoder, random-x_T decodes, x_T's colour share.

    The quick health check of any model (shipped, converted or your own run folder). Per attribute: the
    held-out accuracy of a linear probe on z_sem and on a randomly initialised encoder of the same
    architecture (the floor). Then: oracle labels kept when z_sem is decoded with random x_T, the share of
    the decodes' mean colour that comes from x_T (0 = none), and reconstruction MSE with inferred x_T.

    With --run, every EMA snapshot of the run(s) instead: the scaling curve of a recipe.

    Examples:

      diffedit eval semantics runs/data/heldout --model runs/toy-v --probe-data runs/data/probe --n 100

      diffedit eval semantics runs/data/heldout --run runs/toy-v --run runs/toy-eps --probe-data runs/data/probe
    """
    from ..evaluation.benchmarks import format_table
    from ..evaluation.semantics import eval_semantics, load_oracle, semantics_curve

    check_steps([steps], "--steps")
    loaded = ready_model(model, device, components=("oracle",))
    judge = load_oracle(oracle, loaded)
    if runs:
        rows = []
        with reporter_for(False, quiet) as rep:
            for run_dir in runs:
                rows.extend(semantics_curve(run_dir, data, oracle=judge, device=str(next(loaded.autoencoder.parameters()).device), n=n, probe_data=probe_data, probe_n=probe_n,
                                            steps=steps, batch_size=batch_size, seed=seed, progress=rep))
        typer.echo(json.dumps(rows) if json_out else format_table(rows))
        return
    with reporter_for(False, quiet) as rep:
        result = eval_semantics(loaded, data, n=n, probe_data=probe_data, probe_n=probe_n, steps=steps,
                                batch_size=batch_size, seed=seed, oracle=judge, progress=rep)
    if json_out:
        typer.echo(json.dumps(result))
        return
    typer.echo(format_table(result["probe"]))
    typer.echo(f"(probe on {result['probe_n']} faces; decodes of {result['n']} faces at {result['steps']} steps)")
    typer.echo(format_table([{"measure": k, "value": v} for k, v in result["summary"].items()], result["notes"]))


def eval_curve_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder, held out from training.", show_default=False)],
    runs: Annotated[List[Path], typer.Option("--run", help="Training run folder (repeatable); snapshots from 'train autoencoder --keep-every N'.", show_default=False)],
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 32,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion and decoding steps (inferred x_T).")] = 20,
    inv_sampler: EvalInvSamplerOpt = EVALUATION.inv_sampler,
    random_steps: Annotated[int, typer.Option("--random-steps", min=1, help="Decoding steps with random x_T.")] = 20,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: EvalPrecisionOpt = EVALUATION.precision, sampler: EvalSamplerOpt = EVALUATION.sampler,
    spacing: EvalSpacingOpt = EVALUATION.spacing,
    json_out: RowsJsonOpt = False,
    quiet: QuietOpt = False,
):
    """Training curves: reconstruction MSE (inferred / random x_T) of every EMA snapshot and the logged loss.

    Example: diffedit eval curve heldout --run runs/toyfaces-dae --run runs/hdae-u --n 32
    """
    from ..evaluation.comparison import training_curve
    from ..evaluation.benchmarks import format_table
    from ..pipeline import pick_device

    sampling = eval_sampling(sampler, spacing, precision, inv_steps, inv_steps, inv_sampler)
    check_steps([random_steps], "--random-steps")
    dev = str(pick_device(device))
    rows = []
    with reporter_for(False, quiet) as rep:
        for run_dir in runs:
            rows.extend(training_curve(run_dir, data, n=n, random_steps=random_steps, seed=seed,
                                       batch_size=batch_size, device=dev, sampling=sampling, progress=rep))
    typer.echo(json.dumps(rows) if json_out else format_table(rows, [f"sampling: {sampling.describe()}"]))


def eval_gae_cmd(
    model: ModelOpt = None,
    probe_n: Annotated[int, typer.Option("--probe-n", min=10, max=MAX_FACES, help="Generated faces (independent groups) for the linear probes, split 80:20.")] = 2000,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Held-out face pairs (A, B) for the swap benchmark.")] = 50,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Decoding steps.")] = 20,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion steps for A's x_T.")] = 20,
    inv_sampler: EvalInvSamplerOpt = EVALUATION.inv_sampler,
    residual: Annotated[bool, typer.Option("--residual", help="Swap with A's GAE reconstruction error added back.")] = False,
    no_swap: Annotated[bool, typer.Option("--no-swap", help="Only the perplexity matrix (no decoding).")] = False,
    batch_size: BatchOpt = 16, device: DeviceOpt = "auto",
    precision: EvalPrecisionOpt = EVALUATION.precision, sampler: EvalSamplerOpt = EVALUATION.sampler,
    spacing: EvalSpacingOpt = EVALUATION.spacing,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    quiet: QuietOpt = False,
):
    """GAE benchmark: perplexity matrix (DiffuseGAE Tab. 1), swap success judged by the oracle, reconstruction.

    Example: diffedit eval gae --probe-n 2000 --n 50
    """
    from ..evaluation.gae import eval_gae, format_gae_report

    sampling = eval_sampling(sampler, spacing, precision, steps, inv_steps, inv_sampler)
    loaded = ready_model(model, device, components=("gae", "oracle"))
    with reporter_for(False, quiet) as rep:
        result = eval_gae(loaded, probe_n=probe_n, n=n, sampling=sampling, batch_size=batch_size,
                          residual=residual, swap=not no_swap, progress=rep)
    typer.echo(json.dumps(result) if json_out else format_gae_report(result))
