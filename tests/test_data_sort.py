"""`vip data sort`: class folders from a labels CSV (ISIC's one-hot columns, HAM10000's dx column, a split
column), checked through the CLI and by reading the result back as vip's data folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import error_lines

SHARED_ISIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic2017_mel_nv"


def _images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(names):
        Image.new("RGB", (8, 8), (number * 20 % 256, 40, 90)).save(folder / name)
    return folder


def _csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def _sorted_two(cli, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Images a.png (class x) and b.png (class y) sorted by `vip data sort` into tmp_path/sorted: (images,
    labels table, sorted folder)."""
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    sorted_folder = tmp_path / "sorted"
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder)[0] == 0
    return images, labels, sorted_folder


def _one_error(err: str) -> str:
    lines = error_lines(err)
    assert len(lines) == 1, err
    return lines[0]


def test_a_sort_into_an_out_another_sort_is_writing_is_refused_not_replaced(cli, tmp_path):
    """Two sorts into one new --out at once both said `sorted 2 images into OUT`, exit code 0: the later one's
    rename replaced the folder the first had just written, without --force. While one sort holds `.OUT.lock`
    (beside OUT, as `vip train` holds its run folder's), a second refuses before reading the table."""
    import socket

    from vipcli.locks import output_lock

    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    out = tmp_path / "sorted"
    with output_lock(out, lock=tmp_path / ".sorted.lock"):  # as a sort running in another process holds it
        code, _, err = cli("data", "sort", labels, "--images", images, "--out", out)
    assert code == 1 and error_lines(err) == [
        f"error: {out} is being written by another vip process (pid {os.getpid()} on host {socket.gethostname()}) "
        "(wait for it to finish, or pass another --out)"]
    assert not out.exists()
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", out)  # that one ended: its lock with it
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["gt.csv", "img", "sorted"]  # no lock file left behind

