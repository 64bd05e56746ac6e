"""OS locks: one writer per output, and telling a live writer from one that was killed.

`output_lock` holds `FILE.lock` beside a file being written (`vip predict --out`) or a lock inside a
folder (`vip benchmark`'s results folder); `lock_holder` tells, without taking it, whether a process
holds one; `lock_folder` and `folder_abandoned` do the same for a staging folder being written. Every
lock is one the OS drops when its process ends however it ends, so a lock file a killed process left
blocks nothing: flock on POSIX; on Windows (no flock) a byte-range lock (`msvcrt.locking`) of one byte
far past the file's text, which stays readable to other processes, and a folder's lock is a file beside
it (Windows opens no folder). A forked child (a decoding worker) closes the lock handles it inherits
(`hold_lock`), so that a worker outliving its killed parent does not keep the parent's locks.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vipcli.errors import VipError

# --- lock handles a forked child does not keep -----------------------------------------------------------


_held_locks: set[int] = set()  # the handles of the OS locks this process holds (see `hold_lock`)


def _close_inherited_locks() -> None:
    """In a forked child (a decoding worker), close the lock handles it inherited from its parent.

    flock belongs to the open file, which a fork shares: a worker that outlives its killed parent (a
    DataLoader worker notices only some seconds later) would hold its parent's locks. Closing the
    child's copy leaves the parent's lock as it is.
    """
    for handle in _held_locks:
        with contextlib.suppress(OSError):
            os.close(handle)
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def hold_lock(handle: int) -> None:
    """Count the locked `handle` as held by this process alone: a forked child closes its copy."""
    _held_locks.add(handle)


def drop_lock(handle: int) -> None:
    """Forget a handle `hold_lock` counted (call it before closing the handle)."""
    _held_locks.discard(handle)


def try_flock(handle: int, shared: bool = False) -> bool | None:
    """Take flock's exclusive (or `shared`) lock of an open file or folder without waiting: True, False when
    another open file holds a conflicting one, None where there is no flock (Windows, some network file systems)."""
    try:
        import fcntl

        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except (ImportError, OSError):
        return None
    return True


WINDOWS = os.name == "nt"  # folders cannot be opened, so not locked: their lock is a file beside them
BYTE_LOCK_AT = 1 << 30  # the byte Windows' lock takes: past any text, which Windows' locks keep others from reading
_byte_locked: set[int] = set()  # the handles holding a Windows byte-range lock (released before they close)


def try_lock(handle: int) -> bool | None:
    """Take this OS's exclusive lock of an open file without waiting: True, False when another process holds
    it, None where there is no lock to take. flock where there is flock (POSIX); else Windows' byte-range
    lock of the byte at `BYTE_LOCK_AT` (`msvcrt.locking`); release it with `unlock` before closing."""
    taken = try_flock(handle)
    if taken is not None:
        return taken
    try:
        import msvcrt
    except ImportError:  # a file system without locks: nothing to take, nothing to wait for
        return None
    try:
        os.lseek(handle, BYTE_LOCK_AT, os.SEEK_SET)  # msvcrt.locking locks from the handle's position
        msvcrt.locking(handle, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    _byte_locked.add(handle)
    return True


def unlock(handle: int) -> None:
    """Release `try_lock`'s lock of `handle` where closing it is not enough: Windows drops a byte-range lock
    of a closed handle only some time later (its docs ask for an explicit unlock). flock needs nothing."""
    if handle not in _byte_locked:
        return
    _byte_locked.discard(handle)
    import msvcrt

    with contextlib.suppress(OSError):
        os.lseek(handle, BYTE_LOCK_AT, os.SEEK_SET)
        msvcrt.locking(handle, msvcrt.LK_UNLCK, 1)


def _probe(handle: int) -> bool | None:
    """Whether another process holds the lock of the open file `handle`, tested without keeping it: None
    where there are no locks. flock's shared lock, which refuses only a writer (exclusive); Windows' lock
    is exclusive alone, taken and released at once (a writer starting then retries: `_lock_soon`)."""
    taken = try_flock(handle, shared=True)
    if taken is None:
        taken = try_lock(handle)
        if taken:
            unlock(handle)
    return None if taken is None else not taken


# --- one writer per file ------------------------------------------------------------------------


def lock_file(out: Path) -> Path:
    """The lock file beside `out` that the process writing `out` holds."""
    out = Path(out)
    return out.with_name(f"{out.name}.lock")


@contextlib.contextmanager
def output_lock(out: Path, lock: Path | None = None):
    """Hold the lock of `out` for the block; while another process holds it, one VipError naming it.

    The lock is an OS lock on `lock` (default `FILE.lock` beside `out`; flock, a byte-range lock where
    there is no flock), which the OS drops when its process ends however it ends (Ctrl-C, a kill, a
    crash): a lock file left by a killed process blocks nothing. The file is removed on release.
    """
    lock = lock_file(out) if lock is None else Path(lock)
    handle = _take_lock(Path(out), lock)
    hold_lock(handle)  # a decoding worker forked meanwhile does not keep it when we are killed
    try:
        yield lock
    finally:
        drop_lock(handle)
        _release_lock(lock, handle)


def folder_lock(out: Path) -> contextlib.ExitStack:
    """Hold `.NAME.lock` beside the folder `out` (its missing parents made, and removed again if still empty) for
    the block: the lock of a folder a command writes whole, as `vip data sort` and `vip demo` do, so that a second
    command into the same folder refuses at once instead of replacing the first one's folder unseen."""
    from vipcli.atomic import made_folder

    out = Path(out)
    stack = contextlib.ExitStack()
    stack.enter_context(made_folder(out.parent))
    stack.enter_context(output_lock(out, lock=out.parent / f".{out.name}.lock"))
    return stack


