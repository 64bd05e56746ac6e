"""`vip benchmark`: every method on shared features, results files, resume, and bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import ISIC, NO_SHARED_DATA, error_lines, overridden, tiny_train_args
from vipcli.errors import VipError

ALL_METHODS = "zeroshot,symptom-zeroshot,linear-probe,coop,vip,vip-cop-only,vip-mep-only"


def bench_args(data: Path, config: Path, out: Path, *extra) -> list:
    """`vip benchmark` arguments for a fast sweep on a tiny tower; an option in `extra` replaces the default's."""
    return ["benchmark", *overridden(["--data", data, "--arch", config, "--pretrained", "none", "--epochs", "2",
                                      "--views", "2", "--out", out, "--device", "cpu", "--workers", "0"], extra)]


def image_count(folder: Path) -> int:
    return len(list(folder.rglob("*.jpg")))


@pytest.fixture
def flat_data(tmp_path) -> Path:
    """ISIC images as DIR/<class>/* (no split folders): 10 per class."""
    if not ISIC.is_dir():
        pytest.skip(NO_SHARED_DATA)
    for cls in ("melanoma", "nevus"):
        (tmp_path / "flat" / cls).mkdir(parents=True)
        for image in sorted((ISIC / "train" / cls).glob("*.jpg"))[:10]:
            shutil.copy(image, tmp_path / "flat" / cls / image.name)
    return tmp_path / "flat"


def table_cells(stdout: str) -> dict[str, list[str]]:
    """method -> the cells of its line, for every table line that starts with a method name."""
    lines = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0].rstrip("*") in ALL_METHODS.split(","):
            lines.setdefault(parts[0].rstrip("*"), []).append(parts[1:])
    return lines


def test_every_method_runs_once_per_image_and_view_and_files_agree_with_the_table(
        cli, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "bench"
    code, stdout, stderr = cli(*bench_args(isic_small, tiny_clip, out, "--methods", ALL_METHODS, "--shots", "1,2",
                                           "--seeds", "1,2"))
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json", "shots.png", "split.json",
                                                     "summary.csv"]
    document = json.loads((out / "results.json").read_text())
    rows = document["rows"]
    # zero-shot methods: one row per seed at shots 0; the others: one per shots and seed
    assert len(rows) == 2 * 2 + 5 * 2 * 2
    assert {r["method"] for r in rows} == set(ALL_METHODS.split(","))
    # which installed code made the rows: every built-in method and backbone comes with vip itself
    from vipcli import __version__

    assert document["config"]["backbone_distribution"] == {"name": "vipcli", "version": __version__}
    assert all(r["method_distribution"] == {"name": "vipcli", "version": __version__} for r in rows)
    for row in rows:
        assert 0 <= row["test_accuracy"] <= 100 and 0 <= row["test_macro_f1"] <= 100
        learns = row["method"] not in ("zeroshot", "symptom-zeroshot")
        assert row["n_train"] == (2 * row["shots"] if learns else 0) and row["shots"] == (row["shots_used"])
    with open(out / "results.csv", newline="") as stream:
        csv_rows = list(csv.DictReader(stream))
    assert [(r["method"], r["shots"], r["seed"], float(r["test_accuracy"])) for r in csv_rows] == [
        (r["method"], str(r["shots"]), str(r["seed"]), r["test_accuracy"]) for r in rows]
    # the printed tables show the summary stored in results.json: accuracy first, then macro-F1; with 4 test images
    # of each class balanced accuracy is accuracy, which one line says rather than a third table
    assert ("test balanced accuracy %: the same figures as test accuracy % (4 test images in each class; balanced "
            "accuracy differs only where classes are uneven)") in stdout.splitlines()
    cells = table_cells(stdout)
    for entry in document["summary"]:
        accuracy, f1 = cells[entry["method"]]
        column = 0 if entry["shots"] in (0, 1) else 1
        assert accuracy[column] == f"{entry['accuracy_mean']:.2f}±{entry['accuracy_std']:.2f}"
        assert f1[column] == f"{entry['macro_f1_mean']:.2f}±{entry['macro_f1_std']:.2f}"
        assert entry["seeds"] == [1, 2]
    with open(out / "summary.csv", newline="") as stream:  # the printed figures, for a paper's table
        summary = {(r["method"], r["shots"]): r for r in csv.DictReader(stream)}
    assert len(summary) == len(document["summary"])
    for method, (accuracy, f1) in cells.items():
        for column, shots in enumerate(("1", "2")):
            line = summary.get((method, shots)) or summary[method, "0"]
            assert accuracy[column] == f"{line['test_accuracy_mean_pct']}±{line['test_accuracy_std_pct']}"
            assert f1[column] == f"{line['test_macro_f1_mean_pct']}±{line['test_macro_f1_std_pct']}"
            assert (line["n_seeds"], line["seeds"]) == ("2", "1 2")
    assert (out / "shots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the encoder ran once per image and view for the whole sweep, only on the training images some
    # row uses (the union of the seeds' few-shot subsets), and not at all on a warm cache
    n_train, n_eval = image_count(isic_small / "train"), image_count(isic_small / "val") + image_count(isic_small / "test")
    orders = json.loads((out / "split.json").read_text())["few_shot_order"]
    used = {path for seed in orders.values() for paths in seed.values() for path in paths}
    assert len(used) < n_train
    assert f"{len(used) * 2 + len(used) + n_eval} image views encoded" in stdout
    code, again, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "warm", "--methods", "vip,linear-probe",
                                          "--shots", "2", "--seeds", "1", "--json"))
    assert code == 0, stderr
    warm = json.loads(again)
    assert warm["encoded_views"] == 0 and warm["trained"] == 2
    # same features, subset, seed and schedule: the same row as in the big sweep
    previous = {(r["method"], r["shots"], r["seed"]): r["test_accuracy"] for r in rows}
    assert all(previous[(r["method"], 2, 1)] == r["test_accuracy"] for r in warm["rows"])


def test_a_killed_sweep_resumes_where_it_stopped(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    import vipcli.benchmark as benchmark

    out = tmp_path / "bench"
    real_run_row, calls = benchmark.run_row, []

    def run_then_die(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[0])
        return real_run_row(*args, **kwargs)

    monkeypatch.setattr(benchmark, "run_row", run_then_die)
    args = ("--methods", "zeroshot,linear-probe", "--shots", "2", "--seeds", "1,2")
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *args))
    assert code == 130 and "interrupted" in stderr
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files left
    stored = json.loads((out / "results.json").read_text())["rows"]
    assert len(stored) == 2
    monkeypatch.setattr(benchmark, "run_row", real_run_row)
    code, stdout, stderr = cli(*bench_args(isic_small, tiny_clip, out, *args, "--methods",
                                           "zeroshot,linear-probe,coop"))
    assert code == 0, stderr
    assert "2 finished rows skipped, 4 to run" in stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 6 and rows[:2] == stored  # finished rows kept untouched (same timestamps)
    assert "4 rows run, 2 resumed from earlier" in stdout


