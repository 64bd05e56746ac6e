"""What a run's and a benchmark's report share about their data: the images of each class in each split, the
files split.json says were skipped (unreadable) or left out (taken by no class), and the images it says are in more
than one split or class (copies), the first few of each named."""

from __future__ import annotations

from collections import Counter

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


def _recorded_copies(split: dict) -> tuple[list[dict], list[dict]]:
    """split.json's `duplicates` (groups of copies, each with its `sha256` and `files`: path, split, class) and
    `linked_class_folders` (`folder`, `same_as`), those of the expected shape; ([], []) for a split.json of a vip that
    did not record them."""
    groups, linked = split.get("duplicates"), split.get("linked_class_folders")
    groups = [group for group in groups if isinstance(group, dict) and isinstance(group.get("files"), list)
              and all(isinstance(f, dict) for f in group["files"])] if isinstance(groups, list) else []
    linked = [link for link in linked if isinstance(link, dict)] if isinstance(linked, list) else []
    return groups, linked


def _places(group: dict) -> str:
    """'test/nevus and train/nevus': the splits and classes a group of copies is in, as the warning names them."""
    return " and ".join(sorted({f"{f.get('split')}/{f.get('class')}" for f in group["files"]}))


def test_copies(split: dict) -> int:
    """How many test images split.json's `duplicates` records as copies of an image in train or val (whose
    figures on test therefore do not measure images the model never saw); 0 when none was recorded."""
    groups, _ = _recorded_copies(split)
    return sum(sum(f.get("split") == "test" for f in group["files"]) for group in groups
               if any(f.get("split") in ("train", "val") for f in group["files"]))


def copies_note(split: dict) -> str:
    """The note at the top of a report whose data held the same image in more than one split or class, or a class
    folder that is another one (a symbolic link), as training warned: how many, and in which splits and classes;
    "" when there were none (or split.json was written by a vip that did not record them)."""
    groups, linked = _recorded_copies(split)
    said = []
    if groups:
        places = Counter(_places(group) for group in groups).most_common()
        where = first_few([f"{count} in {place}" for place, count in places], SKIPPED_SHOWN)
        said.append(f"{len(groups)} {plural(len(groups), 'image is', 'images are')} in more than one split or class "
                    f"of the data ({where})")
    if linked:
        links = first_few([f"{link.get('folder')} is {link.get('same_as')}" for link in linked], SKIPPED_SHOWN)
        said.append(f"{len(linked)} class {plural(len(linked), 'folder is', 'folders are')} the same folder as "
                    f"another (a symbolic link: {links})")
    groups_note = _groups_across_splits_note(split)
    if not said:
        return groups_note
    return html.note(html.text(f"{'; '.join(said)[0].upper()}{'; '.join(said)[1:]}: a copy in val or test inflates "
                               "its figures, a copy in two classes contradicts itself. Remove the copies; the files "
                               "are named under Settings and data.")) + groups_note


def _groups_across_splits_note(split: dict) -> str:
    """The note on patients (or lesions) whose images the labels put in more than one split, as `vip data sort`
    recorded them and split.json keeps them (`groups_across_splits`); "" when none were recorded."""
    crossing = split.get("groups_across_splits")
    if not isinstance(crossing, dict) or not isinstance(crossing.get("values"), list) or not crossing["values"]:
        return ""
    values, column = crossing["values"], str(crossing.get("column"))
    return html.note(html.text(
        f"{len(values)} {column} {plural(len(values), 'value has', 'values have')} images in more than one split "
        f"(first: {first_few(map(str, values), SKIPPED_SHOWN)}), as the labels vip data sort read put them: test "
        "figures may be inflated by images of what was trained on. Give each one split in the labels, or drop the "
        "split column to let vip data sort split by it."))


def copied_files(split: dict) -> str:
    """A paragraph naming the first few groups of copies split.json's `duplicates` records (their files and
    sha256) and its linked class folders; "" when there were none (or they were not recorded)."""
    groups, linked = _recorded_copies(split)
    paragraphs = []
    if groups:
        named = "; ".join(f"{' and '.join(html.text(f.get('path')) for f in group['files'])} "
                          f"(sha256 {html.text(str(group.get('sha256', ''))[:12])})" for group in groups[:SKIPPED_SHOWN])
        more = f" and {len(groups) - SKIPPED_SHOWN} more" if len(groups) > SKIPPED_SHOWN else ""
        paragraphs.append(f"<p>The same image is in more than one split or class: {named}{more} (all listed in "
                          "split.json).</p>")
    for link in linked:
        paragraphs.append(f"<p>Class folder {html.text(link.get('folder'))} is the same folder as "
                          f"{html.text(link.get('same_as'))} (a symbolic link): its images are in two splits or "
                          "classes.</p>")
    return "".join(paragraphs)
