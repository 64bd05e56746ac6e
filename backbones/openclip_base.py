"""`OpenClipBackbone`: the public base for backbones built with open_clip (CLIP, BiomedCLIP, QuiltNet...).

It loads any open_clip model (a model name, a model-config JSON, a config shipped in
`vip_backbones/configs`, or an `hf-hub:`/`local-dir:` id), with clear one-line errors for missing
weights, and provides the image side, `describe()` and `modules()`. Subclasses add the text path:
`vip_backbones.clip.ClipBackbone` (CLIP's causal text transformer) and
`vip_backbones.biomedclip.BiomedClipBackbone` (a Hugging Face BERT text tower). A plugin for another
published open_clip model usually only changes the defaults:

    class QuiltNetBackbone(ClipBackbone):
        default_arch = "hf-hub:wisdomik/QuiltNet-B-32"
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vip_backbones.hub import missing_weights_error, model_loading, pickled_weights_error, short_detail
from vip_backbones import openclip_weights
from vip_backbones.openclip_weights import (CLIP_DEFAULTS, HUB_OFFLINE_HINT, OFFLINE_HINT, RANDOM_OFFLINE_HINT, SCHEMAS,
                                            check_openclip_weights, chosen_weights, unknown_architecture)
from vip_backbones.openclip_weights import config_file as _config_file
from vip_backbones.openclip_weights import open_clip_config_folders as _open_clip_config_folders
from vip_backbones.openclip_weights import plain_name as _plain_name
from vipcli.backbone import Backbone, clip_style_transform, identity_taken_once
from vipcli.errors import UsageError, VipError
from vipcli.weights_identity import weights_file_identity

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RANDOM_INIT_SEED = 0  # `--pretrained none` builds the same random towers every time
# defined in openclip_weights (read before torch is imported), named here as before for plugins built on this base
SHIPPED_CONFIGS = openclip_weights.SHIPPED_CONFIGS
shipped_config = openclip_weights.shipped_config
names_no_open_clip_config = openclip_weights.names_no_open_clip_config


def _checkpoint_identity(path: Path) -> dict:
    """A loaded checkpoint file: in the Hugging Face cache, its name and blob (the file's content hash,
    the same on every machine and for every user); elsewhere, its name, size and sha256."""
    resolved, link = path.resolve(), path.absolute()
    in_hub_cache = (resolved != link and resolved.parent.name == "blobs"  # models--X/snapshots/<rev>/NAME
                    and resolved.parent.parent.name.startswith("models--")  # -> models--X/blobs/<hash>
                    and link.parent.parent.name == "snapshots")
    return {"file": path.name, "blob": resolved.name} if in_hub_cache else weights_file_identity(path)


def _open_clip_config_path(arch: str) -> Path | None:
    """The file holding the model config `arch` names, found without importing open_clip: a `local-dir:`
    folder's `open_clip_config.json`, an `hf-hub:` model's where the hub's local cache holds it, a config file,
    one of vip's, or one of open_clip's `model_configs/`; None for an `hf-hub:` model not yet downloaded or a name
    open_clip does not ship as a file."""
    if arch.startswith("local-dir:"):
        folder = arch[len("local-dir:"):]
        return Path(folder) / "open_clip_config.json" if folder else None
    if arch.startswith("hf-hub:"):
        return _hub_cached_config(arch[len("hf-hub:"):])
    path = _config_file(arch)
    if path is None and _plain_name(arch):
        path = next((folder / f"{arch}.json" for folder in _open_clip_config_folders()
                     if (folder / f"{arch}.json").is_file()), None)
    return path


def _hub_cached_config(repo: str) -> Path | None:
    """The `open_clip_config.json` of the Hugging Face Hub model `repo` (its `main` revision, which open_clip
    loads) where the hub's local cache holds it, as open_clip's first load leaves it; None otherwise."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, "open_clip_config.json")
    except Exception:  # a repo id the hub refuses: open_clip says so when it loads the model
        return None
    return Path(found) if isinstance(found, str) else None


