"""Where output goes: results on stdout, progress and messages on stderr."""

from __future__ import annotations

import contextlib
import re
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


# C0/C1 control characters, DEL, line/paragraph separators and bidirectional overrides: a file name
# holding one could move the cursor, recolour the terminal or forge a line of output.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(value) -> str:
    """`str(value)` with control characters escaped (`\\n`, `\\x1b`, `\\u202e`): safe to print as one line.

    Use it for anything that comes from outside vip (file and folder names, server text) before printing.
    """
    return _UNPRINTABLE.sub(_escape_char, str(value))


def stdout() -> Console:
    """A console on the current sys.stdout (created per call so captured streams work)."""
    return Console(file=sys.stdout, soft_wrap=True, highlight=False)


def stderr() -> Console:
    """A console on the current sys.stderr, for progress, warnings and errors."""
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    """Print one warning line on stderr (rich markup allowed; control characters are escaped)."""
    stderr().print(f"[yellow]warning:[/yellow] {printable(message)}", markup=True)


def warn_skipped(failures: dict) -> None:
    """One warning line per unreadable file that was skipped, sorted by path."""
    from rich.markup import escape

    for path, reason in sorted(failures.items()):
        warn(escape(f"skipped {printable(path)}: {reason}"))


def info(message: str) -> None:
    """Print one informational line on stderr (control characters escaped)."""
    stderr().print(printable(message), markup=False)


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
