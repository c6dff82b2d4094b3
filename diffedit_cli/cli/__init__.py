"""The ``diffedit`` command line: each command parses its flags into values, calls one library function, prints.

One module per command group (:mod:`.codes`, :mod:`.edit`, :mod:`.directions`, :mod:`.train`, :mod:`.evaluate`,
:mod:`.models`), the option aliases and flag parsers they share in :mod:`.options`; this module builds the
application from them, in the order ``diffedit --help`` lists the commands, and is the entry point (:func:`main`:
user errors are one line and a non-zero exit, never a traceback). Library imports happen inside the commands,
so that ``diffedit --help`` and shell completion start without torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import List, Optional

import typer
from typing_extensions import Annotated

from .. import __version__
from ..errors import DiffeditError, flag_message, spell, use_spelling
from . import codes, directions, edit, evaluate, models, train, ui
from .options import flag

app = typer.Typer(
    name="diffedit",
    help=(
        "Real-image editing with diffusion autoencoders (Diff-AE).\n\n"
        "Inputs may be image files, latent files (.safetensors from 'encode'), folders (searched "
        "recursively), glob patterns, or '-' to read paths from stdin. Outputs never overwrite inputs; "
        "every file is written atomically.\n\n"
        "Examples:\n\n"
        "  diffedit encode photos/ --out latents/\n\n"
        "  diffedit decode latents/ --out recon/ --steps 100\n\n"
        "  diffedit interpolate a.png b.png --frames 10\n\n"
        "  diffedit convert last.ckpt --out models/ffhq256"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

directions_app = typer.Typer(help="Find, inspect and name edit directions beyond the classifier's (direction files "
                             "for 'diffedit edit --direction FILE:NAME').", no_args_is_help=True)
data_app = typer.Typer(help="Generate datasets.", no_args_is_help=True)
train_app = typer.Typer(help="Train models (resumable; a run folder is also a model folder usable with --model).",
                        no_args_is_help=True)
eval_app = typer.Typer(help="Measure reconstruction and editing quality on generated faces with known attributes.",
                       no_args_is_help=True)
models_app = typer.Typer(no_args_is_help=False, invoke_without_command=True)
cache_app = typer.Typer(help="The latent cache: inverted images kept so that a second edit of the same image skips "
                        "the inversion.", no_args_is_help=True)

app.add_typer(directions_app, name="directions")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")

# -- the commands, in the order --help lists them ------------------------------------------------------------

app.command("encode")(codes.encode_cmd)
app.command("decode")(codes.decode_cmd)
app.command("interpolate")(codes.interpolate_cmd)
app.command("edit")(edit.edit_cmd)
app.command("sample")(codes.sample_cmd)
app.command("style-mix")(edit.style_mix_cmd)
app.command("convert")(codes.convert_cmd)
app.command("align")(codes.align_cmd)
directions_app.command("pca")(directions.directions_pca_cmd)
directions_app.command("from-examples")(directions.directions_from_examples_cmd)
directions_app.command("show")(directions.directions_show_cmd)
directions_app.command("rename")(directions.directions_rename_cmd)
data_app.command("toyfaces")(train.data_toyfaces_cmd)
train_app.command("autoencoder")(train.train_autoencoder_cmd)
train_app.command("latent")(train.train_latent_cmd)
train_app.command("classifier")(train.train_classifier_cmd)
train_app.command("oracle")(train.train_oracle_cmd)
eval_app.command("recon")(evaluate.eval_recon_cmd)
eval_app.command("edit")(evaluate.eval_edit_cmd)
eval_app.command("sample")(evaluate.eval_sample_cmd)
eval_app.command("compare")(evaluate.eval_compare_cmd)
eval_app.command("semantics")(evaluate.eval_semantics_cmd)
eval_app.command("curve")(evaluate.eval_curve_cmd)
app.command("swap")(edit.swap_cmd)
app.command("recombine", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(edit.recombine_cmd)
train_app.command("gae")(train.train_gae_cmd)
train_app.command("gae-joint")(train.train_gae_joint_cmd)
eval_app.command("gae")(evaluate.eval_gae_cmd)
models_app.callback(invoke_without_command=True)(models.models_cmd)
models_app.command("info")(models.models_info_cmd)
models_app.command("pull")(models.models_pull_cmd)
models_app.command("rm")(models.models_rm_cmd)
app.command("ui")(ui.ui_cmd)
cache_app.command("info")(models.cache_info_cmd)
cache_app.command("clear")(models.cache_clear_cmd)


def _version_callback(value: bool):
    if value:
        typer.echo(f"diffedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")] = False):
    """Real-image editing with diffusion autoencoders."""


@contextlib.contextmanager
def _warnings_as_lines():
    """Python warnings (ours and libraries') reach the terminal as one ``warning:`` line each, once."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = spell(" ".join(str(message).split()))
        if text not in shown:
            shown.add(text)
            sys.stderr.write(f"warning: {text}\n")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


THREADS_ENV = "DIFFEDIT_THREADS"


ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", min=1, max=4096, help=f"CPU threads for this run (default: ${THREADS_ENV}, else one per physical "
    "core, the fastest for one process alone). Several processes on one machine: give each cores / processes.",
    show_default=False)]


