"""The image preprocessing a transformers model declares: its image processor's mean and std.

A local folder's `preprocessor_config.json` (or the `image_processor` of its `processor_config.json`) is
read with transformers' own `AutoImageProcessor`; one that cannot be read is an error naming the file,
never the family's defaults in silence (features from the wrong normalisation look like features).
"""

from __future__ import annotations

from pathlib import Path

from vipcli.errors import UsageError

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
