"""`vip predict --out FILE`: one record per image, written as it is made, resumable, mergeable.

Formats (by the suffix of FILE):
- `.jsonl` (or `.ndjson`): one JSON object a line: path, label, probability, probabilities
  ({class: p}), prediction_set (with --coverage), explanation (with --explain), model; an
  unreadable image is `{"path": ..., "error": reason, "model": ...}`.
- `.csv`: a header, then path, label, probability, one `p_<class>` column per class,
  prediction_set (with --coverage; classes joined by `|`), model, error.

`model` is the model's digest (`Predictor.model_digest`): a file is only ever resumed by the model
that began it, and only for the images it was begun for.

A record is one `write` of one complete line, flushed at once, so a killed run leaves at most one
torn last line: readers ignore a last line without its newline, and a writer cuts it off before
appending. The paths of complete records are what a rerun skips.

Under torchrun, rank r of n appends to its own part file `FILE.rank<r>-of-<n>.part` beside FILE;
at the end rank 0 writes FILE afresh (temp file + rename) with every record of FILE and of all part
files, in input order, and removes the part files. A killed rank loses nothing it had flushed: a
rerun reads FILE and every part file (whatever world size wrote them) before any rank writes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vipcli.errors import UsageError, VipError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
SET_SEPARATOR = "|"


def output_format(path: Path) -> str:
    """'jsonl' or 'csv' from the suffix of `path`; any other suffix is a usage error."""
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
    coverage: bool  # records carry prediction_set
    explain: bool = False  # JSONL records carry the explanation
    model: str = ""  # the digest of the model that makes the records (recorded in each one)

    def header(self) -> list[str]:
        """The CSV header row."""
        return ["path", "label", "probability", *(f"p_{name}" for name in self.class_names),
                *(["prediction_set"] if self.coverage else []), "model", "error"]

    def header_line(self) -> str:
        """What a fresh file of this format starts with: the CSV header line ("" for JSONL)."""
        return _csv_line(self.header()) if self.kind == "csv" else ""

    def prediction_line(self, prediction) -> str:
        """One prediction as one line (with its newline)."""
        rounded = prediction.record(self.explain)  # every figure rounded once, from full precision
        if self.kind == "jsonl":
            record = {key: rounded[key] for key in ("path", "label", "probability", "probabilities")}
            if self.coverage:
                record["prediction_set"] = prediction.prediction_set
            if self.explain:
                record["explanation"] = rounded["explanation"]
            record["model"] = self.model
            return json.dumps(record, ensure_ascii=False) + "\n"
        row = [prediction.path, prediction.label, rounded["probability"],
               *(rounded["probabilities"][name] for name in self.class_names)]
        if self.coverage:
            row.append(SET_SEPARATOR.join(prediction.prediction_set or []))
        return _csv_line([*row, self.model, ""])

    def error_line(self, path: str, reason: str) -> str:
        """One unreadable image as one line (with its newline)."""
        if self.kind == "jsonl":
            return json.dumps({"path": path, "error": reason, "model": self.model}, ensure_ascii=False) + "\n"
        return _csv_line([path, "", "", *([""] * len(self.class_names)), *([""] if self.coverage else []),
                          self.model, reason])

    def parse(self, line: str, first: bool) -> tuple[str, bool, str | None] | None:
        """(path, is an error, model digest or None) of a complete line; None for a header or a non-record."""
        if self.kind == "jsonl":
            try:
                record = json.loads(line)
            except ValueError:
                return None
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                return None
            model = record.get("model")
            return record["path"], "error" in record, model if isinstance(model, str) else None
        row = next(csv.reader([line]), None)
        if not row or first:
            return None
        return row[0], bool(row[-1]), row[-2] if len(row) >= 2 else None

    def check_model(self, model: str | None, file: Path) -> None:
        """Refuse to add to `file` if a record in it was made by another model (None: a record of an earlier vip)."""
        if model is not None and self.model and model != self.model:
            raise UsageError(f"{file} holds predictions of another model (model {model}, this one is {self.model})",
                             "pass another --out, or --force to replace it")

    def check_first(self, line: str, file: Path) -> None:
        """Refuse to add to `file` if its records were made with other classes or options."""
        if self.kind == "csv":
            if next(csv.reader([line]), None) != self.header():
                raise UsageError(f"{file} holds predictions with other columns (another model, or with/without "
                                 "--coverage)", "pass another --out, or --force to replace it")
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        probabilities = record.get("probabilities") if isinstance(record, dict) else None
        if isinstance(probabilities, dict) and (tuple(probabilities) != self.class_names
                                                or ("prediction_set" in record) != self.coverage):
            raise UsageError(f"{file} holds predictions of other classes or made with/without --coverage",
                             "pass another --out, or --force to replace it")


def _csv_line(row: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def complete_lines(file: Path):
    """Yield (byte offset, text) of each complete (newline-ended) line of `file`; nothing if it is missing."""
    try:
        stream = open(file, "rb")
    except FileNotFoundError:
        return
    with stream:
        offset = 0
        for raw in stream:
            if not raw.endswith(b"\n"):
                return  # a torn last line: never counted
            yield offset, raw.decode("utf-8", errors="replace").rstrip("\n")
            offset += len(raw)


def completed_paths(out: Path, form: RecordFormat) -> set[str]:
    """Paths with a complete record in `out` or any of its part files (checked to be of this format)."""
    done: set[str] = set()
    for file in [Path(out), *part_files(out)]:
        for number, (_, line) in enumerate(complete_lines(file)):
            if number == 0:
                form.check_first(line, file)
            parsed = form.parse(line, number == 0)
            if parsed:
                form.check_model(parsed[2], file)
                done.add(parsed[0])
    return done


def check_same_images(done: set[str], paths: list, out: Path) -> None:
    """Refuse to resume `out` when it holds records of images that are not in this input.

    Finishing the file would leave those records out of it: refusing keeps them, and says how to go on.
    """
    foreign = sorted(done - {str(p) for p in paths})
    if foreign:
        raise UsageError(f"{out} holds records of {len(foreign)} images that are not in this input (e.g. "
                         f"{foreign[0]}): it was begun for other images",
                         "pass another --out, or --force to replace it")


def remove_outputs(out: Path) -> None:
    """Remove `out` and its part files (--force)."""
    for file in [Path(out), *part_files(out)]:
        if file.exists():
            file.unlink()


class RecordWriter:
    """Appends records to one file, one flushed line each; cuts off a torn last line first."""

    def __init__(self, file: Path, form: RecordFormat):
        self.file, self.form, self.written = Path(file), form, 0
        _cut_torn_tail(self.file)
        self.stream = open(self.file, "a", encoding="utf-8", newline="")
        if self.stream.tell() == 0 and form.header_line():
            self._write(form.header_line())

    def _write(self, line: str) -> None:
        self.stream.write(line)
        self.stream.flush()

    def prediction(self, prediction) -> None:
        """Record one prediction."""
        self._write(self.form.prediction_line(prediction))
        self.written += 1

    def error(self, path: str, reason: str) -> None:
        """Record one unreadable image."""
        self._write(self.form.error_line(path, reason))
        self.written += 1

    def close(self) -> None:
        """Flush to disk and close."""
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def finish_output(out: Path, paths: list, form: RecordFormat) -> MergeSummary:
    """Make `out` hold one record per input image in input order, from `out` and its part files.

    Reads only line offsets into memory (not the records); rewrites `out` (temp file + rename) only
    when it is not already in order or part files exist, then removes the part files.
    """
    from vipcli.atomic import atomic_path

    out = Path(out)
    sources = [out, *part_files(out)]
    where: dict[str, tuple[int, int, bool]] = {}  # path -> (source, offset, is an error)
    sequence_in_out: list[str] = []
    dropped = 0
    wanted = {str(p) for p in paths}
    for source, file in enumerate(sources):
        for number, (offset, line) in enumerate(complete_lines(file)):
            parsed = form.parse(line, number == 0)
            if not parsed:
                continue
            path, error, _ = parsed
            if path not in wanted:
                dropped += 1
                continue
            if path not in where:
                where[path] = (source, offset, error)
                if source == 0:
                    sequence_in_out.append(path)
    ordered = [str(p) for p in paths if str(p) in where]
    summary = MergeSummary(len(ordered), sum(where[p][2] for p in ordered), len(paths) - len(ordered), dropped)
    in_order = len(sources) == 1 and sequence_in_out == ordered and not dropped and _no_torn_tail(out)
    if not in_order:
        handles = [open(file, "rb") if file.exists() else None for file in sources]
        try:
            with atomic_path(out) as temp, open(temp, "wb") as stream:
                stream.write(form.header_line().encode("utf-8"))
                for path in ordered:
                    source, offset, _ = where[path]
                    handles[source].seek(offset)
                    stream.write(handles[source].readline())
        finally:
            for handle in handles:
                if handle is not None:
                    handle.close()
        for file in sources[1:]:
            file.unlink()
    return summary


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
    """`out` if a file can be written there: its folder exists and it is not a folder."""
    out = Path(out)
    if out.is_dir():
        raise VipError(f"cannot write {out}: it is a folder", f"pass a file name, e.g. --out {out / 'preds.jsonl'}")
    if not out.parent.is_dir():
        raise VipError(f"cannot write {out}: folder {out.parent} does not exist", "create it or choose another --out")
    return out
