"""Ctrl-C and SIGTERM: stop the command wherever they arrive, even where Python cannot raise.

Inside `stop_signals_raise()` both signals raise in the main thread, as Ctrl-C always does:
`KeyboardInterrupt` for SIGINT and its subclass `Terminated` for SIGTERM (`kill`, `timeout`,
Slurm at a job's time limit), so every clean-up that runs for an interrupt runs for both.

Python cannot raise everywhere: an exception raised while a fork handler (starting decoding
workers) or a finalizer runs is printed as "Exception ignored in ..." and dropped, and the command
would carry on to the end and exit 0. So each signal is also remembered (and the swallowed
interrupt is not printed), and the long loops call `stop_if_received()` at safe points (after each
image, between chunks): a signal Python swallowed stops the command there, a moment later.
"""

from __future__ import annotations

import contextlib
import signal
import sys

_received: list[int] = []  # the signals that arrived inside the block, in order
_finished: list[bool] = []  # [True] once the command's work is done (`work_done`)


class Terminated(KeyboardInterrupt):
    """SIGTERM, stopped like Ctrl-C."""


def _raise_for(signum, frame) -> None:
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def stop_signals_raise():
    """Inside the block, SIGINT and SIGTERM raise (and are remembered until its end); the handlers are
    put back after.

    Outside the main thread (where handlers cannot be set) nothing changes.
    """
    _received.clear()
    _finished.clear()
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_about_interrupts(previous_hook)
    try:
        with _handlers_installed(_raise_for):
            yield
    finally:
        sys.unraisablehook = previous_hook
        _received.clear()  # outside the block (library use, tests) nothing is stopped
        _finished.clear()


@contextlib.contextmanager
def quiet_interrupts():
    """Inside the block, an interrupt Python has to drop (raised in a finalizer) is not printed."""
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_about_interrupts(previous_hook, always=True)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook


def _quiet_about_interrupts(hook, always: bool = False):
    """An unraisable-exception hook that drops the interrupts this module raised (they are remembered
    and stop the command at its next checkpoint; with `always`, any interrupt) and hands anything
    else to `hook`."""
    def quiet(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and (_received or always):
            return
        hook(unraisable)

    return quiet


@contextlib.contextmanager
def deferred():
    """Hold SIGINT and SIGTERM back inside the block, for steps that must not be parted (the two renames
    that swap a folder for its replacement); one that arrived is delivered as the block ends, to the
    handler that was there before (main thread only; elsewhere nothing changes)."""
    arrived: list[int] = []
    try:
        with _handlers_installed(lambda signum, frame: arrived.append(signum)):
            yield
    finally:
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)  # Python runs the handler now: an interrupt raises here


@contextlib.contextmanager
def _handlers_installed(handler):
    """SIGINT and SIGTERM handled by `handler` inside the block (main thread only), put back after;
    a signal the process was started with ignored is left ignored."""
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) in (signal.SIG_IGN, None):
                continue  # ignored by whoever started us (`cmd &` in a script, nohup), or not set from Python: kept
            previous[signum] = signal.signal(signum, handler)
    except (ValueError, AttributeError, OSError):  # not the main thread, or no such signal here
        for signum, put_back in previous.items():
            signal.signal(signum, put_back)
        yield
        return
    try:
        yield
    finally:
        for signum, put_back in previous.items():
            signal.signal(signum, put_back)


def received() -> int | None:
    """The first signal that arrived inside the block (None: none did)."""
    return _received[0] if _received else None


def terminated() -> bool:
    """Whether the command is stopping because of SIGTERM (rather than Ctrl-C)."""
    return signal.SIGTERM in _received


def stop_if_received() -> None:
    """Raise the interrupt of a signal that arrived but was swallowed where Python could not raise it.

    Cheap (a list check): call it from loops at points where stopping leaves nothing half-written.
    """
    if _received:
        raise Terminated() if terminated() else KeyboardInterrupt()


def work_done() -> None:
    """Mark the command's work as done: an interrupt from here on stops nothing, and its message says
    so (rather than that the command was stopped part-way)."""
    _finished[:] = [True]


def work_was_done() -> bool:
    """Whether `work_done` was called inside the current `stop_signals_raise` block."""
    return bool(_finished)


def raised_without_signal() -> bool:
    """Whether a KeyboardInterrupt caught now cannot have come from Ctrl-C or SIGTERM, so code raised it itself
    (a plugin's module, say): in a thread other than the main one (Python delivers signals to the main thread
    only), or in the main thread while vip's handler watches SIGINT (inside `stop_signals_raise`) and no signal
    has arrived. Where no handler of vip's watches (library use, SIGINT ignored by whoever started vip), False:
    the interrupt may be real."""
    import threading

    if _received:
        return False
    return threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is _raise_for