def _open_clip_config(arch: str) -> dict | None:
    """The model config `arch` names (`_open_clip_config_path`, read without importing open_clip; a `local-dir:`
    folder's or hub model's file holds it under `model_cfg`), or None when that cannot be told without importing it
    (an `hf-hub:` model not yet downloaded, a name open_clip does not ship as a file, an unreadable file)."""
    path = _open_clip_config_path(arch)
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, ValueError):
        return None
    if arch.startswith(("local-dir:", "hf-hub:")):  # the folder's or hub's file holds it under `model_cfg`
        config = config.get("model_cfg") if isinstance(config, dict) else None
    return config if isinstance(config, dict) else None


def text_tower_needs_transformers(arch: str, pretrained: str | None) -> bool:
    """Whether the open_clip model of `arch`/`pretrained` may build its text tower with transformers: True
    unless its config is known, without importing open_clip, to have no `hf_model_name` (CLIP's own towers)."""
    # an hf-hub:/local-dir: --pretrained is the model, whatever --arch says (`create_open_clip`)
    config = _open_clip_config(pretrained if pretrained and pretrained.startswith(SCHEMAS) else arch)
    text = config.get("text_cfg") if config is not None else None
    return not isinstance(text, dict) or bool(text.get("hf_model_name"))


def import_open_clip(arch: str, pretrained: str | None):
    """`open_clip`, imported for the model `arch`/`pretrained`: in the `vip` command, without transformers
    when the model's text tower does not need it (`vipcli.lean_imports`); a model that does, loaded later in
    the same process, gets open_clip's Hugging Face adapter imported again, now with transformers."""
    import importlib
    import importlib.util

    from vipcli import lean_imports

    needs = text_tower_needs_transformers(arch, pretrained)
    with contextlib.nullcontext() if needs else lean_imports.left_out("transformers"):  # (once imported: nothing)
        import open_clip
        import open_clip.hf_model as hf_model

    if needs and hf_model.transformers is None and importlib.util.find_spec("transformers") is not None:
        importlib.reload(hf_model)  # HFTextEncoder, kept by open_clip.model, reads these module globals
    return open_clip


def _register_config_file(arch: str, path: Path) -> str:
    """Register an open_clip model-config JSON file and return the model name it defines."""
    import open_clip

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"--arch {arch}: not a readable open_clip model-config JSON ({error})") from None
    if not isinstance(config, dict) or "vision_cfg" not in config or "text_cfg" not in config:
        raise UsageError(f"--arch {arch}: JSON has no 'vision_cfg'/'text_cfg'", "pass an open_clip model config")
    open_clip.add_model_config(path)
    return path.stem


