"""The 4x4 grid of 16 class images that stage 2 shows a vision-capable LLM."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from vipcli.errors import ImageError, VipError
from vipcli.images import is_image_file, load_image

GRID_SIDE = 4  # 4 x 4 = 16 images, as in the paper


@dataclass(frozen=True)
class ImageGrid:
    """One JPEG showing 16 images of a class."""

    jpeg: bytes  # the encoded grid
    files: tuple[str, ...]  # the 16 image file names, row by row
    folder: str  # where they came from
    digests: tuple[str, ...] = ()  # sha256 of each of the 16 files' bytes, row by row


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name, by the rules vip reads a class folder by
    (`vipcli.images.is_image_file`: an image suffix, not hidden, so no `._x.jpg` of a macOS archive)."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def make_grid(folder: str | Path, seed: int = 0, tile: int = 224) -> ImageGrid:
    """Pick 16 readable images of `folder` (seeded) and tile them 4x4 into one JPEG.

    Args:
        folder: a folder of one class's images (jpg, png, bmp, tif, webp; not searched recursively;
            hidden files left out, as `vipcli.images.is_image_file` says).
        seed: which 16 are chosen when there are more.
        tile: side of each square tile in pixels (the grid is 4 * tile wide).

    Returns:
        The grid JPEG and the chosen file names.

    Raises:
        VipError: the folder is missing or has fewer than 16 readable images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        raise VipError(f"--images {folder}: {what}", "pass a folder holding images of this one class")
    return grid_of_files(
        list_images(folder), seed, tile, where=f"--images {folder}", folder=str(folder),
        hint="add images of this class, or leave out --images to use the text stage only",
    )


def grid_of_files(files, seed: int = 0, tile: int = 224, where: str = "images", folder: str = "",
                  hint: str = "add images of this class") -> ImageGrid:
    """Pick 16 readable images of `files` (seeded) and tile them 4x4 into one JPEG.

    Args:
        files: image files of one class (e.g. its training split).
        seed: which 16 are chosen when there are more.
        tile: side of each square tile in pixels.
        where: names the images in the error message, e.g. "--images data/mel".
        folder: recorded in the grid as where the images came from.
        hint: the fix shown when fewer than 16 are readable.

    Returns:
        The grid JPEG and the chosen file names.

    Raises:
        VipError: fewer than 16 of the files are readable images.
    """
    from PIL import Image

    files = [Path(f) for f in files]
    random.Random(seed).shuffle(files)
    need = GRID_SIDE * GRID_SIDE
    chosen, tiles = [], []
    for path in files:
        image = read_tile(path, tile)
        if image is not None:
            chosen.append(path)
            tiles.append(image)
        if len(tiles) == need:
            break
    if len(tiles) < need:
        raise VipError(
            f"{where}: {len(tiles)} readable images (of {len(files)} image files), need {need} for the 4x4 grid", hint
        )
    canvas = Image.new("RGB", (tile * GRID_SIDE, tile * GRID_SIDE))
    for index, image in enumerate(tiles):
        canvas.paste(image, ((index % GRID_SIDE) * tile, (index // GRID_SIDE) * tile))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=90)
    from vipcli.digests import file_digest

    return ImageGrid(jpeg=buffer.getvalue(), files=tuple(p.name for p in chosen), folder=folder,
                     digests=tuple(file_digest(p) for p in chosen))


def read_tile(path: Path, tile: int):
    """The image at `path` as an RGB center-cropped square of side `tile`, decoded as vip encodes it
    (`vipcli.images.load_image`: any mode to RGB, 16-bit by its bit depth, alpha over black, turned
    upright by its EXIF orientation), or None if unreadable."""
    from PIL import Image, ImageOps

    try:
        rgb = load_image(path, min_side=tile)  # a large image decoded reduced, its shorter side >= 2 x tile
    except ImageError:
        return None
    return ImageOps.fit(rgb, (tile, tile), method=Image.Resampling.BICUBIC)


def grid_data_url(grid: ImageGrid) -> str:
    """The grid as a base64 data: URL for an OpenAI-format image_url message part."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(grid.jpeg).decode("ascii")
