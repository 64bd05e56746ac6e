"""`vip predict --out FILE`: one record per image, written as it is made, resumable, mergeable.

Formats (by the suffix of FILE):
- `.jsonl` (or `.ndjson`): one JSON object a line: path, label, probability, probabilities
  ({class: p}), prediction_set and coverage (with --coverage), explanation (with --explain), model,
  decoding, sha256; an unreadable image is `{"path": ..., "error": reason, "model": ..., "decoding": ...}`.
- `.csv`: a header, then path, label, probability, one `p_<class>` column per class,
  prediction_set (classes joined by `|`) and coverage (with --coverage), model, error, decoding, sha256.
  A CSV begun by an earlier vip has no sha256 column (earlier still, no decoding column, and before
  that no coverage column) and is resumed in its own layout.

`model` is the model's digest (`Predictor.model_digest`): a file is only ever resumed by the model
that began it, and only for the images it was begun for. `decoding` is the digest of the rules by
which images become pixels (`features.decoding_digest`, as a benchmark records it; the DICOM rule
counts in a DICOM file's record only): a file whose records were made under other rules is not
resumed (its images would be predicted from other pixels); records of an earlier vip, which do not
carry it, are not checked. `sha256` is that of the image file's bytes when it was predicted: an image
replaced since under the same path (a re-export, a corrected file) is predicted again on resume and its
record replaced, so that a resumed file holds what a fresh run would (records of an earlier vip, which
do not carry it, are kept as they are).

A record is one `write` of one complete line, flushed at once, so a killed run leaves at most one
torn last line: readers ignore a last line without its newline, and a writer cuts it off before
appending. The paths of complete records are what a rerun skips.

Resuming trusts only what vip wrote: every complete line must be a valid record of this format (a
damaged line is refused, naming the file and the line); an image is recorded once (a file holding
repeated records of one image is rewritten with its first). While a process writes FILE it holds
`FILE.lock` beside it (an OS lock, dropped when the process ends however it ends): a second
`vip predict --out FILE` refuses at once instead of predicting everything again into the same file.

Under torchrun, rank r of n appends to its own part file `FILE.rank<r>-of-<n>.part` beside FILE;
at the end rank 0 writes FILE afresh (temp file + rename) with every record of FILE and of all part
files, in input order, and removes the part files. A killed rank loses nothing it had flushed: a
rerun reads FILE and every part file (whatever world size wrote them) before any rank writes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from vipcli.console import plural
from vipcli.errors import UsageError, VipError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
SET_SEPARATOR = "|"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a path: a byte of its name that is not UTF-8


def output_format(path: Path) -> str:
    """'jsonl' or 'csv' from the suffix of `path`; a folder, or any other suffix, is an error."""
    if Path(path).is_dir():
        raise VipError(f"--out {path} is a folder, not a file",
                       f"name a file in it: --out {Path(path) / 'predictions.jsonl'}")
    kind = FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise UsageError(f"--out {path}: unknown format '{Path(path).suffix}'",
                         "name the file .jsonl (one JSON record a line) or .csv")
    return kind


def part_files(out: Path) -> list[Path]:
    """The part files of `out` left by ranks of any world size, in a fixed order."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    return sorted(out.parent.glob(f"{_glob_escape(out.name)}.rank*-of-*.part"))


def part_file(out: Path, rank: int, size: int) -> Path:
    """Where rank `rank` of `size` writes its records."""
    out = Path(out)
    return out.with_name(f"{out.name}.rank{rank:05d}-of-{size:05d}.part")


def _glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


