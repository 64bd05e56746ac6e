"""Checks of output locations (and of the memory a run's features need) before any work is done.

Each command calls these first, so an existing run directory, a read-only folder, a full disk or
features that would not fit in memory is one clear line before the first image is decoded or the
first LLM question is paid for, not after minutes of encoding and training.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from vipcli.errors import UsageError, VipError

WINDOWS = os.name == "nt"  # where a file another program holds open cannot be replaced (`write_failed` says so)

PROBE_BYTES = 64 * 1024  # written (and synced) to prove a folder takes data
MIN_FREE_BYTES = 16 * 1024 * 1024  # below this a disk counts as full
_REASONS = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "a file is in the way",
}


def describe_os_error(error: OSError) -> str:
    """A few words for an OSError: "read-only file system", "no space left on the device", ..."""
    return _REASONS.get(error.errno) or error.strerror or type(error).__name__


def nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else its closest existing parent (the folder a mkdir -p starts in)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_writable(folder: Path, what: str, option: str = "--out", min_free: int = MIN_FREE_BYTES) -> None:
    """VipError naming `what` unless a file can be created, written, synced and removed in `folder`.

    Args:
        folder: an existing folder (the output, or the closest existing parent of it).
        what: the output as the user named it, e.g. "--out runs/x".
        option: the option to change, for the hint.
        min_free: bytes that must be free on its disk, else it counts as full.
    """
    if not folder.is_dir():
        raise VipError(f"{what}: {folder} is a file, not a folder", f"choose another {option}")
    try:
        handle, temp = tempfile.mkstemp(dir=folder, prefix=".vip-write-test.", suffix=".tmp")
        try:
            os.write(handle, b"\0" * PROBE_BYTES)
            os.fsync(handle)
        finally:
            os.close(handle)
            os.unlink(temp)
    except OSError as error:
        raise VipError(f"{what}: cannot write to {folder} ({describe_os_error(error)})",
                       _hint(error, option)) from None
    free = shutil.disk_usage(folder).free
    if free < min_free:
        from vipcli.cache_admin import human_size

        raise VipError(f"{what}: the disk holding {folder} is nearly full: it has {human_size(free)} free, less than "
                       f"the {human_size(min_free)} vip needs to write there",
                       f"free some space or choose another {option}")


def _hint(error: OSError, option: str) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free some space or choose another {option}"
    return f"choose a folder you can write to with {option}"


RUN_MARKERS = ("run.yaml", "model.safetensors")  # a folder holding one of these is a run directory --force may replace


def check_run_dir(out: Path, force: bool, option: str = "--out") -> None:
    """A run directory can be written: absent (or replaced with `force`), its parent writable, not full."""
    out = Path(out)
    if out.name in ("", ".", ".."):  # `--out .`: the folder vip runs in, or one above it
        raise UsageError(f"{option} {out}: name the run folder itself, not the folder it goes in",
                         f"such as {option} {Path(out, 'my-run')}")
    if out.exists() and not out.is_dir():
        raise VipError(f"{option} {out} is a file, not a run directory", f"choose another {option}")
    if out.exists() and not force:
        raise VipError(f"run directory {out} already exists", f"choose another {option} or pass --force")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).is_file() for name in RUN_MARKERS):
        raise VipError(f"{option} {out} is a folder that holds other files than a vip run (no run.yaml or "
                       "model.safetensors), which --force would delete", f"choose another {option}")
    check_writable(nearest_existing(out.parent), f"{option} {out}", option)


def check_outside_data(out: Path, data: Path, option: str = "--out") -> None:
    """Refuse an output folder where a later scan of `data` would read it as a class folder: inside a
    flat data folder, or inside its train/, val/ or test/ (e.g. the default `runs/` of a vip started
    from within the data folder). Beside the split folders, or hidden, it is never read."""
    from vipcli.data import SPLIT_NAMES
    from vipcli.images import is_system_folder

    try:
        root, target = Path(data).resolve(), Path(out).resolve()
        inside = target.relative_to(root).parts
    except (OSError, ValueError):
        return  # not inside the data folder (or not resolvable: the data check names that)
    split_layout = any((root / name).is_dir() for name in SPLIT_NAMES)
    if not inside or any(is_system_folder(part) for part in inside):
        return
    if split_layout and inside[0] not in SPLIT_NAMES:
        return
    flag = option if option.startswith("--") else "--out"  # "the default run folder" is not an option to pass
    raise UsageError(f"{option} {out} is inside the data folder {data}, where the next run would read it as "
                     f"a class folder", f"pass {flag} outside {data}, or run vip from another folder")


def check_output_folder(out: Path, option: str = "--out") -> None:
    """A results folder (created if missing, added to if present) can be written and is not full."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VipError(f"{option} {out} is a file, not a folder", f"choose another {option}")
    check_writable(nearest_existing(out), f"{option} {out}", option)


