"""Outputs are checked before any work, and damaged run directories are one clear line (#14)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import (disk_fails_under, read_only_folder, error_lines, resave_run, sha256_without_dtypes,
                      tiny_train_args, writable_again)


def test_existing_out_is_refused_before_any_work(cli, isic_small, tiny_clip, tmp_path, no_work):
    (tmp_path / "run").mkdir()
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 1 and error_lines(err) == [f"error: run directory {tmp_path / 'run'} already exists "
                                              "(choose another --out or pass --force)"]


def test_out_naming_no_run_folder_is_refused_before_any_work(cli, isic_small, tiny_clip, tmp_path, no_work,
                                                            monkeypatch):
    """`--out .` (or `..`) put the lock at `./..lock` and was refused as "holds other files than a vip run";
    before, it failed after training."""
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    for given, example in ((".", "my-run"), ("..", "../my-run")):
        for extra in ((), ("--force",)):
            code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, given, *extra))
            assert code == 2 and error_lines(err) == [f"error: --out {given}: name the run folder itself, not the "
                                                      f"folder it goes in (such as --out {example})"]
    assert sorted(tmp_path.iterdir()) == before


def test_out_inside_a_file_is_refused_before_any_work(cli, isic_small, tiny_clip, tmp_path, no_work):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "file" / "run"))
    assert code == 1 and len(error_lines(err)) == 1 and "is a file" in err


def test_read_only_out_is_refused_before_any_work(cli, isic_small, tiny_clip, tmp_path, no_work):
    read_only_folder(tmp_path / "locked")
    try:
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "locked" / "run"))
    finally:
        writable_again(tmp_path / "locked")
    assert code == 1 and len(error_lines(err)) == 1
    assert f"cannot write to {tmp_path / 'locked'} (permission denied)" in err


def test_full_out_disk_is_refused_before_any_work(cli, isic_small, tiny_clip, tmp_path, no_work, full_disk):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 1 and len(error_lines(err)) == 1 and "free some space" in err
    assert "is nearly full: it has 1.0 MiB free, less than the 16.0 MiB vip needs to write there" in err


def test_out_disk_that_refuses_writes_is_refused_before_any_work(cli, isic_small, tiny_clip, tmp_path, no_work,
                                                                 monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 1 and len(error_lines(err)) == 1
    assert f"cannot write to {tmp_path} (no space left on the device)" in err


def test_benchmark_checks_its_out_before_any_work(cli, isic_small, tiny_clip, tmp_path, no_work, full_disk):
    code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none",
                       "--out", tmp_path / "bench", "--device", "cpu")
    assert code == 1 and len(error_lines(err)) == 1 and f"--out {tmp_path / 'bench'}" in err and "is nearly full" in err


def test_disk_filling_up_while_the_run_is_written_leaves_nothing(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    disk_fails_under(monkeypatch, "model.safetensors", errno.ENOSPC)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 1 and error_lines(err) == [
        f"error: cannot write run directory {tmp_path / 'run'} (no space left on the device); nothing was written "
        "(free some space or choose another --out, and run again)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isic"]  # no run, no staging folder


# --- damaged run metadata -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_clip):
    """One ViP run on the shared ISIC images, trained once for this module."""
    from conftest import copy_isic
    from vipcli.cli.main import main

    root = tmp_path_factory.mktemp("damaged")
    data = copy_isic(root / "isic", {"train": 6, "val": 4, "test": 4})
    before = os.environ.get("VIP_CACHE_DIR")
    os.environ["VIP_CACHE_DIR"] = str(root / "cache")
    try:
        assert main([str(a) for a in tiny_train_args(data, tiny_clip, root / "run")]) == 0
    finally:
        os.environ.pop("VIP_CACHE_DIR") if before is None else os.environ.update(VIP_CACHE_DIR=before)
    return root / "run", data


def _damage(run: Path, target: Path, edit=None, tensors=None) -> Path:
    """Copy `run` and damage its header: `edit(header, document)` changes the header's strings or the
    metadata document (format 2 keeps the whole document as JSON in the header's `metadata` field)."""
    shutil.copytree(run, target)
    with safe_open(str(run / "model.safetensors"), "pt") as handle:
        header = dict(handle.metadata())
        weights = {k: handle.get_tensor(k) for k in handle.keys()}
    document = json.loads(header["metadata"])
    raw = header["metadata"]
    if edit:
        edit(header, document)
    if header["metadata"] == raw:  # the edit changed the document, not the raw text
        header["metadata"] = json.dumps(document)
    if tensors:
        tensors(weights)
    resave_run(target / "model.safetensors", weights, header)  # its checksum too: to reach the checks after it
    return target


def _nan_context(weights):
    weights["context"][0, 0] = float("nan")


def _set(key, value):
    def edit(header, document):
        document[key] = value
    return edit


def _raw(text):
    def edit(header, document):
        header["metadata"] = text
    return edit


def _deep(header, document):
    nested = ["x"]
    for _ in range(18):
        nested = [nested]
    document["symptoms"] = {"melanoma": nested}


@pytest.mark.parametrize("edit, tensors, problem", [
    (_raw('{"class_names": ["melanoma", "nevus"'), None, "metadata field 'metadata' is not valid JSON"),
    (_raw("[" * 100_000 + "]" * 100_000), None, "metadata field 'metadata' is nested"),
    (_deep, None, "nested more than"),
    (_set("class_names", {"melanoma": 1}), None, "'class_names' is not a list of two or more distinct class names"),
    (_set("class_names", ["melanoma", "melanoma"]), None, "two or more distinct class names"),
    (_set("symptoms", ["asymmetric"]), None, "'symptoms' is not a mapping"),
    (_set("method_state", {"prompts": "dark"}), None, "'method_state.prompts' is not a list of prompt lists"),
    (_set("method_settings", {"n_ctx": "four"}), None, "'method_settings.n_ctx' is 'four'"),
    (_set("method", "magic"), None, "was trained with method 'magic' from vipcli "),
    (_set("backbone_describe", []), None, "'backbone_describe' is not a mapping"),
    (None, _nan_context, "tensor 'context' holds NaN or infinite values"),
])
def test_damaged_run_metadata_is_one_line_naming_the_run(cli, trained_run, tmp_path, edit, tensors, problem):
    run, data = trained_run
    damaged = _damage(run, tmp_path / "damaged", edit, tensors)
    image = sorted((data / "test" / "nevus").iterdir())[0]
    code, out, err = cli("predict", image, "--model", damaged, "--device", "cpu")
    assert code == 1 and out == "" and "Traceback" not in err and "bug in vip" not in err
    [line] = error_lines(err)
    assert line.startswith(f"error: {damaged}") and problem in line, line  # the run, or its model.safetensors


@pytest.mark.parametrize("where", ["weights", "symptoms"])
def test_a_flipped_bit_in_a_runs_file_is_refused_not_predicted_with(cli, trained_run, tmp_path, where):
    """A bit flipped on disk leaves a weight finite or a symptom readable ('sox' for 'six'): no other check can
    tell, and predictions would change without a word. The sha256 written with the run refuses it."""
    run, data = trained_run
    damaged = tmp_path / "flipped"
    shutil.copytree(run, damaged)
    file = damaged / "model.safetensors"
    raw = bytearray(file.read_bytes())
    header_size = int.from_bytes(raw[:8], "little")
    if where == "weights":
        raw[-1] ^= 0x01  # the last byte of the last tensor: a float's sign or exponent, still a number
    else:
        at = raw.index(b"symptoms", 8 + raw[8:8 + header_size].index(b'"metadata"'))
        raw[at + 20] ^= 0x01  # a letter of the first symptom in the metadata document, still valid JSON
    file.write_bytes(bytes(raw))
    image = sorted((data / "test" / "nevus").iterdir())[0]
    code, out, err = cli("predict", image, "--model", damaged, "--device", "cpu")
    assert code == 1 and out == "" and "Traceback" not in err
    assert error_lines(err) == [f"error: {file}: its weights or metadata changed after vip train wrote them (they do "
                                "not match the sha256 written with them) (the run directory is damaged; retrain it)"]
    code, _, err = cli("predict", image, "--model", run, "--device", "cpu")
    assert code == 0, err  # the run it was copied from is fine


def test_a_run_whose_checksum_names_no_dtypes_predicts_and_a_flip_in_it_is_still_refused(cli, trained_run, tmp_path):
    """Runs trained by vip builds of 2026-11-29 from 23:00 to 23:42 recorded content_sha256 without the
    tensors' dtypes: today's vip refused them as damaged ("retrain it"), though not a byte had changed."""
    import hashlib

    run, data = trained_run
    earlier = tmp_path / "earlier"
    shutil.copytree(run, earlier)
    file = earlier / "model.safetensors"
    with safe_open(str(file), "pt") as handle:
        header, weights = handle.metadata(), {name: handle.get_tensor(name) for name in handle.keys()}
    recorded = hashlib.sha256(f"{sha256_without_dtypes(weights)}\0{header['metadata']}".encode()).hexdigest()
    save_file(weights, str(file), metadata={**header, "content_sha256": recorded})
    image = sorted((data / "test" / "nevus").iterdir())[0]
    code, out, err = cli("predict", image, "--model", earlier, "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["predictions"] == json.loads(cli("predict", image, "--model", run, "--device", "cpu",
                                                            "--json")[1])["predictions"]
    raw = bytearray(file.read_bytes())
    raw[-1] ^= 0x01
    file.write_bytes(bytes(raw))
    code, _, err = cli("predict", image, "--model", earlier, "--device", "cpu")
    assert code == 1 and "do not match the sha256 written with them" in err