@dataclass(frozen=True)
class RecordFormat:
    """How records of one run look: the format, the classes, and the optional fields."""

    kind: str  # "jsonl" or "csv"
    class_names: tuple[str, ...]
    coverage: float | None  # --coverage: records carry prediction_set and this coverage (None: no sets)
    explain: bool = False  # JSONL records carry the explanation
    model: str = ""  # the digest of the model that makes the records (recorded in each one)
    coverage_column: bool = True  # False: a CSV begun by an earlier vip, whose header has no coverage column
    decoding: str = ""  # the digest of the image-decoding rules of images other than DICOM files (in their records)
    dicom_decoding: str = ""  # that of DICOM files, whose rules add the DICOM rule (in their records; "": `decoding`)
    decoding_column: bool = True  # False: a CSV begun by an earlier vip, whose header has no decoding column
    sha256_column: bool = True  # False: a CSV begun by an earlier vip, whose header has no sha256 column

    @property
    def sets(self) -> bool:
        """Whether records carry a prediction set."""
        return self.coverage is not None

    def set_columns(self) -> list[str]:
        """The CSV columns of a prediction set: none, prediction_set, or prediction_set and coverage."""
        if not self.sets:
            return []
        return ["prediction_set", "coverage"] if self.coverage_column else ["prediction_set"]

    def header(self) -> list[str]:
        """The CSV header row."""
        return ["path", "label", "probability", *(f"p_{name}" for name in self.class_names), *self.set_columns(),
                "model", "error", *self.after_error()]

    def after_error(self) -> list[str]:
        """The CSV columns after `error`: decoding and sha256, fewer in the layout of an earlier vip."""
        return [name for name, kept in (("decoding", self.decoding_column), ("sha256", self.sha256_column)) if kept]

    def resuming(self, files: list[Path]) -> "RecordFormat":
        """This format as `files` (a CSV and its part files) already hold it: the layout of an earlier
        vip (no sha256 column; earlier still, no decoding column, and before that no coverage column either)
        when one of them was begun by it, so that it is resumed in that layout."""
        if self.kind != "csv":
            return self
        earlier = [replace(self, sha256_column=False), replace(self, decoding_column=False, sha256_column=False)]
        if self.sets:
            earlier.append(replace(self, coverage_column=False, decoding_column=False, sha256_column=False))
        for file in files:
            first = next(complete_lines(file), None)
            header = next(csv.reader([first[1]]), None) if first is not None else None
            for layout in earlier:
                if header == layout.header():
                    return layout
        return self

    def unchecked_coverage(self, files: list[Path]) -> bool:
        """Whether `files` hold prediction sets of an earlier vip, which do not say their coverage (a CSV
        without the column, or a JSONL record with a set and no `coverage`): resuming cannot check it."""
        if not self.sets:
            return False
        if self.kind == "csv":
            return not self.coverage_column and any(next(complete_lines(f), None) is not None for f in files)
        for file in files:
            for _, line in complete_lines(file):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "prediction_set" in record:
                    if "coverage" not in record:
                        return True
                    break  # a file's records are all of one vip: its first set says it
        return False

    def header_line(self) -> str:
        """What a fresh file of this format starts with: the CSV header line ("" for JSONL)."""
        return _csv_line(self.header()) if self.kind == "csv" else ""

    def prediction_line(self, prediction, sha256: str = "") -> str:
        """One prediction as one line (with its newline); `sha256`: of the image's bytes ("": unknown)."""
        rounded = prediction.record(self.explain)  # every figure rounded once, from full precision
        if self.kind == "jsonl":
            record = {key: rounded[key] for key in ("path", "label", "probability", "probabilities")}
            if self.sets:
                record["prediction_set"] = prediction.prediction_set
                record["coverage"] = self.coverage
            if self.explain:
                record["explanation"] = rounded["explanation"]
            record["model"] = self.model
            record["decoding"] = self.decoding_of(prediction.path)
            if sha256:
                record["sha256"] = sha256
            return _json_line(record)
        row = [prediction.path, prediction.label, rounded["probability"],
               *(rounded["probabilities"][name] for name in self.class_names)]
        if self.sets:
            row.append(SET_SEPARATOR.join(prediction.prediction_set or []))
        if self.sets and self.coverage_column:
            row.append(coverage_text(self.coverage))  # the shortest text that reads back as the same float
        return _csv_line([*row, self.model, "", *self._cells_after_error(prediction.path, sha256)])

    def error_line(self, path: str, reason: str) -> str:
        """One unreadable image as one line (with its newline)."""
        if self.kind == "jsonl":
            return _json_line({"path": path, "error": reason, "model": self.model, "decoding": self.decoding_of(path)})
        return _csv_line([path, "", "", *([""] * len(self.class_names)), *([""] * len(self.set_columns())),
                          self.model, reason, *self._cells_after_error(path, "")])

    def decoding_of(self, path: str) -> str:
        """The decoding digest of `path`'s record: the DICOM rule counts only for a DICOM file, as in the
        feature cache, so adding or removing DICOM files leaves the records of other images resumable."""
        from vipcli.dicom import is_dicom_name

        return (self.dicom_decoding or self.decoding) if is_dicom_name(path) else self.decoding

    def _cells_after_error(self, path: str, sha256: str) -> list[str]:
        """The CSV cells after `error`: `path`'s decoding digest and its bytes' `sha256`, fewer in an earlier
        vip's layout."""
        cells = {"decoding": self.decoding_of(path), "sha256": sha256}
        return [cells[name] for name in self.after_error()]

    def parse(self, line: str, first: bool) -> tuple[str, bool, str | None, str | None, str | None] | None:
        """(path, is an error, model digest, decoding digest, image sha256) of a complete line, a digest None
        where an earlier vip's record has none; None for a header or a non-record."""
        if self.kind == "jsonl":
            try:
                record = json.loads(line)
            except ValueError:
                return None
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                return None
            model, decoding, sha256 = (record.get(key) for key in ("model", "decoding", "sha256"))
            return (record["path"], "error" in record, model if isinstance(model, str) else None,
                    decoding if isinstance(decoding, str) else None, sha256 if isinstance(sha256, str) else None)
        row = next(csv.reader([line]), None)
        if not row or first:
            return None
        names = self.after_error()
        cells = row[:len(row) - len(names)]  # ... model, error
        after = dict(zip(names, row[len(cells):])) if len(row) >= 2 + len(names) else {}
        return (row[0], bool(cells[-1]) if cells else False, cells[-2] if len(cells) >= 2 else None,
                after.get("decoding"), after.get("sha256") or None)

    def problem(self, line: str, file: Path) -> str | None:
        """Why a complete line (not the CSV header) is not a record this format writes; None if it is one.

        A JSONL record of other classes, or made with/without --coverage, is refused (VipError) here:
        each record says so, not only the first (which may be an unreadable image's).
        """
        if self.kind == "csv":
            return self._csv_problem(next(csv.reader([line]), []), file)
        try:
            record = json.loads(line)
        except ValueError:
            return "not a JSON object"
        if not isinstance(record, dict):
            return "not a JSON object"
        self._check_record_options(record, file)
        if not isinstance(record.get("path"), str) or not record["path"]:
            return "no 'path'"
        for key in ("model", "decoding", "sha256"):
            if key in record and not isinstance(record[key], str):
                return f"'{key}' is {record[key]!r}, not a digest"
        if "error" in record:
            return None if isinstance(record["error"], str) else f"'error' is {record['error']!r}, not a reason"
        probabilities = record.get("probabilities")
        if not isinstance(probabilities, dict) or tuple(probabilities) != self.class_names:
            return f"'probabilities' is not a probability for each of {', '.join(self.class_names)}"
        members = record.get("prediction_set") if self.sets else []
        return _prediction_problem(record.get("label"), record.get("probability"), list(probabilities.values()),
                                   members, self.class_names)

    def _csv_problem(self, row: list[str], file: Path) -> str | None:
        """Why a CSV row is not a record of this format; None if it is one."""
        sets, after = len(self.set_columns()), len(self.after_error())
        fields = 3 + len(self.class_names) + sets + 2 + after  # path, label, probability, p_*, set[, coverage],
        if len(row) != fields:  # model, error[, decoding[, sha256]]
            return f"{len(row)} fields, not {fields}"
        if not row[0]:
            return "no path"
        if row[len(row) - 1 - after]:
            return None  # an unreadable image: its reason
        classes = len(self.class_names)
        if sets == 2:
            self._check_coverage(_number(row[4 + classes]), file)
        members = row[3 + classes].split(SET_SEPARATOR) if self.sets and row[3 + classes] else []
        return _prediction_problem(row[1], _number(row[2]), [_number(v) for v in row[3:3 + classes]], members,
                                   self.class_names)

    def check_model(self, model: str | None, file: Path) -> None:
        """Refuse to add to `file` if a record in it was made by another model (None: a record of an earlier vip)."""
        if model is not None and self.model and model != self.model:
            raise VipError(f"{file} holds predictions of another model (model {model}, this one is {self.model})",
                           "pass another --out, or --force to replace it")

    def check_decoding(self, decoding: str | None, path: str, file: Path) -> None:
        """Refuse to add to `file` if its record of `path` was made under other image-decoding rules than
        this vip reads `path` by (None or "": a record of an earlier vip, which does not say)."""
        from vipcli.features import same_decoding  # torch: only once a file is resumed

        expected = self.decoding_of(path)
        if decoding and expected and not same_decoding(decoding, expected):
            raise VipError(f"{file} holds predictions of images decoded by other rules (decoding {decoding}; "
                           f"this vip's is {expected}): a vip that reads images otherwise began it",
                           "pass --force to predict everything again, or another --out")

    def check_header(self, line: str, file: Path) -> None:
        """Refuse to add to a CSV `file` whose header names other columns (classes or options)."""
        if next(csv.reader([line]), None) != self.header():
            raise VipError(f"{file} holds predictions with other columns (another model, or with/without "
                           "--coverage)", "pass another --out, or --force to replace it")

    def _check_record_options(self, record: dict, file: Path) -> None:
        """Refuse to add to `file` if this JSONL record was made with other classes or options."""
        probabilities = record.get("probabilities")
        if not isinstance(probabilities, dict):
            return
        if tuple(probabilities) != self.class_names:
            raise VipError(f"{file} holds predictions of other classes ({', '.join(probabilities)}; this model: "
                           f"{', '.join(self.class_names)})", "pass another --out, or --force to replace it")
        if ("prediction_set" in record) != self.sets:
            made, now = ("with", "without") if "prediction_set" in record else ("without", "with")
            raise VipError(f"{file} holds predictions made {made} --coverage; this command is {now} it",
                           f"rerun {made} --coverage to resume it, pass another --out, or --force to replace it")
        if "coverage" in record:  # absent from records of an earlier vip: their coverage is unknown
            self._check_coverage(record["coverage"], file)
        self._check_explanation(record, file)

    def _check_explanation(self, record: dict, file: Path) -> None:
        """Refuse to add to `file` if this JSONL prediction record was made with/without --explain, unlike this
        command: resuming would say every image is done while some records lack the explanation asked for
        (or, the other way, mix records with and without one)."""
        if ("explanation" in record) != self.explain:
            made, now = ("with", "without") if "explanation" in record else ("without", "with")
            raise VipError(f"{file} holds predictions made {made} --explain; this command is {now} it",
                           f"rerun {made} --explain to resume it, pass another --out, or --force to replace it")

    def _check_coverage(self, recorded, file: Path) -> None:
        """Refuse to add prediction sets at this coverage to `file`, whose sets were made at `recorded`."""
        if self.sets and recorded != self.coverage:
            shown = coverage_text(recorded)
            raise VipError(f"{file} holds prediction sets at --coverage {shown}; this command asks for "
                           f"{coverage_text(self.coverage)}", f"rerun with --coverage {shown} to resume it, "
                           "pass another --out, or --force to replace it")


