"""Reading a DICOM file's pixels as a radiology viewer shows them by default, or saying why not.

pydicom is imported only here and only when a DICOM file is decoded, so vip runs where it is missing
and no DICOM is read. Nothing from a file's header (patient name, IDs) is ever printed or stored:
errors name the file path and the pixel format only, and pydicom's own warnings are silenced.
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

from vipcli.digests import text_digest
from vipcli.errors import ImageError

DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MAGIC, MAGIC_OFFSET = b"DICM", 128  # a DICOM file's 128-byte preamble is followed by these 4 bytes
PYDICOM_MINIMUM = (3, 0)
# part of the feature-cache keys of DICOM images only (features.py): a change of the rule re-encodes them alone
DICOM_POLICY = ("one frame; grayscale: modality LUT, then the VOI LUT or first window (else own min..max) "
                "to 0..255, inverted once when MONOCHROME1 or Presentation LUT Shape INVERSE; colour (RGB, YBR, "
                "palette) to 8-bit RGB")
# the pixel-data plugins pydicom may decode compressed syntaxes with: their versions key DICOM features too
PLUGIN_PACKAGES = ("pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
                   "python-gdcm", "pyjpegls")
GRAY = ("MONOCHROME1", "MONOCHROME2")
INVERSE = "INVERSE"  # a Presentation LUT Shape (2050,0020) displayed inverted after the VOI step
INSTALL_PYDICOM = "pip install 'pydicom>=3'"
PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")  # the elements an image's pixels are in


def is_dicom_name(path: Path) -> bool:
    """True for a file named as a DICOM (`.dcm`, `.dicom`, any case)."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def has_dicom_magic(path: Path) -> bool:
    """True for a file holding b"DICM" at byte 128 (a DICOM file, whatever its name); False when unreadable."""
    try:
        with open(path, "rb") as handle:
            handle.seek(MAGIC_OFFSET)
            return handle.read(len(DICOM_MAGIC)) == DICOM_MAGIC
    except OSError:
        return False


@functools.cache
def decoder_identity() -> str:
    """A short digest of how this installation turns a DICOM file into pixels: `DICOM_POLICY` and the
    versions of pydicom and of its pixel-data plugins (which one decodes a compressed file can change
    its pixels). Read from the installed packages' metadata: pydicom is not imported."""
    from importlib import metadata

    versions = {}
    for package in PLUGIN_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    text = repr((DICOM_POLICY, sorted(versions.items())))
    return "dicom-" + text_digest(text)


