"""What the on-disk cache holds, and removing it: the library side of `vip cache info|clear`.

The cache root (`$VIP_CACHE_DIR`, else the user cache folder) holds four folders vip owns (`OWNED`):
`features/<backbone key>/` (image features, one folder per backbone, described by its
`backbone.json`), `llm/` (answers of `vip symptoms generate`), `checks/` (one small file per
backbone that passed the load-time contract checks) and `digests/` (the content digests of weights
files, so that each is read once per version, not once per process, and the image versions each
`vip predict --out` recorded, so that a resume reads only the images that changed). Nothing else under the root is ever read or
removed, nor is any file in those folders that vip did not write.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vipcli.errors import VipError

OWNED = ("features", "llm", "checks", "digests")  # the only folders under the root that vip creates and clears
BACKBONE_FILE = "backbone.json"  # in each backbone folder: what its entries were made with


def default_root() -> Path:
    """`$VIP_CACHE_DIR`, else the platform's user cache folder for vip, once `check_cache_root` trusts it
    (VipError for a folder every user can write: what vip reads back from it could be anyone's)."""
    from vipcli.cache_trust import check_cache_root

    return check_cache_root(_root())


def _root() -> Path:
    """`$VIP_CACHE_DIR`, else the platform's user cache folder for vip (not checked)."""
    env = os.environ.get("VIP_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vip"))


def checked_root() -> Path:
    """The cache root for `vip cache info|clear` (they read no entry back, so a folder others can write is
    theirs to inspect and clear); one VipError when it is a file, not a folder (VIP_CACHE_DIR set to a
    file), where they reported an empty cache and clearing nothing."""
    root = _root()
    if root.exists() and not root.is_dir():
        where = "VIP_CACHE_DIR" if os.environ.get("VIP_CACHE_DIR") else "the cache folder"
        raise VipError(f"{where} {root} is a file, not a folder", "point VIP_CACHE_DIR at a folder")
    return root


def _walk(folder: Path, suffix: str) -> tuple[int, int]:
    """(files ending in `suffix`, bytes of all files) under `folder`."""
    count = size = 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                size += os.stat(os.path.join(base, name)).st_size
            except OSError:
                continue
            count += name.endswith(suffix)
    return count, size


