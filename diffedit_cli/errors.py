"""User-facing errors.

Every problem caused by the user's input (a bad image, a wrong checkpoint, an
unknown attribute, ...) is raised as a :class:`DiffeditError` whose message is a
single line naming the offending file or value. The CLI prints that line and
exits non-zero; it never shows a traceback for these.
"""

import re
from typing import Callable, Optional

_MARK = "\ue000"  # (a private-use character) brackets a parameter name inside a message (see :func:`opt`)
_MARKED = re.compile(f"{_MARK}(\\w+){_MARK}")
_spelling: Callable[[str], str] = lambda name: name


def opt(name: str) -> str:
    """A parameter named inside a message (``opt("inv_steps")``): shown as the front end spells it, the command line
    as its flag, Python as the keyword (``inv_steps``). The library never writes a flag itself."""
    return f"{_MARK}{name}{_MARK}"


def spell(text: str) -> str:
    """``text`` with every :func:`opt` marker written as the current front end spells parameters."""
    return _MARKED.sub(lambda m: _spelling(m.group(1)), text)


def use_spelling(spelling: Callable[[str], str]) -> None:
    """Set how messages spell parameters (the command line installs its flag table at start-up)."""
    global _spelling
    _spelling = spelling


class DiffeditError(Exception):
    """An error the user can fix; ``str(err)`` is one line.

    ``param``: the library parameter the message starts with (``"levels"``, ``"inv_steps"``), so that a
    front end can name its own spelling of it (the CLI prints its flag).
    """

    exit_code = 2

    def __init__(self, message: str, param: Optional[str] = None):
        super().__init__(" ".join(str(message).split()))
        self.param = param

    def __str__(self) -> str:
        return spell(super().__str__())


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


def flag_message(err: DiffeditError, spelling: Optional[Callable[[str], str]] = None) -> str:
    """``str(err)`` with its leading parameter name (``err.param``) spelled by ``spelling`` (``inv_steps`` ->
    its flag; default: two dashes and hyphens, without a table)."""
    text, param = str(err), getattr(err, "param", None)
    if not param or not text.startswith(param):
        return text
    spelled = spelling(param) if spelling is not None else "--" + param.replace("_", "-")
    return spelled + text[len(param):]


class InputError(DiffeditError):
    """A bad input file (image, latent file, list of paths)."""


class ModelError(DiffeditError):
    """A missing, corrupt or incompatible model / checkpoint."""


class NumericalError(DiffeditError):
    """A computation produced NaN or infinite values (reported per file)."""

    exit_code = 1


class InputWarning(UserWarning):
    """Something about an input the user should know (the CLI prints it as one ``warning:`` line)."""
