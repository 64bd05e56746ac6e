"""What the on-disk cache holds, and removing it: the library side of `vip cache info|clear`.

The cache root (`$VIP_CACHE_DIR`, else the user cache folder) holds two things vip owns:
`features/<backbone key>/` (image features, one folder per backbone, described by its
`backbone.json`) and `llm/` (answers of `vip symptoms generate`). Nothing else under the root is
ever read or removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from vipcli.errors import VipError

OWNED = ("features", "llm")  # the only folders under the root that vip creates and removes
BACKBONE_FILE = "backbone.json"  # in each backbone folder: what its entries were made with


def default_root() -> Path:
    """`$VIP_CACHE_DIR`, else the platform's user cache folder for vip."""
    env = os.environ.get("VIP_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vip"))


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
    """One record per folder under `<root>/features`: folder, backbone id, class, arch, entries, bytes.

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
                        "pretrained": str(describe.get("pretrained", "")), "entries": entries, "bytes": size})
    return records


def summarize(root: Path) -> dict:
    """Location, per-backbone feature entries and sizes, LLM answers, and the total size."""
    root = Path(root)
    backbones = backbone_folders(root)
    answers, answer_bytes = _walk(root / "llm", ".json") if (root / "llm").is_dir() else (0, 0)
    total = sum(b["bytes"] for b in backbones) + answer_bytes
    return {"root": str(root), "exists": root.is_dir(), "backbones": backbones,
            "llm_answers": answers, "llm_bytes": answer_bytes, "bytes": total}


def clear(root: Path, backbone: str | None = None) -> dict:
    """Remove cached features (of one backbone id, or all) and, without `backbone`, the LLM answers.

    Returns:
        {"removed": [folders], "entries": feature entries removed, "bytes": bytes freed}
    Raises:
        VipError: a folder cannot be removed (read-only cache).
    """
    root = Path(root)
    records = backbone_folders(root)
    if backbone is not None:
        records = [r for r in records if r["backbone"] == backbone]
        targets = [Path(r["folder"]) for r in records]
    else:
        targets = [root / name for name in OWNED if (root / name).exists()]
    freed = sum(_walk(t, "")[1] for t in targets)
    entries = sum(r["entries"] for r in records)
    for target in targets:
        try:
            shutil.rmtree(target)
        except OSError as error:
            from vipcli.preflight import describe_os_error

            raise VipError(f"cannot clear the cache {target} ({describe_os_error(error)})",
                           "check the folder's permissions, or set VIP_CACHE_DIR to another cache") from None
    return {"removed": [str(t) for t in targets], "entries": entries, "bytes": freed}


def human_size(size: int) -> str:
    """Bytes as "512 B", "3.4 KiB", "12.0 MiB", "1.2 GiB"."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover
