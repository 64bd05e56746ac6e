"""The environment variables that turn something on or off (VIP_QUIET, VIP_DEBUG, VIP_CUDA_GRAPHS), and
VIP_PROGRESS_SECONDS: one reading each, and one check of them all before a command does anything.

Each flag takes the usual spellings, in any case: 1, true, yes, on; 0, false, no, off. Empty or unset is its
default. Any other value (`VIP_QUIET=maybe`, a typo such as `ture`, `VIP_PROGRESS_SECONDS=ten`) is refused by
`check_environment`: guessing would leave `VIP_DEBUG=ture` printing no traceback, or quiet a CI log that asked
for output, with nothing said; a warning would be one more line in the output the user was trying to quiet.
"""

from __future__ import annotations

import os

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
# every boolean variable vip reads, and what unset (or empty) means
FLAGS = {"VIP_QUIET": False, "VIP_DEBUG": False, "VIP_CUDA_GRAPHS": True}
PROGRESS_SECONDS = 10.0  # between progress lines off a terminal, unless VIP_PROGRESS_SECONDS says otherwise
UNREADABLE = "?"  # what `_parsed` and `_seconds` give for a value they cannot read (`check_environment` refuses it)


def _parsed(name: str, environ) -> bool | str | None:
    """True or False as `name` is set in `environ`, None when unset or empty, UNREADABLE when not a known
    spelling."""
    value = environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in TRUE:
        return True
    return False if value in FALSE else UNREADABLE


def env_flag(name: str, environ=None) -> bool:
    """Whether the boolean environment variable `name` (one of FLAGS) is on; its default when unset, empty
    or not a known spelling (which `check_environment` has refused before a command runs)."""
    value = _parsed(name, os.environ if environ is None else environ)
    return FLAGS[name] if value in (None, UNREADABLE) else value


def progress_seconds(environ=None) -> float:
    """VIP_PROGRESS_SECONDS: the seconds between progress lines when stderr is no terminal (0: every step); the
    default, PROGRESS_SECONDS, when unset, empty or not a number of 0 or more (which `check_environment` refused)."""
    value = _seconds((os.environ if environ is None else environ).get("VIP_PROGRESS_SECONDS", ""))
    return PROGRESS_SECONDS if value in (None, UNREADABLE) else value


def _seconds(text: str) -> float | str | None:
    """`text` as a number of seconds, 0 or more; None when empty, UNREADABLE when no such number."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return UNREADABLE
    return value if value >= 0 else UNREADABLE  # NaN fails the comparison too


def check_environment(environ=None) -> None:
    """A UsageError naming the first variable of FLAGS set to a value that is neither on nor off, or a
    VIP_PROGRESS_SECONDS that is no number of seconds."""
    from vipcli.errors import UsageError

    environ = os.environ if environ is None else environ
    for name in FLAGS:
        if _parsed(name, environ) == UNREADABLE:
            raise UsageError(f"{name}={environ[name].strip()!r} is neither on nor off",
                             "set it to 1, true, yes or on, or to 0, false, no or off, or unset it")
    if _seconds(environ.get("VIP_PROGRESS_SECONDS", "")) == UNREADABLE:
        raise UsageError(f"VIP_PROGRESS_SECONDS={environ['VIP_PROGRESS_SECONDS'].strip()!r} is not a number of seconds",
                         f"set it to 0 or more, such as 30, or unset it (the default is {PROGRESS_SECONDS:g})")
