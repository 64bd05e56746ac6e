"""Reading one image file into an RGB PIL image, whatever its mode, or saying why not; and which
files under a folder are images (`image_files_under`), and which of its folders are never data."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from vipcli.dicom import DICOM_SUFFIXES, has_dicom_magic, is_dicom_name, read_dicom
from vipcli.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", *DICOM_SUFFIXES)  # DICOM: vipcli/dicom.py
MAX_PIXELS = 200_000_000  # refuse larger images (decompression bombs); 200 MP
STRIP_PIXELS = 8_000_000  # pixels converted at a time when a mode must change before reducing
READ_SUFFIXES = ", ".join(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)  # as messages name them: "jpg, jpeg, ..."
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
# also part of feature-cache keys but not of the view seed (features.py): an 8-bit image is read as before
DEPTH_POLICY = ("unsigned >8-bit by the bit depth its values use (10/12/14/16); signed (mode, TIFF SampleFormat "
                "or a negative value) by min..max; float by min..max with 0..1")
DEPTHS = (10, 12, 14, 16)  # the bit depths a high-bit-depth image is scaled by: the smallest that holds its maximum
EXIF_ORIENTATION = 0x0112  # the EXIF tag of how a viewer turns the stored pixels
TIFF_SAMPLE_FORMAT, SIGNED_INTEGER = 339, 2  # the TIFF tag saying how a sample is stored, and its "signed" value
# decoded at reduced scale by libjpeg (draft); MPO: a phone's JPEG holding a second picture (an HDR gain map)
JPEG_FORMATS = ("JPEG", "MPO")
_REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK", "YCbCr", "PA")  # modes Image.reduce takes


def is_system_folder(name: str) -> bool:
    """True for a hidden folder (`.thumbnails`) or one of `SYSTEM_FOLDERS` (`__MACOSX`, `@eaDir`)."""
    return name.startswith(".") or name.lower() in SYSTEM_FOLDERS


def is_high_depth(mode: str) -> bool:
    """True for the modes of more than 8 bits a pixel (16- and 32-bit integers in any byte order,
    signed or not: `I;16`, `I;16B`, `I;16S`, `I;32`, `I`, ...; and float `F`)."""
    return mode in ("I", "F") or mode.startswith("I;")


def value_range(image) -> tuple[float, float] | None:
    """The pixel values of a high-bit-depth `image` that become 0 and 255 (None for other modes).

    Unsigned integer images are scaled by the bit depth their data uses: the smallest of 10, 12, 14
    or 16 bits whose range (2**b - 1) holds the image's maximum, 255 when the maximum is <= 255 (an
    X-ray exported as 12-bit data in a 16-bit PNG, max <= 4095, is shown as bright as its 12 bits
    allow, not nearly black). The bit depth is read from the pixel values, because PNG and TIFF exports
    rarely record how many of the 16 bits are used. Signed images (CT in Hounsfield units: by mode, by a
    TIFF's SampleFormat tag, or by a negative value) and integers beyond 16 bits are stretched from their
    own min to their own max; float images too, the range widened to hold 0..1 (a float image of values
    in 0..1 keeps its brightness).
    """
    if not is_high_depth(image.mode):
        return None
    low, high = _extrema(image)
    if image.mode == "F":
        return min(low, 0.0), max(high, 1.0)
    if image.mode.endswith("S") or _declared_signed(image) or low < 0 or high > 2 ** DEPTHS[-1] - 1:
        return low, high  # signed (by its mode, its TIFF SampleFormat or a negative value), or beyond 16 bits
    if high <= 255:
        return 0.0, 255.0
    return 0.0, float(next(2 ** bits - 1 for bits in DEPTHS if high <= 2 ** bits - 1))


def _declared_signed(image) -> bool:
    """True for a TIFF whose SampleFormat tag says signed integers: Pillow reads such a 16-bit image as
    mode `I`, like an unsigned one, so a CT slice without a negative value would otherwise be taken
    for unsigned data."""
    tags = getattr(image, "tag_v2", None)
    if tags is None:
        return False
    stored = tags.get(TIFF_SAMPLE_FORMAT)
    if isinstance(stored, (tuple, list)):
        stored = stored[0] if stored else None
    return stored == SIGNED_INTEGER


def _extrema(image) -> tuple[float, float]:
    """The smallest and largest pixel value of a one-band image, a strip of rows at a time where
    Pillow's own `getextrema` does not take the mode (`I;16B`, `I;16L`): bounded memory either way."""
    import numpy as np

    try:
        low, high = image.getextrema()
        return float(low), float(high)
    except ValueError:
        pass
    width, height = image.size
    if not width or not height:
        return 0.0, 0.0
    rows = max(1, STRIP_PIXELS // width)
    low, high = float("inf"), float("-inf")
    for top in range(0, height, rows):  # one strip in memory at a time
        strip = np.asarray(image.crop((0, top, width, min(height, top + rows))))  # [rows, W]
        low, high = min(low, float(strip.min())), max(high, float(strip.max()))
    return low, high


def _to_8bit(image, scale: tuple[float, float]):
    """A high-bit-depth one-band image -> 8-bit L, `scale` (low, top) mapped to 0..255 (see `value_range`)."""
    import numpy as np
    from PIL import Image

    low, top = scale
    array = np.asarray(image, dtype=np.float64)  # [H, W]
    scaled = (array - low) / max(top - low, 1e-12) * 255.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image, scale: tuple[float, float] | None = None):
    """Convert any PIL mode (CMYK, P, LA, RGBA, I;16, I;16S, I, F, 1, ...) to RGB.

    Args:
        image: a decoded image.
        scale: for a high-bit-depth image, the values that become 0 and 255; `value_range(image)` when
            None (`load_image` passes the range of the image as decoded, before it was reduced).
    """
    if is_high_depth(image.mode):
        image = _to_8bit(image, scale or value_range(image))
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
    if image.mode.startswith("I;"):  # 16/32-bit, signed or not, any byte order: average as 32-bit integers
        return _reduce_in_strips(image, factor, "I")  # kept as I: a signed image keeps its negative values
    if image.mode == "P":
        transparent = "transparency" in image.info
        return _reduce_in_strips(image, factor, "RGBA" if transparent else "RGB")
    return _reduce_in_strips(image, factor, "RGBA" if "A" in image.mode else "L")


def full_size_frames(image) -> int:
    """How many frames of an opened image are as large as its first: 1 for a single image, a TIFF whose
    other pages are smaller (a pyramid, a thumbnail) and an MPO (a phone's JPEG, whose first picture is
    the photo); the frame count of a stack of TIFF pages, an animated WebP or PNG. Read from the headers:
    no frame is decoded."""
    try:
        count = getattr(image, "n_frames", 1)
        if count < 2 or image.format == "MPO":
            return 1
        if image.format != "TIFF":
            return count  # the frames of an animation are all the size of its canvas
        size, full = image.size, 0
        for index in range(count):  # a page's size is in its own header (IFD)
            image.seek(index)
            full += image.size == size
        image.seek(0)
        return full
    except (EOFError, OSError, ValueError):
        return 1  # a damaged list of frames: the first is decoded, or found damaged, as a single image is


def holds_second_picture(path: str | Path) -> bool:
    """True when JPEG file `path` carries a Multi-Picture (MPF) segment, as a phone's JPEG with an HDR gain
    map or a stereo pair does (Pillow opens such a file as MPO). Reads the segment headers before the image
    data alone, a few hundred bytes; False for any other file and for one that cannot be read."""
    if Path(path).suffix.lower() not in (".jpg", ".jpeg", ".jpe", ".mpo"):
        return False
    try:
        with open(path, "rb") as file:
            if file.read(2) != b"\xff\xd8":  # no JPEG start of image
                return False
            while True:
                head = file.read(4)  # 0xFF, the marker, a big-endian length that counts itself
                if len(head) < 4 or head[0] != 0xFF or head[1] == 0xDA:  # the image data starts: no MPF before
                    return False
                length = int.from_bytes(head[2:], "big")
                if head[1] == 0xE2 and file.read(4) == b"MPF\x00":  # APP2 holding the Multi-Picture index
                    return True
                file.seek(file.tell() - 6 + length if head[1] == 0xE2 else file.tell() + length - 2)
    except OSError:
        return False


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


@contextlib.contextmanager
def pixel_limit():
    """Pillow's decompression-bomb limit set to `MAX_PIXELS` (its warning an error) while vip opens a file,
    and the process's own limit put back after: a notebook's `Image.MAX_IMAGE_PIXELS` is left as it was."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def load_image(path: str | Path, min_side: int | None = None):
    """Decode `path` into an RGB PIL image.

    Args:
        path: the image file.
        min_side: if given, images are decoded at a reduced scale whose shorter side stays at
            least `min_side` pixels twice over: JPEGs by the decoder itself (draft mode), other
            formats reduced right after decoding, before any mode conversion (a large saving in
            time and memory for big images; the encoders need about 224 px).
            A DICOM file (`.dcm`, `.dicom`) is decoded by `vipcli.dicom.read_dicom` (windowed to 8
            bits as a viewer shows it), then reduced the same way.
    Returns:
        PIL.Image in mode RGB, fully loaded.
    Raises:
        ImageError: with a short reason (empty file, not an image, truncated, too large; for a DICOM
            also several frames, no pixel data, a compression no installed plugin decodes).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(path, "empty file (0 bytes)")
        if is_dicom_name(path):
            image = read_dicom(path, MAX_PIXELS)  # 8-bit L or RGB
            return to_rgb(reduce_decoded(image, min_side) if min_side else image)
        with pixel_limit(), Image.open(path) as image:
            frames = full_size_frames(image)
            if frames > 1:
                raise ImageError(path, f"{frames} frames of the same size in one {image.format} file (a stack, "
                                       "a series or an animation): export the frame to classify as its own image")
            if min_side and image.format in JPEG_FORMATS:
                image.draft("RGB", (min_side * 2, min_side * 2))
            image.load()
            return decoded_to_rgb(image, min_side)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except UnidentifiedImageError:
        if has_dicom_magic(path):  # a PACS export without a suffix (IM000001), given by name
            raise ImageError(path, "a DICOM file without a .dcm suffix: rename it to .dcm") from None
        raise ImageError(path, "not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(path, f"larger than {MAX_PIXELS // 1_000_000} megapixels; downscale it first") from None
    except OSError as error:
        reason = "truncated or corrupt file" if "truncat" in str(error).lower() else f"unreadable ({error})"
        raise ImageError(path, reason) from None
    except (ValueError, SyntaxError, MemoryError) as error:
        raise ImageError(path, f"unreadable ({type(error).__name__}: {error})") from None


def decoded_to_rgb(image, min_side: int | None = None):
    """A decoded PIL image as vip reads every image: its value range mapped to 8 bits (16-bit and float
    images), reduced to about 2 x `min_side` on its shorter side (if given), RGB, turned upright by
    its EXIF orientation.

    `load_image` applies it to each file after decoding; `vipcli.api` to images given in memory, so
    an image passed as a file and the same image opened in memory get the same pixels (a JPEG file
    is decoded at reduced scale by libjpeg first, so there the last bits may differ).
    """
    orientation = exif_orientation(image)
    scale = value_range(image)  # of the whole image: reducing it would lower its maximum
    return upright(to_rgb(reduce_decoded(image, min_side) if min_side else image, scale), orientation)


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image suffix vip reads, or a link named so whose target is gone
    (it is then reported as unreadable, not silently left out)."""
    named = not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    return named and (path.is_file() or (path.is_symlink() and not path.exists()))


def image_files_under(folder: Path, left_out: list[Path] | None = None,
                      on_link: Callable[[Path], None] | None = None) -> list[Path]:
    """The image files in `folder` and its sub-folders, sorted (see `is_image_file`); the other
    visible files, bar those a file manager leaves (`FILE_MANAGER_FILES`), are added to `left_out`.

    Sub-folders that are symbolic links are followed (a class folder assembled from linked batches
    keeps its images), except a link back to a folder on the way down (a loop, e.g. `link -> ..`,
    which would also bring in the images of other classes) and a folder already searched. Each
    linked sub-folder is first passed to `on_link`, which may refuse it by raising (`vipcli.data`
    refuses one that leads into another class folder).
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
                if entry.is_symlink() and on_link is not None:
                    on_link(path)
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


def left_out_warning(files: list[Path], shown=str, folder=None) -> str | None:
    """The warning for files in image folders that vip does not read (a GIF, a text file, a DICOM
    without a DICOM suffix): how many, the first few by `shown(path)` (relative to `folder`, which the
    warning names once, when given), and what to do; those holding the DICOM marker (`has_dicom_magic`,
    132 bytes read each) are named apart, to be renamed to .dcm. None when there are none."""
    from vipcli.console import first_few, plural

    if not files:
        return None
    where = "" if folder is None else f" in {folder}"
    return (f"left out {len(files)} {plural(len(files), 'file')}{where} not named as an image vip reads "
            f"({READ_SUFFIXES}): {first_few(map(shown, files), LEFT_OUT_SHOWN)}; " + left_out_fixes(files, shown))


def nothing_read_error(message: str, files: list[Path], folder: Path):
    """The VipError for `folder`, which holds no image vip reads, only `files` (GIFs, a PACS's DICOM exports without
    a suffix): `message`, then the first few of them (relative to `folder`), with what to do (`left_out_fixes`)."""
    from vipcli.console import first_few
    from vipcli.errors import VipError

    def shown(path: Path) -> str:
        return str(path.relative_to(folder))

    return VipError(f"{message}: {first_few(map(shown, files), LEFT_OUT_SHOWN)}", left_out_fixes(files, shown))


def left_out_fixes(files: list[Path], shown=str) -> str:
    """What to do with `files`, which vip does not read as images: rename those holding the DICOM marker to
    .dcm (named, by `shown(path)`, when they are not all of them), convert or move the others."""
    from vipcli.console import first_few, plural

    dicoms = [path for path in files if has_dicom_magic(path)]
    fixes = []
    if dicoms:
        n = len(dicoms)
        named = "" if n == len(files) else f" ({first_few(map(shown, dicoms), LEFT_OUT_SHOWN)})"  # all: listed already
        fixes.append(f"{n} {plural(n, 'looks', 'look')} like {plural(n, 'a DICOM file', 'DICOM files')} without a "
                     f".dcm suffix{named}: rename {plural(n, 'it', 'them')} to .dcm")
    if len(dicoms) < len(files):
        fixes.append("convert images of other formats to PNG, and move other files out of the image folders")
    return "; ".join(fixes)
