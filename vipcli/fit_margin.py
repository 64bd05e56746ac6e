"""How large `--image-fit pad`'s square must be for a backbone's centre crop to keep the whole image.

A backbone whose evaluation transform resizes larger than it crops (an image processor that resizes the short
side to 256 and crops 224, or SigLIP's squash to 448x448 then a 384 crop) cuts the edges of any square it gets,
the padded one too: `pad` would not show the whole image, which is what it is asked for. `CentreCrop` reads the
resize and the crop off the transform (a torchvision `Compose` with a `Resize` and then a centre crop, as
`clip_style_transform` makes), and `padded_side` gives the side of the black square on which the image, once
resized and cropped, lies whole inside the crop, whichever way the crop rounds its offsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class CentreCrop:
    """A transform's evaluation geometry: a square is resized to `resized` (height, width), then `cropped` is kept;
    `slack`: how many pixels short of `resized` the resize may fall for some squares (an image processor's
    `max_height` x `max_width` box, computed in floating point)."""

    resized: tuple[int, int]
    cropped: tuple[int, int]
    slack: int = 0

    def cuts(self) -> bool:
        """Whether the crop is smaller than the resized square on either axis (it cuts its edges)."""
        return any(c < r for c, r in zip(self.cropped, self.resized))


def _pair(size) -> tuple[int, int] | None:
    """A torchvision size (an int, a one- or two-element sequence) as (height, width); None for anything else."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) in (1, 2) and all(isinstance(s, int) for s in size):
        return (size[0], size[-1])
    return None


def centre_crop_of(transform: Callable) -> CentreCrop | None:
    """The `Resize` (or `ProcessorResize`) and the centre crop after it (`CenterCrop` or `ProcessorCenterCrop`) in a
    torchvision `Compose`, where that crop cuts a square's edges; None otherwise (a transform of another kind, no
    crop, no resize, or a crop of the whole square: `pad` needs no margin)."""
    from torchvision import transforms as T

    from vipcli.processor_steps import ProcessorCenterCrop, ProcessorResize

    steps = getattr(transform, "transforms", None) if type(transform) is T.Compose else None
    resized, slack = None, 0
    for step in steps or []:
        if isinstance(step, T.Resize):
            resized = _pair(step.size)
        elif isinstance(step, ProcessorResize):  # a square's size when it has one (not without a resize)
            resized, slack = step.square(), step.square_slack()
        elif resized is not None and isinstance(step, (T.CenterCrop, ProcessorCenterCrop)):
            cropped = _pair(tuple(step.size))
            geometry = CentreCrop(resized, cropped, slack) if cropped is not None else None
            return geometry if geometry is not None and geometry.cuts() else None
    return None


def _inside(start: int, length: int, side: int, resized: int, cropped: int) -> bool:
    """Whether pixels [start, start + length) of a `side` square, resized to `resized`, lie in the centre `cropped`
    (offset rounded down, as transformers, or half to even, as torchvision: both are checked)."""
    scale = resized / side
    first, last = start * scale, (start + length) * scale
    return all(first >= top and last <= top + cropped
               for top in {(resized - cropped) // 2, int(round((resized - cropped) / 2.0))})


def padded_side(long_side: int, crop: CentreCrop) -> int:
    """The side of the black square on which an image of longer side `long_side`, centred, survives `crop` whole."""
    side = max(long_side, math.ceil(long_side * max(r / c for r, c in zip(crop.resized, crop.cropped))))
    while not all(_inside((side - long_side) // 2, long_side, side, r - short, c)
                  for r, c in zip(crop.resized, crop.cropped) for short in range(crop.slack + 1)):
        side += 1
    return side