def test_a_table_with_a_class_and_a_split_column_becomes_split_and_class_folders(cli, tmp_path):
    from vipcli.data import load_dataset

    images = _images(tmp_path / "flat", [f"img{n}.png" for n in range(12)])
    rows = [f"img{n},{'melanoma' if n % 2 else 'nevus'},{('train', 'Validation', 'test')[n % 3]}" for n in range(12)]
    labels = _csv(tmp_path / "labels.csv", "image,diagnosis,split\n" + "\n".join(rows) + "\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0, err
    assert "columns: image 'image'; class 'diagnosis'; split 'split' (found: image, split, class)" in out
    assert f"next: vip train --data {tmp_path / 'sorted'}" in err and "next:" not in out  # a hint: stderr
    link = tmp_path / "sorted" / "val" / "melanoma" / "img1.png"
    assert link.is_symlink() and os.readlink(link) == str((images / "img1.png").resolve())
    dataset = load_dataset(tmp_path / "sorted", seed=1)
    assert dataset.class_names == ["melanoma", "nevus"]
    assert sorted(s.path.name for s in dataset.splits["test"]) == ["img11.png", "img2.png", "img5.png", "img8.png"]
    assert dataset.origin["val"] == "folder"
    record = json.loads((tmp_path / "sorted" / ".vip-sorted.json").read_text())
    assert record["columns"]["split"] == "split" and record["files"] == "links" and record["images_sorted"] == 12


def test_the_next_hint_asks_for_symptoms_where_a_class_matches_no_shipped_pack(cli, tmp_path):
    """Kermany's causes sorted into `bacterial_pneumonia` and `viral_pneumonia` were told `next: vip train --data
    OUT`, which stopped at once: those classes have no shipped symptom pack. The hint now says to give them
    symptoms, naming only the classes without a pack (`normal` matches 'normal lung')."""
    images = _images(tmp_path / "img", ["a.png", "b.png", "c.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,bacterial_pneumonia\nb,normal\nc,viral_pneumonia\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "causes")
    assert code == 0, err
    assert "no shipped symptom pack matches classes 'bacterial_pneumonia', 'viral_pneumonia': write their " \
           "symptoms in a FILE as {class: [symptom, ...]}, or packs with `vip symptoms generate --data " \
           f"{tmp_path / 'causes'}` (an LLM)" in err
    assert f"next: vip train --data {tmp_path / 'causes'} --symptoms FILE\n" in err and "next:" not in out
    code, out, err = cli("data", "sort", _csv(tmp_path / "skin.csv", "image,label\na,MEL\nb,nevus\nc,nv\n"),
                         "--images", images, "--out", tmp_path / "skin")
    assert code == 0, err
    assert f"next: vip train --data {tmp_path / 'skin'}\n" in err and "symptom pack" not in err  # aliases match


def test_isic_2017_one_hot_columns_need_the_class_of_unmarked_rows(cli, tmp_path):
    """ISIC 2017 marks melanoma and seborrheic keratosis; a nevus is a row marked in neither."""
    images = _images(tmp_path / "ISIC-2017_Training_Data", ["ISIC_0000000.jpg", "ISIC_0000001.jpg",
                                                            "ISIC_0000002.jpg", "ISIC_0000000_superpixels.png"])
    labels = _csv(tmp_path / "gt.csv", "image_id,melanoma,seborrheic_keratosis\nISIC_0000000,0.0,0.0\n"
                                       "ISIC_0000001,0.0,0.0\nISIC_0000002,1.0,0.0\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    line = _one_error(err)
    assert code == 2 and "2 rows of gt.csv are marked 0 in every --one-hot column (melanoma, seborrheic_keratosis" in line
    assert line.endswith("(name their class with --otherwise CLASS (ISIC 2017: --otherwise nevus))")
    assert not (tmp_path / "sorted").exists()
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--otherwise", "nevus")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "sorted" / "nevus").iterdir()) == ["ISIC_0000000.jpg", "ISIC_0000001.jpg"]
    assert [p.name for p in (tmp_path / "sorted" / "melanoma").iterdir()] == ["ISIC_0000002.jpg"]
    assert not (tmp_path / "sorted" / "seborrheic_keratosis").exists()  # a class with no image gets no folder
    assert "1 image under" in err and "is in no row: left out (first: ISIC_0000000_superpixels.png)" in err


def test_a_row_marked_as_two_classes_is_refused_by_name(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,MEL,NV\na,1,1\nb,0,1\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and "1 rows of gt.csv are marked as more than one class (first: a (MEL and NV))" in _one_error(err)


def test_a_split_column_with_values_that_are_no_split_is_refused_in_one_line(cli, tmp_path):
    """A named --split-column is not checked for split names as a found one is: an empty cell or `holdout`
    was a KeyError ("a bug in vip")."""
    images = _images(tmp_path / "img", ["a.png", "b.png", "c.png", "d.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label,fold\na,mel,train\nb,mel,holdout\nc,nv,\nd,nv,holdout\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--split-column", "fold")
    line = _one_error(err)
    assert code == 2 and "--split-column fold: 3 rows hold 'holdout', '', not train, val or test" in line, err
    assert line.endswith("(give every row train, val or test, or drop --split-column to let vip make the splits)")
    assert not (tmp_path / "sorted").exists()


def test_a_table_of_a_header_only_says_so(cli, tmp_path):
    """It said "no column names an image under --images (first row: none)", sending the user to --images."""
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\n\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and _one_error(err) == f"error: {labels}: a header row and no row below it (add one row per " \
                                            "image under the header)"
    assert not (tmp_path / "sorted").exists()


def test_the_download_folder_given_for_its_labels_file_names_the_table_in_it(cli, tmp_path):
    """`vip data sort isic2017_mel_nv --images isic2017_mel_nv` said "isic2017_mel_nv: no such labels file", of a
    folder that exists and holds the table."""
    images = _images(tmp_path / "download", ["a.png", "b.png"])
    labels = _csv(images / "gt.csv", "image,label\na,x\nb,y\n")
    code, _, err = cli("data", "sort", images, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and _one_error(err) == (f"error: {images} is a folder, not a labels file (pass the table in it: "
                                             f"vip data sort {labels} --images ...)")
    _csv(images / "more.tsv", "image\tlabel\na\tx\n")
    code, _, err = cli("data", "sort", images, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and f"(pass one of the tables in it: {labels}, {images / 'more.tsv'})" in _one_error(err)
    assert not (tmp_path / "sorted").exists()


def test_a_table_of_many_columns_asks_which_holds_the_class(cli, tmp_path):
    """HAM10000's metadata: lesion_id, image_id, dx, dx_type, age, sex, localization."""
    images = _images(tmp_path / "HAM10000_images", ["ISIC_0027419.jpg", "ISIC_0025030.jpg"])
    labels = _csv(tmp_path / "HAM10000_metadata.csv",
                  "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
                  "HAM_0000118,ISIC_0027419,bkl,histo,80.0,male,scalp\nHAM_0000118,ISIC_0025030,nv,histo,80.0,male,scalp\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 2 and _one_error(err) == (
        "error: HAM10000_metadata.csv: cannot tell which column holds the class (columns besides the image's: "
        "lesion_id, dx, dx_type, age, sex, localization) (name it with --label-column NAME, or the 0/1 columns "
        "with --one-hot COL,COL; a column of patients or lesions goes to --group-column lesion_id, which keeps each "
        "one's images in one split)")  # the lesion column named too: a table of a patient's X-rays has one
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "dx")
    assert code == 0 and "columns: image 'image_id'; class 'dx' (found: image)" in out, err
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "other", "--label-column", "Dx")
    assert code == 2 and "--label-column Dx: HAM10000_metadata.csv has no such column" in _one_error(err)


def test_rows_without_an_image_or_a_class_are_left_out_with_a_warning(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png", "c.png"])
    labels = _csv(tmp_path / "gt.csv", "file,label\na.png,x\nb.png,y\nc.png,\nmissing.png,y\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0 and "sorted 2 images into" in out
    assert "1 row of the labels names no image under" in err and "left out (y 1; first: missing.png)" in err
    assert "1 row of the labels has an empty class cell: left out (first: c.png)" in err
    assert "in no row" not in err  # c.png is in a row (told once, above), not left out twice


def test_an_image_in_no_row_is_told_apart_from_one_in_a_row_without_a_class(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png", "c.png", "d.png"])
    labels = _csv(tmp_path / "gt.csv", "file,label\na.png,x\nb.png,y\nc.png,\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0 and "1 row of the labels has an empty class cell: left out (first: c.png)" in err
    assert f"1 image under {images} is in no row: left out (first: d.png)" in err


@pytest.mark.parametrize("table, said", [
    ("image,label\na,x\na,y\n", "a.png is in gt.csv twice, as 'x' and as 'y'"),
    ("image,label\na,Melanoma\nb,melanoma\n", "classes 'Melanoma' and 'melanoma' differ only in case"),
    ("image,label\na,../up\nb,x\n", "class '../up' cannot be a folder name"),
    ("image,label\nsub1/a,x\nsub2/a,x\n", "would both be 'x'/a.png"),
    ("image,label\nsub1/a,x\nsub2/A,x\n", "would be x/a.png and x/A.png in --out, names that differ only in case: "
                                         "one file on macOS and Windows"),  # (there a copy replaced the other)
])
def test_a_table_that_cannot_become_class_folders_is_refused_before_any_is_written(cli, tmp_path, table, said):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    if "sub1" in table:
        images = _images(tmp_path / "subs" / "sub1", ["a.png"]).parent
        _images(images / "sub2", ["A.png" if "sub2/A" in table else "a.png"])
    labels = _csv(tmp_path / "gt.csv", table)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and said in _one_error(err)
    assert not (tmp_path / "sorted").exists()


@pytest.mark.parametrize("name, why", [("Nevus: benign?", "it holds :?"), ("nevus.", "it ends in a space or a dot")])
def test_on_windows_a_class_it_takes_no_folder_of_is_refused_before_any_is_written(cli, tmp_path, monkeypatch,
                                                                                   name, why):
    """On Windows a class `Nevus: benign?` failed as its folder was made, with `(pass --copy (Windows makes links
    only in Developer Mode))`, a fix that changes nothing; elsewhere such a folder is made."""
    from vipcli import label_table

    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", f'image,label\na,"{name}"\nb,x\n')
    monkeypatch.setattr(label_table, "WINDOWS", True)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and _one_error(err) == f"error: class {name!r} cannot be a folder name on Windows ({why}) " \
                                           "(rename it in the labels file)"
    assert not (tmp_path / "sorted").exists()
    monkeypatch.setattr(label_table, "WINDOWS", False)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0 and (tmp_path / "sorted" / name / "a.png").is_symlink(), err


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize("name, device, renamed", [("con", "CON", "con_"), ("Aux", "AUX", "Aux_"),
                                                   ("com1.x", "COM1", "com1_.x"), ("LPT1.txt", "LPT1", "LPT1_.txt")])
def test_a_class_named_after_a_windows_device_is_refused_on_every_platform(cli, tmp_path, monkeypatch, windows,
                                                                          name, device, renamed):
    """Off Windows a class `con` was sorted into a folder `con/`, which no Windows machine can copy or open (it
    is the console there); a pack file `aux.yaml` was already refused everywhere. Both are now."""
    from vipcli import label_table
    from vipcli.windows_names import device_name

    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", f'image,label\na,"{name}"\nb,x\n')
    monkeypatch.setattr(label_table, "WINDOWS", windows)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and _one_error(err) == (
        f"error: class {name!r} cannot be a folder name: Windows takes it as its device {device}, so the sorted "
        f"folder could not be copied to or opened on Windows (rename it in the labels file, e.g. to {renamed!r})"), err
    assert not (tmp_path / "sorted").exists() and device_name(renamed) is None


def test_rows_naming_dicom_exports_without_a_suffix_say_to_rename_them(cli, tmp_path):
    """A PACS export names its files IM000001; a row naming one was 'no image' like a row naming nothing."""
    pytest.importorskip("pydicom")
    from dicom_files import ramp, write_dicom

    images = _images(tmp_path / "export", ["a.png"])
    write_dicom(tmp_path / "export" / "IM000001", ramp())
    write_dicom(tmp_path / "export" / "IM000002", ramp())
    labels = _csv(tmp_path / "gt.csv", "image,label\na.png,x\nIM000001,y\nIM000002,y\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0, err
    assert f"warning: rows of the labels name files vip does not read as images: left out 2 files in {images} not " \
           "named as an image vip reads" in err and "IM000001, IM000002; 2 look like DICOM files without a .dcm suffix: " \
           "rename them to .dcm" in err, err
    assert "name no image" not in err and "in no row" not in err
    only = tmp_path / "only"
    write_dicom(only / "IM000003", ramp())
    code, _, err = cli("data", "sort", labels, "--images", only, "--out", tmp_path / "other")
    assert code == 1 and _one_error(err).endswith("(its files look like DICOM files without a .dcm suffix: rename "
                                                  "them to .dcm)")


def test_a_name_matching_two_files_asks_for_the_path(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "a.jpg", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    line = _one_error(err)
    assert code == 1 and "'a' in gt.csv names 2 files under" in line and "by its path relative to --images" in line


def test_a_semicolon_table_saved_by_excel_with_a_byte_order_mark_is_read(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image;label\r\na;x\r\nb;y\r\n", encoding="utf-8-sig")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0 and "columns: image 'image'; class 'label'" in out, err


def test_paths_written_on_windows_and_a_cameras_upper_case_suffix_are_found(cli, tmp_path):
    """A hospital export's table names `scans\\a.jpg` (Windows), `./scans/b.jpg`, and `c.jpg` for a camera's
    `c.JPG`; a file whose own name is in the table is still preferred to one found so."""
    images = tmp_path / "img"
    _images(images / "scans", ["a.jpg", "b.jpg", "c.JPG", "d.jpg", "d.JPG"])
    labels = _csv(tmp_path / "gt.csv", "image,label\nscans\\a.jpg,x\n./scans/b.jpg,y\nscans\\c.jpg,x\nd.jpg,y\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0 and "sorted 4 images" in out, err
    assert sorted(p.name for p in (tmp_path / "sorted").rglob("*") if p.is_symlink()) == ["a.jpg", "b.jpg", "c.JPG",
                                                                                           "d.jpg"]
    assert "1 image" in err and "d.JPG" in err  # in no row: left out, named


def test_absolute_paths_written_on_windows_or_another_machine_are_found_by_their_part_under_images(cli, tmp_path):
    """A table exported with each image's absolute path (`C:\\Users\\me\\isic\\scans\\a.jpg`, a share's
    `\\\\pacs\\...`, `/home/other/...`): found by the longest tail that is a path under --images."""
    images = tmp_path / "img"
    _images(images / "scans", ["a.jpg", "b.jpg", "c.jpg"])
    _images(images / "old", ["a.jpg"])  # the same name elsewhere: the longer tail tells them apart
    labels = _csv(tmp_path / "gt.csv", "image,label\nC:\\Users\\me\\isic\\scans\\a.jpg,x\n"
                                       "\\\\pacs\\export\\scans\\b.jpg,y\n/home/other/isic/scans/c.jpg,x\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0 and "sorted 3 images" in out, err
    assert os.readlink(tmp_path / "sorted" / "x" / "a.jpg") == str((images / "scans" / "a.jpg").resolve())
    assert (tmp_path / "sorted" / "y" / "b.jpg").is_symlink() and (tmp_path / "sorted" / "x" / "c.jpg").is_symlink()


def test_a_quoted_cell_holding_a_line_break_stays_in_its_row(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", 'image,label,note\na,x,"seen twice,\nsee b"\nb,y,\n')
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "label")
    assert code == 0 and "sorted 2 images" in out and "warning" not in err, err


def test_a_row_with_more_cells_than_the_header_is_refused_with_its_line(cli, tmp_path):
    """A class name holding a comma, unquoted (`seborrheic keratosis, solar lentigo`), shifted the row's later cells:
    'solar lentigo' was read as its split and the split as its lesion, so the split column was dropped and the
    lesions were new ones, without a word. Trailing empty cells (Excel's `a,x,,`) are still fine."""
    images = _images(tmp_path / "img", ["a.png", "b.png", "c.png"])
    labels = _csv(tmp_path / "gt.csv", "image,dx,split,lesion\na,nevus,train,l1,,\n"
                                       "b,seborrheic keratosis, solar lentigo,test,l2\nc,nevus,val,l3\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "dx")
    assert code == 1 and not out and not (tmp_path / "sorted").exists()
    assert _one_error(err) == (
        f"error: {labels}:3: 5 cells, and the header names 4 columns (a value holding ',' splits in two, and the "
        "cells after it would be read in the wrong columns) (put a value that holds ',' in double quotes (\"a, b\"), "
        "or remove the extra cells)")
    _csv(labels, 'image,dx,split,lesion\na,nevus,train,l1,,\nb,"seborrheic keratosis, solar lentigo",test,l2\n'
                 "c,nevus,val,l3\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "dx")
    assert code == 0 and "split 'split'" in out, err
    assert [p.name for p in (tmp_path / "sorted" / "test" / "seborrheic keratosis, solar lentigo").iterdir()] == ["b.png"]


def test_one_hot_marks_written_with_a_decimal_comma_by_a_european_excel_are_read(cli, tmp_path):
    images = _images(tmp_path / "img", ["ISIC_0000000.jpg", "ISIC_0000001.jpg"])
    labels = _csv(tmp_path / "gt.csv", "image_id;melanoma;seborrheic_keratosis\r\nISIC_0000000;1,0;0,0\r\n"
                                       "ISIC_0000001;0,0;0,0\r\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--one-hot", "melanoma,seborrheic_keratosis", "--otherwise", "nevus")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "sorted" / "melanoma").iterdir()] == ["ISIC_0000000.jpg"]
    assert [p.name for p in (tmp_path / "sorted" / "nevus").iterdir()] == ["ISIC_0000001.jpg"]


def test_the_out_folder_is_never_a_folder_of_other_files_and_is_replaced_only_with_force(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    mine = tmp_path / "mine"
    _images(mine / "x", ["keep.png"])
    for extra in ([], ["--force"]):
        code, _, err = cli("data", "sort", labels, "--images", images, "--out", mine, *extra)
        assert code == 1 and "already holds files vip did not sort" in _one_error(err)
    assert (mine / "x" / "keep.png").is_file()
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 0, err
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    assert code == 1 and "was sorted before (pass --force to sort it again" in _one_error(err)
    _csv(labels, "image,label\na,x\nb,x\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--force")
    assert code == 0 and not (tmp_path / "sorted" / "y").exists(), err
    for out in (images, tmp_path):
        code, _, err = cli("data", "sort", labels, "--images", images, "--out", out, "--force")
        assert code == 1 and f"--out {out} holds --images {images}" in _one_error(err)
    assert sorted(p.name for p in images.iterdir()) == ["a.png", "b.png"]


def test_a_download_folder_sorts_into_a_folder_inside_it_again_and_again(cli, tmp_path):
    """HAM10000 comes as one folder: its CSV and two image folders. `--images .` with `--out sorted` there
    was refused as an overlap; the sorted folder's links are not images to sort."""
    download = tmp_path / "HAM10000"
    _images(download / "HAM10000_images_part_1", ["a.jpg"])
    _images(download / "HAM10000_images_part_2", ["b.jpg"])
    labels = _csv(download / "HAM10000_metadata.csv", "image_id,dx\na,mel\nb,nv\n")
    for extra in ([], ["--force"]):
        code, out, err = cli("data", "sort", labels, "--images", download, "--out", download / "sorted", *extra)
        assert code == 0 and "sorted 2 images" in out and "warning" not in err, err
    assert os.readlink(download / "sorted" / "nv" / "b.jpg") == str(download / "HAM10000_images_part_2" / "b.jpg")


def test_force_does_not_delete_what_was_added_to_a_sorted_folder(cli, tmp_path):
    """--force replaced the whole sorted folder, a run or notes saved inside it since included."""
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    sorted_folder = tmp_path / "sorted"
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder)[0] == 0
    (sorted_folder / "x" / "notes.txt").write_text("mine")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")
    assert code == 1 and _one_error(err) == (
        f"error: --out {sorted_folder} holds files vip data sort did not write (x/notes.txt): --force "
        "would delete them (move them out of the folder, or sort into a new folder)")
    assert (sorted_folder / "x" / "notes.txt").read_text() == "mine"
    (sorted_folder / "x" / "notes.txt").unlink()
    for n in range(5):
        (sorted_folder / "runs" / f"run{n}").mkdir(parents=True)
    (sorted_folder / "y" / "seen.txt").write_text("mine")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")
    assert code == 1 and "(runs, y/seen.txt): --force would delete them" in _one_error(err)  # a folder named whole
    shutil.rmtree(sorted_folder / "runs")
    (sorted_folder / "y" / "seen.txt").unlink()
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")[0] == 0


def _refused_after_replacing_a_link(cli, tmp_path, saved_as: str):
    """Sort a.png, b.png into x/ and c.png into y/, replace the link x/a.png by the user's file x/`saved_as`,
    and check that --force refuses, naming that file, and keeps it. Returns (images, labels, sorted folder)."""
    images = _images(tmp_path / "img", ["a.png", "b.png", "c.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,x\nc,y\n")
    sorted_folder = tmp_path / "sorted"
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder)[0] == 0
    (sorted_folder / "x" / "a.png").unlink()
    (sorted_folder / "x" / saved_as).write_text("mine")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")
    assert code == 1 and f"did not write (x/{saved_as}): --force would delete them" in _one_error(err)
    assert (sorted_folder / "x" / saved_as).read_text() == "mine"
    return images, labels, sorted_folder


def test_force_does_not_delete_a_file_swapped_for_one_it_wrote(cli, tmp_path):
    """--force told added files by the number of entries per folder: one swapped for another passed."""
    images, labels, sorted_folder = _refused_after_replacing_a_link(cli, tmp_path, "edited.png")
    (sorted_folder / "x" / "edited.png").unlink()  # a file it wrote, gone, is nothing to keep
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")[0] == 0
    assert sorted(p.name for p in (sorted_folder / "x").iterdir()) == ["a.png", "b.png"]


def test_force_does_not_delete_a_file_put_in_place_of_a_link_of_the_same_name(cli, tmp_path):
    """Entries were checked by name only: an edited image saved over a link it wrote, under the link's
    name, passed, and --force deleted it."""
    images, labels, _ = _refused_after_replacing_a_link(cli, tmp_path, "a.png")
    copies = tmp_path / "copies"  # a folder of copies holds files by design
    for extra in ([], ["--force"]):
        assert cli("data", "sort", labels, "--images", images, "--out", copies, "--copy", *extra)[0] == 0


def _sorted_copies(cli, tmp_path):
    """Copies of a.png, b.png in x/ and c.png in y/. Returns (images, labels, sorted folder)."""
    images = _images(tmp_path / "img", ["a.png", "b.png", "c.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,x\nc,y\n")
    sorted_folder = tmp_path / "sorted"
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy")[0] == 0
    return images, labels, sorted_folder


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("edit", ["appended", "same-size-rewritten", "times-restored"])
def test_force_does_not_delete_a_copy_edited_in_place(cli, tmp_path, edit):
    """Entries were checked by name: in a folder of copies, an image re-saved under its own name (after
    cropping) passed, and --force replaced it by the original. An edit that kept the size and set the
    modification time back (`touch -r`) passed the size-and-time check too."""
    images, labels, sorted_folder = _sorted_copies(cli, tmp_path)
    copy = sorted_folder / "x" / "b.png"
    written = copy.stat()
    if edit == "appended":
        with open(copy, "ab") as handle:
            handle.write(b"cropped")
    else:  # other bytes of the same size, written later
        data = bytearray(copy.read_bytes())
        data[-1] ^= 0xFF
        copy.write_bytes(bytes(data))
        stat = copy.stat()
        later = stat.st_mtime_ns + 5_000_000_000 if edit == "same-size-rewritten" else written.st_mtime_ns
        os.utime(copy, ns=(stat.st_atime_ns, later))
        assert edit != "times-restored" or (copy.stat().st_size, copy.stat().st_mtime_ns) == \
            (written.st_size, written.st_mtime_ns)
    before = _snapshot(sorted_folder)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")
    assert code == 1 and _one_error(err) == (
        f"error: --out {sorted_folder} holds copies edited since vip data sort wrote them (x/b.png): --force "
        "would delete them (move the edited files out of the folder, or choose another --out)")
    assert _snapshot(sorted_folder) == before  # untouched
    copy.unlink()  # moved out: a copy it wrote, gone, is nothing to keep
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")[0] == 0
    assert copy.read_bytes() == (images / "b.png").read_bytes()


def test_a_clean_folder_of_copies_sorts_again_with_force_and_records_its_copies(cli, tmp_path):
    images, labels, sorted_folder = _sorted_copies(cli, tmp_path)
    record = json.loads((sorted_folder / ".vip-sorted.json").read_text())
    stat = (sorted_folder / "x" / "a.png").stat()
    assert sorted(record["copies"]) == ["x/a.png", "x/b.png", "y/c.png"]
    assert record["copies"]["x/a.png"] == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                           "ctime_ns": stat.st_ctime_ns, "file": f"{stat.st_dev}:{stat.st_ino}",
                                           "source": os.path.realpath(images / "a.png")}
    for _ in range(2):
        code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")
        assert code == 0, err
    links = tmp_path / "links"  # a folder of links records none: its links are checked as they are
    assert cli("data", "sort", labels, "--images", images, "--out", links)[0] == 0
    assert "copies" not in json.loads((links / ".vip-sorted.json").read_text())


def test_a_copy_whose_times_alone_changed_is_not_taken_for_an_edit(cli, tmp_path):
    """A sorted folder copied again without its times (`cp -r`, a backup restored) has every copy's
    modification time changed: --force refused it as "holds copies edited since", though no byte was."""
    images, labels, sorted_folder = _sorted_copies(cli, tmp_path)
    for copy in (sorted_folder / "x" / "a.png", sorted_folder / "y" / "c.png"):
        stat = copy.stat()
        os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    os.chmod(sorted_folder / "x" / "b.png", 0o444)  # its status-change time alone: made read-only
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")
    assert code == 0, err
    stat = (sorted_folder / "x" / "a.png").stat()  # and its copies are recorded afresh
    record = json.loads((sorted_folder / ".vip-sorted.json").read_text())
    assert record["copies"]["x/a.png"]["mtime_ns"] == stat.st_mtime_ns
    copy = sorted_folder / "x" / "b.png"  # times changed and its source gone: vip cannot tell, so it keeps it
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    (images / "b.png").rename(tmp_path / "b-moved.png")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")
    assert code == 1 and "holds copies edited since vip data sort wrote them (x/b.png)" in err


def test_a_folder_of_copies_moved_with_its_times_sorts_again_with_force_once_its_images_moved(cli, tmp_path):
    """--copy makes "a folder that can move to another machine": `cp -a`/`rsync -a` keep each copy's size and
    modification time but give it a new status-change time, and the images are elsewhere there. --force
    refused every copy as edited (ctime differed, and no source to compare bytes with)."""
    images, labels, sorted_folder = _sorted_copies(cli, tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(sorted_folder, moved, copy_function=shutil.copy2)  # new files, times kept
    images.rename(tmp_path / "img-there")
    code, _, err = cli("data", "sort", labels, "--images", tmp_path / "img-there", "--out", moved, "--copy", "--force")
    assert code == 0, err


def test_a_folder_of_copies_whose_manifest_records_no_ctime_is_checked_by_size_and_time(cli, tmp_path):
    """vip 0.2's first releases recorded no status-change time: such a copy is not refused for lacking one."""
    images, labels, sorted_folder = _sorted_copies(cli, tmp_path)
    manifest = sorted_folder / ".vip-sorted.json"
    record = json.loads(manifest.read_text())
    for stats in record["copies"].values():
        del stats["ctime_ns"]
    manifest.write_text(json.dumps(record))
    os.chmod(sorted_folder / "x" / "a.png", 0o444)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")
    assert code == 0, err
    with open(sorted_folder / "x" / "b.png", "ab") as handle:
        handle.write(b"cropped")
    record = json.loads(manifest.read_text())
    for stats in record["copies"].values():
        del stats["ctime_ns"]
    manifest.write_text(json.dumps(record))
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")
    assert code == 1 and "holds copies edited since vip data sort wrote them (x/b.png)" in err


def test_a_folder_of_copies_sorted_by_an_earlier_vip_is_checked_by_its_names(cli, tmp_path):
    """A manifest of an earlier vip records no size or time of its copies: an edited one cannot be told."""
    images, labels, sorted_folder = _sorted_copies(cli, tmp_path)
    manifest = sorted_folder / ".vip-sorted.json"
    record = json.loads(manifest.read_text())
    del record["copies"]
    manifest.write_text(json.dumps(record))
    with open(sorted_folder / "x" / "b.png", "ab") as handle:
        handle.write(b"cropped")
    (sorted_folder / "y" / "notes.txt").write_text("mine")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")
    assert code == 1 and "did not write (y/notes.txt): --force would delete them" in _one_error(err)
    (sorted_folder / "y" / "notes.txt").unlink()
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--copy", "--force")[0] == 0


def test_a_folder_sorted_by_an_earlier_vip_is_checked_by_its_counts(cli, tmp_path):
    """A manifest of an earlier vip records how many entries each folder held, not their names."""
    images, labels, sorted_folder = _sorted_two(cli, tmp_path)
    manifest = sorted_folder / ".vip-sorted.json"
    record = json.loads(manifest.read_text())
    assert record["entries"] == {".": ["x", "y"], "x": ["a.png"], "y": ["b.png"]}
    assert record["layout"] == {".": 2, "x": 1, "y": 1}  # still written, for an earlier vip to read
    del record["entries"]
    manifest.write_text(json.dumps(record))
    (sorted_folder / "x" / "notes.txt").write_text("mine")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")
    assert code == 1 and "did not write (2 entries in x, 1 written)" in _one_error(err)
    (sorted_folder / "x" / "notes.txt").unlink()
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")[0] == 0


def test_a_folder_sorted_by_the_first_data_sort_builds_is_checked_by_its_file_count(cli, tmp_path):
    """The first builds of vip data sort (2026-11-29, until 10:34) recorded neither the entries nor the
    counts of each folder, only `images_sorted`: --force deleted a run or notes added there since."""
    images, labels, sorted_folder = _sorted_two(cli, tmp_path)
    manifest = sorted_folder / ".vip-sorted.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({key: record[key] for key in ("vip", "labels", "images", "columns", "split_seed",
                                                                 "files", "images_sorted")}))
    (sorted_folder / "runs" / "run1").mkdir(parents=True)
    (sorted_folder / "runs" / "run1" / "model.safetensors").write_text("mine")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")
    assert code == 1 and _one_error(err) == (
        f"error: --out {sorted_folder} holds files vip data sort did not write (3 files, 2 sorted): --force "
        "would delete them (move them out of the folder, or sort into a new folder)")
    assert (sorted_folder / "runs" / "run1" / "model.safetensors").read_text() == "mine"
    shutil.rmtree(sorted_folder / "runs")
    assert cli("data", "sort", labels, "--images", images, "--out", sorted_folder, "--force")[0] == 0


def test_a_class_name_too_long_for_the_file_system_names_the_fix(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", f"image,label\na,{'x' * 300}\nb,y\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    line = _one_error(err)
    assert code == 1 and line == f"error: class '{'x' * 40}'... is 300 bytes long, longer than a folder name can be " \
                                 "(255) (shorten it in the labels file)", line
    assert not (tmp_path / "sorted").exists()


def test_copies_are_files_and_links_leave_the_images_permissions_alone(cli, tmp_path):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    os.chmod(images / "a.png", 0o600)
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "linked")
    assert code == 0, err
    assert (images / "a.png").stat().st_mode & 0o777 == 0o600  # the staging folder's chmod skips links
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "copied", "--copy")
    copied = tmp_path / "copied" / "x" / "a.png"
    assert code == 0 and "(copies of the files under" in out and copied.is_file() and not copied.is_symlink()
    assert copied.read_bytes() == (images / "a.png").read_bytes()


def test_a_system_that_refuses_links_leaves_nothing_and_names_copy(cli, tmp_path, monkeypatch):
    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")

    def refuse(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", refuse)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")
    line = _one_error(err)
    assert code == 1 and "Operation not permitted" in line and line.endswith("(pass --copy (Windows makes links "
                                                                             "only in Developer Mode))")
    assert not (tmp_path / "sorted").exists() and not list(tmp_path.glob(".sorted*"))


@pytest.mark.skipif(not SHARED_ISIC.is_dir(), reason="the shared ISIC 2017 images are not beside this checkout")
def test_the_shared_isic_labels_sort_into_the_shipped_folders_counts(cli, tmp_path):
    code, out, err = cli("data", "sort", SHARED_ISIC / "labels_all_isic2017_part3.csv", "--images", SHARED_ISIC,
                         "--out", tmp_path / "isic")
    assert code == 0, err
    for split in ("train", "val", "test"):
        for name in ("melanoma", "nevus"):
            made = sorted(p.name for p in (tmp_path / "isic" / split / name).iterdir())
            assert made == sorted(p.name for p in (SHARED_ISIC / split / name).glob("*.jpg")), (split, name)
    assert "386 rows of the labels name no image" in err and "(seborrheic_keratosis 386; first" in err


def _lesions(tmp_path: Path, lesions: int = 12, per_lesion: int = 3) -> tuple[Path, Path]:
    """A HAM10000-like table: several images of each lesion, one class per lesion."""
    names = [f"ISIC_{lesion:03d}{shot}.jpg" for lesion in range(lesions) for shot in range(per_lesion)]
    images = _images(tmp_path / "HAM10000_images", names)
    rows = [f"HAM_{lesion:04d},ISIC_{lesion:03d}{shot},{'mel' if lesion % 2 else 'nv'}"
            for lesion in range(lesions) for shot in range(per_lesion)]
    return images, _csv(tmp_path / "meta.csv", "lesion_id,image_id,dx\n" + "\n".join(rows) + "\n")


def _split_of_lesions(folder: Path) -> dict[str, set[str]]:
    splits: dict[str, set[str]] = {}
    for path in folder.glob("*/*/*.jpg"):
        splits.setdefault(path.name[5:8], set()).add(path.parts[-3])
    return splits


def test_a_group_column_keeps_the_images_of_one_lesion_in_one_split(cli, tmp_path):
    """HAM10000 has several images of most lesions: split per image, a lesion's images land in train and
    test, and the test figures measure memory of the lesion."""
    from vipcli.data import load_dataset

    images, labels = _lesions(tmp_path)
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "dx", "--group-column", "lesion_id")
    assert code == 0, err
    assert "splits: made by 'lesion_id' (seed 1): the images of one lesion_id are in one split" in out
    splits = _split_of_lesions(tmp_path / "sorted")
    assert len(splits) == 12 and all(len(where) == 1 for where in splits.values())
    dataset = load_dataset(tmp_path / "sorted")
    for split in ("train", "val", "test"):
        assert dataset.counts(split)[0] > 0 and dataset.counts(split)[1] > 0, split
    assert dataset.counts("test") == [3, 3]  # 20% of 18 images per class: one lesion of 3
    again = tmp_path / "again"
    assert cli("data", "sort", labels, "--images", images, "--out", again, "--label-column", "dx",
               "--group-column", "lesion_id")[0] == 0
    assert _split_of_lesions(again) == splits  # seeded
    other = tmp_path / "other"
    assert cli("data", "sort", labels, "--images", images, "--out", other, "--label-column", "dx",
               "--group-column", "lesion_id", "--seed", "2")[0] == 0
    assert _split_of_lesions(other) != splits


def test_a_seed_that_would_seed_nothing_is_refused(cli, tmp_path):
    images, labels = _lesions(tmp_path)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--label-column",
                       "dx", "--seed", "2")
    assert code == 2 and _one_error(err) == (
        "error: --seed seeds the splits vip data sort makes by --group-column; here without --group-column, vip "
        "train makes the splits (with its own --seed) (drop --seed)")
    assert not (tmp_path / "sorted").exists()


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_a_seed_outside_what_the_other_commands_take_is_refused(cli, tmp_path, seed):
    """`vip data sort --seed -1` sorted (`splits: made by 'lesion_id' (seed -1)`), where `vip train --seed -1`,
    benchmark, rank and demo refuse any seed outside 0..2**32-1 as a usage error."""
    images, labels = _lesions(tmp_path)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--label-column",
                       "dx", "--group-column", "lesion_id", "--seed", seed)
    assert code == 2 and _one_error(err) == (
        f"error: Invalid value for '--seed': {seed} is outside 0..4294967295 (see 'vip data sort -h')")
    assert not (tmp_path / "sorted").exists()


def test_a_lesion_column_left_unused_is_pointed_out(cli, tmp_path):
    """Forgetting --group-column on HAM10000's metadata split a lesion's images between train and test, silently."""
    images, labels = _lesions(tmp_path)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--label-column", "dx")
    assert code == 0 and "warning: column 'lesion_id' repeats values (12 over 36 rows): if it names a patient or " \
                         "lesion, pass --group-column lesion_id" in err, err
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "grouped", "--label-column", "dx",
                       "--group-column", "lesion_id")
    assert code == 0 and "repeats values" not in err, err


def test_a_class_of_too_few_groups_to_split_is_refused(cli, tmp_path):
    images, labels = _lesions(tmp_path, lesions=4)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                       "--label-column", "dx", "--group-column", "lesion_id")
    line = _one_error(err)
    assert code == 1 and "class 'mel' has images of 2 groups only: train, val and test need one each" in line
    assert not (tmp_path / "sorted").exists()


def test_a_split_column_whose_groups_cross_splits_is_warned_about(cli, tmp_path):
    images, labels = _lesions(tmp_path, lesions=4, per_lesion=2)
    rows = labels.read_text().splitlines()
    splits = ["train", "test", "train", "train", "val", "val", "test", "test"]  # HAM_0000 in train and test
    _csv(labels, "\n".join([rows[0] + ",split"] + [f"{row},{split}" for row, split in zip(rows[1:], splits)]) + "\n")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "dx", "--group-column", "lesion_id")
    assert code == 0 and "split 'split'; group 'lesion_id'" in out, err
    assert "1 lesion_id value has images in more than one split of the labels (first: HAM_0000)" in err


def test_groups_the_labels_put_in_two_splits_are_warned_of_again_by_training_and_kept_in_split_json(cli, tmp_path,
                                                                                                   capsys):
    """`vip data sort` warned once that a lesion's images were in train and test, and nothing kept it: `vip train`
    on the sorted folder said nothing, its split.json had no trace, and its report showed clean test figures."""
    from vipcli.data import copies_record, load_dataset
    from vipcli.report.data_notes import copies_note

    images, labels = _lesions(tmp_path, lesions=4, per_lesion=2)
    rows = labels.read_text().splitlines()
    splits = ["train", "test", "train", "train", "val", "val", "test", "test"]  # HAM_0000 in train and test
    _csv(labels, "\n".join([rows[0] + ",split"] + [f"{row},{split}" for row, split in zip(rows[1:], splits)]) + "\n")
    assert cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--label-column", "dx",
               "--group-column", "lesion_id")[0] == 0
    capsys.readouterr()
    dataset = load_dataset(tmp_path / "sorted")
    assert "1 lesion_id value has images in more than one split of " in capsys.readouterr().err
    record = copies_record(dataset, lambda paths: [str(path) for path in paths])
    assert record["groups_across_splits"] == {"column": "lesion_id", "values": ["HAM_0000"]}
    assert "1 lesion_id value has images in more than one split (first: HAM_0000)" in copies_note(record)

    fixed = ["train", "train", "test", "test", "val", "val", "train", "train"]  # each lesion in one split
    _csv(labels, "\n".join([rows[0] + ",split"] + [f"{row},{split}" for row, split in zip(rows[1:], fixed)]) + "\n")
    assert cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--label-column", "dx",
               "--group-column", "lesion_id", "--force")[0] == 0
    capsys.readouterr()
    record = copies_record(load_dataset(tmp_path / "sorted"), lambda paths: [str(path) for path in paths])
    assert "more than one split" not in capsys.readouterr().err
    assert record["groups_across_splits"] == {"column": "lesion_id", "values": []} and copies_note(record) == ""
    shutil.copytree(tmp_path / "sorted", tmp_path / "plain", symlinks=True)
    (tmp_path / "plain" / ".vip-sorted.json").unlink()  # a folder vip data sort did not write: nothing recorded
    assert copies_record(load_dataset(tmp_path / "plain"), str)["groups_across_splits"] is None



def _with_splits(labels: Path, split_of) -> Path:
    """The lesions table with a split column (replacing one given before): `split_of(lesion number)` for each row."""
    rows = [",".join(row.split(",")[:3]) for row in labels.read_text().splitlines()]  # lesion_id,image_id,dx
    return _csv(labels, "\n".join([rows[0] + ",split"] + [f"{row},{split_of(int(row[4:8]))}" for row in rows[1:]]) + "\n")


def test_a_table_that_splits_train_and_test_only_gets_val_carved_by_group(cli, tmp_path):
    """Kermany's chest X-rays come as train/ and test/, several images per patient: with --group-column the
    table's splits were kept and no val made, and vip train then carved val per image, a patient's images in
    train and val (the split that picks the checkpoint and fits the calibration)."""
    from vipcli.data import load_dataset

    images, labels = _lesions(tmp_path, lesions=24)
    _with_splits(labels, lambda lesion: "test" if lesion >= 20 else "train")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "dx", "--group-column", "lesion_id")
    assert code == 0, err
    assert "val: made from train by 'lesion_id' (seed 1; the labels give no val): the images of one lesion_id are " \
           "in one split" in out
    splits = _split_of_lesions(tmp_path / "sorted")
    assert all(len(where) == 1 for where in splits.values()), splits
    assert {lesion for lesion, where in splits.items() if where == {"test"}} == {f"{n:03d}" for n in range(20, 24)}
    dataset = load_dataset(tmp_path / "sorted")
    assert dataset.counts("val") == [3, 3] and dataset.counts("test") == [6, 6]  # a lesion per class: 10% of 30
    other = tmp_path / "other"
    assert cli("data", "sort", labels, "--images", images, "--out", other, "--label-column", "dx",
               "--group-column", "lesion_id", "--seed", "2")[0] == 0  # the seed seeds the carving
    assert _split_of_lesions(other) != splits
    only_train = tmp_path / "only-train"
    _with_splits(labels, lambda lesion: "train")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", only_train, "--label-column", "dx",
                         "--group-column", "lesion_id")
    assert code == 0 and "val and test: made from train by 'lesion_id'" in out, err
    assert all(len(where) == 1 for where in _split_of_lesions(only_train).values())
    assert load_dataset(only_train).counts("test") == [6, 6] and load_dataset(only_train).counts("val") == [3, 3]


def test_a_table_with_val_keeps_its_splits_and_refuses_a_seed(cli, tmp_path):
    images, labels = _lesions(tmp_path, lesions=24)
    _with_splits(labels, lambda lesion: "test" if lesion >= 20 else "val" if lesion >= 18 else "train")
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted",
                         "--label-column", "dx", "--group-column", "lesion_id")
    assert code == 0 and "made from train" not in out, err
    assert {lesion for lesion, where in _split_of_lesions(tmp_path / "sorted").items() if where == {"val"}} == \
        {"018", "019"}
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "again", "--label-column",
                       "dx", "--group-column", "lesion_id", "--seed", "2")
    assert code == 2 and "here the table's split column 'split' gives the splits" in _one_error(err)
    _with_splits(labels, lambda lesion: "test" if lesion >= 2 else "train")  # one lesion of each class in train
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "few", "--label-column",
                       "dx", "--group-column", "lesion_id")
    assert code == 1 and "class 'mel' has training images of 1 group only: train and val need one each (give " \
        "the labels' split column val rows)" in _one_error(err)

