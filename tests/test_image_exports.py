"""Image files as hospital and dermoscopy exports write them: names that are not UTF-8, several
frames in one file, phone JPEGs of several pictures. Every image is made here with PIL, tiny."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

LATIN1_NAME = b"caf\xe9 scan.png"  # a Latin-1 name from an old archive: not UTF-8


def _disc_data(root: Path, per_class: int = 5) -> Path:
    """root/{melanoma,nevus}/<i>.png: two classes of 32x32 images a toy backbone tells apart."""
    for label, level in (("melanoma", 220), ("nevus", 30)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((32, 32, 3), level + i, dtype=np.uint8)  # [32, 32, 3]
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def _latin1_image(folder: Path) -> Path:
    """An image named in Latin-1 bytes in `folder`, as Python names it (its undecodable byte a surrogate)."""
    raw = os.path.join(os.fsencode(folder), LATIN1_NAME)
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(raw, format="PNG")
    return Path(os.fsdecode(raw))


def test_an_image_named_in_latin1_trains_predicts_and_resumes(cli, tmp_path):
    data = _disc_data(tmp_path / "data")
    odd = _latin1_image(data / "melanoma")
    code, _, err = cli("train", "--data", data, "--backbone", "toy", "--shots", "all", "--epochs", "1", "--views", "1",
                       "--out", tmp_path / "run", "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert "bug in vip" not in err, err
    code, out, err = cli("predict", odd, "--model", tmp_path / "run", "--report", tmp_path / "g.html")
    assert code == 0, err
    assert "caf\\xe9 scan.png" in (tmp_path / "g.html").read_text(encoding="utf-8")
    assert out.startswith(str(data / "melanoma" / "caf\\xe9 scan.png") + "  "), out  # the byte shown, not lost
    for suffix in ("jsonl", "csv"):
        out_file = tmp_path / f"p.{suffix}"
        for _ in range(2):  # the second run resumes: the record names the same file
            code, _, err = cli("predict", data / "melanoma", "--model", tmp_path / "run", "--out", out_file)
            assert code == 0, err
        assert "6 already there" in err, err
        if suffix == "csv":
            assert os.fsencode(odd) in out_file.read_bytes()  # the name's own bytes
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert str(odd) in [record["path"] for record in records]  # valid UTF-8, read back as the same path


def test_the_feature_cache_keeps_an_image_named_in_latin1(tmp_path, capsys):
    import torch

    from vipcli.features import FeatureCache
    from vipcli.registry import load_backbone

    odd = _latin1_image(tmp_path)
    cache = FeatureCache(tmp_path / "cache", load_backbone("toy", device="cpu"))
    features = {"eval": torch.arange(cache.dim, dtype=torch.float32)}  # [D]
    cache.put(odd, "digest", features)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1
    assert torch.equal(cache.get(odd, "digest")["eval"], features["eval"])  # found again, not "damaged"
    assert "warning" not in capsys.readouterr().err


def _frames(size=(40, 30), count=3) -> list:
    """`count` RGB images of `size`, each a different grey."""
    return [Image.new("RGB", size, (40 * i, 40 * i, 40 * i)) for i in range(count)]


def test_a_stack_of_frames_in_one_file_is_unreadable_with_the_fix(tmp_path):
    import pytest

    from vipcli.errors import ImageError
    from vipcli.images import load_image

    first, *others = _frames()
    first.save(tmp_path / "stack.tif", save_all=True, append_images=others)  # TIFF pages: a z-stack, a series
    first.save(tmp_path / "cine.webp", save_all=True, append_images=others, lossless=True)  # an animation
    for name in ("stack.tif", "cine.webp"):
        with pytest.raises(ImageError, match="3 frames of the same size in one (TIFF|WEBP) file .*export the frame"):
            load_image(tmp_path / name, 16)


def test_a_tiff_whose_other_pages_are_smaller_is_read_as_its_first(tmp_path):
    from vipcli.images import load_image

    first = Image.new("RGB", (40, 30), (200, 10, 10))
    first.save(tmp_path / "pyramid.tif", save_all=True, append_images=[first.resize((20, 15)), first.resize((10, 8))])
    image = load_image(tmp_path / "pyramid.tif")
    assert image.size == (40, 30) and image.getpixel((0, 0)) == (200, 10, 10)


def test_a_phone_jpeg_holding_a_second_picture_is_decoded_reduced_like_any_jpeg(tmp_path):
    from vipcli.images import load_image

    photo = Image.fromarray(np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (384, 1)), mode="L").convert("RGB")
    photo.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[photo.resize((128, 96))])
    photo.save(tmp_path / "plain.jpg", format="JPEG")
    with Image.open(tmp_path / "phone.jpg") as opened:
        assert opened.format == "MPO"  # as Pillow opens an iPhone's JPEG with an HDR gain map
    assert load_image(tmp_path / "phone.jpg", 32).size == load_image(tmp_path / "plain.jpg", 32).size == (128, 96)


def test_a_two_picture_jpeg_cached_by_an_earlier_vip_is_encoded_again(tmp_path):
    """Earlier versions decoded an MPO at full size, then reduced it: features of another decode. Its entries
    must not be mixed with today's (results never depend on which vip filled the cache); a plain JPEG keeps
    its entry under its bytes' digest alone."""
    import torch

    from vipcli.digests import file_digest
    from vipcli.features import FeatureCache, encode_images, entry_content
    from vipcli.registry import load_backbone

    photo = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1)), mode="L").convert("RGB")
    photo.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[photo.resize((16, 12))])
    photo.save(tmp_path / "plain.jpg", format="JPEG", icc_profile=b"\0" * 3000)  # an APP2 segment, not MPF
    digest = file_digest(tmp_path / "phone.jpg")
    assert entry_content(tmp_path / "phone.jpg", digest) != digest
    assert entry_content(tmp_path / "plain.jpg", "d") == "d"
    backbone = load_backbone("toy", device="cpu")
    fresh = encode_images(backbone, [tmp_path / "phone.jpg"], cache=FeatureCache(tmp_path / "cold", backbone))
    old = FeatureCache(tmp_path / "old", backbone)
    old.put(tmp_path / "phone.jpg", digest, {"eval": torch.zeros(1, old.dim)})  # as an earlier vip keyed it
    warm = encode_images(backbone, [tmp_path / "phone.jpg"], cache=old)
    assert torch.equal(warm.eval[0], fresh.eval[0]) and fresh.eval[0].abs().sum() > 0 and warm.encoded == 1


def test_reading_an_image_leaves_pillows_own_pixel_limit_as_it_was(tmp_path, monkeypatch):
    """A notebook that lowered (or lifted) Pillow's limit keeps it after vip reads an image."""
    from vipcli.images import load_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    Image.new("RGB", (40, 30)).save(tmp_path / "small.png")
    load_image(tmp_path / "small.png")
    assert Image.MAX_IMAGE_PIXELS == 5000
