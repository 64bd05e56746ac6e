"""Whether a transformers backbone's hub files can be had, told without importing torch or transformers.

`TransformersBackbone.__init__` runs `check_hub_files` before it imports transformers, and `vip train` /
`vip benchmark` run it for vip's own `hf-clip` and `siglip` after their option checks and before the data folder
is read (`check_hf_clip`, `check_siglip`, found by vip's registry through the entry-point group
`vip.backbone_offline_checks`, `vipcli.registry.check_weights_early`): offline, with the model not in the hub's
cache, the one missing-weights line comes in seconds, not after every image of the data was listed, hashed and
checked. Nothing here downloads or opens a model: it reads folder names in the hub cache, and asks
`vip_backbones.hub` (at most once a process) whether the hub can be reached.
"""

from __future__ import annotations

from pathlib import Path

from vip_backbones.hub import WEIGHT_SUFFIXES, check_weights_path, fail_fast_if_uncached
from vipcli.errors import VipError

HF_CLIP_DEFAULT = "openai/clip-vit-base-patch16"  # the `hf-clip` backbone's --pretrained
SIGLIP_DEFAULT = "google/medsiglip-448"  # the `siglip` backbone's --pretrained (gated)

HF_HINT = ("download it once on a connected machine (it is cached under ~/.cache/huggingface), "
           "or pass --pretrained /path/to/a/save_pretrained/folder, or --pretrained none --arch SOURCE "
           "for random weights (for timing and plumbing only)")
LOCAL_HINT = ("pass --pretrained a whole save_pretrained folder (config.json, every weight file, the tokenizer "
              "files, as save_pretrained wrote them), or --pretrained none --arch SOURCE for random weights (for "
              "timing and plumbing only)")
ARCH_SOURCES = "a config.json, a save_pretrained folder, or a cached hub id"
RANDOM_HINT = f"--pretrained none needs --arch ({ARCH_SOURCES}) when the default model is not available offline"
WEIGHTS_WHAT = "save_pretrained folder, a hub id"  # what a --pretrained of this family is, in check_weights_path


def local_path(source: str) -> Path | None:
    """`source` as an existing local file or folder, else None (then it is a hub id)."""
    path = Path(source).expanduser()
    return path if path.exists() else None


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a local model folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def warn_weights_beside_arch(arch: str | None, pretrained: str | None, default_pretrained: str) -> None:
    """Warn when `--arch` is a save_pretrained folder with weights but `--pretrained` was not given: --arch gives
    only the config and tokenizer, so the default weights would be loaded into it."""
    folder = local_path(arch) if arch and pretrained is None else None
    weights = weight_files(folder) if folder is not None and folder.is_dir() else []
    if weights:
        from vipcli import console

        console.warn(f"--arch {arch} holds weights ({weights[0].name}) that --arch does not load (it gives the config "
                     f"and tokenizer): the weights are {default_pretrained}'s; pass --pretrained {arch} to use that "
                     "folder's")


def chosen_sources(arch: str | None, pretrained: str | None, default_pretrained: str) -> tuple[str | None, str]:
    """(the weights, the config and tokenizer source) for `--arch arch --pretrained pretrained` of a backbone whose
    default model is `default_pretrained`: the weights are None for `none` (random), and the config and tokenizer
    come from --arch, else the weights, else the default model."""
    chosen = default_pretrained if pretrained is None else pretrained
    weights = None if chosen.strip().lower() == "none" else chosen
    return weights, arch or weights or default_pretrained


def hub_ids(weights: str | None, source: str) -> list[str]:
    """The hub ids among the weights and the config source, as `chosen_sources` returns them (local paths left out)."""
    return [value for value in dict.fromkeys([weights, source]) if value and local_path(value) is None]


def what_and_hint(arch: str | None, weights: str | None, ids: list[str]) -> tuple[str, str]:
    """(what the load reads, the fix) named in a load's missing-weights error: the config and tokenizer for random
    weights, else the weights; a local folder that fails (no hub ids) is incomplete or damaged, nothing to download."""
    if weights is None:  # --pretrained none reads only a config and tokenizer (from --arch, else the default id)
        return "the config and tokenizer", (f"pass --arch {ARCH_SOURCES}" if arch else RANDOM_HINT)
    return "weights", HF_HINT if ids else LOCAL_HINT


def check_hub_files(arch: str | None, pretrained: str | None, default_pretrained: str, model_class: str) -> None:
    """Without network, one VipError if the hub ids among the weights and the config source are not in the hub's
    cache (a local folder is left to the load, which names what it lacks).

    Args:
        arch, pretrained: the options as given (None: not given).
        default_pretrained: the backbone's default model (hub id).
        model_class: the transformers class, named in the error (e.g. "CLIPModel").
    """
    weights, source = chosen_sources(arch, pretrained, default_pretrained)
    ids = hub_ids(weights, source)
    if ids:
        thing, hint = what_and_hint(arch, weights, ids)
        fail_fast_if_uncached(ids, weights or source, model_class, hint, thing)


def check_before_data(arch: str | None, pretrained: str | None, default_pretrained: str, model_class: str) -> None:
    """What a transformers backbone's load checks first of its options: a --pretrained path that does not exist,
    then `check_hub_files` (with the load's warning when an --arch folder's own weights would not be used)."""
    weights, _ = chosen_sources(arch, pretrained, default_pretrained)
    check_weights_path(weights, WEIGHTS_WHAT)
    try:
        check_hub_files(arch, pretrained, default_pretrained, model_class)
    except VipError:
        warn_weights_beside_arch(arch, pretrained, default_pretrained)  # why the default's weights were asked for
        raise


def check_hf_clip(arch: str | None, pretrained: str | None) -> None:
    """The `hf-clip` backbone's early check (registered under `vip.backbone_offline_checks`)."""
    check_before_data(arch, pretrained, HF_CLIP_DEFAULT, "CLIPModel")


def check_siglip(arch: str | None, pretrained: str | None) -> None:
    """The `siglip` backbone's early check (registered under `vip.backbone_offline_checks`)."""
    check_before_data(arch, pretrained, SIGLIP_DEFAULT, "SiglipModel")