def test_a_stop_while_the_results_are_written_leaves_the_three_files_with_the_same_rows(cli, isic_small, tiny_clip,
                                                                                     tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) between the writes of results.json and results.csv stopped the sweep there:
    results.csv (the file a notebook reads) lacked the row results.json held. The three files are now
    written together, and the stop comes after the last."""
    import signal

    import vipcli.sweep_folder as sweep_folder

    real = sweep_folder.write_atomic

    def stop_after_the_json(path, text):
        real(path, text)
        if path.name == "results.json":
            signal.raise_signal(signal.SIGINT)  # as a Ctrl-C arriving right after the first file

    monkeypatch.setattr(sweep_folder, "write_atomic", stop_after_the_json)
    out = tmp_path / "bench"
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, "--methods", "zeroshot", "--seeds", "1,2"))
    assert code == 130 and "interrupted" in stderr
    stored = json.loads((out / "results.json").read_text())["rows"]
    rows = [(r["method"], str(r["shots"]), str(r["seed"])) for r in stored]
    with open(out / "results.csv", newline="") as stream:
        written = [(r["method"], r["shots"], r["seed"]) for r in csv.DictReader(stream)]
    assert written == rows == [("zeroshot", "0", "1")]
    with open(out / "summary.csv", newline="") as stream:
        assert [(r["method"], r["seeds"]) for r in csv.DictReader(stream)] == [("zeroshot", "1")]


def test_extending_a_reported_sweep_says_its_report_is_out_of_date(cli, isic_small, tiny_clip, tmp_path):
    """A sweep extended with a seed redrew shots.png but left report.html, the page a student opens, showing
    the rows before, without a word."""
    out = tmp_path / "bench"
    args = bench_args(isic_small, tiny_clip, out, "--methods", "linear-probe", "--shots", "1")
    assert cli(*args, "--seeds", "1")[0] == 0 and cli("report", out)[0] == 0
    code, _, stderr = cli(*args, "--seeds", "1,2")
    assert code == 0 and f"warning: {out}/report.html does not show the 1 row run now (run `vip report {out}` to " \
                         "redraw it)" in stderr.splitlines()
    code, _, stderr = cli(*args, "--seeds", "1,2")  # nothing ran: the report is of every row
    assert code == 0 and "report.html" not in stderr


def test_shots_png_draws_every_stored_row_not_only_the_last_commands(cli, isic_small, tiny_clip, tmp_path,
                                                                     monkeypatch):
    """A sweep extended by one cell (`--shots 1 --seeds 2`) redrew shots.png as that one point, over the figure of
    the whole sweep, while results.json, summary.csv and `vip report` kept every row."""
    import vipcli.plots

    out = tmp_path / "bench"
    args = bench_args(isic_small, tiny_clip, out, "--methods", "linear-probe")
    assert cli(*args, "--shots", "1,2", "--seeds", "1")[0] == 0
    drawn, real_plot_shots = [], vipcli.plots.plot_shots

    def plot_and_keep(rows, *args, **kwargs):
        drawn.append(sorted((row["shots"], row["seed"]) for row in rows))
        return real_plot_shots(rows, *args, **kwargs)

    monkeypatch.setattr(vipcli.plots, "plot_shots", plot_and_keep)
    assert cli(*args, "--shots", "1", "--seeds", "2")[0] == 0
    assert drawn == [[(1, 1), (1, 2), (2, 1)]]
    assert (out / "shots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_extending_rows_another_version_of_the_method_made_warns_that_figures_may_average_both(cli, isic_small,
                                                                                            tiny_clip, tmp_path):
    """vip upgraded between two days of a sweep: the new rows of a method joined rows its earlier code made,
    in the same cells, without a word (each row records its `method_distribution`, and nothing read it)."""
    from vipcli import __version__

    out = tmp_path / "bench"
    args = bench_args(isic_small, tiny_clip, out, "--methods", "zeroshot,linear-probe", "--shots", "1")
    assert cli(*args, "--seeds", "1")[0] == 0
    document = json.loads((out / "results.json").read_text())
    for row in document["rows"]:
        if row["method"] == "linear-probe":
            row["method_distribution"] = {"name": "vipcli", "version": "0.0.9"}
    (out / "results.json").write_text(json.dumps(document))
    code, _, stderr = cli(*args, "--seeds", "1,2")
    assert code == 0, stderr
    assert [line for line in stderr.splitlines() if "made by" in line] == [
        f"warning: the stored 'linear-probe' rows in {out} were made by vipcli 0.0.9, the rows run now by vipcli "
        f"{__version__}: a figure may average both (pass --force to run every row with vipcli {__version__})"]
    code, _, stderr = cli(*args, "--seeds", "1,2")  # nothing runs now: nothing is added to those cells
    assert code == 0 and "made by" not in stderr


def test_a_forced_sweep_that_stops_leaves_no_figure_of_the_rows_it_discarded(cli, isic_small, tiny_clip, tmp_path,
                                                                              monkeypatch):
    """shots.png is drawn at a sweep's end: a --force sweep stopped after its first row left the old
    sweep's figure (and the report of `vip report`) beside a results.json of one new row."""
    import vipcli.benchmark as benchmark

    out = tmp_path / "bench"
    args = bench_args(isic_small, tiny_clip, out, "--methods", "zeroshot,linear-probe", "--shots", "2", "--seeds", "1,2")
    assert cli(*args)[0] == 0 and (out / "shots.png").exists()
    assert cli("report", out)[0] == 0 and (out / "report.html").exists()
    real_run_row, calls = benchmark.run_row, []

    def run_then_die(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(args[0])
        return real_run_row(*args, **kwargs)

    monkeypatch.setattr(benchmark, "run_row", run_then_die)
    code, _, stderr = cli(*args, "--force")
    assert code == 130 and len(json.loads((out / "results.json").read_text())["rows"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json", "split.json", "summary.csv"]
    monkeypatch.setattr(benchmark, "run_row", real_run_row)
    code, _, stderr = cli(*args)
    assert code == 0 and "1 finished rows skipped, 3 to run" in stderr and (out / "shots.png").exists()


@pytest.mark.parametrize("more", [False, True])
def test_a_forced_sweep_of_other_images_stopped_before_its_first_row_leaves_no_wrong_split(
        cli, isic_small, tiny_clip, tmp_path, monkeypatch, more):
    """A --force sweep writes its split.json before its first row replaces results.json: stopped between
    the two, the old sweep's rows sat beside a split.json of other images, which its rerun kept (nothing
    to run) or merged into its own (`more`: rows to run), so split.json named the wrong files."""
    import vipcli.benchmark as benchmark

    out, other = tmp_path / "bench", tmp_path / "other"
    shutil.copytree(isic_small, other)
    next((other / "train" / "melanoma").iterdir()).unlink()
    args = ("--methods", "zeroshot,linear-probe", "--shots", "2", "--seeds", "1")
    assert cli(*bench_args(isic_small, tiny_clip, out, *args))[0] == 0
    kept = json.loads((out / "split.json").read_text())

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "run_row", die)
    code, _, _ = cli(*bench_args(other, tiny_clip, out, *args, "--force"))
    assert code == 130 and json.loads((out / "split.json").read_text())["root"] == str(other.resolve())
    monkeypatch.undo()
    again = args + (("--seeds", "1,2") if more else ())
    code, _, err = cli(*bench_args(isic_small, tiny_clip, out, *again))
    assert code == 0 and "split.json" not in err, err
    split = json.loads((out / "split.json").read_text())
    assert {key: split[key] for key in ("root", "train", "val", "test")} == \
        {key: kept[key] for key in ("root", "train", "val", "test")}
    assert split["few_shot_order"]["1"] == kept["few_shot_order"]["1"] and split["unreadable"] == kept["unreadable"]


def test_a_forced_sweep_stopped_before_its_first_row_keeps_the_orders_of_the_other_seeds_rows(
        cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """A --force sweep of seed 1, stopped before its first row replaced results.json, rewrote split.json
    with seed 1's few-shot order alone: seed 2's rows, still in results.json, lost theirs. It now carries
    the orders of the other seeds over from the old split.json (same images), until its first row
    replaces results.json: a forced sweep that finishes records its own seeds' orders only."""
    import vipcli.benchmark as benchmark

    out = tmp_path / "bench"
    args = ("--methods", "linear-probe", "--shots", "2")
    assert cli(*bench_args(isic_small, tiny_clip, out, *args, "--seeds", "1,2"))[0] == 0
    kept = json.loads((out / "split.json").read_text())["few_shot_order"]
    assert sorted(kept) == ["1", "2"]

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "run_row", die)
    assert cli(*bench_args(isic_small, tiny_clip, out, *args, "--seeds", "1", "--force"))[0] == 130
    monkeypatch.undo()
    assert json.loads((out / "split.json").read_text())["few_shot_order"] == kept
    code, stdout, err = cli(*bench_args(isic_small, tiny_clip, out, *args, "--seeds", "1,2"))
    assert code == 0 and "0 rows run, 2 resumed" in stdout, err
    assert json.loads((out / "split.json").read_text())["few_shot_order"] == kept
    assert cli(*bench_args(isic_small, tiny_clip, out, *args, "--seeds", "1", "--force"))[0] == 0
    assert json.loads((out / "split.json").read_text())["few_shot_order"] == {"1": kept["1"]}


def test_a_sweep_resumed_in_part_keeps_the_stored_rows_in_their_order(cli, isic_small, tiny_clip, tmp_path):
    """A rerun of part of a finished sweep (nothing to run) rewrote results.json with the rows it names last."""
    out = tmp_path / "bench"
    args = bench_args(isic_small, tiny_clip, out, "--shots", "2", "--seeds", "1")
    assert cli(*args, "--methods", "zeroshot,linear-probe")[0] == 0
    before = [(r["method"], r["shots"], r["seed"]) for r in json.loads((out / "results.json").read_text())["rows"]]
    assert [row[0] for row in before] == ["zeroshot", "linear-probe"]
    code, stdout, stderr = cli(*args, "--methods", "zeroshot")
    assert code == 0 and "0 rows run, 1 resumed" in stdout, stderr
    after = [(r["method"], r["shots"], r["seed"]) for r in json.loads((out / "results.json").read_text())["rows"]]
    assert after == before


def test_a_finished_sweep_run_again_repairs_its_csv_and_names_a_lost_split(cli, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "bench"
    args = bench_args(isic_small, tiny_clip, out, "--methods", "zeroshot,linear-probe", "--shots", "2", "--seeds", "1")
    assert cli(*args)[0] == 0
    whole = (out / "results.csv").read_text()
    (out / "results.csv").write_text(whole[:40] + "\njunk,line\n")
    (out / "split.json").unlink()
    code, _, err = cli(*args)
    assert code == 0, err
    assert (out / "results.csv").read_text() == whole
    assert "split.json is missing or unreadable" in err and "--force" in err


def test_a_second_sweep_into_the_same_out_is_refused_while_the_first_runs(cli, isic_small, tiny_clip, tmp_path):
    """Two sweeps into one folder each rewrote results.json from their own rows: the last dropped the other's."""
    from vipcli.benchmark import SWEEP_LOCK
    from vipcli.locks import output_lock

    out = tmp_path / "bench"
    out.mkdir()
    sweep = bench_args(isic_small, tiny_clip, out, "--methods", "coop", "--shots", "1", "--seeds", "1")
    with output_lock(out, lock=out / SWEEP_LOCK):  # as a sweep running in another process holds it
        code, _, stderr = cli(*sweep)
    assert code == 1 and error_lines(stderr) == [
        f"error: {out} is being written by another vip process (pid {os.getpid()} on host {socket.gethostname()}) "
        "(wait for it to finish, or pass another --out)"]
    assert list(out.iterdir()) == []  # nothing written, the lock gone with its holder
    code, _, stderr = cli(*sweep)
    assert code == 0, stderr
    assert "results.json" in os.listdir(out) and SWEEP_LOCK not in os.listdir(out)
    assert not (tmp_path / "bench.lock").exists()  # nothing beside the folder either


def test_a_sweep_that_stops_early_leaves_no_folder_it_created(cli, isic_small, tmp_path):
    out = tmp_path / "new" / "bench"
    code, _, stderr = cli("benchmark", "--data", isic_small, "--arch", "no-such-arch", "--pretrained", "none",
                          "--methods", "coop", "--out", out, "--device", "cpu")
    assert code != 0 and len(error_lines(stderr)) == 1, stderr
    assert not (tmp_path / "new").exists()  # its parent too (`out` alone was removed; `new/` stayed)


def test_resume_refuses_other_settings_unless_forced(cli, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "bench"
    base = ("--methods", "linear-probe", "--shots", "1", "--seeds", "1")
    assert cli(*bench_args(isic_small, tiny_clip, out, *base))[0] == 0
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--views", "3"))
    assert code == 1 and "(--views: stored 2, now 3)" in stderr and "--force" in stderr
    code, stdout, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--views", "3", "--force", "--json"))
    assert code == 0, stderr
    assert json.loads(stdout)["skipped"] == 0 and json.loads((out / "results.json").read_text())["config"]["views"] == 3


def test_resume_refuses_images_replaced_in_place(cli, isic_small, tiny_clip, tmp_path):
    """Same paths and labels, other pixels: resuming would mix rows tested on the old and new images."""
    out = tmp_path / "bench"
    base = ("--methods", "linear-probe", "--shots", "1", "--seeds", "1")
    assert cli(*bench_args(isic_small, tiny_clip, out, *base))[0] == 0
    first, second = sorted((isic_small / "test" / "nevus").iterdir())[:2]
    first.write_bytes(second.read_bytes())
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 1 and "the images' content: some image files were replaced (or could not be read) since" in stderr, stderr
    assert "--force" in stderr


def test_resume_refuses_a_vip_that_decodes_images_by_other_rules(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """Same files, same bytes, but a vip whose decoding rules changed (bit depth, orientation, DICOM) would
    have mixed rows of other pixels; a sweep begun before the rules were recorded resumes as before."""
    import vipcli.images

    out = tmp_path / "bench"
    base = ("--methods", "linear-probe", "--shots", "1", "--seeds", "1")
    assert cli(*bench_args(isic_small, tiny_clip, out, *base))[0] == 0
    stored = json.loads((out / "results.json").read_text())
    monkeypatch.setattr(vipcli.images, "DEPTH_POLICY", vipcli.images.DEPTH_POLICY + " (changed)")
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 1 and "how images are decoded: this vip reads images by other rules than the vip that " \
                         "began it" in stderr and "--force" in stderr, stderr
    del stored["config"]["decoding"]
    (out / "results.json").write_text(json.dumps(stored))
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 0, stderr


@pytest.mark.parametrize("recorded", ["b788d501d1b0d29b", "96db11acecc4b904", "23b8a0557c01bf4b"])
def test_a_sweep_begun_by_a_build_of_2026_11_29_resumes(cli, isic_small, tiny_clip, tmp_path, monkeypatch, recorded):
    """vip builds of 2026-11-29 recorded the decoding rules in other forms (joined by newlines until 11:19,
    with the DICOM rule of then until 11:50, with today's until 12:25): today's vip refused their sweeps of
    JPEGs and PNGs as begun by a vip that reads images otherwise, though the rules were the same."""
    import vipcli.images

    out = tmp_path / "bench"
    base = ("--methods", "linear-probe", "--shots", "1", "--seeds", "1")
    assert cli(*bench_args(isic_small, tiny_clip, out, *base))[0] == 0
    stored = json.loads((out / "results.json").read_text())
    stored["config"]["decoding"] = recorded
    (out / "results.json").write_text(json.dumps(stored))
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base))
    assert code == 0, stderr
    monkeypatch.setattr(vipcli.images, "DEPTH_POLICY", vipcli.images.DEPTH_POLICY + " (changed)")
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base))
    assert code == 1 and "how images are decoded" in stderr, stderr


def test_an_earlier_decoding_digest_with_the_dicom_rule_of_then_is_not_taken_for_dicom_files():
    """The DICOM rule changed at 11:50 that day: a digest recorded with the earlier one matches images
    other than DICOM files only; today's rule in the earlier form matches both."""
    from vipcli.features import decoding_digest, same_decoding

    assert same_decoding("b788d501d1b0d29b", decoding_digest([])) and same_decoding("96db11acecc4b904", decoding_digest([]))
    assert not same_decoding("b788d501d1b0d29b", decoding_digest()) and not same_decoding("96db11acecc4b904", decoding_digest())
    assert same_decoding("23b8a0557c01bf4b", decoding_digest()) and not same_decoding("0123456789abcdef", decoding_digest([]))


def test_resume_refuses_images_whose_readability_changed(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """Same bytes, same rules, but a file that could not be read when the sweep began and can now (a DICOM
    plugin installed since, a vip that reads more files), or the other way round: new rows would have been
    trained and tested on other images than the stored rows, silently."""
    import vipcli.features
    from vipcli.errors import ImageError

    real_load = vipcli.features.load_image
    hidden = sorted((isic_small / "test" / "nevus").iterdir())[0]

    def load_but_one(path, **options):
        if Path(path).name == hidden.name:
            raise ImageError(path, "no decoder for it")
        return real_load(path, **options)

    out = tmp_path / "bench"
    base = ("--methods", "linear-probe", "--shots", "1", "--no-cache")
    monkeypatch.setattr(vipcli.features, "load_image", load_but_one)
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1"))
    assert code == 0 and f"skipped {hidden.relative_to(isic_small)} in {isic_small}: no decoder for it" in stderr, stderr
    monkeypatch.setattr(vipcli.features, "load_image", real_load)
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 1 and error_lines(stderr) == [
        f"error: {out}: 1 image its stored rows were made without can be read now ({hidden}); new rows would use "
        "other images (pass --force to run the whole sweep again with them, or choose another --out)"], stderr
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 1  # nothing run, nothing rewritten
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1", "--force"))
    assert code == 0, stderr

    monkeypatch.setattr(vipcli.features, "load_image", load_but_one)  # read when the sweep began; not now
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 1 and error_lines(stderr)[-1] == (
        f"error: {out}: 1 image its stored rows were made with cannot be read now ({hidden}: no decoder for it) "
        "(restore them, or the decoder that read them; or pass --force to run the sweep again without them)"), stderr
    monkeypatch.setattr(vipcli.features, "load_image", real_load)
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 0, stderr  # the same images as the stored row: resumed
    assert json.loads((out / "split.json").read_text())["unreadable"] == {}


def test_resume_with_the_data_folder_given_another_way(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """The same folder given relative, absolute, or from another working directory is the same sweep:
    it resumes (it was refused as "files were added, removed or moved since"), and an image unreadable
    then and now (split.json names it as the run read it) is not taken for one that became unreadable."""
    (isic_small / "test" / "nevus" / "zz_broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "bench"
    base = ("--methods", "linear-probe", "--shots", "1", "--no-cache")
    monkeypatch.chdir(tmp_path)
    code, _, stderr = cli(*bench_args(Path("isic"), tiny_clip, out, *base, "--seeds", "1"))
    assert code == 0 and "skipped test/nevus/zz_broken.jpg in isic: " in stderr, stderr
    code, stdout, stderr = cli(*bench_args(isic_small.resolve(), tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 0 and "1 row run, 1 resumed from earlier" in stdout, stderr
    monkeypatch.chdir(isic_small / "train")
    code, stdout, stderr = cli(*bench_args(Path(".."), tiny_clip, out, *base, "--seeds", "1,2,3"))
    assert code == 0 and "1 row run, 2 resumed from earlier" in stdout, stderr
    assert json.loads((out / "split.json").read_text())["unreadable"] == {
        "test/nevus/zz_broken.jpg": "not an image Pillow can read"}  # named as the split's lists name files


def test_resume_a_sweep_of_an_earlier_vip_that_named_files_as_given(cli, isic_small, tiny_clip, tmp_path,
                                                                     monkeypatch):
    """An earlier vip digested the split, and named split.json's unreadable files, as its run was given
    them: such a sweep, resumed with the folder given as then, goes on, and its names are made relative."""
    from vipcli.sweep_folder import split_digest
    from vipcli.data import load_dataset

    (isic_small / "test" / "nevus" / "zz_broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "bench"
    base = ("--methods", "linear-probe", "--shots", "1", "--no-cache")
    monkeypatch.chdir(tmp_path)
    assert cli(*bench_args(Path("isic"), tiny_clip, out, *base, "--seeds", "1"))[0] == 0
    results, split = (json.loads((out / name).read_text()) for name in ("results.json", "split.json"))
    results["config"]["split_digest"] = split_digest(load_dataset(Path("isic"), seed=1), as_given=True)
    split["unreadable"] = {"isic/test/nevus/zz_broken.jpg": "not an image Pillow can read"}
    (out / "results.json").write_text(json.dumps(results))
    (out / "split.json").write_text(json.dumps(split))
    code, stdout, stderr = cli(*bench_args(Path("isic"), tiny_clip, out, *base, "--seeds", "1,2"))
    assert code == 0 and "1 row run, 1 resumed from earlier" in stdout, stderr
    assert json.loads((out / "split.json").read_text())["unreadable"] == {
        "test/nevus/zz_broken.jpg": "not an image Pillow can read"}


def test_a_resume_with_fewer_shots_keeps_the_stored_few_shot_order(cli, isic_small, tiny_clip, tmp_path):
    """split.json's few-shot order of a seed is what its stored rows trained on (the first K per class):
    a resume with fewer shots cut it to its own K, losing the record of the stored rows' images (and with
    it the check that they are still readable when the sweep goes on with more shots again)."""
    out = tmp_path / "bench"
    base = ("--shots", "4", "--seeds", "1", "--no-cache")
    assert cli(*bench_args(isic_small, tiny_clip, out, "--methods", "linear-probe", *base))[0] == 0
    before = json.loads((out / "split.json").read_text())["few_shot_order"]
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, "--methods", "linear-probe,zeroshot", "--shots",
                                      "1", "--seeds", "1", "--no-cache"))
    assert code == 0, stderr
    assert json.loads((out / "split.json").read_text())["few_shot_order"] == before
    assert [len(paths) for paths in before["1"].values()] == [4, 4]


def test_the_dicom_rule_counts_in_the_decoding_digest_only_where_a_dicom_is_read(monkeypatch):
    """A change of how DICOM files are read left no sweep or --out file of JPEGs resumable; only images
    it touches should be refused (as the feature cache re-keys DICOM entries alone)."""
    import vipcli.dicom
    from vipcli.features import decoding_digest

    jpegs, mixed = [Path("a/x.jpg"), Path("b/y.png")], [Path("a/x.jpg"), Path("b/IM1.DCM")]
    before = decoding_digest(jpegs), decoding_digest(mixed), decoding_digest()
    monkeypatch.setattr(vipcli.dicom, "DICOM_POLICY", vipcli.dicom.DICOM_POLICY + " (changed)")
    assert decoding_digest(jpegs) == before[0]
    assert decoding_digest(mixed) != before[1] and decoding_digest() != before[2]
    assert before[0] != before[1] and before[1] == before[2]


def test_a_resume_with_other_options_is_refused_before_the_data_or_the_backbone_is_read(cli, isic_small, tiny_clip,
                                                                                      tmp_path, monkeypatch):
    """A resume with another --epochs (or --views, --backbone, ...) was refused only after every image had been
    hashed and the backbone loaded (minutes on a large data set, warnings about the data first): the options alone
    now decide it, before either. (coop, which follows the schedule: linear-probe's rows may resume with another
    --epochs, which they do not use.)"""
    import vipcli.benchmark
    from vipcli.settings import BackboneSettings

    out = tmp_path / "bench"
    base = ("--methods", "coop", "--shots", "1", "--seeds", "1")
    assert cli(*bench_args(isic_small, tiny_clip, out, *base))[0] == 0

    def never(*args, **kwargs):
        raise AssertionError("read before the refusal")

    monkeypatch.setattr(vipcli.benchmark, "load_dataset", never)
    monkeypatch.setattr(BackboneSettings, "load", never)
    for option, value, said in (("--epochs", "3", "--epochs: stored 2, now 3"),
                                ("--views", "3", "--views: stored 2, now 3"),
                                ("--pretrained", "other", "--pretrained: stored none, now other")):
        code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base, option, value))
        line, = error_lines(stderr)
        assert code == 1 and f"was made with other settings ({said})" in line, stderr


def test_a_refused_setting_is_named_as_typed(cli, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "bench"
    base = ("--methods", "coop", "--shots", "1", "--seeds", "1")
    assert cli(*bench_args(isic_small, tiny_clip, out, *base, "-o", "n_ctx=8"))[0] == 0
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, *base))
    assert code == 1 and "(--method-option: stored n_ctx=8, now not given)" in stderr, stderr


def test_a_refusal_to_resume_names_each_option_and_what_was_not_given():
    """A resume with another backbone said "(backbone: stored toy, now clip; arch: stored none, now small-clip;
    pretrained: stored none, now none; backbone_fingerprint: stored 42dabb026c7e2c44, now 671b194725e2fe7e)":
    a difference that read as none against none, a digest beside the options that explain it, and setting
    names where the student types options; one without --epochs said "epochs: stored 5, now none". An image
    added to the data was said to be that and "some image files were replaced (or could not be read)"."""
    from vipcli.api import _python_words
    from vipcli.sweep_folder import check_matches

    stored = {"data": "/d", "backbone": "toy", "arch": None, "pretrained": None, "backbone_fingerprint": "42dab",
              "views": 8, "schedule": "auto", "epochs": 5, "batch_size": None, "lr": None, "method_options": {},
              "split_seed": 1, "split_digest": "s", "content_digest": "c"}
    fix = "(rerun with the stored settings to resume, pass --force to start over, or choose another --out)"
    for now, said in (
            ({"backbone": "clip", "arch": "small-clip", "pretrained": "none", "backbone_fingerprint": "671b1"},
             "--backbone: stored toy, now clip; --arch: stored not given, now small-clip; --pretrained: stored not "
             "given, now none"),
            ({"epochs": None, "lr": 0.01}, "--epochs: stored 5, now not given; --lr: stored not given, now 0.01"),
            ({"backbone_fingerprint": "671b1"}, "the backbone's weights: stored 42dab, now 671b1, under the same "
                                                "--backbone, --arch and --pretrained"),
            ({"split_seed": 7, "method_options": {"n_ctx": 8}},
             "--method-option: stored not given, now n_ctx=8; --split-seed: stored 1, now 7"),
            ({"split_digest": "t", "content_digest": "d"},  # an image added: not also "some files were replaced"
             "the images: files were added, removed or moved since")):
        with pytest.raises(VipError) as refused:
            check_matches({"config": stored}, {**stored, **now}, Path("b"))
        assert str(refused.value) == f"b/results.json was made with other settings ({said}) {fix}"
    assert _python_words("(--method-option: stored not given, now n_ctx=8; --split-seed: stored 1, now 7)") == (
        "(method_options: stored not given, now n_ctx=8; split_seed: stored 1, now 7)")  # vip.benchmark's words


def test_a_refusal_to_resume_with_other_symptoms_names_the_option_and_the_classes():
    """A resume with another --symptoms pack said only "(symptoms differ)": neither the option nor what differs."""
    from vipcli.sweep_folder import check_matches

    stored = {"data": "/d", "backbone": "toy", "symptoms": {"melanoma": ["a", "b", "c"], "nevus": ["d", "e"]}}
    now = {**stored, "symptoms": {"melanoma": ["a", "x"], "nevus": ["d", "e"]}}
    with pytest.raises(VipError) as refused:
        check_matches({"config": stored}, now, Path("b"))
    assert str(refused.value).startswith("b/results.json was made with other settings (--symptoms: other symptoms "
                                         "for melanoma (stored 3, now 2)) (rerun with the stored settings")


def test_unknown_method_lists_the_valid_ones_and_writes_nothing(cli, isic_small, tmp_path):
    code, _, stderr = cli("benchmark", "--data", isic_small, "--methods", "vip,cocoop", "--out", tmp_path / "b")
    assert code == 2
    assert "can't find method 'cocoop'" in stderr and "installed methods: biomedcoop, clap, coop" in stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("option, line", [
    (("--epochs", "0"), "error: --epochs must be a positive number, got 0"),
    (("--lr", "nan"), "error: --lr must be a positive number, got nan"),
    (("--batch-size", "0"), "error: --batch-size must be a positive number, got 0"),
    (("--schedule", "fast"), "error: unknown schedule 'fast' (choose auto, fewshot or paper)"),
])
def test_a_bad_schedule_option_is_refused_before_anything_is_written(cli, isic_small, tiny_clip, tmp_path,
                                                                       option, line):
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "b", "--methods", "vip", "--shots", "1",
                                      "--seeds", "1", *option))
    assert code == 2 and error_lines(stderr) == [line] and not (tmp_path / "b").exists()


