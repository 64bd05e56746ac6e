"""`TransformersBackbone`: the public base for backbones built on a Hugging Face transformers model.

A subclass names the model class and the defaults; the base loads the model (a hub id or a local
`save_pretrained` folder, or random weights from a config for `--pretrained none`) with its own
tokenizer, and runs the text tower from token embeddings through the model's *own*
`get_text_features` (the word-embedding layer's output is replaced by the given embeddings for the
duration of the call), so prompt features equal the model's text features by construction.

Built on it: `vip_backbones.hf_clip.HFClipBackbone` (`CLIPModel`: PLIP, PubMedCLIP, ...) and
`vip_backbones.siglip.SiglipBackbone` (`SiglipModel`: MedSigLIP).
"""

from __future__ import annotations

import contextlib
import importlib
import json
from pathlib import Path
from typing import Sequence

import torch

from vip_backbones.hf_preprocessing import (PREPROCESSOR_FILES, load_image_processor, preprocessor_file,
                                            processor_preprocessing, resize_step)
from vip_backbones.hf_weights import (HF_CLIP_CLASS, HF_CLIP_DEFAULT, HF_CLIP_TYPES, TOKENIZER_FILES, ModelSources,
                                      local_path, weight_files)
from vip_backbones.hub import (missing_weights_error, model_loading, pickled_weights_error, quiet_libraries,
                               transformers_torch_error)
from vipcli.backbone import Backbone, clip_style_transform, identity_taken_once
from vipcli.digests import text_digest
from vipcli.errors import VipError
from vipcli.processor_steps import DEFAULT_RESCALE
from vipcli.weights_identity import weights_file_identity

RANDOM_INIT_SEED = 0  # `--pretrained none` builds the same random towers every time
FOLDER_PICKLE_FIX = ("if you trust where this folder came from, save its tensors with safetensors.torch.save_file as "
                     "model.safetensors in the folder (transformers loads that instead) and pass the folder again")


