"""Sorting images into vip's class folders from a table of labels (a CSV such as ISIC's or HAM10000's).

Most public medical image sets ship their labels as a table beside a flat folder of images, while vip
reads one folder per class. `vip data sort` reads the table, finds each row's image, and writes the
class folders (with split folders when the table has a split column) as links to the images, or as
copies. Every check runs before the first link is made, and the folder appears whole or not at all.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vipcli.data import TABLE_SUFFIXES, names_alike_but_case
from vipcli.errors import UsageError, VipError
from vipcli.windows_names import device_name, not_a_windows_name

SPLIT_COLUMN_NAMES = ("split", "subset", "partition")  # a column of one of these names holding only split names
SPLIT_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}  # split values (any case) -> vip's split folders
TRUE_VALUES = frozenset({"1", "1.0", "1,0", "true", "yes"})  # a one-hot cell that marks its column's class
FALSE_VALUES = frozenset({"0", "0.0", "0,0", "false", "no", ""})  # "1,0", "0,0": a decimal comma (European Excel)
FLAG_VALUES = TRUE_VALUES | FALSE_VALUES
MANIFEST = ".vip-sorted.json"  # written in the sorted folder: what made it (hidden: never a class or an image)
SHOWN = 3  # rows or files named in a message before a count
GROUP_WORDS = ("patient", "lesion", "subject", "case", "study")  # a column named so may group images
MAX_NAME_BYTES = 255  # the longest file or folder name of the common file systems (ext4, APFS, NTFS in UTF-16 units)
WINDOWS = os.name == "nt"  # where a folder name is a `vipcli.windows_names` one


@dataclass(frozen=True)
class LabelTable:
    """The rows of a labels file: its column names and one dict per row (cells stripped of spaces)."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]


@dataclass(frozen=True)
class Columns:
    """Which columns of a `LabelTable` hold what: the image, and its class either as a name (`label`)
    or as 0/1 marks (`one_hot`, with `otherwise` for rows marked in none), and the split if any."""

    image: str
    label: str | None = None
    one_hot: tuple[str, ...] = ()
    otherwise: str | None = None
    split: str | None = None
    group: str | None = None  # images of one value (a patient, a lesion) are kept in one split
    found: tuple[str, ...] = ()  # the roles vip chose itself ("image", "class", "split"), to say so