def _set_threads(value: Optional[int]) -> None:
    """``--threads N`` (or ``$DIFFEDIT_THREADS``): torch's intra-op CPU threads for this run."""
    if value is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if not env:
            return
        if not env.isdigit() or int(env) < 1:
            raise DiffeditError(f"${THREADS_ENV} must be a whole number >= 1, got '{env}'")
        value = int(env)
    import torch

    torch.set_num_threads(value)


def _with_threads(fn):
    """``fn`` with a ``--threads`` option, applied before it runs (every command has one)."""
    import functools
    import inspect

    signature = inspect.signature(fn, eval_str=True)
    if "threads" in signature.parameters:
        return fn

    @functools.wraps(fn)
    def command(*args, threads: Optional[int] = None, **kwargs):
        _set_threads(threads)
        return fn(*args, **kwargs)

    extra = inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ThreadsOpt)
    params = list(signature.parameters.values())
    command.__signature__ = signature.replace(parameters=params + [extra])
    command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
    return command


def _add_threads_option(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.callback = _with_threads(info.callback)
    for group in typer_app.registered_groups:
        _add_threads_option(group.typer_instance)




def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: user errors are one line on stderr and a non-zero exit, never a traceback."""
    try:  # recent Typer vendors click as typer._click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older Typer
        from click import exceptions as click_exc

    command = typer.main.get_command(app)
    use_spelling(flag)
    empty = _empty_value(sys.argv[1:] if argv is None else list(argv))
    if empty:
        sys.stderr.write(f"error: {empty} is an empty string (an unset shell variable?): give a value or leave it out\n")
        return 2
    try:
        with _warnings_as_lines():
            result = command.main(args=argv, prog_name="diffedit", standalone_mode=False)
        return int(result or 0)
    except click_exc.NoArgsIsHelpError as exc:  # bare 'diffedit CMD': show its help
        sys.stderr.write(exc.ctx.get_help() + "\n" if exc.ctx is not None else "")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except click_exc.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        sys.stderr.write(f"error: {' '.join(exc.format_message().split())}{hint}\n")
        return 2
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        return 130
    except DiffeditError as exc:
        sys.stderr.write(f"error: {flag_message(exc, flag)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get("DIFFEDIT_DEBUG"):
            raise
        sys.stderr.write(f"error: {_unexpected(exc)}\n")
        return 1


def _empty_value(argv: List[str]) -> Optional[str]:
    """The option (``--out``) or argument ('argument 2') given an empty value, if any: an unset shell variable
    would otherwise mean "the current folder" or "the default" without a word."""
    for k, arg in enumerate(argv):
        if arg.startswith("-") and "=" in arg and not arg.split("=", 1)[1].strip():
            return arg.split("=", 1)[0]
        if arg.strip():
            continue
        before = argv[k - 1] if k else ""
        if before.startswith("-") and "=" not in before and before != "--":
            return before
        return f"argument {k + 1} ('{' '.join(argv[:k])} \"\"')"
    return None


def _unexpected(exc: Exception) -> str:
    """One line for an exception that is not a DiffeditError: the file system's refusal (a name too long, no
    permission, no space) names the file; anything else is a bug, reported as an internal error."""
    if isinstance(exc, OSError) and exc.strerror:
        name = os.fsdecode(exc.filename) if exc.filename is not None else ""
        shown = name if len(name) <= 120 else name[:60] + "..." + name[-40:]
        return (f"'{shown}': " if name else "") + exc.strerror[:1].lower() + exc.strerror[1:]
    return (f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
            "(set DIFFEDIT_DEBUG=1 for a traceback)")


def run() -> None:
    sys.exit(main())


_add_threads_option(app)


if __name__ == "__main__":
    run()
