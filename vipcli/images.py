"""Reading one image file into an RGB PIL image, whatever its mode, or saying why not."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from vipcli.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 200_000_000  # refuse larger images (decompression bombs); 200 MP
STRIP_PIXELS = 8_000_000  # pixels converted at a time when a mode must change before reducing
LEFT_OUT_SHOWN = 3  # left-out files named in the warning before a count
FILE_MANAGER_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})  # not data: never reported as left out
# folders an operating system, an archiver or a NAS makes beside people's images (macOS zip's resource
# forks, Synology's thumbnails and recycle bin, Windows' recycle bin): never a class, never searched
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir", "#recycle", "#snapshot", "$recycle.bin", "system volume information",
                            "lost+found"})

DECODE_POLICY = "jpeg draft, then reduce(); shorter side kept >= 2 x min_side"  # part of feature-cache keys
# also part of feature-cache keys, but not of the seed of augmented views (features.py): turning a photo
# upright changes no pixel of an image without an EXIF orientation, so such an image keeps its views
ORIENTATION_POLICY = "EXIF orientation applied"
EXIF_ORIENTATION = 0x0112  # the EXIF tag of how a viewer turns the stored pixels
_REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK", "YCbCr", "PA")  # modes Image.reduce takes


def is_system_folder(name: str) -> bool:
    """True for a hidden folder (`.thumbnails`) or one of `SYSTEM_FOLDERS` (`__MACOSX`, `@eaDir`)."""
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def _to_8bit(image):
    """16-bit and float grayscale -> 8-bit L, scaled by the value range of the pixel type."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and array.max(initial=0) > 255):
        top = 65535.0 if array.max(initial=0) > 255 else 255.0
        low = 0.0
    else:  # float images: stretch their own range
        low, top = float(array.min(initial=0)), float(array.max(initial=1))
    scaled = (array - low) / max(top - low, 1e-12) * 255.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image):
    """Convert any PIL mode (CMYK, P, LA, RGBA, I;16, F, 1, ...) to RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _to_8bit(image)
    elif image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        from PIL import Image

        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def _reduce_in_strips(image, factor: int, mode: str):
    """`image` converted to `mode` and reduced by `factor`, a strip of rows at a time (bounded memory)."""
    from PIL import Image

    width, height = image.size
    rows = max(factor, (STRIP_PIXELS // max(width, 1)) // factor * factor)
    reduced = Image.new(mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).convert(mode).reduce(factor)
        reduced.paste(strip, (0, top // factor))
    return reduced


def reduce_decoded(image, min_side: int):
    """Shrink a decoded image by a whole factor while its shorter side stays >= 2 x `min_side`.

    Runs before any mode conversion, so a huge image never exists in a wider pixel format: the
    memory of a decode stays that of its own pixels (JPEGs are decoded reduced in the first place).
    """
    factor = min(image.size) // (2 * min_side)
    if factor < 2:
        return image
    if image.mode in _REDUCIBLE:
        return image.reduce(factor)
    if image.mode.startswith("I;16"):  # 16-bit: average as 32-bit integers, keep the 16-bit mode
        return _reduce_in_strips(image, factor, "I").convert("I;16")
    if image.mode == "P":
        transparent = "transparency" in image.info
        return _reduce_in_strips(image, factor, "RGBA" if transparent else "RGB")
    return _reduce_in_strips(image, factor, "RGBA" if "A" in image.mode else "L")


def exif_orientation(image) -> int:
    """The EXIF orientation tag (1-8) of an opened image; 1 (as stored) when it has none or it is unreadable."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels are still good, as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image, orientation: int):
    """`image` turned the way its EXIF `orientation` says a viewer shows it (a phone photo taken
    sideways is stored sideways with orientation 6); orientation 1 returns it unchanged."""
    from PIL import Image

    steps = {2: (Image.Transpose.FLIP_LEFT_RIGHT,), 3: (Image.Transpose.ROTATE_180,),
             4: (Image.Transpose.FLIP_TOP_BOTTOM,), 5: (Image.Transpose.TRANSPOSE,),
             6: (Image.Transpose.ROTATE_270,), 7: (Image.Transpose.TRANSVERSE,), 8: (Image.Transpose.ROTATE_90,)}
    for step in steps.get(orientation, ()):
        image = image.transpose(step)
    return image


