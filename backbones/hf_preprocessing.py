"""The image preprocessing a transformers model declares: its image processor's size, crop, resampling, mean and std.

vip's image transform follows the processor (a CLIP processor resizes the short side and crops the centre; a
SigLIP one resizes the whole image to its square; a short side capped by `longest_edge`, a `max_height` x
`max_width` box or `do_resize: false`, each before a centre crop, as transformers computes them), and refuses one
whose output the vision tower cannot take (a processor left at 224 pixels beside a model fine-tuned at 336, a
resize that keeps the image's aspect with no centre crop after it, a `longest_edge` alone), as transformers' own
pipeline would fail.
A local folder's `preprocessor_config.json` (or the `image_processor` of its `processor_config.json`) is
read with transformers' own `AutoImageProcessor`; one that cannot be read is an error naming the file,
never the family's defaults in silence (features from the wrong normalisation look like features).
"""

from __future__ import annotations

import json
from pathlib import Path

from vipcli.errors import UsageError
from vipcli.processor_steps import DEFAULT_RESCALE, ProcessorResize

PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def preprocessor_file(folder: Path | None) -> Path | None:
    """The image processor's file in a local model folder (None for a hub id or a folder without one)."""
    if folder is None:
        return None
    return next((folder / name for name in PREPROCESSOR_FILES if (folder / name).is_file()), None)


def load_image_processor(source: str, folder: Path | None):
    """transformers' image processor of `source` (a hub id or a local folder), or None when it has none.

    Args:
        source: what `AutoImageProcessor.from_pretrained` reads.
        folder: the local folder `source` is, or None for a hub id.
    Raises:
        UsageError: a local folder's processor file that transformers cannot read (broken JSON, an
            unknown processor type), naming the file.
    """
    from transformers import AutoImageProcessor

    if folder is not None:
        found = preprocessor_file(folder)
        if found is None:
            return None
        try:
            return AutoImageProcessor.from_pretrained(str(folder))
        except Exception as error:  # noqa: BLE001 - any reason: the file is what the user fixes
            from vip_backbones.hub import short_detail

            raise UsageError(f"cannot read the image processor {found}: {short_detail(error)}",
                             "fix or remove the file (vip then uses the model family's mean and std), or save "
                             "the processor again with AutoProcessor.save_pretrained") from error
    try:
        return AutoImageProcessor.from_pretrained(source)
    except Exception:  # noqa: BLE001 - a hub model without an image processor: the family's defaults
        return None


RESAMPLING = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}  # PIL's codes


def _field(size, key: str) -> int | None:
    """`size[key]` of an image processor's size (a dict in transformers 4, a SizeDict in 5), or None."""
    if size is None:
        return None
    value = size.get(key) if hasattr(size, "get") else getattr(size, key, None)
    return None if value is None else int(value)


SIZE_KEYS = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width", "min_pixels", "max_pixels")


def _size_words(size) -> str:
    """An image processor's size as its JSON says it (the keys it sets)."""
    return json.dumps({key: _field(size, key) for key in SIZE_KEYS if _field(size, key) is not None})


def _resizing(processor, where: str, model_size: int) -> tuple[int | tuple[int, int] | dict | None, bool]:
    """(resize, squash): what the processor resizes an image to, read in the order transformers' `resize` reads its
    size: the short side capped by the long one ({"shortest_edge", "longest_edge"}), the short side (an int), a box
    the image fits in with its aspect kept ({"max_height", "max_width"}), the whole image to (height, width) (squash
    True); None for `do_resize: false`, the tower's side for a processor without a size.

    Raises:
        UsageError: a size transformers cannot resize by (`longest_edge` alone, pixel counts): it fails on every image.
    """
    if getattr(processor, "do_resize", True) is False:
        return None, False
    size = getattr(processor, "size", None)
    short, long = _field(size, "shortest_edge"), _field(size, "longest_edge")
    box = {key: _field(size, key) for key in ("max_height", "max_width")}
    height, width = _field(size, "height"), _field(size, "width")
    if short and long:
        return {"shortest_edge": short, "longest_edge": long}, False
    if short:
        return short, False
    if all(box.values()):
        return box, False
    if height and width:
        return (height, width), True
    if size is None or _size_words(size) == "{}":
        return model_size, False
    raise UsageError(f"the image processor {where} has size {_size_words(size)}, which transformers' image processor "
                     "cannot resize an image by (it fails on every image: it needs shortest_edge, height and width, "
                     "or max_height and max_width)",
                     f'set its size to {{"shortest_edge": {model_size}}} (with a crop_size of {model_size}x{model_size}) '
                     f'or {{"height": {model_size}, "width": {model_size}}}, as the processor of the model these '
                     "weights were trained as does")


