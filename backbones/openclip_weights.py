"""Whether an open_clip backbone's architecture and weights can be had, told without importing torch or open_clip.

`OpenClipBackbone.__init__` runs `check_openclip_weights` before it imports open_clip, and `vip train` /
`vip benchmark` run it after their option checks and before the data folder is read (`check_clip`, `check_biomedclip`, found by vip's registry
through the entry-point group `vip.backbone_offline_checks`, `vipcli.registry.check_weights_early`): offline, with the weights
not in the hub's cache, the one missing-weights line comes in seconds, not after every image of the data
was listed, hashed and checked. Nothing here downloads or opens a model: it reads file names in open_clip's
`model_configs/` and the hub cache, and asks `vip_backbones.hub` (at most once a process) whether the hub can be
reached, which answers at once where it is reachable or HF_HUB_OFFLINE is set.
"""

from __future__ import annotations

from pathlib import Path

from vip_backbones.hub import check_weights_path, fail_fast_if_uncached
from vipcli.errors import UsageError

SCHEMAS = ("hf-hub:", "local-dir:")
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"  # e.g. small-clip.json: --arch small-clip
CLIP_DEFAULTS = ("ViT-B-16-quickgelu", "openai")  # the `clip` backbone's --arch and --pretrained
BIOMEDCLIP_ID = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDCLIP_DEFAULTS = (BIOMEDCLIP_ID, None)  # the hub id carries its own weights
OWN_DEFAULTS = {"clip": CLIP_DEFAULTS, "biomedclip": BIOMEDCLIP_DEFAULTS}  # vip's own open_clip backbones

OFFLINE_HINT = ("download them once on a connected machine (they are cached under ~/.cache/huggingface), "
                "or pass --pretrained /path/to/weights (.safetensors/.bin/.pt), or --pretrained none for random "
                "weights (for timing and plumbing only)")
# `--pretrained none` with an hf-hub: architecture still reads its config (and tokenizer) from the hub
RANDOM_OFFLINE_HINT = ("--pretrained none still reads the model's config and tokenizer: download them once on a "
                       "connected machine (they are cached under ~/.cache/huggingface), or pass --arch with a local "
                       "open_clip model-config JSON")
# an hf-hub: architecture reads its config from the hub whatever --pretrained is: only a local --arch avoids it
HUB_OFFLINE_HINT = ("download the model once on a connected machine (it is cached under ~/.cache/huggingface), or "
                    "pass --arch with a local open_clip model-config JSON and --pretrained /path/to/weights "
                    "(.safetensors/.bin/.pt), or none for random weights (for timing and plumbing only); a "
                    "config whose text tower comes from transformers (BiomedCLIP's) must also name local folders "
                    "in its hf_model_name and hf_tokenizer_name")


def shipped_config(arch: str) -> Path | None:
    """The model-config JSON shipped with vip for `arch` (e.g. "small-clip"), if there is one."""
    path = SHIPPED_CONFIGS / f"{arch}.json"
    return path if "/" not in arch and path.is_file() else None


def config_file(arch: str) -> Path | None:
    """The model-config JSON `arch` names: a .json path, or a config shipped with vip."""
    if arch.endswith(".json"):
        return Path(arch).expanduser()
    return shipped_config(arch)


def unknown_architecture(arch: str) -> UsageError:
    """The error for an --arch that is neither an open_clip model name, a config file nor a config of vip's."""
    return UsageError(
        f"unknown open_clip architecture '{arch}'",
        "pass a name from open_clip.list_models() (e.g. ViT-B-16-quickgelu), a model-config JSON file, "
        f"or a config shipped with vip ({', '.join(p.stem for p in sorted(SHIPPED_CONFIGS.glob('*.json')))})",
    )


def open_clip_config_folders() -> list[Path]:
    """open_clip's `model_configs/` folders, found where it lies on sys.path without importing it (a second or
    more); none when it is not found there."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("open_clip")  # where it lies on sys.path, imported or not
    folders = [Path(folder) / "model_configs" for folder in (spec.submodule_search_locations or [])] if spec else []
    return [folder for folder in folders if folder.is_dir()]


def plain_name(arch: str) -> bool:
    """Whether `arch` is a plain model name: not a schema id, a config file, a config of vip's or a path."""
    return not (arch.startswith(SCHEMAS) or config_file(arch) is not None or "/" in arch or "\\" in arch)


