"""What a plugin's module prints while it is imported: held back, then passed on or left out.

A module that runs an argparse parser on import prints its usage and `error: unrecognized arguments`
before vip's own `error:` line says which plugin failed; one that prints a banner puts it into
`vip methods list --json`. While a plugin is imported, what the importing thread writes to sys.stdout
and sys.stderr is held: passed on unchanged to stderr once the import succeeds (a plugin's warnings
still reach the user, after the import instead of during it; stdout carries vip's results, which a
banner would corrupt), and left out when the import fails (vip's one line names the plugin and the reason; the hint says how many lines were left
out and that VIP_DEBUG=1 shows them). Under VIP_DEBUG=1 nothing is held.

Only Python-level writes are held: a C library writing to the file descriptor itself is not, on purpose.
Holding file descriptors 1 and 2 (os.dup2 onto a temporary file) would catch every thread's and every
process's writes, not the import's alone: a library that aborts during the import would take its last
message with it (the restoring `finally` never runs), a worker process the module forks would write
into the discarded file for the rest of its life, a progress bar another thread draws would be
swallowed, and a C library's buffered stdout may reach the descriptor only after it is put back. Other
threads' writes pass at once, and a stream the plugin keeps (a logging handler made at import)
writes through once the import is over.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from vipcli.env_flags import env_flag


class _HeldStream:
    """A stand-in for sys.stdout or sys.stderr: the owning thread's writes are appended to `held` (shared by
    both streams, so their order is kept) while `holding`; everything else (other threads, later writes,
    every other attribute) goes to the real stream."""

    def __init__(self, target, held: list[str]):
        self.target, self.held, self.holding = target, held, True
        self.owner = threading.get_ident()

    def write(self, text: str) -> int:
        """Keep `text` while holding (the importing thread only), else write it to the real stream."""
        if self.holding and threading.get_ident() == self.owner:
            self.held.append(text)
            return len(text)
        return self.target.write(text)

    def flush(self) -> None:
        """Flush the real stream (nothing to flush while holding)."""
        if not self.holding:
            self.target.flush()

    def __getattr__(self, name):
        return getattr(self.target, name)


class ImportOutput:
    """What a plugin printed while imported; `left_out` is the text of a failed import that was not shown."""

    def __init__(self):
        self.left_out = ""

    def hint(self) -> str:
        """"; it printed N line(s) while importing, left out here: VIP_DEBUG=1 shows them", or "" if none."""
        lines = len([line for line in self.left_out.splitlines() if line.strip()])
        if not lines:
            return ""
        return f"; it printed {lines} line{'s' if lines != 1 else ''} while importing, left out here: VIP_DEBUG=1 shows them"


@contextlib.contextmanager
def held_import_output():
    """Hold what the importing thread prints inside the block: passed on to stderr if the block ends normally,
    left out (kept in the yielded `ImportOutput.left_out`) if it raises. Nothing is held under VIP_DEBUG=1."""
    output = ImportOutput()
    if env_flag("VIP_DEBUG"):
        yield output
        return
    held: list[str] = []
    streams = {"stdout": _HeldStream(sys.stdout, held), "stderr": _HeldStream(sys.stderr, held)}
    sys.stdout, sys.stderr = streams["stdout"], streams["stderr"]
    passed = False
    try:
        yield output
        passed = True
    finally:
        for name, stream in streams.items():
            stream.holding = False
            if getattr(sys, name) is stream:  # put back unless the plugin replaced it (its wrapper writes through)
                setattr(sys, name, stream.target)
        text = "".join(held)
        if passed and text:
            streams["stderr"].target.write(text)
            streams["stderr"].target.flush()
        elif not passed:
            output.left_out = text