def coverage_text(value) -> str:
    """A coverage as --coverage takes it back: a number in its shortest exact form (0.9, 0.30000000000000004,
    never rounded: a rounded one would be refused again), anything else as it was read."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(float(value))
    return repr(value)


def _number(text: str):
    """A CSV cell as a float, or the text itself when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return text


def _prediction_problem(label, probability, probabilities: list, members, class_names: tuple) -> str | None:
    """Why a prediction's fields are invalid (label, probabilities in [0, 1], prediction set); None if valid."""
    if label not in class_names:
        return f"label {label!r} is not one of the classes {', '.join(class_names)}"
    for name, value in (("probability", probability), *zip((f"p_{n}" for n in class_names), probabilities)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1):
            return f"{name} is {value!r}, not a probability"
    if not isinstance(members, list) or any(member not in class_names for member in members):
        return f"prediction_set {members!r} is not a list of classes"
    return None


def _json_line(record: dict) -> str:
    """`record` as one JSON line, non-ASCII text as it is; a file name's bytes that are not UTF-8 (held
    as lone surrogates) as `\\udce9` escapes, so the line is valid UTF-8 and reads back as the same path."""
    text = json.dumps(record, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text) + "\n"


def _csv_line(row: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def complete_lines(file: Path):
    """Yield (byte offset, text) of each complete (newline-ended) line of `file`; nothing if it is missing.
    A `file` that cannot be read (a folder of that name, no permission) is one VipError naming it."""
    try:
        stream = open(file, "rb")
    except FileNotFoundError:
        return
    except OSError as error:
        from vipcli.preflight import describe_os_error

        raise VipError(f"cannot read {file} ({describe_os_error(error)}), which vip predict --out resumes from",
                       "move it out of the folder, or pass another --out") from None
    with stream:
        offset = 0
        for raw in stream:
            if not raw.endswith(b"\n"):
                return  # a torn last line: never counted
            yield offset, raw.decode("utf-8", errors="surrogateescape").rstrip("\n")  # as written
            offset += len(raw)


def read_records(file: Path, form: RecordFormat):
    """Yield (byte offset, path, is an error, model, image sha256) of each complete record of `file` (the
    sha256 None where the record names none: an unreadable image's, or one of an earlier vip).

    Refuses a file of other classes, options, another model or other decoding rules, and a line that is
    not a valid record (damaged, edited, or another program's) with its line number: resuming would
    trust it, and rewriting the file would drop it.
    """
    for number, (offset, line) in enumerate(complete_lines(file)):
        if number == 0 and form.kind == "csv":
            form.check_header(line, file)
            continue
        problem = form.problem(line, file)
        if problem:
            raise VipError(f"{file} line {number + 1} is not a record of vip predict ({problem})",
                           "delete that line to resume, pass --force to start over, or pass another --out")
        path, error, model, decoding, sha256 = form.parse(line, False)
        form.check_model(model, file)
        form.check_decoding(decoding, path, file)
        yield offset, path, error, model, sha256


def completed_paths(out: Path, form: RecordFormat) -> set[str]:
    """Paths with a complete prediction record in `out` or any of its part files (checked to be of this
    format). Images recorded as unreadable are not among them: a resumed run tries them again."""
    return set(recorded_digests(out, form))


def recorded_digests(out: Path, form: RecordFormat) -> dict[str, list[str | None]]:
    """{path: the sha256 each of its prediction records names (None: a record of an earlier vip), in file order}
    of the images with a complete prediction record in `out` or its part files (`completed_paths`, and what
    `changed_images` checks, from one reading of the files)."""
    recorded: dict[str, list[str | None]] = {}
    for file in [Path(out), *part_files(out)]:
        for _, path, error, _, sha256 in read_records(file, form):
            if not error:
                recorded.setdefault(path, []).append(sha256)
    return recorded


def changed_images(recorded: dict[str, list[str | None]], advance=lambda n=1: None) -> tuple[list[str], list[str]]:
    """(changed, to predict again): the images of `recorded` (`recorded_digests`: the sha256 of each prediction record
    of an image in an --out file and its part files) whose first record, the one a finished file keeps, names a
    sha256 other than that of the bytes they have now (replaced under the same path since they were predicted: a
    re-export, a corrected file), and of those the ones no later record names their bytes for (a run stopped after
    it predicted some again left such records), which a resumed run predicts again. Records of an earlier vip, which
    name no sha256, and images that cannot be read now count as unchanged (their records are kept, as before).
    `advance()` is called as each image is read."""
    from vipcli.digests import digest_many

    named = sorted(path for path, digests in recorded.items() if digests[0] is not None)
    now = {path: digest for path, digest in zip(named, digest_many([Path(path) for path in named], advance=advance))
           if isinstance(digest, str)}
    changed = [path for path in named if path in now and now[path] != recorded[path][0]]
    return changed, [path for path in changed if now[path] not in recorded[path]]


def check_same_images(done: set[str], paths: list, out: Path) -> None:
    """Refuse to resume `out` when it holds predictions of images that are not in this input.

    Finishing the file would leave those records out of it: refusing keeps them, and says how to go on.
    (A record of an unreadable image that is no longer in the input is dropped, not refused: that is
    how a user removes a broken file.)
    """
    foreign = sorted(done - {str(p) for p in paths})
    if foreign:
        holders, many = files_named(out)
        raise VipError(f"{holders} {'hold' if many else 'holds'} records of {len(foreign)} "
                       f"{plural(len(foreign), 'image')} that are not in this input (e.g. {foreign[0]}): it was begun "
                       "for other images", "pass another --out, or --force to replace it")


def files_named(out: Path) -> tuple[str, bool]:
    """`out` as the files that hold its records, and whether that is several (the verb's number): "p.jsonl",
    "p.jsonl (with 2 part files)", or, when a killed torchrun run left only part files, "the 2 part files of
    p.jsonl (p.jsonl.rank00000-of-00002.part, ...)"."""
    parts = [part for part in part_files(out) if part.is_file()]
    if not parts:
        return str(out), False
    if Path(out).exists():
        return f"{out} (with {len(parts)} {plural(len(parts), 'part file')})", False
    shown = f"{parts[0].name}, ..." if len(parts) > 1 else parts[0].name
    return f"the {plural(len(parts), 'part file', f'{len(parts)} part files')} of {out} ({shown})", len(parts) > 1


def remove_outputs(out: Path) -> None:
    """Remove `out` and its part files (--force)."""
    for file in [Path(out), *part_files(out)]:
        if file.exists():
            file.unlink()


def open_for_append(file: Path):
    """`file` opened to append text (created if missing). A file name whose bytes are not UTF-8 is written
    as those bytes in a CSV (its exact name, read back as the same path by `complete_lines`)."""
    return open(file, "a", encoding="utf-8", errors="surrogateescape", newline="")


class RecordWriter:
    """Appends records to one file, one flushed line each; cuts off a torn last line first.

    A write that fails (the disk filled up, the folder went read-only) is one VipError naming the
    file; the records before it stay, and at most a torn last line is left, which a rerun cuts off.
    """

    def __init__(self, file: Path, form: RecordFormat):
        self.file, self.form, self.written, self.stream = Path(file), form, 0, None
        try:
            _cut_torn_tail(self.file)
            self.stream = open_for_append(self.file)
        except OSError as error:
            raise self._failed(error) from None
        if self.stream.tell() == 0 and form.header_line():
            try:
                self._write(form.header_line())
            except VipError:
                self.abandon()
                raise

    def _failed(self, error: OSError) -> VipError:
        from vipcli.preflight import write_failed

        kept = f"the {self.written} records written before are kept" if self.written else "no record was written"
        return write_failed(self.file, error, kept)

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line)
            self.stream.flush()
        except OSError as error:
            raise self._failed(error) from None

    def prediction(self, prediction, sha256: str) -> None:
        """Record one prediction, with the sha256 of the bytes it was made from (the digest the encoder took,
        never the file read again: bytes replaced since then are another image, which a resume predicts again)."""
        self._write(self.form.prediction_line(prediction, sha256))
        self.written += 1

    def error(self, path: str, reason: str) -> None:
        """Record one unreadable image."""
        self._write(self.form.error_line(path, reason))
        self.written += 1

    def close(self) -> None:
        """Flush to disk and close."""
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
        except OSError as error:
            self.abandon()
            raise self._failed(error) from None

    def abandon(self) -> None:
        """Close after a failure, dropping what the stream still buffers (at most part of one line)."""
        with contextlib.suppress(OSError):
            self.stream.close()  # closes the file even when its last flush fails

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def _cut_torn_tail(file: Path) -> None:
    """Drop the bytes after the last newline of `file` (what a killed writer left half-written)."""
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(file, "rb+") as stream:
        keep, position, block = 0, size, 65536
        while position > 0:  # find the last newline from the end
            start = max(0, position - block)
            stream.seek(start)
            data = stream.read(position - start)
            found = data.rfind(b"\n")
            if found >= 0:
                keep = start + found + 1
                break
            position = start
        if keep != size:
            stream.truncate(keep)