def lock_holder(lock: Path) -> str | None:
    """Whether a process holds `lock` now (see `output_lock`), without taking it: None when none does (or
    the file is missing), else " (pid 123 on host h)", or "" when the holder cannot be read."""
    try:
        handle = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _holder(handle) if _probe(handle) else None  # None also where there are no locks
    finally:
        os.close(handle)  # (which drops flock's shared lock, if taken)


def _take_lock(out: Path, lock: Path) -> int:
    """Open and lock `lock` (retrying when its holder removed it as we opened it); write our pid in it. Where
    the file system has no lock to take, one warning says that `out` is not guarded."""
    import socket

    for _ in range(100):
        handle = _open_lock_file(lock)
        taken = _lock_soon(handle)
        if taken is None:
            _warn_unlocked(out)
        elif not taken:
            holder = _holder(handle)
            os.close(handle)  # (not locked: nothing to unlock)
            raise VipError(f"{out} is being written by another vip process{holder}",
                           "wait for it to finish, or pass another --out")
        if _same_file(handle, lock):
            if os.fstat(handle).st_size and not _holder(handle):  # someone's own file of that name
                unlock(handle)
                os.close(handle)
                raise VipError(f"{lock} exists and is not a vip lock file", "move it away, or pass another --out")
            with contextlib.suppress(OSError):  # read-only: a lock file left by another user's killed run
                os.ftruncate(handle, 0)
                os.lseek(handle, 0, os.SEEK_SET)  # (reading the holder moved the offset)
                os.write(handle, f"{os.getpid()} {socket.gethostname()}\n".encode())
                os.fsync(handle)  # other nodes read it under torchrun (distributed.agree_with_rank_zero)
            return handle
        unlock(handle)
        os.close(handle)  # removed by its last holder after we opened it: lock the new one
    raise VipError(f"cannot lock {lock}: it keeps being replaced", "pass another --out")


def _open_lock_file(lock: Path) -> int:
    """`lock` opened to be locked: created if missing; read-only when it is another user's (left by a
    killed run: the OS lock works on it all the same)."""
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        if lock.is_file():
            with contextlib.suppress(OSError):
                return os.open(lock, os.O_RDONLY)
        error = PermissionError(13, "permission denied")
    except OSError as other:
        error = other
    from vipcli.preflight import describe_os_error

    raise VipError(f"cannot create the lock file {lock} ({describe_os_error(error)})",
                   "make its folder writable or choose another --out")


