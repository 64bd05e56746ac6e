"""Windows' file locks, as vip meets them, on this POSIX machine: no `fcntl` (no flock) and an `msvcrt`
whose `locking` takes a real byte-range lock (POSIX's, through `fcntl.lockf`) from the handle's position.

POSIX byte-range locks belong to a process (Windows': to a handle), so a lock conflicts only with one
another process holds: the tests hold it in a child process (`hold_in_child`).
"""

from __future__ import annotations

import fcntl as _fcntl
import os
import subprocess
import sys
import types

LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4
calls: list[tuple[int, int]] = []  # (mode, position) of each `locking` call


def locking(handle: int, mode: int, nbytes: int) -> None:
    """msvcrt.locking: lock (or unlock) `nbytes` from the handle's position; OSError when another holds them.
    Windows locks through a read-only handle too (POSIX's exclusive lock needs one open for writing)."""
    position = os.lseek(handle, 0, os.SEEK_CUR)
    calls.append((mode, position))
    if mode == LK_UNLCK:
        _fcntl.lockf(handle, _fcntl.LOCK_UN, nbytes, 0, os.SEEK_CUR)
        return
    writable = _fcntl.fcntl(handle, _fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    try:
        _fcntl.lockf(handle, (_fcntl.LOCK_EX if writable else _fcntl.LOCK_SH) | _fcntl.LOCK_NB, nbytes, 0,
                     os.SEEK_CUR)
    except OSError as error:
        raise OSError(36, "Resource deadlock avoided") from error  # what msvcrt raises (EDEADLOCK)


def module() -> types.ModuleType:
    """This file's functions as a module named msvcrt."""
    fake = types.ModuleType("msvcrt")
    fake.LK_UNLCK, fake.LK_LOCK, fake.LK_NBLCK, fake.LK_RLCK, fake.LK_NBRLCK = (
        LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK)
    fake.locking = locking
    return fake


def install(monkeypatch) -> None:
    """Make this process's vip lock as on Windows: no flock, this `msvcrt`, folders locked through a file."""
    from vipcli import locks

    calls.clear()
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", module())
    monkeypatch.setattr(locks, "WINDOWS", True)


CHILD_SETUP = ("import sys; sys.path.insert(0, sys.argv[2]); import windows_locks; from vipcli import locks\n"
               "sys.modules['fcntl'] = None; sys.modules['msvcrt'] = windows_locks.module(); locks.WINDOWS = True\n")


def hold_in_child(code: str, *args) -> subprocess.Popen:
    """A child process that runs `code` as on Windows (after `CHILD_SETUP`; `sys.argv[3:]` are `args`),
    once it has printed its first line."""
    child = subprocess.Popen([sys.executable, "-c", CHILD_SETUP + code, "-", os.path.dirname(__file__),
                              *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.stdout.readline() == "held\n"
    return child