@dataclass
class MergeSummary:
    """What the finished output file holds."""

    records: int  # records for the input images
    errors: int  # of which unreadable images
    missing: int  # input images without a record
    dropped: int  # records of images not in this input (left out of the file)
    repeated: int = 0  # further records of an image already recorded (left out of the file)


def finish_output(out: Path, paths: list, form: RecordFormat, changed=()) -> MergeSummary:
    """Make `out` hold one record per input image in input order, from `out` and its part files.

    Reads only line offsets into memory (not the records); rewrites `out` (temp file + rename) only
    when it is not already in order, holds repeated records, or part files exist, then removes the
    part files. An image recorded more than once keeps its first prediction (`repeated` counts them, less
    a part file's repeats of `out`'s records: a merge stopped before it removed its part files leaves
    those); an image recorded as unreadable and then again (a rerun tried it again) keeps its last record, and so
    does an image of `changed` (`changed_images`: its bytes are not those its earlier records name), whose records
    naming other bytes are left out (none left: it counts as missing). A write that fails leaves `out` and the part
    files as they were (one VipError).
    """
    from vipcli.digests import digest_many

    changed = sorted(set(changed))
    now = {path: digest if isinstance(digest, str) else None  # None: a file that cannot be read now
           for path, digest in zip(changed, digest_many([Path(path) for path in changed]))}

    def outdated(path: str, sha256: str | None) -> bool:  # a record of other bytes than the image has now
        return path in now and sha256 != now[path]

    out = Path(out)
    paths = list(dict.fromkeys(str(p) for p in paths))
    sources = [out, *part_files(out)]
    where: dict[str, tuple[int, int, bool, bool]] = {}  # path -> (source, offset, is an error, is outdated)
    sequence_in_out: list[str] = []
    dropped = repeated = 0
    wanted = set(paths)
    retried = 0  # records of an unreadable image that a later record (of a rerun) replaces
    for source, file in enumerate(sources):
        for offset, path, error, _, sha256 in read_records(file, form):
            if path not in wanted:
                dropped += 1
            elif path in where and not (where[path][2] or where[path][3]):
                repeated += source == 0 or where[path][0] != 0  # not a part file repeating `out` (a stopped merge)
            else:
                retried += path in where  # an image unreadable (or changed) before: its newer record counts
                where[path] = (source, offset, error, not error and outdated(path, sha256))
                if source == 0:
                    sequence_in_out.append(path)
    old = {path for path, record in where.items() if record[3]}
    retried += len(old)  # records of other bytes: left out of the file, which is written afresh
    ordered = [p for p in paths if p in where and p not in old]
    summary = MergeSummary(len(ordered), sum(where[p][2] for p in ordered), len(paths) - len(ordered), dropped,
                           repeated)
    in_order = (len(sources) == 1 and sequence_in_out == ordered and not dropped and not repeated and not retried
                and _no_torn_tail(out))
    if not in_order:
        try:
            _rewrite(out, sources, [where[p][:2] for p in ordered], form)
        except OSError as error:
            from vipcli.preflight import write_failed

            raise write_failed(out, error, "every record is kept in it and its part files") from None
        for file in sources[1:]:  # merged into `out`: a part file left behind only repeats its records
            try:
                file.unlink(missing_ok=True)
            except OSError as error:
                from vipcli import console
                from vipcli.preflight import describe_os_error

                console.warn(f"could not remove {file} ({describe_os_error(error)}); its records are in {out}: "
                             "remove it yourself")
    return summary