def test_a_single_class_is_refused(cli, tiny_clip, tmp_path):
    if not ISIC.is_dir():
        pytest.skip(NO_SHARED_DATA)
    (tmp_path / "one" / "melanoma").mkdir(parents=True)
    for image in sorted((ISIC / "train" / "melanoma").glob("*.jpg"))[:4]:
        shutil.copy(image, tmp_path / "one" / "melanoma" / image.name)
    code, _, stderr = cli(*bench_args(tmp_path / "one", tiny_clip, tmp_path / "b"))
    assert code == 1 and "found only 'melanoma'; ViP needs at least two classes" in stderr
    assert not (tmp_path / "b").exists()


def test_shots_beyond_a_class_are_capped_with_a_warning(cli, isic_small, tiny_clip, tmp_path):
    code, stdout, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "b", "--methods", "linear-probe",
                                           "--shots", "2,8", "--seeds", "1", "--json"))
    assert code == 0, stderr
    assert "--shots 8: class 'melanoma' has only 6 training images; capped to 6" in stderr
    assert "readable" not in stderr  # every image was readable: said once, before encoding
    rows = {r["shots"]: r for r in json.loads(stdout)["rows"]}
    assert rows[8]["shots_used"] == 6 and rows[8]["n_train"] == 12 and rows[2]["shots_used"] == 2