def test_damaged_metadata_of_a_0_1_0_run_is_one_line_too(cli, tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "run-v0.1.0"
    target = tmp_path / "old"
    shutil.copytree(fixture / "vip", target)
    with safe_open(str(target / "model.safetensors"), "pt") as handle:
        header = dict(handle.metadata())
        weights = {k: handle.get_tensor(k) for k in handle.keys()}
    header["n_ctx"] = "four"
    save_file(weights, target / "model.safetensors", metadata=header)
    code, out, err = cli("predict", fixture / "images", "--model", target, "--device", "cpu")
    [line] = error_lines(err)
    assert code == 1 and line.startswith(f"error: {target / 'model.safetensors'}: ") and "'n_ctx' is 'four'" in line


def test_a_disk_that_fills_up_during_a_sweep_is_one_line_and_the_sweep_resumes(cli, isic_small, tiny_clip, tmp_path,
                                                                                 monkeypatch):
    import vipcli.sweep_folder as sweep_folder

    real, calls = sweep_folder.write_atomic, []

    def full_after_two(path, text):
        calls.append(path)
        if len(calls) > 3:  # the first row's results.json, results.csv and summary.csv, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)

    out = tmp_path / "bench"
    args = ["benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none", "--methods",
            "zeroshot", "--seeds", "1,2", "--views", "2", "--out", out, "--device", "cpu", "--workers", "0"]
    monkeypatch.setattr(sweep_folder, "write_atomic", full_after_two)
    code, _, err = cli(*args)
    [line] = error_lines(err)
    assert code == 1 and "no space left on the device" in line and "run the same command again to resume" in line
    monkeypatch.setattr(sweep_folder, "write_atomic", real)
    code, _, err = cli(*args)
    assert code == 0 and "1 finished rows skipped" in err


def test_replacing_a_run_folder_never_collides_with_another_process_replacing_it(tmp_path, monkeypatch):
    """Two `--force` writers of one folder: a fixed `.NAME.old` let one rename onto the other's old folder
    ("Directory not empty") or delete it; each replacement now moves the old folder to a name of its own."""
    import vipcli.atomic as atomic
    from vipcli.atomic import atomic_folder

    target = tmp_path / "run"
    with atomic_folder(target) as staging:
        (staging / "v").write_text("first")
    remove = shutil.rmtree

    def meanwhile_another_process_moves_its_old_run_aside(path, *args, **kwargs):
        remove(path, *args, **kwargs)
        theirs = tmp_path / ".run.old"  # where the fixed name put the other writer's old run
        theirs.mkdir(exist_ok=True)
        (theirs / "v").write_text("theirs")

    monkeypatch.setattr(atomic.shutil, "rmtree", meanwhile_another_process_moves_its_old_run_aside)
    with atomic_folder(target) as staging:
        (staging / "v").write_text("second")
    assert (target / "v").read_text() == "second"
    assert (tmp_path / ".run.old" / "v").read_text() == "theirs"  # the other writer's folder is left alone


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_between_the_two_renames_of_a_replacement_leaves_the_new_folder_in_place(tmp_path,
                                                                                                monkeypatch, signum):
    """`--force` moves the old folder aside, then the new one into place. Ctrl-C or SIGTERM between the
    two renames left no folder under the name: the old one only as a hidden `.run.*.old` (which the next
    replacement deletes) and the new one removed with its staging folder. The swap now finishes first."""
    import os
    import signal

    import vipcli.atomic as atomic
    from vipcli.atomic import atomic_folder
    from vipcli.stop_signals import stop_signals_raise

    target = tmp_path / "run"
    with atomic_folder(target) as staging:
        (staging / "v").write_text("old")
    rename = os.replace

    def signal_after_moving_the_old_folder_aside(source, destination):
        rename(source, destination)
        if str(destination).endswith(".old"):
            os.kill(os.getpid(), getattr(signal, signum))

    monkeypatch.setattr(atomic.os, "replace", signal_after_moving_the_old_folder_aside)
    with pytest.raises(KeyboardInterrupt), stop_signals_raise():
        with atomic_folder(target) as staging:
            (staging / "v").write_text("new")
    assert (target / "v").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no hidden old or staging folder left


def test_a_failed_second_rename_of_a_replacement_puts_the_old_folder_back(tmp_path, monkeypatch):
    import os

    import vipcli.atomic as atomic
    from vipcli.atomic import atomic_folder

    target = tmp_path / "run"
    with atomic_folder(target) as staging:
        (staging / "v").write_text("old")
    rename = os.replace

    def placing_the_new_folder_fails(source, destination):
        if str(source).endswith(".partial"):
            raise OSError(5, "Input/output error")
        rename(source, destination)

    monkeypatch.setattr(atomic.os, "replace", placing_the_new_folder_fails)
    with pytest.raises(OSError):
        with atomic_folder(target) as staging:
            (staging / "v").write_text("new")
    assert (target / "v").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_old_run_folder_left_by_a_killed_replacement_is_removed_by_the_next_one(tmp_path):
    from vipcli.atomic import atomic_folder

    left = tmp_path / ".run.k1ll3d.old"  # a writer killed between moving the old run aside and placing the new
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"old")
    (tmp_path / ".other.x.old").mkdir()  # another folder's: not ours to remove
    with atomic_folder(tmp_path / "run") as staging:
        (staging / "v").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.x.old", "run"]


