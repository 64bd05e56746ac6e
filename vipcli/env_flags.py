"""The environment variables that turn something on or off (VIP_QUIET, VIP_DEBUG, VIP_CUDA_GRAPHS): one reading.

Each takes the usual spellings, in any case: 1, true, yes, on; 0, false, no, off. Empty or unset is its default.
Any other value (`VIP_QUIET=maybe`, a typo such as `ture`) is refused by `check_env_flags` before a command
does anything: guessing would leave `VIP_DEBUG=ture` printing no traceback, or quiet a CI log that asked for
output, with nothing said; a warning would be one more line in the output the user was trying to quiet.
"""

from __future__ import annotations

import os

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
# every boolean variable vip reads, and what unset (or empty) means
FLAGS = {"VIP_QUIET": False, "VIP_DEBUG": False, "VIP_CUDA_GRAPHS": True}


def _parsed(name: str, environ) -> bool | None:
    """True or False as `name` is set in `environ`, None when unset or empty, "?" when not a known spelling."""
    value = environ.get(name, "").strip().lower()
    if not value:
        return None
    if value in TRUE:
        return True
    return False if value in FALSE else "?"


def env_flag(name: str, environ=None) -> bool:
    """Whether the boolean environment variable `name` (one of FLAGS) is on; its default when unset, empty
    or not a known spelling (which `check_env_flags` has refused before a command runs)."""
    value = _parsed(name, os.environ if environ is None else environ)
    return FLAGS[name] if value is None or value == "?" else value


def check_env_flags(environ=None) -> None:
    """A UsageError naming the first variable of FLAGS set to a value that is neither on nor off."""
    from vipcli.errors import UsageError

    environ = os.environ if environ is None else environ
    for name in FLAGS:
        if _parsed(name, environ) == "?":
            raise UsageError(f"{name}={environ[name].strip()!r} is neither on nor off",
                             "set it to 1, true, yes or on, or to 0, false, no or off, or unset it")