def test_the_tables_mark_a_capped_shots_column_and_say_how_few_images_its_rows_used(cli, isic_small, tiny_clip,
                                                                                   tmp_path):
    """The cap was a warning on stderr that scrolled away: the console table and the report headed the column
    "8-shot", a figure a paper would quote as 8-shot, for rows trained on 6 images per class."""
    code, stdout, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "b", "--methods", "linear-probe",
                                           "--shots", "2,8", "--seeds", "1"))
    assert code == 0, stderr
    headings = [line.split() for line in stdout.splitlines() if "-shot" in line]
    assert headings and all(heading == ["method", "2-shot", "8-shot†"] for heading in headings), stdout
    note = ("† capped: a class has fewer training images than these shots; their rows used as few as 6 images per "
            "class at 8 shots (shots_used in results.csv)")
    assert note in stdout.splitlines()
    code, _, stderr = cli("report", tmp_path / "b")
    assert code == 0, stderr
    page = (tmp_path / "b" / "report.html").read_text()
    assert page.count(">8-shot†<") == 5 and ">2-shot<" in page and f"{note}." in page  # 4 metrics, the seconds'


def test_short_classes_and_missing_val_or_test_images_are_warned_about_before_any_encoding(cli, isic_small, tiny_clip,
                                                                                           tmp_path, monkeypatch):
    import vipcli.distributed

    def stop(*args, **kwargs):
        raise VipError("stopped at the encoding")

    monkeypatch.setattr(vipcli.distributed, "encode_shared", stop)
    shutil.rmtree(isic_small / "test" / "nevus")
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "b", "--methods", "coop", "--shots", "2,8",
                                      "--seeds", "1"))
    plan, *said = [line for line in stderr.splitlines() if "random weights" not in line]
    assert plan.startswith("benchmark of 2 rows: 1 method (coop) x 2 shot counts (2, 8) x 1 seed (1); ")  # its plan
    assert code == 1 and said == [
        "warning: class 'nevus' has no test images: its test figures cannot be measured (add images to its test "
        "folder, or remove test/ and vip carves one from train/)",
        *(f"warning: --shots 8: class '{name}' has only 6 training images; capped to 6 (see shots_used in results)"
          for name in ("melanoma", "nevus")),
        "error: stopped at the encoding"]


