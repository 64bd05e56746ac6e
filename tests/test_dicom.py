"""DICOM files are read directly, the way a radiology viewer shows them by default (vipcli/dicom.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom", minversion="3.0")

from dicom_files import ramp, without_preamble, write_dicom  # noqa: E402

from vipcli.errors import ImageError  # noqa: E402
from vipcli.images import load_image  # noqa: E402

PHI = ("Doe", "Jane", "PID-0042")


def _gray(path, **kwargs) -> np.ndarray:
    image = load_image(path, **kwargs)
    assert image.mode == "RGB"
    pixels = np.asarray(image)  # [H, W, 3]
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    return pixels[..., 0]  # [H, W]


def _reason(path) -> str:
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert not any(secret in str(caught.value) for secret in PHI)  # the header is never quoted
    return caught.value.reason


def _linear_window(values, center, width) -> np.ndarray:
    """DICOM's LINEAR window (PS3.3 C.11.2.1.2.1) to 0..255, as the test expects it."""
    return np.clip(np.rint(((values - (center - 0.5)) / (width - 1) + 0.5) * 255), 0, 255)


def test_a_grayscale_dicom_without_a_window_is_stretched_over_its_own_values(tmp_path):
    pixels = ramp(top=3000) + 500  # 12-bit data using 500..3500
    gray = _gray(write_dicom(tmp_path / "x.dcm", pixels))
    assert gray[0, 0] == 0 and gray[0, -1] == 255
    expected = np.rint((pixels[0].astype(float) - 500) / 3000 * 255)
    assert np.abs(gray[0].astype(float) - expected).max() <= 0


def test_the_first_window_of_the_file_is_applied(tmp_path):
    pixels = ramp()
    path = write_dicom(tmp_path / "x.dcm", pixels, WindowCenter=[1024, 3000], WindowWidth=[1024, 500])
    assert (_gray(path)[0] == _linear_window(pixels[0].astype(float), 1024, 1024)).all()