def _lock_soon(handle: int, tries: int = 5, pause_s: float = 0.02) -> bool | None:
    """`try_lock`, tried a few times over a tenth of a second: `lock_holder` (a `vip report` asking whether a
    sweep runs) holds a shared lock for an instant, which is not a writer to refuse for."""
    import time

    for attempt in range(tries):
        taken = try_lock(handle)
        if taken is not False:
            return taken
        if attempt + 1 < tries:
            time.sleep(pause_s)
    return False


_unlocked_warned: set[Path] = set()


def _warn_unlocked(out: Path) -> None:
    """Say once per output that it is written unguarded: a second vip writing it at once is not refused."""
    if out in _unlocked_warned:
        return
    _unlocked_warned.add(out)
    from rich.markup import escape

    from vipcli import console

    console.warn(escape(f"{out}: this system or file system has no file locks, so a second vip writing it at the "
                        "same time would not be stopped (run one at a time)"))


def _holder(handle: int) -> str:
    """" (pid 123 on host h)" from a lock file's text, or "" when it cannot be read."""
    try:
        os.lseek(handle, 0, os.SEEK_SET)
        pid, _, host = os.read(handle, 256).decode("utf-8", "replace").strip("\0 \n").partition(" ")
    except OSError:
        return ""
    return f" (pid {pid} on host {host})" if pid.isdigit() and host else ""


def _same_file(handle: int, path: Path) -> bool:
    """True if the open `handle` is still the file at `path`."""
    try:
        mine, there = os.fstat(handle), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _release_lock(lock: Path, handle: int) -> None:
    """Remove the lock file while still holding it (no one can lock it in between), then close it."""
    if os.name == "posix":
        with contextlib.suppress(OSError):
            os.unlink(lock)
    unlock(handle)
    os.close(handle)
    if os.name != "posix":  # an open file cannot be removed there
        with contextlib.suppress(OSError):
            os.unlink(lock)


# --- a folder being written, told from one a killed writer left -------------------------------------------


def folder_lock_file(folder: Path) -> Path:
    """Where a folder's lock is a file (Windows, which opens no folder): `FOLDER.lock` beside it (a file inside
    would keep the folder from being renamed into place while open)."""
    folder = Path(folder)
    return folder.with_name(f"{folder.name}.lock")


def lock_folder(folder: Path) -> int | None:
    """Lock `folder`, which this process has just made and writes, until `unlock_folder`, so that a later
    writer can tell it from one a killed writer left (`folder_abandoned`): the folder's own flock on POSIX,
    the lock of `FOLDER.lock` beside it on Windows. None where nothing could be locked."""
    try:
        handle = os.open(folder_lock_file(folder), os.O_RDWR | os.O_CREAT, 0o666) if WINDOWS else os.open(
            folder, os.O_RDONLY)
    except OSError:
        return None
    if not try_lock(handle):
        os.close(handle)
        return None
    hold_lock(handle)
    return handle


def unlock_folder(folder: Path, handle: int | None) -> None:
    """Release `lock_folder`'s lock of `folder` (None: nothing was locked), removing its lock file if any."""
    if handle is None:
        return
    drop_lock(handle)
    unlock(handle)
    os.close(handle)
    remove_folder_lock_file(folder)


def folder_abandoned(folder: Path) -> bool:
    """True when `folder`, locked once by `lock_folder`, is held by no process now: its writer was killed.
    False while a writer holds it, and where that cannot be told (no lock file, a folder that cannot be
    opened, no locks on this file system)."""
    try:
        handle = os.open(folder_lock_file(folder), os.O_RDONLY) if WINDOWS else os.open(folder, os.O_RDONLY)
    except OSError:  # (on Windows: a folder made by a vip that did not lock it, or by a writer not yet locking)
        return False
    try:
        return _probe(handle) is False
    finally:
        os.close(handle)


def remove_folder_lock_file(folder: Path) -> None:
    """Remove the lock file of `folder`, abandoned or unlocked (Windows; POSIX locks the folder itself)."""
    if WINDOWS:
        with contextlib.suppress(OSError):
            os.unlink(folder_lock_file(folder))
