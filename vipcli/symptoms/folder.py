"""Which pack each class of a data folder uses, and which classes still need one generated.

Per class folder, in this order: a pack given with --symptoms, a pack file already in --out from an
earlier run (--force makes a new one in its place), a shipped pack (by name or alias), else one to
generate, named after the class folder, with stage 2 shown that class's own training images. The
order is the one `vip train --symptoms SOURCES --symptoms OUT` (the command printed at the end)
uses, so the pack the table names is the pack that trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vipcli.errors import UsageError, VipError
from vipcli.packs import SymptomPack, collect_packs, load_pack, shipped_pack_dir, shipped_packs
from vipcli.symptoms.grid import GRID_SIDE

GIVEN, SHIPPED, IN_OUT, GENERATE = "given", "shipped", "in --out", "generate"


@dataclass(frozen=True)
class ClassPack:
    """One class folder and the pack it will use."""

    class_name: str  # the class folder name
    disease: str  # the name a generated pack gets (the folder name, "_" read as a space)
    origin: str  # GIVEN, SHIPPED, IN_OUT or GENERATE
    pack: SymptomPack | None  # the pack found; None when it is to be generated
    path: Path  # where a generated pack goes (and where an IN_OUT pack was found)
    train_images: tuple[Path, ...]  # the class's training images (stage 2 draws its 16 from these)
    folder: Path  # the class's training folder (recorded in a generated pack's provenance)


def disease_name(class_folder: str) -> str:
    """The disease a class folder names: "squamous_cell_carcinoma" -> "squamous cell carcinoma"."""
    return " ".join(class_folder.replace("_", " ").split())


def plan_packs(dataset, sources: list[str], out: Path, force: bool) -> list[ClassPack]:
    """The pack of every class of `dataset`, and where each comes from.

    Args:
        dataset: the loaded data folder (its train split gives each class's images).
        sources: --symptoms values (pack files, folders, shipped names); they win over every other pack.
        out: the --out folder, where generated packs go; a pack already there wins over a shipped one,
            as it does for `vip train --symptoms OUT`.
        force: regenerate classes whose pack file is already in `out`, shipped pack or not.

    Returns:
        One ClassPack per class, in class order.
    """
    from vipcli.symptoms.generate import check_pack_file_name, default_out_name

    shipped = shipped_packs()
    packs = collect_packs(list(sources), shipped)  # the packs of `sources`, in order, then every shipped pack
    n_given = len(packs) - len(shipped)
    shipped_dir = shipped_pack_dir().resolve()
    plans = []
    for label, name in enumerate(dataset.class_names):
        images = tuple(s.path for s in dataset.splits["train"] if s.label == label)
        folder = _class_folder(dataset.root, name)
        path = out / default_out_name(disease_name(name))
        index = next((i for i, p in enumerate(packs) if p.matches(name)), None)
        pack = None if index is None else packs[index]
        if index is not None and index < n_given:  # given with --symptoms (a file, folder or shipped name)
            origin = SHIPPED if Path(pack.path).resolve().parent == shipped_dir else GIVEN
        elif path.is_file():  # `vip train --symptoms OUT` takes it over a shipped pack
            pack, origin = (None, GENERATE) if force else (_pack_in_out(path, name), IN_OUT)
        elif pack is not None:
            origin = SHIPPED
        else:
            origin = GENERATE
        if origin == GENERATE:
            check_pack_file_name(path.name, f"the pack of class {name!r}",
                                 "rename the class folder, or give it a pack with --symptoms")
        plans.append(ClassPack(name, disease_name(name), origin, pack, path, images, folder))
    return plans


def _class_folder(root: Path, name: str) -> Path:
    return root / "train" / name if (root / "train").is_dir() else root / name


def _pack_in_out(path: Path, class_name: str) -> SymptomPack:
    pack = load_pack(path)
    if not pack.matches(class_name):
        raise VipError(
            f"{path} holds the pack {pack.name!r}, not one for class {class_name!r}",
            "move the file away, or pass --force to generate the class's pack in its place",
        )
    return pack


def modality_for(plans: list[ClassPack], modality: str | None) -> str:
    """--modality, else the one modality of the packs the other classes use; UsageError if neither.

    Only asked when some class needs a pack generated.
    """
    if modality:
        return modality
    known = sorted({p.pack.modality for p in plans if p.pack is not None and p.pack.modality})
    if len(known) == 1:
        return known[0]
    missing = ", ".join(repr(p.disease) for p in plans if p.origin == GENERATE)
    found = f" (the other classes' packs say {' / '.join(known)})" if known else ""
    raise UsageError(
        f"--modality is needed to generate packs for {missing}{found}",
        'say what the images are, e.g. --modality "dermoscopic images" or "chest X-ray images"',
    )


def check_enough_images(plans: list[ClassPack]) -> None:
    """VipError naming every class to generate with fewer than 16 training images (stage 2's grid)."""
    need = GRID_SIDE * GRID_SIDE
    short = [p for p in plans if p.origin == GENERATE and len(p.train_images) < need]
    if short:
        listed = ", ".join(f"{p.class_name!r} has {len(p.train_images)}" for p in short)
        raise VipError(
            f"stage 2 shows {need} training images of a class; {listed}",
            "add training images, or pass --text-only to ask the text question only",
        )


def check_out_paths(plans: list[ClassPack]) -> None:
    """UsageError if two classes to generate would write the same pack file."""
    paths = [p.path for p in plans if p.origin == GENERATE]
    if len(set(paths)) < len(paths):
        raise UsageError("two class folders give the same pack file name", "rename one of the class folders")