def _resize_words(resize) -> str:
    """What a processor's resize does, in words, for an error."""
    if resize is None:
        return "does not resize images (do_resize false)"
    if isinstance(resize, tuple):
        return f"resizes images to {resize[0]}x{resize[1]}"
    if isinstance(resize, int):
        return f"resizes the short side to {resize}"
    if "max_height" in resize:
        return f"resizes images to fit in {resize['max_height']}x{resize['max_width']} (max_height x max_width)"
    return f"resizes the short side to {resize['shortest_edge']} (the long side to at most {resize['longest_edge']})"


def processor_preprocessing(processor, where: str, model_size: int) -> dict:
    """What vip's transform takes from an image processor: mean, std, resize, squash, interpolation, rescale (and its
    factor), normalize.

    Args:
        processor: a transformers image processor (CLIPImageProcessor, SiglipImageProcessor, ...).
        where: the processor's file or hub id, for the error.
        model_size: the side of the square image the vision tower takes (vision_config.image_size).
    Returns:
        {"mean", "std", "resize": the short side (with squash: the (height, width)) resized to before the centre
        crop, a dict for a short side capped by `longest_edge` or a `max_height` x `max_width` box (as the
        processor's size says it), None for no resize (`do_resize: false`), "squash": resize the whole image
        (SigLIP) instead of its short side, "interpolation", "rescale" and "normalize": the processor's do_rescale
        (pixels times rescale_factor) and do_normalize (mean and std), true unless it sets them false,
        "rescale_factor": what rescaling multiplies the pixels by (1/255 unless it says)}.
    Raises:
        UsageError: the processor gives images of another size than the model takes (a crop of another size, or
            no centre crop after a resize that keeps the image's aspect), or has a size transformers cannot
            resize by.
    """
    resize, squash = _resizing(processor, where, model_size)
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    made = _resize_words(resize)
    if crop is None and not squash:
        flag = getattr(processor, "do_center_crop", None)
        raise UsageError(f"the image processor {where} {made} and crops nothing (do_center_crop "
                         f"{'false' if flag is False else 'not set'}): an image that is not square keeps its aspect, "
                         f"but the model's vision tower takes {model_size}x{model_size} images",
                         f'set do_center_crop true with crop_size {{"height": {model_size}, "width": {model_size}}} '
                         f'(as CLIP processors do), or size {{"height": {model_size}, "width": {model_size}}} to '
                         "resize the whole image to the square (as SigLIP processors do)")
    final = (_field(crop, "height"), _field(crop, "width")) if crop is not None else resize
    if final != (model_size, model_size):
        made += f" and crops {final[0]}x{final[1]}" if crop is not None else ""
        raise UsageError(f"the image processor {where} {made}, but the model's vision tower takes "
                         f"{model_size}x{model_size} images (vision_config.image_size in its config.json)",
                         "save the image processor of the model these weights were trained as into the folder "
                         "(AutoImageProcessor.from_pretrained(...).save_pretrained(folder)), or correct its "
                         "size and crop_size")
    resample, factor = getattr(processor, "resample", None), getattr(processor, "rescale_factor", None)
    return {"mean": tuple(processor.image_mean), "std": tuple(processor.image_std), "resize": resize,
            "squash": squash, "interpolation": RESAMPLING.get(int(resample), "bicubic") if resample is not None
            else "bicubic", "rescale": getattr(processor, "do_rescale", True) is not False,
            "normalize": getattr(processor, "do_normalize", True) is not False,
            "rescale_factor": DEFAULT_RESCALE if factor is None else float(factor)}


def resize_step(preprocessing: dict):
    """The `resize` `clip_style_transform` takes for `preprocessing`: its short side or square as it is, else a
    `ProcessorResize` step (a short side capped by `longest_edge`, a `max_height` x `max_width` box, no resize)."""
    resize = preprocessing["resize"]
    if resize is None or isinstance(resize, dict):
        return ProcessorResize(resize, preprocessing["interpolation"])
    return resize
