"""Resuming a sweep with other --views, --epochs (the schedule) or --symptoms: accepted where no stored or new row
can depend on the setting (a zero-shot-only sweep, say), refused as before where one can."""

from __future__ import annotations

import json

from conftest import error_lines


def _packs(folder) -> tuple:
    """Two {class: [symptoms]} files for the lesion world that differ."""
    folder.mkdir()
    first, second = folder / "first.yaml", folder / "second.yaml"
    first.write_text("melanoma: [irregular border, several colours]\nnevus: [round, even colour]\n")
    second.write_text("melanoma: [asymmetric shape]\nnevus: [small and round]\n")
    return first, second


def test_a_resume_may_differ_in_settings_no_row_of_it_uses(cli, tmp_path):
    """A zero-shot sweep resumed with another --views, --epochs or --symptoms was refused, though none of its rows
    uses them. It now resumes; a setting that a stored or a new row uses is still refused."""
    from vipcli.lesion_world import write_dataset

    data, out = tmp_path / "data", tmp_path / "bench"
    write_dataset(data, n_per_class={"train": 3, "val": 2, "test": 2}, seed=0)
    first, second = _packs(tmp_path / "packs")
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