def create_open_clip(arch: str, pretrained: str | None, device: torch.device, timings: dict | None = None, *,
                     random_weights: bool = False, checkpoint_paths: list | None = None):
    """Build an open_clip model with clear errors for every way the weights can be missing.

    Args:
        arch: open_clip model name, `hf-hub:`/`local-dir:` id, a model-config JSON path, or the name
            of a config shipped in `vip_backbones/configs` (e.g. "small-clip").
        pretrained: open_clip tag, local weights file, `hf-hub:`/`local-dir:` id, or None for
            random weights (seeded, so the same towers come back every time).
        random_weights: random weights even when `arch` is an `hf-hub:`/`local-dir:` id (which
            otherwise carries its own weights): its config is read, its checkpoint is not loaded.
        checkpoint_paths: if given, receives the paths of the checkpoint files loaded into the model
            (what an `hf-hub:`/`local-dir:` id resolved to).
        timings: if given, receives the seconds spent importing open_clip (`import_s`, about 0 once
            imported), building the model (`build_s`, downloads included) and loading its checkpoint
            (`weights_s`).
    Returns:
        (model, model_name) with the model in eval mode on `device`.
    """
    started = time.perf_counter()
    open_clip = import_open_clip(arch, pretrained)
    imported = time.perf_counter()

    config = _config_file(arch)
    model_name = _register_config_file(arch, config) if config is not None else arch
    if pretrained and pretrained.startswith(SCHEMAS):
        model_name, pretrained = pretrained, None
    if not model_name.startswith(SCHEMAS) and model_name not in open_clip.list_models():
        raise unknown_architecture(arch)
    if pretrained and not Path(pretrained).exists() and not model_name.startswith(SCHEMAS):
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in tags:
            raise UsageError(
                f"--pretrained {pretrained}: not a file and not a known tag for {model_name}",
                f"tags for it: {', '.join(tags) or 'none'}; or a weights file, an hf-hub: id, or none",
            )
    # open_clip ignores `pretrained` for an hf-hub:/local-dir: model; a weights file given with one is loaded here
    own_file = pretrained if pretrained and model_name.startswith(SCHEMAS) and not random_weights else None
    if own_file and not Path(own_file).is_file():
        raise UsageError(f"--pretrained {own_file}: not a weights file",
                         f"with --arch {model_name}, pass a local weights file (.safetensors/.bin/.pt), none for "
                         "random weights, or no --pretrained for the model's own weights")
    random_init = random_weights or not (pretrained or model_name.startswith(SCHEMAS))
    uses_hub = model_name.startswith("hf-hub:") or bool(pretrained and not Path(pretrained).exists())
    # random weights are drawn on the CPU whatever `device` is (as the other backbones draw theirs): CUDA's
    # generator gives other numbers for the same seed, so a GPU would build other towers under the same
    # describe(), and a run trained there would predict with other weights on the CPU
    build_on = torch.device("cpu") if random_init else device
    with model_loading(uses_hub) as offline_reason:
        try:
            with _seeded() if random_init else skipped_weight_init(), torch.device(build_on), \
                    checkpoint_weights_assigned() as checkpoints:
                model = open_clip.create_model(
                    model_name, pretrained=None if own_file else pretrained, device=build_on,
                    pretrained_text=not random_init, load_weights=not (random_init or own_file),
                )
                if own_file:
                    import open_clip.factory as factory

                    factory.load_checkpoint(model, own_file)
            built = time.perf_counter()
        except (VipError, KeyboardInterrupt):
            raise
        except Exception as error:
            if pretrained and Path(pretrained).is_file():  # a local file that is not weights of this model
                raise pickled_weights_error(pretrained, error) or VipError(f"could not load the weights file {pretrained} into {arch}: {short_detail(error)}",
                               "pass weights of this architecture (--arch); a vip run's model.safetensors holds "
                               "its prompts, not a backbone") from error
            if random_init and model_name.startswith(SCHEMAS):
                raise missing_weights_error(model_name, arch, offline_reason, error, RANDOM_OFFLINE_HINT,
                                            thing="the config of") from error
            hint = HUB_OFFLINE_HINT if model_name.startswith("hf-hub:") else OFFLINE_HINT
            raise missing_weights_error(pretrained or model_name, arch, offline_reason, error, hint) from error
    model = model.to(device)  # random weights: moved once drawn (a no-op for a model built there)
    hub_or_folder = any(name.startswith(SCHEMAS) for name in (model_name, pretrained or ""))
    if not random_init and hub_or_folder and checkpoints is not None and not checkpoints.paths:
        # built without initialisation for weights that never came: its tensors hold whatever memory held
        raise VipError(f"no weights were found for {pretrained or model_name} (open_clip loaded no checkpoint)",
                       "pass --pretrained with a weights file (.safetensors/.bin/.pt), or --pretrained none "
                       "for random weights")
    if checkpoint_paths is not None and checkpoints is not None:
        checkpoint_paths.extend(checkpoints.paths)
    if timings is not None:
        weights = checkpoints.seconds if checkpoints is not None else 0.0
        timings.update(import_s=round(imported - started, 3), build_s=round(built - imported - weights, 3),
                       weights_s=round(weights, 3))
    return model.eval(), model_name


def joint_dim(model) -> int:
    """D, the size of the joint image-text space of an open_clip model: its towers' `output_dim`, or the width of
    CLIP's own text projection where the image tower does not say it (a timm tower, e.g. ConvNeXt's, has none)."""
    for tower in (getattr(model, "visual", None), getattr(model, "text", None)):
        if isinstance(getattr(tower, "output_dim", None), int):
            return int(tower.output_dim)
    return int(model.text_projection.shape[-1])  # [W, D]


def load_open_clip_tokenizer(model_name: str, arch: str):
    """`open_clip.get_tokenizer(model_name)`, which may fetch a Hugging Face tokenizer, with the same
    fast offline failure and quiet logs as `create_open_clip`."""
    import open_clip

    with model_loading(model_name.startswith("hf-hub:")) as offline_reason:
        try:
            return open_clip.get_tokenizer(model_name)
        except (VipError, KeyboardInterrupt):
            raise
        except Exception as error:
            hint = HUB_OFFLINE_HINT if model_name.startswith("hf-hub:") else OFFLINE_HINT
            raise missing_weights_error(f"tokenizer of {model_name}", arch, offline_reason, error, hint) from error


INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                  "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def skipped_weight_init():
    """Build modules without their random initialisation (every `torch.nn.init` function a no-op):
    for models whose every weight is then loaded from a checkpoint.

    open_clip loads a full checkpoint with `strict=True`, so no parameter can stay uninitialised.
    (transformers' `no_init_weights` does the same but imports its modeling code, seconds on a CPU.)
    """
    import importlib

    def skip(tensor, *args, **kwargs):
        return tensor

    # torch.nn.init itself, and torch modules that import its functions by name (MultiheadAttention...)
    modules = [importlib.import_module(name) for name in ("torch.nn.init", "torch.nn.modules.activation",
                                                          "torch.nn.modules.transformer", "torch.nn.modules.linear",
                                                          "torch.nn.modules.conv", "torch.nn.modules.normalization",
                                                          "torch.nn.modules.sparse")]
    originals = [(module, name, getattr(module, name)) for module in modules for name in INIT_FUNCTIONS
                 if hasattr(module, name)]
    try:
        for module, name, _ in originals:
            setattr(module, name, skip)
        yield
    finally:
        for module, name, function in originals:
            setattr(module, name, function)


@dataclass
class CheckpointLoads:
    """The checkpoints open_clip loaded inside `checkpoint_weights_assigned`, and how long it took."""

    paths: list[str] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.contextmanager
def checkpoint_weights_assigned():
    """Inside the block, open_clip gives a model the tensors of the checkpoint it loads instead of
    copying them into the parameters built for them (`load_state_dict(assign=True)`).

    That is the case when every tensor of the checkpoint already has its parameter's shape, dtype,
    device and a contiguous layout: a checkpoint read on the CPU for a model on the CPU. A safetensors
    file is memory-mapped, so its weights are then read from the page cache as they are first used,
    without a second copy in memory (for ViT-B/16 on a 2-core CPU: 0.2 s less when the machine is
    quiet, about 1 s when it is busy, and 590 MiB less peak memory). Values are the same bits either
    way. Otherwise (a model on a GPU, a float16 checkpoint for a float32
    model, tied weights) the tensors are copied exactly as before.

    Yields a `CheckpointLoads` (the checkpoints open_clip loaded in the block and the seconds it took),
    or None where this open_clip has no `load_checkpoint` to observe (then nothing is changed).
    """
    import open_clip.factory as factory

    original = getattr(factory, "load_checkpoint", None)
    if original is None:
        yield None
        return
    loads = CheckpointLoads()

    def load_checkpoint(model, checkpoint_path, *args, **kwargs):
        started = time.perf_counter()
        loads.paths.append(str(checkpoint_path))
        assign = isinstance(model, torch.nn.Module) and not _has_tied_weights(model)
        if assign:
            object.__setattr__(model, "load_state_dict", functools.partial(_load_state_dict_assigned, model))
        try:
            return original(model, checkpoint_path, *args, **kwargs)
        finally:
            if assign:
                object.__delattr__(model, "load_state_dict")
            loads.seconds += time.perf_counter() - started

    factory.load_checkpoint = load_checkpoint
    try:
        yield loads
    finally:
        factory.load_checkpoint = original


def _has_tied_weights(model: torch.nn.Module) -> bool:
    """Whether one parameter or buffer appears under two names (assigning would untie it)."""
    tensors = [t for _, t in model.named_parameters(remove_duplicate=False)]
    tensors += [t for _, t in model.named_buffers(remove_duplicate=False)]
    return len({id(t) for t in tensors}) < len(tensors)


def _load_state_dict_assigned(model: torch.nn.Module, state_dict, strict: bool = True, assign: bool = False):
    """`model.load_state_dict`, assigning the given tensors when each already fits its parameter."""
    targets = model.state_dict(keep_vars=True)

    def fits(name, tensor) -> bool:
        target = targets.get(name)
        return (isinstance(tensor, torch.Tensor) and isinstance(target, torch.Tensor)
                and tensor.shape == target.shape and tensor.dtype == target.dtype
                and tensor.device == target.device and tensor.is_contiguous())

    assign = assign or all(fits(name, tensor) for name, tensor in state_dict.items())
    return type(model).load_state_dict(model, state_dict, strict=strict, assign=assign)


