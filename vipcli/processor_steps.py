"""Image steps that do what a transformers image processor does where torchvision's own steps differ.

- `ProcessorCenterCrop`: transformers crops the centre at `(side - crop) // 2` (torchvision's `CenterCrop`
  rounds half of the difference, one pixel further when it is 3 modulo 4), and pads an image smaller than
  the crop with black placed at the ceiling of half the difference (torchvision at its floor).
- `ProcessorResize`: the sizes torchvision's `Resize` cannot say, computed as transformers computes them: the
  short side to `shortest_edge` unless the long side would then pass `longest_edge` (`get_size_with_aspect_ratio`),
  or the whole image into `max_height` x `max_width` with its aspect kept (`get_image_size_for_max_height_width`);
  with no size (`do_resize: false`), the image as it is.
- `ScaledPixels`: the pixels times an image processor's `rescale_factor` (float64, then float32, as
  transformers' `rescale` computes them), for a factor other than `ToTensor`'s 1/255.

Classes, not closures: decoding workers started with `spawn` receive them pickled, and their repr (part of
the feature-cache key) names their settings, so another factor or crop is another cache entry.
"""

from __future__ import annotations

import math

import torch

DEFAULT_RESCALE = 1 / 255  # transformers' default rescale_factor, and what ToTensor divides by


class ProcessorCenterCrop:
    """PIL image -> its centre `height` x `width`, at transformers' offsets (`image_transforms.center_crop`)."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = (size, size) if isinstance(size, int) else tuple(size)  # (height, width)

    def __call__(self, image):
        """The crop, black-padded first (centred at the ceiling of half the missing size) where the image is smaller."""
        from PIL import Image

        height, width = self.size
        if image.height < height or image.width < width:
            canvas = Image.new(image.mode, (max(image.width, width), max(image.height, height)))  # black
            canvas.paste(image, (math.ceil((canvas.width - image.width) / 2),
                                 math.ceil((canvas.height - image.height) / 2)))
            image = canvas
        top, left = (image.height - height) // 2, (image.width - width) // 2
        return image.crop((left, top, left + width, top + height))

    def __repr__(self) -> str:
        return f"ProcessorCenterCrop(size={self.size}, offsets=floor)"


def aspect_capped_size(height: int, width: int, shortest: int, longest: int) -> tuple[int, int]:
    """(height, width) of an image resized to short side `shortest`, or to long side `longest` where the long side
    would otherwise pass it (transformers' `image_transforms.get_size_with_aspect_ratio`, its roundings included)."""
    short, long = min(height, width), max(height, width)
    size, raw = shortest, None
    if long / short * shortest > longest:
        raw = longest * float(short) / float(long)
        size = int(round(raw))
    if short == size:
        return height, width
    scale = size if raw is None else raw
    return (int(scale * height / width), size) if width < height else (size, int(scale * width / height))


def boxed_size(height: int, width: int, max_height: int, max_width: int) -> tuple[int, int]:
    """(height, width) of an image resized, its aspect kept, until one side meets the `max_height` x `max_width` box
    (transformers' `image_utils.get_image_size_for_max_height_width`: smaller images are enlarged)."""
    scale = min(max_height / height, max_width / width)
    return int(height * scale), int(width * scale)


class ProcessorResize:
    """PIL image -> resized as a transformers image processor resizes it for a `size` of `shortest_edge` with
    `longest_edge`, or of `max_height` with `max_width`; `size` None (`do_resize: false`) leaves the image as it is."""

    def __init__(self, size: dict | None, interpolation: str = "bicubic"):
        self.size = None if size is None else {key: int(value) for key, value in sorted(size.items())}
        self.interpolation = interpolation

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of `height` x `width` is resized to."""
        size = self.size
        if size is None:
            return height, width
        if "max_height" in size:
            return boxed_size(height, width, size["max_height"], size["max_width"])
        return aspect_capped_size(height, width, size["shortest_edge"], size["longest_edge"])

    def square(self) -> tuple[int, int] | None:
        """The (height, width) any square is resized to (the smaller of the two sides the size names; a box's float
        arithmetic may leave it a pixel short: `square_slack`), or None when it keeps its own size (no resize)."""
        if self.size is None:
            return None
        side = min(self.size.values())
        return side, side

    def square_slack(self) -> int:
        """How many pixels short of `square()` a square may be resized to: 1 for a box (its scale, computed in
        floating point, can leave `side * (box / side)` just under `box`), else 0."""
        return int(self.size is not None and "max_height" in self.size)

    def __call__(self, image):
        """The image resized with PIL (as transformers' PIL processor resizes), or itself where its size is kept."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import resize

        height, width = self.output_size(image.height, image.width)
        if (height, width) == (image.height, image.width):
            return image
        return resize(image, [height, width], interpolation=InterpolationMode(self.interpolation))

    def __repr__(self) -> str:
        return f"ProcessorResize(size={self.size}, interpolation={self.interpolation})"


class ScaledPixels:
    """PIL image -> float32 tensor [C, H, W] of its 8-bit values times `factor` (an image processor's rescale)."""

    def __init__(self, factor: float):
        self.factor = float(factor)

    def __call__(self, image) -> torch.Tensor:
        """The image's pixels times the factor, computed in float64 and stored as float32 (transformers' `rescale`)."""
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(image).to(torch.float64).mul_(self.factor).float()

    def __repr__(self) -> str:
        return f"ScaledPixels(factor={self.factor!r})"
