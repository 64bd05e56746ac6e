"""Content digests of files (what the feature cache keys on, how duplicate images are found) and of
tensors (what checks a cache entry or a run's weights for bytes changed on disk).

A digest is the sha256 of the file's bytes, so a file rewritten with the same size and
modification time (as `cp -p`, `rsync -t` or `tar` do) still gets a new digest. Within one process
each file is read once: digests are remembered per (device, inode, size, mtime, ctime), and any
write to a file changes its ctime. `remembered_digest` (for weights files, hundreds of megabytes
read by every process) also remembers them across processes, in the cache folder's `digests/`, except
in a command run with `--no-cache` (`vipcli.cache_use`). `vip predict --out` keeps the versions of the
images it recorded in a log of its own there (`version_of`, `trust_versions`), so that a resume reads only the
images that changed since.

What a remembered digest trusts: that a file whose (device, inode, size, mtime, ctime) are unchanged holds the
same bytes. On a local Linux or macOS file system it does: no program can set a file's ctime (short of setting
the system clock back), and any write, `utime` (`touch`, `cp -p`, `rsync -t`, `tar` restoring a date) or rename
sets it to the present. It can be wrong (1) for a file rewritten in the same clock tick in which it was hashed
(timestamps are coarse: a few milliseconds on Linux, 1 or 2 s on some file systems), which is why `vip predict`'s
log keeps only the versions whose ctime was `SETTLED_NS` older than the moment they were hashed (a weights file's
`remembered_digest` does not wait: weights are written long before they are loaded), and (2) on a file system
whose ctime is not a change time but a copy of the mtime or a creation time (FAT and exFAT drives, some SMB
and FUSE mounts; on Windows `st_ctime` is the creation time), where a file overwritten in place with the same
size and its old mtime put back looks unchanged. `vip predict`'s log is not used on Windows; for the rest of (2),
and for a network mount whose server clock runs seconds behind this machine's, run with `--no-cache`: every file
is then read again in each process.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

_MEMO: dict[tuple, str] = {}
_MEMO_LIMIT = 1_000_000  # entries remembered per process (about 200 MB at most)
_TAKEN_AT: dict[tuple, int] = {}  # memo key -> time.time_ns() just before that version was read and hashed
SETTLED_NS = 2 * 10**9  # a version's ctime this much older than its hashing: no write in the same clock tick


def file_version(stat: os.stat_result) -> tuple:
    """What identifies one version of a file's bytes to the digest memo: (device, inode, size, mtime, ctime)."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def file_digest(path: str | Path) -> str:
    """The sha256 hex digest of the bytes of `path`.

    Raises:
        OSError: the file cannot be read (missing, a folder, permission denied).
    """
    taken_at = time.time_ns()
    memo_key = file_version(os.stat(path))
    digest = _MEMO.get(memo_key)
    if digest is None:
        with open(path, "rb") as handle:
            digest = _sha256_of(handle)
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
            _TAKEN_AT.clear()
        _MEMO[memo_key] = digest
        _TAKEN_AT[memo_key] = taken_at
    return digest


def version_of(path: str | Path, digest: str) -> tuple | None:
    """(the `file_version` of `path` now, the time.time_ns() at which `file_digest` began reading it) when this
    process found `digest` for that very version and its ctime was then `SETTLED_NS` old; None otherwise (the
    file changed or is gone since, was hashed elsewhere, or was written just before it was hashed). What may be
    remembered across processes (`trust_versions`)."""
    try:
        memo_key = file_version(os.stat(path))
    except OSError:
        return None
    taken_at = _TAKEN_AT.get(memo_key)
    if _MEMO.get(memo_key) != digest or taken_at is None or memo_key[4] > taken_at - SETTLED_NS:
        return None
    return memo_key, taken_at


def trust_versions(versions) -> int:
    """Remember, in this process, the digests of file versions another process found (`version_of`: (version,
    taken at, digest) each), so that `file_digest` reads none of those files again while they stay that version.
    A version whose ctime was not `SETTLED_NS` older than its hashing is left out. Returns how many were taken."""
    taken = 0
    for memo_key, taken_at, digest in versions:
        if memo_key[4] <= taken_at - SETTLED_NS and memo_key not in _MEMO and len(_MEMO) < _MEMO_LIMIT:
            _MEMO[memo_key], _TAKEN_AT[memo_key] = digest, taken_at
            taken += 1
    return taken