@contextlib.contextmanager
def _seeded():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        yield


class OpenClipBackbone(Backbone):
    """Public base for open_clip models: loading, image side, identity; subclasses add the text path.

    Class attributes a subclass sets:
        default_arch: used when `--arch` is not given (an open_clip name, `hf-hub:` id or config).
        default_pretrained: used when `--pretrained` is not given and the arch is not an
            `hf-hub:`/`local-dir:` id (those carry their own weights).

    After `__init__`: `self.model` (the open_clip model, eval mode, on `device`), `self.model_name`,
    `self.arch`, `self.pretrained` (a tag or weights file; None for random weights or an
    `hf-hub:`/`local-dir:` model's own), `self.random_weights` (`--pretrained none`, or no weights
    at all), `self.checkpoint_paths` (the checkpoint files loaded), `self.tokenizer` (open_clip's),
    `embed_dim`, `logit_scale`.
    """

    default_arch, default_pretrained = CLIP_DEFAULTS  # ViT-B-16-quickgelu, openai

    def __init__(self, arch: str | None = None, pretrained: str | None = None, device=None):
        self.device = torch.device(device or "cpu")
        self.arch = arch or self.default_arch
        self.pretrained, self.random_weights = chosen_weights(self.arch, pretrained, self.default_pretrained)
        self._fail_fast_offline()
        self.load_phases: dict[str, float] = {}  # seconds: import_s, build_s, weights_s, tokenizer_s
        self.checkpoint_paths: list[str] = []  # the checkpoint files open_clip loaded
        self.model, self.model_name = create_open_clip(self.arch, self.pretrained, self.device, self.load_phases,
                                                       random_weights=self.random_weights,
                                                       checkpoint_paths=self.checkpoint_paths)
        started = time.perf_counter()
        self.tokenizer = load_open_clip_tokenizer(self.model_name, self.arch)
        self.load_phases["tokenizer_s"] = round(time.perf_counter() - started, 3)
        self.logit_scale = self.model.logit_scale.detach().float().reshape(())
        self.embed_dim = joint_dim(self.model)
        self._identity = self._identify()

    def _fail_fast_offline(self) -> None:
        """Without network and without cached weights, fail before importing open_clip (seconds)
        (`vip_backbones.openclip_weights.check_openclip_weights`)."""
        check_openclip_weights(self.arch, self.pretrained, self.random_weights)

    def modules(self):
        """The one module vip freezes and moves: the open_clip model."""
        return [self.model]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] pixels -> [B, D] image features in float32."""
        return self.model.encode_image(images.to(self.device)).float()  # [B, D]

    def image_transform(self, train: bool):
        """The model's input size and normalisation as a torchvision transform; `train` adds augmentation."""
        size = self.model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        cfg = getattr(self.model.visual, "preprocess_cfg", None) or {}
        mean, std = cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD)
        return clip_style_transform(int(size), mean, std, train)

    def describe(self) -> dict:
        """The identity: architecture (a config file by name and digest), weights (a file by name, size and
        sha256) and the open_clip version; computed once."""
        return identity_taken_once(self, self._identify)

    def _identify(self) -> dict:
        import open_clip

        weights = self.pretrained or "none"
        identity = weights
        if Path(weights).is_file():  # named by its file name and content: where it lies is not the weights
            identity, weights = weights_file_identity(Path(weights)), Path(weights).name
        if self.pretrained is None and not getattr(self, "random_weights", True):
            # an hf-hub:/local-dir: model's own weights: the checkpoint files open_clip loaded
            weights = self.model_name
            identity = [_checkpoint_identity(Path(p)) for p in getattr(self, "checkpoint_paths", [])] or self.model_name
        arch = self.arch
        config = _config_file(arch) if not arch.startswith(SCHEMAS) else None
        if config is not None and config.is_file():
            # name and content, not location: a copy of the config in a run directory is the same model
            arch = f"{config.name}#{hashlib.sha256(config.read_bytes()).hexdigest()[:16]}"
        return {"arch": arch, "pretrained": weights, "weights": identity, "open_clip": open_clip.__version__}
