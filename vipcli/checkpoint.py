"""Run directories: model.safetensors + run.yaml + split.json + metrics.json, written atomically.

No pickle anywhere: tensors go to safetensors, everything else to YAML/JSON text. The run directory
is the source of truth: `vip predict` rebuilds the method from what is stored here (its settings,
its prompts and searched values, its tensors), never from the defaults of the vip that reads it.

Format 2 (vip 0.2) keeps the whole metadata document as one JSON string in the safetensors header
(`metadata`), so every value keeps its type; the flat string fields of format 1 (method, backbone,
arch, pretrained, class_names, symptoms, n_ctx, config) are still written beside it for tools. Format 1 (vip 0.1.0) stored flat strings; it is read
and converted by `upgrade_v1`.
"""

from __future__ import annotations

import json
from pathlib import Path

from vipcli import __version__
from vipcli.errors import VipError

FORMAT = "vip-run"
FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")
V1_JSON_FIELDS = ("class_names", "symptoms", "prompts", "config", "backbone_describe", "schedule")


def write_run(run_dir: Path, tensors: dict, metadata: dict, split: dict, metrics: dict, force: bool = False) -> Path:
    """Write a complete run directory, or nothing: files go to a staging folder renamed at the end.

    Args:
        run_dir: destination folder (must not exist unless `force`).
        tensors: name -> tensor, as the method's `state_tensors()` gives them.
        metadata: method, method_settings, method_state, backbone, arch, class_names, symptoms, config...
        split: exact files per split (and the few-shot subset).
        metrics: val/test metrics and timings.
    """
    import yaml
    from safetensors.torch import save_file

    from vipcli.atomic import atomic_folder

    run_dir = Path(run_dir)
    if run_dir.exists() and not force:
        raise VipError(f"run directory {run_dir} already exists", "choose another --out or pass --force")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "vip_version": __version__, **metadata}
    header = {**contract_fields(document), "metadata": json.dumps(document)}
    with atomic_folder(run_dir) as staging:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, staging / "model.safetensors",
                  metadata=header)
        (staging / "run.yaml").write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        (staging / "split.json").write_text(json.dumps(split, indent=2))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return run_dir


def contract_fields(document: dict) -> dict[str, str]:
    """The flat string fields of the header that tools may read without vip (the 0.1.0 contract)."""
    fields = {"format": FORMAT, "format_version": FORMAT_VERSION, "vip_version": __version__}
    for key in ("method", "backbone", "arch", "pretrained", "class_names", "symptoms", "config"):
        value = document.get(key, "")
        fields[key] = value if isinstance(value, str) else json.dumps(value)
    fields["n_ctx"] = str((document.get("method_settings") or {}).get("n_ctx", 0))
    return fields


def read_checkpoint(run_dir: str | Path) -> tuple[dict, dict]:
    """Load the tensors and metadata of a run directory (or its model.safetensors).

    Returns:
        (tensors name -> tensor, metadata in the current format, with real types)
    Raises:
        VipError for a missing, unreadable or foreign file.
    """
    from safetensors import safe_open

    path = Path(run_dir)
    file = path / "model.safetensors" if path.is_dir() else path
    if not path.exists():
        raise VipError(f"run directory not found: {path}", "pass --model RUN_DIR written by `vip train`")
    if not file.is_file():
        raise VipError(f"{path} has no model.safetensors", "pass a run directory written by `vip train`")
    try:
        with safe_open(str(file), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:
        raise VipError(f"{file}: not a readable safetensors checkpoint ({type(error).__name__})",
                       "it may be damaged or not a vip run; retrain it") from None
    if header.get("format") != FORMAT:
        raise VipError(f"{file}: not a vip checkpoint (no vip metadata)", "pass a run directory written by `vip train`")
    version = header.get("format_version")
    if version not in READABLE_VERSIONS:
        raise VipError(f"{file}: checkpoint format {version} is not supported by vip {__version__} "
                       f"(formats {', '.join(READABLE_VERSIONS)})", "upgrade vip or retrain the run")
    try:
        if version == "1":
            metadata = upgrade_v1({k: (json.loads(v) if k in V1_JSON_FIELDS else v) for k, v in header.items()})
        else:
            metadata = json.loads(header["metadata"])
    except (KeyError, ValueError, TypeError, RecursionError) as error:
        raise VipError(f"{file}: the run's metadata is damaged ({type(error).__name__})", "retrain the run") from None
    return tensors, metadata


def upgrade_v1(meta: dict) -> dict:
    """A vip 0.1.0 header (flat strings) as format-2 metadata with real types.

    0.1.0 stored `n_ctx` and `class_specific_context` as text and the encoded prompts under `prompts`;
    they become the method's settings and state, so the run predicts exactly as it did.
    """
    upgraded = dict(meta)
    method = meta.get("method", "")
    settings = {}
    if method in ("vip", "vip-cop-only", "coop"):
        settings = {"n_ctx": int(meta.get("n_ctx", "4")), "class_specific_context": meta.get(
            "class_specific_context") == "True"}
    upgraded["method_settings"] = settings
    upgraded["method_state"] = {"prompts": meta["prompts"]} if meta.get("prompts") else {}
    return upgraded
