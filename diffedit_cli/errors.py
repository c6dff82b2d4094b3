"""User-facing errors.

Every problem caused by the user's input (a bad image, a wrong checkpoint, an
unknown attribute, ...) is raised as a :class:`DiffeditError` whose message is a
single line naming the offending file or value. The CLI prints that line and
exits non-zero; it never shows a traceback for these.
"""

from typing import Dict, Optional


class DiffeditError(Exception):
    """An error the user can fix; ``str(err)`` is one line.

    ``param``: the library parameter the message starts with (``"levels"``, ``"inv_steps"``), so that a
    front end can name its own spelling of it (the CLI prints ``--levels``, ``--inv-steps``).
    """

    exit_code = 2

    def __init__(self, message: str, param: Optional[str] = None):
        super().__init__(" ".join(str(message).split()))
        self.param = param


def reason(err: BaseException, limit: int = 160) -> str:
    """A library exception as a short clause for a one-line message: whitespace folded, torch's long
    "Weights only load failed ..." reduced to its "WeightsUnpickler error: ..." sentence, and cut at a word
    boundary (with "...") rather than mid-word."""
    text = " ".join(str(err).split()) or type(err).__name__
    if "Weights only load failed" in text and "WeightsUnpickler error:" in text:
        text = text[text.index("WeightsUnpickler error:"):].split(". ")[0]
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " ..."


def flag_message(err: DiffeditError, flags: Optional[Dict[str, str]] = None) -> str:
    """``str(err)`` with its leading parameter name spelled as a command-line flag (``inv_steps`` -> ``--inv-steps``)."""
    text, param = str(err), getattr(err, "param", None)
    if not param or not text.startswith(param):
        return text
    flag = (flags or {}).get(param, "--" + param.replace("_", "-"))
    return flag + text[len(param):]


class InputError(DiffeditError):
    """A bad input file (image, latent file, list of paths)."""


class ModelError(DiffeditError):
    """A missing, corrupt or incompatible model / checkpoint."""


class NumericalError(DiffeditError):
    """A computation produced NaN or infinite values (reported per file)."""

    exit_code = 1


class InputWarning(UserWarning):
    """Something about an input the user should know (the CLI prints it as one ``warning:`` line)."""
