"""Bad data: huge images, linked and duplicated images, tiny data sets, hostile names, long symptoms (#14)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import error_lines, tiny_train_args
from vipcli.data import load_dataset
from vipcli.errors import VipError


def _png(path: Path, color=(120, 60, 30), size=(40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _distinct_dataset(root: Path, per_class: int = 10, classes=("alpha", "beta"), shade: int = 0) -> Path:
    """Class folders of images that all differ (no duplicates; another `shade` gives other images)."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", color=(10 * i, c % 256, (7 * i + c // 256 + shade) % 256))
    return root


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


# --- large images: decoded reduced, memory bounded -----------------------------------------------

PEAK = """
import re, sys
from pathlib import Path
from vipcli.images import load_image
image = load_image(sys.argv[1], min_side=512)
peak_kib = int(re.search(r"VmHWM:\\s*(\\d+)", Path("/proc/self/status").read_text()).group(1))
print(image.size[0], image.size[1], peak_kib // 1024)
"""


@pytest.mark.parametrize("mode", ["I;16", "P", "RGB"])
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")
def test_large_non_jpeg_images_are_decoded_reduced_in_bounded_memory(tmp_path, mode):
    side = 4200  # 17.6 MP; before #14 a 16-bit one took 6.5 GB at the 200 MP cap (about 560 MB here)
    ramp = np.add.outer(np.arange(side), np.arange(side))
    if mode == "I;16":
        image = Image.fromarray((ramp * 7 % 65536).astype(np.uint16))
    else:
        image = Image.fromarray((ramp % 256).astype(np.uint8)).convert("RGB")
        image = image.quantize(64) if mode == "P" else image
    path = tmp_path / "large.png"
    image.save(path, compress_level=1)
    del image, ramp
    done = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True)
    width, height, peak_mib = map(int, done.stdout.split())
    assert 1024 <= min(width, height) < 2048  # the shorter side stays >= 2 x 512
    raw_mib = side * side * {"I;16": 2, "P": 1, "RGB": 3}[mode] / 2**20
    assert peak_mib < 80 + 2 * raw_mib, (peak_mib, raw_mib)  # interpreter + the decoded pixels, no wide copy


def test_reduced_decoding_keeps_the_image(tmp_path):
    from vipcli.images import load_image

    left_dark = np.zeros((2400, 2400), dtype=np.uint16)
    left_dark[:, 1200:] = 60000
    path = tmp_path / "half.png"
    Image.fromarray(left_dark).save(path)
    image = np.asarray(load_image(path, min_side=512))
    assert image.shape == (1200, 1200, 3)
    assert image[:, :590].max() == 0 and image[:, 610:].min() == round(60000 / 65535 * 255)


# --- linked class folders and duplicate images -----------------------------------------------------


def test_a_class_folder_linked_to_another_class_is_refused(tmp_path):
    """`gamma -> beta` trained beta's images as gamma too, with only a warning; like a linked sub-folder
    into another class, it is refused before any work."""
    root = _distinct_dataset(tmp_path / "d")
    (root / "gamma").symlink_to(root / "beta", target_is_directory=True)
    with pytest.raises(VipError) as error:
        load_dataset(root)
    assert error.value.message == ("class folder gamma is a link to class folder beta: its images would be read as "
                                "both 'gamma' and 'beta'")
    assert error.value.hint == "remove the link gamma, or give it a folder of its own images"


def test_the_same_class_linked_into_another_split_is_named(tmp_path, capsys):
    """`test/alpha -> ../train/alpha` trains no image as two classes: it is warned about (a leak), not refused."""
    root = tmp_path / "d"
    _distinct_dataset(root / "train")
    _distinct_dataset(root / "test", per_class=3, shade=100)
    import shutil

    shutil.rmtree(root / "test" / "alpha")
    (root / "test" / "alpha").symlink_to(root / "train" / "alpha", target_is_directory=True)
    load_dataset(root)
    warnings = _warnings(capsys.readouterr().err)
    assert any(f"class folder test/alpha of {root} is the same folder as train/alpha (a symbolic link)" in w for w in warnings), \
        warnings


def test_the_same_image_in_train_and_test_is_named_with_its_digest(tmp_path, capsys):
    import hashlib

    root = tmp_path / "d"
    _distinct_dataset(root / "train")
    _distinct_dataset(root / "test", per_class=3, shade=100)
    leaked = root / "test" / "alpha" / "leaked.png"
    leaked.write_bytes((root / "train" / "alpha" / "7.png").read_bytes())
    load_dataset(root)
    warnings = _warnings(capsys.readouterr().err)
    digest = hashlib.sha256(leaked.read_bytes()).hexdigest()[:12]
    assert f"the same image (sha256 {digest}) is in test/alpha and train/alpha of {root}: " in warnings[0]
    assert "test/alpha/leaked.png" in warnings[0] and "train/alpha/7.png" in warnings[0]
    assert "1 image is in more than one split or class" in warnings[-1] and len(warnings) == 2


@pytest.mark.parametrize("command, absolute", [("train", False), ("benchmark", True)])
def test_every_warning_names_a_data_folders_files_relative_to_it_and_the_folder_once(cli, tmp_path, monkeypatch,
                                                                                      command, absolute):
    """`skipped d/test/alpha/broken.png` (as given; absolute when --data was) beside `the same image ...:
    test/alpha/leaked.png` (relative): the two named one data folder's files two ways."""
    root = _distinct_dataset(tmp_path / "d" / "train", per_class=6).parent
    _distinct_dataset(root / "val", per_class=3, shade=50)
    _distinct_dataset(root / "test", per_class=3, shade=100)
    (root / "test" / "alpha" / "leaked.png").write_bytes((root / "train" / "alpha" / "5.png").read_bytes())
    (root / "test" / "alpha" / "broken.png").write_bytes(b"not a png")
    (root / "train" / "beta" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    data = root if absolute else Path("d")  # the folder named as given; its files the same way either way
    options = (["--seeds", "1", "--methods", "linear-probe"] if command == "benchmark"
               else ["--method", "linear-probe", "--epochs", "1"])
    code, _, err = cli(command, "--data", data, "--backbone", "toy", "--shots", "2", "--out", tmp_path / "out",
                       "--no-cache", "--workers", "0", *options)
    assert code == 0, err
    warnings = _warnings(err)
    assert f"warning: skipped test/alpha/broken.png in {data}: not an image Pillow can read" in warnings, warnings
    assert any(w.startswith("warning: the same image (sha256 ") and f"is in test/alpha and train/alpha of {data}: "
               "train/alpha/5.png, test/alpha/leaked.png" in w for w in warnings), warnings
    assert any(w.startswith(f"warning: left out 1 file in {data} not named as an image vip reads") and
               ": train/beta/notes.txt; " in w for w in warnings), warnings
    assert sum(w.count(f"{data}/") for w in warnings) == 0, warnings  # no file named through the folder


def test_under_torchrun_only_rank_zero_warns_of_copies(tmp_path, capsys, monkeypatch):
    root = tmp_path / "d"
    _distinct_dataset(root / "train")
    _distinct_dataset(root / "test", per_class=3, shade=100)
    (root / "test" / "alpha" / "leaked.png").write_bytes((root / "train" / "alpha" / "7.png").read_bytes())
    monkeypatch.setenv("WORLD_SIZE", "2")
    warned = {}
    for rank in ("1", "0"):  # every rank loads the data; one warning each, not one per rank
        monkeypatch.setenv("RANK", rank)
        load_dataset(root)
        warned[rank] = _warnings(capsys.readouterr().err)
    assert warned["1"] == [] and len(warned["0"]) == 2, warned


def test_the_same_image_in_two_classes_is_named(tmp_path, capsys):
    root = _distinct_dataset(tmp_path / "d")
    (root / "beta" / "copy.png").write_bytes((root / "alpha" / "3.png").read_bytes())
    load_dataset(root)
    warnings = _warnings(capsys.readouterr().err)
    assert "alpha/3.png" in warnings[0] and "beta/copy.png" in warnings[0] and "alpha" in warnings[0]


def test_distinct_images_give_no_warning(tmp_path, capsys):
    load_dataset(_distinct_dataset(tmp_path / "d"))
    assert _warnings(capsys.readouterr().err) == []


# --- too few images to split ---------------------------------------------------------------------------


@pytest.mark.parametrize("classes, per_class", [(2, 1), (200, 2)])
def test_too_few_images_to_split_says_so_and_what_to_do(tmp_path, classes, per_class):
    root = _distinct_dataset(tmp_path / "d", per_class, [f"class{c:03d}" for c in range(classes)])
    with pytest.raises(VipError) as raised:
        load_dataset(root)
    message = str(raised.value)
    noun = "image" if per_class == 1 else "images"
    assert f"class 'class000' has {per_class} training {noun}" in message and "too few to split off" in message
    assert "needs at least 3 images in a class" in message and "{train,val,test}/<class>" in message
    assert ("more classes" in message) == (classes > 2)


def test_one_class_too_small_to_split_is_refused_by_name(tmp_path):
    """Two images of one class would give it a test image but no validation image."""
    root = tmp_path / "d"
    for shade, (name, count) in enumerate((("melanoma", 2), ("nevus", 5))):
        _distinct_dataset(root, count, [name], shade=100 * shade)
    with pytest.raises(VipError, match="class 'melanoma' has 2 training images: too few to split off test and val"):
        load_dataset(root)


def test_too_few_images_through_the_cli(cli, tmp_path, tiny_clip):
    root = _distinct_dataset(tmp_path / "d", 1, ["melanoma", "nevus"])
    code, _, err = cli(*tiny_train_args(root, tiny_clip, tmp_path / "run"))
    assert code == 1 and len(error_lines(err)) == 1 and "too few to split off test and val" in err
    assert "no readable validation images" not in err


# --- file names with control characters ------------------------------------------------------------------


def test_control_characters_in_file_names_are_printed_escaped(cli, isic_small, tiny_clip, tmp_path):
    forged = isic_small / "train" / "nevus" / "x.jpg\nerror: forged line \x1b[31m.jpg"
    forged.write_bytes(b"")
    code, out, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--shots", "all"))
    assert code == 0, err
    assert f"skipped train/nevus/x.jpg\\nerror: forged line \\x1b[31m.jpg in {isic_small}: empty file" in err
    assert not any(line.startswith("error: forged") for line in (out + err).splitlines())
    assert "\x1b" not in err
    image = isic_small / "test" / "nevus" / "y\r\x1b[2Kz.jpg"
    image.write_bytes(sorted((isic_small / "test" / "melanoma").iterdir())[0].read_bytes())
    code, out, err = cli("predict", image, "--model", tmp_path / "run", "--device", "cpu")
    assert code == 0 and "y\\r\\x1b[2Kz.jpg" in out and "\r" not in out and "\x1b" not in out


# --- symptom packs ----------------------------------------------------------------------------------------


def test_a_pack_of_10000_symptoms_loads_and_shows_fast(cli, tmp_path):
    import yaml

    from vipcli.packs import pack_from_dict

    document = {"name": "big", "symptoms": [f"finding number {i} of a big pack" for i in range(10_000)]}
    started = time.perf_counter()
    pack = pack_from_dict(document)
    assert len(pack.symptoms) == 10_000 and time.perf_counter() - started < 2.0  # was 152 s (quadratic)
    with pytest.raises(VipError, match="repeats 'Finding number 17 of a big  pack'"):
        pack_from_dict({**document, "symptoms": document["symptoms"] + ["Finding number 17 of a big  pack"]})
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(document))
    code, out, _ = cli("symptoms", "show", path)
    assert code == 0 and "10000. finding number 9999 of a big pack" in out


# --- symptoms longer than the text tower's context: one behaviour for every method ----------------------------


@pytest.mark.parametrize("method", ["vip", "vip-cop-only", "vip-mep-only", "symptom-zeroshot", "biomedcoop"])
def test_a_symptom_too_long_for_the_text_tower_is_refused_by_every_method(tiny_clip, method):
    from vipcli.methods import MethodSetup, build_method
    from vipcli.registry import load_backbone

    backbone = load_backbone("clip", str(tiny_clip), "none")
    long = "blob " * 80
    symptoms = {"alpha": ["round blob", long.strip()], "beta": ["square blob"]}
    with pytest.raises(VipError) as raised:
        build_method(method, MethodSetup(backbone, ["alpha", "beta"], symptoms))
    message = str(raised.value)
    assert "prompt too long for the text tower: '" in message and "blob blob" in message
    assert "the tower takes 77" in message
    assert "shorten it to at most" in message


def test_the_length_a_refusal_names_is_the_longest_that_is_kept(tiny_clip):
    from vipcli.methods import MethodSetup, build_method
    from vipcli.registry import load_backbone

    backbone = load_backbone("clip", str(tiny_clip), "none")

    def vip_with(words: int):  # a symptom of `words` words: words + start, end and full stop tokens
        symptoms = {"alpha": ["round blob", " ".join(["blob"] * words)], "beta": ["square blob"]}
        return build_method("vip", MethodSetup(backbone, ["alpha", "beta"], symptoms))  # 4 context tokens

    with pytest.raises(VipError) as raised:
        vip_with(71)  # 74 tokens + 4 context > 77
    assert "shorten it to at most 73 tokens" in str(raised.value)
    vip_with(70)  # 73 tokens: kept, as the message promises


@pytest.mark.parametrize("method", ["coop", "zeroshot", "biomedcoop", "tip-adapter", "clap"])
def test_a_class_name_too_long_for_the_text_tower_is_refused_too(tiny_clip, method):
    from vipcli.methods import MethodSetup, build_method
    from vipcli.registry import load_backbone

    backbone = load_backbone("clip", str(tiny_clip), "none")
    with pytest.raises(VipError, match="prompt too long for the text tower"):
        build_method(method, MethodSetup(backbone, ["alpha " * 80, "beta"], {}))


def test_a_prompt_that_fits_is_kept_whole(tiny_clip):
    from vipcli.methods import MethodSetup, build_method
    from vipcli.registry import load_backbone

    backbone = load_backbone("clip", str(tiny_clip), "none")
    words = "blob " * 70  # 70 words + start, end and full stop: 73 of 77 tokens
    classifier = build_method("symptom-zeroshot", MethodSetup(backbone, ["alpha", "beta"],
                                                              {"alpha": [words.strip()], "beta": ["square blob"]}))
    assert int(backbone.sequence_lengths(classifier.bank.ids).max()) == 73


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_a_too_long_symptom_through_the_cli_names_it_before_any_image_is_decoded(cli, isic_small, tiny_clip,
                                                                                   tmp_path, monkeypatch, command):
    import vipcli.features

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded before the symptoms were checked")

    monkeypatch.setattr(vipcli.features, "load_image", refuse)
    symptoms = tmp_path / "long.yaml"
    symptoms.write_text(json.dumps({"melanoma": ["dark " * 90], "nevus": ["round spot"]}))
    if command == "train":
        args = tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "symptom-zeroshot",
                               "--symptoms", symptoms)
    else:
        args = ["benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none", "--device", "cpu",
                "--methods", "zeroshot,vip", "--symptoms", symptoms, "--out", tmp_path / "bench"]
    code, _, err = cli(*args)
    assert code == 1 and len(error_lines(err)) == 1 and "'dark dark dark" in err and "77" in err
