"""Image steps that do what a transformers image processor does where torchvision's own steps differ.

- `ProcessorCenterCrop`: transformers crops the centre at `(side - crop) // 2` (torchvision's `CenterCrop`
  rounds half of the difference, one pixel further when it is 3 modulo 4), and pads an image smaller than
  the crop with black placed at the ceiling of half the difference (torchvision at its floor).
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