def names_no_open_clip_config(arch: str) -> bool:
    """Whether `arch`, a plain model name, is certainly not one of open_clip's: its `model_configs/` folder,
    read without importing open_clip, has no `<arch>.json`. False when that cannot be told
    (open_clip not found where expected, or `arch` a schema id, a config file or a config of vip's)."""
    if not plain_name(arch):
        return False
    folders = open_clip_config_folders()
    return bool(folders) and not any((folder / f"{arch}.json").is_file() for folder in folders)


def chosen_weights(arch: str, pretrained: str | None, default_pretrained: str | None) -> tuple[str | None, bool]:
    """(the weights to load, random weights?) for `--arch arch --pretrained pretrained` of a backbone whose default
    weights are `default_pretrained`: None and True for `none`; an `hf-hub:`/`local-dir:` arch carries its own
    weights when no --pretrained is given (None, False)."""
    if pretrained is None and arch.startswith(SCHEMAS):
        chosen = None  # an hf-hub:/local-dir: model carries its own weights
    else:
        chosen = default_pretrained if pretrained is None else pretrained
    weights = None if (chosen or "").strip().lower() in ("", "none") else chosen
    # `--pretrained none` means random weights for every arch, an hf-hub:/local-dir: one included
    return weights, weights is None and (chosen is not None or not arch.startswith(SCHEMAS))


def check_openclip_weights(arch: str, pretrained: str | None, random_weights: bool) -> None:
    """Without network and without cached weights, one VipError before importing open_clip (seconds); an --arch
    open_clip does not have is named as such first (not as weights that cannot be downloaded).

    Args:
        arch: the architecture (the backbone's default filled in).
        pretrained, random_weights: as `chosen_weights` returns them.
    """
    if names_no_open_clip_config(arch):
        raise unknown_architecture(arch)
    check_weights_path(pretrained, "weights file (.safetensors/.bin/.pt), an open_clip tag")
    hub_ids = [v[len("hf-hub:"):] for v in (arch, pretrained or "") if v.startswith("hf-hub:")]
    tag = (pretrained and not pretrained.startswith(SCHEMAS) and not Path(pretrained).exists()
           and not arch.startswith(SCHEMAS))  # an hf-hub:/local-dir: model takes no tag
    if hub_ids and random_weights:
        fail_fast_if_uncached(hub_ids, arch, None, RANDOM_OFFLINE_HINT, thing="the config of")
    elif hub_ids:
        hint = HUB_OFFLINE_HINT if arch.startswith("hf-hub:") else OFFLINE_HINT
        weights_from = pretrained if pretrained is not None else arch  # an hf-hub: arch alone carries its weights
        weights_repo = weights_from[len("hf-hub:"):] if weights_from.startswith("hf-hub:") else None  # else a file
        fail_fast_if_uncached(hub_ids, pretrained or arch, arch, hint, weights_repo=weights_repo)
    elif tag:
        fail_fast_if_uncached(None, pretrained, arch, OFFLINE_HINT)


def check_before_data(backbone_id: str, arch: str | None, pretrained: str | None) -> None:
    """`check_openclip_weights` for vip's own open_clip backbone `backbone_id` (`clip`, `biomedclip`) with these
    options, before a command reads its data; any other id is left to its load."""
    defaults = OWN_DEFAULTS.get(backbone_id)
    if defaults is None:
        return
    arch = arch or defaults[0]
    check_openclip_weights(arch, *chosen_weights(arch, pretrained, defaults[1]))


def check_clip(arch: str | None, pretrained: str | None) -> None:
    """The `clip` backbone's early check (registered under `vip.backbone_offline_checks`)."""
    check_before_data("clip", arch, pretrained)


def check_biomedclip(arch: str | None, pretrained: str | None) -> None:
    """The `biomedclip` backbone's early check (registered under `vip.backbone_offline_checks`)."""
    check_before_data("biomedclip", arch, pretrained)
