"""Image folders sorted by class: discovery, splits and seeded few-shot subsets."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from vipcli.console import first_few, plural
from vipcli import shell
from vipcli.errors import VipError
from vipcli.images import (LEFT_OUT_SHOWN, READ_SUFFIXES, image_files_under, is_image_file, is_system_folder,
                           left_out_warning, nothing_read_error)

DUPLICATES_SHOWN = 5  # duplicate-image warnings printed before a summary line
DECODE_CHECK_SIDE = 32  # the shorter side a duplicate is decoded at to tell that it is an image at all

SPLIT_NAMES = ("train", "val", "test")
# other names data sets give their splits (Kaggle's Training/Testing, Roboflow's valid/): vip reads none of them as
# a split, so each is named with the split folder to rename it to
SPLIT_SYNONYMS = {"training": "train", "validation": "val", "valid": "val", "testing": "test"}
TABLE_SUFFIXES = (".csv", ".tsv", ".tab")  # labels tables, which `vip data sort` turns into class folders
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2  # the share of each class's train images a missing val / test split takes


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    path: Path  # the image file
    label: int  # index into the dataset's class names


SEEDED_SPLIT = "seeded split of train"  # how `Dataset.origin` names a split carved from train/ with a seed


@dataclass
class Dataset:
    """A class-folder dataset cut into train/val/test."""

    root: Path  # the folder the user named
    class_names: list[str]  # class folder names, sorted; logit order
    splits: dict[str, list[Sample]]  # "train", "val", "test" -> samples
    origin: dict[str, str] = field(default_factory=dict)  # split -> "folder" or "seeded split of train"
    left_out: LeftOut | None = None  # files no class takes (warned about when the data was loaded)
    copies: Copies | None = None  # images in two splits or classes (warned about); None: not looked for (a torchrun rank)
    carved_shares: dict[str, float] = field(default_factory=dict)  # split carved from train -> share of each class
    split_seed: int | None = None  # the seed that carved them (None: nothing carved)

    @property
    def carved(self) -> bool:
        """Whether a seed carved any of its splits from train/ (False: its val/ and test/ are its own folders)."""
        return any(origin.startswith(SEEDED_SPLIT) for origin in self.origin.values())

    def carved_line(self) -> str | None:
        """The info line of `vip train` and `vip benchmark` saying which splits vip carved from the training images,
        as the data folder has no folder for them: "chest_xray has no val/, so vip carves it from train/: 522
        images, 10% of each class (seed 1)"; None when every split is a folder of its own."""
        carved = [name for name in ("val", "test") if name in self.carved_shares]
        if not carved:
            return None
        folders = " or ".join(f"{name}/" for name in carved)
        if (Path(self.root) / "train").is_dir():
            has_no, source = f"has no {folders}", "train/"
        else:  # a folder of class folders, no splits
            has_no, source = f"has no train/, {folders} folders", "its class folders"
        what = "it" if len(carved) == 1 else " and ".join(carved)
        images = " and ".join(str(len(self.splits[name])) for name in carved)
        shares = " and ".join(f"{self.carved_shares[name]:.0%}" for name in carved)
        return (f"{self.root} {has_no}, so vip carves {what} from {source}: {images} images, {shares} of each class "
                f"(seed {self.split_seed})")

    def counts(self, split: str) -> list[int]:
        """Images per class in `split`."""
        totals = [0] * len(self.class_names)
        for sample in self.splits[split]:
            totals[sample.label] += 1
        return totals


@dataclass
class LeftOut:
    """Files in a data folder that no class takes: warned about, never silently dropped."""

    others: list[Path] = field(default_factory=list)  # in class folders, not named as images vip reads
    loose: list[Path] = field(default_factory=list)  # images beside the class folders, in none of them


@dataclass
class Copies:
    """Images of a data folder found in more than one split or class when it was loaded: warned about then, and
    recorded (`copies_record`) in the split.json of the run or sweep trained on it, which its report reads."""

    linked: list[tuple[Path, Path]] = field(default_factory=list)  # (class folder, the folder it is: a link)
    groups: list[list[tuple[str, Sample, str]]] = field(default_factory=list)  # `find_duplicates`' groups
    # (group column, values in two splits of the labels), as `vip data sort` recorded them; None: not recorded
    groups_across_splits: tuple[str, list[str]] | None = None


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_system_folder(p.name)), key=lambda p: p.name)


