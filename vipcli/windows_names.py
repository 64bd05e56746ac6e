"""The file and folder names Windows takes none of: a character it forbids, a trailing space or dot, which it
drops, and the names of its devices (`CON`, `AUX`, `NUL`, `COM1`, `LPT1`: `aux.yaml` opens the device AUX there,
whatever its extension or case)."""

from __future__ import annotations

FORBIDDEN = '<>:"|?*'
DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                     *(f"{kind}{n}" for kind in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³"))})


def device_name(name: str) -> str | None:
    """The Windows device that a file or folder named `name` would stand for there (`aux.yaml`, `Con`, `nul.tar.gz`,
    `com1 .txt`: "AUX", "CON", "NUL", "COM1"), or None: the part before the first dot, spaces dropped, in any case."""
    stem = name.split(".")[0].strip().upper()
    return stem if stem in DEVICES else None


def not_a_windows_name(name: str) -> str | None:
    """Why Windows takes no file or folder named `name` (a character it forbids, a trailing space or dot, which it
    drops, a device name such as `CON`), or None."""
    forbidden = "".join(dict.fromkeys(c for c in name if c in FORBIDDEN))
    if forbidden:
        return f"it holds {forbidden}"
    if name.endswith((" ", ".")):
        return "it ends in a space or a dot"
    if device_name(name):
        return "a device name"
    return None
