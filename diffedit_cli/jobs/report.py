"""Reporting a run: progress bars on stderr, one JSON line per output on stdout, per-file failures and the summary."""

from __future__ import annotations

import json
from typing import List, Optional, Tuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import opt, spell


class Reporter:
    """Progress bars on stderr, one JSON line per output on stdout, per-file failures."""

    def __init__(self, json_lines: bool = False, quiet: bool = False):
        self.console = Console(stderr=True, highlight=False)
        self.json_lines = json_lines
        self.quiet = quiet
        self.failures: List[Tuple[str, str]] = []
        self.done = 0
        self.skipped = 0
        self._progress = None
        self._items = None
        self._steps = None
        self.noun = "done"

    def __enter__(self):
        if not self.quiet:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        if exc[0] is not None and issubclass(exc[0], KeyboardInterrupt):
            self.console.print(spell(f"interrupted: {self._counts(self.noun)} (finished outputs are complete; "
                                     f"rerun with {opt('skip_existing')} to continue)"))
        return False

    def start(self, description: str, total: int, noun: Optional[str] = None) -> None:
        """A progress bar over ``total`` items; ``noun`` (e.g. "encoded") words the counts if interrupted."""
        self.noun = noun or self.noun
        if self._progress is not None:
            self._items = self._progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._items is not None:
            self._progress.advance(self._items, n)

    def advancing(self):
        """A callable(done, total) that advances the item bar (see :meth:`start`) by what is newly done."""
        reported = [0]

        def update(done: int, total: int) -> None:
            self.advance(done - reported[0])
            reported[0] = done
        return update

    def steps(self, description: str):
        """A callable(done, total) driving a transient DDIM-step bar."""
        if self._progress is None:
            return None
        task = self._progress.add_task(description, total=1)

        def update(done: int, total: int) -> None:
            self._progress.update(task, completed=done, total=total, visible=done < total)
        return update

    def ok(self, source: str, output: str, **info) -> None:
        self.done += 1
        if self.json_lines:
            print(json.dumps({"input": source, "output": output, "status": "ok", **info}), flush=True)

    def skip(self, source: str, output: str) -> None:
        self.skipped += 1
        if self.json_lines:
            print(json.dumps({"input": source, "output": output, "status": "skipped"}), flush=True)

    def fail(self, source: str, message: str) -> None:
        self.failures.append((source, message))
        message = spell(message)
        self.console.print(f"[red]error[/red]: {message}", markup=True, soft_wrap=True)
        if self.json_lines:
            print(json.dumps({"input": source, "status": "error", "error": message}), flush=True)

    def _counts(self, what: str) -> str:
        noun, _, rest = what.partition(" ")
        if self.done == 1 and noun in SINGULAR:  # "1 photo edited", not "1 photos edited"
            what = " ".join(filter(None, [SINGULAR[noun], rest]))
        parts = [f"{self.done} {what}"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (exist)")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        return ", ".join(parts)

    def summary(self, what: str) -> int:
        """Print the closing line; exit code 1 if anything failed."""
        self.console.print(self._counts(what))
        return 1 if self.failures else 0


SINGULAR = {"mixes": "mix", "frames": "frame", "samples": "sample", "faces": "face", "photos": "photo"}