def read_dicom(path: Path, max_pixels: int):
    """Decode the one frame of DICOM file `path` into an 8-bit PIL image (mode L or RGB).

    Grayscale (MONOCHROME1/2): the Modality LUT (RescaleSlope/Intercept) is applied, then the file's
    VOI LUT or its first window (WindowCenter/Width) if it has one, else the values' own min..max is
    stretched; the result maps to 0..255, then is inverted when the file is MONOCHROME1 or its
    Presentation LUT Shape is INVERSE (once when both: the DICOM standard has MONOCHROME1 X-rays carry
    INVERSE to state that same inversion), so that the image looks as a viewer shows it.
    Colour (RGB, YBR_*, PALETTE COLOR) becomes RGB. pydicom does the DICOM arithmetic throughout.
    A file without the 128-byte preamble and 'DICM' marker is read as a bare dataset when it holds an
    image (`path` is named as a DICOM: callers send only such files here).

    Args:
        path: the file.
        max_pixels: a frame of more pixels is refused before its pixel data is decoded.
    Raises:
        ImageError: no pydicom, not a DICOM file, no pixel data, several frames, a compression no
            installed plugin decodes (with the plugin to install), or an unsupported colour format.
    """
    pydicom = _pydicom(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings may quote header values (PHI): never shown
        dataset = _read(pydicom, path)
        _check_readable(dataset, path, max_pixels)
        pixels = _decode(dataset, path)
        photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        if photometric in GRAY:
            return _gray_image(pixels, dataset, inverted=_shown_inverted(dataset, photometric))
        return _colour_image(pixels, dataset, photometric, path)


def _shown_inverted(dataset, photometric: str) -> bool:
    """True when a grayscale image is displayed inverted after its VOI step: MONOCHROME1 (its least value
    is white) or a Presentation LUT Shape (2050,0020) of INVERSE. Both together are one inversion, not
    two: the DICOM standard has MONOCHROME1 images (DX, CR, mammography) carry INVERSE to state it, and
    a viewer that applied both showed such X-rays as negatives. IDENTITY (or none) adds nothing."""
    shape = str(dataset.get("PresentationLUTShape", "") or "").strip().upper()
    return photometric == "MONOCHROME1" or shape == INVERSE


def _pydicom(path: Path):
    """The pydicom module (3.0 or later), or an ImageError naming the fix."""
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401 - absent before pydicom 3
    except ImportError:
        raise ImageError(path, f"reading DICOM files needs pydicom 3 or later: {INSTALL_PYDICOM}") from None
    version = tuple(int(part) for part in re.findall(r"\d+", pydicom.__version__)[:2])
    if version < PYDICOM_MINIMUM:
        raise ImageError(path, f"reading DICOM files needs pydicom 3 or later, not {pydicom.__version__}: "
                               f"{INSTALL_PYDICOM}")
    return pydicom


def _read(pydicom, path: Path):
    """The dataset of `path` (its pixel data not yet decoded); a file without the 128-byte preamble and
    'DICM' marker (ACR-NEMA style, some PACS exports) is read as a bare dataset when it holds an image."""
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        return _read_without_preamble(pydicom, path)
    except OSError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged header; its values are never quoted (PHI)
        raise ImageError(path, f"damaged DICOM header ({type(error).__name__})") from None


def _read_without_preamble(pydicom, path: Path):
    """The dataset of DICOM-named `path`, which has no 'DICM' marker, read as a bare dataset (pydicom's
    `force=True`); accepted only when it holds an image (pixel data, Rows and Columns), its transfer
    syntax set from the encoding pydicom found when the file carries none, so that its pixels decode.
    Only files named as DICOM come here (`is_dicom_name`): no other file is ever read this way."""
    refused = ImageError(path, "not a DICOM file (no 'DICM' marker at byte 128, and not readable as a DICOM "
                               "image without one)")
    try:
        dataset = pydicom.dcmread(path, force=True)
        image = (any(name in dataset for name in PIXEL_DATA) and _int(dataset.get("Rows"), 0) > 0
                 and _int(dataset.get("Columns"), 0) > 0)
    except OSError:
        raise
    except Exception:  # noqa: BLE001 - bytes that are no DICOM dataset; nothing of them is quoted
        raise refused from None
    if not image:
        raise refused
    if dataset.file_meta.get("TransferSyntaxUID") is None:
        dataset.file_meta.TransferSyntaxUID = _syntax_of(dataset.original_encoding)
    return dataset


def _syntax_of(encoding: tuple[bool, bool]):
    """The uncompressed transfer syntax of a dataset read as (implicit VR, little endian)."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    implicit, little = encoding
    if implicit:
        return ImplicitVRLittleEndian  # the only implicit syntax (and what ACR-NEMA files mostly are)
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_readable(dataset, path: Path, max_pixels: int) -> None:
    """Refuse, before decoding, a dataset without pixel data, of several frames or too many pixels,
    or compressed in a syntax no installed plugin decodes."""
    if not any(name in dataset for name in PIXEL_DATA):
        if "Rows" in dataset:  # its header describes an image: the file stops before the pixels
            raise ImageError(path, "truncated DICOM file: its header describes an image, but the file ends "
                                   "before the pixel data")
        raise ImageError(path, "a DICOM file without pixel data (a report, a structured document or a "
                               "DICOMDIR, not an image)")
    frames = _int(dataset.get("NumberOfFrames", 1), 1)
    if frames > 1:
        raise _multi_frame(path, frames)
    if _int(dataset.get("Rows", 0), 0) * _int(dataset.get("Columns", 0), 0) > max_pixels:
        raise ImageError(path, f"larger than {max_pixels // 1_000_000} megapixels; downscale it first")
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and syntax.is_compressed:
        _check_decoder(syntax, path)


def _multi_frame(path: Path, frames: int) -> ImageError:
    """The refusal of a DICOM file holding `frames` frames."""
    return ImageError(path, f"a multi-frame DICOM ({frames} frames): export the frame to classify")


def _int(value, default: int) -> int:
    """A header number as an int (`default` when empty or not a number)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _check_decoder(syntax, path: Path) -> None:
    """An ImageError naming transfer syntax `syntax` and the plugin to install when pydicom cannot
    decode it here."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageError(path, f"pixel data compressed as {syntax.name}, which pydicom cannot decode: "
                               "export the image uncompressed or as PNG") from None
    if not decoder.is_available:
        raise ImageError(path, f"pixel data compressed as {syntax.name}, which no installed pydicom plugin "
                               f"decodes: {plugin_install(decoder.missing_dependencies)}")


def plugin_install(missing: list[str]) -> str:
    """The command installing the pylibjpeg plugin among pydicom's `missing_dependencies` lines
    ("pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"), else the first plugin listed."""
    lines = sorted(missing, key=lambda line: not line.startswith("pylibjpeg"))
    for line in lines:
        packages = re.findall(r"([A-Za-z][\w.-]*)\s*[<>=]=", line.partition(" - ")[2])
        if packages:
            return f"pip install {' '.join(packages)}"
    return "install a pydicom pixel-data plugin for it (pylibjpeg or gdcm)"


def _decode(dataset, path: Path):
    """The decoded pixels of the single frame: [H, W] grayscale or [H, W, 3] colour (YBR turned RGB).

    A file whose pixel data holds several frames though its header names none (no NumberOfFrames:
    pydicom then returns every frame the data holds) is refused as multi-frame, as one that names them is.
    """
    try:
        pixels = dataset.pixel_array  # pydicom 3 converts YBR_* to RGB and reads either planar configuration
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - a decoder's failure on this file (about pixels, not the header)
        text = re.sub(r" at 0x[0-9a-fA-F]+", "", " ".join(str(error).split())) or type(error).__name__
        meta = getattr(dataset, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        named = f" ({syntax.name})" if syntax is not None else ""
        raise ImageError(path, f"DICOM pixel data{named} could not be decoded: {text[:240]}") from None
    one_frame = 3 if _int(dataset.get("SamplesPerPixel", 1), 1) > 1 else 2  # [H, W, 3] or [H, W]
    if pixels.ndim > one_frame:
        raise _multi_frame(path, pixels.shape[0])
    return pixels


def _gray_image(pixels, dataset, inverted: bool):
    """An 8-bit L image of grayscale `pixels` [H, W]: modality LUT, then VOI LUT or window, else own range."""
    import numpy as np
    from PIL import Image
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(pixels, dataset)  # [H, W], in the modality's units (e.g. Hounsfield)
    shown, low, high = _voi(values, dataset)
    scaled = (np.asarray(shown, dtype=np.float64) - low) / max(high - low, 1e-12) * 255.0  # [H, W]
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(255 - gray if inverted else gray, mode="L")


def _voi(values, dataset):
    """(pixels after the file's VOI LUT or first window, the output values that become 0 and 255);
    without one (or with an unusable window, e.g. a width under 1) the values and their own min..max."""
    import numpy as np
    from pydicom.pixels import apply_voi_lut

    try:
        if _has_voi(dataset):
            shown = apply_voi_lut(values, dataset, index=0)  # [H, W]
            low, high = _voi_output_range(values, dataset)
            return shown, low, high
    except (ValueError, IndexError, TypeError, AttributeError, NotImplementedError):
        pass  # a damaged window or LUT: shown by the values' own range, as viewers do
    return values, float(np.min(values)), float(np.max(values))


def _has_voi(dataset) -> bool:
    """True when the file carries a VOI LUT or a window (pydicom's `apply_voi_lut` then applies it)."""
    return bool(dataset.get("VOILUTSequence")) or (dataset.get("WindowCenter") is not None
                                                   and dataset.get("WindowWidth") is not None)


def _voi_output_range(values, dataset) -> tuple[float, float]:
    """The least and greatest value pydicom's VOI step can give for this file: the window's output
    bounds (what it maps the lowest and highest input to), or a VOI LUT's smallest and largest entry."""
    import numpy as np
    from pydicom.pixels import apply_voi_lut

    lut = dataset.get("VOILUTSequence")
    if lut:
        entries, first = _int(lut[0].LUTDescriptor[0], 0) or 2 ** 16, _int(lut[0].LUTDescriptor[1], 0)
        inputs = np.arange(first, first + entries, dtype=values.dtype if values.dtype.kind in "iu" else np.int64)
    else:
        inputs = np.array([-np.inf, np.inf])  # a window maps everything below it to its least output, above to its top
    table = np.asarray(apply_voi_lut(inputs, dataset, index=0), dtype=np.float64)  # [n]
    return float(table.min()), float(table.max())


def _colour_image(pixels, dataset, photometric: str, path: Path):
    """An 8-bit RGB image of colour `pixels` [H, W, 3] (RGB or YBR, which pydicom turned RGB) or of
    palette indices [H, W] (PALETTE COLOR, looked up by pydicom)."""
    import numpy as np
    from PIL import Image
    from pydicom.pixels import apply_color_lut

    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)  # [H, W, 3], uint8 or uint16 by the palette's entries
        top = float(np.iinfo(pixels.dtype).max)
    elif photometric == "RGB" or photometric.startswith("YBR"):
        top = float(2 ** _int(dataset.get("BitsStored", 8), 8) - 1)
    else:
        raise ImageError(path, f"a DICOM of photometric interpretation {photometric[:40]!r}, which vip does "
                               "not read: export it as PNG")
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageError(path, f"a colour DICOM of unexpected shape {list(pixels.shape)}: export it as PNG")
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels.astype(np.float64) / max(top, 1.0) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
