"""Rough edges of a new user's first hour: a data folder given where a run was wanted, `vip predict --out`'s counts
with unreadable images, the val split vip carves from train/, unreadable files alike taken for duplicates, and the
training images --shots never opens."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import error_lines, overridden
from lesion_runs import make_lesions, trained_world


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A lesion world (8 test images per class) and a toy-backbone run trained on it, once for the module."""
    return trained_world(tmp_path_factory, {"train": 8, "val": 6, "test": 8})


def _toy_args(data: Path, out: Path, *extra) -> list:
    """`vip train` on the toy backbone, fast: a linear probe on 2 shots, one epoch."""
    return ["train", *overridden(["--data", data, "--backbone", "toy", "--method", "linear-probe", "--shots", "2",
                                  "--epochs", "1", "--views", "1", "--no-cache", "--workers", "0", "--out", out], extra)]


def _bench_args(data: Path, out: Path) -> list:
    """`vip benchmark` on the toy backbone, fast: a linear probe on 2 shots, one seed."""
    return ["benchmark", "--data", data, "--backbone", "toy", "--methods", "linear-probe", "--shots", "2",
            "--seeds", "1", "--views", "1", "--no-cache", "--workers", "0", "--out", out]


# --- 1. a data folder where a run was wanted --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["splits", "flat"])
def test_a_data_folder_given_as_the_run_says_what_it_is_and_to_train_on_it_first(cli, tmp_path, layout):
    """It said `DATA has no model.safetensors (pass a run directory written by `vip train`)` and `DATA is neither a
    run directory (model.safetensors) nor a benchmark folder (results.json) (pass a folder written by ...)`."""
    data = make_lesions(tmp_path / "data", {"train": 2, "val": 1, "test": 1})
    if layout == "flat":
        data = Path(shutil.move(data / "train", tmp_path / "flat"))
    image = next((data / "nevus").iterdir()) if layout == "flat" else next((data / "test" / "nevus").iterdir())
    train_first = f"train a model on it first with `vip train --data {data} --out RUN`"
    code, _, err = cli("predict", image, "--model", data)
    assert code == 1 and error_lines(err) == [
        f"error: {data} is a data folder (2 classes: melanoma, nevus), not a run directory ({train_first}, then "
        "pass --model RUN)"]
    code, _, err = cli("report", data)
    assert code == 1 and error_lines(err) == [
        f"error: {data} is a data folder (2 classes: melanoma, nevus), not a run directory or a benchmark folder "
        f"({train_first}, then `vip report RUN`)"]


def test_a_split_folder_given_as_the_run_names_the_data_folder_to_train_on(cli, tmp_path):
    """A class folder (one class) is no data folder: it keeps the message of any other folder."""
    data = make_lesions(tmp_path / "data", {"train": 2, "val": 1, "test": 1})
    code, _, err = cli("report", data / "test")
    assert code == 1 and error_lines(err) == [
        f"error: {data / 'test'} is the test/ split of the data folder {data} (2 classes: melanoma, nevus), not a "
        f"run directory or a benchmark folder (train a model on it first with `vip train --data {data} --out RUN`, "
        "then `vip report RUN`)"]
    code, _, err = cli("report", data / "test" / "nevus")
    assert code == 1 and "data folder" not in err and "is neither a run directory" in err


# --- 2. vip predict --out: counts that add up ----------------------------------------------------------------


def test_predict_out_counts_unreadable_images_apart_from_those_predicted(cli, toy_run, tmp_path):
    """It said `p.jsonl: 16 of 16 images, 16 predicted now` and then `3 of 16 images could not be read`."""
    data, run = toy_run
    images = tmp_path / "images"
    shutil.copytree(data / "test", images)
    for broken in sorted((images / "nevus").iterdir())[:3]:
        broken.write_bytes(b"not an image")
    out = tmp_path / "p.jsonl"
    code, _, err = cli("predict", images, "--model", run, "--out", out, "--workers", "0")
    assert code == 1
    assert f"{out}: 16 of 16 images, 13 predicted now, 3 unreadable" in err.splitlines(), err
    assert error_lines(err)[-1].startswith(f"error: 3 of 16 images could not be read; {out} records why")
    code, _, err = cli("predict", images, "--model", run, "--out", out, "--workers", "0")  # tried again, still broken
    assert code == 1
    assert f"{out}: 16 of 16 images, 13 already there, 0 predicted now, 3 unreadable" in err.splitlines(), err


# --- 3. the val split carved from train/ ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_a_val_split_carved_from_train_is_said_in_one_info_line(cli, tmp_path, command):
    """Data with train/ and test/ but no val/ (Kermany's chest X-rays): nothing said that vip took val from train/."""
    data = make_lesions(tmp_path / "data", {"train": 10, "val": 1, "test": 2})
    shutil.rmtree(data / "val")
    args = _toy_args if command == "train" else _bench_args
    code, _, err = cli(*args(data, tmp_path / "out"))
    assert code == 0, err
    assert [line for line in err.splitlines() if "carves" in line] == [
        f"{data} has no val/, so vip carves it from train/: 2 images, 10% of each class (seed 1)"]


def test_val_and_test_carved_from_class_folders_are_said_together(cli, tmp_path):
    """Both carved from a folder of class folders; data with all three splits says nothing of carving."""
    data = make_lesions(tmp_path / "data", {"train": 10, "val": 1, "test": 1})
    code, _, err = cli(*_toy_args(data, tmp_path / "out"))
    assert code == 0 and "carve" not in err, err
    flat = Path(shutil.move(data / "train", tmp_path / "flat"))
    code, _, err = cli(*_toy_args(flat, tmp_path / "out-flat", "--seed", "3"))
    assert code == 0, err
    assert [line for line in err.splitlines() if "carves" in line] == [
        f"{flat} has no train/, val/ or test/ folders, so vip carves val and test from its class folders: 2 and 4 "
        "images, 10% and 20% of each class (seed 3)"]