def test_a_class_short_of_readable_images_is_warned_about_after_encoding(cli, isic_small, tiny_clip, tmp_path):
    (isic_small / "train" / "melanoma" / "broken.jpg").write_bytes(b"not a jpeg")
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "b", "--methods", "linear-probe",
                                      "--shots", "8", "--seeds", "1"))
    assert code == 0, stderr
    warned = [line for line in stderr.splitlines() if "--shots 8" in line]
    assert warned == ["warning: --shots 8: class 'melanoma' has only 7 training images; capped to 7 (see shots_used "
                      "in results)",
                      "warning: --shots 8: class 'nevus' has only 6 training images; capped to 6 (see shots_used in "
                      "results)",
                      "warning: --shots 8: class 'melanoma' has only 6 readable training images; capped to 6 (see "
                      "shots_used in results)"]


def test_data_without_splits_gets_a_seeded_split_saved(cli, flat_data, tiny_clip, tmp_path):
    out = tmp_path / "b"
    args = ("--methods", "linear-probe", "--shots", "2,all", "--seeds", "3")
    code, stdout, stderr = cli(*bench_args(flat_data, tiny_clip, out, *args, "--json"))
    assert code == 0, stderr
    split = json.loads((out / "split.json").read_text())
    assert split["split_seed"] == 3 and "seeded split" in split["origin"]["test"]
    files = {name: {p for p, _ in split[name]} for name in ("train", "val", "test")}
    assert files["test"] and files["val"] and not (files["train"] & files["test"]) and not (files["val"] & files["test"])
    assert sum(map(len, files.values())) == 20
    assert [len(v) for v in split["few_shot_order"]["3"].values()] == [len(files["train"]) // 2] * 2
    rows = {r["shots"]: r for r in json.loads(stdout)["rows"]}
    assert rows["all"]["n_train"] == len(files["train"]) and rows[2]["n_train"] == 4
    # the same seed gives the same split: the sweep resumes rather than refusing
    code, _, stderr = cli(*bench_args(flat_data, tiny_clip, out, *args))
    assert code == 0 and "2 finished rows skipped" in stderr


def test_a_row_on_data_without_splits_is_reproduced_by_vip_train_with_its_split_seed(cli, flat_data, tiny_clip,
                                                                                      tmp_path):
    """A sweep carves val and test once, with its split seed (its first seed), for every seed's rows; `vip train
    --seed 2` carves them with seed 2, so only `--split-seed 1` gives the row of seed 2 its images and figures."""
    out = tmp_path / "b"
    code, stdout, stderr = cli(*bench_args(flat_data, tiny_clip, out, "--methods", "vip", "--shots", "2",
                                           "--seeds", "1,2", "--json"))
    assert code == 0, stderr
    sweep = json.loads((out / "split.json").read_text())
    row = next(r for r in json.loads(stdout)["rows"] if r["seed"] == 2)
    runs = {}
    for name, extra in (("own", ()), ("row", ("--split-seed", "1"))):
        code, _, stderr = cli(*tiny_train_args(flat_data, tiny_clip, tmp_path / name, "--seed", "2", "--shots", "2",
                                               "--epochs", "2", *extra))
        assert code == 0, stderr
        runs[name] = (json.loads((tmp_path / name / "split.json").read_text()),
                      json.loads((tmp_path / name / "metrics.json").read_text()))
    own, (split, metrics) = runs["own"][0], runs["row"]
    assert own["split_seed"] == 2 and own["test"] != sweep["test"]  # vip train's own split: other test images
    assert split["split_seed"] == 1 and split["seed"] == 2
    assert split["test"] == sweep["test"] and split["val"] == sweep["val"]
    assert split["train_subset"] == sorted(p for files in sweep["few_shot_order"]["2"].values() for p in files[:2])
    assert metrics["best_epoch"] == row["best_epoch"]
    assert [metrics[s][k] for s in ("val", "test") for k in ("accuracy", "macro_f1", "auroc")] == \
        [row[f"{s}_{k}"] for s in ("val", "test") for k in ("accuracy", "macro_f1", "auroc")]
    assert metrics["test"]["confusion_matrix"] == row["test_confusion_matrix"]


def test_rows_trained_together_that_change_their_features_in_place_are_refused(monkeypatch):
    """The 'all' row trains on the sweep's pooled features themselves (no copy), so a batched group of rows
    (`fit_sgd_many`) is refused when its fit changed them in place, as `checked_fit` refuses a row run alone:
    the later rows would see other features."""
    import vipcli.benchmark as benchmark
    import vipcli.fitting as fitting
    from vipcli.featuresets import FeatureSet, PreparedData

    pool = FeatureSet(torch.zeros(4, 3), torch.tensor([0, 0, 1, 1]), [f"{i}.png" for i in range(4)],
                      torch.zeros(4, 2, 3))  # x [N, D], y [N], paths, views [N, V, D]
    val = FeatureSet(torch.zeros(2, 3), torch.tensor([0, 1]), ["a.png", "b.png"])
    row = {"method": SimpleNamespace(id="coop"), "data": PreparedData(pool, val, val), "fit_context": None}
    monkeypatch.setattr(benchmark, "_build_row", lambda *args, **kwargs: row)
    monkeypatch.setattr(fitting, "fit_sgd_many",
                        lambda methods, datas, contexts, progress=None, batchable=None: [{} for _ in datas])
    monkeypatch.setattr(benchmark, "_finish_row", lambda built, fitted, context, seconds: fitted)
    assert benchmark.run_rows_together("coop", None, [(2, 1), ("all", 1)], {}) == [{}, {}]  # unchanged: fine

    def in_place(methods, datas, contexts, progress=None, batchable=None):
        datas[-1].train.views.sub_(1)  # [N, V, D], e.g. centering the views in place
        return [{} for _ in datas]

    monkeypatch.setattr(fitting, "fit_sgd_many", in_place)
    with pytest.raises(VipError, match=r"fit changed data\.train\.views in place"):
        benchmark.run_rows_together("coop", None, [(2, 1), ("all", 1)], {})


def test_linear_probe_separates_separable_features():
    """Through the benchmark's own row code: pooled synthetic features, a K-shot subset, the probe."""
    from vipcli.benchmark import run_row
    from vipcli.data import Dataset, Sample
    from vipcli.methods import method_class
    from vipcli.featuresets import FeatureSet, PreparedData

    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=generator) * 4  # [C, D]

    def features(n_per_class: int, split: str, views: int = 0) -> FeatureSet:
        y = torch.arange(3).repeat_interleave(n_per_class)  # [N]
        x = centers[y] + torch.randn(len(y), 16, generator=generator) * 0.3  # [N, D]
        v = x[:, None] + torch.randn(len(y), views, 16, generator=generator) * 0.3 if views else None  # [N, V, D]
        return FeatureSet(x, y, [f"/{split}/{int(c)}/{i}.jpg" for i, c in enumerate(y)], v)

    train, val, test = features(20, "train", views=2), features(5, "val"), features(30, "test")
    samples = [Sample(Path(p), int(c)) for p, c in zip(train.paths, train.y)]
    dataset = Dataset(Path("/"), ["a", "b", "c"], {"train": samples, "val": [], "test": []})
    from vipcli.settings import ScheduleSettings

    context = {"config": SimpleNamespace(schedule=ScheduleSettings(), method_options={}),
               "pool": PreparedData(train, val, test), "class_names": dataset.class_names, "dataset": dataset,
               "backbone": SimpleNamespace(embed_dim=16, device=torch.device("cpu")), "symptoms": {},
               "device": torch.device("cpu")}
    row = run_row("linear-probe", method_class("linear-probe"), 4, 1, context)
    assert row["n_train"] == 12 and row["shots_used"] == 4
    assert row["test_accuracy"] >= 95 and row["test_macro_f1"] >= 95
    assert sum(map(sum, row["test_confusion_matrix"])) == 90