class LinkGuard:
    """Refuses a linked sub-folder of a class folder that leads into another class folder of the same
    data (`train/nevus/extra -> ../melanoma`, or into `test/melanoma`), or to a folder holding class
    folders (the data folder, a split folder): its images would be read as two classes. A link to a
    folder outside the class folders (a shared image store) is followed as before.

    Args:
        root: the data folder, as the user named it (messages show paths relative to it).
        class_folders: every class folder of every split, known before any of them is searched.
    """

    def __init__(self, root: Path, class_folders: list[Path]):
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.folders = {folder: Path(os.path.realpath(folder)) for folder in class_folders}
        self._refuse_linked_classes()

    def _refuse_linked_classes(self) -> None:
        """VipError for a class folder that is a link into another class's folder (`train/gamma -> beta`):
        one set of images under two class names. The same class in two splits is left to the duplicate
        warning (`val/melanoma -> ../train/melanoma` leaks, but trains no image as two classes)."""
        for folder, real in self.folders.items():
            if real == Path(os.path.abspath(folder)):
                continue  # not reached through a link
            into = next((f for f, r in self.folders.items() if f != folder and f.name.lower() != folder.name.lower()
                         and (real.is_relative_to(r) or r.is_relative_to(real))), None)
            if into is not None:
                place = (f"class folder {self._shown(into)}" if real == self.folders[into] else
                         f"{self._shown_target(real)}, which shares images with class folder {self._shown(into)}")
                raise VipError(f"class folder {self._shown(folder)} is a link to {place}: its images would be read "
                               f"as both '{folder.name}' and '{into.name}'",
                               f"remove the link {self._shown(folder)}, or give it a folder of its own images")

    def check(self, link: Path, owner: Path) -> None:
        """VipError if `link`, a linked sub-folder found in class folder `owner`, leads into another
        class folder or to a folder that holds class folders; nothing for one inside `owner` itself."""
        target = Path(os.path.realpath(link))
        if target.is_relative_to(self.folders.get(owner) or Path(os.path.realpath(owner))):
            return  # within its own class folder: a loop or a copy, searched once
        into = next((f for f, real in self.folders.items() if f != owner and target.is_relative_to(real)), None)
        holds = [f for f, real in self.folders.items() if real.is_relative_to(target)]
        fix = "remove the link, or point it to a folder outside the class folders"
        if into is not None:
            place = (f"class folder {self._shown(into)}" if target == self.folders[into] else
                     f"{self._shown_target(target)}, inside class folder {self._shown(into)}")
            raise VipError(f"{self._shown(link)} is a link to {place}: its images would be read as both "
                           f"'{self._shown(owner)}' and '{self._shown(into)}'", fix)
        if holds:
            raise VipError(f"{self._shown(link)} is a link to {self._shown_target(target)}, which holds the class "
                           f"folders {first_few(map(self._shown, holds), LEFT_OUT_SHOWN)}: their images would be read "
                           f"as both their own class and '{self._shown(owner)}'", fix)

    def _shown(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def _shown_target(self, target: Path) -> str:
        if target == self.real_root:
            return f"the data folder {self.root}"
        return str(target.relative_to(self.real_root)) if target.is_relative_to(self.real_root) else str(target)


def class_folders_of(folders: list[Path]) -> list[Path]:
    """The class folders of the data or split folders `folders` (missing or unreadable ones give none)."""
    found = []
    for folder in folders:
        try:
            found.extend(_class_folders(folder))
        except OSError:
            continue  # reported where its classes are read
    return found


def _scan_flat(folder: Path, class_names: list[str] | None = None, left_out: LeftOut | None = None,
               guard: LinkGuard | None = None) -> tuple[list[str], list[Sample]]:
    """Samples of `folder/<class>/*`; every class folder must hold at least one image. Files that
    are not images (see `image_files_under`) and images in no class folder are added to `left_out`;
    a linked sub-folder that leads into another class folder is refused by `guard`."""
    classes = _class_folders(folder)
    if class_names is None:
        _refuse_names_alike_but_case(folder, [c.name for c in classes])
    if left_out is not None:
        left_out.loose.extend(_images_beside(folder))
    names = class_names or [c.name for c in classes]
    index = {name: i for i, name in enumerate(names)}
    samples: list[Sample] = []
    for class_folder in classes:
        if class_folder.name not in index:
            raise VipError(
                f"{class_folder}: class '{class_folder.name}' is not in the train split",
                f"train classes are {', '.join(names)}; rename or remove the folder",
            )
        on_link = (lambda link, owner=class_folder: guard.check(link, owner)) if guard is not None else None
        unread: list[Path] = []  # its files not named as images (a .gif, a DICOM export without .dcm)
        images = image_files_under(class_folder, unread, on_link)
        if left_out is not None:
            left_out.others.extend(unread)
        if not images and not os.access(class_folder, os.R_OK | os.X_OK):
            from vipcli.shell import permissions_hint

            raise VipError(f"class folder {class_folder} cannot be read (permission denied)",
                           f"give your user read access to it ({permissions_hint('chmod -R u+rX')}), or remove the "
                           "folder")
        if not images and unread and written_by_vip(class_folder) is None:  # every file of a kind vip does not read
            raise _no_image_read(class_folder, unread)
        if not images:
            split_empty = class_names is not None and not any(image_files_under(c) for c in classes)  # val/, test/
            raise VipError(f"class folder {class_folder} has no images",
                           _empty_split_hint(folder) if split_empty else _empty_class_hint(class_folder))
        samples.extend(Sample(p, index[class_folder.name]) for p in images)
    return names, samples


def _no_image_read(class_folder: Path, unread: list[Path]) -> VipError:
    """The error for a class folder whose files are all of kinds vip does not read as images (GIFs, a PACS's
    DICOM exports without a suffix): which files, and what to do with them, rather than that it is empty."""
    n = len(unread)
    return nothing_read_error(f"class folder {class_folder} has no image vip reads ({READ_SUFFIXES}), only {n} other "
                              f"{plural(n, 'file')}", unread, class_folder)


def _empty_class_hint(class_folder: Path) -> str:
    """The fix for a class folder without images: add images or remove it; or, where it is a run or benchmark that
    vip wrote beside a data folder (`--data vip-demo`, whose data is in vip-demo/data), the folder to pass instead."""
    generic = f"add images ({READ_SUFFIXES}) or remove the folder"
    what = written_by_vip(class_folder)
    if what is None:
        return generic
    data = next((p for p in class_folders_of([class_folder.parent]) if len(class_folders_of([p / "train"])) >= 2),
                None)
    where = f": pass --data {shell.quote(data)}, which holds a train/ split" if data is not None else (
        ": pass --data with the folder of your class folders")
    return f"it is {what}, not a class of images{where}"


def _empty_split_hint(split: Path) -> str:
    """The fix for a val/ or test/ split none of whose class folders holds an image (its folders made, the images
    not yet copied): add them, or remove the split, which vip then carves from train/."""
    return (f"no class folder of {split.name}/ holds an image: add images to them, or remove {split} and vip carves "
            f"a {split.name} split from train/")


def written_by_vip(folder: Path) -> str | None:
    """What `folder` is when vip wrote it ("a run directory written by `vip train`", a benchmark folder), else None."""
    if (folder / "model.safetensors").is_file():
        return "a run directory written by `vip train`"
    if is_benchmark_results(folder / "results.json"):
        return "a benchmark folder written by `vip benchmark`"
    return None


def is_benchmark_results(file: Path) -> bool:
    """Whether `file` is a results.json as `vip benchmark` writes it (a JSON object holding its rows), not another
    tool's file of that name kept beside a user's images (a viewer's export, a reading list)."""
    import json

    try:
        with open(file, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, ValueError):  # none there, unreadable, not JSON (UnicodeDecodeError is a ValueError)
        return False
    return isinstance(document, dict) and isinstance(document.get("rows"), list)


CLASSES_NAMED = 4  # class names a message about a data folder lists before "and N more"


def data_folder_seen(folder: Path) -> tuple[Path, str] | None:
    """(the folder to pass as --data, what `folder` is) when `folder` is laid out as the data `vip train` reads,
    for a message to a command that wanted a run in its place: "a data folder (2 classes: melanoma, nevus)", or
    "the test/ split of the data folder isic (...)" for a split folder beside train/. None for any other folder.

    Cheap: it lists folders and stops at each class folder's first image, reading none.
    """
    folder = Path(folder)
    splits = [folder / name for name in SPLIT_NAMES if (folder / name).is_dir()]
    classes = _classes_with_images(splits[0] if splits else folder)
    if len(classes) < 2:
        return None
    shown = f"{len(classes)} classes: {first_few(classes, CLASSES_NAMED)}"
    parent = folder.parent
    if not splits and folder.name in SPLIT_NAMES and len(_classes_with_images(parent / "train")) >= 2:
        return parent, f"the {folder.name}/ split of the data folder {parent} ({shown})"
    return folder, f"a data folder ({shown})"


def _classes_with_images(folder: Path) -> list[str]:
    """The names of `folder`'s class folders that hold an image directly (each listed only up to its first one), less
    the runs and benchmark folders vip wrote (a benchmark's plots are images); none for a folder that is missing or
    cannot be read."""
    try:
        return [c.name for c in _class_folders(folder)
                if written_by_vip(c) is None and any(is_image_file(p) for p in c.iterdir())]
    except OSError:
        return []


def made_from_data(folder: Path) -> Path | None:
    """The --data folder a run (run.yaml) or benchmark (results.json) that vip wrote was made from, when it
    records one that is still a folder here; else None."""
    import json

    import yaml

    try:
        if (folder / "model.safetensors").is_file():
            data = yaml.safe_load((folder / "run.yaml").read_text(encoding="utf-8"))["config"]["data"]
        else:
            data = json.loads((folder / "results.json").read_text(encoding="utf-8"))["config"]["data"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return None
    return Path(data) if isinstance(data, str) and data and Path(data).is_dir() else None


def _vip_output_as_data_hint(folder: Path, what: str) -> str:
    """The fix for `--data` given a run or benchmark folder (mixed up with `--model`): what it is, the commands that
    take it, and the data folder it was made from when that is still there."""
    takes = "`vip predict --model` and `vip report` take" if "run directory" in what else "`vip report` takes"
    data = made_from_data(folder)
    fix = (f"pass --data {shell.quote(data)}, the folder of class folders it was made from" if data is not None
           else "pass --data with a folder of class folders")
    return f"{folder} is {what}, which {takes}, not a folder of images: {fix}"


def _images_beside(folder: Path) -> list[Path]:
    """The image files directly in `folder` (sorted): beside its class or split folders, in no class."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def names_alike_but_case(names: list[str]) -> tuple[str, str] | None:
    """The first two of `names` that differ only in case (`Nevus`, `nevus`), in their order; None if none do."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            return other, name
    return None


def _refuse_names_alike_but_case(folder: Path, names: list[str]) -> None:
    """Class folders that differ only in case (`Nevus/`, `nevus/`) are one class split in two by
    accident (two sources merged; one folder on macOS and Windows): refuse them, naming both."""
    alike = names_alike_but_case(names)
    if alike:
        raise VipError(f"{folder}: class folders '{alike[0]}' and '{alike[1]}' differ only in case: vip would "
                       "train them as two classes", "move their images into one folder, or rename one")


def _split_off(samples: list[Sample], fraction: float, seed: int, salt: str) -> tuple[list[Sample], list[Sample]]:
    """Stratified seeded split: (kept, taken) with about `fraction` of each class taken."""
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    kept, taken = [], []
    for label, members in sorted(by_class.items()):
        members = sorted(members, key=lambda s: str(s.path))
        random.Random(f"{seed}:{salt}:{label}").shuffle(members)
        n_taken = min(max(1, round(len(members) * fraction)), len(members) - 1) if len(members) > 1 else 0
        taken.extend(members[:n_taken])
        kept.extend(members[n_taken:])
    return sorted(kept, key=lambda s: str(s.path)), sorted(taken, key=lambda s: str(s.path))


def check_data_folder(root: str | Path) -> None:
    """VipError unless `root` (the --data option) is a folder: a file and a missing path say which."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise VipError(f"--data {root} is a file, not a folder", _data_file_hint(root))
    if not root.is_dir():
        raise VipError(f"data folder not found: {root}", "pass --data DIR with one subfolder per class")


def _data_file_hint(file: Path) -> str:
    """The fix for `--data FILE`: for a labels table (a CSV of images and classes), the `vip data sort` command
    that makes the class folders vip reads; else what --data takes."""
    generic = "pass --data DIR with one subfolder per class"
    if file.suffix.lower() not in TABLE_SUFFIXES:
        return generic
    return (f"vip reads classes from folders, not from a labels table: sort the images it names into one folder per "
            f"class with `vip data sort {shell.quote(file)} --images IMAGES --out SORTED` (IMAGES: the folder holding "
            f"them), then pass --data SORTED; or {generic}")


def split_folders(root: Path) -> dict[str, Path]:
    """The split folders (train/, val/, test/) that `root` holds, by name: what decides how `load_dataset` reads it."""
    return {name: root / name for name in SPLIT_NAMES if (root / name).is_dir()}


def carves_splits(root: str | Path) -> bool:
    """Whether `load_dataset` carves a split from the training images of the data folder `root`, so that a split seed
    is used: unless `root` holds both a val/ and a test/ folder. Known from `split_folders`, before any image is
    listed or read."""
    present = split_folders(Path(root))
    return not ("val" in present and "test" in present)


def load_dataset(root: str | Path, seed: int = 1, val_fraction: float = VAL_FRACTION,
                 test_fraction: float = TEST_FRACTION, train_optional: bool = False) -> Dataset:
    """Scan `root` laid out as `<class>/*` or `{train,val,test}/<class>/*`.

    Missing splits are carved from train with a seeded stratified split (recorded in
    `Dataset.origin`). At least two classes are required. With `train_optional` (a method that uses
    no labelled images), `{val,test}/<class>/*` without train/ is accepted too.

    Args:
        root: the data folder.
        seed: seed of any split vip makes.
        val_fraction, test_fraction: share of train taken for a missing val / test split.
    """
    root = Path(root)
    check_data_folder(root)
    _refuse_cased_split_folders(root)
    present = split_folders(root)
    if present and "train" not in present:
        if not train_optional:
            raise VipError(f"{root} has {', '.join(present)} folders but no train/", "add a train/ split folder")
        return _without_train(root, present)
    left_out = LeftOut()
    guard = LinkGuard(root, class_folders_of(list(present.values()) or [root]))  # every split's, before any is searched
    if present:
        left_out.loose.extend(_images_beside(root))  # beside train/, val/, test/: in no split either
        class_names, train = _scan_flat(present["train"], left_out=left_out, guard=guard)
        splits = {"train": train}
        for name in ("val", "test"):
            if name in present:
                splits[name] = _scan_flat(present[name], class_names, left_out, guard)[1]
    else:
        class_names, train = _scan_flat(root, left_out=left_out, guard=guard)
        splits = {"train": train}
    _require_classes(root, class_names)
    origin = {name: "folder" for name in splits}
    carved = [name for name in ("test", "val") if name not in splits]
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if name not in splits:
            splits["train"], splits[name] = _split_off(splits["train"], fraction, seed, name)
            origin[name] = f"{SEEDED_SPLIT} ({fraction:.0%} per class, seed {seed})"
    shares = {name: fraction for name, fraction in (("val", val_fraction), ("test", test_fraction)) if name in carved}
    dataset = Dataset(root=root, class_names=class_names, splits=splits, origin=origin, left_out=left_out,
                      carved_shares=shares, split_seed=seed if carved else None)
    _require_splittable(dataset, carved)
    if _main_process():  # under torchrun every rank loads the data; rank 0's warnings are enough
        if not present:
            _warn_if_one_split_of_a_data_folder(root)
        _warn_left_out(root, left_out)
        dataset.copies = find_copies(dataset)
        warn_duplicates(dataset)
    return dataset


def _warn_if_one_split_of_a_data_folder(root: Path) -> None:
    """`--data isic/train` (or `isic/test`) beside the folder's other splits: vip reads it as a data folder of its
    own, trains on it, carves val and test from it and never reads the others; say so, naming the folder to pass."""
    if root.name not in SPLIT_NAMES:
        return
    parent = root.parent
    siblings = [parent / name for name in SPLIT_NAMES if name != root.name and (parent / name).is_dir()]
    if not siblings:
        return
    from rich.markup import escape

    from vipcli import console

    console.warn(escape(f"{root} is the {root.name}/ split of {parent}: vip reads it as a data folder of its own, "
                        f"trains on its images and carves val and test from them, and reads none of "
                        f"{', '.join(f'{sibling}/' for sibling in siblings)} (pass --data {shell.quote(parent)} to use its splits)"))


def _refuse_cased_split_folders(root: Path) -> None:
    """Refuse `Train/`, `VAL/`, `Test/`...: read as class folders they would make a classifier of
    split names (or leave a split unread beside a lower-case one); name the folder to rename."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return  # an unreadable folder is reported where its classes are read
    cased = sorted(p.name for p in entries if p.name.lower() in SPLIT_NAMES and p.name not in SPLIT_NAMES
                   and p.is_dir() and not _same_folder(p, root / p.name.lower()))
    renamed = {name: name.lower() for name in cased}
    renamed.update(sorted((p.name, SPLIT_SYNONYMS[p.name.lower()]) for p in entries
                          if p.name.lower() in SPLIT_SYNONYMS and _holds_folders(p)))
    if not renamed:
        return
    found = ", ".join(f"{name}/" for name in sorted(renamed))
    renames = f"rename {', '.join(f'{name}/ to {renamed[name]}/' for name in sorted(renamed))}"
    if len(renamed) == len(cased):
        raise VipError(f"{root}: split folders must be named in lower case (train/, val/, test/); found {found}", renames)
    beside_splits = any((root / name).is_dir() for name in SPLIT_NAMES)  # read alone; the others are not splits
    fate = "leave unread" if beside_splits else f"read as {plural(len(renamed), 'a class', 'classes')}"
    raise VipError(f"{root}: split folders must be named train/, val/ and test/; found {found}, which vip would "
                   f"{fate}", renames)


def _holds_folders(folder: Path) -> bool:
    """True for a folder holding sub-folders (a split's class folders), not only files (a class named
    `training` would hold its images)."""
    try:
        return folder.is_dir() and any(p.is_dir() and not is_system_folder(p.name) for p in folder.iterdir())
    except OSError:
        return False


def _same_folder(folder: Path, other: Path) -> bool:
    """True when `other` is `folder` (`Train` and `train` on a case-insensitive file system)."""
    try:
        return os.path.samefile(folder, other)
    except OSError:
        return False


def _without_train(root: Path, present: dict[str, Path]) -> Dataset:
    """The data of a method that uses no labelled images (zero-shot), laid out as `{val,test}/<class>/*`:
    no training images, classes from test/ (val/ must hold no other class). Both splits are needed:
    val calibrates the probabilities and the prediction sets, test measures them."""
    missing = [name for name in ("val", "test") if name not in present]
    if missing:
        raise VipError(f"{root} has {', '.join(present)} but no train/ or {'/ or '.join(missing)}/ folder",
                       f"a zero-shot method needs no train/, but needs val/ (calibration) and test/: add "
                       f"{Path(root, missing[0], '<class>', '*')}, or give a train/ folder for vip to split it from")
    left_out = LeftOut(loose=_images_beside(root))  # beside val/ and test/: in no split either
    guard = LinkGuard(root, class_folders_of(list(present.values())))
    class_names, test = _scan_flat(present["test"], left_out=left_out, guard=guard)
    _require_classes(root, class_names)
    splits = {"train": [], "val": _scan_flat(present["val"], class_names, left_out, guard)[1], "test": test}
    dataset = Dataset(root=root, class_names=class_names, splits=splits,
                      origin={"train": "none (the method uses no labelled images)", "val": "folder", "test": "folder"},
                      left_out=left_out)
    if _main_process():
        _warn_left_out(root, left_out)
        dataset.copies = find_copies(dataset)
        warn_duplicates(dataset)
    return dataset


def relative_to_data(path, root: Path) -> str:
    """`path` relative to the data folder `root` (both as the run was given them), or as it is when outside
    it: how split.json lists files, and how warnings name them."""
    return str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else str(path)


def named_in_data(path, root: Path | None) -> str:
    """`path` relative to the data folder `root`, the folder named after it (`test/nevus/x.jpg in data`), as
    a warning naming one file of a data folder writes it; the path as given when outside `root` or `root`
    is None."""
    if root is None or not Path(path).is_relative_to(root):
        return str(path)
    return f"{relative_to_data(path, root)} in {root}"


def left_out_record(left_out: LeftOut | None, relative) -> dict:
    """split.json's record of the files no class took, `{"left_out": {"not_images": [...], "in_no_class":
    [...]}}` with each path as `relative` writes it (a list of paths -> a list of strings), sorted; {} when
    there are none. A run's and a benchmark's split.json both record it, and both reports name them."""
    if not left_out or not (left_out.others or left_out.loose):
        return {}
    return {"left_out": {"not_images": relative(sorted(left_out.others)),
                         "in_no_class": relative(sorted(left_out.loose))}}


def _warn_left_out(root: Path, left_out: LeftOut) -> None:
    """A warning for the files in class folders that are not read as images, and one for the images
    in no class folder: each counted and named, never silently dropped."""
    from rich.markup import escape

    from vipcli import console

    def shown(path: Path) -> str:
        return relative_to_data(path, root)

    message = left_out_warning(sorted(left_out.others), shown, root)
    if message:
        console.warn(escape(message))
    if left_out.loose:
        n, listed = len(left_out.loose), console.first_few(map(shown, left_out.loose), LEFT_OUT_SHOWN)
        console.warn(escape(f"left out {n} {plural(n, 'image')} in no class folder of {root}: {listed}; move "
                            f"{plural(n, 'it', 'them')} into the folder of {plural(n, 'its class', 'their class')}"))


def _main_process() -> bool:
    """False on a torchrun rank other than 0: its warnings would repeat rank 0's."""
    from vipcli.distributed import world_from_env

    return world_from_env().main


def _require_splittable(dataset: Dataset, carved: list[str]) -> None:
    """Every class must get at least one image into each split vip had to carve from train (and keep
    one for training): say which class has too few images."""
    counts = {name: dataset.counts(name) for name in SPLIT_NAMES}
    drawn_from = ["train", *carved]  # the class's training images before vip carved the missing splits
    short = [(name, sum(counts[s][i] for s in drawn_from)) for i, name in enumerate(dataset.class_names)
             if any(counts[s][i] == 0 for s in carved)]
    if not short:
        return
    needed = len(carved) + 1
    name, total = short[0]
    more = f" (and {len(short) - 1} more {plural(len(short) - 1, 'class', 'classes')})" if len(short) > 1 else ""
    raise VipError(
        f"{dataset.root}: class '{name}' has {total} training {plural(total, 'image')}{more}: too few to split off "
        f"{' and '.join(carved)} images; vip takes {' and '.join(carved)} from each class's images and needs at "
        f"least {needed} images in a class to do so",
        f"add images, or give the splits yourself as {Path(dataset.root, '{train,val,test}', '<class>', '*')}",
    )


def _linked_class_folders(dataset: Dataset) -> list[tuple[Path, Path]]:
    """(folder, the folder it is the same as) for class folders reached twice, e.g. through a symlink."""
    seen: dict[Path, Path] = {}
    links = []
    folders = sorted({s.path.parent for samples in dataset.splits.values() for s in samples})
    for folder in sorted(folders, key=lambda f: (f.is_symlink(), str(f))):
        real = folder.resolve()
        if real in seen:
            links.append((folder, seen[real]))
        else:
            seen[real] = folder
    return links


def find_duplicates(dataset: Dataset, skip_folders=()) -> list[list[tuple[str, Sample, str]]]:
    """Groups of images with the same content in more than one (split, class), as (split, sample, digest).

    Only files of equal size are read and hashed, so a data set without duplicates costs a stat per file. Files
    alike that are no image (two empty files, copies of one truncated JPEG) are no duplicates: they are left out
    here, to be named as unreadable where the images are decoded. One file of each group is decoded to tell.
    """
    from vipcli.digests import digest_many

    entries = [(split, s) for split in SPLIT_NAMES for s in dataset.splits.get(split, [])
               if s.path.parent not in skip_folders]
    by_size: dict[int, list] = {}
    for split, sample in entries:
        try:
            by_size.setdefault(sample.path.stat().st_size, []).append((split, sample))
        except OSError:
            continue  # unreadable files are reported when they are decoded
    candidates = [e for group in by_size.values() if len(group) > 1 for e in group]
    by_digest: dict[str, list] = {}
    for (split, sample), digest in zip(candidates, digest_many([s.path for _, s in candidates])):
        if isinstance(digest, str):
            by_digest.setdefault(digest, []).append((split, sample, digest))
    groups = [group for group in by_digest.values() if len({(split, s.label) for split, s, _ in group}) > 1]
    return [group for group in groups if _decodes(group[0][1].path)]  # the files of a group hold the same bytes


def _decodes(path: Path) -> bool:
    """Whether `path` decodes as vip reads an image (at a reduced scale, for speed)."""
    from vipcli.errors import ImageError
    from vipcli.images import load_image

    try:
        load_image(path, min_side=DECODE_CHECK_SIDE)
    except ImageError:
        return False
    return True


def find_copies(dataset: Dataset) -> Copies:
    """The class folders that are one folder (a symlink) and the images with the same content in more than one split
    or class of `dataset` (the images of a linked folder are not read again)."""
    from vipcli.label_table import groups_across_splits_recorded

    linked = _linked_class_folders(dataset)
    return Copies(linked, find_duplicates(dataset, skip_folders={folder for folder, _ in linked}),
                  groups_across_splits_recorded(Path(dataset.root)))


def warn_duplicates(dataset: Dataset) -> None:
    """Warn about `dataset.copies`: class folders that are one folder (a symlink) and images in two splits or
    classes, the first `DUPLICATES_SHOWN` of them named, then how many there are."""
    from rich.markup import escape

    from vipcli import console

    root, copies = Path(dataset.root), dataset.copies or Copies()

    def shown(path: Path) -> str:
        return relative_to_data(path, root)

    for folder, original in copies.linked:
        console.warn(escape(f"class folder {shown(folder)} of {root} is the same folder as {shown(original)} (a symbolic "
                            "link): its images are in two classes or splits; remove the link"))
    groups = copies.groups
    for group in groups[:DUPLICATES_SHOWN]:
        places = sorted({f"{split}/{dataset.class_names[s.label]}" for split, s, _ in group})
        files = ", ".join(shown(s.path) + ("" if dataset.origin.get(split) == "folder" else f" (in {split})")
                          for split, s, _ in group)
        console.warn(escape(f"the same image (sha256 {group[0][2][:12]}) is in {' and '.join(places)} of {root}: "
                            f"{files}"))
    if groups:
        more = f" ({len(groups) - DUPLICATES_SHOWN} more not listed)" if len(groups) > DUPLICATES_SHOWN else ""
        console.warn(f"{len(groups)} {plural(len(groups), 'image is', 'images are')} in more than one split or "
                     f"class{more}: a copy in val or test inflates its figures, a copy in two classes contradicts "
                     "itself; remove the copies")
    if copies.groups_across_splits and copies.groups_across_splits[1]:
        column, values = copies.groups_across_splits
        console.warn(escape(f"{len(values)} {console.printable(column)} "
                            f"{plural(len(values), 'value has', 'values have')} images in more than one split of "
                            f"{root} (first: {console.first_few(map(console.printable, values), DUPLICATES_SHOWN)}), "
                            "as its labels put them and vip data sort warned: test figures may be inflated by images "
                            "of what was trained on"))


def copies_record(dataset: Dataset, relative) -> dict:
    """split.json's record of `dataset.copies`, with each path as `relative` writes it (a list of paths -> a list
    of strings): `{"duplicates": [{"sha256": ..., "files": [{"path": ..., "split": ..., "class": ...}, ...]}, ...],
    "linked_class_folders": [{"folder": ..., "same_as": ...}, ...], "groups_across_splits": {"column": ...,
    "values": [...]}}`, every one found (the warnings name the first few), both lists empty when there are none,
    `groups_across_splits` None where `vip data sort` recorded none; {} when they were not looked for. A run's and a benchmark's
    split.json both record it, and both reports name them (`vipcli.report.data_notes`)."""
    copies = dataset.copies
    if copies is None:
        return {}
    duplicates = []
    for group in copies.groups:
        paths = relative([sample.path for _, sample, _ in group])
        duplicates.append({"sha256": group[0][2], "files": [
            {"path": path, "split": split, "class": dataset.class_names[sample.label]}
            for path, (split, sample, _) in zip(paths, group)]})
    linked = [{"folder": folder, "same_as": original} for folder, original in
              zip(relative([f for f, _ in copies.linked]), relative([o for _, o in copies.linked]))]
    crossing = copies.groups_across_splits
    return {"duplicates": duplicates, "linked_class_folders": linked,
            "groups_across_splits": None if crossing is None else {"column": crossing[0], "values": crossing[1]}}


def _require_classes(root: Path, class_names: list[str]) -> None:
    """At least two class folders; when the layout is one level off, name the folder --data should be."""
    if len(class_names) < 2:
        found = f"only '{class_names[0]}'" if class_names else "no class folders"
        raise VipError(f"{root}: found {found}; ViP needs at least two classes", _layout_hint(root, class_names))


def _layout_hint(root: Path, class_names: list[str]) -> str:
    """The fix for a data folder with fewer than two classes: the folder one level down or up, if that fits."""
    generic = "lay the data out as DIR/<class>/* with one folder per class"
    what = written_by_vip(root) if not class_names else None
    if what is not None:
        return _vip_output_as_data_hint(root, what)
    if len(class_names) == 1:
        inner = next((p for p in (root / class_names[0], root / "train" / class_names[0]) if p.is_dir()), None)
        if inner is not None and len(_class_folders(inner)) >= 2:
            return f"its class folders seem to be in {inner}: pass --data {shell.quote(inner)}"
    if not class_names and any(is_image_file(p) for p in root.iterdir()):
        data = root.parent.parent if root.parent.name in SPLIT_NAMES else root.parent  # .../train/<class>: the top
        tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
        table = shell.quote(tables[0]) if len(tables) == 1 else "LABELS.csv"  # the download's own table, when one
        return (f"{root} holds images, not class folders: is it one class? pass --data {shell.quote(data)}; are "
                f"their classes in a labels table (ISIC, HAM10000)? sort them into class folders with `vip data sort "
                f"{table} --images {shell.quote(root)} --out DIR`")
    return generic


def few_shot_order(samples: list[Sample], num_classes: int, seed: int) -> list[list[Sample]]:
    """Per class, the samples in a seeded random order (the first K form the K-shot subset).

    The order depends only on the seed, the class index and the file paths, so a K-shot subset
    is reproducible and nested in the (K+1)-shot subset.
    """
    ordered = []
    for label in range(num_classes):
        members = sorted((s for s in samples if s.label == label), key=lambda s: str(s.path))
        random.Random(f"shots:{seed}:{label}").shuffle(members)
        ordered.append(members)
    return ordered


def few_shot_union(train: list[Sample], orders: list[list[list[Sample]]], shots: int | None,
                   skip=frozenset()) -> list[Sample]:
    """The training samples some row of a sweep uses: for every seed's order (see `few_shot_order`)
    and class, the first `shots` samples whose path is not in `skip` (e.g. known unreadable);
    every training sample when `shots` is None. Each sample once, in first-seen order."""
    if shots is None:
        return list(train)
    wanted: dict[str, Sample] = {}
    for order in orders:
        for members in order:
            kept = [sample for sample in members if str(sample.path) not in skip][:shots]
            wanted.update((str(sample.path), sample) for sample in kept)
    return list(wanted.values())
