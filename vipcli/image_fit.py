"""How a non-square image is fitted into the encoder's square (`--image-fit`): a step before the backbone's transform.

- `crop` (the default): the backbone's own transform, as it is. CLIP-style backbones resize the short side
  and keep the centre square (a portrait chest X-ray of 2:3 loses a sixth at the top and at the bottom);
  `siglip` squashes the whole image into its square.
- `pad`: the image is first padded to a square of its longer side, centred, with black, so nothing is cut.
  Black, not the image's border colour: it is the same for every image (a ruler, a label or a bright
  corner at one edge would otherwise fill the bars with its colour), it is what the background of an
  X-ray and the vignette of a dermoscopy image already are, and it is what Pillow's `ImageOps.pad(image,
  (side, side))` gives, which README advised before this option: runs trained on images padded that way
  see the same pixels.
- `squash`: the image is first resized to a square of its shorter side (bicubic), so nothing is cut and
  the aspect changes.

For a backbone whose own transform resizes larger than it crops (an image processor that resizes to 256 and
crops 224), `pad` and `squash` centre the image on a larger black square, whose margin is what that crop
takes (`vipcli.fit_margin`): the whole image is still seen, square images too.

The step runs before the backbone's transform for every view, the augmented training views too (their
random crops are taken from the padded or squashed image), so training sees what prediction sees. It
leaves the backbone plugin contract alone: `image_transform(train)` is the plugin's, and `crop` keeps
it (and the feature-cache keys) exactly as before. A run records its fit (`image_fit` in run.yaml and
the checkpoint's metadata); a run without one was made by an earlier vip, with `crop`.
"""

from __future__ import annotations

from typing import Callable

from vipcli.errors import UsageError, VipError
from vipcli.fit_margin import CentreCrop, centre_crop_of, padded_side

FITS = ("crop", "pad", "squash")
DEFAULT_FIT = "crop"
OPTION = "--image-fit"


def checked_fit(value: str) -> str:
    """`value` as an image fit, or a UsageError naming `--image-fit` and the choices."""
    fit = str(value).strip().lower()
    if fit not in FITS:
        raise UsageError(f"{OPTION} {value}: expected crop, pad or squash",
                         "crop keeps the backbone's own centre square; pad or squash keep the whole image")
    return fit


class PadToSquare:
    """PIL image -> the image centred on a black square of its longer side (nothing cut, nothing resized).

    With `crop` (the backbone's `CentreCrop`, for one that resizes larger than it crops), the square is larger
    (`vipcli.fit_margin.padded_side`): the margin it crops off is black, and the whole image lies in the crop.
    A class, not a closure: decoding workers started with `spawn` receive it pickled, and its repr (part
    of the feature-cache key) is the same in every process.
    """

    def __init__(self, crop: CentreCrop | None = None):
        self.crop = crop

    def __call__(self, image):
        from PIL import Image

        side = max(image.size) if self.crop is None else padded_side(max(image.size), self.crop)
        if image.width == image.height == side:
            return image
        square = Image.new(image.mode, (side, side))  # black (0 in every band)
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        return square

    def __repr__(self) -> str:
        return "PadToSquare(fill=black, centred" + _margin_words(self.crop) + ")"


class SquashToSquare:
    """PIL image -> the whole image resized (bicubic) to a square of its shorter side (the aspect changes); with
    `crop`, centred on the black square `PadToSquare(crop)` makes of it, so the backbone's crop keeps it whole."""

    def __init__(self, crop: CentreCrop | None = None):
        self.crop = crop

    def __call__(self, image):
        from PIL import Image

        side = min(image.size)
        if image.width != image.height:
            image = image.resize((side, side), Image.Resampling.BICUBIC)
        return image if self.crop is None else PadToSquare(self.crop)(image)

    def __repr__(self) -> str:
        return "SquashToSquare(side=shorter, bicubic" + _margin_words(self.crop) + ")"


def _margin_words(crop: CentreCrop | None) -> str:
    """The margin part of a step's repr ('' without one, so the keys of backbones that crop nothing stay as they were)."""
    return "" if crop is None else f", black margin for a crop of {crop.cropped} from {crop.resized}"


STEPS = {"pad": PadToSquare, "squash": SquashToSquare}


def fitted_transform(transform: Callable, fit: str, crop: CentreCrop | None = None) -> Callable:
    """A backbone's `image_transform(train)` with the step of `fit` before it; `transform` itself for `crop`.

    Args:
        transform: the backbone's transform.
        fit: crop, pad or squash.
        crop: the backbone's evaluation crop where it cuts a square's edges (`vipcli.fit_margin.centre_crop_of`):
            `pad` and `squash` then leave a black margin it crops off, for training views too (cut from the same
            square), so the whole image is seen.
    A torchvision `Compose` stays one `Compose` (the step first), so that its last steps still split off
    into the encoding process (`vipcli.pixels.view_pipeline`); any other transform is wrapped whole.
    """
    if checked_fit(fit) == DEFAULT_FIT:
        return transform
    from torchvision import transforms as T

    steps = transform.transforms if type(transform) is T.Compose else [transform]
    return T.Compose([STEPS[fit](crop), *steps])


def image_transform(backbone, train: bool, fit: str = DEFAULT_FIT) -> Callable:
    """`backbone.image_transform(train)` under image fit `fit` (with the margin its evaluation crop needs)."""
    crop = None if checked_fit(fit) == DEFAULT_FIT else centre_crop_of(backbone.image_transform(False))
    return fitted_transform(backbone.image_transform(train), fit, crop)


WORDS = {"crop": "crop (the backbone's own transform: CLIP-style ones keep the centre square)",
         "pad": "pad (centred on a black square: nothing cut)",
         "squash": "squash (resized to a square: nothing cut, aspect changed)"}


def fit_words(fit) -> str:
    """A recorded fit as a report shows it: `crop (...)` for none recorded (an earlier vip's), an unknown one as it is."""
    return WORDS.get(fit or DEFAULT_FIT, str(fit))


def run_fit(metadata: dict, where="the run") -> str:
    """The image fit a run's metadata records: `crop` for a run of an earlier vip (none recorded); a VipError
    naming `where` for a value this vip does not know (a later vip's)."""
    fit = metadata.get("image_fit")
    if fit is None:
        return DEFAULT_FIT
    if fit not in FITS:
        raise VipError(f"{where} was encoded with image fit {fit!r}, which this vip does not know "
                       f"(it knows {', '.join(FITS)})", "upgrade vip, or retrain the run with this one")
    return fit


def check_same_fit(asked: str | None, recorded: str, run_dir) -> None:
    """Refuse (UsageError) an `--image-fit` at predict time other than the one run `run_dir` was trained with:
    features of another fit are not those the run learned from. None (not given) and the same one pass."""
    if asked is None or checked_fit(asked) == recorded:
        return
    raise UsageError(f"{OPTION} {asked}: {run_dir} was trained with {OPTION} {recorded}, which it predicts with",
                     f"drop {OPTION}, or train a run with {OPTION} {checked_fit(asked)}")
