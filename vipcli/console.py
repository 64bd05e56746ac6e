"""Where output goes: results on stdout, progress and messages on stderr."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def stdout() -> Console:
    """A console on the current sys.stdout (created per call so captured streams work)."""
    return Console(file=sys.stdout, soft_wrap=True, highlight=False)


def stderr() -> Console:
    """A console on the current sys.stderr, for progress, warnings and errors."""
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    """Print one warning line on stderr."""
    stderr().print(f"[yellow]warning:[/yellow] {message}", markup=True)


def warn_skipped(failures: dict) -> None:
    """One warning line per unreadable file that was skipped, sorted by path."""
    for path, reason in sorted(failures.items()):
        warn(f"skipped {path}: {reason}")


def info(message: str) -> None:
    """Print one informational line on stderr."""
    stderr().print(message, markup=False)


def progress_bar() -> Progress:
    """A rich progress bar on stderr; hidden when stderr is not a terminal."""
    console = stderr()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@contextlib.contextmanager
def task(progress: Progress | None, description: str, total: int):
    """Yield an `advance(n)` callable for one task of `progress` (a no-op without one)."""
    if progress is None:
        yield lambda n=1: None
        return
    task_id = progress.add_task(description, total=total)
    try:
        yield lambda n=1: progress.advance(task_id, n)
    finally:
        progress.remove_task(task_id)
