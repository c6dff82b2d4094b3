"""Reporting a run: progress bars on stderr, one JSON line per output on stdout, per-file failures and the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import opt, spell
from ..io.outputs import OutputPlan
from ..io.pretrained import sha256_file


class Reporter:
    """Progress bars on stderr, one JSON line per output on stdout, per-file failures; with ``manifest``, a JSON-lines
    record of every input (see :meth:`open_manifest`)."""

    def __init__(self, json_lines: bool = False, quiet: bool = False):
        self.console = Console(stderr=True, highlight=False)
        self.json_lines = json_lines
        self.quiet = quiet
        self.manifest: Optional[Path] = None
        self.context: Dict[str, object] = {}  # added to every manifest line (model fingerprint, shard)
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

    def open_manifest(self, path: Path, resume: bool = False, overwrite: bool = False) -> Path:
        """Record every input of the run in ``path`` (JSON lines: input, output, status, error, sha256 of the output,
        and :attr:`context`). An existing manifest is refused before any work unless the run resumes
        (``resume``: lines are appended) or ``overwrite`` (it is replaced)."""
        path = OutputPlan((), overwrite=resume or overwrite).claim(Path(path))  # the planner every writer uses
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if resume else "w", encoding="utf-8"):
            pass
        self.manifest = path
        return path

    def _record(self, line: dict) -> None:
        if self.json_lines:
            print(json.dumps(line), flush=True)
        if self.manifest is not None:
            output = line.get("output")
            if output and line["status"] != "error" and Path(output).is_file():
                line = {**line, "sha256": sha256_file(Path(output))}
            with open(self.manifest, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({**line, **self.context}) + "\n")

    def ok(self, source: str, output: str, **info) -> None:
        self.done += 1
        self._record({"input": source, "output": output, "status": "ok", **info})

    def skip(self, source: str, output: str) -> None:
        self.skipped += 1
        self._record({"input": source, "output": output, "status": "skipped"})

    def fail(self, source: str, message: str) -> None:
        self.failures.append((source, message))
        message = spell(message)
        self.console.print(f"[red]error[/red]: {message}", markup=True, soft_wrap=True)
        self._record({"input": source, "status": "error", "error": message})

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
