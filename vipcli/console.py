"""Where output goes: results on stdout, progress and messages on stderr."""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


# C0/C1 control characters, DEL, line/paragraph separators and bidirectional overrides: a file name
# holding one could move the cursor, recolour the terminal or forge a line of output.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# the bytes of a file name that are not UTF-8 (a Latin-1 name from an old archive), as Python holds them
_UNDECODED = re.compile("[\udc80-\udcff]")


def _escape_char(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(value) -> str:
    """`str(value)` with control characters escaped (`\\n`, `\\x1b`, `\\u202e`): safe to print as one line.
    A file name's bytes that are not UTF-8 are shown as `\\xe9` (see `undecoded_escaped`).

    Use it for anything that comes from outside vip (file and folder names, server text) before printing.
    """
    return _UNPRINTABLE.sub(_escape_char, undecoded_escaped(str(value)))


def undecoded_escaped(text: str) -> str:
    """`text` with the bytes of a file name that are not UTF-8 (which Python holds as lone surrogates,
    `caf\\udce9`) written as `\\xe9`: text any UTF-8 file or terminal takes, showing the byte."""
    return _UNDECODED.sub(lambda match: f"\\x{ord(match.group()) - 0xDC00:02x}", text)


def escape_unencodable_output(stream=None) -> None:
    """Let the standard output (or `stream`) write a character its encoding has not as `\\u2265`, as Python's
    stderr does, instead of raising UnicodeEncodeError midway through a command's output.

    Windows writes a redirected or piped stdout (`vip symptoms show P > p.txt`, `| more`) in the ANSI code
    page (cp1252 and the like), strictly: a symptom's `≥`, a class named in another script, stopped the
    command there with "unexpected UnicodeEncodeError ... this is a bug in vip". A UTF-8 stream is left as it is.
    """
    stream = sys.stdout if stream is None else stream
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
    narrow = not encoding.startswith("utf")
    if narrow and getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="backslashreplace")


def stdout() -> Console:
    """A console on the current sys.stdout (created per call so captured streams work)."""
    return Console(file=sys.stdout, soft_wrap=True, highlight=False, force_jupyter=False)


def stderr() -> Console:
    """A console on the current sys.stderr, for progress, warnings and errors.

    In a Jupyter notebook too (`force_jupyter=False`): rich would otherwise send every line to the notebook's
    display, past sys.stderr, where `contextlib.redirect_stderr` cannot silence or capture it.
    """
    return Console(file=sys.stderr, soft_wrap=True, highlight=False, force_jupyter=False)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`noun` for a count of one, else its plural (`many`, or `noun` + "s"): "1 image", "2 images"."""
    return noun if count == 1 else (many or noun + "s")


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless one: "1 warning", "0 warnings"."""
    return f"{count} {plural(count, noun)}"


def first_few(items, shown: int) -> str:
    """"a, b, c" or "a, b, c and 4 more": the first `shown` of `items` (strings), then how many are not named."""
    items = list(items)
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


_warned_here: contextvars.ContextVar[set | None] = contextvars.ContextVar("vip_warned_here", default=None)


@contextlib.contextmanager
def each_warning_once():
    """Inside this block, a warning already printed in it is not printed again.

    For commands that run the same steps several times in one process (`vip benchmark --speed` loads
    the data and the backbone once per timed run): the user reads each warning once, not once a run.
    """
    token = _warned_here.set(set())
    try:
        yield
    finally:
        _warned_here.reset(token)


_wording: contextvars.ContextVar = contextvars.ContextVar("vip_wording", default=None)


@contextlib.contextmanager
def wording(rewrite):
    """Inside this block, warnings are worded by `rewrite(text) -> text` before they are printed or kept.

    `vipcli.api` uses it so that a Python caller reads `shots=1000: class 'melanoma' has only 64 ...`
    where the command says `--shots 1000: ...`: one wording for stderr and for the warnings a result keeps.
    """
    token = _wording.set(rewrite)
    try:
        yield
    finally:
        _wording.reset(token)


def worded(message: str) -> str:
    """`message` as the caller of this block words it (see `wording`); unchanged outside one."""
    rewrite = _wording.get()
    return rewrite(message) if rewrite is not None else message


_kept: contextvars.ContextVar[tuple] = contextvars.ContextVar("vip_kept_warnings", default=())


@contextlib.contextmanager
def keeping_warnings():
    """Inside this block, every warning printed is also kept, as plain text, in the list this yields.

    `vip train` and `vip benchmark` return them on their results (`TrainResult.warnings`,
    `BenchmarkResult.warnings`, `--json`'s "warnings"): what stderr said, for a caller that reads no
    stderr. Blocks nest; a warning is kept by each block it is printed in.
    """
    kept: list[str] = []
    token = _kept.set((*_kept.get(), kept))
    try:
        yield kept
    finally:
        _kept.reset(token)