def test_images_given_as_a_file_names_the_folder_to_pass(cli, tmp_path):
    images, labels = _lesions(tmp_path)
    image = sorted(p for p in images.iterdir() if p.is_file())[0]
    code, _, err = cli("data", "sort", labels, "--images", image, "--out", tmp_path / "sorted", "--label-column", "dx")
    assert code == 1 and _one_error(err) == (f"error: --images {image} is a file, not a folder (pass the folder "
                                             f"holding the images, such as --images {image.parent})")
    assert not (tmp_path / "sorted").exists()


def _refuse_under(folder: Path, code_: int):
    """A stand-in for tempfile's mkstemp/mkdtemp that fails with `code_` in `folder` (a read-only or
    full disk, which root's permissions cannot make)."""
    import tempfile

    real = {"mkstemp": tempfile.mkstemp, "mkdtemp": tempfile.mkdtemp}

    def make(name):
        def made(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == folder:
                raise OSError(code_, os.strerror(code_))
            return real[name](*args, dir=dir, **kwargs)
        return made

    return make("mkstemp"), make("mkdtemp")


def test_an_out_on_a_read_only_disk_is_one_line_before_anything_is_sorted(cli, tmp_path, monkeypatch):
    import errno
    import tempfile

    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    mkstemp, mkdtemp = _refuse_under(tmp_path / "ro", errno.EROFS)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    (tmp_path / "ro").mkdir()
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "ro" / "sorted")
    assert code == 1 and _one_error(err) == (f"error: --out {tmp_path / 'ro' / 'sorted'}: cannot write to "
                                             f"{tmp_path / 'ro'} (read-only file system) (choose a folder you can "
                                             "write to with --out)")
    assert list((tmp_path / "ro").iterdir()) == []


def test_a_disk_that_fills_up_as_the_record_is_written_is_one_line_and_leaves_nothing(cli, tmp_path, monkeypatch):
    import errno

    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    real_write = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == ".vip-sorted.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--copy")
    assert code == 1 and _one_error(err) == (f"error: cannot write {tmp_path / 'sorted'} (no space left on the "
                                             "device); nothing was written (free some space, then run the same "
                                             "command again)")
    assert not (tmp_path / "sorted").exists() and not list(tmp_path.glob(".sorted*"))


def test_copies_that_do_not_fit_on_the_disk_are_refused_before_any_is_made(cli, tmp_path, monkeypatch):
    from collections import namedtuple

    images = _images(tmp_path / "img", ["a.png", "b.png"])
    labels = _csv(tmp_path / "gt.csv", "image,label\na,x\nb,y\n")
    need = sum(path.stat().st_size for path in images.iterdir())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - need + 1, need - 1))
    copied = []
    monkeypatch.setattr(shutil, "copy2", lambda *args, **kwargs: copied.append(args))
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted", "--copy")
    line = _one_error(err)
    assert code == 1 and f"--out {tmp_path / 'sorted'}: the copies of 2 images take {need} B" in line, line
    assert line.endswith("(free some space, choose another --out, or sort without --copy (links take no room))")
    assert copied == [] and not (tmp_path / "sorted").exists()
    code, _, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted")  # links fit
    assert code == 0, err


def test_copies_are_not_synced_one_by_one_but_the_folder_is(cli, tmp_path, synced):
    """Thousands of copies synced one by one take minutes on a network disk: only the rename is synced."""
    _, _, sorted_folder = _sorted_copies(cli, tmp_path)
    assert [path for path in synced if path.suffix == ".png"] == []
    assert sorted_folder.parent in synced  # the folder's new name reached the disk


def test_the_next_command_it_suggests_keeps_an_out_with_a_space_whole(cli, tmp_path):
    import shlex

    images = _images(tmp_path / "flat", [f"img{n}.png" for n in range(4)])
    labels = _csv(tmp_path / "labels.csv", "image,diagnosis\n" + "".join(f"img{n},{('melanoma', 'nevus')[n % 2]}\n"
                                                                   for n in range(4)))  # classes with shipped packs
    code, out, err = cli("data", "sort", labels, "--images", images, "--out", tmp_path / "sorted here")
    assert code == 0, err
    line = next(line for line in err.splitlines() if line.startswith("next: "))
    assert shlex.split(line.removeprefix("next: ")) == ["vip", "train", "--data", str(tmp_path / "sorted here")]
