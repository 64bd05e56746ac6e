"""The identity of weights read from local files: their content, never their location or dates.

A backbone's `describe()` keys the feature cache, the load-time checks, checkpoints and benchmark
resumes, so it must change whenever the weights do and only then. Weights read from a local file
are named by the file's name, size and sha256: a file replaced by other weights with the same size
and modification time (as `cp -p`, `rsync -t`, `tar` or a reproducible build leave them) is never
mistaken for the old one, and a copy moved elsewhere is still the same weights. The sha256 of each
version of a file is computed once and remembered in the cache folder (`vipcli.digests`).

vip 0.1.0 and earlier 0.2.0 builds identified such files by path, size and modification time. Runs and
benchmarks recorded that way still match the same file (`same_backbone`), so they neither warn
that the weights differ nor refuse to resume.
"""

from __future__ import annotations

import os
from pathlib import Path

from vipcli.digests import remembered_digest


def weights_file_identity(path: str | Path) -> dict:
    """`{"file": name, "size": bytes, "sha256": hex}` of a local weights file (read once per version).

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    return {"file": path.name, "size": path.stat().st_size, "sha256": remembered_digest(path)}


LOCATION_KEYS = ("weights", "pretrained")  # where the weights lay (an earlier record's path), checked by content
# what a local transformers model folder's identity names besides its config and weights (since 0.2.0's
# fourteenth review; it was named by its folder's name before, as "NAME#<config digest>")
FOLDER_CONTENT_KEYS = ("tokenizer", "preprocessor")


def same_backbone(recorded_fingerprint, recorded_describe, fingerprint: str, describe: dict) -> bool:
    """Whether a backbone (its `fingerprint()` and `describe()`) is the one a run or benchmark recorded.

    True when the fingerprints are equal, or when the record was written by an earlier vip that named
    local weights files by their path (as typed in `pretrained`; by path, size and modification time
    in `weights`), everything else in `describe()` is equal, and the weights are the same: the same
    content identity, or files that still have the recorded size and time and hold the weights
    loaded now.
    """
    if fingerprint == recorded_fingerprint:
        return True
    describe = as_recorded_before_folder_content(recorded_describe, describe)
    if not isinstance(recorded_describe, dict) or not isinstance(describe, dict) or set(recorded_describe) != set(describe):
        return False
    if any(recorded_describe[key] != describe[key] for key in describe if key not in LOCATION_KEYS):
        return False
    old, new = recorded_describe.get("weights"), describe.get("weights")
    return (old == new and isinstance(new, (dict, list))) or legacy_weights_match(old, new)


def as_recorded_before_folder_content(recorded_describe, describe: dict) -> dict:
    """`describe` of a local transformers model folder as an earlier vip recorded it, when the record is
    of that form: without the tokenizer and preprocessor files it did not name, and with the record's
    arch label (the folder's name then) when the config digest after "#" is the same. Any other
    `describe` is returned as it is.

    A run trained that way is matched on what it recorded (the config and the weights by content), as
    it was before; runs trained now also name the tokenizer.
    """
    if not isinstance(recorded_describe, dict) or not isinstance(describe, dict):
        return describe
    added = [key for key in FOLDER_CONTENT_KEYS if key in describe and key not in recorded_describe]
    arch, old_arch = str(describe.get("arch", "")), recorded_describe.get("arch")
    if not added or not arch.startswith("local ") or not isinstance(old_arch, str):
        return describe
    now = {key: value for key, value in describe.items() if key not in added}
    if old_arch.rpartition("#")[2] == arch.rpartition("#")[2]:
        now["arch"] = old_arch
    return now


def legacy_weights_unverifiable(recorded_describe, describe: dict) -> str | None:
    """What to say when a record of an earlier vip differs from `describe` only in weights it named by
    path, size and modification time, and those no longer match (the file touched, copied or moved):
    vip cannot tell whether they are the same weights. None when the record differs otherwise.

    Returns:
        "RECORDED PATH by its size and modification time, which changed since", and for a single file
        the `touch` command that gives it back its recorded time.
    """
    if not isinstance(recorded_describe, dict) or set(recorded_describe) != set(describe):
        return None
    if any(recorded_describe[key] != describe[key] for key in describe if key not in LOCATION_KEYS):
        return None
    recorded = recorded_describe.get("weights")
    forms = recorded if isinstance(recorded, list) and recorded else [recorded]
    if not all(isinstance(form, dict) and set(form) in ({"path", "size", "mtime_ns"}, {"path", "files"})
               for form in forms):
        return None
    form = forms[0]  # the one file's record, whether or not it came in a list
    said = f"{form['path']} by its size and modification time, which changed since" if len(forms) == 1 \
        else f"{len(forms)} weights files by their size and modification time, which changed since"
    if set(form) == {"path", "size", "mtime_ns"} and len(forms) == 1 and isinstance(form["mtime_ns"], int):
        from vipcli.shell import set_modified_time

        said += f" (if it holds the same weights, `{set_modified_time(form['path'], form['mtime_ns'])}` " \
                "gives it back its recorded time)"
    return said


def legacy_weights_match(recorded, current) -> bool:
    """Whether `recorded`, a weights identity in the earlier path/size/mtime form, names the files
    that `current` (the content form of `weights_file_identity`) does.

    The earlier forms: `{"path", "size", "mtime_ns"}` for a file (open_clip backbones), a list of
    such dicts (the checkpoint files of an `hf-hub:`/`local-dir:` model) and `{"path", "files":
    [[name, size, mtime_ns], ...]}` for a model folder (transformers backbones).
    """
    if isinstance(recorded, list) and isinstance(current, list):
        return len(recorded) == len(current) and all(
            old == new or legacy_weights_match(old, new) for old, new in zip(recorded, current))
    if not isinstance(recorded, dict) or not isinstance(current, dict):
        return False
    if set(recorded) == {"path", "size", "mtime_ns"}:
        return _file_matches(Path(str(recorded["path"])), recorded["size"], recorded["mtime_ns"], current)
    if set(recorded) == {"path", "files"} and isinstance(current.get("files"), list):
        old_files, new_files = recorded["files"], current["files"]
        if not isinstance(old_files, list) or len(old_files) != len(new_files):
            return False
        folder = Path(str(recorded["path"]))
        folder = folder if folder.is_dir() else folder.parent  # the identity of a single weights file
        return all(isinstance(old, list) and len(old) == 3 and
                   _file_matches(folder / str(old[0]), old[1], old[2], new) for old, new in zip(old_files, new_files))
    return False


def _file_matches(path: Path, size, mtime_ns, current) -> bool:
    """`path` still has the recorded size and mtime, and `current` names its content."""
    if not isinstance(current, dict) or current.get("file") != path.name or current.get("size") != size:
        return False
    try:
        stat = os.stat(path)
        return (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns) and remembered_digest(path) == current.get("sha256")
    except OSError:
        return False