def test_a_staging_folder_left_by_a_killed_writer_is_removed_by_the_next_one(tmp_path):
    """SIGKILL (the OOM killer, Slurm after its grace period) while `vip data sort --copy` or `vip train`
    writes leaves its hidden `.NAME.*.partial` staging folder, as big as the output, behind for good."""
    import os
    import time

    from vipcli.atomic import ABANDONED_AFTER_S, atomic_folder

    left = tmp_path / ".run.k1ll3d.partial"
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".other.x.partial").mkdir()  # another folder's: not ours to remove
    fresh = tmp_path / ".run.st4rt.partial"  # a writer's that has made its folder and not yet locked it
    fresh.mkdir()
    long_ago = time.time() - ABANDONED_AFTER_S - 5
    os.utime(left, (long_ago, long_ago))
    with atomic_folder(tmp_path / "run") as staging:
        (staging / "v").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.x.partial", ".run.st4rt.partial", "run"]
    os.utime(fresh, (long_ago, long_ago))  # never locked, and untouched since: its writer was killed
    with atomic_folder(tmp_path / "run") as staging:
        (staging / "v").write_text("newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.x.partial", "run"]


def test_a_staging_folder_still_being_written_is_left_to_its_writer(tmp_path):
    from vipcli.atomic import atomic_folder

    target = tmp_path / "run"
    with atomic_folder(target) as first:  # the other writer, still at work
        (first / "v").write_text("first")
        with atomic_folder(target) as second:
            (second / "v").write_text("second")
        assert (first / "v").read_text() == "first"
    assert (target / "v").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_folder_replaced_through_a_link_leaves_no_old_link_behind(tmp_path):
    """`--out` a link to a folder (`vip data sort --force` into a link): the link was moved aside as
    `.NAME.*.old` and left there, since rmtree refuses a link; it is removed, the folder it led to kept."""
    from vipcli.atomic import atomic_folder

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "v").write_text("kept")
    (tmp_path / "run").symlink_to("real")
    with atomic_folder(tmp_path / "run") as staging:
        (staging / "v").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real", "run"]
    assert (tmp_path / "run" / "v").read_text() == "new" and (tmp_path / "real" / "v").read_text() == "kept"


