"""`vip data sort`: class folders from a table of labels, for the data sets that ship a CSV beside their images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vipcli import console, shell
from vipcli.cli import options as opt
from vipcli.cli.help import App

app = App(help="Data folders: sort images into class folders from a labels CSV.", no_args_is_help=True)


@app.command("sort")
def sort_command(
    labels: Path = typer.Argument(..., metavar="LABELS", help="The labels table: a CSV (comma, semicolon or "
                                  "tab) or TSV with a header row, one row per image."),
    images: Path = typer.Option(..., "--images", help="The folder holding the images (searched with its "
                                "sub-folders); rows name them by file name, by name without suffix (ISIC_0000000) "
                                "or by path relative to it."),
    out: Path = typer.Option(..., "--out", help="The folder to write: OUT/CLASS/ (or OUT/SPLIT/CLASS/ with a "
                             "split column), ready for `vip train --data OUT`."),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="The column naming each image "
                                               "(default: the one whose values name the most image files)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="The column holding each image's "
                                               "class name (default: the one column left)."),
    one_hot: Optional[str] = typer.Option(None, "--one-hot", help="Comma-separated 0/1 columns, one per class, "
                                          "instead of --label-column (default: all columns left, when every "
                                          "cell of them is 0/1, as in ISIC 2019)."),
    otherwise: Optional[str] = typer.Option(None, "--otherwise", help="The class of rows marked 0 in every "
                                            "--one-hot column (ISIC 2017: nevus)."),
    split_column: Optional[str] = typer.Option(None, "--split-column", help="The column holding train/val/test "
                                               "(default: one named split, subset or partition, if its values "
                                               "are all split names)."),
    group_column: Optional[str] = typer.Option(None, "--group-column", help="A column naming the patient or "
                                               "lesion of each image: its images are kept in one split. Without a "
                                               "split column, vip data sort makes the splits itself (val 10%, test "
                                               "20% of each class, seeded by --seed); with one that gives no val, "
                                               "it carves val from the train rows so."),
    seed: Optional[int] = opt.seed(None, "Seed of the splits made with --group-column (default 1)."),
    copy: bool = typer.Option(False, "--copy", help="Copy the images instead of linking to them (a folder that "
                              "can move to another machine)."),
    force: bool = typer.Option(False, "--force", help="Sort again into an --out that `vip data sort` wrote "
                               "before (never a folder of other files)."),
) -> None:
    """Sort the images a labels CSV names into class folders (links by default), ready for `vip train`."""
    from vipcli.errors import VipError
    from vipcli.label_table import check_out

    if images.is_file():
        raise VipError(f"--images {images} is a file, not a folder", f"pass the folder holding the images, such as "
                                                                       f"--images {images.parent}")
    if not images.is_dir():
        raise VipError(f"--images {images}: no such folder", "pass the folder holding the images")
    check_out(out, images, force)
    from vipcli.locks import folder_lock

    with folder_lock(out):  # a second sort into the same --out meanwhile is refused, not replaced by it unseen
        check_out(out, images, force)  # again: a sort that held the lock may have written it since
        _sort(labels, images, out, image_column, label_column, one_hot, otherwise, split_column, group_column, seed,
              copy)


def _sort(labels: Path, images: Path, out: Path, image_column, label_column, one_hot, otherwise, split_column,
          group_column, seed, copy: bool) -> None:
    """`vip data sort`'s work once `out` is checked and held: read the table, sort its rows, write `out`."""
    from vipcli import __version__
    from vipcli.errors import UsageError, VipError
    from vipcli.data import TEST_FRACTION, VAL_FRACTION
    from vipcli.label_table import (check_copy_room, choose_columns, groups_across_splits, index_images,
                                    read_label_table, sort_rows, split_by_group, write_sorted)

    table = read_label_table(labels)
    index, others = index_images(images, leave_out=out)
    if not index:
        from vipcli.images import has_dicom_magic

        dicom = any(has_dicom_magic(path) for path in {p for paths in others.values() for p in paths})
        raise VipError(f"--images {images}: no image files in it or its sub-folders",
                       "its files look like DICOM files without a .dcm suffix: rename them to .dcm" if dicom
                       else "pass the folder holding the images")
    hot = [name.strip() for name in one_hot.split(",") if name.strip()] if one_hot else None
    columns = choose_columns(table, index, image_column, label_column, hot, otherwise, split_column, group_column)
    carve = _splits_to_carve(table, columns)
    if seed is not None and not carve:  # known from the columns and the split names, before any row is matched
        made_by = f"the table's split column {columns.split!r} gives the splits" if columns.split else \
            "without --group-column, vip train makes the splits (with its own --seed)"
        raise UsageError(f"--seed seeds the splits vip data sort makes by --group-column; here {made_by}",
                         "drop --seed")
    sorting = sort_rows(table, columns, index, images, others)
    if copy:
        check_copy_room(sorting, out)
    seed = 1 if seed is None else seed
    crossing = []
    if columns.group and columns.split:
        crossing = groups_across_splits(sorting)  # as the table gives them, before val is carved from train
    if carve:  # else vip train would carve them per image, a patient's images in train and val or test
        shares = {"test": TEST_FRACTION, "val": VAL_FRACTION}
        split_by_group(sorting, seed, {split: shares[split] for split in carve}, "train" if columns.split else None)
    record = {"vip": __version__, "labels": str(labels.resolve()), "images": str(images.resolve()),
              "columns": {"image": columns.image, "label": columns.label, "one_hot": list(columns.one_hot),
                          "otherwise": columns.otherwise, "split": columns.split, "group": columns.group},
              "split_seed": seed if carve else None,
              "files": "copies" if copy else "links", "images_sorted": len(sorting.placed)}
    if columns.group and columns.split:  # read by vip train and vip benchmark, kept in split.json, named in reports
        record["groups_across_splits"] = {"column": columns.group, "values": crossing}
    write_sorted(sorting, out, copy, record)
    _say(sorting, columns, out, images, copy, seed, crossing, carve)
    _hint_group(table, columns)
    _hint_next(sorted({name for _, _, name in sorting.placed}), out)