def check_output_file(path: Path, option: str = "--out", create_folder: bool = True) -> None:
    """A file can be written at `path`: not a folder, its folder writable and not full.

    Args:
        create_folder: the command creates a missing folder; when False a missing folder is refused.
    """
    path = Path(path)
    if path.is_dir():
        raise VipError(f"{option} {path} is a folder, not a file", f"give a file name with {option}")
    folder = nearest_existing(path.parent)
    if not create_folder and folder != path.parent.absolute() and folder.is_dir():
        raise VipError(f"{option} {path}: folder {path.parent} does not exist", f"create it or choose another {option}")
    check_writable(folder, f"{option} {path}", option)


def write_failed(file: Path, error: OSError, kept: str) -> VipError:
    """The one line for a write that failed after the checks (the disk filled up, the folder went read-only).

    Args:
        file: the file that could not be written.
        kept: what is left as it was, e.g. "nothing was written".

    On Windows a file refused in a writable folder is most likely open in another program, and said so; on
    POSIX, where an open file can be replaced, it is the file's own permissions ("make it writable").
    """
    if WINDOWS and held_open(file, error):
        what = "a file in it" if Path(file).is_dir() else "it"
        return VipError(f"cannot write {file}: another program has {what} open (Windows lets no open file be "
                        f"replaced), or {what} is read-only; {kept}", "close it there, then run the same command again")
    fix = "free some space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
    return VipError(f"cannot write {file} ({describe_os_error(error)}); {kept}", f"{fix}, then run the same command "
                    "again")


def held_open(file: Path, error: OSError) -> bool:
    """Whether writing or replacing `file` (or a folder) was refused for what is there, in a writable folder: on
    Windows another program holds it (or a file in it) open (Excel holds a CSV so), or it is read-only."""
    file = Path(file)
    return isinstance(error, PermissionError) and file.exists() and os.access(file.parent, os.W_OK)


def physical_memory() -> int | None:
    """Bytes of memory this process may use: the machine's RAM, or a smaller cgroup limit (a container,
    a Slurm job, a systemd slice: its own cgroup's and every parent's); None where neither is known."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for limit in _cgroup_memory_limits():
        total = min(total, limit) if total else limit
    return total


def _cgroup_memory_limits(root: Path = Path("/sys/fs/cgroup"),
                          membership: Path = Path("/proc/self/cgroup")) -> list[int]:
    """The memory limits (bytes) set on this process's cgroup and its parents, v2 and v1; [] if none."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    candidates = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: 0::/path
            folder, name = root / path.lstrip("/"), "memory.max"
        elif "memory" in controllers.split(","):  # v1: N:memory:/path
            folder, name = root / "memory" / path.lstrip("/"), "memory.limit_in_bytes"
        else:
            continue
        while True:  # the cgroup, then each parent up to the mount (in a container: only the mount)
            candidates.append(folder / name)
            if folder in (root, root / "memory") or folder == folder.parent:
                break
            folder = folder.parent
    candidates += [root / "memory.max", root / "memory" / "memory.limit_in_bytes"]
    limits = []
    for file in dict.fromkeys(candidates):
        try:
            value = int(file.read_text().strip())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        if value < 2**60:  # v1 writes a huge number for "no limit"
            limits.append(value)
    return limits