def _identity(folder: Path) -> dict:
    try:
        identity = json.loads((folder / BACKBONE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return identity if isinstance(identity, dict) else {}


def backbone_folders(root: Path) -> list[dict]:
    """One record per folder under `<root>/features`: folder, backbone id, class, arch, entries, bytes, image fit.

    Folders of an older vip version (no backbone.json) have id "".
    """
    features = Path(root) / "features"
    if not features.is_dir():
        return []
    records = []
    for folder in sorted(p for p in features.iterdir() if p.is_dir()):
        identity = _identity(folder)
        describe = identity.get("describe") if isinstance(identity.get("describe"), dict) else {}
        entries, size = _walk(folder, ".safetensors")
        records.append({"folder": str(folder), "backbone": str(identity.get("id", "")),
                        "class": str(identity.get("class", "")), "arch": str(describe.get("arch", "")),
                        "pretrained": str(describe.get("pretrained", "")), "entries": entries, "bytes": size,
                        "image_fit": str(identity.get("image_fit", "crop")),  # crop's folders record none
                        "stale": stale_reasons(identity)})
    return records


def stale_reasons(identity: dict) -> list[str]:
    """Why this installation never reads a cache folder whose backbone.json holds `identity` again
    (an upgrade of vip, of a library it encodes with, or of the backbone's code; an uninstalled
    backbone), in a few words each; empty when it may. A folder of vip 0.1.0 has no identity."""
    if not identity:
        return ["written by vip 0.1.0"]
    from vipcli.features import installation_identity

    reasons = []
    for name, now in installation_identity().items():
        was = identity.get(name)
        if was != now:
            reasons.append(f"feature format {was or 'unknown'}" if name == "format" else
                           "another image decoder" if name in ("decode", "orientation", "depth") else
                           "vip's code changed" if name == "vip_code" else
                           f"{name} {was or '?'}, now {now}")
    backbone_id = str(identity.get("id", ""))
    code = _backbone_code(backbone_id, str(identity.get("class", "")))
    if code is None:
        reasons.append(f"backbone '{backbone_id}' is not installed")
    elif code and code != identity.get("code"):
        reasons.append(f"backbone '{backbone_id}' code changed")
    return list(dict.fromkeys(reasons))  # decode, orientation and depth all say "another image decoder"


def _backbone_code(backbone_id: str, class_name: str) -> str | None:
    """The source digest of the installed class that wrote entries as `class_name` under `backbone_id`:
    None when no such backbone can be loaded, "" when its factory is not that class (a function, or a
    class that builds another one), so that only constructing it could tell."""
    from vipcli.plugins import plugin_source_digest
    from vipcli.registry import backbone_class

    try:
        factory = backbone_class(backbone_id)
    except VipError:  # not installed, or its import fails (`vip backbones list` says why)
        return None
    if not isinstance(factory, type) or f"{factory.__module__}.{factory.__qualname__}" != class_name:
        return ""
    return plugin_source_digest(factory)


def summarize(root: Path) -> dict:
    """Location, per-backbone feature entries and sizes, LLM answers, the image versions `vip predict --out` recorded
    (`version_logs`: how many logs, their size, and of those the ones whose FILE is gone, `orphaned_logs`), and the
    total size."""
    from vipcli.version_log import orphaned_logs

    root = Path(root)
    backbones = backbone_folders(root)
    answers, answer_bytes = _walk(root / "llm", ".json") if (root / "llm").is_dir() else (0, 0)
    logs = version_logs(root)
    orphans = orphaned_logs(logs)  # of the logs just listed: the folder is read once
    total = sum(b["bytes"] for b in backbones) + answer_bytes + _size(logs)
    return {"root": str(root), "exists": root.is_dir(), "backbones": backbones,
            "llm_answers": answers, "llm_bytes": answer_bytes, "version_logs": len(logs),
            "version_log_bytes": _size(logs), "orphaned_logs": len(orphans), "orphaned_log_bytes": _size(orphans),
            "bytes": total}


def version_logs(root: Path) -> list[Path]:
    """The logs of image versions under `root`'s `digests/` (`VERSION_LOG`; `vipcli.version_log`)."""
    folder = Path(root) / "digests"
    return sorted(path for path in folder.glob("*.log") if VERSION_LOG.fullmatch(path.name)) if folder.is_dir() else []


def _size(files: list[Path]) -> int:
    """The bytes of `files` (one gone meanwhile counts 0)."""
    total = 0
    for file in files:
        try:
            total += file.stat().st_size
        except OSError:
            pass
    return total


def remove_orphaned_logs(root: Path) -> tuple[int, int]:
    """Remove the version logs under `root` whose FILE is gone (`version_log.orphaned_logs` of `version_logs`); (how
    many, bytes)."""
    from vipcli.version_log import orphaned_logs

    removed = freed = 0
    for log in orphaned_logs(version_logs(root)):
        size = _remove_file(log)
        if size is not None:
            removed, freed = removed + 1, freed + size
    return removed, freed


def _remove_file(path: Path) -> int | None:
    """Remove the file `path`: its size, or None when it was gone already (another `vip cache clear`); one VipError
    naming it when it cannot be removed."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _cannot_clear(path, error) from None
    return size


# the files vip writes under features/, llm/, checks/ and digests/ (and the temp files of an interrupted write)
FEATURE_ENTRY = re.compile(r"\.?[0-9a-f]{8,64}\.safetensors(\..+\.tmp)?|tmp[a-z0-9_]{8}\.tmp")  # (vip 0.1.0's temp)
BACKBONE_RECORD = re.compile(rf"\.?{re.escape(BACKBONE_FILE)}(\..+\.tmp)?")
LLM_ANSWER = re.compile(r"\.?[0-9a-f]{64}\.json(\..+\.tmp)?")
CHECKS_PASSED = re.compile(r"\.?[0-9a-f]{32}(\.probes\.json)?(\..+\.tmp)?")  # a passed backbone (its probes; temp files)
DIGEST_RECORD = re.compile(r"\.?[0-9a-f]{32}(\..+\.tmp)?")  # a weights file's remembered sha256
VERSION_LOG = re.compile(r"[0-9a-f]{32}\.rank[0-9]+\.log")  # the image versions a `vip predict --out` recorded
SHARD = re.compile(r"[0-9a-f]{2}")


def written_by_vip(relative: Path) -> bool:
    """Whether a file at `relative` (to the cache root) is one vip writes: a feature entry
    (`features/<backbone>/<2 hex>/<hex>.safetensors`), a `backbone.json`, an LLM answer
    (`llm/<sha256>.json`), a backbone's passed contract checks (`checks/<hex>`, and beside it a third-party
    backbone's probe features, `checks/<hex>.probes.json`), a weights file's remembered digest
    (`digests/<hex>`) or the image versions a `vip predict --out` recorded (`digests/<hex>.rank<r>.log`,
    `vipcli.version_log`)."""
    parts = relative.parts
    if len(parts) == 4 and parts[0] == "features":
        return bool(SHARD.fullmatch(parts[2]) and FEATURE_ENTRY.fullmatch(parts[3]))
    if len(parts) == 3 and parts[0] == "features":
        return bool(BACKBONE_RECORD.fullmatch(parts[2]))
    if len(parts) == 2 and parts[0] == "checks":
        return bool(CHECKS_PASSED.fullmatch(parts[1]))
    if len(parts) == 2 and parts[0] == "digests":
        return bool(DIGEST_RECORD.fullmatch(parts[1]) or VERSION_LOG.fullmatch(parts[1]))
    return len(parts) == 2 and parts[0] == "llm" and bool(LLM_ANSWER.fullmatch(parts[1]))


def clear(root: Path, backbone: str | None = None, stale_only: bool = False) -> dict:
    """Remove cached features (of one backbone id, or all) and, without `backbone` or `stale_only`, the
    LLM answers, the remembered contract checks and the remembered digests of weights files. With
    `stale_only`, only the feature folders that `stale_reasons` says are never read again, and (without
    `backbone`) the version logs of prediction files that are gone (`remove_orphaned_logs`).

    Only the files vip writes are removed (`written_by_vip`), then the folders left empty; anything
    else under `features/` or `llm/` (a user's own files, if the cache root is a shared folder) is kept.

    Returns:
        {"removed": [folders cleared], "entries": feature entries removed, "bytes": bytes freed,
         "logs": version logs removed by `stale_only` (their bytes are in "bytes"),
         "kept": [files vip did not write, relative to the root]}
    Raises:
        VipError: a file cannot be removed (read-only cache).
    """
    root = Path(root)
    records = backbone_folders(root)
    if backbone is not None or stale_only:
        records = [r for r in records if (backbone is None or r["backbone"] == backbone)
                   and (r["stale"] or not stale_only)]
        targets = [Path(r["folder"]) for r in records]
    else:
        targets = [root / name for name in OWNED if (root / name).is_dir()]
    entries = freed = 0
    kept: list[str] = []
    for target in targets:
        for base, folders, files in os.walk(target, topdown=False):
            for name in files:
                path = Path(base) / name
                relative = path.relative_to(root)
                if not written_by_vip(relative):
                    kept.append(str(relative))
                    continue
                size = _remove_file(path)
                if size is None:
                    continue
                freed += size
                entries += relative.parts[0] == "features" and name.endswith(".safetensors")
            for name in folders:  # topdown=False: subfolders are done; remove them if now empty
                _remove_if_empty(Path(base) / name)
        _remove_if_empty(target)
    logs = 0
    if stale_only and backbone is None:
        logs, log_bytes = remove_orphaned_logs(root)
        freed += log_bytes
    return {"removed": [str(t) for t in targets], "entries": entries, "bytes": freed, "logs": logs,
            "kept": sorted(kept)}


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (a file vip did not write), or gone
        pass


def _cannot_clear(path: Path, error: OSError) -> VipError:
    from vipcli.preflight import describe_os_error

    return VipError(f"cannot clear the cache {path.parent} ({describe_os_error(error)})",
                    "check the folder's permissions, or set VIP_CACHE_DIR to another cache")


def human_size(size: int) -> str:
    """Bytes as "512 B", "3.4 KiB", "12.0 MiB", "1.2 GiB"."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover
