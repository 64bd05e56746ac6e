"""`vip predict --out`, `--report` and `vip report --out` check their output before any work, fail a
late write in one line, resume only a file vip wrote, write each image once, and let one process at a
time write a file; every command refuses a negative --workers the same way."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import error_lines, read_only, read_only_folder, writable_again
from lesion_runs import trained_world

NO_SPACE = "no space left on the device"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A lesion world (12 test images per class) and a toy-backbone run trained on it, once for the module."""
    return trained_world(tmp_path_factory, {"train": 8, "val": 6, "test": 12})


@pytest.fixture
def clean(cli, toy_run, tmp_path_factory):
    """The bytes an uninterrupted `vip predict --out` writes, per suffix."""
    data, run = toy_run
    folder = tmp_path_factory.mktemp("clean")

    def made(suffix: str) -> bytes:
        out = folder / f"p{suffix}"
        if not out.exists():
            assert cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")[0] == 0
        return out.read_bytes()

    return made


def _commands(data: Path, run: Path, out: Path) -> dict:
    """The three ways to write a prediction output, each naming `out` (the option and the file)."""
    return {"predict --out": ["predict", data / "test", "--model", run, "--out", out.with_suffix(".jsonl")],
            "predict --report": ["predict", data / "test", "--model", run, "--report", out.with_suffix(".html")],
            "report --out": ["report", run, "--out", out.with_suffix(".html")]}


def _option(kind: str) -> str:
    return kind.split()[1]


# --- the output is checked before any work --------------------------------------------------------


@pytest.mark.parametrize("kind", ["predict --out", "predict --report", "report --out"])
def test_a_read_only_output_folder_is_refused_before_any_work(cli, toy_run, tmp_path, kind, no_work):
    data, run = toy_run
    read_only_folder(tmp_path / "locked")
    try:
        code, _, err = cli(*_commands(data, run, tmp_path / "locked" / "p")[kind], "--workers", "0")
    finally:
        writable_again(tmp_path / "locked")
    assert code == 1 and error_lines(err) == [error_lines(err)[0]] and "Traceback" not in err
    assert f"{_option(kind)} " in err and f"cannot write to {tmp_path / 'locked'} (permission denied)" in err


@pytest.mark.parametrize("kind", ["predict --out", "predict --report", "report --out"])
def test_a_full_output_disk_is_refused_before_any_work(cli, toy_run, tmp_path, kind, no_work, full_disk):
    data, run = toy_run
    code, _, err = cli(*_commands(data, run, tmp_path / "p")[kind], "--workers", "0")
    [line] = error_lines(err)
    assert code == 1 and f"error: {_option(kind)} {tmp_path / 'p'}." in line
    assert "free some space" in line
    assert "is nearly full: it has 1.0 MiB free, less than the 16.0 MiB vip needs to write there" in line


@pytest.mark.parametrize("kind", ["predict --out", "predict --report", "report --out"])
def test_an_output_in_a_file_or_a_missing_folder_is_refused_before_any_work(cli, toy_run, tmp_path, kind, no_work):
    data, run = toy_run
    (tmp_path / "file").write_text("x")
    code, _, err = cli(*_commands(data, run, tmp_path / "file" / "p")[kind], "--workers", "0")
    assert code == 1 and len(error_lines(err)) == 1 and f"{tmp_path / 'file'} is a file, not a folder" in err
    code, _, err = cli(*_commands(data, run, tmp_path / "missing" / "p")[kind], "--workers", "0")
    assert code == 1 and len(error_lines(err)) == 1
    assert f"folder {tmp_path / 'missing'} does not exist (create it or choose another {_option(kind)})" in err


def test_an_out_that_is_a_folder_is_named_as_one_not_as_an_unknown_format(cli, toy_run, tmp_path, no_work):
    data, run = toy_run
    code, _, err = cli("predict", data / "test", "--model", run, "--out", tmp_path, "--workers", "0")
    assert code == 1 and error_lines(err) == [
        f"error: --out {tmp_path} is a folder, not a file (name a file in it: --out {tmp_path / 'predictions.jsonl'})"]


def test_a_read_only_out_file_is_refused_before_any_work(cli, toy_run, tmp_path, no_work):
    data, run = toy_run
    out = tmp_path / "p.jsonl"
    out.write_text("")
    read_only(out)
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out)
    assert code == 1 and error_lines(err) == [f"error: --out {out}: cannot write to it (permission denied) "
                                              "(make it writable or choose another --out)"]


# --- a write that fails later -----------------------------------------------------------------------


class _FillsUp:
    """A file opened to append that takes `room` complete lines, then half of the next, then ENOSPC."""

    def __init__(self, stream, room: int):
        self.stream, self.room = stream, room

    def write(self, line: str) -> None:
        if self.room == 0:
            self.stream.write(line[: len(line) // 2])
            self.stream.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        self.stream.write(line)

    def __getattr__(self, name):
        return getattr(self.stream, name)


@pytest.mark.parametrize("suffix, header", [(".jsonl", 0), (".csv", 1)])
def test_a_disk_that_fills_up_while_records_are_written_is_one_line_and_resumes(cli, toy_run, tmp_path, monkeypatch,
                                                                                clean, suffix, header):
    from vipcli import prediction_files

    data, run = toy_run
    expected, out = clean(suffix), tmp_path / f"p{suffix}"
    real = prediction_files.open_for_append
    monkeypatch.setattr(prediction_files, "open_for_append", lambda file: _FillsUp(real(file), 5 + header))
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
    assert code == 1 and "Traceback" not in err and error_lines(err) == [
        f"error: cannot write {out} ({NO_SPACE}); the 5 records written before are kept (free some space, then run "
        "the same command again)"]
    assert not out.read_text().endswith("\n")  # a torn last line, which the rerun cuts off
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # and no lock file
    monkeypatch.setattr(prediction_files, "open_for_append", real)
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "24 of 24 images, 5 already there, 19 predicted now" in err
    assert out.read_bytes() == expected


def test_a_disk_that_fills_up_while_a_report_is_written_leaves_nothing(cli, toy_run, tmp_path, monkeypatch):
    import contextlib

    import vipcli.atomic

    data, run = toy_run
    real = vipcli.atomic.atomic_path

    def no_space(path, suffix=".tmp"):  # the temp file is begun, then the disk is full
        with real(path, suffix) as temp:
            temp.write_text("<!DOCTYPE html>")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        yield  # pragma: no cover

    monkeypatch.setattr(vipcli.atomic, "atomic_path", contextlib.contextmanager(no_space))
    for args, page in ((["report", run, "--out", tmp_path / "r.html"], tmp_path / "r.html"),
                       (["predict", data / "test" / "nevus", "--model", run, "--report", tmp_path / "g.html"],
                        tmp_path / "g.html")):
        code, _, err = cli(*args, "--workers", "0")
        assert code == 1 and "Traceback" not in err and error_lines(err)[-1:] == [
            f"error: cannot write {page} ({NO_SPACE}); nothing was written (free some space, then run the same "
            "command again)"], err
    assert list(tmp_path.iterdir()) == []


# --- resuming trusts only what vip wrote ------------------------------------------------------------


def _edit_line(text: str, number: int, edit) -> str:
    lines = text.splitlines(keepends=True)
    lines[number - 1] = edit(lines[number - 1])
    return "".join(lines)


@pytest.mark.parametrize("suffix, number, edit, problem", [
    (".jsonl", 12, lambda line: "garbage\n", "not a JSON object"),
    (".jsonl", 3, lambda line: "\n", "not a JSON object"),
    (".jsonl", 7, lambda line: line.replace('"probability": 0.', '"probability": "x", "was": 0.'),
     "probability is 'x', not a probability"),
    (".jsonl", 7, lambda line: line.replace('"probability": 0.', '"probability": 7.'), "probability is 7."),
    (".jsonl", 9, lambda line: line.replace('"label": "', '"label": "x'), "label 'x"),
    (".jsonl", 5, lambda line: line.replace('"path": ', '"file": '), "no 'path'"),
    (".csv", 8, lambda line: "garbage\n", "1 fields, not 9"),
    (".csv", 8, lambda line: re.sub(r",0\.\d+,", ",x,", line, count=1), "probability is 'x', not a probability"),
    (".csv", 4, lambda line: re.sub(r",(melanoma|nevus),", ",cat,", line, count=1), "label 'cat' is not one"),
])
def test_a_damaged_line_is_refused_naming_the_file_and_the_line(cli, toy_run, tmp_path, clean, suffix, number, edit,
                                                                problem):
    data, run = toy_run
    out = tmp_path / f"p{suffix}"
    out.write_text(_edit_line(clean(suffix).decode(), number, edit))
    before = out.read_bytes()
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
    [line] = error_lines(err)
    assert code == 1 and line.startswith(f"error: {out} line {number} is not a record of vip predict (")
    assert problem in line
    assert line.endswith("(delete that line to resume, pass --force to start over, or pass another --out)")
    assert "another model" not in line and out.read_bytes() == before
    assert cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0", "--force")[0] == 0
    assert out.read_bytes() == clean(suffix)


def test_a_file_begun_without_coverage_is_refused_with_it_even_after_an_unreadable_first_image(
        cli, toy_run, tmp_path, clean):
    data, run = toy_run
    records = clean(".jsonl").decode().splitlines(keepends=True)
    model = json.loads(records[0])["model"]
    first = json.dumps({"path": str(data / "test" / "gone.png"), "error": "file not found", "model": model})
    out = tmp_path / "p.jsonl"
    out.write_text(first + "\n" + "".join(records[:5]))
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0", "--coverage", "0.8")
    [line] = error_lines(err)
    assert code == 1 and "holds predictions made without --coverage; this command is with it" in line
    assert "rerun without --coverage to resume it" in line and "delete that line" not in line


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_file_of_sets_at_one_coverage_is_not_resumed_at_another(cli, toy_run, tmp_path, suffix):
    """Sets at 0.3 for some images and at 0.8 for the rest, in one file, with nothing to tell them
    apart: each record now says its coverage, and a resume at another one is refused, file untouched."""
    data, run = toy_run
    out = tmp_path / f"p{suffix}"
    images = sorted((data / "test" / "nevus").iterdir())
    assert cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.3")[0] == 0
    before = out.read_bytes()
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.8")
    [line] = error_lines(err)
    assert code == 1 and f"{out} holds prediction sets at --coverage 0.3; this command asks for 0.8" in line
    assert "rerun with --coverage 0.3 to resume it" in line and out.read_bytes() == before
    assert cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.3")[0] == 0
    if suffix == ".csv":
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert [r["coverage"] for r in rows] == ["0.3"] * 3
    else:
        assert [json.loads(line)["coverage"] for line in out.read_text().splitlines()] == [0.3] * 3


@pytest.mark.parametrize("first, then", [((), ("--explain",)), (("--explain",), ())])
def test_a_file_begun_with_or_without_explain_is_not_resumed_the_other_way(cli, toy_run, tmp_path, first, then):
    """A JSONL begun without --explain and resumed with it said "3 already there, 0 predicted now" (exit 0), and
    no record had the explanation asked for; the other way round mixed records with and without one. Both are
    refused as a change of --coverage is, before the model loads, the file untouched."""
    data, run = toy_run
    out = tmp_path / "p.jsonl"
    images = sorted((data / "test" / "nevus").iterdir())
    assert cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0", *first)[0] == 0
    before = out.read_bytes()
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", *then)
    [line] = error_lines(err)
    made, now = ("with", "without") if first else ("without", "with")
    assert code == 1 and line == (f"error: {out} holds predictions made {made} --explain; this command is {now} it "
                                  f"(rerun {made} --explain to resume it, pass another --out, or --force to replace "
                                  "it)")
    assert out.read_bytes() == before
    assert cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", *first)[0] == 0
    records = [json.loads(record) for record in out.read_text().splitlines()]
    assert len(records) == 3 and all(("explanation" in record) == bool(first) for record in records)


def test_prediction_files_of_an_earlier_vip_are_resumed_with_a_word_on_their_coverage(cli, toy_run, tmp_path):
    """An earlier vip's CSV has no coverage column: it is resumed as it is (its coverage is unknown), with a
    warning; so is a JSONL whose sets do not say their coverage."""
    data, run = toy_run
    out = tmp_path / "p.csv"
    images = sorted((data / "test" / "nevus").iterdir())
    assert cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.9")[0] == 0
    rows = list(csv.reader(out.read_text().splitlines()))
    where = rows[0].index("coverage")
    out.write_text("".join(",".join(r[:where] + r[where + 1:-2]) + "\n" for r in rows))  # as vip 0.1 wrote it
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.9")
    assert code == 0, err
    rows = list(csv.reader(out.read_text().splitlines()))
    assert "coverage" not in rows[0] and len(rows) == 4 and {len(r) for r in rows} == {len(rows[0])}
    assert f"warning: {out} was begun by an earlier vip, whose records do not say their coverage" in err
    assert "taken to be at --coverage 0.9 too" in err
    lines_ = tmp_path / "p.jsonl"
    assert cli("predict", *images[:2], "--model", run, "--out", lines_, "--workers", "0", "--coverage", "0.9")[0] == 0
    old = [json.loads(line) for line in lines_.read_text().splitlines()]
    lines_.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("coverage", "decoding", "sha256")}) + "\n"
                              for r in old))
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", lines_, "--workers", "0", "--coverage", "0.9")
    assert code == 0 and "begun by an earlier vip, whose records do not say their coverage" in err, err
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", lines_, "--workers", "0", "--coverage", "0.9")
    assert code == 0 and "begun by an earlier vip" in err  # records of this vip after the old ones: still unknown


def _other_decoding(record_file: Path, suffix: str, digest: str = "0123456789abcdef") -> None:
    """Rewrite `record_file` as if a vip with other image-decoding rules (or that wrote `digest`) had begun it."""
    if suffix == ".jsonl":
        records = [json.loads(line) for line in record_file.read_text().splitlines()]
        record_file.write_text("".join(json.dumps({**r, "decoding": digest}) + "\n" for r in records))
        return
    rows = list(csv.reader(record_file.read_text().splitlines()))
    assert rows[0][-4:] == ["model", "error", "decoding", "sha256"]
    record_file.write_text("".join(",".join(r[:-2] + (["decoding"] if i == 0 else [digest]) + r[-1:]) + "\n"
                                   for i, r in enumerate(rows)))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_file_begun_under_other_decoding_rules_is_not_resumed(cli, toy_run, tmp_path, suffix):
    """Records named the model that made them, not the rules that made the pixels: a file begun by a vip
    that decodes images otherwise (bit depth, orientation, DICOM) was resumed, mixing the two."""
    from vipcli.features import decoding_digest

    data, run = toy_run
    out = tmp_path / f"p{suffix}"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")  # an unreadable image's record carries it too
    images = [*sorted((data / "test" / "nevus").iterdir())[:2], broken]
    assert cli("predict", images[0], broken, "--model", run, "--out", out, "--workers", "0")[0] == 1
    if suffix == ".jsonl":
        assert {json.loads(line)["decoding"] for line in out.read_text().splitlines()} == {decoding_digest([])}
    else:
        assert {r["decoding"] for r in csv.DictReader(out.read_text().splitlines())} == {decoding_digest([])}
    _other_decoding(out, suffix)
    before = out.read_bytes()
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0")
    assert code == 1 and error_lines(err) == [
        f"error: {out} holds predictions of images decoded by other rules (decoding 0123456789abcdef; this vip's is "
        f"{decoding_digest([])}): a vip that reads images otherwise began it (pass --force to predict everything "
        "again, or another --out)"] and out.read_bytes() == before
    assert cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", "--force")[0] == 1
    assert len(out.read_text().splitlines()) == 3 + (suffix == ".csv")  # predicted afresh


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_file_begun_by_a_build_of_2026_11_29_resumes(cli, toy_run, tmp_path, suffix, monkeypatch):
    """vip builds of 2026-11-29 12:10-12:25 wrote `decoding` with the DICOM rule in every record
    (23b8a0557c01bf4b for today's rules): today's vip refused their files of PNGs as begun by a vip
    that reads images otherwise, though the rules were the same."""
    import vipcli.images

    data, run = toy_run
    out = tmp_path / f"p{suffix}"
    images = sorted((data / "test" / "nevus").iterdir())[:2]
    assert cli("predict", images[0], "--model", run, "--out", out, "--workers", "0")[0] == 0
    _other_decoding(out, suffix, "23b8a0557c01bf4b")
    before = out.read_bytes()
    monkeypatch.setattr(vipcli.images, "DEPTH_POLICY", vipcli.images.DEPTH_POLICY + " (changed)")
    code, _, err = cli("predict", *images, "--model", run, "--out", out, "--workers", "0")
    assert code == 1 and "decoded by other rules (decoding 23b8a0557c01bf4b" in err and out.read_bytes() == before
    monkeypatch.undo()
    code, _, err = cli("predict", *images, "--model", run, "--out", out, "--workers", "0")
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 2 + (suffix == ".csv")  # one kept, one added


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_dicom_rule_counts_in_a_dicom_files_record_only(cli, toy_run, tmp_path, suffix):
    """The input's whole digest was in every record: adding a DICOM to a folder being predicted (or
    removing one) refused the file as "begun by a vip that reads images otherwise", although no
    image's pixels had changed."""
    pytest.importorskip("pydicom", minversion="3.0")
    from dicom_files import ramp, write_dicom

    from vipcli.features import decoding_digest

    data, run = toy_run
    folder, out = tmp_path / "scans", tmp_path / f"p{suffix}"
    folder.mkdir()
    for image in sorted((data / "test" / "nevus").iterdir())[:2]:
        (folder / image.name).symlink_to(image)
    assert cli("predict", folder, "--model", run, "--out", out, "--workers", "0")[0] == 0
    write_dicom(folder / "scan.dcm", ramp())
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "1 predicted now" in err, err
    if suffix == ".jsonl":
        digests = {Path(r["path"]).suffix: r["decoding"] for r in map(json.loads, out.read_text().splitlines())}
    else:
        digests = {Path(r["path"]).suffix: r["decoding"] for r in csv.DictReader(out.read_text().splitlines())}
    assert digests == {".png": decoding_digest([]), ".dcm": decoding_digest()} and len(set(digests.values())) == 2
    _other_decoding(out, suffix)  # every record, the DICOM's too, as if made under other rules
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 1 and "decoded by other rules" in err


