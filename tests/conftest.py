"""Shared fixtures: tiny towers, small real-image datasets, an isolated cache, the CLI."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from llm_server import ScriptedLLM  # noqa: E402
from tiny_models import write_tiny_biomedclip_config, write_tiny_clip_config  # noqa: E402

# The real images beside the repository (../shared/data); VIP_TEST_DATA points the tests elsewhere.
SHARED_DATA = Path(os.environ.get("VIP_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
NO_SHARED_DATA = f"{SHARED_DATA} is not available (set VIP_TEST_DATA to the folder holding isic2017_mel_nv)"
ISIC = SHARED_DATA / "isic2017_mel_nv"


def pytest_configure(config):
    """Ctrl-C handled as Python's default, whoever started the suite: a shell runs a background job (`pytest &`,
    a CI step started with `&`) with SIGINT ignored, Python and vip leave an inherited SIG_IGN alone, and the
    tests that send SIGINT to a vip command then saw it finish (exit 0) instead of stopping (130)."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own feature/LLM cache and never reaches a model hub."""
    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VIP_DEBUG", raising=False)


@pytest.fixture(autouse=True)
def _no_freeze_after_loads(monkeypatch):
    """A test that runs `vipcli.cli.main.run()` in the test process turns on the `vip` process's collection and
    freeze after each backbone load (`registry.freeze_after_loads`); it stays that test's, so later tests load
    backbones as the Python interface does (and do not pay a full collection at each load)."""
    import vipcli.lean_imports
    import vipcli.registry

    monkeypatch.setattr(vipcli.registry, "freeze_after_loads", False)
    monkeypatch.setattr(vipcli.lean_imports, "enabled", False)  # ... and `vipcli.lean_imports`, likewise


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return write_tiny_clip_config(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_biomedclip(tmp_path_factory) -> Path:
    return write_tiny_biomedclip_config(tmp_path_factory.mktemp("tiny-biomedclip"))


def copy_isic(dest: Path, per_class: dict[str, int]) -> Path:
    """Copy the first N images of each split/class of the shared ISIC data (skip if absent)."""
    if not ISIC.is_dir():
        pytest.skip(NO_SHARED_DATA)
    for split, n in per_class.items():
        for cls in ("melanoma", "nevus"):
            target = dest / split / cls
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted((ISIC / split / cls).glob("*.jpg"))[:n]:
                shutil.copyfile(image, target / image.name)  # writable copies, whatever the source's mode
    return dest


@pytest.fixture
def isic_small(tmp_path) -> Path:
    """ISIC melanoma/nevus: 6 train, 4 val, 4 test images per class."""
    return copy_isic(tmp_path / "isic", {"train": 6, "val": 4, "test": 4})


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh folder on sys.path to install fake distributions into (`plugin_helpers` installs plugins there)."""
    import vipcli.plugins

    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(vipcli.plugins, "_warned_shadows", set())  # each test's process warns afresh
    yield folder
    for module in ("vip_plugin_example", "vip_sample_plugins", "vip_plugin_medical", "vip_method_example",
                   "broken_method", "vip_sample_methods", "wrong_kinds", "needs_missing_dep"):
        sys.modules.pop(module, None)


@pytest.fixture
def cli(capsys):
    """Run `vip ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from vipcli.cli.main import main

    def run(*args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def tiny_train_args(data: Path, config: Path, out: Path, *extra) -> list:
    """`vip train` arguments for a fast run on a tiny tower; an option in `extra` replaces the default's."""
    return ["train", *overridden(["--data", data, "--arch", config, "--pretrained", "none", "--shots", "4",
                                  "--epochs", "3", "--views", "2", "--out", out, "--device", "cpu", "--workers", "0"],
                                 extra)]


REPEATABLE_OPTIONS = {"--symptoms", "--method-option", "-o", "--disease", "--images"}  # vip takes each several times


def overridden(defaults: list, extra) -> list:
    """The arguments `defaults` then `extra`, each single-value option kept once, at its last value (an option
    followed by a value that is no option is a pair; flags and positionals stay as they are): vip refuses a
    single-value option given twice, and a test gives one again to override it."""
    tokens, items = [*defaults, *extra], []
    i = 0
    while i < len(tokens):
        token = str(tokens[i])
        if token.startswith("--") and i + 1 < len(tokens) and not str(tokens[i + 1]).startswith("--"):
            items.append((tokens[i], tokens[i + 1]))
            i += 2
        else:
            items.append((tokens[i],))
            i += 1
    last = {str(item[0]): k for k, item in enumerate(items) if len(item) == 2}
    return [part for k, item in enumerate(items)
            if len(item) == 1 or str(item[0]) in REPEATABLE_OPTIONS or last[str(item[0])] == k for part in item]


def symptoms_workspace(tmp_path: Path, monkeypatch, key: str) -> None:
    """Where a `vip symptoms generate` test runs: the cache in tmp_path/cache, the working folder tmp_path/work, a
    wide console, no VIP_DEBUG, and `key` in $OPENAI_API_KEY (a made-up key, which no output may show)."""
    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("VIP_DEBUG", raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")


def resave_run(file, weights: dict, header: dict) -> None:
    """Write a run's model.safetensors changed on purpose (a test's edit of its header or tensors), with the
    `content_sha256` of what it now holds, as a tool that edits runs must: a checksum left stale is refused
    before any other check could be reached."""
    from safetensors.torch import save_file

    from vipcli.checkpoint import content_sha256

    if "content_sha256" in header:
        header = {**header, "content_sha256": content_sha256(header["metadata"], weights)}
    save_file(weights, str(file), metadata=header)


def sha256_without_dtypes(tensors: dict) -> str:
    """The checksum of named tensors as vip builds of 2026-11-29 from 22:32 to 23:42 wrote it (runs'
    `content_sha256`, cache entries' `features_sha256`): each one's name, shape and bytes, no dtype."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name} {list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def two_symptom_packs(folder: Path) -> tuple[Path, Path]:
    """Two {class: [symptoms]} files for the lesion world that differ (a resume with other --symptoms)."""
    folder.mkdir()
    first, second = folder / "first.yaml", folder / "second.yaml"
    first.write_text("melanoma: [irregular border, several colours]\nnevus: [round, even colour]\n")
    second.write_text("melanoma: [asymmetric shape]\nnevus: [small and round]\n")
    return first, second


def modules_left_loaded(script: str, names: tuple[str, ...]) -> list[str]:
    """Which of the top-level modules `names` a fresh Python process has imported after running `script`."""
    import json
    import subprocess

    probe = f"{script}\nimport json, sys\nprint(json.dumps(sorted(m for m in {list(names)!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines of a command's stderr (progress and notes are other lines)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


_IMMUTABLE: list[Path] = []  # what `read_only` marked immutable; made mutable again after each test


def read_only(path: Path) -> None:
    """Make an existing file or folder read-only: by its mode, or where root ignores modes by the immutable
    attribute (`chattr +i`: writes fail with EPERM, "permission denied"), undone after the test. Skips the
    test where neither binds."""
    import subprocess

    path.chmod(0o555 if path.is_dir() else 0o444)
    if not os.access(path, os.W_OK):
        return
    path.chmod(0o755 if path.is_dir() else 0o644)
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        _IMMUTABLE.append(path)
        if not os.access(path, os.W_OK):
            return
    pytest.skip("running as root where chattr +i cannot be set: a read-only path is still writable")


def read_only_folder(folder: Path) -> None:
    """Create `folder` (with its parents) if missing and make it read-only (see `read_only`)."""
    folder.mkdir(parents=True, exist_ok=True)
    read_only(folder)


def writable_again(path: Path) -> None:
    """Undo `read_only`: drop the immutable attribute if it set one, and give the owner write access back."""
    import subprocess

    if path in _IMMUTABLE:
        _IMMUTABLE.remove(path)
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(autouse=True)
def _mutable_again():
    """After each test, drop the immutable attributes `read_only` set (else its tmp folder could not be removed)."""
    yield
    while _IMMUTABLE:
        writable_again(_IMMUTABLE[-1])


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a backbone is loaded or an image decoded (an output check came too late)."""
    import vipcli.features
    import vipcli.registry

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(vipcli.registry, "load_backbone", refuse)
    monkeypatch.setattr(vipcli.features, "load_image", refuse)


@pytest.fixture
def full_disk(monkeypatch):
    """shutil.disk_usage reports 1 MiB free everywhere."""
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))


@pytest.fixture
def llm_server():
    """A scripted chat-completions server on 127.0.0.1, stopped after the test."""
    server = ScriptedLLM().start()
    yield server
    server.stop()


def disk_fails_under(monkeypatch, part: str, code_: int) -> None:
    """Writes of files whose path holds `part` fail as on a full (or read-only) disk: Python's writes
    with an OSError, safetensors' own writer (`save_file`) with the SafetensorError it raises there."""
    import pathlib

    import safetensors.torch
    from safetensors import SafetensorError

    real_save, real_write = safetensors.torch.save_file, pathlib.Path.write_bytes

    def failing_save(tensors, filename, metadata=None):
        if part in str(filename):
            raise SafetensorError(f"Error while serializing: I/O error: {os.strerror(code_)} (os error {code_})")
        return real_save(tensors, filename, metadata=metadata)

    def failing_write(self, data):
        if part in str(self):
            raise OSError(code_, os.strerror(code_), str(self))
        return real_write(self, data)

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    monkeypatch.setattr(pathlib.Path, "write_bytes", failing_write)


@pytest.fixture
def synced(monkeypatch):
    """The paths os.fsync was called on, in order (Linux: a descriptor's path from /proc)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name a descriptor's file")
    calls, real = [], os.fsync

    def record(fd):
        calls.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls

