"""Data folders, splits, few-shot sampling and every kind of bad image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_train_args, error_lines
from vipcli.data import few_shot_order, load_dataset
from vipcli.errors import ImageError, VipError
from vipcli.images import load_image


def _png(path, size=(40, 40), color=(120, 60, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 0).save(path)
    return path


def _flat_dataset(root, per_class=10, classes=("alpha", "beta")):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", color=(40 + 150 * c, 80, 200 - 150 * c))
    return root


def test_flat_folder_gets_a_seeded_stratified_split(tmp_path):
    root = _flat_dataset(tmp_path / "d")
    first, again = load_dataset(root, seed=3), load_dataset(root, seed=3)
    assert first.class_names == ["alpha", "beta"]
    assert first.counts("test") == [2, 2] and first.counts("val") == [1, 1] and first.counts("train") == [7, 7]
    assert [s.path for s in first.splits["test"]] == [s.path for s in again.splits["test"]]
    assert "seeded split" in first.origin["test"]
    other = load_dataset(root, seed=4)
    assert [s.path for s in other.splits["test"]] != [s.path for s in first.splits["test"]]


def test_train_test_folders_get_val_from_train(tmp_path):
    _flat_dataset(tmp_path / "d" / "train")
    _flat_dataset(tmp_path / "d" / "test", per_class=3)
    data = load_dataset(tmp_path / "d")
    assert data.origin["test"] == "folder" and data.counts("test") == [3, 3]
    assert data.counts("val") == [1, 1] and data.counts("train") == [9, 9]


def test_few_shot_subsets_are_seeded_and_nested(tmp_path):
    data = load_dataset(_flat_dataset(tmp_path / "d", per_class=20))
    order = few_shot_order(data.splits["train"], 2, seed=1)
    assert order == few_shot_order(data.splits["train"], 2, seed=1)
    assert order != few_shot_order(data.splits["train"], 2, seed=2)
    assert all(s.label == c for c, members in enumerate(order) for s in members)


@pytest.mark.parametrize("layout, message", [
    ({"only": 3}, "only 'only'"),
    ({}, "no class folders"),
])
def test_fewer_than_two_classes_is_refused(tmp_path, layout, message):
    root = tmp_path / "d"
    root.mkdir()
    for name, n in layout.items():
        for i in range(n):
            _png(root / name / f"{i}.png")
    with pytest.raises(VipError, match=message):
        load_dataset(root)


def test_empty_class_folder_is_named(tmp_path):
    root = _flat_dataset(tmp_path / "d")
    (root / "gamma").mkdir()
    with pytest.raises(VipError, match="gamma has no images"):
        load_dataset(root)


def test_a_file_as_data_is_named_as_such(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(VipError, match="afile is a file, not a folder"):
        load_dataset(tmp_path / "afile")


def test_an_unreadable_class_folder_is_named_as_such(tmp_path):
    import os

    root = _flat_dataset(tmp_path / "d")
    (root / "beta").chmod(0)
    try:
        if os.access(root / "beta", os.R_OK):
            pytest.skip("running as root: permissions do not apply")
        with pytest.raises(VipError, match="beta cannot be read \\(permission denied\\)"):
            load_dataset(root)
    finally:
        (root / "beta").chmod(0o755)


def test_a_broken_link_is_kept_to_be_reported_unreadable_not_dropped(tmp_path):
    root = _flat_dataset(tmp_path / "d")
    (root / "alpha" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    paths = [str(s.path) for split in load_dataset(root).splits.values() for s in split]
    assert str(root / "alpha" / "gone.png") in paths
    with pytest.raises(ImageError, match="file not found"):
        load_image(root / "alpha" / "gone.png")


def test_unknown_class_in_test_split_is_named(tmp_path):
    _flat_dataset(tmp_path / "d" / "train")
    _flat_dataset(tmp_path / "d" / "test", classes=("alpha", "delta"))
    with pytest.raises(VipError, match="'delta' is not in the train split"):
        load_dataset(tmp_path / "d")


def test_odd_image_modes_become_rgb(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 20), (0, 128, 255, 0)).save(cmyk)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(sixteen)
    palette = tmp_path / "palette.png"
    Image.new("P", (20, 20), 3).save(palette)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (20, 20), (10, 20, 30, 255)).save(rgba)
    for path in (cmyk, sixteen, palette, rgba):
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (20, 20)
    assert load_image(sixteen).getpixel((0, 0))[0] == round(40000 / 65535 * 255)


def _ramp(low: int, high: int, dtype, side: int = 64) -> np.ndarray:
    """A [side, side] image whose values run from `low` (top left) to `high` (bottom right)."""
    steps = np.add.outer(np.arange(side), np.arange(side)) / (2 * side - 2)  # [side, side], 0..1
    return np.rint(low + steps * (high - low)).astype(dtype)


@pytest.mark.parametrize("bits", [10, 12, 14, 16])
@pytest.mark.parametrize("min_side", [None, 8])
def test_high_bit_depth_grayscale_is_scaled_by_the_bits_its_values_use(tmp_path, bits, min_side):
    """A 12-bit X-ray in a 16-bit PNG (values 0..4095) was scaled by 65535 and decoded nearly black."""
    path = tmp_path / f"xray{bits}.png"
    Image.fromarray(_ramp(0, 2 ** bits - 1, np.uint16)).save(path)
    pixels = np.asarray(load_image(path, min_side=min_side))[..., 0]  # [H, W]
    if min_side is None:
        assert pixels.min() == 0 and pixels[-1, -1] == 255 and abs(int(pixels[32, 31]) - 128) <= 1
    else:  # reduced 4x: each pixel a 4x4 block's average, scaled by the whole image's bit depth
        assert pixels.shape == (16, 16) and pixels.min() <= 8 and pixels.max() >= 247


def test_a_12_bit_image_whose_brightest_pixel_is_below_4095_keeps_the_12_bit_scale(tmp_path):
    path = tmp_path / "xray.tif"
    Image.fromarray(_ramp(0, 3000, np.uint16)).save(path)  # more than 10 bits: 12-bit data
    assert np.asarray(load_image(path))[-1, -1, 0] == round(3000 / 4095 * 255)
    dim = tmp_path / "dim.png"
    Image.fromarray(_ramp(0, 200, np.uint16)).save(dim)  # no more than 8 bits used: 255 as before
    assert np.asarray(load_image(dim))[-1, -1, 0] == 200


@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<i4"])
def test_a_signed_image_with_negative_values_keeps_its_contrast(tmp_path, dtype):
    """A CT slice in Hounsfield units (air -1000, bone +1000) in a signed 16-bit TIFF was clipped."""
    path = tmp_path / "ct.tif"
    Image.fromarray(_ramp(-1000, 1000, np.dtype(dtype))).save(path)
    pixels = np.asarray(load_image(path))[..., 0]  # [64, 64]
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255 and abs(int(pixels[32, 31]) - 128) <= 1
    reduced = np.asarray(load_image(path, min_side=8))[..., 0]  # reduce_decoded keeps the negative values
    assert reduced.min() <= 8 and reduced.max() >= 247


def test_a_signed_tiff_without_a_negative_value_is_read_as_signed(tmp_path):
    """Soft tissue only (0..800 HU) in a signed 16-bit TIFF: Pillow reads it as mode I, like unsigned data,
    so it was scaled as 10-bit (0..1023) instead of stretched like every other signed image."""
    path = tmp_path / "ct.tif"
    Image.fromarray(_ramp(0, 800, np.dtype("<i2"))).save(path)
    with Image.open(path) as image:
        assert image.mode == "I" and image.tag_v2.get(339) in (2, (2,))  # SampleFormat: signed integers
    pixels = np.asarray(load_image(path))[..., 0]
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255
    unsigned = tmp_path / "xray.tif"
    Image.fromarray(_ramp(0, 800, np.uint16)).save(unsigned)
    assert np.asarray(load_image(unsigned))[-1, -1, 0] == round(800 / 1023 * 255)  # unsigned: by bit depth


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B", "I;16N", "I", "F"])
def test_every_high_bit_depth_mode_is_reduced_and_scaled_alike(mode):
    from vipcli.images import reduce_decoded, to_rgb, value_range

    image = Image.new(mode, (64, 48))
    for x in range(64):
        for y in range(48):
            image.putpixel((x, y), (x * 64 + y) if mode != "F" else (x * 64 + y) / 4095)
    scale = value_range(image)
    assert scale == ((0.0, 1.0) if mode == "F" else (0.0, 4095.0))
    whole, reduced = to_rgb(image, scale), to_rgb(reduce_decoded(image, 6), scale)  # 4x smaller
    assert whole.mode == reduced.mode == "RGB" and reduced.size == (16, 12)
    assert np.asarray(whole)[-1, -1, 0] == round((63 * 64 + 47) / 4095 * 255)
    assert abs(int(np.asarray(reduced)[-1, -1, 0]) - np.asarray(whole)[-4:, -4:, 0].mean()) <= 1


def test_an_8_bit_image_decodes_to_its_own_pixels(tmp_path):
    """The bit-depth policy touches no 8-bit image: its pixels, and so its features and views, stay."""
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "rgb.png")), rgb)
    assert np.array_equal(np.asarray(load_image(tmp_path / "gray.png")), np.repeat(rgb[..., :1], 3, axis=2))


@pytest.mark.parametrize("kind, reason", [
    ("empty", "empty file"), ("text", "not an image"), ("truncated", "truncated"),
])
def test_broken_files_give_a_short_reason(tmp_path, kind, reason):
    path = tmp_path / "bad.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, not a picture")
    else:
        Image.effect_noise((200, 200), 50).convert("RGB").save(path, quality=95)
        path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageError, match=reason):
        load_image(path)


def test_huge_image_is_refused_with_a_reason(tmp_path, monkeypatch):
    import vipcli.images

    monkeypatch.setattr(vipcli.images, "MAX_PIXELS", 1000)
    path = _png(tmp_path / "huge.png", size=(100, 100))
    with pytest.raises(ImageError, match="megapixels"):
        load_image(path)


def test_training_skips_and_lists_unreadable_files(cli, isic_small, tiny_clip, tmp_path):
    (isic_small / "train" / "nevus" / "zero.jpg").write_bytes(b"")
    (isic_small / "test" / "melanoma" / "notes.png").write_text("not an image")
    code, out, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--shots", "all"))
    assert code == 0, err
    assert f"warning: skipped train/nevus/zero.jpg in {isic_small}: empty file" in err, err
    assert f"warning: skipped test/melanoma/notes.png in {isic_small}: not an image" in err, err
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert set(split["unreadable"]) == {"train/nevus/zero.jpg", "test/melanoma/notes.png"}  # as its lists name files
    assert len(split["train_subset"]) == 12


def test_too_few_readable_images_stops_clearly(cli, isic_small, tiny_clip, tmp_path):
    for image in (isic_small / "train" / "melanoma").iterdir():
        image.write_bytes(b"")
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 1 and "no readable training images for class 'melanoma'" in err
    assert len(error_lines(err)) == 1 and "Traceback" not in err and not (tmp_path / "run").exists()


def test_class_without_symptoms_says_how_to_get_them(cli, tmp_path, tiny_clip):
    root = _flat_dataset(tmp_path / "d", classes=("melanoma", "mystery"))
    code, _, err = cli(*tiny_train_args(root, tiny_clip, tmp_path / "run"))
    assert code == 1 and "no symptoms for class 'mystery'" in err
    assert f"vip symptoms generate --data {root}" in err.replace("\n", "")  # the folder given, not a placeholder


def _train_with_symptoms_file(cli, tmp_path, tiny_clip, classes, text):
    """`vip train --symptoms FILE` on a flat data set of `classes`, FILE holding `text`: (FILE, stderr, run.yaml)."""
    root = _flat_dataset(tmp_path / "d", classes=classes)
    symptoms = tmp_path / "symptoms.yaml"
    symptoms.write_text(text)
    code, _, err = cli(*tiny_train_args(root, tiny_clip, tmp_path / "run", "--symptoms", symptoms))
    assert code == 0, err
    return symptoms, err, (tmp_path / "run" / "run.yaml").read_text()


def test_symptoms_file_supplies_missing_classes(cli, tmp_path, tiny_clip):
    _, _, run = _train_with_symptoms_file(cli, tmp_path, tiny_clip, ("melanoma", "mystery"),
                                          "mystery:\n  - a round blob\n  - a square blob\n")
    assert "a round blob" in run and "The spot is asymmetric on both sides" in run


def test_train_names_the_symptom_source_it_used(cli, tmp_path, tiny_clip):
    """The `symptoms:` line names the user's file for the classes it gave, the shipped pack for the others."""
    short, err, run = _train_with_symptoms_file(cli, tmp_path, tiny_clip, ("melanoma", "nevus"),
                                                "melanoma:\n  - a dark blob\n  - a ragged blob\n")
    assert f"symptoms: melanoma <- {short}; nevus <- pack 'nevus'" in err.splitlines()
    assert "a dark blob" in run


def test_progress_without_a_terminal_logs_a_line_every_few_seconds(capsys):
    from vipcli.console import LogProgress

    now = [0.0]
    progress = LogProgress(interval=5, clock=lambda: now[0])
    task = progress.add_task("encoding images", total=100)
    for _ in range(10):
        now[0] += 1
        progress.advance(task, 5)
    now[0] += 1
    progress.advance(task, 50)
    progress.remove_task(task)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["encoding images: 25/100 (25.0%), 5 s elapsed, about 15 s left",
                     "encoding images: 50/100 (50.0%), 10 s elapsed, about 10 s left",
                     "encoding images: 100/100 (100.0%), 11 s elapsed"]


@pytest.mark.parametrize("folders", [("Train", "Val", "Test"), ("train", "Val", "test")])
def test_split_folders_not_in_lower_case_are_named_not_read_as_classes(tmp_path, folders):
    root = tmp_path / "d"
    for folder in folders:
        _flat_dataset(root / folder, per_class=3)
    cased = sorted(f for f in folders if f != f.lower())
    with pytest.raises(VipError, match="split folders must be named in lower case") as error:
        load_dataset(root)
    assert f"rename {cased[0]}/ to {cased[0].lower()}/" in error.value.hint


def test_a_linked_sub_folder_of_a_class_is_searched_and_a_loop_is_not(tmp_path):
    root = _flat_dataset(tmp_path / "d", per_class=3)
    batch = _flat_dataset(tmp_path / "store", per_class=4, classes=("batch",)) / "batch"
    (root / "beta" / "batch2").symlink_to(batch, target_is_directory=True)
    (root / "alpha" / "sub").mkdir()
    (root / "alpha" / "sub" / "loop").symlink_to("..", target_is_directory=True)  # alpha itself: searched once
    (root / "beta" / "batch2-again").symlink_to(batch, target_is_directory=True)  # already searched
    data = load_dataset(root, val_fraction=0.0, test_fraction=0.0)
    assert sum(data.counts(split)[0] for split in ("train", "val", "test")) == 3
    assert sum(data.counts(split)[1] for split in ("train", "val", "test")) == 3 + 4


@pytest.mark.parametrize("layout, link, target, message", [
    ("split", "train/nevus/extra", "../melanoma",
     "train/nevus/extra is a link to class folder train/melanoma: its images would be read as both 'train/nevus' "
     "and 'train/melanoma'"),
    ("split", "train/nevus/batch/more", "../../../test/melanoma",
     "train/nevus/batch/more is a link to class folder test/melanoma: its images would be read as both "
     "'train/nevus' and 'test/melanoma'"),
    ("split", "test/nevus/extra", "../../train/melanoma/old",
     "test/nevus/extra is a link to train/melanoma/old, inside class folder train/melanoma: its images would be "
     "read as both 'test/nevus' and 'train/melanoma'"),
    ("split", "train/nevus/all", "../../test",
     "train/nevus/all is a link to test, which holds the class folders test/melanoma, test/nevus: their images "
     "would be read as both their own class and 'train/nevus'"),
    ("flat", "nevus/up", "..",
     "nevus/up is a link to the data folder {root}, which holds the class folders melanoma, nevus: their images would "
     "be read as both their own class and 'nevus'"),
])
def test_a_linked_sub_folder_into_another_class_is_refused_before_any_work(cli, tmp_path, layout, link, target,
                                                                          message):
    """`train/nevus/extra -> ../melanoma` trained melanoma's images as nevus too: only a duplicate warning said so."""
    root = tmp_path / "d"
    splits = ("train", "test") if layout == "split" else ("",)
    for split in splits:
        _flat_dataset(root / split, per_class=4, classes=("melanoma", "nevus"))
    if layout == "split":
        _png(root / "train" / "melanoma" / "old" / "x.png")
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(target, target_is_directory=True)
    code, out, err = cli("train", "--data", str(root), "--backbone", "toy", "--shots", "1", "--out",
                         str(tmp_path / "run"))
    assert code == 1 and err.count("error:") == 1 and "Traceback" not in err, err
    assert (f"error: {message.format(root=root)} (remove the link, or point it to a folder outside the class folders)"
            in " ".join(err.split())), err
    assert not (tmp_path / "run").exists() and "encoding" not in err


def test_a_linked_sub_folder_outside_the_data_folder_is_still_read(cli, tmp_path):
    root = _flat_dataset(tmp_path / "d", per_class=4, classes=("melanoma", "nevus"))
    store = _flat_dataset(tmp_path / "store", per_class=3, classes=("batch",)) / "batch"
    (root / "nevus" / "batch").symlink_to(store, target_is_directory=True)
    data = load_dataset(root, val_fraction=0.0, test_fraction=0.0)
    assert [sum(data.counts(split)[c] for split in ("train", "val", "test")) for c in (0, 1)] == [4, 4 + 3]


def test_folders_an_os_or_a_nas_makes_are_neither_classes_nor_searched(tmp_path):
    """An unzipped macOS archive's __MACOSX/ became a class ("has no images"); a Synology NAS's @eaDir/
    thumbnails inside a class folder were trained as images of that class."""
    from vipcli.predict import collect_images

    root = _flat_dataset(tmp_path / "d", per_class=3)
    (root / "__MACOSX" / "alpha").mkdir(parents=True)
    (root / "__MACOSX" / "alpha" / "._0.png").write_bytes(b"resource fork")
    thumbs = _flat_dataset(tmp_path / "thumbs", per_class=2, classes=("t",)) / "t"
    for hidden in ("@eaDir", ".thumbnails"):
        (root / "beta" / hidden).symlink_to(thumbs, target_is_directory=True)
    data = load_dataset(root, val_fraction=0.0, test_fraction=0.0)
    assert data.class_names == ["alpha", "beta"]
    assert [sum(data.counts(split)[c] for split in ("train", "val", "test")) for c in (0, 1)] == [3, 3]
    assert len(collect_images([root / "beta"])) == 3


def test_predict_searches_a_linked_folder_too(tmp_path):
    from vipcli.predict import collect_images

    batch = _flat_dataset(tmp_path / "store", per_class=2, classes=("batch",)) / "batch"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "linked").symlink_to(batch, target_is_directory=True)
    assert [p.name for p in collect_images([tmp_path / "in"])] == ["0.png", "1.png"]


def test_files_vip_does_not_read_in_class_folders_are_counted_in_one_warning(tmp_path, capsys):
    root = _flat_dataset(tmp_path / "d", per_class=3)
    for name in ("alpha/sub/scan.gif", "beta/notes.txt", "beta/notes2.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"GIF89a")
    (root / "beta" / "IM000001").write_bytes(bytes(128) + b"DICM")  # a PACS export: DICOM without a suffix
    for junk in ("alpha/Thumbs.db", "beta/desktop.ini", "beta/.DS_Store"):  # a file manager's, not data
        (root / junk).write_bytes(b"x")
    data = load_dataset(root)
    assert sum(sum(data.counts(split)) for split in ("train", "val", "test")) == 6
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings[0] == (f"warning: left out 4 files in {root} not named as an image vip reads (jpg, jpeg, png, bmp, tif, tiff, "
                          "webp, dcm, dicom): alpha/sub/scan.gif, beta/IM000001, beta/notes.txt and 1 more; 1 looks like "
                          "a DICOM file without a .dcm suffix (beta/IM000001): rename it to .dcm; convert images of "
                          "other formats to PNG, and move other files out of the image folders")  # then copies: alike
    assert not any("Thumbs" in line or "desktop" in line or "DS_Store" in line for line in warnings)


def test_predict_counts_the_files_it_leaves_out_of_a_folder(tmp_path):
    from vipcli.predict import collect_images

    folder = _flat_dataset(tmp_path / "in", per_class=2, classes=("x",)) / "x"
    (folder / "scan.gif").write_bytes(b"GIF89a")
    left_out = []
    assert [p.name for p in collect_images([folder], left_out)] == ["0.png", "1.png"]
    assert left_out == [folder / "scan.gif"]


@pytest.mark.parametrize("stray", ["loose.png", "train/loose.png", "test/loose.png", "beside-splits.png"])
def test_an_image_in_no_class_folder_is_named_in_a_warning(tmp_path, capsys, stray):
    root = tmp_path / "d"
    if stray.startswith(("train", "test", "beside")):  # beside train/ and test/: in no split either
        _flat_dataset(root / "train", per_class=3)
        _flat_dataset(root / "test", per_class=1)
    else:
        _flat_dataset(root, per_class=3)
    _png(root / stray)
    load_dataset(root)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert (f"warning: left out 1 image in no class folder of {root}: {stray}; move it into the folder of its class"
            in warnings), warnings


def test_class_folders_that_differ_only_in_case_are_refused_by_name(tmp_path):
    root = _flat_dataset(tmp_path / "d", per_class=3, classes=("Nevus", "melanoma", "nevus"))
    with pytest.raises(VipError, match="class folders 'Nevus' and 'nevus' differ only in case") as error:
        load_dataset(root)
    assert error.value.hint == "move their images into one folder, or rename one"


def test_an_output_folder_a_later_scan_would_read_as_a_class_is_refused_before_any_work(cli, tmp_path, monkeypatch):
    """`vip train --data ..` started inside the data folder wrote runs/ there, and the next run stopped
    at "class folder .../runs has no images"."""
    from vipcli.preflight import check_outside_data

    flat = _flat_dataset(tmp_path / "flat", per_class=3)
    monkeypatch.chdir(flat / "alpha")
    code, _, err = cli("train", "--data", "..", "--backbone", "toy", "--shots", "1")
    assert code == 2 and err.count("error:") == 1, err
    assert "the default run folder runs/" in err and "is inside the data folder .., where the next run would read " \
        "it as a class folder" in err and not (flat / "alpha" / "runs").exists()
    assert "(pass --out outside .., or run vip from another folder)" in err  # an option that exists
    split = tmp_path / "split"
    for name in ("train", "val", "test"):
        _flat_dataset(split / name, per_class=2)
    check_outside_data(split / "runs" / "a", split)  # beside the split folders: never read
    check_outside_data(flat / ".runs" / "a", flat)  # hidden: never read
    check_outside_data(tmp_path / "runs" / "a", flat)  # outside
    with pytest.raises(VipError, match="--out .* is inside the data folder"):
        check_outside_data(split / "train" / "runs", split)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_photo_is_decoded_the_way_every_viewer_shows_it(tmp_path, orientation):
    """A phone photo taken sideways is stored sideways with an EXIF orientation; vip encoded it sideways."""
    from PIL import ImageOps

    from vipcli.images import load_image

    pixels = np.zeros((400, 600, 3), np.uint8)
    pixels[:100, :, 0] = 255  # a red band along the top of a wide picture
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as opened:
        shown = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"), dtype=int)
    assert np.abs(np.asarray(load_image(path), dtype=int) - shown).max() == 0
    reduced = load_image(path, min_side=50)  # decoded at a quarter of the size, then turned
    assert (reduced.size[0] > reduced.size[1]) == (shown.shape[1] > shown.shape[0])


def test_an_image_beside_the_val_and_test_folders_of_a_zero_shot_data_set_is_named(tmp_path, capsys):
    root = tmp_path / "d"
    _flat_dataset(root / "val", per_class=1)
    _flat_dataset(root / "test", per_class=1)
    _png(root / "stray.png")
    load_dataset(root, train_optional=True)
    assert (f"warning: left out 1 image in no class folder of {root}: stray.png; move it into the folder of its class"
            in capsys.readouterr().err)


def test_the_symptom_grid_shows_a_photo_the_way_vip_encodes_it(tmp_path):
    """Stage 2's grid tile of a photo stored sideways (EXIF orientation 6) is upright, as its features are."""
    from vipcli.symptoms.grid import read_tile

    pixels = np.zeros((400, 600, 3), np.uint8)
    pixels[:100, :, 0] = 255  # a red band along the top of the stored (sideways) picture
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the band on the right
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    red = np.asarray(read_tile(path, 60), dtype=int)[..., 0]  # [60, 60]
    assert red[:, -5:].mean() > 200 and red[:5, 20:40].mean() < 50


def test_the_demo_folder_given_for_its_run_benchmark_or_data_names_the_one_to_pass(cli, tmp_path):
    """After `vip demo` (everything in vip-demo/: data/, run/, benchmark/), `--model vip-demo`, `vip report vip-demo`
    and `vip train --data vip-demo` said only "has no model.safetensors", "pass a folder written by vip train or vip
    benchmark" and "class folder vip-demo/run has no images (add images ... or remove the folder)"."""
    demo = tmp_path / "vip-demo"
    for split in ("train", "val", "test"):
        _flat_dataset(demo / "data" / split, per_class=2)
    (demo / "run").mkdir()
    (demo / "run" / "model.safetensors").write_bytes(b"\x00" * 64)  # found by name: nothing is read
    (demo / "benchmark").mkdir()
    (demo / "benchmark" / "results.json").write_text('{"rows": []}')  # as `vip benchmark` writes it: its rows
    _png(demo / "benchmark" / "shots.png")  # an image: the benchmark passes for a class of one, the run does not
    image = demo / "data" / "test" / "alpha" / "0.png"
    code, _, err = cli("predict", image, "--model", demo)
    assert code == 1 and error_lines(err) == [
        f"error: {demo} has no model.safetensors (it holds the run {demo / 'run'}: pass --model {demo / 'run'})"]
    code, _, err = cli("predict", image, "--model", demo / "benchmark")
    assert code == 1 and "it is a benchmark folder, which keeps no model" in err
    assert f"`vip report {demo / 'benchmark'}` shows the benchmark" in err
    code, _, err = cli("report", demo)
    assert code == 1 and len(error_lines(err)) == 1
    assert f"(it holds the benchmark {demo / 'benchmark'}, the run {demo / 'run'}: pass one of them" in err
    code, _, err = cli("train", "--data", demo, "--backbone", "toy")
    assert code == 1 and len(error_lines(err)) == 1
    assert f"class folder {demo / 'run'} has no images (it is a run directory written by `vip train`, not a class " \
           f"of images: pass --data {demo / 'data'}, which holds a train/ split)" in err, err
    (demo / "benchmark" / "shots.png").unlink()
    code, _, err = cli("train", "--data", demo, "--backbone", "toy")
    assert code == 1 and f"{demo / 'benchmark'} has no images (it is a benchmark folder written by `vip benchmark`" \
        in err, err


def _fake_run(folder, data):
    """A run directory as `vip train` leaves it, as far as the layout checks read it: model.safetensors (never read
    here) and a run.yaml naming the data it was trained on."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    (folder / "run.yaml").write_text(f"format: vip-run\nconfig:\n  data: {data}\n")
    return folder


def test_a_run_or_benchmark_folder_given_as_data_names_the_data_it_was_made_from(cli, tmp_path):
    """--data and --model mixed up: `vip train --data RUN` said only "found no class folders ... (lay the data out as
    DIR/<class>/* with one folder per class)", as for any empty folder, for a run folder, and likewise a benchmark's."""
    data = tmp_path / "isic"
    _flat_dataset(data / "train", per_class=2)
    run = _fake_run(tmp_path / "runs" / "isic-vip", data)
    code, _, err = cli("train", "--data", run, "--backbone", "toy")
    assert code == 1 and error_lines(err) == [
        f"error: {run}: found no class folders; ViP needs at least two classes ({run} is a run directory written by "
        "`vip train`, which `vip predict --model` and `vip report` take, not a folder of images: pass --data "
        f"{data}, the folder of class folders it was made from)"]
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.json").write_text(json.dumps({"config": {"data": str(data)}, "rows": []}))
    code, _, err = cli("benchmark", "--data", bench, "--backbone", "toy", "--methods", "zeroshot")
    assert code == 1 and error_lines(err) == [
        f"error: {bench}: found no class folders; ViP needs at least two classes ({bench} is a benchmark folder "
        f"written by `vip benchmark`, which `vip report` takes, not a folder of images: pass --data {data}, the "
        "folder of class folders it was made from)"]
    moved = _fake_run(tmp_path / "runs" / "moved", tmp_path / "gone")  # its data is no longer there: named by kind
    code, _, err = cli("train", "--data", moved, "--backbone", "toy")
    assert code == 1 and err.rstrip().endswith("not a folder of images: pass --data with a folder of class folders)")


def test_predict_of_a_run_or_benchmark_folder_as_images_is_refused_naming_what_it_is(cli, tmp_path):
    """`vip predict RUN --model OTHER_RUN` said "folder RUN has no image files ..., only 3 files not named as an image
    (convert images of other formats to PNG ...)", and `vip predict BENCH --model RUN` predicted the benchmark's plot
    (shots.png) as a medical image, exit code 0."""
    data = tmp_path / "isic"
    _flat_dataset(data / "train", per_class=2)
    model = _fake_run(tmp_path / "model", data)
    run = _fake_run(tmp_path / "other-run", data)
    (run / "metrics.json").write_text("{}")
    code, out, err = cli("predict", run, "--model", model)
    assert code == 1 and out == "" and error_lines(err) == [
        f"error: {run} is a run directory written by `vip train`, not a folder of images (`vip predict IMAGES "
        f"--model {run}` predicts with it; pass the images, or folders of images, to predict)"]
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.json").write_text(json.dumps({"config": {"data": str(data)}, "rows": []}))
    _png(bench / "shots.png")
    code, out, err = cli("predict", bench, "--model", model)
    assert code == 1 and out == "" and error_lines(err) == [
        f"error: {bench} is a benchmark folder written by `vip benchmark`, not a folder of images (`vip report "
        f"{bench}` shows it; pass the images, or folders of images, to predict)"]


def test_predict_with_the_run_and_the_images_swapped_names_the_command_the_right_way_round(cli, tmp_path):
    """`vip predict RUN --model IMAGES` said "IMAGES has no model.safetensors (pass a run directory written by `vip
    train`)", though the run was on the same command line."""
    data = tmp_path / "isic"
    _flat_dataset(data / "test", per_class=2)
    run = _fake_run(tmp_path / "run", data)
    code, out, err = cli("predict", run, "--model", data / "test")
    assert code == 1 and out == "" and error_lines(err) == [
        f"error: --model {data / 'test'} is not a run directory, and {run}, given as images, is one: the two are "
        f"swapped (run `vip predict {data / 'test'} --model {run}`)"]


def test_a_test_split_of_empty_class_folders_says_it_can_be_removed_and_carved_from_train(cli, tmp_path):
    """test/melanoma/ and test/nevus/ made, the images not yet copied: "class folder test/melanoma has no images (add
    images ... or remove the folder)", and removing it only moved the error to test/nevus; that vip carves a test
    split from train/ once test/ is gone was not said. One empty class of a split keeps the class folder's fix."""
    data = tmp_path / "isic"
    _flat_dataset(data / "train", per_class=4)
    for name in ("alpha", "beta"):
        (data / "test" / name).mkdir(parents=True)
    code, _, err = cli("train", "--data", data, "--backbone", "toy")
    assert code == 1 and error_lines(err) == [
        f"error: class folder {data / 'test' / 'alpha'} has no images (no class folder of test/ holds an image: add "
        f"images to them, or remove {data / 'test'} and vip carves a test split from train/)"]
    _png(data / "test" / "alpha" / "0.png")
    code, _, err = cli("train", "--data", data, "--backbone", "toy")
    assert code == 1 and error_lines(err) == [
        f"error: class folder {data / 'test' / 'beta'} has no images (add images (jpg, jpeg, png, bmp, tif, tiff, "
        "webp, dcm, dicom) or remove the folder)"]


def test_one_split_of_a_data_folder_given_as_data_warns_that_the_other_splits_go_unread(tmp_path, capsys):
    """`--data isic/train` beside isic/val and isic/test: vip carved its own val and test from train/'s images and
    never read the real ones, with no word of it; the run's test figures were of images it had carved."""
    data = tmp_path / "isic"
    for split in ("train", "val", "test"):
        _flat_dataset(data / split, per_class=5)
    dataset = load_dataset(data / "train")
    assert dataset.carved
    warnings = [line for line in capsys.readouterr().err.splitlines() if "split of" in line]  # not the duplicates
    assert warnings == [f"warning: {data / 'train'} is the train/ split of {data}: vip reads it as a data folder of "
                        f"its own, trains on its images and carves val and test from them, and reads none of "
                        f"{data / 'val'}/, {data / 'test'}/ (pass --data {data} to use its splits)"]
    load_dataset(data)  # the data folder itself, and a folder named train/ with no splits beside it: no warning
    alone = tmp_path / "alone" / "train"
    _flat_dataset(alone, per_class=5)
    load_dataset(alone)
    assert "split of" not in capsys.readouterr().err


def test_predict_with_a_benchmark_or_a_folder_of_runs_as_model_is_not_called_swapped(cli, tmp_path):
    """`vip predict RUN --model BENCH` said the two were swapped and gave `vip predict BENCH --model RUN`, which
    refuses the benchmark folder as images; `vip predict RUN --model runs` (a folder of runs) likewise, though the
    fix is one of the runs inside. Neither --model holds images: each is said as what it is."""
    data = tmp_path / "isic"
    _flat_dataset(data / "test", per_class=2)
    run = _fake_run(tmp_path / "run", data)
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.json").write_text(json.dumps({"config": {"data": str(data)}, "rows": []}))
    code, _, err = cli("predict", run, "--model", bench)
    assert code == 1 and "swapped" not in err and "it is a benchmark folder, which keeps no model" in err, err
    runs = tmp_path / "runs"
    other = _fake_run(runs / "other", data)
    code, _, err = cli("predict", run, "--model", runs)
    assert code == 1 and "swapped" not in err and f"pass --model {other}" in err, err
