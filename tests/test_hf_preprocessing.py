"""`hf-clip` and `siglip` preprocessing against the folder's own image processor, on real images of several
sizes and modes (grayscale chest X-rays, RGB and palette dermoscopy), with tiny random models saved to disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import NO_SHARED_DATA, SHARED_DATA
from tiny_models import write_tiny_hf_clip, write_tiny_siglip
from vipcli.registry import load_backbone


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"hf-clip": folder, "siglip": folder} of tiny random models (32-pixel images)."""
    root = tmp_path_factory.mktemp("models")
    return {"hf-clip": write_tiny_hf_clip(root / "clip"), "siglip": write_tiny_siglip(root / "siglip")}


@pytest.fixture(scope="module")
def real_pictures(tmp_path_factory) -> list[Path]:
    """Image files made from real ones: odd sizes portrait and landscape, grayscale (PNG and JPEG), palette, tiny."""
    xrays = sorted((SHARED_DATA / "chest_xray" / "test" / "PNEUMONIA").glob("*.jpeg"))[:2]
    skins = sorted((SHARED_DATA / "isic2017_mel_nv" / "test" / "melanoma").glob("*.jpg"))[:2]
    if len(xrays) < 2 or len(skins) < 2:
        pytest.skip(NO_SHARED_DATA)
    folder = tmp_path_factory.mktemp("pictures")
    xray, other_xray, skin, other_skin = (Image.open(path).convert("RGB") for path in (*xrays, *skins))
    made = {"xray.png": xray.convert("L"), "xray-portrait-151x227.png": xray.convert("L").resize((151, 227)),
            "xray-landscape-301x197.jpg": other_xray.convert("L").resize((301, 197)),
            "skin-landscape-227x151.png": skin.resize((227, 151)), "skin-portrait-173x259.png": other_skin.resize((173, 259)),
            "skin-palette.png": skin.quantize(64), "skin-tiny-23x37.png": skin.resize((23, 37))}
    for name, image in made.items():
        image.save(folder / name)
    shutil.copyfile(skins[0], folder / "skin.jpg")
    return sorted(folder.iterdir())


def with_processor(folder: Path, processor, tmp_path: Path) -> Path:
    """A copy of model `folder` with `processor` saved into it."""
    copy = Path(shutil.copytree(folder, tmp_path / f"{folder.name}-{len(list(tmp_path.iterdir()))}"))
    processor.save_pretrained(copy)
    return copy


def assert_pixels_as_the_processor_gives(backbone_id: str, folder: Path, pictures: list[Path]) -> None:
    """vip's evaluation pixels (its decoder, transform and batch finishing) equal those of the folder's processor
    (transformers' PIL backend, the slow processor of transformers 4) on every picture, as read from its file."""
    from transformers import AutoImageProcessor

    from vipcli.image_fit import image_transform
    from vipcli.images import load_image
    from vipcli.pixels import view_pipeline

    backbone = load_backbone(backbone_id, None, str(folder))
    pipeline = view_pipeline(image_transform(backbone, False))
    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    for picture in pictures:
        ours = pipeline.finish(pipeline.make(load_image(picture))[None], "cpu")[0]  # [3, 32, 32]
        with Image.open(picture) as image:
            theirs = processor(images=image, return_tensors="pt")["pixel_values"][0].float()
        torch.testing.assert_close(ours, theirs, msg=lambda text: f"{picture.name}: {text}")