# --- 4. unreadable files alike are no duplicates -------------------------------------------------------------


def test_identical_unreadable_files_in_two_splits_are_named_as_unreadable_not_as_duplicates(cli, tmp_path):
    """Two empty files (train/ and test/) were `the same image (sha256 e3b0c44298fc) ...` and then skipped; a
    readable image in both is still named as one."""
    data = make_lesions(tmp_path / "data", {"train": 4, "val": 1, "test": 2})
    (data / "train" / "nevus" / "empty.png").write_bytes(b"")
    (data / "test" / "nevus" / "empty.png").write_bytes(b"")
    shutil.copyfile(data / "train" / "nevus" / "nevus_00000.png", data / "test" / "nevus" / "copy.png")
    code, _, err = cli(*_toy_args(data, tmp_path / "out", "--shots", "all"))
    assert code == 0, err
    duplicates = [line for line in err.splitlines() if "the same image" in line]
    assert len(duplicates) == 1 and "copy.png" in duplicates[0] and "empty.png" not in duplicates[0], err
    assert "warning: 1 image is in more than one split or class" in err
    skipped = [line for line in err.splitlines() if "empty.png" in line]
    assert skipped == [f"warning: skipped {split}/nevus/empty.png in {data}: empty file (0 bytes)"
                       for split in ("test", "train")]


# --- 5. training images --shots never opens ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_the_list_of_unreadable_files_says_how_many_training_images_shots_left_unopened(cli, tmp_path, command):
    """With --shots 2 of 10 images a class, the skipped list named a broken test image and said nothing of the 16
    training images never opened, among which a broken one would go unnamed."""
    data = make_lesions(tmp_path / "data", {"train": 10, "val": 2, "test": 2})
    (data / "test" / "nevus" / "broken.png").write_bytes(b"not an image")
    args = _toy_args if command == "train" else _bench_args
    code, _, err = cli(*args(data, tmp_path / "out"))
    assert code == 0, err
    lines = err.splitlines()
    skipped = lines.index(f"warning: skipped test/nevus/broken.png in {data}: not an image Pillow can read")
    assert lines[skipped + 1] == ("note: 16 training images were not opened (for --shots vip reads only the first 2 "
                                  "readable images of each class), so unreadable files among them are not listed "
                                  "above"), err
    if command == "train":  # every training image read: no note
        code, _, err = cli(*_toy_args(data, tmp_path / "all", "--shots", "all"))
        assert code == 0 and "skipped" in err and "not opened" not in err, err




# --- 6. a misspelt --backbone, --device or --symptoms, named before the data is read ------------------------------


_DATA_COMMANDS = {  # each command on the toy backbone, without the options the mistake replaces
    "train": _toy_args,
    "benchmark": _bench_args,
    "symptoms rank": lambda data, out: ["symptoms", "rank", "--data", data, "--backbone", "toy", "--no-cache",
                                        "--workers", "0"],
    "symptoms rank --prune": lambda data, out: ["symptoms", "rank", "--data", data, "--backbone", "toy", "--prune",
                                                "--out", out, "--no-cache", "--workers", "0"],
}


@pytest.mark.parametrize("command", list(_DATA_COMMANDS))
@pytest.mark.parametrize("mistake, code, error", [
    (["--backbone", "tyo"], 2, "error: can't find backbone 'tyo'; did you mean 'toy'? (installed backbones: "),
    (["--device", "gpu"], 2, "error: unknown device 'gpu' (choose one of auto, cpu, cuda, cuda:N (N the GPU's "
                             "number) or mps)"),
    (["--symptoms", "melanom"], 2, "error: --symptoms melanom: no such file, folder or shipped pack; did you mean "
                                   "'melanoma'? (shipped packs: "),
    (["--symptoms", "packs/mine.yaml"], 1, "error: --symptoms packs/mine.yaml: no such file or folder (check the "
                                           "path, or give a shipped pack's name: vip symptoms list)"),
], ids=["backbone", "device", "symptoms-name", "symptoms-path"])
def test_a_misspelt_backbone_device_or_symptoms_is_one_line_before_the_data_is_read(cli, tmp_path, command, mistake,
                                                                                   code, error):
    """Each was named only after the data was listed and every image hashed: on the ISIC images, after the five
    warnings about their duplicate images, and on a large data set minutes later."""
    data = make_lesions(tmp_path / "data", {"train": 4, "val": 1, "test": 2})
    shutil.copyfile(data / "train" / "nevus" / "nevus_00000.png", data / "test" / "nevus" / "copy.png")
    out = tmp_path / "out"
    exit_code, _, err = cli(*overridden(_DATA_COMMANDS[command](data, out), mistake))
    assert exit_code == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(error), err  # no warning about the data's copied image first
    assert not out.exists()


# --- 7. a disk with a little space left ----------------------------------------------------------------------


def test_an_out_disk_under_the_space_vip_needs_says_what_is_free_and_what_is_needed(cli, tmp_path, monkeypatch):
    """With 32 KiB free it said `the disk holding ... is full (0.0 MiB free)`: neither full nor nothing free."""
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 32 * 1024, 32 * 1024))
    data = make_lesions(tmp_path / "data", {"train": 2, "val": 1, "test": 1})
    code, _, err = cli(*_toy_args(data, tmp_path / "run"))
    assert code == 1 and error_lines(err) == [
        f"error: --out {tmp_path / 'run'}: the disk holding {tmp_path} is nearly full: it has 32.0 KiB free, less "
        "than the 16.0 MiB vip needs to write there (free some space or choose another --out)"], err
    assert not (tmp_path / "run").exists()
