"""Build a Derm7pt-sized benchmark folder (768x512 JPEGs, 346 train / 161 val / 320 test) from ISIC.

A fixture for `vip benchmark --speed`, not part of the package. Derm7pt's melanoma-vs-nevus task
has 252 melanoma and 575 nevus images (827 = 346 + 161 + 320); the same class ratio is kept in
every split. Images are drawn without replacement from all splits of
../shared/data/isic2017_mel_nv (seeded), upscaled (bicubic) to 768x768 and center-cropped to
768x512, and saved as JPEG (quality 90). Pixel content is irrelevant for timing; size and
count are what matter.

Usage:
    python scripts/make_derm7pt_sized.py OUT_DIR [--source DIR] [--seed 0] [--fraction 1.0]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SPLIT_SIZES = {"train": 346, "val": 161, "test": 320}  # Derm7pt melanoma vs nevus (ViP, MICCAI 2024)
CLASS_TOTALS = {"melanoma": 252, "nevus": 575}
WIDTH, HEIGHT = 768, 512
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic2017_mel_nv"


def split_counts(fraction: float = 1.0) -> dict[str, dict[str, int]]:
    """Images per split and class, keeping Derm7pt's class ratio and split sizes (times `fraction`)."""
    total = sum(CLASS_TOTALS.values())
    counts = {}
    for split, full in SPLIT_SIZES.items():
        size = round(full * fraction)
        melanoma = round(size * CLASS_TOTALS["melanoma"] / total)
        counts[split] = {"melanoma": melanoma, "nevus": size - melanoma}
    return counts


def pick_sources(source: Path, seed: int, fraction: float = 1.0) -> dict[str, dict[str, list[Path]]]:
    """Seeded, disjoint choice of ISIC images for every split and class."""
    if not source.is_dir():
        raise SystemExit(f"error: no ISIC melanoma/nevus folder at {source} (pass --source DIR, a folder whose "
                         "split folders hold melanoma/*.jpg and nevus/*.jpg, e.g. ../shared/data/isic2017_mel_nv)")
    chosen: dict[str, dict[str, list[Path]]] = {split: {} for split in SPLIT_SIZES}
    counts = split_counts(fraction)
    for cls in CLASS_TOTALS:
        pool = sorted(source.glob(f"*/{cls}/*.jpg"))
        random.Random(f"{seed}:{cls}").shuffle(pool)
        needed = sum(counts[split][cls] for split in SPLIT_SIZES)
        if len(pool) < needed:
            raise SystemExit(f"error: {source} has {len(pool)} {cls} images in its split folders; {needed} needed "
                             f"(pass a smaller --fraction, or a --source with more images)")
        start = 0
        for split in SPLIT_SIZES:
            n = counts[split][cls]
            chosen[split][cls] = pool[start:start + n]
            start += n
    return chosen


def upscale(src: Path, dst: Path) -> None:
    """Bicubic upscale to 768x768, center crop to 768x512, JPEG quality 90."""
    from PIL import Image

    with Image.open(src) as image:
        image = image.convert("RGB").resize((WIDTH, WIDTH), Image.BICUBIC)
        top = (WIDTH - HEIGHT) // 2
        image.crop((0, top, WIDTH, top + HEIGHT)).save(dst, "JPEG", quality=90)


def main() -> None:
    """Make the Derm7pt-sized folder named on the command line from --source; prints the image counts per split and
    class, and exits with an error line when OUT exists and is not empty."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create (train/ val/ test/ with melanoma/ nevus/)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="ISIC melanoma/nevus folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image choice")
    parser.add_argument("--fraction", type=float, default=1.0, help="scale every split (e.g. 0.25 for a quick run)")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"error: {args.out} exists and is not empty (pass a new folder)")
    for split, classes in pick_sources(args.source, args.seed, args.fraction).items():
        for cls, files in classes.items():
            folder = args.out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for src in files:
                upscale(src, folder / src.name)
    print({split: {c: len(list((args.out / split / c).glob("*.jpg"))) for c in CLASS_TOTALS} for split in SPLIT_SIZES})


if __name__ == "__main__":
    main()