def warn(message: str) -> None:
    """Print one warning line on stderr (rich markup allowed; control characters are escaped).

    Text vip does not write itself (a plugin's messages and exceptions, file names) must be passed
    through `rich.markup.escape` first, or `pip install 'pkg[extra]'` loses its `[extra]`.
    """
    message = worded(message)
    seen = _warned_here.get()
    if seen is not None:
        if message in seen:
            return
        seen.add(message)
    line = printable(message)
    stderr().print(f"[yellow]warning:[/yellow] {line}", markup=True)
    if _kept.get():
        from rich.text import Text

        plain = Text.from_markup(line).plain
        for kept in _kept.get():
            kept.append(plain)


def warn_skipped(failures: dict, root=None) -> None:
    """One warning line per unreadable file that was skipped, sorted by path. A file under the data folder
    `root` (as the run was given it) is named relative to it, the folder named after it, as every warning
    about a data folder's files names them: `skipped test/nevus/x.jpg in data: <reason>`."""
    from rich.markup import escape

    from vipcli.data import named_in_data

    for path, reason in sorted(failures.items()):
        warn(escape(f"skipped {printable(named_in_data(path, root))}: {reason}"))


_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("vip_quiet", default=False)


@contextlib.contextmanager
def quiet(on: bool = True):
    """Inside this block (when `on`), progress and informational lines are not printed; warnings and
    errors are. What `vip -q` / `--quiet` runs a command in."""
    token = _quiet.set(_quiet.get() or on)
    try:
        yield
    finally:
        _quiet.reset(token)


def is_quiet() -> bool:
    """Whether progress and informational lines are dropped: inside `quiet()`, or VIP_QUIET on (1, true,
    yes or on: `vipcli.env_flags`)."""
    from vipcli.env_flags import env_flag

    return _quiet.get() or env_flag("VIP_QUIET")


def info(message: str) -> None:
    """Print one informational line on stderr (control characters escaped); nothing when `is_quiet()`."""
    if is_quiet():
        return
    stderr().print(printable(message), markup=False)


def progress_bar():
    """A rich progress bar on stderr when it is a terminal; otherwise a log line every few seconds;
    under `is_quiet()`, a progress that prints nothing.

    Jobs under nohup, Slurm or CI have no terminal: they get `LogProgress` lines with done/total,
    the elapsed time and an estimate of what is left, so a long step is never silent.
    """
    if is_quiet():
        return LogProgress(interval=float("inf"))
    console = stderr()
    if not console.is_terminal:
        return LogProgress()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


class LogProgress:
    """The part of rich's Progress that vip uses, printing plain lines at most every `interval` seconds."""

    def __init__(self, interval: float | None = None, clock=None):
        import time

        from vipcli.env_flags import progress_seconds

        self.interval = interval if interval is not None else progress_seconds()
        self.clock = clock or time.monotonic
        self.tasks: dict[int, dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.tasks.clear()

    def add_task(self, description: str, total: int) -> int:
        """Start a task; returns its id."""
        task_id = len(self.tasks) + 1 + max(self.tasks, default=0)
        now = self.clock()
        self.tasks[task_id] = {"description": description, "total": total, "done": 0, "started": now, "shown": now}
        return task_id

    def advance(self, task_id: int, n: int = 1) -> None:
        """Count `n` more done; print a line when `interval` seconds passed since the last one."""
        task = self.tasks.get(task_id)
        if task is None:
            return
        task["done"] += n
        now = self.clock()
        if now - task["shown"] >= self.interval:
            task["shown"], task["shown_done"] = now, task["done"]
            info(self.line(task, now))

    def remove_task(self, task_id: int) -> None:
        """Finish a task (a last line if it printed any and moved on since)."""
        task = self.tasks.pop(task_id, None)
        if task is not None and task["shown"] != task["started"] and task.get("shown_done") != task["done"]:
            info(self.line(task, self.clock()))

    @staticmethod
    def line(task: dict, now: float) -> str:
        """'encoding images: 120/3249 (3.7%), 12 s elapsed, about 310 s left'."""
        done, total, elapsed = task["done"], task["total"], now - task["started"]
        share = f" ({100 * done / total:.1f}%)" if total else ""
        left = f", about {elapsed * (total - done) / done:.0f} s left" if done and total and done < total else ""
        return f"{task['description']}: {done}/{total}{share}, {elapsed:.0f} s elapsed{left}"


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