@contextlib.contextmanager
def replaced_output(module: torch.nn.Module, value: torch.Tensor):
    """Make `module` return `value` (instead of computing its output) inside the block.

    Used on a text tower's word-embedding layer, so the model's own forward runs on learned
    token embeddings while pooling still reads the real token ids.
    """

    def hook(_module, _inputs, output):
        if output.shape != value.shape:
            raise ValueError(f"token embeddings {list(value.shape)} do not fit ids that embed to {list(output.shape)}")
        return value.to(output.dtype)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def pooled_features(output) -> torch.Tensor:
    """The feature tensor of a `get_*_features` call (a tensor in transformers 4, a ModelOutput in 5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _image_side(config) -> int:
    """The side of the square image the vision tower of a model `config` takes (vision_config.image_size)."""
    size = config.vision_config.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _folder_identity(path: Path) -> dict:
    """Name, size and sha256 of the weight files in a local model folder (or of the file itself)."""
    files = [path] if path.is_file() else weight_files(path)
    return {"files": [weights_file_identity(p) for p in files]}


def _files_identity(folder: Path, names: tuple[str, ...]) -> list[dict]:
    """Name, size and sha256 of each of `names` present in `folder` (the tokenizer's or the image
    preprocessor's files), in the order of `names`; each read once per version (`remembered_digest`)."""
    return [weights_file_identity(folder / name) for name in names if (folder / name).is_file()]


class TransformersBackbone(Backbone):
    """Public base for a transformers dual-encoder (`get_text_features` / `get_image_features`).

    Class attributes a subclass sets:
        model_class: transformers class name, e.g. "CLIPModel".
        model_types: the config `model_type`s it accepts, e.g. ("clip",); any other is refused naming what it is
            (`vip_backbones.hf_model_types`).
        default_pretrained: hub id or folder used when `--pretrained` is not given.
        image_mean, image_std: used when the model has no preprocessor_config.json.
        squash: evaluation resize without center crop (SigLIP) instead of CLIP's short side + crop, for a
            model without an image processor (its processor says otherwise).
        config_companions: the files read beside a config.json given as `--arch` (tokenizer,
            preprocessor): a run copies them into itself with the config, so it predicts without the original.

    `--pretrained`: a hub id or a local `save_pretrained` folder (weights, config and tokenizer), or
    `none` for seeded random weights. `--arch`: where config and tokenizer come from when they are
    not beside the weights (required with `--pretrained none` unless the default id is cached): a hub
    id, a folder, or a config.json file (its folder holds the tokenizer).

    Subclasses implement `text_embedding` (the word-embedding layer) and `projection_dim`.
    """

    cuda_graphs = True  # get_text_features from ids alone: no padding mask checked on the host

    model_class = HF_CLIP_CLASS
    model_types: tuple = HF_CLIP_TYPES
    default_pretrained = HF_CLIP_DEFAULT
    image_mean: tuple = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple = (0.26862954, 0.26130258, 0.27577711)
    squash = False
    config_companions = TOKENIZER_FILES + PREPROCESSOR_FILES  # copied into a run with an --arch config.json

    def __init__(self, arch: str | None = None, pretrained: str | None = None, device=None):
        self.device = torch.device(device or "cpu")
        self.sources = ModelSources(arch, pretrained, self.default_pretrained, self.model_class,
                                    tuple(self.model_types))
        self.pretrained, self.source = self.sources.weights, self.sources.source
        self.arch = self.source  # the config and tokenizer
        self.sources.check()  # usage errors, then hub files offline: before transformers is imported
        thing, hint = self.sources.what_and_hint()
        uses_hub = bool(self.sources.hub_ids)
        with quiet_libraries():  # a transformers that refuses this torch says so on import: reported below
            importlib.import_module("transformers")  # for its effect: imported before the loading block, so that its
            # progress bars can be hidden, and a transformers that refuses this torch says so here

        mismatch = transformers_torch_error()  # before any download: no model of this family can load
        if mismatch is not None:
            raise mismatch

        with model_loading(uses_hub) as offline_reason:
            try:
                config = self._load_config()
                self.preprocessing = self._load_preprocessing(config)  # a processor refused before the weights load
                self.model = self._load_model(config).float().to(self.device).eval()
                self.tokenizer = self._load_tokenizer()
            except (VipError, KeyboardInterrupt):
                raise
            except Exception as error:
                raise self._pickled_folder_error(error) or missing_weights_error(
                    self.pretrained or self.source, self.model_class, offline_reason, error, hint, thing) from error
        self._set_text_attributes()
        self.logit_scale = self.model.logit_scale.detach().float().reshape(())
        self._identity = self._identify()

    # loading ----------------------------------------------------------------------------

    def _transformers_class(self):
        import transformers

        return getattr(transformers, self.model_class)

    def _load_config(self):
        """The model's transformers config (from --arch, else --pretrained); a UsageError for another family's."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(local_path(self.source) or self.source))
        self.sources.refuse_other_model(config.model_type, getattr(config, "architectures", None))
        return config

    def _load_model(self, config):
        """The dual encoder of `config`: its --pretrained weights, or random ones (seeded) for --pretrained none."""
        model_class = self._transformers_class()
        if self.pretrained is not None:
            return model_class.from_pretrained(str(local_path(self.pretrained) or self.pretrained), config=config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            return model_class(config)

    def _pickled_folder_error(self, error: BaseException) -> VipError | None:
        """For a local --pretrained folder whose .bin/.pt weights torch refused to unpickle: the error naming
        those files, with the fix for a folder; None otherwise."""
        folder = local_path(self.pretrained) if self.pretrained else None
        if folder is None or not folder.is_dir():
            return None
        pickled = [str(path) for path in weight_files(folder) if path.suffix != ".safetensors"] or [str(folder)]
        return pickled_weights_error(", ".join(pickled), error, FOLDER_PICKLE_FIX)

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.sources.tokenizer_source())

    def _load_preprocessing(self, config) -> dict:
        """Size, crop, resampling, mean and std from the model's image processor (preprocessor_config.json), if it
        has one, else the family's; a local one that cannot be read, or that makes images of another size than
        the vision tower of `config` takes, is a UsageError naming it (read before the weights, which may take
        a while to load)."""
        folder = None if local_path(self.source) is None else Path(self.sources.tokenizer_source())
        processor = load_image_processor(self.sources.tokenizer_source(), folder)
        if processor is None:
            return {"mean": self.image_mean, "std": self.image_std, "resize": _image_side(config),
                    "squash": self.squash, "interpolation": "bicubic", "rescale": True, "normalize": True,
                    "rescale_factor": DEFAULT_RESCALE}
        where = str(preprocessor_file(folder) or self.sources.tokenizer_source())
        return processor_preprocessing(processor, where, _image_side(config))

    def _set_text_attributes(self) -> None:
        text_config = self.model.config.text_config
        self.token_width = int(text_config.hidden_size)
        self.context_length = int(text_config.max_position_embeddings)
        self.embed_dim = int(self.projection_dim())
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        first = self.tokenize(["x"])[0].tolist()
        special = set(self.tokenizer.all_special_ids)
        self.num_prefix_tokens = next((i for i, token in enumerate(first) if token not in special), 0)

    # the contract -----------------------------------------------------------------------

    def text_embedding(self) -> torch.nn.Module:
        """The text tower's word-embedding layer (ids -> [N, L, W], no positions)."""
        return self.model.text_model.embeddings.token_embedding

    def projection_dim(self) -> int:
        """D: size of the joint space (the text projection's output)."""
        raise NotImplementedError

    def modules(self):
        """The one module vip freezes and moves: the transformers model."""
        return [self.model]

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> [N, context_length] ids with the model's tokenizer, padded to the full length."""
        encoded = self.tokenizer(list(texts), padding="max_length", max_length=self.context_length,
                                 truncation=True, return_tensors="pt")
        return encoded["input_ids"].long()  # [N, context_length]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N, L, W] the text model's input embeddings."""
        return self.text_embedding()(ids.to(self.device))  # [N, L, W]

    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] -> [N, D]: `get_text_features` with the word embeddings replaced by `embeds`."""
        ids = ids.to(self.device)
        with replaced_output(self.text_embedding(), embeds.to(self.device)):
            output = self.model.get_text_features(input_ids=ids)  # the model's own masking and pooling
        return pooled_features(output).float()  # [N, D]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] pixels -> [B, D] with `get_image_features`."""
        output = self.model.get_image_features(pixel_values=images.to(self.device))
        return pooled_features(output).float()  # [B, D]

    def image_transform(self, train: bool):
        """The model's preprocessing (size, mean, std) as a torchvision transform; `train` adds augmentation."""
        p = self.preprocessing
        return clip_style_transform(_image_side(self.model.config), p["mean"], p["std"], train, squash=p["squash"],
                                    resize=resize_step(p), interpolation=p["interpolation"], rescale=p["rescale"],
                                    normalize=p["normalize"], rescale_factor=p["rescale_factor"], processor_crop=True)

    def _config_json(self) -> str:
        """The model config as sorted JSON, without where it was loaded from."""
        config = self.model.config.to_dict()
        for key in ("_name_or_path", "_commit_hash"):
            config.pop(key, None)
        return json.dumps(config, sort_keys=True, default=str)

    def describe(self) -> dict:
        """The identity: architecture with a digest of its config, weights, model class, transformers version,
        and for a local folder its tokenizer and preprocessor files by content (computed once)."""
        return identity_taken_once(self, self._identify)

    def _identify(self) -> dict:
        import transformers

        config_digest = text_digest(self._config_json())
        if self.pretrained is None:
            weights = f"random (seed {RANDOM_INIT_SEED})"
        elif local_path(self.pretrained) is not None:
            weights = _folder_identity(local_path(self.pretrained))
        else:
            weights = {"hub": self.pretrained, "commit": getattr(self.model.config, "_commit_hash", None)}
        # a local folder (or a config.json inside one) is named by its content, never by its path or name:
        # the same model copied elsewhere is the same backbone (the feature cache is reused), and a
        # changed tokenizer or preprocessor shows (a run's learned prompts depend on the tokenizer)
        source = local_path(self.source)
        label = self.source if source is None else f"local {self.model.config.model_type}"
        arch = f"{label}#{config_digest}"
        pretrained = self.pretrained or "none"
        if local_path(pretrained) is not None:  # a weights file by its name (as open_clip's), a folder by its content
            pretrained = local_path(pretrained).name if local_path(pretrained).is_file() else "local folder"
        identity = {"arch": arch, "pretrained": pretrained, "weights": weights,
                    "model_class": self.model_class, "transformers": transformers.__version__}
        if source is not None:  # a hub id's tokenizer comes with its commit, named in `weights`
            folder = Path(self.sources.tokenizer_source())
            identity["tokenizer"] = _files_identity(folder, TOKENIZER_FILES)
            identity["preprocessor"] = _files_identity(folder, PREPROCESSOR_FILES)
        changed = self._processing_an_earlier_vip_ignored()
        if changed is not None:  # a run of an earlier vip saw other pixels: its describe() lacks this, so vip warns
            identity["image_processing"] = changed
        return identity

    def _processing_an_earlier_vip_ignored(self) -> dict | None:
        """The processor's resize, squash and resampling (plain JSON), a rescale or normalize it turns off, and a
        rescale factor other than 1/255, where they give other pixels than vip made before it followed them (the
        vision tower's size, the family's short side or square, bicubic, pixels to 0-1 normalised); None where they
        do not, so the identity, and the feature cache, of such a model are as they were."""
        p, side = self.preprocessing, _image_side(self.model.config)
        factor = p["rescale_factor"] if p["rescale"] and p["rescale_factor"] != DEFAULT_RESCALE else None
        if (p["interpolation"] == "bicubic" and p["squash"] == self.squash and p["resize"] in (side, (side, side))
                and p["rescale"] and p["normalize"] and factor is None):
            return None
        resize = list(p["resize"]) if isinstance(p["resize"], tuple) else p["resize"]
        turned_off = {key: False for key in ("rescale", "normalize") if not p[key]}
        scaled = {} if factor is None else {"rescale_factor": factor}
        return {"resize": resize, "squash": p["squash"], "interpolation": p["interpolation"], **turned_off, **scaled}

