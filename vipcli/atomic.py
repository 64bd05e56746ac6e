"""Writing files and folders so that nothing is ever half-written: a temp name, then a rename.

What is renamed into place was first flushed to the disk (fsync of each file, then of the folder that
holds the new name), so a power cut or a crashed node after a command finished does not leave a run,
a results file or a report empty under its final name. The feature cache's entries skip this
(`durable=False`): each carries a sha256 checked on every read, and a bad one is encoded again.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from vipcli import stop_signals
from vipcli import locks


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_file_mode(path: str | Path, mask: int | None = None) -> None:
    """Give file `path` the permissions a plain `open()` gives (0666 less the umask `mask`, default the
    process's), where it has others: a file already so is left alone, its status-change time unchanged."""
    wanted = 0o666 & ~(current_umask() if mask is None else mask)
    if stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode) != wanted:
        os.chmod(path, wanted)


WINDOWS = os.name == "nt"


def sync_to_disk(path: str | Path) -> None:
    """fsync a file, or a folder (which makes the names renamed into it last); a file system or an OS
    that cannot sync a folder (Windows, some network mounts) is let be."""
    # Windows flushes a file only through a handle open for writing (FlushFileBuffers): read-only, every
    # fsync failed there, and with it every write of a run, a results file or a report
    flags = os.O_RDWR if WINDOWS and not os.path.isdir(path) else os.O_RDONLY
    try:
        handle = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError:  # a folder cannot be opened on Windows
        return
    try:
        os.fsync(handle)
    except OSError:
        if not os.path.isdir(path):  # a file's bytes that cannot reach the disk: the write failed
            raise  # (a folder's fsync is not supported on every file system: let be)
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", durable: bool = True):
    """Yield a temp path beside `path`; when the block succeeds it replaces `path` in one rename.

    The file gets the permissions a plain `open()` would give (0666 less the umask). On failure the
    temp file is removed and `path` is left as it was. `durable`: the file's bytes, then the new name,
    are synced to the disk (see the module's docstring).
    """
    path = Path(path)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(temp)
        os.chmod(temp, 0o666 & ~current_umask())
        if durable:
            sync_to_disk(temp)
        os.replace(temp, path)
        if durable:
            sync_to_disk(path.parent)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def safetensors_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    """`tensors` (name -> CPU tensor) as the bytes of a safetensors file, the same bytes for the same content.

    Write these with Python rather than calling `safetensors.torch.save_file`: its writer reports a
    full disk or a removed folder as a SafetensorError, which is no OSError and names no errno.
    """
    from safetensors.torch import save

    return canonical_safetensors(save(tensors, metadata=metadata))


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header keys sorted, so equal content gives equal bytes.

    safetensors writes `__metadata__` in hash-map order, which changes from process to process
    (safetensors issue #584): the same model trained twice got two file digests.
    """
    size = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # tensor data must start 8-byte aligned
    return len(header).to_bytes(8, "little") + header + blob[8 + size :]


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to `path` atomically."""
    with atomic_path(path) as temp:
        if isinstance(data, bytes):
            temp.write_bytes(data)
        else:
            with open(temp, "w", encoding="utf-8", newline="") as stream:
                stream.write(data)


@contextlib.contextmanager
def made_folder(folder: str | Path):
    """Make `folder` (and its missing parents) for the block; those it made that are still empty
    afterwards are removed again, innermost first, so a command that stops before writing leaves
    no empty folder behind."""
    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        for path in created:  # only empty ones: something was written into the others
            try:
                path.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def atomic_folder(path: str | Path, durable: bool = True):
    """Yield a staging folder beside `path`; on success it becomes `path` (replacing an old one).

    The folder gets the permissions a plain `mkdir` would give (0777 less the umask). `durable`: each
    file is synced to the disk before the rename (False: only the rename is, for a folder of thousands of
    copies that a slow or network disk would sync one by one for minutes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    # locked while we write it (an OS lock, dropped however the process ends): a later writer tells it from
    # one a killed writer left
    held = locks.lock_folder(staging)
    try:
        _remove_abandoned_staging(path, staging)
        yield staging
        mask = current_umask()
        for folder, subfolders, files in os.walk(staging):  # some writers (safetensors) make 0600 files
            os.chmod(folder, 0o777 & ~mask)
            for name in files:
                if not os.path.islink(os.path.join(folder, name)):  # chmod would change the link's target
                    plain_file_mode(os.path.join(folder, name), mask)
                    if durable:
                        sync_to_disk(os.path.join(folder, name))
            sync_to_disk(folder)
        placed = False
        try:
            with stop_signals.deferred():  # a Ctrl-C between the two renames would leave neither folder
                _swap_into_place(staging, path)
                placed = True
            sync_to_disk(path.parent)
        finally:
            if placed:  # even when a held-back Ctrl-C raised: no hidden old folder stays behind
                _remove_old_folders(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        locks.unlock_folder(staging, held)


def _swap_into_place(staging: Path, path: Path) -> None:
    """Rename `staging` to `path`, the folder there first moved aside to a hidden `.NAME.*.old`; if the
    second rename fails, the old folder is put back."""
    if not path.exists():
        os.replace(staging, path)
        return
    # a name of its own (not a fixed `.NAME.old`): two processes replacing one folder at once never
    # rename onto, or delete, each other's old folder
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rmdir(old)  # the name stays ours (random); Windows renames no folder onto another
    os.replace(path, old)
    try:
        os.replace(staging, path)
    except BaseException:
        os.replace(old, path)
        raise


def _remove_old_folders(path: Path) -> None:
    """Remove the `.NAME.*.old` folders beside `path`: ours, and any a writer killed (SIGKILL) between
    its two renames left; each was only ever to be deleted."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.old"):
        if stale.is_symlink():  # `path` was a link: the link goes, the folder it led to stays
            stale.unlink(missing_ok=True)
        else:
            shutil.rmtree(stale, ignore_errors=True)


ABANDONED_AFTER_S = 60  # a staging folder untouched this long, and unlocked, is a killed writer's


def _remove_abandoned_staging(path: Path, ours: Path) -> None:
    """Remove the `.NAME.*.partial` staging folders of `path` that no live writer holds: a writer killed
    with SIGKILL (the OOM killer, Slurm after its grace period, Task Manager's End task) left them, as big
    as what it wrote, with their lock file on Windows (`vipcli.locks.lock_folder`). One whose lock cannot be
    tested is left alone, and so is one changed in the last `ABANDONED_AFTER_S` seconds (a writer between
    creating its folder and locking it, or a vip too old to lock it)."""
    import time

    pattern = f".{glob.escape(path.name)}.*.partial"
    lock_files = {Path(str(lock)[: -len(".lock")]) for lock in path.parent.glob(pattern + ".lock")}
    for stale in sorted(set(path.parent.glob(pattern)) | lock_files):
        if stale == ours or stale.is_symlink() or (stale.exists() and not stale.is_dir()):
            continue
        try:
            if stale.exists() and time.time() - stale.stat().st_mtime < ABANDONED_AFTER_S:
                continue
        except OSError:
            continue
        if locks.folder_abandoned(stale):  # no writer holds it (a lock file alone: its folder went already)
            shutil.rmtree(stale, ignore_errors=True)
            locks.remove_folder_lock_file(stale)
