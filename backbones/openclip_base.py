"""Shared loading and image side of the open_clip-based backbones (CLIP, BiomedCLIP)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import torch

from vipcli.backbone import Backbone, clip_style_transform
from vipcli.errors import UsageError, VipError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RANDOM_INIT_SEED = 0  # `--pretrained none` builds the same random towers every time
SCHEMAS = ("hf-hub:", "local-dir:")


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _register_config_file(arch: str) -> str:
    """Register an open_clip model-config JSON file and return the model name it defines."""
    import open_clip

    path = Path(arch)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"--arch {arch}: not a readable open_clip model-config JSON ({error})") from None
    if not isinstance(config, dict) or "vision_cfg" not in config or "text_cfg" not in config:
        raise UsageError(f"--arch {arch}: JSON has no 'vision_cfg'/'text_cfg'", "pass an open_clip model config")
    open_clip.add_model_config(path)
    return path.stem


def _offline_hint(arch: str, pretrained: str) -> str:
    return (
        "download them once on a connected machine (they are cached under ~/.cache/huggingface), "
        "or pass --pretrained /path/to/weights (.safetensors/.bin/.pt), or --pretrained none for random weights"
    )


def create_open_clip(arch: str, pretrained: str | None, device: torch.device):
    """Build an open_clip model with clear errors for every way the weights can be missing.

    Args:
        arch: open_clip model name, `hf-hub:`/`local-dir:` id, or a model-config JSON path.
        pretrained: open_clip tag, local weights file, `hf-hub:`/`local-dir:` id, or None for
            random weights (seeded, so the same towers come back every time).
    Returns:
        (model, model_name) with the model in eval mode on `device`.
    """
    import open_clip

    if arch.endswith(".json"):
        model_name = _register_config_file(arch)
    else:
        model_name = arch
    if pretrained and pretrained.startswith(SCHEMAS):
        model_name, pretrained = pretrained, None
    if not model_name.startswith(SCHEMAS) and model_name not in open_clip.list_models():
        raise UsageError(
            f"unknown open_clip architecture '{arch}'",
            "pass a name from open_clip.list_models() (e.g. ViT-B-16-quickgelu) or a model-config JSON file",
        )
    if pretrained and not Path(pretrained).exists() and not model_name.startswith(SCHEMAS):
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in tags:
            raise UsageError(
                f"--pretrained {pretrained}: not a file and not a known tag for {model_name}",
                f"tags for it: {', '.join(tags) or 'none'}; or a weights file, an hf-hub: id, or none",
            )
    random_init = not (pretrained or model_name.startswith(SCHEMAS))
    try:
        with _seeded() if random_init else contextlib.nullcontext(), _quiet_logging():
            model = open_clip.create_model(
                model_name, pretrained=pretrained, device=device, pretrained_text=not random_init
            )
    except (VipError, KeyboardInterrupt):
        raise
    except Exception as error:
        source = pretrained or model_name
        raise VipError(
            f"could not load weights '{source}' for {arch}: {type(error).__name__}: {str(error).splitlines()[0][:200]}",
            _offline_hint(arch, source),
        ) from error
    return model.eval(), model_name


@contextlib.contextmanager
def _quiet_logging():
    """open_clip logs routine notes as root-logger warnings; keep them off the user's screen."""
    import logging

    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _seeded():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        yield


class OpenClipBackbone(Backbone):
    """Image side, loading and identity shared by open_clip models; subclasses add the text path."""

    default_arch = "ViT-B-16-quickgelu"
    default_pretrained: str | None = "openai"

    def __init__(self, arch: str | None = None, pretrained: str | None = None, device=None):
        self.device = torch.device(device or "cpu")
        self.arch = arch or self.default_arch
        chosen = self.default_pretrained if pretrained is None else pretrained
        self.pretrained = None if (chosen or "").lower() in ("", "none") else chosen
        self.model, self.model_name = create_open_clip(self.arch, self.pretrained, self.device)
        self.logit_scale = self.model.logit_scale.detach().float().reshape(())
        self.embed_dim = int(self.model.visual.output_dim)

    def modules(self):
        return [self.model]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images.to(self.device))  # [B, D]

    def image_transform(self, train: bool):
        size = self.model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        cfg = getattr(self.model.visual, "preprocess_cfg", None) or {}
        mean, std = cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD)
        return clip_style_transform(int(size), mean, std, train)

    def describe(self) -> dict:
        import open_clip

        weights = self.pretrained or "none"
        identity = _file_identity(Path(weights)) if Path(weights).is_file() else weights
        arch = self.arch
        if arch.endswith(".json") and Path(arch).is_file():
            arch_digest = hashlib.sha256(Path(arch).read_bytes()).hexdigest()[:16]
            arch = f"{Path(arch).resolve()}#{arch_digest}"
        return {"arch": arch, "pretrained": weights, "weights": identity, "open_clip": open_clip.__version__}
