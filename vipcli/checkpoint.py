"""Run directories: model.safetensors + run.yaml + split.json + metrics.json, written atomically.

No pickle anywhere: tensors go to safetensors, everything else to YAML/JSON text. The run directory
is the source of truth: `vip predict` rebuilds the method from what is stored here (its settings,
its prompts and searched values, its tensors), never from the defaults of the vip that reads it.

Format 2 (vip 0.2) keeps the whole metadata document as one JSON string in the safetensors header
(`metadata`), so every value keeps its type; the flat string fields of format 1 (method, backbone,
arch, pretrained, class_names, symptoms, n_ctx, config) are still written beside it for tools, and
`content_sha256` (of the metadata and the tensors) lets every read refuse a file whose bytes changed
after it was written. Format 1 (vip 0.1.0) stored flat strings; it is read and converted by
`upgrade_v1`.
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


def write_run(run_dir: Path, tensors: dict, metadata: dict, split: dict, metrics: dict, force: bool = False,
              extra=None) -> Path:
    """Write a complete run directory, or nothing: files go to a staging folder renamed at the end.

    Args:
        run_dir: destination folder (must not exist unless `force`).
        tensors: name -> tensor, as the method's `state_tensors()` gives them.
        metadata: method, method_settings, method_state, backbone, arch, class_names, symptoms, config...
        split: exact files per split (and the few-shot subset).
        metrics: val/test metrics and timings.
        extra: an optional callable(staging folder) that adds files (e.g. the backbone's config files).
    """
    import yaml
    from vipcli.atomic import atomic_folder, safetensors_bytes
    from vipcli.preflight import describe_os_error, held_open, write_failed

    run_dir = Path(run_dir)
    if run_dir.exists() and not force:
        raise VipError(f"run directory {run_dir} already exists", "choose another --out or pass --force")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "vip_version": __version__, **metadata}
    model = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = {**contract_fields(document), "metadata": json.dumps(document)}
    header["content_sha256"] = content_sha256(header["metadata"], model)
    try:
        with atomic_folder(run_dir) as staging:
            (staging / "model.safetensors").write_bytes(safetensors_bytes(model, header))  # a full disk: OSError
            # UTF-8 with "\n" on every system (as they are read): Windows' default, its code page, cannot hold
            # a class or symptom in another script (a UnicodeEncodeError once training was over), and the rest
            # came out in bytes other systems do not read as UTF-8
            (staging / "run.yaml").write_bytes(yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode())
            (staging / "split.json").write_bytes(json.dumps(split, indent=2).encode())
            (staging / "metrics.json").write_bytes(json.dumps(metrics, indent=2).encode())
            if extra is not None:
                extra(staging)
    except OSError as error:  # the disk filled up or went read-only during the run
        if held_open(run_dir, error):  # (--force on Windows, a file of the old run open in another program)
            raise write_failed(run_dir, error, "nothing was written") from None
        raise VipError(f"cannot write run directory {run_dir} ({describe_os_error(error)}); nothing was written",
                       "free some space or choose another --out, and run again") from None
    return run_dir


def content_sha256(metadata: str, tensors: dict, named_dtypes: bool = True) -> str:
    """The sha256 a run's header records of its metadata JSON and its tensors, checked on every read: a bit
    flipped on disk in a weight or a symptom's words would otherwise change predictions without a word.
    `named_dtypes=False`: as runs trained on 2026-11-29 from 23:00 to 23:42 recorded it (`tensors_sha256`)."""
    import hashlib

    from vipcli.digests import tensors_sha256

    return hashlib.sha256(f"{tensors_sha256(tensors, named_dtypes=named_dtypes)}\0{metadata}".encode()).hexdigest()


def contract_fields(document: dict) -> dict[str, str]:
    """The flat string fields of the header that tools may read without vip (the 0.1.0 contract)."""
    fields = {"format": FORMAT, "format_version": FORMAT_VERSION, "vip_version": __version__}
    for key in ("method", "backbone", "arch", "pretrained", "class_names", "symptoms", "config"):
        value = document.get(key, "")
        fields[key] = value if isinstance(value, str) else json.dumps(value)
    fields["n_ctx"] = str((document.get("method_settings") or {}).get("n_ctx", 0))
    return fields


def _run_folder_hint(file: Path) -> str:
    """How to name the run instead of one of its files (run.yaml, metrics.json), or any run at all."""
    if (file.parent / "model.safetensors").is_file():
        return f"pass --model {file.parent}, the run's folder"
    return "pass --model RUN_DIR written by `vip train`"


def runs_inside(folder: Path) -> list[Path]:
    """The run directories (folders holding model.safetensors) directly inside `folder`, by name; none when it
    cannot be read."""
    try:
        return sorted((p for p in folder.iterdir() if (p / "model.safetensors").is_file()), key=lambda p: p.name)
    except OSError:
        return []


def _no_model_hint(folder: Path) -> str:
    """The fix for `--model FOLDER` without model.safetensors: the run(s) one level down (`vip-demo`, `runs`), or
    what a benchmark folder is instead; else to pass a run directory."""
    from vipcli import shell
    from vipcli.console import first_few

    runs = runs_inside(folder)
    if len(runs) == 1:
        return f"it holds the run {runs[0]}: pass --model {shell.quote(runs[0])}"
    if runs:
        return f"it holds {len(runs)} runs, {first_few([str(run) for run in runs], 3)}: pass --model with one of them"
    if (folder / "results.json").is_file():
        return (f"it is a benchmark folder, which keeps no model: pass --model RUN_DIR written by `vip train`; "
                f"`vip report {shell.quote(folder)}` shows the benchmark")
    return "pass a run directory written by `vip train`"


def refuse_data_folder(folder: Path, then: str, instead: str = "a run directory") -> None:
    """VipError when `folder`, given where a run was wanted, is the data a run is trained on (class folders of
    images): what it is, and the `vip train` to run on it first, `then` what to do with the run it writes."""
    from vipcli import shell
    from vipcli.data import data_folder_seen

    seen = data_folder_seen(folder)
    if seen is not None:
        data, what = seen
        raise VipError(f"{folder} is {what}, not {instead}",
                       f"train a model on it first with `vip train --data {shell.quote(data)} --out RUN`, then {then}")


def run_lock_file(run_dir: str | Path) -> Path:
    """`.NAME.lock` beside a run folder: what `vip train --out RUN_DIR` holds while it trains (the run folder
    itself appears only when the run is saved, whole, at the end)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def refuse_run_in_training(run_dir: str | Path) -> None:
    """One VipError when `run_dir` is missing because a `vip train --out run_dir` is still training it: a
    reader asked for it too early, not the wrong path. Nothing when no live process holds its lock."""
    from vipcli.locks import lock_holder

    holder = lock_holder(run_lock_file(run_dir))
    if holder is not None:
        raise VipError(f"{run_dir} is still being trained: `vip train`{holder} writes the run there when it "
                       "finishes", "wait for it to finish, then run this command again")


def checkpoint_file(run_dir: str | Path) -> Path:
    """The model.safetensors of a run directory (or the file itself, given one), without reading it.

    Raises:
        VipError: no such folder, a folder without model.safetensors, or another file of a run (run.yaml).
    """
    path = Path(run_dir)
    file = path / "model.safetensors" if path.is_dir() else path
    if not path.exists():
        refuse_run_in_training(path)
        raise VipError(f"run directory not found: {path}", "pass --model RUN_DIR written by `vip train`")
    if not file.is_file():
        refuse_data_folder(path, "pass --model RUN")
        raise VipError(f"{path} has no model.safetensors", _no_model_hint(path))
    if file.suffix != ".safetensors":
        raise VipError(f"{path} is a file, not a run directory", _run_folder_hint(path))
    return file


def read_checkpoint(run_dir: str | Path) -> tuple[dict, dict]:
    """Load the tensors and metadata of a run directory (or its model.safetensors).

    Returns:
        (tensors name -> tensor, metadata in the current format, with real types)
    Raises:
        VipError for a missing, unreadable or foreign file.
    """
    from safetensors import safe_open

    file = checkpoint_file(run_dir)
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
    if version == "1":
        metadata = upgrade_v1(decode_metadata(file, header, V1_JSON_FIELDS), file)
    else:
        if "metadata" not in header:
            raise _damaged(file, "the header has no 'metadata' field")
        recorded = header.get("content_sha256")  # None: a run of vip 0.2 written before runs recorded it
        if recorded is not None and recorded != content_sha256(header["metadata"], tensors) and \
                recorded != content_sha256(header["metadata"], tensors, named_dtypes=False):
            raise _damaged(file, "its weights or metadata changed after vip train wrote them (they do not match "
                                 "the sha256 written with them)")
        metadata = decode_metadata(file, {"metadata": header["metadata"]}, ("metadata",))["metadata"]
        if not isinstance(metadata, dict):
            raise _damaged(file, "the header's 'metadata' field is not a mapping")
    check_metadata(file, metadata)
    check_tensors(file, tensors)
    return tensors, metadata


def upgrade_v1(meta: dict, file: Path | str = "model.safetensors") -> dict:
    """A vip 0.1.0 header (flat strings) as format-2 metadata with real types.

    0.1.0 stored `n_ctx` and `class_specific_context` as text and the encoded prompts under `prompts`;
    they become the method's settings and state, so the run predicts exactly as it did.
    """
    upgraded = dict(meta)
    method = meta.get("method", "")
    settings = {}
    if method in ("vip", "vip-cop-only", "coop"):
        n_ctx, specific = meta.get("n_ctx", "4"), meta.get("class_specific_context", "False")
        if not isinstance(n_ctx, str) or not n_ctx.isdigit() or int(n_ctx) > 1000:
            raise _damaged(file, f"metadata field 'n_ctx' is {n_ctx!r}, not a number of context vectors")
        if specific not in ("True", "False"):
            raise _damaged(file, "metadata field 'class_specific_context' is not True or False")
        settings = {"n_ctx": int(n_ctx), "class_specific_context": specific == "True"}
    upgraded["method_settings"] = settings
    upgraded["method_state"] = {"prompts": meta["prompts"]} if meta.get("prompts") else {}
    return upgraded


# --- validation of what a run directory holds: one line naming the run and what is wrong ---------

MAX_NESTING = 16  # deepest JSON nesting any field of vip's metadata needs (config: 4)
_DAMAGED = "the run directory is damaged; retrain it"


def _damaged(file: Path, what: str) -> VipError:
    return VipError(f"{file}: {what}", _DAMAGED)


def _depth(value, limit: int, level: int = 0) -> int:
    """Nesting depth of a decoded JSON value, stopping as soon as it exceeds `limit`."""
    if level > limit or not isinstance(value, (dict, list)):
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_depth(child, limit, level + 1) for child in children), default=level + 1)