@dataclass
class Sorting:
    """What goes where: (image file, split or None, class) per image, and the rows and files left out."""

    placed: list[tuple[Path, str | None, str]] = field(default_factory=list)
    without_image: list[tuple[str, str]] = field(default_factory=list)  # (row key, class) naming no file
    not_images: list[Path] = field(default_factory=list)  # files rows name that vip does not read as images
    without_label: list[str] = field(default_factory=list)  # row keys with an empty class cell
    not_in_table: list[Path] = field(default_factory=list)  # image files no row names
    groups: dict[Path, str] = field(default_factory=dict)  # image -> its group, with a group column

    def counts(self) -> dict[str, Counter]:
        """Images per class, per split ("" for a table without splits)."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for _, split, name in self.placed:
            counts[split or ""][name] += 1
        return dict(counts)




def _tables_in_hint(folder: Path) -> str:
    """The fix for a folder given as the labels file (the download's folder, `isic2017_mel_nv/`): the tables
    directly in it, by name, else what to pass."""
    from vipcli import shell
    from vipcli.console import first_few

    try:
        tables = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    except OSError:
        tables = []
    if len(tables) == 1:
        return f"pass the table in it: vip data sort {shell.quote(tables[0])} --images ..."
    if tables:
        return f"pass one of the tables in it: {first_few([str(table) for table in tables], 3)}"
    return "pass the CSV that names each image and its class"


def read_label_table(path: str | Path) -> LabelTable:
    """Read a CSV (comma, semicolon or tab; the delimiter is detected) or TSV file with a header row.

    Raises:
        VipError: the file is missing, not UTF-8 text, empty, has no row below its header, its header
            repeats a column name, or a row has more cells than the header has columns.
    """
    path = Path(path)
    if path.is_dir():
        raise VipError(f"{path} is a folder, not a labels file", _tables_in_hint(path))
    if not path.is_file():
        raise VipError(f"{path}: no such labels file", "pass the CSV that names each image and its class")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise VipError(f"{path}: not UTF-8 text", "save it as 'CSV UTF-8' (or convert it with iconv)") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise VipError(f"{path}: empty, or no header row in its first line",
                       "the first line names the columns, e.g. image_id,label")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else _delimiter(lines[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)  # a quoted cell may hold a line break
    header = [cell.strip() for cell in next(reader)]
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        raise VipError(f"{path}: column {', '.join(repr(n) for n in repeated)} appears twice in the header",
                       "give each column its own name")
    rows = []
    for row in reader:
        if any(cell.strip() for cell in row[len(header):]):  # cells past the header's columns: the row is shifted
            raise _extra_cells(path, reader.line_num, len(row), len(header), delimiter)
        if any(cell.strip() for cell in row):
            rows.append(dict(zip(header, (cell.strip() for cell in row))))
    if not rows:
        raise VipError(f"{path}: a header row and no row below it", "add one row per image under the header")
    return LabelTable(path, header, rows)


def _extra_cells(path: Path, line: int, cells: int, columns: int, delimiter: str) -> VipError:
    """The error for a row of more cells than the header has columns: a class name or file name holding the
    delimiter, unquoted, which would shift every later cell of the row into the wrong column."""
    shown = "a tab" if delimiter == "\t" else f"'{delimiter}'"
    return VipError(f"{path}:{line}: {cells} cells, and the header names {columns} columns (a value holding {shown} "
                    "splits in two, and the cells after it would be read in the wrong columns)",
                    f"put a value that holds {shown} in double quotes (\"a{delimiter.strip() or ' '} b\"), "
                    "or remove the extra cells")


def _delimiter(header: str) -> str:
    """The delimiter of a header line: the most frequent of comma, semicolon (European Excel) and tab."""
    return max((",", ";", "\t"), key=header.count) if any(c in header for c in ",;\t") else ","


def index_images(folder: Path, leave_out: Path | None = None) -> tuple[dict[str, list[Path]],
                                                                     dict[str, list[Path]]]:
    """The image files under `folder`, each findable by its name, its stem, and its path relative to
    `folder` with and without the suffix (ISIC's tables name `ISIC_0000000`, others `a/b.png`); then the
    other files there (not read as images: a DICOM export without a suffix, a GIF) by the same keys, so
    that a row naming one can be told from a row naming nothing. Files under `leave_out` (the sorted
    folder, inside a download folder) are in neither."""
    from vipcli.images import image_files_under

    skip = os.path.abspath(leave_out) if leave_out is not None else None

    def keyed(paths: list[Path]) -> dict[str, list[Path]]:
        index: dict[str, list[Path]] = defaultdict(list)
        loose: dict[str, list[Path]] = defaultdict(list)  # by `table_key`: only where no file has the key itself
        for path in paths:
            if skip is not None and Path(os.path.abspath(path)).is_relative_to(skip):
                continue
            relative = path.relative_to(folder).as_posix()
            keys = {path.name, path.stem, relative, relative[: -len(path.suffix)] if path.suffix else relative}
            for key in keys:
                index[key].append(path)
            for key in {table_key(key) for key in keys} - keys:
                loose[key].append(path)
        return {**loose, **index}

    others: list[Path] = []
    images = image_files_under(folder, left_out=others)
    return keyed(images), keyed(others)


def table_key(cell: str) -> str:
    """A table cell naming a file, written as `index_images` also keys each file: `\\` as `/` (a path
    exported on Windows, `images\\ISIC_1.jpg`), no leading `./`, the suffix in lower case (a camera's
    `.JPG` that the table writes `.jpg`). Looked up when the cell itself names no file (`find_files`)."""
    key = cell.replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    stem, dot, suffix = key.rpartition(".")
    return f"{stem}.{suffix.lower()}" if dot and stem and "/" not in suffix else key


def find_files(index: dict[str, list[Path]], cell: str) -> list[Path]:
    """The files of `index` (see `index_images`) a table cell names: by the cell as written, else by its
    `table_key`, else, for an absolute path (`C:\\data\\scans\\a.jpg` written on Windows, `/data/scans/a.jpg`,
    `\\\\server\\share\\a.jpg`), by its longest tail that is a path under --images (`scans/a.jpg`); [] when it
    names none."""
    found = index.get(cell) or index.get(table_key(cell))
    if found:
        return found
    key = table_key(cell)
    if _ABSOLUTE.match(key):
        parts = [part for part in key.split("/") if part]
        for start in range(1, len(parts)):
            found = index.get("/".join(parts[start:]))
            if found:
                return found
    return []


_ABSOLUTE = re.compile(r"(?:[A-Za-z]:)?/")  # after `table_key`: `C:/...`, `/...` and `//server/...`


def _is_flag(value: str) -> bool:
    return value.lower() in FLAG_VALUES


def _split_column(table: LabelTable, taken: set[str]) -> str | None:
    """A column named like a split whose every value is a split name, if the table has one."""
    for name in table.columns:
        if name not in taken and name.lower() in SPLIT_COLUMN_NAMES and table.rows and \
                all(row.get(name, "").lower() in SPLIT_VALUES for row in table.rows):
            return name
    return None


def choose_columns(table: LabelTable, index: dict[str, list[Path]], image: str | None = None,
                   label: str | None = None, one_hot: list[str] | None = None, otherwise: str | None = None,
                   split: str | None = None, group: str | None = None) -> Columns:
    """The columns to sort by: those the user named, the others found. The image column is the one whose
    values name the most image files; a split column is one named split/subset/partition holding only
    split names; the class is the one column left, or all the columns left when every cell is 0/1.

    Raises:
        UsageError: a named column is not in the table, a --split-column holds a value that is no split
            name, or the class column cannot be told apart.
    """
    for option, names in (("--image-column", [image]), ("--label-column", [label]), ("--split-column", [split]),
                          ("--group-column", [group]), ("--one-hot", one_hot or [])):
        for name in names:
            if name is not None and name not in table.columns:
                raise UsageError(f"{option} {name}: {table.path.name} has no such column",
                                 f"its columns: {', '.join(table.columns)}")
    if label and one_hot:
        raise UsageError("--label-column and --one-hot both name the class", "pass one of them")
    if otherwise and not one_hot and label:
        raise UsageError("--otherwise names the class of rows marked in no --one-hot column",
                         "drop it, or pass --one-hot instead of --label-column")
    found = []
    if image is None:
        image = _image_column(table, index)
        found.append("image")
    taken = {image, group}
    if split is None:
        split = _split_column(table, taken | {label} | set(one_hot or []))
        found += ["split"] if split else []
    else:
        _check_split_values(table, split)
    taken.add(split)
    if not label and not one_hot:
        label, one_hot = _class_columns(table, taken, otherwise is not None)
        found.append("class")
    return Columns(image, label, tuple(one_hot or ()), otherwise, split, group, tuple(found))


def _check_split_values(table: LabelTable, split: str) -> None:
    """Refuse a --split-column holding a value that is no split name (an empty cell, `holdout`).

    Raises:
        UsageError: naming the values and how many rows hold them.
    """
    from vipcli.console import first_few

    bad = Counter(row.get(split, "") for row in table.rows if row.get(split, "").lower() not in SPLIT_VALUES)
    if bad:
        values = first_few((repr(value[:40]) for value, _ in bad.most_common()), SHOWN)
        rows = sum(bad.values())
        raise UsageError(f"--split-column {split}: {rows} {'row holds' if rows == 1 else 'rows hold'} {values}, "
                         "not train, val or test",
                         "give every row train, val or test, or drop --split-column to let vip make the splits")


def _image_column(table: LabelTable, index: dict[str, list[Path]]) -> str:
    matches = {name: sum(bool(find_files(index, row.get(name, ""))) for row in table.rows) for name in table.columns}
    best = max(table.columns, key=lambda name: matches[name])
    if not matches[best]:
        first = table.rows[0] if table.rows else {}
        raise VipError(f"{table.path.name}: no column names an image under --images (first row: "
                       f"{', '.join(f'{k}={v}' for k, v in first.items()) or 'none'})",
                       "check --images, or name the column with --image-column")
    return best


def _class_columns(table: LabelTable, taken: set, has_otherwise: bool) -> tuple[str | None, list[str]]:
    left = [name for name in table.columns if name not in taken and name is not None]
    flags = [name for name in left if all(_is_flag(row.get(name, "")) for row in table.rows)]
    if left and flags == left and (len(left) > 1 or has_otherwise):
        return None, left  # 0/1 marks, one column per class (ISIC 2019), or one with --otherwise
    if len(left) == 1 and not has_otherwise:
        return left[0], []
    grouping = [name for name in left if any(word in name.lower() for word in GROUP_WORDS)]
    group = f"; a column of patients or lesions goes to --group-column {grouping[0]}, which keeps each one's " \
            "images in one split" if grouping and len(grouping) < len(left) else ""
    raise UsageError(f"{table.path.name}: cannot tell which column holds the class "
                     f"(columns besides the image's: {', '.join(left) or 'none'})",
                     f"name it with --label-column NAME, or the 0/1 columns with --one-hot COL,COL{group}")


def classes_of(row: dict[str, str], columns: Columns) -> list[str]:
    """The classes a row names: its class cell ([""] when empty), or the --one-hot columns it marks (the
    --otherwise class when it marks none and one is given; [] when not; several are refused by the caller).

    Raises:
        VipError: a one-hot cell that is not 0/1.
    """
    if columns.label is not None:
        return [row.get(columns.label, "")]
    marked = []
    for name in columns.one_hot:
        value = row.get(name, "").lower()
        if not _is_flag(value):
            raise VipError(f"--one-hot column {name!r} holds {row.get(name)!r}, not 0 or 1",
                           "pass only columns of 0/1 marks to --one-hot, or the class name column as --label-column")
        if value in TRUE_VALUES:
            marked.append(name)
    return marked or ([columns.otherwise] if columns.otherwise is not None else [])


def sort_rows(table: LabelTable, columns: Columns, index: dict[str, list[Path]], folder: Path,
              others: dict[str, list[Path]] | None = None) -> Sorting:
    """Match every row to its image and class, and check the result can be written as class folders.
    A row naming none of the images but one of the `others` (files under `folder` not read as images)
    is told apart (`Sorting.not_images`) from one naming nothing.

    Raises:
        VipError: a row marked as two classes, or none without --otherwise; an image named twice with
            other classes; a name that matches several files; a class that cannot be a folder name;
            two images of one class with the same file name; no row with an image.
    """
    sorting = Sorting()
    placed: dict[Path, tuple[str | None, str, str]] = {}  # image -> (split, class, row key)
    several: list[str] = []
    unmarked: list[str] = []
    for row in table.rows:
        key = row.get(columns.image, "")
        names = classes_of(row, columns)
        if not names:
            unmarked.append(key)
            continue
        if len(names) > 1:
            several.append(f"{key} ({' and '.join(names)})")
            continue
        name = names[0]
        if not name:
            sorting.without_label.append(key)
            continue
        files = find_files(index, key)
        strays = [] if files else find_files(others or {}, key)  # named files vip does not read as images
        if strays:
            sorting.not_images.extend(strays)  # deduplicated below
            continue
        if not files:
            sorting.without_image.append((key, name))
            continue
        if len(files) > 1:
            raise VipError(f"{key!r} in {table.path.name} names {len(files)} files under {folder}: "
                           f"{', '.join(str(p.relative_to(folder)) for p in files[:SHOWN])}",
                           "name the file by its path relative to --images, or remove the copies")
        split = SPLIT_VALUES[row[columns.split].lower()] if columns.split else None
        before = placed.get(files[0])
        if before is not None and before[:2] != (split, name):
            raise VipError(f"{files[0].relative_to(folder)} is in {table.path.name} twice, as "
                           f"{_where(*before[:2])} and as {_where(split, name)}",
                           "keep one row per image")
        placed[files[0]] = (split, name, key)
        if columns.group is not None:
            sorting.groups.setdefault(files[0], row.get(columns.group, "") or f"\x00{files[0]}")  # none: its own
    _refuse_marks(table, columns, several, unmarked)
    if not placed:
        raise VipError(f"no row of {table.path.name} names an image under {folder} with a class",
                       "check --images and the columns vip used (--image-column, --label-column)")
    sorting.not_images = list(dict.fromkeys(sorting.not_images))  # a file named by two rows, once
    sorting.placed = [(path, split, name) for path, (split, name, _) in sorted(placed.items())]
    check_class_names({name for _, _, name in sorting.placed})
    _refuse_same_names(sorting.placed)
    named = set(placed) | {p for key in sorting.without_label for p in find_files(index, key)}  # told apart above
    sorting.not_in_table = sorted({p for paths in index.values() for p in paths} - named)
    return sorting


def _where(split: str | None, name: str) -> str:
    return f"{split}/{name}" if split else repr(name)


def _refuse_marks(table: LabelTable, columns: Columns, several: list[str], unmarked: list[str]) -> None:
    from vipcli.console import first_few

    if several:
        raise VipError(f"{len(several)} rows of {table.path.name} are marked as more than one class (first: "
                       f"{first_few(several, SHOWN)}); vip gives each image one class",
                       "remove those rows, or pass the --one-hot columns of the classes to tell apart")
    if unmarked:
        raise UsageError(f"{len(unmarked)} rows of {table.path.name} are marked 0 in every --one-hot column "
                         f"({', '.join(columns.one_hot)}; first: {first_few(unmarked, SHOWN)})",
                         "name their class with --otherwise CLASS (ISIC 2017: --otherwise nevus)")


def split_by_group(sorting: Sorting, seed: int, shares: dict[str, float], within: str | None = None) -> None:
    """Give every image of `sorting` a split, keeping the images of one group (a patient, a lesion) in
    one split: per class, in a seeded order, a group goes to the first split of `shares` ({"test": 0.2,
    "val": 0.1}) while that brings it nearer its share of the class's images, else to the next likewise,
    else to train; each split gets at least one group. A group of images of several classes counts for the
    class most of them have. With `within` ("train": a table whose splits give no val), only the images
    already in that split are split so; the others keep theirs.

    Raises:
        VipError: a class with images of fewer groups than the splits to fill (one per split is the least).
    """
    import random

    members: dict[str, list[int]] = defaultdict(list)  # group -> indices into sorting.placed
    for number, (path, split, _) in enumerate(sorting.placed):
        if within is None or split == within:
            members[sorting.groups[path]].append(number)
    by_class: dict[str, list[str]] = defaultdict(list)
    for group, numbers in members.items():
        names = Counter(sorting.placed[n][2] for n in numbers)
        by_class[min(names, key=lambda name: (-names[name], name))].append(group)
    images = Counter(sorting.placed[n][2] for numbers in members.values() for n in numbers)
    splits: dict[str, str] = {}
    generator = random.Random(seed)
    order = list(shares)  # filled first to last; train takes the rest
    for name in sorted(by_class):
        groups = sorted(by_class[name])
        if len(groups) <= len(order):
            needed = " and ".join(["train", *reversed(order)]).replace(" and ", ", ", len(order) - 1)
            raise VipError(f"class {name!r} has {'training ' if within else ''}images of {len(groups)} "
                           f"{'group' if len(groups) == 1 else 'groups'} only: {needed} need one each",
                           "add images of other groups, or give the splits in the labels (--split-column)"
                           if within is None else f"give the labels' split column {' and '.join(order)} rows")
        generator.shuffle(groups)
        filled = Counter()
        target = {split: share * images[name] for split, share in shares.items()}

        def wants(split: str, size: int) -> bool:  # empty, or the group brings it nearer its share
            return not filled[split] or filled[split] + size / 2 < target[split]

        for number, group in enumerate(groups):
            left, size = len(groups) - number, len(members[group])  # groups left, this one included
            split = next((s for i, s in enumerate(order)  # one group left for each later split still empty, and train
                          if wants(s, size) and left > 1 + sum(not filled[t] for t in order[i + 1:])), "train")
            splits[group] = split
            filled[split] += size
    sorting.placed = [(path, splits[sorting.groups[path]] if within is None or split == within else split, name)
                      for path, split, name in sorting.placed]


def likely_group_column(table: LabelTable, columns: Columns) -> tuple[str, int] | None:
    """An unused column named like a patient or lesion id (`GROUP_WORDS`) whose values repeat, with its
    number of distinct values: its images would be split apart without --group-column. None if none."""
    used = {columns.image, columns.label, columns.split, columns.group, *columns.one_hot}
    for name in table.columns:
        if name in used or not any(word in name.lower() for word in GROUP_WORDS):
            continue
        values = [row.get(name, "") for row in table.rows if row.get(name, "")]
        if values and len(set(values)) < len(values):
            return name, len(set(values))
    return None


def groups_across_splits(sorting: Sorting) -> list[str]:
    """The groups whose images are in more than one split of the table (a patient in train and test)."""
    seen: dict[str, set] = defaultdict(set)
    for path, split, _ in sorting.placed:
        seen[sorting.groups[path]].add(split)
    return sorted(group for group, splits in seen.items() if len(splits) > 1 and not group.startswith("\x00"))


def check_class_names(names: set[str]) -> None:
    """Refuse class names that cannot be folder names vip reads back as the same class.

    Raises:
        VipError: a name longer than a folder name can be, with a path separator or a control
            character, a hidden or dot name, a Windows device name on every platform (`con`, `aux`, `com1`:
            the folder could not be copied to Windows, as `check_pack_file_name` refuses such pack files),
            or two names that differ only in case (one folder on macOS and Windows).
    """
    for name in sorted(names):
        if len(os.fsencode(name)) > MAX_NAME_BYTES:
            raise VipError(f"class {name[:40]!r}... is {len(os.fsencode(name))} bytes long, longer than a folder "
                           f"name can be ({MAX_NAME_BYTES})", "shorten it in the labels file")
        if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or \
                any(ord(c) < 32 for c in name):
            raise VipError(f"class {name!r} cannot be a folder name",
                           "rename it in the labels file (no / or \\, not starting with a dot)")
        _refuse_device_name(name)
        why = not_a_windows_name(name) if WINDOWS else None
        if why:
            raise VipError(f"class {name!r} cannot be a folder name on Windows ({why})",
                           "rename it in the labels file")
    alike = names_alike_but_case(sorted(names))
    if alike:
        raise VipError(f"classes {alike[0]!r} and {alike[1]!r} differ only in case: one folder on macOS and "
                       "Windows", "spell each class one way in the labels file")


def _refuse_device_name(name: str) -> None:
    """VipError for a class whose folder Windows would take as one of its devices (`con`, `Aux`, `com1.x`),
    naming a name to rename it to (`con_`, `com1_.x`)."""
    device = device_name(name)
    if device:
        stem = name.split(".")[0].rstrip()
        raise VipError(f"class {name!r} cannot be a folder name: Windows takes it as its device {device}, so the "
                       "sorted folder could not be copied to or opened on Windows",
                       f"rename it in the labels file, e.g. to {stem + '_' + name[len(stem):]!r}")


def _refuse_same_names(placed: list[tuple[Path, str | None, str]]) -> None:
    """Refuse two images that would get one name in the sorted folder: the same file name from two folders, or
    names that differ only in case (`A.jpg`, `a.jpg`), one file on macOS and Windows, where the second link
    failed and the second copy replaced the first without a word."""
    seen: dict[tuple, Path] = {}
    for path, split, name in placed:
        other = seen.setdefault((split, name, path.name.casefold()), path)
        if other == path:
            continue
        if other.name == path.name:
            raise VipError(f"{other} and {path} would both be {_where(split, name)}/{path.name}",
                           "rename one of them, or sort the two folders separately")
        folder = f"{split}/{name}" if split else name
        raise VipError(f"{other} and {path} would be {folder}/{other.name} and {folder}/{path.name} in --out, names "
                       "that differ only in case: one file on macOS and Windows", "rename one of them")


def check_out(out: Path, images: Path, force: bool) -> None:
    """Refuse an output folder that would mix with the images or overwrite what vip did not write.

    Raises:
        VipError: `out` holding `images` (or the same folder), or a folder of other files, or one
            `vip data sort` wrote without --force (or holding files added since). A sorted folder inside
            the images' folder (a download folder) is allowed: `index_images` leaves it out.
    """
    from vipcli.preflight import check_writable, nearest_existing

    out_real, images_real = Path(os.path.realpath(out)), Path(os.path.realpath(images))
    if images_real.is_relative_to(out_real):  # out == images too: replacing out would remove the images
        raise VipError(f"--out {out} holds --images {images}", "write the sorted folder beside the images, "
                       "or inside their folder")
    if out.exists():
        _check_sorted_before(out, force)
    # the folder is written under a staging name beside `out`; links take no room (copies: `check_copy_room`)
    check_writable(nearest_existing(out.parent), f"--out {out}", min_free=0)


def _check_sorted_before(out: Path, force: bool) -> None:
    """Refuse an existing `out` that is a file, a folder of other files, or one sorted before (without
    `force`, or holding files added or copies edited since)."""
    if not out.is_dir():
        raise VipError(f"--out {out} is a file", "pass a new folder")
    if (out / MANIFEST).is_file():
        if not force:
            raise VipError(f"--out {out} was sorted before", "pass --force to sort it again, or a new folder")
        added = added_since(out)
        if added:
            raise VipError(f"--out {out} holds files vip data sort did not write ({added}): --force would "
                           "delete them", "move them out of the folder, or sort into a new folder")
        edited = edited_since(out)
        if edited:
            raise VipError(f"--out {out} holds copies edited since vip data sort wrote them ({edited}): --force "
                           "would delete them", "move the edited files out of the folder, or choose another --out")
    elif any(out.iterdir()):
        raise VipError(f"--out {out} already holds files vip did not sort", "pass a new folder")


def entries(folder: Path) -> dict[str, list[str]]:
    """The entries of a sorted folder: for each folder under it (relative, "." for itself) the sorted names
    of the entries it holds, links not followed and the MANIFEST left out. Recorded when the folder is
    written, so that a later --force can tell what was added since."""
    names = {}
    for root, folders, files in os.walk(folder):
        relative = Path(root).relative_to(folder).as_posix()
        names[relative] = sorted(folders + [name for name in files if not (relative == "." and name == MANIFEST)])
    return names


def layout(folder: Path) -> dict[str, int]:
    """How many entries each folder of a sorted folder holds (`entries`, counted): what a manifest of an
    earlier vip recorded, and still written for an earlier vip to read."""
    return {relative: len(names) for relative, names in entries(folder).items()}


def groups_across_splits_recorded(folder: Path) -> tuple[str, list[str]] | None:
    """(group column, its values with images in more than one split of the labels), as `vip data sort` recorded
    them in `folder`'s MANIFEST when it sorted by a group column and the labels' own split column (the values
    may be none); None for a folder it did not sort so, or sorted before it recorded them."""
    record = _manifest(folder)
    crossing = record.get("groups_across_splits") if record is not None else None
    if not isinstance(crossing, dict) or not isinstance(crossing.get("column"), str) \
            or not isinstance(crossing.get("values"), list):
        return None
    return crossing["column"], [str(value) for value in crossing["values"]]


def _manifest(out: Path) -> dict | None:
    """The record in sorted folder `out`'s MANIFEST, or None when it cannot be read as one."""
    try:
        record = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def added_since(out: Path) -> str | None:
    """What a sorted folder holds that its MANIFEST does not record as written (a run or notes added since,
    a file swapped for another), its first few named ("x/notes.txt, runs"); from a manifest of an earlier
    vip, which recorded counts only, where a count differs ("N entries in FOLDER, M written"), or from
    one of the first builds, where there are more files than it sorted (`_files_beyond`). None when
    nothing was added, or when the manifest records none of these."""
    record = _manifest(out)
    written = record.get("entries") if isinstance(record, dict) else None
    if isinstance(written, dict):
        return _not_written(out, written, links=record.get("files") == "links")
    recorded = record.get("layout") if isinstance(record, dict) else None
    if not isinstance(recorded, dict):
        return _files_beyond(out, record.get("images_sorted")) if isinstance(record, dict) else None
    for folder, count in layout(out).items():
        if recorded.get(folder) != count:
            where = "at its top" if folder == "." else f"in {folder}"
            return f"{count} entries {where}, {recorded.get(folder, 0)} written"
    return None


def _files_beyond(out: Path, images_sorted) -> str | None:
    """From a manifest of the first `vip data sort` builds (2026-11-29, until 10:34), which recorded only
    how many images they sorted, one to a file: "N files, M sorted" when the folder holds more files than
    that (a run or notes added since). None when it does not, or the manifest records no count."""
    if not isinstance(images_sorted, int) or isinstance(images_sorted, bool):
        return None
    files = sum(len(names) for _, _, names in os.walk(out)) - 1  # links too, not followed; the MANIFEST not
    return f"{files} files, {images_sorted} sorted" if files > images_sorted else None


def edited_since(out: Path) -> str | None:
    """The copies in a sorted folder of copies whose size or modification time differs from what its
    MANIFEST records as written (an image re-saved in place under its name, after cropping), the first
    few named ("x/a.png"); a copy since removed is nothing to keep. None when none was edited, or when
    the manifest records no copies (a folder of links, or a manifest of an earlier vip)."""
    from vipcli.console import first_few

    record = _manifest(out)
    copies = record.get("copies") if record is not None else None
    if not isinstance(copies, dict):
        return None
    edited = [name for name, stat in sorted(copies.items()) if _edited(out / name, stat)]
    return first_few(edited, 3) if edited else None


def _edited(path: Path, written) -> bool:
    """True when file `path` is there, and its size, modification time or status-change time is not
    `written`'s ({"size": st_size, "mtime_ns": st_mtime_ns, "ctime_ns": st_ctime_ns, "source": the image
    copied}, as `copy_stats` records them), unless it still holds its source's bytes (copied again without
    its times, `cp -r`, or its mode changed: not edited). Every write sets the status-change time, which no
    one can set back, so an edit that restores the modification time (`touch -r`) is seen too; it is
    compared only while the copy is the file written ("file": device and inode), as a folder copied with
    its times (`cp -a`, to another machine) has new ones; a manifest of vip 0.2's first releases records
    no ctime_ns and is compared on size and time alone."""
    import filecmp

    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False  # gone: nothing to keep
    if not isinstance(written, dict):
        return True
    stats = _stat_of(now)
    # a status-change time is the file's own: a copy of the folder (cp -a, rsync -a, another machine) has
    # new ones, so it is compared only on the very file written (its "file" identity), else size and time
    same_file = "ctime_ns" in written and written.get("file") == stats["file"]
    compared = ("size", "mtime_ns", "ctime_ns") if same_file else ("size", "mtime_ns")
    if all(written.get(key) == stats[key] for key in compared):
        return False
    source = written.get("source")
    if not isinstance(source, str) or now.st_size != written.get("size"):
        return True
    try:
        return not filecmp.cmp(path, source, shallow=False)
    except OSError:
        return True  # its source is gone: vip cannot tell, so it keeps the file


def _stat_of(stat: os.stat_result) -> dict[str, int | str]:
    """What a sorted folder's MANIFEST records of one copy it wrote."""
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
            "file": f"{stat.st_dev}:{stat.st_ino}"}


def copy_stats(folder: Path, sources: dict[str, Path]) -> dict[str, dict]:
    """The size, modification and status-change times and file identity (`os.stat`'s st_size, st_mtime_ns,
    st_ctime_ns, "st_dev:st_ino") of each copy (`sources`' keys, relative to `folder`, "/"-separated) as
    written, and the image it copies (its real path), so that a later --force can tell a copy edited in place
    from one whose times alone changed."""
    return {name: {**_stat_of(os.stat(folder / name, follow_symlinks=False)), "source": os.path.realpath(source)}
            for name, source in sorted(sources.items())}


def _not_written(out: Path, written: dict, links: bool) -> str | None:
    """The first few entries under `out` that are not among the names `written` records for their folder
    (a folder not written is named, not looked into), or None. With `links` (a folder of links), a file
    of a recorded name that is no longer a link is named too: a file put in place of a link it wrote."""
    from vipcli.console import first_few

    added = []
    for root, folders, files in os.walk(out):
        relative = Path(root).relative_to(out).as_posix()
        known = set(written.get(relative) or ())
        for name in sorted(folders + files):
            replaced = links and name in files and name in known and not os.path.islink(os.path.join(root, name))
            if (name not in known or replaced) and not (relative == "." and name == MANIFEST):
                added.append(name if relative == "." else f"{relative}/{name}")
        folders[:] = [name for name in folders if name in known]  # an added folder is named whole
    return first_few(added, 3) if added else None


def write_sorted(sorting: Sorting, out: Path, copy: bool, record: dict) -> None:
    """Write `out`/[split/]class/file as links to the images (absolute), or copies with `copy`; whole or
    not at all (`atomic_folder`). `record` is stored in `out`/MANIFEST with the entries written and, for
    copies, each one's size and modification time (`copy_stats`): what a later --force checks.

    Raises:
        VipError: the system refuses links (pass --copy), or a file cannot be written.
    """
    from vipcli.atomic import atomic_folder
    from vipcli.preflight import write_failed

    try:
        with atomic_folder(out, durable=not copy) as staging:  # thousands of copies: not synced one by one
            _fill(staging, sorting, out, copy, record)
    except OSError as error:  # the staging folder, the record or the rename: a disk that filled up or went read-only
        raise write_failed(out, error, "nothing was written") from None


def check_copy_room(sorting: Sorting, out: Path) -> None:
    """Refuse `--copy` when the disk holding `out` has less room than the copies take, before any is made."""
    from vipcli.cache_admin import human_size
    from vipcli.preflight import nearest_existing

    need = 0
    for path, _, _ in sorting.placed:
        try:
            need += path.stat().st_size
        except OSError:  # gone since it was indexed: the copy names it
            continue
    folder = nearest_existing(out.parent)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise VipError(f"--out {out}: the copies of {len(sorting.placed)} images take {human_size(need)}, and the "
                       f"disk holding {folder} has {human_size(free)} free", "free some space, choose another "
                       "--out, or sort without --copy (links take no room)")


def _fill(staging: Path, sorting: Sorting, out: Path, copy: bool, record: dict) -> None:
    """Write the links or copies and the record into the staging folder of `write_sorted`."""
    from vipcli.atomic import plain_file_mode

    copies = {}  # name in the folder -> the image it copies
    for path, split, name in sorting.placed:
        target = staging / (split or "") / name / path.name
        copies[target.relative_to(staging).as_posix()] = path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                shutil.copy2(path, target)
                plain_file_mode(target)  # now, not as the folder is finished: copy_stats records its ctime
            else:
                os.symlink(os.path.realpath(path), target)
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                fix = "shorten the class name in the labels file, or the --out path"
            elif copy:
                fix = "free disk space, or write elsewhere"
            else:
                fix = "pass --copy (Windows makes links only in Developer Mode)"
            raise VipError(f"cannot write {out / (split or '') / name / path.name}: {error.strerror or error}",
                           fix) from None
    written = entries(staging)
    record = {**record, "entries": written, "layout": {folder: len(names) for folder, names in written.items()}}
    if copy:
        record["copies"] = copy_stats(staging, copies)
    (staging / MANIFEST).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
