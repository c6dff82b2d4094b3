"""User-facing errors.

Every problem caused by the user's input (a bad image, a wrong checkpoint, an
unknown attribute, ...) is raised as a :class:`DiffeditError` whose message is a
single line naming the offending file or value. The CLI prints that line and
exits non-zero; it never shows a traceback for these.
"""


class DiffeditError(Exception):
    """An error the user can fix; ``str(err)`` is one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class InputError(DiffeditError):
    """A bad input file (image, latent file, list of paths)."""


class ModelError(DiffeditError):
    """A missing, corrupt or incompatible model / checkpoint."""


class NumericalError(DiffeditError):
    """A computation produced NaN or infinite values (reported per file)."""

    exit_code = 1


class InputWarning(UserWarning):
    """Something about an input the user should know (the CLI prints it as one ``warning:`` line)."""
