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

    from vipcli.preflight import describe_os_error

    run_dir = Path(run_dir)
    if run_dir.exists() and not force:
        raise VipError(f"run directory {run_dir} already exists", "choose another --out or pass --force")
    staging = None
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=".partial", dir=run_dir.parent))
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, staging / "model.safetensors",
                  metadata=_metadata_strings(metadata))
        readable = {"format": FORMAT, "format_version": FORMAT_VERSION, "vip_version": __version__, **metadata}
        (staging / "run.yaml").write_text(yaml.safe_dump(readable, sort_keys=False, allow_unicode=True))
        (staging / "split.json").write_text(json.dumps(split, indent=2))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _swap_into_place(staging, run_dir)
    except OSError as error:  # the disk filled up or went read-only during the run
        raise VipError(f"cannot write run directory {run_dir} ({describe_os_error(error)}); nothing was written",
                       "free some space or choose another --out, and run again") from None
    finally:
        if staging is not None:
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
    metadata = decode_metadata(file, header)
    check_metadata(file, metadata)
    check_tensors(file, tensors)
    return tensors, metadata


# --- validation of what a run directory holds: one line naming the run and what is wrong ---------

MAX_NESTING = 16  # deepest JSON nesting any field of vip's metadata needs (config: 3)
_DAMAGED = "the run directory is damaged; retrain it"


def _damaged(file: Path, what: str) -> VipError:
    return VipError(f"{file}: {what}", _DAMAGED)


def _depth(value, limit: int, level: int = 0) -> int:
    """Nesting depth of a decoded JSON value, stopping as soon as it exceeds `limit`."""
    if level > limit or not isinstance(value, (dict, list)):
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_depth(child, limit, level + 1) for child in children), default=level + 1)


def decode_metadata(file: Path, header: dict) -> dict:
    """The header's metadata with its JSON fields decoded; VipError for invalid or absurdly nested JSON."""
    metadata = {}
    for key, value in header.items():
        if key not in JSON_FIELDS:
            metadata[key] = value
            continue
        try:
            decoded = json.loads(value)
        except RecursionError:
            raise _damaged(file, f"metadata field '{key}' is nested too deeply") from None
        except ValueError as error:
            raise _damaged(file, f"metadata field '{key}' is not valid JSON ({error.msg})") from None
        if _depth(decoded, MAX_NESTING) > MAX_NESTING:
            raise _damaged(file, f"metadata field '{key}' is nested more than {MAX_NESTING} levels deep")
        metadata[key] = decoded
    return metadata


def _is_strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_metadata(file: Path, metadata: dict) -> None:
    """VipError naming the first field of the run's metadata that has the wrong type or value."""
    from vipcli.methods import METHODS

    for key in ("method", "backbone"):
        if not isinstance(metadata.get(key), str) or not metadata[key]:
            raise _damaged(file, f"metadata field '{key}' is missing or not text")
    if metadata["method"] not in METHODS:
        raise _damaged(file, f"unknown method {metadata['method']!r} in its metadata")
    names = metadata.get("class_names")
    if not _is_strings(names) or len(names) < 2 or len(set(names)) < len(names) or not all(names):
        raise _damaged(file, "metadata field 'class_names' is not a list of two or more distinct class names")
    symptoms = metadata.get("symptoms")
    if symptoms is None:
        symptoms = metadata["symptoms"] = {}
    if not isinstance(symptoms, dict) or not all(_is_strings(v) for v in symptoms.values()):
        raise _damaged(file, "metadata field 'symptoms' is not a mapping of class name to a list of symptoms")
    if METHODS[metadata["method"]].prompts == "symptoms":
        missing = [name for name in names if not symptoms.get(name)]
        if missing:
            raise _damaged(file, f"metadata field 'symptoms' has no symptoms for class {missing[0]!r}")
    for key in ("config", "schedule", "backbone_describe"):
        if key in metadata and not isinstance(metadata[key], dict):
            raise _damaged(file, f"metadata field '{key}' is not a mapping")
    if "prompts" in metadata and not (isinstance(metadata["prompts"], list)
                                      and all(_is_strings(p) for p in metadata["prompts"])):
        raise _damaged(file, "metadata field 'prompts' is not a list of prompt lists")
    n_ctx = metadata.get("n_ctx", "4")
    if not isinstance(n_ctx, str) or not n_ctx.isdigit() or int(n_ctx) > 1000:
        raise _damaged(file, f"metadata field 'n_ctx' is {n_ctx!r}, not a number of context vectors")
    if metadata.get("class_specific_context", "False") not in ("True", "False"):
        raise _damaged(file, "metadata field 'class_specific_context' is not True or False")
    for key in ("arch", "arch_option", "pretrained", "pretrained_option", "backbone_fingerprint"):
        if not isinstance(metadata.get(key, ""), str):
            raise _damaged(file, f"metadata field '{key}' is not text")


def check_tensors(file: Path, tensors: dict) -> None:
    """VipError if a weight is not a floating-point tensor or holds NaN or infinite values."""
    import torch

    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise _damaged(file, f"tensor '{name}' is {tensor.dtype}, not floating point")
        if not bool(torch.isfinite(tensor).all()):
            raise _damaged(file, f"tensor '{name}' holds NaN or infinite values")