def test_means_halfway_between_two_figures_round_the_same_way_everywhere():
    """Two seeds: every mean of two 2-decimal figures with an odd sum is exactly halfway. Rounded in
    float, 51.665 became 51.66 but 53.335 53.34 (and 32.955 32.95); in decimal, each rounds half up,
    in results.json's summary, the printed table and the HTML report alike."""
    from vipcli.sweep_folder import summarize
    from vipcli.metrics import mean_of_figures
    from vipcli.report.benchmark import _mean_std as report_cell

    pairs = {(50.0, 53.33): 51.67, (56.67, 50.0): 53.34, (50.0, 48.33): 49.17, (33.33, 32.58): 32.96,
             (54.86, 33.33): 44.1, (71.33, 71.33): 71.33}
    for pair, mean in pairs.items():
        assert mean_of_figures(list(pair)) == mean
        rows = [{"method": "vip", "shots": 1, "seed": seed, "test_accuracy": value, "test_macro_f1": value}
                for seed, value in enumerate(pair, 1)]
        summary = summarize(rows)[0]
        assert summary["accuracy_mean"] == summary["macro_f1_mean"] == mean
        assert report_cell(list(pair)).startswith(f"{mean:.2f} ± ")
    assert mean_of_figures([73.0, 76.67, 72.0]) == 73.89  # three seeds: never halfway, as before