def _rewrite(out: Path, sources: list[Path], lines: list[tuple[int, int]], form: RecordFormat) -> None:
    """Write `out` afresh (temp file + rename): the header, then each (source, offset) line in order."""
    from vipcli.atomic import atomic_path

    handles = [open(file, "rb") if file.exists() else None for file in sources]
    try:
        with atomic_path(out) as temp, open(temp, "wb") as stream:
            stream.write(form.header_line().encode("utf-8"))
            for source, offset in lines:
                handles[source].seek(offset)
                stream.write(handles[source].readline())
            stream.flush()
            os.fsync(stream.fileno())
    finally:
        for handle in handles:
            if handle is not None:
                handle.close()


def _no_torn_tail(file: Path) -> bool:
    try:
        with open(file, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            if stream.tell() == 0:
                return True
            stream.seek(-1, os.SEEK_END)
            return stream.read(1) == b"\n"
    except FileNotFoundError:
        return True


def check_out_file(out: Path) -> Path:
    """`out` if records can be written there (checked before any work, as `vip train` checks its --out):
    not a folder, its folder exists, is writable and not full, and an existing `out` can be appended to."""
    from vipcli.preflight import check_output_file

    out = Path(out)
    check_output_file(out, "--out", create_folder=False)
    if out.is_file() and not os.access(out, os.W_OK):
        raise VipError(f"--out {out}: cannot write to it (permission denied)",
                       "make it writable or choose another --out")
    return out