def load_image(path: str | Path, min_side: int | None = None):
    """Decode `path` into an RGB PIL image.

    Args:
        path: the image file.
        min_side: if given, images are decoded at a reduced scale whose shorter side stays at
            least `min_side` pixels twice over: JPEGs by the decoder itself (draft mode), other
            formats reduced right after decoding, before any mode conversion (a large saving in
            time and memory for big images; the encoders need about 224 px).
    Returns:
        PIL.Image in mode RGB, fully loaded.
    Raises:
        ImageError: with a short reason (empty file, not an image, truncated, too large).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(path) as image:
                if min_side and image.format == "JPEG":
                    image.draft("RGB", (min_side * 2, min_side * 2))
                image.load()
                orientation = exif_orientation(image)
                return upright(to_rgb(reduce_decoded(image, min_side) if min_side else image), orientation)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(path, f"larger than {MAX_PIXELS // 1_000_000} megapixels; downscale it first") from None
    except OSError as error:
        reason = "truncated or corrupt file" if "truncat" in str(error).lower() else f"unreadable ({error})"
        raise ImageError(path, reason) from None
    except (ValueError, SyntaxError, MemoryError) as error:
        raise ImageError(path, f"unreadable ({type(error).__name__}: {error})") from None


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image suffix vip reads, or a link named so whose target is gone
    (it is then reported as unreadable, not silently left out)."""
    named = not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    return named and (path.is_file() or (path.is_symlink() and not path.exists()))


def image_files_under(folder: Path, left_out: list[Path] | None = None) -> list[Path]:
    """The image files in `folder` and its sub-folders, sorted (see `is_image_file`); the other
    visible files, bar those a file manager leaves (`FILE_MANAGER_FILES`), are added to `left_out`.

    Sub-folders that are symbolic links are followed (a class folder assembled from linked batches
    keeps its images), except a link back to a folder on the way down (a loop, e.g. `link -> ..`,
    which would also bring in the images of other classes) and a folder already searched.
    """
    folder = Path(folder)
    found: list[Path] = []
    searched: set[str] = set()

    def search(directory: Path, path_down: tuple[Path, ...]) -> None:
        real = os.path.realpath(directory)
        if real in searched:
            return
        searched.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            return  # an unreadable sub-folder: its class folder's own check names it
        path_down = (*path_down, Path(real))
        for entry in entries:
            path = Path(entry.path)
            if _is_folder(entry):
                if is_system_folder(entry.name):
                    continue  # thumbnails or resource forks made by the OS or a NAS, not images of the class
                if entry.is_symlink() and any(f.is_relative_to(os.path.realpath(path)) for f in path_down):
                    continue  # a loop: the link leads back up
                search(path, path_down)
            elif is_image_file(path):
                found.append(path)
            elif left_out is not None and not path.name.startswith(".") and path.name.lower() not in FILE_MANAGER_FILES:
                left_out.append(path)

    search(folder, ())
    return sorted(found)


def _is_folder(entry: os.DirEntry) -> bool:
    """True for a folder or a link to one."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def left_out_warning(files: list[Path], shown=str) -> str | None:
    """The warning for files in image folders that vip does not read (a DICOM, a GIF, a text file):
    how many, the first few by `shown(path)`, and what to do; None when there are none."""
    from vipcli.console import first_few, plural

    if not files:
        return None
    return (f"left out {len(files)} {plural(len(files), 'file')} not named as an image vip reads "
            f"({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}): {first_few(map(shown, files), LEFT_OUT_SHOWN)}; "
            "convert images of other formats to PNG, and move other files out of the image folders")