def clip_processor(**settings):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(**{"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}, **settings})


def siglip_processor(**settings):
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(**{"size": {"height": 32, "width": 32}, **settings})


@pytest.mark.parametrize("backbone_id, make, settings", [
    ("hf-clip", clip_processor, {"size": {"shortest_edge": 32}}),  # the model's size: no resize beyond the short side
    ("hf-clip", clip_processor, {"size": {"shortest_edge": 37}, "resample": 2}),
    ("hf-clip", clip_processor, {"size": {"shortest_edge": 27}}),  # smaller than the crop: black borders
    ("siglip", siglip_processor, {"size": {"height": 39, "width": 39}, "do_center_crop": True,
                                  "crop_size": {"height": 32, "width": 32}}),
])
def test_the_centre_is_cropped_where_the_processor_crops_it(backbone_id, make, settings, models, real_pictures,
                                                            tmp_path):
    """transformers crops at (side - crop) // 2, torchvision's CenterCrop at round((side - crop) / 2): a pixel
    apart for a portrait dermoscopy image of 173x259 (short side 32: long 47, 15 pixels to crop)."""
    assert_pixels_as_the_processor_gives(backbone_id, with_processor(models[backbone_id], make(**settings), tmp_path),
                                         real_pictures)


@pytest.mark.parametrize("backbone_id, make, settings", [
    ("hf-clip", clip_processor, {"rescale_factor": 2 / 255, "image_mean": [1, 1, 1], "image_std": [1, 1, 1]}),
    ("hf-clip", clip_processor, {"rescale_factor": 1 / 127.5, "do_normalize": False}),
    ("siglip", siglip_processor, {"rescale_factor": 1 / 127.5, "image_mean": [1, 1, 1], "image_std": [1, 1, 1]}),
    ("siglip", siglip_processor, {"rescale_factor": 1 / 65535}),
])
def test_a_rescale_factor_other_than_1_255_is_followed(backbone_id, make, settings, models, real_pictures, tmp_path):
    """Pixels to -1..1 by `rescale_factor` 2/255 and a mean and std of 1 (as some fine-tunes save it): vip divided by
    255 all the same."""
    assert_pixels_as_the_processor_gives(backbone_id, with_processor(models[backbone_id], make(**settings), tmp_path),
                                         real_pictures)


def test_another_rescale_factor_is_another_feature_cache_entry_and_another_backbone(models, tmp_path):
    """The transform, part of the cache key, names the factor (a hub model's processor is not among the files its
    identity digests), and a run of an earlier vip, which divided by 255, is warned of its other pixels."""
    from vipcli.features import backbone_identity, backbone_key

    folder = models["hf-clip"]
    plain = load_backbone("hf-clip", None, str(with_processor(folder, clip_processor(), tmp_path)))
    halved = load_backbone("hf-clip", None, str(with_processor(folder, clip_processor(rescale_factor=0.5 / 255),
                                                               tmp_path)))
    assert "ScaledPixels(factor=0.00196078431372549)" in backbone_identity(halved)["eval_transform"]
    assert backbone_identity(plain)["eval_transform"] != backbone_identity(halved)["eval_transform"]
    assert backbone_key(backbone_identity(plain)) != backbone_key(backbone_identity(halved))
    assert halved.describe()["image_processing"]["rescale_factor"] == 0.5 / 255
    assert "rescale_factor" not in plain.describe()["image_processing"]  # 1/255: what vip always did


@pytest.mark.parametrize("backbone_id, processor", [
    ("hf-clip", lambda: clip_processor(image_mean=[0, 0, 0], image_std=[1, 1, 1])),  # short side 40, crop 32
    ("siglip", lambda: siglip_processor(size={"height": 40, "width": 40}, do_center_crop=True, image_mean=[0, 0, 0],
                                        crop_size={"height": 32, "width": 32}, image_std=[1, 1, 1])),
    ("hf-clip", lambda: clip_processor(size={"shortest_edge": 40, "longest_edge": 48}, image_mean=[0, 0, 0],
                                       image_std=[1, 1, 1])),  # a square to 40x40
    ("siglip", lambda: siglip_processor(size={"max_height": 44, "max_width": 40}, do_center_crop=True,
                                        crop_size={"height": 32, "width": 32}, image_mean=[0, 0, 0], image_std=[1, 1, 1])),
])
@pytest.mark.parametrize("fit", ["pad", "squash"])
def test_pad_and_squash_show_the_whole_image_when_the_processor_crops_what_it_resized(backbone_id, processor, fit,
                                                                                       models, real_pictures, tmp_path):
    """A processor that resizes to 40 and crops 32 cut a tenth off each end of the padded (or squashed) square, the
    image's own ends: `pad` and `squash` now leave a black margin that the crop takes instead. Every edge of the
    image changes the view, and the crop keeps the resized square's brightness (the pixels it drops are black). Square
    images too: the crop cut their edges as well."""
    from vipcli.image_fit import image_transform

    backbone = load_backbone(backbone_id, None, str(with_processor(models[backbone_id], processor(), tmp_path)))
    transform = image_transform(backbone, False, fit)
    uncropped = [step for step in transform.transforms if "crop" not in type(step).__name__.lower()]
    for picture in real_pictures:
        with Image.open(picture) as opened:
            image = opened.convert("RGB")
        view = transform(image)  # [3, 32, 32]
        whole = uncropped[0](image)
        for step in uncropped[1:]:
            whole = step(whole)  # [3, 40, 40]: the resized square before the crop
        assert view.sum() >= 0.99 * whole.sum(), picture.name  # but for resampling's spill at the edges
        width, height = image.size
        for box in ((0, 0, width, 2), (0, height - 2, width, height), (0, 0, 2, height), (width - 2, 0, width, height)):
            edged = image.copy()
            edged.paste((255, 0, 255), box)
            assert not torch.equal(transform(edged), view), (picture.name, box)
    assert transform(image).shape == image_transform(backbone, True, fit)(image).shape == (3, 32, 32)


@pytest.mark.parametrize("backbone_id, make, settings", [
    # the short side to 40, unless the long side would pass 48: a portrait 173x259 goes to 32x48 (long side capped)
    ("hf-clip", clip_processor, {"size": {"shortest_edge": 40, "longest_edge": 48}}),
    ("hf-clip", clip_processor, {"size": {"shortest_edge": 36, "longest_edge": 44}, "resample": 2}),
    ("hf-clip", clip_processor, {"size": {"max_height": 40, "max_width": 40}}),  # whole image in the box, then cropped
    ("hf-clip", clip_processor, {"size": {"max_height": 48, "max_width": 36}}),
    ("hf-clip", clip_processor, {"do_resize": False}),  # the centre 32x32 of the image as it is (tiny ones padded)
    ("siglip", siglip_processor, {"size": {"shortest_edge": 40, "longest_edge": 48}, "do_center_crop": True,
                                  "crop_size": {"height": 32, "width": 32}}),
    ("siglip", siglip_processor, {"size": {"max_height": 44, "max_width": 44}, "do_center_crop": True,
                                  "crop_size": {"height": 32, "width": 32}}),
    ("siglip", siglip_processor, {"do_resize": False, "do_center_crop": True, "crop_size": {"height": 32, "width": 32}}),
])
def test_a_capped_boxed_or_absent_resize_before_a_centre_crop_is_followed(backbone_id, make, settings, models,
                                                                         real_pictures, tmp_path):
    """`longest_edge` beside `shortest_edge`, `max_height` and `max_width`, and `do_resize: false` were read as a plain
    resize to the short side (or to the tower's side): vip resized where the processor did not, or to another size."""
    folder = with_processor(models[backbone_id], make(**settings), tmp_path)
    assert_pixels_as_the_processor_gives(backbone_id, folder, real_pictures)


@pytest.mark.parametrize("height, width", [(259, 173), (173, 259), (37, 23), (151, 227), (32, 32), (48, 20), (1, 97)])
@pytest.mark.parametrize("size", [{"shortest_edge": 40, "longest_edge": 48}, {"shortest_edge": 30, "longest_edge": 100},
                                  {"shortest_edge": 50, "longest_edge": 40}, {"max_height": 40, "max_width": 40},
                                  {"max_height": 48, "max_width": 36}])
def test_the_resized_size_is_computed_as_transformers_computes_it(height, width, size):
    """Every rounding of transformers' own functions, odd and extreme aspects included."""
    from transformers.image_transforms import get_size_with_aspect_ratio
    from transformers.image_utils import get_image_size_for_max_height_width

    from vipcli.processor_steps import ProcessorResize

    theirs = (get_image_size_for_max_height_width((height, width), size["max_height"], size["max_width"])
              if "max_height" in size else
              get_size_with_aspect_ratio((height, width), size["shortest_edge"], size["longest_edge"]))
    assert ProcessorResize(size).output_size(height, width) == tuple(theirs)


def refusal(backbone_id: str, folder: Path, cli, monkeypatch) -> str:
    """The one error line `vip backbones check` gives for `folder`, refused before any weights load."""
    from transformers import CLIPModel, SiglipModel

    from conftest import error_lines

    for model in (CLIPModel, SiglipModel):
        monkeypatch.setattr(model, "from_pretrained", lambda *a, **k: pytest.fail("the weights were loaded"))
    code, _, err = cli("backbones", "check", backbone_id, "--pretrained", folder)
    assert code == 2 and len(error_lines(err)) == 1, err
    return error_lines(err)[0]


@pytest.mark.parametrize("backbone_id, make, settings, words", [
    ("hf-clip", clip_processor, {"size": {"shortest_edge": 32}, "do_center_crop": False},
     "resizes the short side to 32 and crops nothing (do_center_crop false)"),
    ("siglip", siglip_processor, {"size": {"shortest_edge": 32, "longest_edge": 48}},
     "resizes the short side to 32 (the long side to at most 48) and crops nothing (do_center_crop not set)"),
    ("siglip", siglip_processor, {"size": {"max_height": 32, "max_width": 32}},
     "resizes images to fit in 32x32 (max_height x max_width) and crops nothing (do_center_crop not set)"),
    ("siglip", siglip_processor, {"do_resize": False},
     "does not resize images (do_resize false) and crops nothing (do_center_crop not set)"),
])
def test_a_resize_that_keeps_the_aspect_without_a_centre_crop_is_refused(backbone_id, make, settings, words, models,
                                                                         tmp_path, cli, monkeypatch):
    """transformers gives such a processor's images at their own aspect, which the 32x32 tower fails on (vip cropped
    the centre square all the same, or squashed it, giving other pixels than the model was trained on)."""
    folder = with_processor(models[backbone_id], make(**settings), tmp_path)
    assert refusal(backbone_id, folder, cli, monkeypatch) == (
        f"error: the image processor {folder / 'preprocessor_config.json'} {words}: an image that is not square keeps "
        "its aspect, but the model's vision tower takes 32x32 images (set do_center_crop true with crop_size "
        '{"height": 32, "width": 32} (as CLIP processors do), or size {"height": 32, "width": 32} to resize the '
        "whole image to the square (as SigLIP processors do))")


@pytest.mark.parametrize("backbone_id, make", [("hf-clip", clip_processor), ("siglip", siglip_processor)])
def test_a_longest_edge_alone_is_refused_as_transformers_cannot_resize_by_it(backbone_id, make, models, tmp_path,
                                                                             cli, monkeypatch):
    """transformers' processor fails on every image with `size: {"longest_edge": N}`; vip resized to the tower's side."""
    from transformers import AutoImageProcessor

    folder = with_processor(models[backbone_id], make(size={"longest_edge": 32}), tmp_path)
    with pytest.raises(ValueError, match="Size must contain"), Image.new("RGB", (40, 50)) as image:
        AutoImageProcessor.from_pretrained(folder, backend="pil")(images=image)
    assert refusal(backbone_id, folder, cli, monkeypatch).startswith(
        f"error: the image processor {folder / 'preprocessor_config.json'} has size {{\"longest_edge\": 32}}, which "
        "transformers' image processor cannot resize an image by (it fails on every image: it needs shortest_edge, "
        'height and width, or max_height and max_width) (set its size to {"shortest_edge": 32}')