def _hint_next(class_names: list[str], out: Path) -> None:
    """The command to run next, on stderr: `vip train --data OUT`, with `--symptoms FILE` and where to get
    FILE when a class matches no shipped symptom pack (`vip train --data OUT` alone would stop on it)."""
    from vipcli.packs import shipped_packs

    shipped = shipped_packs()
    bare = [name for name in class_names if not any(pack.matches(name) for pack in shipped)]
    if bare:
        generate = shell.command("vip", "symptoms", "generate", "--data", out)
        classes = f"{'class' if len(bare) == 1 else 'classes'} {', '.join(map(repr, bare))}"
        console.info(f"no shipped symptom pack matches {classes}: write their symptoms "
                     f"in a FILE as {{class: [symptom, ...]}}, or packs with `{generate}` (an LLM); `vip symptoms "
                     "list` shows the shipped packs")
    train = shell.command("vip", "train", "--data", out, *(("--symptoms", "FILE") if bare else ()))
    console.info(f"next: {train}")  # a hint: stderr


def _hint_group(table, columns) -> None:
    """A warning when the table has a patient or lesion column that repeats and --group-column was not given."""
    from rich.markup import escape

    from vipcli.label_table import likely_group_column

    hint = likely_group_column(table, columns)
    if hint is None:
        return
    name, distinct = hint
    console.warn(escape(f"column {console.printable(name)!r} repeats values ({distinct} over {len(table.rows)} rows): "
                        f"if it names a patient or lesion, pass --group-column {console.printable(name)} so that the "
                        "images of one stay in one split (split per image, test figures measure memory of it)"))


def _splits_to_carve(table, columns) -> list[str]:
    """The splits `vip data sort` makes by --group-column: val and test without a split column; else those
    the table's split column gives no image to (val; test too when it names none), carved from its train
    rows. [] without a group column."""
    from vipcli.label_table import SPLIT_VALUES

    if not columns.group:
        return []
    named = {SPLIT_VALUES.get(row.get(columns.split, "").lower()) for row in table.rows} if columns.split else set()
    return [split for split in ("test", "val") if split not in named]