def check_view_memory(views: int, view_bytes: int, workers: int, group_views: int) -> None:
    """VipError before any encoding when the decoded views in flight at once would exceed half of the memory.

    The views of one image are decoded and handed over together (with others while fewer than `group_views`), and
    each of the `workers` decoding processes may hold `decoding.PREFETCH` such groups ahead of the encoder, which
    holds one more: a `--views` far above the paper's 8 (100,000 views of 224x224 are 15 GB an image) passed
    `check_feature_memory`, since the features are small, and the kernel killed the run without a word.

    Args:
        views: the --views asked for.
        view_bytes: one view as the workers hand it over (`vipcli.features.training_view_bytes`).
        workers: the decoding worker processes (0: decoded in this process).
        group_views: the views decoded together when an image has fewer (`vipcli.features.GROUP_VIEWS`).
    """
    from vipcli.cache_admin import human_size
    from vipcli.decoding import PREFETCH

    total = physical_memory()
    in_flight = PREFETCH * workers + 1  # groups decoded and not yet encoded
    needed = in_flight * max(views, group_views) * view_bytes
    if not total or not views or needed <= total // 2:
        return
    fits = (total // 2) // (in_flight * view_bytes)
    hint = f"pass --views {fits} or fewer" if fits >= 1 else "use a machine with more memory"
    if workers:
        hint += f", or fewer --workers, each of which decodes up to {PREFETCH} images ahead of the encoder"
    raise VipError(f"--views {views}: the decoded views of the images in flight at once would take "
                   f"{human_size(needed)} of memory ({human_size(views * view_bytes)} an image), more than half of the "
                   f"{human_size(total)} this process may use", hint)


def check_decoding_memory(backbone, encoding, views: int) -> None:
    """`check_view_memory` for a run that encodes `views` augmented views an image with `backbone` under
    `encoding` (an `EncodingSettings`: its image fit and --workers)."""
    from vipcli.features import GROUP_VIEWS, training_view_bytes
    from vipcli.settings import usable_workers

    if views:
        check_view_memory(views, training_view_bytes(backbone, encoding.image_fit), usable_workers(encoding.workers),
                          GROUP_VIEWS)


def check_feature_memory(jobs: list, embed_dim: int, views: int) -> None:
    """VipError before any encoding when the features a run keeps in memory would exceed half of it.

    Args:
        jobs: `vipcli.distributed.training_jobs` output: (paths, views, center view) per group.
        embed_dim: D of the backbone's features (float32 each).
        views: the --views asked for (the fix names the most that fit).
    """
    from vipcli.cache_admin import human_size

    total = physical_memory()
    per_feature = embed_dim * 4
    fixed = sum(len(paths) * int(center) for paths, _, center in jobs)  # center views: whatever --views is
    with_views = sum(len(paths) for paths, count, _ in jobs if count)  # images that get --views views each
    needed = (fixed + with_views * views) * per_feature
    if not total or needed <= total // 2:
        return
    images = sum(len(paths) for paths, _, _ in jobs)
    fits = (total // 2 // per_feature - fixed) // with_views if with_views else 0
    hint = (f"pass --views {fits} or fewer" if 0 < fits < views else
            "use fewer images (--shots N, or a smaller data folder) or a machine with more memory")
    detail = f" ({views} augmented views each for {with_views} of them)" if with_views and views else ""
    raise VipError(f"the features of {images} images{detail} would take {human_size(needed)} of memory, more "
                   f"than half of the {human_size(total)} this process may use", hint)
