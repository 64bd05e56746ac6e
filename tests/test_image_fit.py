"""`--image-fit crop|pad|squash`: how a non-square image meets the encoder's square, recorded in the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image, ImageOps

from conftest import ISIC, NO_SHARED_DATA, error_lines
from vipcli.backbone import clip_style_transform
from vipcli.errors import VipError
from vipcli.image_fit import PadToSquare, SquashToSquare, fitted_transform, image_transform

PLAIN = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # a transform whose tensor is the pixels / 255


@pytest.fixture(scope="module")
def toy():
    from vipcli.registry import load_backbone

    return load_backbone("toy", None, None, torch.device("cpu"))


def banded(width: int, height: int) -> Image.Image:
    """Blue, with red bands of a sixth of the long side at both of its ends (what a centre crop of 2:3 cuts)."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    band = max(width, height) // 6
    for box in ([(0, 0, width, band), (0, height - band, width, height)] if height > width
                else [(0, 0, band, height), (width - band, 0, width, height)]):
        image.paste((255, 0, 0), box)
    return image


@pytest.mark.parametrize("size", [(200, 300), (300, 200)])
def test_crop_cuts_the_ends_of_the_long_side_and_pad_and_squash_keep_them(size):
    picture = banded(*size)
    for fit, keeps_ends in (("crop", False), ("pad", True), ("squash", True)):
        view = fitted_transform(clip_style_transform(32, *PLAIN, train=False), fit)(picture)  # [3, 32, 32]
        assert tuple(view.shape) == (3, 32, 32)
        red = bool((view[0] > 0.5).any())
        assert red == keeps_ends, fit


@pytest.mark.parametrize("size", [(200, 301), (301, 200), (768, 512), (256, 256)])
def test_pad_centres_the_image_on_black_as_pillows_imageops_pad_does(size):
    image = Image.effect_noise(size, 60).convert("RGB")
    padded = PadToSquare()(image)
    assert padded.size == (max(size),) * 2
    assert padded.tobytes() == ImageOps.pad(image, (max(size),) * 2).tobytes()  # what README advised before
    if size[0] != size[1]:
        assert padded.getpixel((0, 0)) == (0, 0, 0)


def test_squash_resizes_the_whole_image_to_a_square_of_its_shorter_side():
    image = banded(768, 512)
    squashed = SquashToSquare()(image)
    assert squashed.size == (512, 512)
    assert squashed.getpixel((2, 256))[0] > 200 and squashed.getpixel((509, 256))[0] > 200  # both ends still there
    assert SquashToSquare()(squashed) is squashed


def test_crop_is_the_backbones_own_transform_and_keeps_the_feature_cache_key(toy):
    from vipcli.features import FeatureCache, backbone_identity

    own = toy.image_transform(False)
    assert fitted_transform(own, "crop") is own
    identity = backbone_identity(toy)
    assert "image_fit" not in identity  # the key of every cache written before the option
    assert identity["eval_transform"] == repr(toy.image_transform(False))
    assert identity["train_transform"] == repr(toy.image_transform(True))
    keys = {fit: FeatureCache(None, toy, fit).key for fit in ("crop", "pad", "squash")}
    assert keys["crop"] == FeatureCache(None, toy).key
    assert len(set(keys.values())) == 3  # pad and squash keep entries of their own


def test_training_views_are_cut_from_the_padded_image_and_still_travel_as_pixels(toy):
    from vipcli import features

    training = image_transform(toy, True, "pad")
    assert isinstance(training.transforms[0], PadToSquare)
    assert type(training.transforms[1]).__name__ == "RandomResizedCrop"
    evaluation, train_views = features._pipelines(toy, "squash")
    assert evaluation.normalize is not None and train_views.normalize is not None  # still split (uint8 views)


def test_a_square_image_has_the_same_features_under_every_fit(toy):
    from vipcli.features import encode_in_memory

    square = Image.effect_noise((64, 64), 50).convert("RGB")
    crop = encode_in_memory(toy, [square], fit="crop")
    for fit in ("pad", "squash"):
        assert torch.equal(encode_in_memory(toy, [square], fit=fit), crop)
    portrait = Image.effect_noise((64, 96), 50).convert("RGB")
    assert not torch.equal(encode_in_memory(toy, [portrait], fit="pad"), encode_in_memory(toy, [portrait]))