def test_a_run_and_a_results_file_reach_the_disk_before_their_names_do(tmp_path, synced):
    """A node that loses power after `vip train` said it finished must not leave an empty run: every file is
    synced in its staging folder, then the folder that holds the run's new name."""
    import torch

    from vipcli.atomic import write_atomic
    from vipcli.checkpoint import write_run

    run = write_run(tmp_path / "runs" / "r", {"w": torch.ones(2)}, {"method": "vip"}, {"train": []}, {})
    staged = {path.name for path in synced if path.parent.name.endswith(".partial")}
    assert staged == {"model.safetensors", "run.yaml", "split.json", "metrics.json"}
    assert synced[-1] == run.parent  # the rename, last
    synced.clear()
    write_atomic(tmp_path / "results.json", "{}")
    assert [path.name.startswith(".results.json.") for path in synced] == [True, False]
    assert synced[-1] == tmp_path



def test_outputs_are_written_where_fsync_needs_a_handle_open_for_writing(tmp_path, monkeypatch):
    """Windows flushes a file only through a handle open for writing (its fsync of a read-only one fails
    with EBADF): files were opened read-only to be synced, so every run, results file and report failed there."""
    import fcntl

    import torch

    from vipcli import atomic
    from vipcli.checkpoint import write_run

    real = os.fsync

    def windows_fsync(fd):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real(fd)

    monkeypatch.setattr(atomic, "WINDOWS", True)
    monkeypatch.setattr(os, "fsync", windows_fsync)
    atomic.write_atomic(tmp_path / "results.json", "{}")
    run = write_run(tmp_path / "run", {"w": torch.ones(2)}, {"method": "vip"}, {"train": []}, {})
    assert (tmp_path / "results.json").read_text() == "{}" and (run / "model.safetensors").is_file()
