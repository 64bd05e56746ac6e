"""What a run's and a benchmark's report share about their data: the images of each class in each split, and the
files split.json says were skipped (unreadable) or left out (taken by no class), the first few of each named."""

from __future__ import annotations

from vipcli.console import first_few, plural
from vipcli.report import html

SKIPPED_SHOWN = 3  # files named in a paragraph (with their reason, when skipped); split.json lists them all


def skipped_files(split: dict) -> str:
    """A paragraph naming the files split.json's `unreadable` records (unreadable, or a multi-frame DICOM)
    with their reasons, the first few of them; "" when none was."""
    skipped = split.get("unreadable") or {}
    if not isinstance(skipped, dict) or not skipped:
        return ""
    named = "; ".join(f"{html.text(path)} ({html.text(reason)})" for path, reason in list(skipped.items())[:SKIPPED_SHOWN])
    more = f" and {len(skipped) - SKIPPED_SHOWN} more" if len(skipped) > SKIPPED_SHOWN else ""
    return (f"<p>{len(skipped)} {plural(len(skipped), 'file was', 'files were')} skipped: {named}{more} "
            f"(all listed in split.json).</p>")


def left_out_files(split: dict) -> str:
    """A paragraph naming the files of the data folder no class took (not images vip reads, such as a DICOM
    export without a suffix; images beside the class folders), the first few of each; "" when none was
    (or split.json was written by a vip that did not record them)."""
    left_out = split.get("left_out") or {}
    if not isinstance(left_out, dict):
        return ""
    said = []
    for key, what in (("not_images", "not named as an image vip reads"), ("in_no_class", "in no class folder")):
        files = left_out.get(key) or []
        if files:
            named = first_few(map(html.text, files), SKIPPED_SHOWN)
            said.append(f"{len(files)} {plural(len(files), 'file')} {what} ({named})")
    return f"<p>Left out of the data: {'; '.join(said)} (all listed in split.json).</p>" if said else ""


def images_per_split(split: dict, names: list[str], used: list[int] | None = None) -> str:
    """The table of split.json's images of each class in each split (train, val, test) and in all, with
    `used`, the training images of each class a run used (its few-shot subset), as a first column."""
    def count(entries) -> list[int]:
        counts = [0] * len(names)
        for _, label in entries:
            counts[int(label)] += 1
        return counts

    columns = {**({"train (used)": used} if used is not None else {}), "train (available)": count(split.get("train", [])),
               "val": count(split.get("val", [])), "test": count(split.get("test", []))}
    rows = [[name, *(columns[c][i] for c in columns)] for i, name in enumerate(names)]
    rows.append(["all", *(sum(columns[c]) for c in columns)])
    return html.table("Images per class and split", ["class", *columns], rows, numeric=set(range(1, len(columns) + 1)))
