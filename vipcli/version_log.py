"""The image versions a `vip predict --out FILE` recorded, kept in the cache folder so that a resume reads
only the images that changed since.

Resuming FILE checks that each recorded image still holds the bytes its record's sha256 names
(`prediction_files.changed_images`); without this log that meant reading every recorded image again, each
resume (seconds to minutes for thousands of images, more for large scans on a network disk). As each
prediction is recorded, the process appends the image's file version (device, inode, size, mtime, ctime),
the time it was hashed and its sha256 to `<cache>/digests/<digest of FILE's path>.rank<r>.log`; a resume
hands those to `digests.trust_versions`, so an image whose version is unchanged is not read (`digests`
says when that is sound, and when it is not: pass `--no-cache`). The log only ever saves reading a file: a
line that is damaged, or names a version the file no longer has, means the image is read as before.

With `--no-cache` (`vipcli.cache_use`), and on Windows (whose `st_ctime` is a creation time), no log is read or
written; one that cannot be written (a read-only cache folder) is given up in silence.

A log's first line names FILE and the host that wrote it (`out HEXPATH HEXHOST`, which the reader skips like any
line that is no version). A FILE begun afresh drops its logs; one deleted by hand and never written again leaves
them behind: `vip cache info` counts those (`orphaned_logs`: FILE and its part files gone, on the host that wrote
them) and `vip cache clear --stale` removes them.
"""

from __future__ import annotations

import glob
import hashlib
import os
import socket
from pathlib import Path

from vipcli.digests import DIGESTS_FOLDER, is_sha256, trust_versions, version_of


def log_stem(out: Path) -> str:
    """The name the version logs of `out` begin with: 32 hex digits of the sha256 of its absolute path."""
    return hashlib.sha256(os.fsencode(os.path.realpath(out))).hexdigest()[:32]


def log_folder() -> Path | None:
    """Where the version logs lie (the cache folder's `digests/`); None with `--no-cache`, with a cache folder vip
    does not trust (`vipcli.cache_trust`), and on Windows, where a file's `st_ctime` is the time it was created, not
    the time it last changed: the images are then read as before."""
    from vipcli.cache_admin import default_root
    from vipcli.cache_use import cache_in_use
    from vipcli.errors import VipError

    if not cache_in_use() or os.name == "nt":
        return None
    try:
        return default_root() / DIGESTS_FOLDER
    except VipError:
        return None


def log_files(out: Path) -> list[Path]:
    """The version logs of `out` (one per rank that wrote records) in the cache folder; none without one."""
    folder = log_folder()
    return sorted(folder.glob(f"{glob.escape(log_stem(out))}.rank*.log")) if folder is not None else []


def trust_logged_versions(out: Path) -> int:
    """Let this process take the digests of the image versions `out`'s logs hold as known (a resume: those
    images are not read again while they stay those versions). Returns how many were taken."""
    versions = []
    for file in log_files(out):
        try:
            text = file.read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        versions.extend(filter(None, map(_parse, text.splitlines())))
    return trust_versions(versions)


def _parse(line: str):
    """(version, taken at, sha256) of one log line, or None for a line that is not one (a torn last line)."""
    fields = line.split(" ")
    if len(fields) != 7 or not is_sha256(fields[0]):
        return None
    try:
        numbers = [int(field) for field in fields[1:]]
    except ValueError:
        return None
    return tuple(numbers[:5]), numbers[5], fields[0]


def remove_logs(out: Path) -> None:
    """Remove the version logs of `out` (begun afresh: with `--force`, or after it was removed)."""
    for file in log_files(out):
        try:
            file.unlink()
        except OSError:
            pass


def header_line(out: Path) -> str:
    """The first line of a log of `out`: `out HEXPATH HEXHOST`, FILE's absolute path and this host, in hex (a log is
    ASCII; a path may not be)."""
    return f"out {os.fsencode(os.path.realpath(out)).hex()} {socket.gethostname().encode('utf-8').hex()}\n"


def logged_out(log: Path) -> tuple[Path, str] | None:
    """(FILE, host) a log names in its first line; None for a log without one, or one that cannot be read."""
    try:
        with open(log, "rb") as stream:
            fields = stream.readline(8192).decode("ascii").split()
        if len(fields) != 3 or fields[0] != "out":
            return None
        return Path(os.fsdecode(bytes.fromhex(fields[1]))), bytes.fromhex(fields[2]).decode("utf-8")
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def orphaned_logs(logs: list[Path]) -> list[Path]:
    """Those of the version `logs` (`vipcli.cache_admin.version_logs`) whose FILE is gone: written on this host,
    naming a FILE that, with all its part files, no longer exists (deleted by hand, never written again: nothing
    will read them). A log of another host (a cache folder several machines share), or one whose FILE still has a
    part file (a torchrun run killed before its merge), is not."""
    from vipcli.prediction_files import part_files

    host = socket.gethostname()
    orphans = []
    for log in logs:
        named = logged_out(log)
        if named is None or named[1] != host:
            continue
        out = named[0]
        if not os.path.lexists(out) and not part_files(out):
            orphans.append(log)
    return orphans


class VersionLog:
    """Appends the version of each image recorded in `out` by rank `rank` to its log (see the module)."""

    def __init__(self, out: Path, rank: int = 0):
        folder = log_folder()
        self.file = folder / f"{log_stem(out)}.rank{rank}.log" if folder is not None else None
        self.out = Path(out)
        self.stream, self.usable = None, folder is not None

    def note(self, path: str, sha256: str) -> None:
        """Log the version `path` has now if it is the one this process hashed to `sha256` (`digests.version_of`);
        nothing otherwise (the image changed since it was hashed: a resume reads it)."""
        version = version_of(path, sha256) if self.usable and sha256 else None
        if version is None:
            return
        (dev, ino, size, mtime, ctime), taken_at = version
        try:
            if self.stream is None:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                self.stream = open(self.file, "a", encoding="ascii")
                if self.stream.tell() == 0:  # a new log: it names its FILE, so that one left behind can be found
                    self.stream.write(header_line(self.out))
            self.stream.write(f"{sha256} {dev} {ino} {size} {mtime} {ctime} {taken_at}\n")
            self.stream.flush()  # with its record: a killed run keeps the versions of what it recorded
        except OSError:
            self.close()
            self.usable = False

    def close(self) -> None:
        """Close the log (nothing to do if nothing was written)."""
        if self.stream is not None:
            try:
                self.stream.close()
            except OSError:
                pass
            self.stream = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