def decode_metadata(file: Path, header: dict, json_fields) -> dict:
    """The header with its JSON fields decoded; VipError for invalid or absurdly nested JSON."""
    metadata = {}
    for key, value in header.items():
        if key not in json_fields:
            metadata[key] = value
            continue
        try:
            decoded = json.loads(value)
        except RecursionError:
            raise _damaged(file, f"metadata field '{key}' is nested too deeply") from None
        except ValueError as error:
            raise _damaged(file, f"metadata field '{key}' is not valid JSON ({getattr(error, 'msg', error)})") from None
        if _depth(decoded, MAX_NESTING) > MAX_NESTING:
            raise _damaged(file, f"metadata field '{key}' is nested more than {MAX_NESTING} levels deep")
        metadata[key] = decoded
    return metadata


def _is_strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_metadata(file: Path, metadata: dict) -> None:
    """VipError naming the first field of the run's metadata that has the wrong type or value."""
    for key in ("method", "backbone"):
        if not isinstance(metadata.get(key), str) or not metadata[key]:
            raise _damaged(file, f"metadata field '{key}' is missing or not text")
    from vipcli.methods import METHODS

    from vipcli.provenance import check_installed

    check_installed(file, "method", metadata["method"], metadata, METHODS)  # names the distribution to install
    names = metadata.get("class_names")
    if not _is_strings(names) or len(names) < 2 or len(set(names)) < len(names) or not all(names):
        raise _damaged(file, "metadata field 'class_names' is not a list of two or more distinct class names")
    symptoms = metadata.get("symptoms")
    if symptoms is None:
        symptoms = metadata["symptoms"] = {}
    if not isinstance(symptoms, dict) or not all(_is_strings(v) for v in symptoms.values()):
        raise _damaged(file, "metadata field 'symptoms' is not a mapping of class name to a list of symptoms")
    for key in ("config", "schedule", "backbone_describe", "method_settings", "method_state"):
        if key in metadata and not isinstance(metadata[key], dict):
            raise _damaged(file, f"metadata field '{key}' is not a mapping")
    check_settings(file, metadata["method"], metadata.get("method_settings") or {})
    prompts = (metadata.get("method_state") or {}).get("prompts")
    if prompts is not None and not (isinstance(prompts, list) and all(_is_strings(p) for p in prompts)):
        raise _damaged(file, "metadata field 'method_state.prompts' is not a list of prompt lists")
    for key in ("method_distribution", "backbone_distribution"):  # {name, version}; absent before vip 0.2.1
        value = metadata.get(key)
        if value is not None and not (isinstance(value, dict) and all(isinstance(value.get(k), str)
                                                                      for k in ("name", "version"))):
            raise _damaged(file, f"metadata field '{key}' is not a mapping with a name and a version")
    for key in ("arch", "arch_option", "pretrained", "pretrained_option", "backbone_fingerprint"):
        if not isinstance(metadata.get(key, ""), str):
            raise _damaged(file, f"metadata field '{key}' is not text")
    from vipcli.image_fit import run_fit

    run_fit(metadata, str(file))  # absent (an earlier vip's run): crop; a fit this vip does not know: refused


def check_settings(file: Path, method_id: str, settings: dict) -> None:
    """VipError naming a stored method setting whose value does not have its field's type."""
    import typing

    from vipcli.methods import method_class
    from vipcli.methods.base import settings_fields

    cls = method_class(method_id)
    hints = typing.get_type_hints(cls.Settings)
    for name in settings_fields(cls.Settings):
        if name not in settings:
            continue
        value, kind = settings[name], hints[name]
        allowed = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(kind)
        wrong = allowed is not None and (not isinstance(value, allowed) or (kind is not bool and isinstance(value, bool)))
        if wrong:
            raise _damaged(file, f"metadata field 'method_settings.{name}' is {value!r}, not {kind.__name__}")


def check_tensors(file: Path, tensors: dict) -> None:
    """VipError if a weight is not a floating-point tensor or holds NaN or infinite values."""
    import torch

    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise _damaged(file, f"tensor '{name}' is {tensor.dtype}, not floating point")
        if not bool(torch.isfinite(tensor).all()):
            raise _damaged(file, f"tensor '{name}' holds NaN or infinite values")
