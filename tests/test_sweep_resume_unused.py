"""Resuming a sweep with other --views, --epochs (the schedule) or --symptoms: accepted where no stored or new row
can depend on the setting (a zero-shot-only sweep, say), refused as before where one can."""

from __future__ import annotations

import json

from conftest import error_lines, two_symptom_packs


def test_a_resume_may_differ_in_settings_no_row_of_it_uses(cli, tmp_path):
    """A zero-shot sweep resumed with another --views, --epochs or --symptoms was refused, though none of its rows
    uses them. It now resumes; a setting that a stored or a new row uses is still refused."""
    from vipcli.lesion_world import write_dataset

    data, out = tmp_path / "data", tmp_path / "bench"
    write_dataset(data, n_per_class={"train": 3, "val": 2, "test": 2}, seed=0)
    first, second = two_symptom_packs(tmp_path / "packs")
    sweep = ("benchmark", "--data", data, "--backbone", "toy", "--workers", "0", "--out", out, "--json")
    code, _, err = cli(*sweep, "--methods", "zeroshot", "--seeds", "1", "--views", "1", "--epochs", "1",
                       "--symptoms", first)
    assert code == 0, err
    code, printed, err = cli(*sweep, "--methods", "zeroshot", "--seeds", "1,2", "--views", "2", "--epochs", "3",
                             "--symptoms", second)
    assert code == 0 and "1 finished rows skipped, 1 to run" in err, err
    assert json.loads(printed)["config"]["views"] == 2  # the settings of the last sweep, which its new rows used

    # linear-probe fits its own way (no schedule) and reads no symptoms, but uses the training images' views
    linear = ("--methods", "zeroshot,linear-probe", "--shots", "1", "--seeds", "1,2", "--views", "2")
    code, _, err = cli(*sweep, *linear, "--epochs", "5", "--symptoms", first)
    assert code == 0 and "2 finished rows skipped, 2 to run" in err, err
    code, _, err = cli(*sweep, *linear[:-1], "3")
    line, = error_lines(err)
    assert code == 1 and "was made with other settings (--views: stored 2, now 3)" in line, err
    code, _, err = cli(*sweep, "--methods", "zeroshot,symptom-zeroshot", "--seeds", "1", "--views", "2",
                       "--symptoms", second)  # symptom-zeroshot's new rows read them
    line, = error_lines(err)
    assert code == 1 and "was made with other settings (--symptoms: other symptoms for melanoma" in line, err
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 4


def test_the_split_seed_is_judged_from_the_data_folders_layout_before_the_data_is_read(cli, tmp_path, monkeypatch):
    """A resume with another --split-seed was refused (data vip splits) or its warning given (data with its own val/
    and test/) only once every image had been listed, hashed and the backbone loaded. The layout of the data folder
    alone decides whether vip carves a split, so both now come before either."""
    import vipcli.benchmark
    from vipcli.errors import VipError
    from vipcli.lesion_world import write_dataset
    from vipcli.settings import BackboneSettings

    write_dataset(tmp_path / "carved", n_per_class=6, seed=0, splits={"train": 1.0})  # train/ alone: vip splits it
    write_dataset(tmp_path / "own", n_per_class={"train": 2, "val": 2, "test": 2}, seed=0)
    sweep = ("benchmark", "--backbone", "toy", "--methods", "zeroshot", "--seeds", "1", "--workers", "0")
    assert cli(*sweep, "--data", tmp_path / "carved", "--out", tmp_path / "bench")[0] == 0

    def never(*args, **kwargs):
        raise VipError("read before the refusal")

    monkeypatch.setattr(vipcli.benchmark, "load_dataset", never)
    monkeypatch.setattr(BackboneSettings, "load", never)
    code, _, err = cli(*sweep, "--data", tmp_path / "carved", "--out", tmp_path / "bench", "--split-seed", "9")
    line, = error_lines(err)
    assert code == 1 and "was made with other settings (--split-seed: stored 1, now 9)" in line, err

    code, _, err = cli(*sweep, "--data", tmp_path / "own", "--out", tmp_path / "own-bench", "--split-seed", "5")
    assert code == 1 and "error: read before the refusal" in err, err
    assert f"warning: --split-seed 5 is not used: {tmp_path / 'own'} has its own val/ and test/ folders" in " ".join(
        err.split()), err


def test_carves_splits_agrees_with_how_the_data_is_read(tmp_path):
    """`carves_splits` (a listing of the data folder) says what `load_dataset` does, for each layout."""
    from vipcli.data import carves_splits, load_dataset
    from vipcli.lesion_world import write_dataset

    layouts = {"flat": {"train": 1.0}, "no-val": {"train": 0.7, "test": 0.3}, "own": {"train": 0.5, "val": 0.25,
                                                                                      "test": 0.25}}
    for name, splits in layouts.items():
        write_dataset(tmp_path / name, n_per_class=8, seed=0, splits=splits)
    for root in (tmp_path / "flat" / "train", tmp_path / "flat", tmp_path / "no-val", tmp_path / "own"):
        assert carves_splits(root) == load_dataset(root).carved, root
    assert not carves_splits(tmp_path / "own") and carves_splits(tmp_path / "no-val")
