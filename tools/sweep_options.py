"""Run every option of every command with hostile values and report internal errors.

    python tools/sweep_options.py                 # every command (about an hour on 2 CPU cores)
    python tools/sweep_options.py edit "eval recon"   # some commands

Each command starts from a working invocation on the shipped toy model (in a fresh copy of a small fixture
folder); each option in turn gets an empty value, NaN, infinities, a negative number, zero, a huge number and an
over-long name. A run passes when it succeeds or fails with one ``error:`` line; an internal error, a traceback
or an exception escaping ``main`` is reported as BAD (exit status 1). A run still going after ``--timeout``
seconds is listed as SLOW: for a value such as ``--steps 999999999999`` on a trainer that is the request, not a
fault. Prints one line per run and a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("DIFFEDIT_DEVICE", "cpu")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import typer.main  # noqa: E402

from diffedit_cli.cli import app, main  # noqa: E402

FAST = ["--steps", "2", "--inv-steps", "2", "-q"]
BASE = {
    "encode": ["encode", "img/face.png", "--out", "o", "--inv-steps", "2", "-q"],
    "decode": ["decode", "lat/face.safetensors", "--out", "o", "--steps", "2", "-q"],
    "interpolate": ["interpolate", "img/face.png", "img/face2.png", "--frames", "2", "--out", "o", *FAST],
    "edit": ["edit", "img/face.png", "--attr", "Smiling", "--out", "o", *FAST],
    "sample": ["sample", "--n", "2", "--out", "o", "--steps", "2", "--latent-steps", "2", "-q"],
    "style-mix": ["style-mix", "img/face.png", "img/face2.png", "--model", "toyfaces-hdae", "--levels", "1", "--out", "o",
                  *FAST],
    "convert": ["convert", "ck/last.ckpt", "--out", "o"],
    "align": ["align", "astronaut.png", "--out", "o", "--size", "64", "--detector", "dlib", "-q"],
    "swap": ["swap", "img/face.png", "img/face2.png", "--attr", "hair", "--out", "o", *FAST],
    "recombine": ["recombine", "--base", "img/face.png", "--hair", "img/face2.png", "--out", "o/r.png", *FAST],
    "directions pca": ["directions", "pca", "lat", "img", "--out", "o.safetensors", "-k", "2", "-q"],
    "directions from-examples": ["directions", "from-examples", "--positive", "img/face.png", "--negative",
                                 "img/face2.png", "--name", "x", "--out", "o.safetensors", "-q"],
    "directions show": ["directions", "show", "dirs.safetensors", "--inputs", "img/face.png", "--out", "o.png", *FAST],
    "directions rename": ["directions", "rename", "dirs.safetensors", "pc01=smile"],
    "data toyfaces": ["data", "toyfaces", "--n", "2", "--out", "o", "-q"],
    "train autoencoder": ["train", "autoencoder", "--data", "toy", "--out", "o", "--steps", "1", "--preset", "tiny",
                          "--batch-size", "2", "-q"],
    "train latent": ["train", "latent", "--model", "m", "--data", "toy", "--steps", "1", "-q"],
    "train classifier": ["train", "classifier", "--model", "m", "--data", "toy", "--epochs", "1", "-q"],
    "train oracle": ["train", "oracle", "--out", "o", "--n-train", "10", "--epochs", "1", "-q"],
    "train gae": ["train", "gae", "--model", "m", "--data", "toy", "--steps", "1", "-q"],
    "train gae-joint": ["train", "gae-joint", "--model", "m", "--out", "o", "--data", "toy", "--steps", "1", "-q"],
    "eval recon": ["eval", "recon", "toy", "--n", "2", "--steps", "2", "--random-steps", "2", "-q"],
    "eval edit": ["eval", "edit", "toy", "--n", "2", "--steps", "2", "--inv-steps", "2", "-q"],
    "eval sample": ["eval", "sample", "toy", "--n", "2", "--steps", "2", "--latent-steps", "2", "-q"],
    "eval compare": ["eval", "compare", "toy", "--model", "toyfaces-hdae", "--n", "2", "--steps", "2", "--inv-steps",
                     "2", "--random-steps", "2", "-q"],
    "eval semantics": ["eval", "semantics", "toy", "--n", "2", "--probe-n", "8", "--steps", "2", "-q"],
    "eval gae": ["eval", "gae", "--probe-n", "10", "--n", "2", "--steps", "2", "--inv-steps", "2", "-q"],
    "models info": ["models", "info", "toyfaces"],
}
INTS = ["0", "-1", "999999999999"]
FLOATS = ["nan", "inf", "-inf", "-1", "1e300"]
TEXTS = ["", "nan", "x:y=z", "n" * 300, "-1"]


class Slow(BaseException):
    pass


def _alarm(*_):
    raise Slow()


def fixture(root: Path) -> Path:
    """The folder every run copies: two example faces, a photo, their latent files, generated faces with labels,
    a direction file, a writable copy of the toy model and a tiny official checkpoint."""
    base = root / "base"
    (base / "img").mkdir(parents=True)
    for name in ("face.png", "face2.png"):
        shutil.copy(REPO / "examples" / name, base / "img" / name)
    shutil.copy(REPO / "examples" / "astronaut.png", base / "astronaut.png")
    shutil.copytree(REPO / "weights" / "toyfaces", base / "m")
    (base / "ck").mkdir()
    shutil.copy(REPO / "tests" / "fixtures" / "reference" / "tiny_autoenc" / "last.ckpt", base / "ck" / "last.ckpt")
    here = os.getcwd()
    os.chdir(base)
    try:
        for argv in (["encode", "img", "--out", "lat", "--inv-steps", "2", "-q"],
                     ["data", "toyfaces", "--n", "12", "--out", "toy", "-q"],
                     ["directions", "pca", "lat", "--out", "dirs.safetensors", "-k", "2", "-q"]):
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(argv) == 0, argv
    finally:
        os.chdir(here)
    return base


def values_for(param) -> list:
    annotation = repr(param.type_descriptor.annotation)
    if "int" in annotation:
        return INTS
    if "float" in annotation:
        return FLOATS
    return TEXTS


def command_of(path: str):
    found = typer.main.get_command(app)
    for part in path.split():
        found = found.commands[part]
    return found


def sweep(names, timeout: int) -> int:
    signal.signal(signal.SIGALRM, _alarm)
    bad, slow, runs = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        base = fixture(Path(tmp))
        for name in names:
            for param in command_of(name).params:
                if param.name in ("help", "quiet", "json_lines") or getattr(param, "is_flag", False) \
                        or not param.opts[0].startswith("-"):
                    continue
                for value in values_for(param):
                    argv = list(BASE[name])
                    flag = param.opts[0]
                    if flag in argv:
                        argv[argv.index(flag) + 1] = value
                    else:
                        argv += [flag, value]
                    work = Path(tmp) / "run"
                    shutil.copytree(base, work, symlinks=True)
                    os.chdir(work)
                    err = io.StringIO()
                    signal.alarm(timeout)
                    try:
                        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                            code = main(argv)
                    except Slow:
                        code = "slow"
                    except BaseException as exc:  # noqa: BLE001 - anything escaping main is a finding
                        code = f"raised {type(exc).__name__}: {exc}"
                    finally:
                        signal.alarm(0)
                        os.chdir(tmp)
                        shutil.rmtree(work, ignore_errors=True)
                    runs += 1
                    text = err.getvalue().strip()
                    last = text.splitlines()[-1][:160] if text else ""
                    line = f"{name} {flag}={value[:24]!r} -> {code} {last}"
                    if code == "slow":
                        slow.append(line)
                        print("SLOW " + line, flush=True)
                    elif str(code).startswith("raised") or "internal error" in text or "Traceback" in text:
                        bad.append(line)
                        print("BAD  " + line, flush=True)
                    else:
                        print("     " + line, flush=True)
    print(f"{runs} runs: {len(bad)} bad, {len(slow)} still running after {timeout} s")
    return 1 if bad else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commands", nargs="*", help="commands to sweep (default: all)")
    parser.add_argument("--timeout", type=int, default=20, help="seconds before a run counts as slow")
    args = parser.parse_args()
    unknown = [c for c in args.commands if c not in BASE]
    if unknown:
        parser.error(f"unknown command(s) {unknown}; choose from {', '.join(BASE)}")
    sys.exit(sweep(args.commands or list(BASE), args.timeout))