@pytest.fixture
def oblong(tmp_path) -> Path:
    """Real ISIC images made 3:2 and 2:3 (2 train, 1 val, 1 test per class), as the dermatologist's 768x512."""
    if not ISIC.is_dir():
        pytest.skip(NO_SHARED_DATA)
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for cls in ("melanoma", "nevus"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i, image in enumerate(sorted((ISIC / split / cls).glob("*.jpg"))[:n]):
                size = (96, 64) if i % 2 == 0 else (64, 96)
                Image.open(image).resize(size).save(tmp_path / "data" / split / cls / image.name)
    return tmp_path / "data"


def test_a_run_records_its_fit_and_predicts_with_it_without_being_told(cli, oblong, tmp_path):
    import vipcli.api as vip

    run = tmp_path / "run"
    result = vip.train(oblong, shots=2, backbone="toy", epochs=1, views=1, image_fit="pad", out=run, workers=0,
                       device="cpu")
    assert result.metrics["image_fit"] == "pad"
    assert yaml.safe_load((run / "run.yaml").read_text())["image_fit"] == "pad"
    assert json.loads((run / "metrics.json").read_text())["image_fit"] == "pad"
    model = vip.load(run, device="cpu")
    assert model.image_fit == "pad"
    new = tmp_path / "new.png"
    Image.open(next((oblong / "test" / "nevus").iterdir())).resize((60, 100)).save(new)
    cache = Path(os.environ["VIP_CACHE_DIR"]) / "features"
    folders = {p.name for p in cache.iterdir()}
    from_file = model.predict(new)
    assert {p.name for p in cache.iterdir()} == folders  # the new image went into the run's (pad) entries
    from_memory = model.predict(Image.open(new))
    assert from_memory.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
    code, out, err = cli("predict", new, "--model", run, "--json", "--device", "cpu", "--workers", "0")
    assert code == 0, err
    document = json.loads(out)
    assert document["image_fit"] == "pad"
    assert document["predictions"][0]["probabilities"] == pytest.approx(from_file.probabilities, abs=1e-4)
    assert cli("predict", new, "--model", run, "--image-fit", "pad", "--device", "cpu", "--workers", "0")[0] == 0
    code, _, err = cli("predict", new, "--model", run, "--image-fit", "squash", "--device", "cpu")
    assert code == 2 and error_lines(err) == [
        f"error: --image-fit squash: {run} was trained with --image-fit pad, which it predicts with (drop "
        "--image-fit, or train a run with --image-fit squash)"] and "Traceback" not in err


def test_a_run_of_an_earlier_vip_predicts_with_crop_and_an_unknown_fit_is_one_line(cli, tmp_path):
    from safetensors import safe_open

    fixture = Path(__file__).parent / "fixtures" / "run-v0.1.0"
    code, out, err = cli("predict", fixture / "images", "--model", fixture / "vip", "--json", "--no-cache",
                         "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert json.loads(out)["image_fit"] == "crop"
    from vipcli.checkpoint import read_checkpoint, write_run

    tensors, meta = read_checkpoint(fixture / "vip")
    run = write_run(tmp_path / "later", tensors, {**meta, "image_fit": "letterbox"}, {}, {})
    code, _, err = cli("predict", fixture / "images", "--model", run, "--device", "cpu")
    assert code == 1 and error_lines(err) == [
        f"error: {run / 'model.safetensors'} was encoded with image fit 'letterbox', which this vip does not know "
        "(it knows crop, pad, squash) (upgrade vip, or retrain the run with this one)"]
    with safe_open(str(run / "model.safetensors"), "pt") as handle:  # the header says so to tools too
        assert json.loads(handle.metadata()["metadata"])["image_fit"] == "letterbox"


def test_resuming_a_sweep_with_another_fit_is_refused_naming_the_option(tmp_path):
    from vipcli.sweep_folder import check_matches

    earlier = {"config": {"data": "d", "views": 8}}  # a sweep of an earlier vip: no fit recorded, so crop
    check_matches(earlier, {"data": "d", "views": 8, "image_fit": "crop"}, tmp_path)
    with pytest.raises(VipError, match=r"other settings \(--image-fit: stored crop, now pad\)"):
        check_matches(earlier, {"data": "d", "views": 8, "image_fit": "pad"}, tmp_path)
    stored = {"config": {"data": "d", "views": 8, "image_fit": "squash"}}
    with pytest.raises(VipError, match=r"--image-fit: stored squash, now crop"):
        check_matches(stored, {"data": "d", "views": 8, "image_fit": "crop"}, tmp_path)


def test_an_unknown_fit_is_refused_before_any_work(cli, tmp_path):
    import vipcli.api as vip

    code, _, err = cli("train", "--data", tmp_path / "nowhere", "--image-fit", "letterbox")
    assert code == 2 and error_lines(err) == [
        "error: --image-fit letterbox: expected crop, pad or squash (crop keeps the backbone's own centre square; "
        "pad or squash keep the whole image)"]
    with pytest.raises(VipError, match=r"image_fit='letterbox': expected 'crop', 'pad' or 'squash'"):
        vip.train(tmp_path / "nowhere", image_fit="letterbox")
    from vipcli.api import _image_fit

    assert _image_fit(" PAD") == "pad"  # as `--image-fit PAD` is taken


def test_symptoms_rank_ranks_on_the_images_as_the_fit_shows_them_and_says_how_to_train_so(cli, oblong):
    from vipcli.cli.symptoms_rank import train_options
    from vipcli.features import FeatureCache
    from vipcli.registry import load_backbone

    code, out, err = cli("symptoms", "rank", "--data", oblong, "--backbone", "toy", "--workers", "0", "--device", "cpu",
                         "--image-fit", "squash", "--json")
    assert code == 0, err
    assert json.loads(out)["image_fit"] == "squash"
    folders = [p.name for p in (Path(os.environ["VIP_CACHE_DIR"]) / "features").iterdir()]
    assert folders == [FeatureCache(None, load_backbone("toy", None, None), "squash").key]
    assert train_options("toy", None, None, 1, "squash") == " --backbone toy --image-fit squash"
    assert train_options("toy", None, None, 1) == " --backbone toy"


def test_the_pad_square_leaves_the_margin_a_centre_crop_takes_and_no_more():
    """A transform that resizes to 256 and crops 224 (or squashes to 40x40 and crops 32) cuts a square's edges: the
    padded square is the smallest on which the centred image lies inside the crop, whether the crop rounds its offset
    down (transformers) or half to even (torchvision). A crop of the whole square needs no margin."""
    from vipcli.fit_margin import CentreCrop, _inside, centre_crop_of, padded_side

    assert centre_crop_of(clip_style_transform(32, *PLAIN, train=False)) is None
    assert centre_crop_of(clip_style_transform(224, *PLAIN, train=False, resize=256)) == CentreCrop((256, 256), (224, 224))
    assert centre_crop_of(clip_style_transform(32, *PLAIN, train=False, resize=(40, 40), squash=True)) == CentreCrop(
        (40, 40), (32, 32))
    assert centre_crop_of(clip_style_transform(224, *PLAIN, train=True, resize=256)) is None  # a random crop: no centre
    for crop in (CentreCrop((256, 256), (224, 224)), CentreCrop((40, 40), (32, 32)), CentreCrop((37, 37), (32, 32))):
        for long_side in range(1, 700):
            side = padded_side(long_side, crop)
            assert _inside((side - long_side) // 2, long_side, side, crop.resized[0], crop.cropped[0])
            assert side == long_side or not _inside((side - 1 - long_side) // 2, long_side, side - 1, crop.resized[0],
                                                    crop.cropped[0]), (crop, long_side)


def test_pad_and_squash_keys_of_a_backbone_whose_crop_takes_the_whole_square_are_unchanged(toy):
    assert repr(image_transform(toy, False, "pad").transforms[0]) == "PadToSquare(fill=black, centred)"
    assert repr(image_transform(toy, True, "squash").transforms[0]) == "SquashToSquare(side=shorter, bicubic)"


def test_the_pad_square_of_a_processor_resize_step_is_what_that_step_crops_whole():
    """An image processor's short side capped by `longest_edge` resizes any square to the smaller side; a `max_height` x
    `max_width` box, computed in floating point, leaves some squares a pixel short (a padded side of 638 resized into
    a 44x40 box gives 39x39): the padded square keeps the image whole for the size the step really gives. No resize
    (`do_resize: false`): no margin helps, none is asked for."""
    from vipcli.fit_margin import CentreCrop, _inside, centre_crop_of, padded_side
    from vipcli.processor_steps import ProcessorResize

    def transform(size):
        return clip_style_transform(32, *PLAIN, train=False, resize=ProcessorResize(size), processor_crop=True)

    assert centre_crop_of(transform({"shortest_edge": 40, "longest_edge": 48})) == CentreCrop((40, 40), (32, 32))
    assert centre_crop_of(transform({"shortest_edge": 50, "longest_edge": 36})) == CentreCrop((36, 36), (32, 32))
    box = ProcessorResize({"max_height": 44, "max_width": 40})
    assert centre_crop_of(transform(box.size)) == CentreCrop((40, 40), (32, 32), slack=1)
    assert centre_crop_of(transform(None)) is None
    for long_side in range(1, 2100):
        side = padded_side(long_side, CentreCrop((40, 40), (32, 32), slack=1))
        resized = box.output_size(side, side)[0]
        assert _inside((side - long_side) // 2, long_side, side, resized, 32), (long_side, side, resized)
