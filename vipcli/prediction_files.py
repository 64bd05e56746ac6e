"""`vip predict --out FILE`: one record per image, written as it is made, resumable, mergeable.

Formats (by the suffix of FILE):
- `.jsonl` (or `.ndjson`): one JSON object a line: path, label, probability, probabilities
  ({class: p}), prediction_set (with --coverage), explanation (with --explain); an unreadable
  image is `{"path": ..., "error": reason}`.
- `.csv`: a header, then path, label, probability, one `p_<class>` column per class,
  prediction_set (with --coverage; classes joined by `|`), error.

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

    def header(self) -> list[str]:
        """The CSV header row."""
        return ["path", "label", "probability", *(f"p_{name}" for name in self.class_names),
                *(["prediction_set"] if self.coverage else []), "error"]

    def header_line(self) -> str:
        """What a fresh file of this format starts with: the CSV header line ("" for JSONL)."""
        return _csv_line(self.header()) if self.kind == "csv" else ""

    def prediction_line(self, prediction) -> str:
        """One prediction as one line (with its newline)."""
        if self.kind == "jsonl":
            record = {"path": prediction.path, "label": prediction.label, "probability": prediction.probability,
                      "probabilities": prediction.probabilities}
            if self.coverage:
                record["prediction_set"] = prediction.prediction_set
            if self.explain:
                record["explanation"] = prediction.explanation
            return json.dumps(record, ensure_ascii=False) + "\n"
        row = [prediction.path, prediction.label, prediction.probability,
               *(prediction.probabilities[name] for name in self.class_names)]
        if self.coverage:
            row.append(SET_SEPARATOR.join(prediction.prediction_set or []))
        return _csv_line([*row, ""])

    def error_line(self, path: str, reason: str) -> str:
        """One unreadable image as one line (with its newline)."""
        if self.kind == "jsonl":
            return json.dumps({"path": path, "error": reason}, ensure_ascii=False) + "\n"
        return _csv_line([path, "", "", *([""] * len(self.class_names)), *([""] if self.coverage else []), reason])

    def parse(self, line: str, first: bool) -> tuple[str, bool] | None:
        """(path, is an error) of a complete line; None for a header or a line that is not a record."""
        if self.kind == "jsonl":
            try:
                record = json.loads(line)
            except ValueError:
                return None
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                return None
            return record["path"], "error" in record
        row = next(csv.reader([line]), None)
        if not row or first:
            return None
        return row[0], bool(row[-1])

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
                done.add(parsed[0])
    return done


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
            path, error = parsed
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