def test_a_voi_lut_is_applied_before_a_window_and_mapped_by_its_own_range(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    table = Dataset()
    table.LUTDescriptor = [4096, 0, 16]  # 16 bits declared, 12 used: the LUT's own range is shown in full
    table.LUTData = np.arange(4095, -1, -1, dtype=np.uint16).tobytes()
    path = write_dicom(tmp_path / "x.dcm", ramp(), VOILUTSequence=Sequence([table]), WindowCenter=100, WindowWidth=10)
    gray = _gray(path)
    assert gray[0, 0] == 255 and gray[0, -1] == 0 and 100 < gray[0, 32] < 155


def test_monochrome1_is_inverted_so_that_bright_means_dense(tmp_path):
    plain = _gray(write_dicom(tmp_path / "m2.dcm", ramp()))
    inverted = _gray(write_dicom(tmp_path / "m1.dcm", ramp(), photometric="MONOCHROME1"))
    assert (inverted == 255 - plain).all() and inverted[0, 0] == 255


@pytest.mark.parametrize("photometric, shape, inverted", [
    ("MONOCHROME2", "INVERSE", True), ("MONOCHROME2", "IDENTITY", False),
    ("MONOCHROME1", "INVERSE", True),  # the standard's own pairing for an X-ray: one inversion, not two
    ("MONOCHROME1", "IDENTITY", True)])
def test_a_presentation_lut_shape_of_inverse_inverts_after_the_window(tmp_path, photometric, shape, inverted):
    pixels = ramp()
    window = {"WindowCenter": 1024, "WindowWidth": 1024}
    plain = _gray(write_dicom(tmp_path / "plain.dcm", pixels, **window))
    gray = _gray(write_dicom(tmp_path / "x.dcm", pixels, photometric=photometric, PresentationLUTShape=shape,
                             **window))
    assert (gray == (255 - plain if inverted else plain)).all()
    assert gray[0, 0] == (255 if inverted else 0)


def test_the_presentation_lut_shape_is_part_of_the_dicom_rule_that_keys_dicom_features():
    from vipcli.dicom import DICOM_POLICY

    assert "Presentation LUT Shape INVERSE" in DICOM_POLICY


def test_a_signed_ct_slice_is_rescaled_to_hounsfield_units_before_its_window(tmp_path):
    stored = ramp(top=2000).astype(np.int16) - 24  # stored -24..1976 -> -1048..952 HU with intercept -1024
    path = write_dicom(tmp_path / "ct.dcm", stored, bits_stored=16, RescaleIntercept=-1024, RescaleSlope=1,
                       WindowCenter=40, WindowWidth=400)
    hounsfield = stored[0].astype(float) - 1024
    assert (_gray(path)[0] == _linear_window(hounsfield, 40, 400)).all()
    unwindowed = _gray(write_dicom(tmp_path / "raw.dcm", stored, bits_stored=16, RescaleIntercept=-1024,
                                   RescaleSlope=1))
    assert unwindowed[0, 0] == 0 and unwindowed[0, -1] == 255  # no window: its own range


@pytest.mark.parametrize("planar", [0, 1])
def test_an_rgb_dicom_is_read_in_either_planar_configuration(tmp_path, planar):
    colour = np.zeros((32, 48, 3), np.uint8)
    colour[..., 0], colour[..., 1], colour[:16, :, 2] = 200, 90, 30
    image = load_image(write_dicom(tmp_path / "x.dcm", colour, photometric="RGB", planar=planar))
    assert image.size == (48, 32) and (np.asarray(image) == colour).all()


def test_a_ybr_dicom_becomes_rgb(tmp_path):
    from pydicom.pixels import convert_color_space

    colour = np.zeros((8, 8, 3), np.uint8)
    colour[...] = (200, 100, 50)
    ybr = convert_color_space(colour, "RGB", "YBR_FULL")  # [8, 8, 3]
    assert (ybr != colour).any()
    read = np.asarray(load_image(write_dicom(tmp_path / "x.dcm", ybr, photometric="YBR_FULL"))).astype(int)
    assert np.abs(read - colour).max() <= 1


def test_a_multi_frame_dicom_is_unreadable_with_the_reason(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", np.stack([ramp(), ramp()]), frames=2)
    assert _reason(path) == "a multi-frame DICOM (2 frames): export the frame to classify"


@pytest.mark.parametrize("frame, photometric", [(ramp(), "MONOCHROME2"),
                                                (np.zeros((8, 8, 3), np.uint8), "RGB")])
def test_a_dicom_whose_pixel_data_holds_frames_its_header_does_not_name_is_multi_frame(tmp_path, frame, photometric):
    # no NumberOfFrames, but three frames' worth of pixel data: pydicom returns all three
    path = write_dicom(tmp_path / "x.dcm", np.stack([frame] * 3), photometric=photometric)
    assert _reason(path) == "a multi-frame DICOM (3 frames): export the frame to classify"


def test_a_dicom_without_pixel_data_is_unreadable_with_the_reason(tmp_path):
    assert _reason(write_dicom(tmp_path / "x.dcm", None)).startswith("a DICOM file without pixel data")


def test_a_dicom_cut_off_before_its_pixels_is_called_truncated(tmp_path):
    """A download that stopped inside the header was called a DICOM without pixel data (a report)."""
    path = write_dicom(tmp_path / "x.dcm", ramp())
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xe0\x7f\x10\x00")])  # up to the PixelData tag (7FE0,0010)
    assert _reason(path) == "truncated DICOM file: its header describes an image, but the file ends before the " \
                            "pixel data"


NOT_DICOM = "not a DICOM file (no 'DICM' marker at byte 128, and not readable as a DICOM image without one)"


def test_a_file_named_dcm_that_is_not_dicom_is_unreadable(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"not a dicom file" * 20)
    assert _reason(tmp_path / "x.dcm") == NOT_DICOM
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "photo.dcm", format="JPEG")
    assert _reason(tmp_path / "photo.dcm") == NOT_DICOM  # a JPEG named .dcm is never read as a bare dataset


# --- DICOM files without the 128-byte preamble and 'DICM' marker (ACR-NEMA style, some PACS exports) --------


@pytest.mark.parametrize("style", [dict(), dict(implicit=False), dict(implicit=False, little=False),
                                   dict(implicit=False, meta=True)],
                         ids=["implicit-little", "explicit-little", "explicit-big", "file-meta-no-preamble"])
def test_a_dicom_without_its_preamble_reads_as_the_same_pixels(tmp_path, style):
    """Such files were refused as "not a DICOM file": pydicom reads them with force=True, without a transfer
    syntax, which vip then sets from the encoding pydicom found, so that the pixels decode."""
    pixels = np.random.default_rng(0).integers(0, 65536, size=(24, 20), dtype=np.uint16)  # 16-bit MONOCHROME2
    full = write_dicom(tmp_path / "full.dcm", pixels, bits_stored=16, WindowCenter=30000, WindowWidth=40000)
    raw = without_preamble(full, tmp_path / "raw.dcm", **style)
    assert raw.read_bytes()[128:132] != b"DICM"
    assert np.array_equal(np.asarray(load_image(raw)), np.asarray(load_image(full)))
    assert np.array_equal(np.asarray(load_image(raw, min_side=8)), np.asarray(load_image(full, min_side=8)))


def test_a_dicom_without_its_preamble_is_refused_with_the_usual_reasons(tmp_path):
    report = without_preamble(write_dicom(tmp_path / "report.dcm", None), tmp_path / "raw-report.dcm")
    assert _reason(report) == NOT_DICOM  # read without a marker only when it holds an image
    frames = write_dicom(tmp_path / "cine.dcm", np.stack([ramp(), ramp()]), frames=2)
    assert _reason(without_preamble(frames, tmp_path / "raw-cine.dcm")) == \
        "a multi-frame DICOM (2 frames): export the frame to classify"


def test_only_files_named_as_dicom_are_read_without_a_preamble(tmp_path):
    """A file of any other name is never read with force=True: one without a suffix stays unread (and, having
    no marker, is not named as a DICOM to rename)."""
    full = write_dicom(tmp_path / "full.dcm", ramp(8, 8))
    for name in ("IM000001", "scan.png"):
        assert _reason(without_preamble(full, tmp_path / name)) == "not an image Pillow can read"


def test_a_dicom_without_its_preamble_is_found_by_a_folder_scan_and_keyed_as_a_dicom(tmp_path):
    from vipcli.features import entry_content
    from vipcli.images import image_files_under

    raw = without_preamble(write_dicom(tmp_path / "full.dcm", ramp(8, 8)), tmp_path / "RAW.DCM")
    (tmp_path / "full.dcm").unlink()
    left_out: list[Path] = []
    assert image_files_under(tmp_path, left_out) == [raw] and left_out == []
    assert entry_content(raw, "abc") == entry_content(tmp_path / "x.dcm", "abc")  # the DICOM rule keys it


def test_a_dicom_without_a_suffix_given_by_name_says_to_rename_it(tmp_path):
    """`vip predict IM000001` said "not an image Pillow can read"; a folder scan already said to rename it."""
    assert _reason(write_dicom(tmp_path / "IM000001", ramp(8, 8))) == \
        "a DICOM file without a .dcm suffix: rename it to .dcm"


def _recompressed(path: Path, syntax) -> Path:
    from pydicom import dcmread
    from pydicom.encaps import encapsulate

    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\xd8 not really compressed"])
    ds.save_as(path)
    return path


def test_a_compression_no_installed_plugin_decodes_names_the_syntax_and_the_plugin(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS plugin is installed here")
    path = _recompressed(write_dicom(tmp_path / "x.dcm", ramp()), JPEGLSLossless)
    assert _reason(path) == ("pixel data compressed as JPEG-LS Lossless Image Compression, which no installed "
                             "pydicom plugin decodes: pip install pylibjpeg pylibjpeg-libjpeg")


def test_a_syntax_pydicom_has_no_decoder_for_and_damaged_pixel_data_are_one_line_reasons(tmp_path):
    from pydicom.uid import JPEGBaseline8Bit, MPEG2MPML

    path = _recompressed(write_dicom(tmp_path / "video.dcm", ramp()), MPEG2MPML)
    assert _reason(path) == ("pixel data compressed as MPEG2 Main Profile / Main Level, which pydicom cannot "
                             "decode: export the image uncompressed or as PNG")
    broken = _recompressed(write_dicom(tmp_path / "broken.dcm", ramp(8, 8, 255, np.uint8), bits_stored=8),
                           JPEGBaseline8Bit)
    reason = _reason(broken)
    assert reason.startswith("DICOM pixel data (JPEG Baseline (Process 1)) could not be decoded: ")
    assert "\n" not in reason and " at 0x" not in reason


def test_plugin_install_reads_pydicoms_missing_dependencies():
    from vipcli.dicom import plugin_install

    missing = ["gdcm - requires gdcm>=3.0.10", "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]
    assert plugin_install(missing) == "pip install pylibjpeg pylibjpeg-openjpeg"
    assert plugin_install([]).startswith("install a pydicom pixel-data plugin")


def test_a_large_dicom_is_reduced_like_other_images(tmp_path):
    image = load_image(write_dicom(tmp_path / "x.dcm", ramp(1200, 1100)), min_side=224)
    assert image.mode == "RGB" and image.size == (550, 600)  # 1100x1200 halved: the shorter side stays >= 448


def test_suffixes_are_read_in_any_case(tmp_path):
    from vipcli.images import is_image_file

    for name in ("a.dcm", "b.DCM", "c.dicom"):
        assert is_image_file(write_dicom(tmp_path / name, ramp(8, 8)))
    assert not is_image_file(write_dicom(tmp_path / "IM000001", ramp(8, 8)))


def test_a_damaged_window_falls_back_to_the_own_range_without_a_warning(tmp_path):
    import warnings

    path = write_dicom(tmp_path / "x.dcm", ramp(), WindowCenter=777.25, WindowWidth=400)
    path.write_bytes(path.read_bytes().replace(b"777.25", b"77x.25"))  # WindowCenter "77x.25": not a number
    with warnings.catch_warnings(record=True) as caught:  # pydicom's warnings may quote header values (PHI)
        warnings.simplefilter("always")
        gray = _gray(path)
    assert not caught and gray[0, 0] == 0 and gray[0, -1] == 255


def test_without_pydicom_a_dicom_is_unreadable_with_the_fix_and_other_images_still_load(tmp_path, monkeypatch):
    from PIL import Image

    dicom = write_dicom(tmp_path / "x.dcm", ramp())
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    for name in [module for module in sys.modules if module == "pydicom" or module.startswith("pydicom.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` raises ImportError
    assert _reason(dicom) == "reading DICOM files needs pydicom 3 or later: pip install 'pydicom>=3'"
    assert load_image(tmp_path / "x.png").size == (8, 8)


def test_vip_imports_pydicom_only_when_a_dicom_is_decoded():
    code = ("import sys, vipcli.images, vipcli.features, vipcli.data, vipcli.predict; "
            "from vipcli.features import entry_content; entry_content('x.dcm', 'abc'); "
            "print('pydicom' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- folders: .dcm files are images; DICOM files without the suffix are named in the warning ------------


def test_dicom_files_without_a_suffix_are_named_apart_in_the_left_out_warning(tmp_path):
    from vipcli.images import image_files_under, left_out_warning

    write_dicom(tmp_path / "scan.dcm", ramp(8, 8))
    for name in ("IM000001", "IM000002"):
        write_dicom(tmp_path / name, ramp(8, 8))
    (tmp_path / "notes.txt").write_text("hello")
    left_out: list[Path] = []
    assert image_files_under(tmp_path, left_out) == [tmp_path / "scan.dcm"]
    assert left_out_warning(sorted(left_out), lambda p: p.name) == (
        "left out 3 files not named as an image vip reads (jpg, jpeg, png, bmp, tif, tiff, webp, dcm, dicom): "
        "IM000001, IM000002, notes.txt; 2 look like DICOM files without a .dcm suffix (IM000001, IM000002): "
        "rename them to .dcm; convert images of other formats to PNG, and move other files out of the image folders")
    only = left_out_warning([tmp_path / "IM000001"], lambda p: p.name)
    assert only.endswith(": IM000001; 1 looks like a DICOM file without a .dcm suffix: rename it to .dcm")


# --- the feature cache: DICOM entries are keyed by the DICOM rule, other images' are not ----------------


def test_a_change_of_the_dicom_rule_re_encodes_dicom_images_alone_with_the_same_views(tmp_path, monkeypatch):
    import torch
    from PIL import Image

    from vipcli import features
    from vipcli.features import FeatureCache, encode_images, entry_content
    from vipcli.registry import load_backbone

    backbone = load_backbone("toy")
    dicom = write_dicom(tmp_path / "x.dcm", ramp())
    photo = tmp_path / "x.png"
    Image.new("RGB", (64, 64), (90, 30, 10)).save(photo)
    assert entry_content(photo, "abc") == "abc" and entry_content(dicom, "abc").startswith("abc dicom-")
    cache = FeatureCache(tmp_path / "cache", backbone)
    first = encode_images(backbone, [photo, dicom], views=2, cache=cache, workers=0)
    assert first.encoded == 6 and encode_images(backbone, [photo, dicom], views=2, cache=cache, workers=0).encoded == 0
    monkeypatch.setattr(features, "decoder_identity", lambda: "dicom-another-rule")
    again = encode_images(backbone, [photo, dicom], views=2, cache=cache, workers=0)
    assert again.encoded == 3  # the DICOM's center view and its two augmented views; the PNG's came from the cache
    for index in (0, 1):  # and the same views were drawn: a view's seed depends on the file's bytes alone
        torch.testing.assert_close(again.eval[index], first.eval[index], rtol=0, atol=1e-5)  # batched apart:
        torch.testing.assert_close(again.train[index], first.train[index], rtol=0, atol=1e-5)  # last digits


# --- end to end --------------------------------------------------------------------------------------------


def _dicom_data(root: Path) -> Path:
    """A tiny chest-X-ray-like data set of DICOMs: bright discs (NORMAL, MONOCHROME2), dark ones (PNEUMONIA,
    MONOCHROME1)."""
    grid = np.hypot(*np.mgrid[-32:32, -32:32])  # [64, 64]
    for c, (name, photometric) in enumerate((("NORMAL", "MONOCHROME2"), ("PNEUMONIA", "MONOCHROME1"))):
        for i in range(5):
            disc = np.where(grid < 10 + 3 * i, 3000 - 2000 * c, 200).astype(np.uint16)  # [64, 64]
            write_dicom(root / name / f"{i}.dcm", disc, photometric=photometric)
    return root


def test_vip_trains_on_dicom_files_and_predicts_one(cli, tmp_path):
    data = _dicom_data(tmp_path / "data")
    for path in (data / "NORMAL" / "4.dcm", data / "PNEUMONIA" / "4.dcm"):  # two exported without a preamble
        without_preamble(path, path.with_suffix(".DCM"))
        path.unlink()
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--shots", "2", "--epochs", "2", "--views", "2",
                       "--out", tmp_path / "run", "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert "left out" not in err and "unreadable" not in err and "Traceback" not in err, err
    code, out, err = cli("predict", data / "NORMAL" / "0.dcm", "--model", tmp_path / "run")
    assert code == 0, err
    assert out.startswith(f"{data / 'NORMAL' / '0.dcm'}  ") and "Doe" not in out + err, out
    code, out, err = cli("predict", data / "PNEUMONIA" / "4.DCM", "--model", tmp_path / "run")
    assert code == 0, err
    assert out.startswith(f"{data / 'PNEUMONIA' / '4.DCM'}  ") and "Doe" not in out + err, out