def _say_groups(columns, seed: int, crossing: list[str], carve: list[str]) -> None:
    """How the group column was used: the splits (or val) made by group, or the table's groups found in two splits."""
    from rich.markup import escape

    from vipcli.label_table import SHOWN

    if not columns.group:
        return
    group = console.printable(columns.group)
    if not columns.split:
        console.stdout().print(f"splits: made by {group!r} (seed {seed}): the images of one {group} are in one split",
                               markup=False)
    elif carve:
        made = " and ".join(reversed(carve))
        console.stdout().print(f"{made}: made from train by {group!r} (seed {seed}; the labels give no {made}): the "
                               f"images of one {group} are in one split", markup=False)
    if crossing:
        shown = console.first_few(map(console.printable, crossing), SHOWN)
        console.warn(escape(f"{len(crossing)} {group} {'value has' if len(crossing) == 1 else 'values have'} images "
                            f"in more than one split of the labels (first: {shown}): test figures may be inflated "
                            "by images of what was trained on"))


def _say(sorting, columns, out: Path, images: Path, copy: bool, seed: int, crossing: list[str],
         carve: list[str]) -> None:
    """What was sorted where: the columns used and how the groups were, a table of images per class and
    split, what was left out."""
    from collections import Counter

    from rich.markup import escape
    from rich.table import Table

    from vipcli.label_table import SHOWN

    shown = console.printable
    stdout = console.stdout()
    kind = "copies of" if copy else "links to"
    stdout.print(f"sorted {len(sorting.placed)} images into {shown(out)} ({kind} the files under {shown(images)})",
                 markup=False)
    cls = repr(columns.label) if columns.label else "one-hot " + ", ".join(repr(c) for c in columns.one_hot) + \
        (f", otherwise {columns.otherwise!r}" if columns.otherwise else "")
    roles = [f"image {columns.image!r}", f"class {cls}"] + ([f"split {columns.split!r}"] if columns.split else []) \
        + ([f"group {columns.group!r}"] if columns.group else [])
    found = f" (found: {', '.join(columns.found)})" if columns.found else ""
    stdout.print(shown(f"columns: {'; '.join(roles)}{found}"), markup=False)
    _say_groups(columns, seed, crossing, carve)
    counts = sorting.counts()
    splits = [s for s in ("train", "val", "test", "") if s in counts]
    table = Table("class", *(split or "images" for split in splits))
    for name in sorted({name for counter in counts.values() for name in counter}):
        table.add_row(escape(shown(name)), *(str(counts[split][name]) for split in splits))
    stdout.print(table)
    if sorting.without_image:
        rows = sorting.without_image
        classes = Counter(name for _, name in rows)
        by_class = ", ".join(f"{shown(name)} {count}" for name, count in classes.most_common(SHOWN))
        by_class += f" and {len(classes) - SHOWN} more classes" if len(classes) > SHOWN else ""
        verb = "names" if len(rows) == 1 else "name"
        console.warn(escape(f"{len(rows)} {console.plural(len(rows), 'row')} of the labels {verb} no image under "
                            f"{images}: left out ({by_class}; first: "
                            f"{console.first_few((shown(key) for key, _ in rows), SHOWN)})"))
    if sorting.not_images:
        from vipcli.images import left_out_warning

        named = left_out_warning(sorting.not_images, lambda path: shown(path.relative_to(images)), images)
        console.warn(escape(f"rows of the labels name files vip does not read as images: {named}"))
    if sorting.without_label:
        keys = sorting.without_label
        console.warn(escape(f"{len(keys)} {console.plural(len(keys), 'row')} of the labels "
                            f"{'has' if len(keys) == 1 else 'have'} an empty class cell: left out "
                            f"(first: {console.first_few(map(shown, keys), SHOWN)})"))
    if sorting.not_in_table:
        files = [str(p.relative_to(images)) for p in sorting.not_in_table]
        console.warn(escape(f"{len(files)} {console.plural(len(files), 'image')} under {images} "
                            f"{'is' if len(files) == 1 else 'are'} in no row: left out "
                            f"(first: {console.first_few(map(shown, files), SHOWN)})"))
