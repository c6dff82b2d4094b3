"""Encode a folder of images into latent files on a Ray cluster (Ray Data), one model per actor.

    pip install -e ".[ray]"
    python examples/ray_encode.py photos/ --out latents/                       # a local Ray on this machine
    python examples/ray_encode.py photos/ --out latents/ --address auto --gpus 1 --actors 8   # a running cluster

Each actor loads the model once (``diffedit_cli.api.Encoder``) and maps batches of images to z_sem and x_T; the
driver writes one latent file per image (``<name>.safetensors``, with the same provenance ``diffedit encode``
records) and one line per image that failed. Existing latent files are skipped, so re-running completes a run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="toyfaces")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    parser.add_argument("--actors", type=int, default=1, help="encoder actors (each loads the model once); keep "
                        "actors x --cpus below the cluster's CPUs, Ray reads the images on the rest")
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per actor (0: CPU)")
    parser.add_argument("--cpus", type=float, default=1, help="CPUs per actor")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--inv-steps", type=int, default=50)
    args = parser.parse_args(argv)

    import ray

    from diffedit_cli.api import Encoder
    from diffedit_cli.io.latents import LatentCode, latent_metadata, save_latent
    from diffedit_cli.io.models import load_model
    from diffedit_cli.sampling import DEFAULT

    sampling = DEFAULT.replace(inv_steps=args.inv_steps)
    model = load_model(args.model, components=())  # for the provenance the files record
    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    todo = [p for p in files if not (args.out / p.relative_to(args.folder).with_suffix(".safetensors")).exists()]
    print(f"{len(files)} images, {len(files) - len(todo)} already encoded", file=sys.stderr)
    if not todo:
        return 0
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ds = ray.data.read_images([str(p) for p in todo], include_paths=True, mode="RGB")
    codes = ds.map_batches(Encoder, fn_constructor_kwargs={"model": args.model, "sampling": sampling},
                           batch_size=args.batch_size, concurrency=args.actors, num_gpus=args.gpus,
                           num_cpus=args.cpus, batch_format="numpy")
    failed = 0
    import torch

    for batch in codes.iter_batches(batch_size=args.batch_size, batch_format="numpy"):
        for path, z, x_T, error in zip(batch["path"], batch["z_sem"], batch["x_T"], batch["error"]):
            if error:
                failed += 1
                print(f"error: {path}: {error}", file=sys.stderr)
                continue
            source = Path(path if Path(path).is_absolute() else "/" + path)
            target = args.out / source.relative_to(args.folder.resolve()).with_suffix(".safetensors")
            meta = latent_metadata(model, sampling.inv_steps, str(source), "ray.data.read_images(mode=RGB),"
                                   "official_resize_center_crop", inv_spacing=sampling.spacing,
                                   inv_sampler=sampling.inv_sampler)
            save_latent(target, LatentCode(torch.tensor(z), torch.tensor(x_T), meta), exclusive=True)
    print(f"{len(todo) - failed} encoded, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