def test_means_over_seeds_come_from_the_confusion_matrices_not_the_rounded_figures():
    """Three seeds right on 1, 2 and 4 of 9 images: the stored figures 11.11, 22.22 and 44.44 average
    to 25.92, the exact accuracies to 25.925925... = 25.93, which the summary, the HTML report's table
    and the printed table all show."""
    from vipcli.sweep_folder import summarize
    from vipcli.report.benchmark import _tables

    rows = []
    for seed, right in enumerate((1, 2, 4), 1):
        matrix = [[right, 9 - right], [0, 0]]
        stored = compute_metrics_of(matrix)
        rows.append({"method": "vip", "shots": 1, "seed": seed, "test_accuracy": stored["accuracy"],
                     "test_macro_f1": stored["macro_f1"], "test_auroc": None, "test_confusion_matrix": matrix,
                     "fit_s": 1.0})
    assert [r["test_accuracy"] for r in rows] == [11.11, 22.22, 44.44]
    summary = summarize(rows)[0]
    assert summary["accuracy_mean"] == 25.93 and summary["accuracy_std"] == 16.97
    assert summary["macro_f1_mean"] == round(sum(100 * (2 * k / (2 * k + 9 - k)) / 2 for k in (1, 2, 4)) / 3, 2)
    assert "25.93 ± 16.97" in _tables(rows)
    without_matrices = [{k: v for k, v in r.items() if k != "test_confusion_matrix"} for r in rows]
    assert summarize(without_matrices)[0]["accuracy_mean"] == 25.92  # rows of unknown origin: their figures
    # summary.csv: the table's 25.93, where a mean of results.csv's figures gives 25.92
    from vipcli.sweep_folder import summary_csv

    line = next(csv.DictReader(summary_csv(rows).splitlines()))
    assert (line["test_accuracy_mean_pct"], line["test_accuracy_std_pct"], line["n_seeds"]) == ("25.93", "16.97", "3")
    assert line["test_auroc_mean_pct"] == line["test_auroc_std_pct"] == ""  # no AUROC: no figure, not 0
    one = next(csv.DictReader(summary_csv(rows[:1]).splitlines()))
    assert (one["test_accuracy_mean_pct"], one["test_accuracy_std_pct"], one["n_seeds"]) == ("11.11", "", "1")
    one_seed = summarize(rows[:1])[0]  # a spread needs two seeds: none, not a spread of 0.0
    assert one_seed["accuracy_mean"] == 11.11 and one_seed["accuracy_std"] is None is one_seed["macro_f1_std"]


def compute_metrics_of(matrix: list[list[int]]) -> dict:
    """compute_metrics on the labels and one-hot predictions a 2x2 confusion matrix stands for."""
    from vipcli.metrics import compute_metrics

    labels, predicted = [], []
    for true, counts in enumerate(matrix):
        for guess, count in enumerate(counts):
            labels += [true] * count
            predicted += [guess] * count
    return compute_metrics(labels, np.eye(2)[predicted], 2)


def test_an_out_folder_of_something_else_is_left_alone(cli, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, "--methods", "zeroshot"))
    assert code == 1 and "holds files of something else (notes.txt)" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_files_of_the_users_under_a_benchmarks_names_are_left_alone(cli, isic_small, tiny_clip, tmp_path):
    """A folder holding the user's own results.csv and summary.csv (no results.json, which a sweep always writes
    before them) or own report.html was written into, those files replaced; with --force a folder of the
    user's files was written into too, and its report.html deleted. Both are refused before any work."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("patient,score\n1,0.5\n")
    (out / "summary.csv").write_text("mine")
    for force in ((), ("--force",)):
        code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, "--methods", "zeroshot", *force))
        assert code == 1 and "holds files of something else (results.csv, summary.csv)" in stderr, stderr
    (out / "results.csv").unlink()
    (out / "summary.csv").unlink()
    (out / "report.html").write_text("<html><title>ward notes</title></html>")
    (out / "notes.txt").write_text("keep me")
    for force in ((), ("--force",)):
        code, _, stderr = cli(*bench_args(isic_small, tiny_clip, out, "--methods", "zeroshot", *force))
        assert code == 1 and "holds files of something else (notes.txt, report.html)" in stderr, stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.html"]
    assert (out / "report.html").read_text() == "<html><title>ward notes</title></html>"


def test_zero_shot_rows_alone_warn_of_no_capped_shots(cli, isic_small, tiny_clip, tmp_path):
    """Zero-shot rows train on no image: no "--shots 2: class ... has only N" warning (no training image
    is encoded, which is not a cap)."""
    code, _, err = cli(*bench_args(isic_small, tiny_clip, tmp_path / "bench", "--methods", "zeroshot", "--shots", "2",
                                   "--seeds", "1"))
    assert code == 0, err
    assert "readable training images" not in err
    code, _, err = cli(*bench_args(isic_small, tiny_clip, tmp_path / "bench2", "--methods", "zeroshot,coop",
                                   "--shots", "2,100", "--seeds", "1"))
    assert code == 0, err
    assert "--shots 100: class 'melanoma' has only" in err and "--shots 2:" not in err


def test_a_zero_shot_only_sweep_encodes_no_training_image(cli, isic_small, tiny_clip, tmp_path):
    """Zero-shot rows learn from no image: only val and test (4 + 4 per class, one view each) go through
    the encoder. It encoded one training image per class (with its views) that played no part."""
    code, out, err = cli(*bench_args(isic_small, tiny_clip, tmp_path / "bench", "--methods", "zeroshot",
                                     "--seeds", "1,2"))
    assert code == 0, err
    assert "; 16 image views encoded;" in out + err


def test_a_zero_shot_only_sweep_needs_no_train_folder(cli, isic_small, tiny_clip, tmp_path):
    """`vip train --method zeroshot` took `{val,test}/<class>/` without train/; `vip benchmark --methods
    zeroshot` refused the same folder ("no train/"). A sweep with a method that learns still needs it."""
    import shutil

    shutil.rmtree(isic_small / "train")
    code, out, err = cli(*bench_args(isic_small, tiny_clip, tmp_path / "bench", "--methods", "zeroshot",
                                     "--seeds", "1"))
    assert code == 0, err
    assert [row["method"] for row in json.loads((tmp_path / "bench" / "results.json").read_text())["rows"]] == \
        ["zeroshot"]
    code, _, err = cli(*bench_args(isic_small, tiny_clip, tmp_path / "bench2", "--methods", "zeroshot,coop",
                                   "--shots", "1", "--seeds", "1"))
    assert code == 1 and "but no train/" in err


def test_a_sweep_into_the_current_folder_is_locked_beside_it(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """`--out .` (an empty folder one stands in) has no name for `OUT.lock`: it was 'unexpected ValueError:
    PosixPath('.') has an empty name (this is a bug in vip)'; the lock is taken beside the folder itself."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, ".", "--methods", "zeroshot", "--seeds", "1"))
    assert code == 0, stderr
    assert (here / "results.json").is_file() and not (tmp_path / "here.lock").exists()


def test_the_printed_tables_show_each_columns_leader_in_bold():
    """As the report does: the highest mean of each column is bold on a terminal (each of a tie)."""
    from vipcli.cli.benchmark import benchmark_tables
    from vipcli.sweep_folder import summarize

    rows = [{"method": m, "shots": s, "seed": seed, "test_accuracy": a + seed, "test_macro_f1": 50.0}
            for m, s, a in (("zeroshot", 0, 70.0), ("coop", 1, 60.0), ("coop", 4, 80.0), ("vip", 1, 65.0),
                            ("vip", 4, 79.0)) for seed in (1, 2)]
    (accuracy, _), (balanced, _), (f1, _) = benchmark_tables(SimpleNamespace(rows=rows, summary=summarize(rows)))

    def bold(table) -> list[tuple[str, str]]:
        methods = [str(cell) for cell in table.columns[0]._cells]
        return [(column.header, methods[i]) for column in table.columns[1:]
                for i, cell in enumerate(column._cells) if "bold" in str(cell.style)]

    assert bold(accuracy) == [("1-shot", "zeroshot*"), ("4-shot", "coop")]
    assert len(bold(f1)) == 6  # all tied at 50.00: each
    assert bold(balanced) == []  # rows without a confusion matrix (nor a stored figure): '-', no leader