def text_digest(text: str) -> str:
    """A short digest of `text`: the first 16 hex digits of the sha256 of its UTF-8 bytes. What names a thing by
    its text where a full sha256 is more than needed: a decoding's rules, a backbone's identity, a split's files. Feature cache keys, sweep folders and `--out` files hold such digests, so its value never changes.

    Raises:
        UnicodeEncodeError: `text` holds a lone surrogate (a path of undecodable bytes): not UTF-8.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sources_digest(named_files) -> str:
    """A sha256 (hex, 16 digits) of source files given as (name, path) pairs: each name with its file's
    `file_digest` ("<unreadable>" where it cannot be read), in the order of the names (never of the folders,
    so every layout of one installation, a wheel's, an editable one's, gives one digest). What a feature
    cache key holds of code: a plugin's files (`vipcli.plugins.plugin_source_digest`) and vip's own
    (`vipcli.source_imports.package_source_digest`)."""

    def content(path) -> str:
        try:
            return file_digest(path)
        except OSError:
            return "<unreadable>"

    digest = hashlib.sha256()
    for name, text in sorted((name, content(path)) for name, path in named_files):
        digest.update(f"{name}\0{text}\0".encode())
    return digest.hexdigest()[:16]


DIGESTS_FOLDER = "digests"  # under the cache root: one small file per remembered digest


def remembered_digest(path: str | Path) -> str:
    """`file_digest` of a large file, remembered across processes in the cache folder.

    The record is named after the file's (device, inode, size, mtime, ctime) and holds its sha256, so
    the file is read once per version: any write to it, a copy (`cp -p` too) or a replacement changes
    its inode or ctime, and the next call reads it again. The record carries a checksum of its own
    (`_seal`): a damaged or edited one is read again rather than trusted. An unwritable cache only
    means reading it every time; with `--no-cache` (`vipcli.cache_use`) the cache folder is not used at all.

    Raises:
        OSError: the file cannot be read.
    """
    from vipcli.cache_admin import default_root

    memo_key = file_version(os.stat(path))
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    from vipcli.cache_use import cache_in_use

    if not cache_in_use():  # --no-cache: the file is read, nothing is looked up or kept in the cache folder
        return file_digest(path)
    record = default_root() / DIGESTS_FOLDER / hashlib.sha256(repr(memo_key).encode()).hexdigest()[:32]
    digest = _read_record(record)
    if digest is None:
        digest = file_digest(path)
        _write_record(record, digest)
    _MEMO[memo_key] = digest
    return digest


def is_sha256(text: str) -> bool:
    """Whether `text` is a sha256 as vip writes one: 64 lower-case hex digits."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _seal(record: Path, digest: str) -> str:
    """The checksum a digest record carries: of the digest and of the record's name (the file version it
    is for), so a changed digit in either, or a record copied to another name, does not match."""
    return hashlib.sha256(f"{record.name} {digest}".encode()).hexdigest()[:16]


def _read_record(record: Path) -> str | None:
    """The digest that `record` remembers, or None: no record, an unreadable one, a damaged one (its seal
    does not match) or one an earlier vip wrote without a seal (the file is read again, once)."""
    try:
        text = record.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    digest, _, seal = text.strip().partition(" ")
    return digest if is_sha256(digest) and seal == _seal(record, digest) else None


def _write_record(record: Path, digest: str) -> None:
    """Write `digest` and its seal to `record` atomically; failures are ignored (the file is read again
    next time)."""
    from vipcli.atomic import write_atomic

    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record, f"{digest} {_seal(record, digest)}\n")
    except OSError:
        pass


def _sha256_of(handle) -> str:
    """sha256 of an open binary file, read in 1 MiB blocks (`hashlib.file_digest` from Python 3.11 on)."""
    if hasattr(hashlib, "file_digest"):
        return hashlib.file_digest(handle, "sha256").hexdigest()
    digest = hashlib.sha256()  # Python 3.10
    for block in iter(lambda: handle.read(2**20), b""):
        digest.update(block)
    return digest.hexdigest()


THREADED_BYTES = 32 * 2**20  # below this much data to hash, threads cost more than they save


def digest_many(paths: list[Path], threads: int = 4, advance=lambda n=1: None) -> list[str | OSError]:
    """`file_digest` of every path (hashing releases the GIL, so threads overlap reading and hashing); `advance()`
    is called as each one is done (from the threads: a rich progress task's `advance` is safe there).

    Returns:
        One entry per path, in order: the digest, or the OSError that reading it raised.
    """
    def one(path):
        try:
            return file_digest(path)
        except OSError as error:
            return error
        finally:
            advance()

    if len(paths) < 2 or threads < 2 or _bytes_to_hash(paths) < THREADED_BYTES:
        return [one(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, os.cpu_count() or 1, len(paths))) as pool:
        return list(pool.map(one, paths))


def _bytes_to_hash(paths: list[Path]) -> int:
    """Bytes of the files whose digest is not remembered yet (unreadable files count as nothing)."""
    total = 0
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if file_version(stat) not in _MEMO:
            total += stat.st_size
    return total


def tensors_sha256(tensors: dict, dtype=None, named_dtypes: bool = True) -> str:
    """The sha256 (hex) of named tensors: each one's name, dtype, shape and bytes (in `dtype` when given), in
    name order. Bytes that changed on disk (a flipped bit, a bad sector, a stray write) change it, where the
    values stay finite and plausible and no other check can tell them from good ones.

    `named_dtypes=False`: without the dtypes, as builds of 2026-11-29 from 22:32 to 23:42 wrote it (runs'
    `content_sha256`, cache entries' `features_sha256`), for reading what they wrote."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu", dtype).contiguous()  # [*shape]
        named = f"{name} {tensor.dtype}" if named_dtypes else name
        digest.update(f"{named} {list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)  # the raw bytes of any dtype, bf16 too
    return digest.hexdigest()
