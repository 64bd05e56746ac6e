"""Run directories: model.safetensors + run.yaml + split.json + metrics.json, written atomically.

No pickle anywhere: tensors go to safetensors, everything else to YAML/JSON text.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from vipcli import __version__
from vipcli.errors import VipError

FORMAT = "vip-run"
FORMAT_VERSION = "1"
JSON_FIELDS = ("class_names", "symptoms", "prompts", "config", "backbone_describe", "schedule")


def _metadata_strings(metadata: dict) -> dict[str, str]:
    """safetensors header metadata must be str -> str: JSON-encode structured fields."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "vip_version": __version__}
    for key, value in metadata.items():
        header[key] = json.dumps(value) if key in JSON_FIELDS or not isinstance(value, str) else value
    return header


def write_run(run_dir: Path, tensors: dict, metadata: dict, split: dict, metrics: dict, force: bool = False) -> Path:
    """Write a complete run directory, or nothing: files go to a temp folder renamed at the end.

    Args:
        run_dir: destination folder (must not exist unless `force`).
        tensors: name -> tensor (see DESIGN.md for the ViP names).
        metadata: method, backbone, arch, pretrained, class_names, symptoms, n_ctx, config, ...
        split: exact files per split (and the few-shot subset).
        metrics: val/test metrics and timings.
    """
    import yaml
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    if run_dir.exists() and not force:
        raise VipError(f"run directory {run_dir} already exists", "choose another --out or pass --force")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=".partial", dir=run_dir.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, staging / "model.safetensors",
                  metadata=_metadata_strings(metadata))
        readable = {"format": FORMAT, "format_version": FORMAT_VERSION, "vip_version": __version__, **metadata}
        (staging / "run.yaml").write_text(yaml.safe_dump(readable, sort_keys=False, allow_unicode=True))
        (staging / "split.json").write_text(json.dumps(split, indent=2))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _swap_into_place(staging, run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return run_dir


def _swap_into_place(staging: Path, run_dir: Path) -> None:
    if run_dir.exists():
        old = run_dir.with_name(f".{run_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(run_dir, old)
        os.replace(staging, run_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, run_dir)


def read_checkpoint(run_dir: str | Path) -> tuple[dict, dict]:
    """Load the tensors and metadata of a run directory (or its model.safetensors).

    Returns:
        (tensors name -> tensor, metadata with JSON fields decoded)
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
    if header.get("format_version") != FORMAT_VERSION:
        raise VipError(f"{file}: checkpoint format {header.get('format_version')} is not supported "
                       f"by vip {__version__} (format {FORMAT_VERSION})", "retrain it with this version")
    metadata = {k: (json.loads(v) if k in JSON_FIELDS else v) for k, v in header.items()}
    return tensors, metadata