def test_a_csv_begun_without_the_decoding_column_is_resumed_in_its_layout(cli, toy_run, tmp_path):
    data, run = toy_run
    out = tmp_path / "p.csv"
    images = sorted((data / "test" / "nevus").iterdir())
    assert cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.9")[0] == 0
    rows = list(csv.reader(out.read_text().splitlines()))
    out.write_text("".join(",".join(r[:-2]) + "\n" for r in rows))  # as vip 0.2.0 wrote it
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.9")
    assert code == 0 and "warning" not in err, err
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0][-3:] == ["coverage", "model", "error"] and len(rows) == 4 and {len(r) for r in rows} == {len(rows[0])}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_an_image_replaced_under_its_path_since_it_was_predicted_is_predicted_again(cli, toy_run, tmp_path, suffix):
    """A resumed `--out` said every image was "already there" and kept the prediction of an image's old bytes when
    the file at that path had been replaced since (a re-export, a corrected scan): the finished file differed from
    a fresh run's. Each record now names its image's sha256, and an image whose bytes changed is predicted again."""
    data, run = toy_run
    folder, out, fresh = tmp_path / "images", tmp_path / f"p{suffix}", tmp_path / f"fresh{suffix}"
    folder.mkdir()
    for image in sorted((data / "test" / "melanoma").iterdir())[:3] + sorted((data / "test" / "nevus").iterdir())[:3]:
        (folder / image.name).write_bytes(image.read_bytes())
    assert cli("predict", folder, "--model", run, "--out", out, "--workers", "0")[0] == 0
    before = out.read_text()
    melanoma, nevus = sorted(folder.glob("melanoma_*")), sorted(folder.glob("nevus_*"))
    stat = os.stat(melanoma[1])
    melanoma[1].write_bytes(nevus[2].read_bytes())  # other bytes under the same name, its dates kept (cp -p, rsync -t)
    os.utime(melanoma[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "6 of 6 images, 5 already there, 1 predicted now" in err, err
    assert f"warning: 1 image in {out} changed since it was predicted ({melanoma[1]} holds other bytes" in err
    assert cli("predict", folder, "--model", run, "--out", fresh, "--workers", "0")[0] == 0
    assert out.read_text() == fresh.read_text() != before  # what a fresh run writes, in input order
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "6 already there, 0 predicted now" in err and "changed" not in err
    # stopped after it predicted the image again, before it rewrote the file: the old record first, the new one last
    new_record = next(line for line in fresh.read_text().splitlines(True) if line.startswith(
        str(melanoma[1]) if suffix == ".csv" else json.dumps({"path": str(melanoma[1])})[:-1]))
    out.write_text(before + new_record)
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "6 already there, 0 predicted now" in err and "warning" not in err, err
    assert out.read_text() == fresh.read_text()


def test_an_image_replaced_while_it_was_predicted_is_predicted_again_on_resume(cli, toy_run, tmp_path, monkeypatch):
    """An image replaced after vip read it and before its record was written (a file still being copied into the
    archive folder, a re-export landing mid-run) was recorded with the sha256 of its new bytes beside the prediction
    of its old ones, so every resume kept that prediction as current. A record now names the bytes it was made
    from, and a resume predicts the new bytes."""
    from vipcli import features

    data, run = toy_run
    folder, out, fresh = tmp_path / "images", tmp_path / "p.jsonl", tmp_path / "fresh.jsonl"
    folder.mkdir()
    sources = sorted((data / "test" / "melanoma").iterdir())[:2] + sorted((data / "test" / "nevus").iterdir())[:2]
    for image in sources:
        (folder / image.name).write_bytes(image.read_bytes())
    replaced, original_encode = folder / sources[0].name, features.encode_images

    def encode_then_replace(*args, **kwargs):
        encoded = original_encode(*args, **kwargs)
        replaced.write_bytes(sources[3].read_bytes())  # lands after it was read, before its record is written
        return encoded

    monkeypatch.setattr(features, "encode_images", encode_then_replace)
    assert cli("predict", folder, "--model", run, "--out", out, "--workers", "0")[0] == 0
    monkeypatch.setattr(features, "encode_images", original_encode)
    first = json.loads(out.read_text().splitlines()[0])
    assert first["path"] == str(replaced) and first["sha256"] == hashlib.sha256(sources[0].read_bytes()).hexdigest()
    code, _, err = cli("predict", folder, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "3 already there, 1 predicted now" in err and "changed since it was predicted" in err, err
    assert cli("predict", folder, "--model", run, "--out", fresh, "--workers", "0")[0] == 0
    assert out.read_text() == fresh.read_text()


def test_a_resume_shows_progress_while_it_checks_the_recorded_images(cli, toy_run, tmp_path, monkeypatch):
    """Resuming reads the bytes of every image already recorded before it predicts the next one: in an archive
    of large scans, minutes in which a log under nohup or Slurm showed nothing. It now shows that step's progress
    as it shows predicting's."""
    data, run = toy_run
    out = tmp_path / "p.jsonl"
    images = sorted((data / "test" / "nevus").iterdir())[:4]
    assert cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0")[0] == 0
    monkeypatch.setenv("VIP_PROGRESS_SECONDS", "0")  # a progress line at every step
    code, _, err = cli("predict", *images, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "3 already there, 1 predicted now" in err, err
    lines = err.splitlines()
    checked = lines.index(next(line for line in lines if line.startswith("checking recorded images: 3/3 (100.0%)")))
    assert checked < lines.index(next(line for line in lines if line.startswith("predicting: 1/1")))


def test_a_resume_reads_its_file_once_to_resume_it(cli, toy_run, tmp_path, monkeypatch):
    """A resumed `--out` read every record of FILE four times: before the model loads, for the images done, again
    for the sha256 of each (about 70 microseconds a record each time on this project's 2-core machine: 4 minutes of
    reading for an archive of a million images before the first new prediction). The images done and their sha256
    now come from one reading: three in all, the last one to finish the file."""
    from vipcli import prediction_files

    data, run = toy_run
    out = tmp_path / "p.jsonl"
    images = sorted((data / "test" / "nevus").iterdir())[:4]
    assert cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0")[0] == 0
    readings, original = [], prediction_files.complete_lines
    monkeypatch.setattr(prediction_files, "complete_lines", lambda file: (readings.append(Path(file)), original(file))[1])
    code, _, err = cli("predict", *images, "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "3 already there, 1 predicted now" in err, err
    assert readings.count(out) == 3


def _same_size_pngs(sources: list[Path], folder: Path) -> list[Path]:
    """`sources` saved into `folder` as uncompressed PNGs (a file's size then depends on its pixel count alone)."""
    from PIL import Image

    folder.mkdir()
    made = []
    for source in sources:
        with Image.open(source) as image:
            image.convert("RGB").save(folder / source.name, compress_level=0)
        made.append(folder / source.name)
    return made


def test_a_resume_reads_only_the_images_that_changed_since_they_were_recorded(cli, toy_run, tmp_path, monkeypatch):
    """Every resume read and hashed every image already recorded, to find those whose bytes changed: thousands of
    images, seconds to minutes before the first new prediction, each time. The versions of the images it recorded
    (device, inode, size, mtime, ctime) are now kept in the cache folder, and a resume in a new process reads only the
    images whose version is not one of those, or was written too shortly before it was hashed to be trusted; an
    image rewritten with the same size and its mtime put back is still read, and predicted again."""
    from PIL import Image

    from vipcli import digests, version_log

    data, run = toy_run
    out, fresh = tmp_path / "p.jsonl", tmp_path / "fresh.jsonl"
    images = _same_size_pngs(sorted((data / "test" / "nevus").iterdir())[:4], tmp_path / "images")
    hashed, original = [], digests._sha256_of
    monkeypatch.setattr(digests, "_sha256_of", lambda handle: (hashed.append(Path(handle.name)), original(handle))[1])

    def resume(*paths) -> list[Path]:  # in a new process (only the cache folder remembers): the images it read
        monkeypatch.setattr(digests, "_MEMO", {})
        hashed.clear()
        code, _, err = cli("predict", *paths, "--model", run, "--out", out, "--workers", "0")
        assert code == 0 and f"{len(paths)} of {len(paths)} images" in err, err
        said.append(err)
        return sorted(path for path in hashed if path.parent == images[0].parent)

    said: list[str] = []
    monkeypatch.setattr(digests, "SETTLED_NS", 10**15)  # each written less than that before it was hashed: a
    assert cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0")[0] == 0  # rewrite in the
    assert resume(*images[:3]) == images[:3]  # same clock tick could go unseen, so they are read again
    monkeypatch.setattr(digests, "SETTLED_NS", 0)  # each written long before it was hashed (no test waits for that)
    assert cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0", "--force")[0] == 0
    assert resume(*images[:3]) == [] and "3 already there" in said[-1]
    stat = os.stat(images[1])
    with Image.open(images[1]) as image:  # other pixels, the same size, its dates put back (cp -p, a restore)
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(images[1], compress_level=0)
    os.utime(images[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(images[1]).st_size == stat.st_size and os.stat(images[1]).st_mtime_ns == stat.st_mtime_ns
    assert resume(*images) == [images[1], images[3]]  # the changed image and the new one
    assert "2 already there, 2 predicted now" in said[-1] and f"1 image in {out} changed" in said[-1], said[-1]
    assert cli("predict", *images, "--model", run, "--out", fresh, "--workers", "0", "--no-cache")[0] == 0
    assert out.read_bytes() == fresh.read_bytes()
    assert resume(*images) == [] and "4 already there, 0 predicted now" in said[-1]
    assert len(version_log.log_files(out)) == 1 and version_log.log_files(fresh) == []  # --no-cache keeps none
    code, _, err = cli("cache", "clear")
    assert code == 0 and "kept" not in err and not (Path(os.environ["VIP_CACHE_DIR"]) / "digests").exists(), err


def test_a_csv_begun_without_the_sha256_column_is_resumed_in_its_layout(cli, toy_run, tmp_path):
    data, run = toy_run
    out = tmp_path / "p.csv"
    images = sorted((data / "test" / "nevus").iterdir())
    assert cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0")[0] == 0
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0][-2:] == ["decoding", "sha256"]
    out.write_text("".join(",".join(r[:-1]) + "\n" for r in rows))  # as vip builds before 2026-12-01 wrote it
    code, _, err = cli("predict", *images[:3], "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "warning" not in err and "2 already there, 1 predicted now" in err, err
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0][-3:] == ["model", "error", "decoding"] and len(rows) == 4 and {len(r) for r in rows} == {len(rows[0])}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_repeated_records_of_an_image_are_written_once(cli, toy_run, tmp_path, clean, suffix):
    data, run = toy_run
    out = tmp_path / f"p{suffix}"
    text = clean(suffix).decode()
    records = text.splitlines(keepends=True)[(suffix == ".csv"):]
    out.write_text(text + "".join(records[:4]))  # a file that got some images twice
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "24 of 24 images, 24 already there, 0 predicted now" in err
    assert "4 records in" in err and "each image keeps its first record" in err
    assert out.read_bytes() == clean(suffix)


def test_an_image_given_twice_is_predicted_and_written_once(cli, toy_run, tmp_path, clean):
    data, run = toy_run
    out = tmp_path / "p.jsonl"
    code, _, err = cli("predict", data / "test", data / "test" / "nevus", "--model", run, "--out", out,
                       "--workers", "0")
    assert code == 0 and "24 of 24 images, 24 predicted now" in err
    assert out.read_bytes() == clean(".jsonl")


# --- one process writes a file at a time --------------------------------------------------------------


def _hold_lock(out: Path) -> subprocess.Popen:
    """Another process that holds the lock of `out` until it is killed."""
    code = ("import sys; from vipcli.locks import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_second_process_on_the_same_out_refuses_and_a_killed_ones_lock_blocks_nothing(cli, toy_run, tmp_path,
                                                                                      clean, monkeypatch):
    data, run = toy_run
    out = tmp_path / "p.jsonl"
    holder = _hold_lock(out)
    try:
        with monkeypatch.context() as patch:
            import vipcli.registry

            patch.setattr(vipcli.registry, "load_backbone", lambda *a, **k: pytest.fail("refused after work began"))
            code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
        assert code == 1 and error_lines(err) == [
            f"error: {out} is being written by another vip process (pid {holder.pid} on host {os.uname().nodename}) "
            "(wait for it to finish, or pass another --out)"]
        assert not out.exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # as a node that dies: its lock file stays behind
        holder.wait()
    assert (tmp_path / "p.jsonl.lock").exists()
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
    assert code == 0, err
    assert out.read_bytes() == clean(".jsonl") and sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


def test_ctrl_c_releases_the_out_file(cli, toy_run, tmp_path, monkeypatch):
    from vipcli import predict as predict_module

    data, run = toy_run
    out = tmp_path / "p.jsonl"
    original = predict_module.stream_predictions

    def interrupted(*args, **kwargs):
        for number, item in enumerate(original(*args, **kwargs)):
            if number == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(predict_module, "stream_predictions", interrupted)
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
    assert code == 130 and sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]
    monkeypatch.setattr(predict_module, "stream_predictions", original)
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")
    assert code == 0 and "3 already there, 21 predicted now" in err


def test_the_lock_is_taken_once_by_one_holder(tmp_path):
    from vipcli.errors import VipError
    from vipcli.locks import output_lock

    out = tmp_path / "p.jsonl"
    with output_lock(out) as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
        with pytest.raises(VipError, match="is being written by another vip process"):
            with output_lock(out):
                pass
        assert lock.exists()
    assert not lock.exists()
    with output_lock(out):  # free again
        pass


def test_where_there_are_no_file_locks_the_output_is_written_with_one_warning_saying_what_is_unguarded(
        tmp_path, monkeypatch, capsys):
    """Neither flock nor Windows' locks (`import fcntl` and `import msvcrt` fail, as on a file system without
    locks): vip wrote as if it held the lock, and a second vip on the same output went unrefused without a word."""
    import sys

    from vipcli import locks

    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", None)
    monkeypatch.setattr(locks, "_unlocked_warned", set())
    out = tmp_path / "p.jsonl"
    for _ in range(2):
        with locks.output_lock(out) as lock:
            assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")] == [
        f"warning: {out}: this system or file system has no file locks, so a second vip writing it at the same time "
        "would not be stopped (run one at a time)"]


def test_a_file_of_the_lock_files_name_that_is_not_a_lock_is_left_alone(tmp_path):
    from vipcli.errors import VipError
    from vipcli.locks import output_lock

    out = tmp_path / "p.jsonl"
    (tmp_path / "p.jsonl.lock").write_text("my notes\n")
    with pytest.raises(VipError, match="p.jsonl.lock exists and is not a vip lock file"):
        with output_lock(out):
            pass
    assert (tmp_path / "p.jsonl.lock").read_text() == "my notes\n"


def test_a_reader_asking_whether_a_lock_is_held_does_not_refuse_a_writer_starting_then(tmp_path):
    """`vip report` tells whether a sweep runs by taking the sweep lock's shared lock for an instant: a
    `vip benchmark` starting in that instant was refused as "being written by another vip process"."""
    import fcntl
    import threading

    from vipcli.locks import lock_file, output_lock

    out = tmp_path / "p.jsonl"
    lock_file(out).write_text("4242 elsewhere\n")  # left by a killed run
    reader = os.open(lock_file(out), os.O_RDONLY)
    fcntl.flock(reader, fcntl.LOCK_SH | fcntl.LOCK_NB)  # as lock_holder holds it
    releasing = threading.Timer(0.03, lambda: fcntl.flock(reader, fcntl.LOCK_UN))
    releasing.start()
    try:
        with output_lock(out):
            pass
    finally:
        releasing.join()
        os.close(reader)


def test_lock_files_left_by_two_killed_runs_one_after_the_other_block_nothing(tmp_path):
    import os as os_

    from vipcli.locks import _take_lock, lock_file, output_lock

    out = tmp_path / "p.jsonl"
    lock_file(out).write_text("4242 elsewhere\n")  # left by a killed run
    for _ in range(2):  # each run takes the lock and is killed holding it (its handle closed, file left)
        os_.close(_take_lock(out, lock_file(out)))
        pid, host = lock_file(out).read_text().split()
        assert pid == str(os_.getpid()) and host
    with output_lock(out):
        pass


def test_a_lock_file_left_read_only_by_another_users_killed_run_blocks_nothing(tmp_path, monkeypatch):
    from vipcli.locks import output_lock

    out, lock = tmp_path / "p.jsonl", tmp_path / "p.jsonl.lock"
    lock.write_text("4242 elsewhere\n")
    lock.chmod(0o444)
    if os.access(lock, os.W_OK):  # root: the mode does not bind; refuse the write as it is refused to another user
        real_open = os.open

        def refusing(path, flags, *args, **kwargs):
            if Path(path) == lock and flags & (os.O_WRONLY | os.O_RDWR):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing)
    with output_lock(out):
        pass
    assert not (tmp_path / "p.jsonl.lock").exists()


def test_a_killed_writers_forked_worker_does_not_keep_its_lock(tmp_path):
    # decoding workers are forked while the lock is held: a worker that outlives its killed parent (a
    # DataLoader worker notices only some seconds later) must not hold the lock of the parent's --out
    from vipcli.locks import output_lock

    out = tmp_path / "p.jsonl"
    code = ("import os, sys, time; from vipcli.locks import output_lock\n"
            "with output_lock(sys.argv[1]):\n"
            "    if os.fork() == 0:  # the worker says it runs (its fork handlers ran), then works on\n"
            "        print(os.getpid(), flush=True); time.sleep(60); os._exit(0)\n"
            "    sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    worker = int(holder.stdout.readline())
    try:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with output_lock(out):  # the worker still runs, and holds nothing
            pass
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_decoding_worker_whose_main_process_was_killed_prints_no_traceback(tmp_path):
    # `kill -9` of vip while a worker hands it a batch: the worker's fd-sharing thread met "Connection
    # reset by peer" and printed its traceback on the user's terminal, seconds after the kill
    code = ("import os, threading, time; from vipcli.decoding import worker_ignores_sigterm\n"
            "if os.fork() == 0:\n"
            "    worker_ignores_sigterm(0); parent = os.getppid()\n"
            "    def serve():\n"
            "        while os.getppid() == parent: time.sleep(0.01)\n"
            "        raise ConnectionResetError(104, 'Connection reset by peer')\n"
            "    threading.Thread(target=serve).start()\n"
            "    def fail():\n"
            "        raise ValueError('a real fault')\n"
            "    time.sleep(0.5); threading.Thread(target=fail).start()\n"
            "else:\n"
            "    time.sleep(0.2); os._exit(0)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("VIP_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    # (stderr is read to its end: until the worker has gone too)
    assert "ConnectionResetError" not in done.stderr
    assert "ValueError: a real fault" in done.stderr  # any other fault is shown as before


def test_an_error_in_a_decoding_worker_leaves_no_worker_behind(tmp_path, monkeypatch):
    # a decoder failing in a worker (a DICOM holding frames its header did not name) was printed as one
    # line, then the command never exited: its workers, which ignore SIGTERM, outlived the exit's terminate()
    import multiprocessing

    from PIL import Image

    from vipcli import features
    from vipcli.registry import load_backbone

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the workers must inherit the patched decoder (fork)")
    paths = []
    for number in range(8):  # 8 images or more are decoded by worker processes
        paths.append(tmp_path / f"{number}.png")
        Image.new("RGB", (32, 32), (30 * number, 90, 10)).save(paths[-1])
    real = features.load_image

    def load(path, **options):
        if Path(path).name == "3.png":
            raise TypeError("a decoder's own fault")
        return real(path, **options)

    monkeypatch.setattr(features, "load_image", load)
    with pytest.raises(TypeError, match="a decoder's own fault"):  # its traceback holds the loader
        features.encode_images(load_backbone("toy"), paths, views=1, workers=2)
    assert multiprocessing.active_children() == []


# --- --workers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["predict", "IMAGES", "--model", "RUN"], ["report", "RUN"],
                                     ["symptoms", "rank", "--data", "DATA", "--backbone", "toy"],
                                     ["train", "--data", "DATA", "--backbone", "toy"]])
def test_every_command_refuses_a_negative_workers_the_same_way(cli, toy_run, command, no_work):
    data, run = toy_run
    names = {"IMAGES": data / "test", "RUN": run, "DATA": data}
    code, out, err = cli(*[names.get(part, part) for part in command], "--workers", "-2")
    assert code == 2 and out == "" and error_lines(err) == ["error: --workers must be 0 or more, got -2"]


def test_an_interrupt_python_had_to_swallow_still_stops_the_command(cli, toy_run, tmp_path, monkeypatch):
    """A Ctrl-C or SIGTERM that arrives where Python cannot raise (a fork handler as the decoding
    workers start, a finalizer) is dropped by Python; vip remembers it and stops at the next image,
    without printing the dropped exception."""
    import os
    import signal

    from vipcli import decoding

    class Finalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises inside __del__: Python drops it

    original = decoding.loader

    def loader_started_under_a_signal(*args, **kwargs):
        swallowed = Finalizer()
        del swallowed
        yield from original(*args, **kwargs)

    monkeypatch.setattr(decoding, "loader", loader_started_under_a_signal)
    data, run = toy_run
    out = tmp_path / "p.jsonl"
    code, _, err = cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0", "--no-cache")
    assert code == 143 and error_lines(err)[-1] == "error: terminated (SIGTERM); nothing half-written was left behind"
    assert "Exception ignored" not in err and "Traceback" not in err
    assert not out.exists() or len(out.read_text().splitlines()) < 24  # stopped, not run to the end


def test_ctrl_c_during_the_exit_clean_up_is_one_line(monkeypatch, capsys):
    """Ctrl-C after the work is done (while vip spares the interpreter's exit its collections)."""
    from vipcli.cli import main as main_module

    def late_ctrl_c():
        raise KeyboardInterrupt

    monkeypatch.setattr(main_module, "main", lambda: 0)
    monkeypatch.setattr(main_module, "_skip_shutdown_collections", late_ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        main_module.run()
    err = capsys.readouterr().err
    assert stopped.value.code == 130 and "Traceback" not in err
    assert error_lines(err) == ["error: interrupted after the command had finished; its work is complete"]


def test_sigterm_during_the_exit_clean_up_is_one_line_too():
    """SIGTERM there (`timeout`, Slurm) killed the process silently, with no line, where Ctrl-C says
    that everything was written."""
    code = ("import os, signal, time\nfrom vipcli.cli import main as m\n"
            "def late_sigterm():\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
            "m.main = lambda: 0\nm._skip_shutdown_collections = late_sigterm\nm.run()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("VIP_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    assert done.returncode == 143 and "Traceback" not in done.stderr
    assert error_lines(done.stderr) == ["error: terminated (SIGTERM) after the command had finished; its work is complete"]


def test_a_signal_ignored_by_the_parent_stays_ignored():
    """`vip benchmark ... &` in a script starts with SIGINT ignored: a Ctrl-C meant for the shell must
    not stop it (Python leaves an inherited SIG_IGN alone, and so does vip)."""
    from vipcli.stop_signals import stop_signals_raise

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_signals_raise():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # not ignored: handled
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_backbone_that_differs_from_the_runs_names_what_differs(cli, toy_run, monkeypatch):
    """The warning named the weights even when another entry differed, showing two equal values as differing."""
    from vip_backbones.toy import ToyBackbone

    data, run = toy_run
    described = ToyBackbone.describe
    monkeypatch.setattr(ToyBackbone, "describe", lambda self: {**described(self), "arch": "toy-edited"})
    image = sorted((data / "test" / "nevus").iterdir())[0]
    code, _, err = cli("predict", image, "--model", run, "--no-cache")
    assert code == 0, err
    assert (f"warning: backbone 'toy' differs from the one {run} was trained with (arch: now toy-edited, trained "
            "with toy)") in err.splitlines()


def test_an_out_file_never_mixes_predictions_made_with_a_backbone_other_than_the_runs(cli, toy_run, tmp_path,
                                                                                        monkeypatch):
    """A weights file replaced under the run's --pretrained path between two `vip predict --out` of one file: the
    second warned that the backbone differs and appended its predictions under the same model name (`5 already
    there, 3 predicted now`), and begun with the other weights and resumed with the right ones, it said nothing.
    Such predictions are now named apart, and a file of the other kind is refused as another model's."""
    from vip_backbones.toy import ToyBackbone

    data, run = toy_run
    images = sorted((data / "test" / "nevus").iterdir())[:8]
    described = ToyBackbone.describe
    for first, then in (((), ("edited",)), (("edited",), ())):
        out = tmp_path / f"p{len(first)}.jsonl"
        for edited, count in ((first, 5), (then, 8)):
            monkeypatch.setattr(ToyBackbone, "describe", (lambda self: {**described(self), "weights_sha256": "0" * 64})
                                if edited else described)
            before = out.read_bytes() if out.exists() else None
            code, _, err = cli("predict", *images[:count], "--model", run, "--out", out, "--workers", "0")
        line, = error_lines(err)
        assert code == 1 and line.startswith(f"error: {out} holds predictions of another model (model "), err
        assert out.read_bytes() == before and len(out.read_text().splitlines()) == 5


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_coverage_refusal_shows_both_coverages_as_typed_not_rounded(cli, toy_run, tmp_path, suffix):
    """0.1 + 0.2 is 0.30000000000000004: shown as 0.3 ('holds sets at 0.3; this command asks for 0.3'),
    the hint's `--coverage 0.3` was refused again."""
    data, run = toy_run
    out = tmp_path / f"p{suffix}"
    images = sorted((data / "test" / "nevus").iterdir())
    odd = str(0.1 + 0.2)
    assert cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0", "--coverage", odd)[0] == 0
    code, _, err = cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0", "--coverage", "0.3")
    [line] = error_lines(err)
    assert code == 1 and f"holds prediction sets at --coverage {odd}; this command asks for 0.3 " in line
    assert f"rerun with --coverage {odd} to resume it" in line
    assert cli("predict", *images[:2], "--model", run, "--out", out, "--workers", "0", "--coverage", odd)[0] == 0


def test_the_logs_of_a_prediction_file_deleted_by_hand_are_shown_and_removed_as_stale(cli, toy_run, tmp_path,
                                                                                        monkeypatch):
    """`vip predict --out FILE` keeps the versions of the images it recorded in the cache folder; a FILE deleted by
    hand and never written again left them there, unseen by `vip cache info`, until `vip cache clear` emptied the
    whole cache. `vip cache info` now counts them and `vip cache clear --stale` removes those of a FILE that is gone
    (not those of a FILE whose part files remain, nor those another host wrote into a cache folder it shares)."""
    from vipcli import digests, version_log

    data, run = toy_run
    monkeypatch.setattr(digests, "SETTLED_NS", 0)  # each image written long before it was hashed: its version is logged
    images = sorted((data / "test" / "nevus").iterdir())[:2]
    gone, kept, parted, other_host = (tmp_path / f"{name}.jsonl" for name in ("gone", "kept", "parted", "other"))
    for out in (gone, kept, parted, other_host):
        assert cli("predict", *images, "--model", run, "--out", out, "--workers", "0")[0] == 0
    [other_log] = version_log.log_files(other_host)
    header, *versions = other_log.read_text().splitlines(keepends=True)
    other_log.write_text(f"out {header.split()[1]} {b'node17'.hex()}\n" + "".join(versions))
    parted.rename(tmp_path / "parted.jsonl.rank00001-of-00002.part")  # a torchrun run killed before its merge
    gone.unlink()
    other_host.unlink()
    logs = {out: version_log.log_files(out) for out in (gone, kept, parted, other_host)}
    assert all(len(found) == 1 for found in logs.values()), logs
    code, shown, _ = cli("cache", "info")
    assert code == 0 and "predict --out logs" in shown, shown
    assert "`vip cache clear --stale` removes the 1 predict --out log of files that are gone" in shown, shown
    summary = json.loads(cli("cache", "info", "--json")[1])
    assert (summary["version_logs"], summary["orphaned_logs"]) == (4, 1)
    code, said, err = cli("cache", "clear", "--stale")
    assert code == 0 and ", and 1 predict --out log of files that are gone (" in said and "kept" not in err, said
    assert not logs[gone][0].exists() and all(logs[out][0].exists() for out in (kept, parted, other_host))
    monkeypatch.setattr(digests, "_MEMO", {})  # a new process: what the kept logs hold is still read, as before
    assert version_log.trust_logged_versions(kept) == len(images)


def test_a_folder_of_images_with_another_tools_results_json_is_predicted_not_refused_as_a_benchmark(cli, toy_run,
                                                                                                   tmp_path):
    """`vip predict scans` of a folder of scans that also held a `results.json` of another tool (a viewer's export, a
    reading list) was refused as `a benchmark folder written by vip benchmark, not a folder of images`: any file of
    that name was taken for a benchmark's. Only a results.json as `vip benchmark` writes it (its rows) is one."""
    import shutil

    data, run = toy_run
    scans = tmp_path / "scans"
    shutil.copytree(data / "test" / "nevus", scans)
    (scans / "results.json").write_text(json.dumps({"reader": "dr. a", "findings": {"a.png": "benign"}}))
    code, out, err = cli("predict", scans, "--model", run, "--workers", "0")
    assert code == 0 and len(out.strip().splitlines()) >= len(list(scans.glob("*.png"))), err
    (scans / "results.json").write_text(json.dumps({"config": {"data": str(data)}, "rows": []}))  # a benchmark's
    code, out, err = cli("predict", scans, "--model", run, "--workers", "0")
    assert code == 1 and out == "" and "is a benchmark folder written by `vip benchmark`" in err, err