def test_the_printed_tables_name_each_columns_leader_in_words_that_a_log_file_keeps():
    """Bold was the only mark of a column's best mean: lost in `vip benchmark ... > log.txt` and not said by a
    screen reader. A line under each table names them, as `vip report`'s does."""
    import io
    from unittest.mock import patch

    from rich.console import Console

    from vipcli.sweep_folder import summarize

    rows = [{"method": m, "shots": s, "seed": seed, "test_accuracy": a + seed, "test_macro_f1": 50.0}
            for m, s, a in (("zeroshot", 0, 70.0), ("coop", 1, 60.0), ("coop", 4, 80.0), ("vip", 1, 65.0),
                            ("vip", 4, 79.0)) for seed in (1, 2)]
    from vipcli.cli import benchmark as cli_benchmark

    out = Console(file=io.StringIO(), width=60, color_system=None)  # a narrow log: the note is still one line
    result = SimpleNamespace(rows=rows, summary=summarize(rows), out=Path("sweep"), trained=10, skipped=0,
                             encoded_views=0)
    with patch.object(cli_benchmark.console, "stdout", lambda: out):
        cli_benchmark.print_benchmark(result, as_json=False)
    lines = out.file.getvalue().splitlines()
    notes = [line for line in lines if line.startswith("In bold: ")]
    assert notes[0].startswith("In bold: the highest mean in each column (each of a tie): zeroshot at 1-shot, coop "
                               "at 4-shot. ")
    assert ": zeroshot and coop and vip at 1-shot, zeroshot and coop and vip at 4-shot. " in notes[1]
    assert lines.index(notes[0]) < lines.index(notes[1])  # each under its own table


def test_a_cell_with_no_spread_prints_its_mean_alone():
    """Two seeds, one without a test figure: the summary's std is None, which `:.2f` could not print."""
    from vipcli.cli.benchmark import _cell

    entry = {"seeds": [1, 2], "accuracy_mean": 61.0, "accuracy_std": None}
    assert _cell(entry, "accuracy") == "61.00"
    assert _cell({**entry, "accuracy_std": 1.41}, "accuracy") == "61.00±1.41"


@pytest.mark.parametrize("held", ["results.csv", "summary.csv"])
def test_a_results_csv_held_open_on_windows_is_warned_about_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys,
                                                                                  held):
    """Windows refuses to replace a file another program holds open (results.csv in Excel while a sweep runs):
    the sweep stopped with `cannot write .../results.json (...) (free some space ...)`, naming neither the file
    nor the fix. results.json is written (it has every row), results.csv warned about once, and a folder that is
    really read-only still stops the sweep."""
    from vipcli import atomic, sweep_folder
    from vipcli.errors import VipError

    (tmp_path / held).write_text("old\n")
    real = atomic.write_atomic

    def held_open(path, data):
        if Path(path).name == held:
            raise PermissionError(13, "Access is denied", str(path))
        real(path, data)

    monkeypatch.setattr(sweep_folder, "write_atomic", held_open)
    monkeypatch.setattr(sweep_folder, "_warned_open", set())
    row = {"method": "vip", "shots": 1, "seed": 1, "test_accuracy": 50.0, "test_macro_f1": 50.0}
    for rows in ([], [row]):
        sweep_folder.save_results(tmp_path, {"data": "d"}, ["a", "b"], rows)
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == [row]
    assert (tmp_path / held).read_text() == "old\n"
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {tmp_path / held} is open in another program, which keeps it from being "
                        "replaced: not updated (results.json has every row; close it, and the next row, or rerunning "
                        "the same command, rewrites it)"]
    monkeypatch.setattr(sweep_folder.os, "access", lambda path, mode: False)  # the folder went read-only
    with pytest.raises(VipError, match="cannot write"):
        sweep_folder.save_results(tmp_path, {"data": "d"}, ["a", "b"], [])


def test_rows_that_never_find_a_class_are_named_by_method_and_shots():
    """On Kermany's X-rays (3 pneumonia to 1 normal) `vip` and `zeroshot` scored 62.50±0.00: every test image
    called PNEUMONIA, which the accuracy table did not say."""
    from vipcli.metrics import missed_rows_warning

    constant, sound = [[0, 4], [0, 12]], [[3, 1], [2, 10]]
    rows = [{"method": "zeroshot", "shots": 0, "seed": 1, "test_confusion_matrix": constant},
            {"method": "vip", "shots": 4, "seed": 1, "test_confusion_matrix": constant},
            {"method": "vip", "shots": 4, "seed": 2, "test_confusion_matrix": constant},
            {"method": "vip", "shots": 16, "seed": 1, "test_confusion_matrix": sound},
            {"method": "coop", "shots": 4, "seed": 1, "test_confusion_matrix": [[4, 0], [12, 0]]},
            {"method": "coop", "shots": 16, "seed": 1}]  # no matrix (a row of an older vip): passed over
    assert missed_rows_warning(rows, ["NORMAL", "PNEUMONIA"]) == (
        "4 rows find no test image of a class: zeroshot (seed 1: NORMAL); vip 4-shot (seeds 1, 2: NORMAL); coop "
        "4-shot (seed 1: PNEUMONIA); their accuracy comes from the other classes alone (the balanced accuracy table "
        "shows it; each row's test_confusion_matrix is in results.csv)")
    assert missed_rows_warning(rows, ["NORMAL", "PNEUMONIA"], shown=1).startswith(
        "4 rows find no test image of a class: zeroshot (seed 1: NORMAL); and 2 more; their accuracy")
    assert missed_rows_warning(rows[3:4], ["NORMAL", "PNEUMONIA"]) == ""
    assert missed_rows_warning(rows[1:2], ["NORMAL", "PNEUMONIA"]).startswith(  # one row: "its", not "their"
        "1 row finds no test image of a class: vip 4-shot (seed 1: NORMAL); its accuracy comes from the other classes")


def test_a_sweep_reads_each_plugin_groups_entry_points_once(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """Each row's method build, its distribution record and the tables' method kinds look plugins up by id; every
    lookup read every installed distribution's entry points again (about 190 reads, 3-5 ms each, in a 32-row
    sweep). A sweep and its tables now read each group once; the rows are the same."""
    from vipcli.plugins import PluginGroup

    real, scanned = PluginGroup._scan_installed, []
    monkeypatch.setattr(PluginGroup, "_scan_installed", lambda group: scanned.append(group.group) or real(group))
    args = ("--methods", "zeroshot,linear-probe,coop", "--shots", "1,2", "--seeds", "1,2")
    code, _, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "bench", *args))
    assert code == 0, stderr
    assert sorted(scanned) == ["vip.backbones", "vip.methods"]
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["rows"]
    assert len(rows) == 10 and all(row["method_distribution"]["name"] == "vipcli" for row in rows)


def test_the_printed_benchmark_says_on_how_many_test_images_its_figures_are_measured(cli, tmp_path):
    """The printed tables gave `zeroshot* 100.00±0.00` with nothing saying it was measured on 2 test images (the
    report said it, the console did not), and called them '1 test images in each class'. A line above the tables now
    says on which test images every figure is, by class, and the balanced-accuracy line counts in the singular."""
    from lesion_runs import make_lesions

    data = make_lesions(tmp_path / "lesions", {"train": 2, "val": 1, "test": 1})
    code, stdout, stderr = cli("benchmark", "--data", data, "--methods", "zeroshot", "--seeds", "1",
                               "--backbone", "toy", "--workers", "0", "--out", tmp_path / "bench")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "every score below is measured on the same 2 test images (1 melanoma, 1 nevus)"
    assert lines[1].startswith("test accuracy %, seed 1")
    assert ("test balanced accuracy %: the same figures as test accuracy % (1 test image in each class; balanced "
            "accuracy differs only where classes are uneven)") in lines


def test_a_benchmark_of_one_method_says_nothing_of_bold_cells_it_does_not_have(cli, tmp_path):
    """With one method, no cell of a column leads another, and none is bold; yet under every table of `vip report`
    (and on the console, where a row missed a class) a line began "In bold: the highest figure in each column (each
    of a tie). ...", naming no cell. There is no such line now."""
    from lesion_runs import make_lesions

    data = make_lesions(tmp_path / "lesions", {"train": 2, "val": 1, "test": 2})
    code, stdout, stderr = cli("benchmark", "--data", data, "--methods", "zeroshot", "--seeds", "1",
                               "--backbone", "toy", "--workers", "0", "--out", tmp_path / "bench")
    assert code == 0, stderr
    assert cli("report", tmp_path / "bench")[0] == 0
    page = (tmp_path / "bench" / "report.html").read_text()
    assert "<strong>" not in page.split("<h2>Results</h2>")[-1] and "In bold" not in page
    assert "In bold" not in stdout and "Not in bold" not in stdout
