"""Image views as 8-bit pixels between processes, turned into the encoder's floats where it runs.

A backbone's `image_transform` maps a PIL image to the float tensor its encoder takes. When that
transform is the usual torchvision `Compose([..., ToTensor(), Normalize(mean, std)])`, the
decoding workers stop before `ToTensor` and send uint8 pixels: a quarter of the bytes through
shared memory, and a quarter of the memory the encoding process touches (on a GPU machine that
process moves every view, and was the funnel of feature extraction). `ViewPipeline.finish` then
does what `ToTensor` + `Normalize` do, on a whole batch on the encoder's device, with the same
float32 operations, so the encoder sees the same numbers. Any other transform runs whole in the
workers, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class ViewPipeline:
    """How a view travels: `make` in a decoding worker, `finish` on a batch of them before the encoder."""

    make: Callable  # PIL RGB image -> [3, H, W] tensor (uint8 when `normalize` is set)
    normalize: Callable | None = None  # torchvision Normalize applied by `finish`; None: views are final

    def finish(self, batch: torch.Tensor, device) -> torch.Tensor:
        """[B, 3, H, W] views as `make` made them -> the float32 batch the encoder takes, on `device`."""
        batch = batch.to(device)
        if self.normalize is None:
            return batch
        if batch.dtype == torch.uint8:  # what ToTensor does to 8-bit pixels, then Normalize, in our own copy
            return self._normalize_own(batch.to(torch.float32).div_(255))
        return self.normalize(batch)

    def finish_many(self, chunks: list[torch.Tensor], device, keep: dict | None = None) -> torch.Tensor:
        """Views of several images ([n_i, 3, H, W] each, as `make` made them) -> one float32 batch [B, 3, H, W].

        The same numbers as `finish(torch.cat(chunks), device)`. On the CPU, 8-bit views are
        converted straight into a float buffer kept in `keep` from one batch to the next: no 8-bit
        batch is assembled and no fresh memory is written per batch (first writes to fresh pages
        cost more than the arithmetic: in a profile on this project's virtual machine, assembling
        and normalizing the batches took 4.9 s of the encoding process's time before, 1.9 s after).
        The batch returned is that buffer: use it before the next call.
        """
        device = torch.device(device)
        if device.type != "cpu" or self.normalize is None or any(c.dtype != torch.uint8 for c in chunks):
            return self.finish(torch.cat(chunks), device)
        total = sum(chunk.shape[0] for chunk in chunks)
        kept = keep.get("pixels") if keep is not None else None
        if kept is None or kept.shape[0] < total or kept.shape[1:] != chunks[0].shape[1:]:
            kept = torch.empty((total, *chunks[0].shape[1:]), dtype=torch.float32)  # [B, 3, H, W]
            if keep is not None:
                keep["pixels"] = kept
        batch, start = kept[:total], 0
        for chunk in chunks:
            batch[start:start + chunk.shape[0]].copy_(chunk)  # uint8 -> float32, exact
            start += chunk.shape[0]
        return self._normalize_own(batch.div_(255))

    def _normalize_own(self, batch: torch.Tensor) -> torch.Tensor:
        """`normalize` on a float batch this pipeline made itself, in place (the same operations)."""
        from torchvision.transforms import functional

        return functional.normalize(batch, self.normalize.mean, self.normalize.std, inplace=True)


class _Pixels:
    """PIL image -> its pixels [C, H, W] after a transform's PIL steps, in ToTensor's layout, not scaled.

    A class, not a closure: workers started with `spawn` (macOS, Windows) receive it pickled.
    """

    def __init__(self, head: Callable):
        self.head = head  # the transform's steps before ToTensor

    def __call__(self, image) -> torch.Tensor:
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(self.head(image)).contiguous()  # [C, H, W], uint8 for 8-bit images


def view_pipeline(transform: Callable) -> ViewPipeline:
    """Split `transform` when it ends in `ToTensor(), Normalize(...)`; otherwise keep it whole.

    Args:
        transform: a backbone's `image_transform(train)`.
    Returns:
        ViewPipeline whose `make` runs in the workers and whose `finish` completes a batch.
    """
    from torchvision import transforms as T

    steps = getattr(transform, "transforms", None)
    if (type(transform) is not T.Compose or not steps or len(steps) < 2 or type(steps[-2]) is not T.ToTensor
            or type(steps[-1]) is not T.Normalize):
        return ViewPipeline(transform)
    return ViewPipeline(_Pixels(T.Compose(steps[:-2])), steps[-1])
