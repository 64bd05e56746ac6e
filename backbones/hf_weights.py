"""Where a transformers backbone's weights, config and tokenizer come from, and whether they can be had, told from
its options without importing torch or transformers.

`ModelSources.check` is what `TransformersBackbone.__init__` runs before it imports transformers: a path that does
not exist, a local folder without config.json or tokenizer or holding another model (usage errors), then, offline,
hub files not in the hub's cache. `vip train` and `vip benchmark` run the same check for vip's own `hf-clip` and
`siglip` after their option checks and before the data folder is read (`check_hf_clip`, `check_siglip`, found by
vip's registry through the entry-point group `vip.backbone_offline_checks`, `vipcli.registry.check_weights_early`),
so such a mistake is one line in seconds, not after every image of the data was listed, hashed and checked.
Nothing here downloads or opens a model: it reads local files and folder names in the hub cache, and asks
`vip_backbones.hub` (at most once a process) whether the hub can be reached.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from vip_backbones.hf_model_types import other_model_error
from vip_backbones.hub import WEIGHT_SUFFIXES, check_weights_path, fail_fast_if_uncached, meant_as_path
from vipcli.errors import UsageError, VipError

# vip's own transformers backbones: default model (--pretrained), transformers class, config model_types
HF_CLIP_DEFAULT, HF_CLIP_CLASS, HF_CLIP_TYPES = "openai/clip-vit-base-patch16", "CLIPModel", ("clip",)  # `hf-clip`
SIGLIP_DEFAULT, SIGLIP_CLASS, SIGLIP_TYPES = "google/medsiglip-448", "SiglipModel", ("siglip",)  # `siglip` (gated)

HF_HINT = ("download it once on a connected machine (it is cached under ~/.cache/huggingface), "
           "or pass --pretrained /path/to/a/save_pretrained/folder, or --pretrained none --arch SOURCE "
           "for random weights (for timing and plumbing only)")
LOCAL_HINT = ("pass --pretrained a whole save_pretrained folder (config.json, every weight file, the tokenizer "
              "files, as save_pretrained wrote them), or --pretrained none --arch SOURCE for random weights (for "
              "timing and plumbing only)")
ARCH_SOURCES = "a config.json, a save_pretrained folder, or a cached hub id"
RANDOM_HINT = f"--pretrained none needs --arch ({ARCH_SOURCES}) when the default model is not available offline"
WEIGHTS_WHAT = "save_pretrained folder, a hub id"  # what a --pretrained of this family is, in check_weights_path
# what AutoTokenizer reads from a local folder (one of them must be there)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "vocab.txt", "spiece.model", "tokenizer.model",
                   "sentencepiece.bpe.model")


def local_path(source: str) -> Path | None:
    """`source` as an existing local file or folder, else None (then it is a hub id)."""
    path = Path(source).expanduser()
    return path if path.exists() else None


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a local model folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)


@dataclass(frozen=True)
class ModelSources:
    """A transformers backbone's `--arch` and `--pretrained` as given (None: not given), with what the backbone
    takes: its default model (a hub id), its transformers class (named in errors) and the config `model_type`s
    it accepts."""

    arch: str | None
    pretrained_option: str | None
    default_pretrained: str
    model_class: str
    model_types: tuple[str, ...]

    @property
    def weights(self) -> str | None:
        """The weights to load: --pretrained, else the default model; None for `none` (seeded random weights)."""
        chosen = self.default_pretrained if self.pretrained_option is None else self.pretrained_option
        return None if chosen.strip().lower() == "none" else chosen

    @property
    def source(self) -> str:
        """Where the config and tokenizer come from: --arch, else the weights, else the default model."""
        return self.arch or self.weights or self.default_pretrained

    @property
    def hub_ids(self) -> list[str]:
        """The hub ids among the weights and the config source (local paths left out)."""
        return [value for value in dict.fromkeys([self.weights, self.source]) if value and local_path(value) is None]

    def what_and_hint(self) -> tuple[str, str]:
        """(what the load reads, the fix) named in a load's missing-weights error: the config and tokenizer for
        random weights, else the weights; a local folder that fails (no hub ids) is incomplete or damaged, nothing
        to download."""
        if self.weights is None:  # --pretrained none reads only a config and tokenizer (--arch, else the default)
            return "the config and tokenizer", (f"pass --arch {ARCH_SOURCES}" if self.arch else RANDOM_HINT)
        return "weights", HF_HINT if self.hub_ids else LOCAL_HINT

    def source_option(self) -> str:
        """The option that named the config and tokenizer source: --arch, or --pretrained when it gave both."""
        return "--arch" if self.source != self.weights else "--pretrained"

    def tokenizer_source(self) -> str:
        """The folder (or hub id) the tokenizer and image processor are read from: a config.json's folder."""
        local = local_path(self.source)
        return str(local.parent if local is not None and local.is_file() else (local or self.source))

    def refuse_other_model(self, model_type: str, architectures=None) -> None:
        """UsageError for a model of another type than `model_types`, naming what it is and where it would go
        (`vip_backbones.hf_model_types`): the other family's backbone, one tower of a CLIPModel or SiglipModel
        (which CLIPVisionModel/CLIPTextModel.save_pretrained write), a ViT or BERT alone, any other model."""
        error = other_model_error(self.source, model_type, architectures, self.model_types)
        if error is not None:
            raise error

    def check(self, *, early: bool = False) -> None:
        """The options' errors, in the order the load meets them, before transformers is imported: a --pretrained
        or --arch written as a path that does not exist, a local config source without config.json or tokenizer or
        holding another model (usage errors), then, without network, hub files not in the hub's cache.

        Args:
            early: run before the data is read (`check_hf_clip`, `check_siglip`): the warning about an --arch
                folder's own weights is printed only when the check fails, since the load prints it again.
        """
        check_weights_path(self.weights, WEIGHTS_WHAT)
        if self.arch and meant_as_path(self.arch, (".json",)) and local_path(self.arch) is None:
            raise UsageError(f"--arch {self.arch}: no such file or folder", "pass an existing config.json or "
                             "save_pretrained folder, or a hub id")
        self.check_local_config()
        self.check_local_tokenizer()
        if not early:
            self.warn_weights_beside_arch()
        try:
            self.check_hub_files()
        except VipError:
            if early:
                self.warn_weights_beside_arch()  # why the default model's weights were asked for
            raise

    def check_local_config(self) -> None:
        """UsageError for a local model folder without config.json (transformers says only that the folder
        'should have a `model_type` key in its config.json', and the weights-missing hint would follow), or whose
        config is another model's (one tower, a ViT, a BERT: said before the tokenizer, which such a folder may
        lack)."""
        local = local_path(self.source)
        config = local / "config.json" if local is not None and local.is_dir() else local
        if config is not None and config.is_file() and config.suffix == ".json":
            with contextlib.suppress(ValueError, OSError, AttributeError):  # transformers reports a broken one
                declared = json.loads(config.read_text(encoding="utf-8"))
                if declared.get("model_type"):  # without one, transformers says what it lacks
                    self.refuse_other_model(str(declared["model_type"]), declared.get("architectures"))
        elif config is not None and local.is_dir():
            raise UsageError(f"{self.source_option()} {self.source} holds no config.json (the model's configuration, "
                             "which save_pretrained writes beside the weights)",
                             "copy the model's config.json into the folder, or pass --arch a folder, config.json or "
                             "hub id with this model's configuration")

    def check_local_tokenizer(self) -> None:
        """UsageError for a local config/tokenizer source whose folder holds no tokenizer file.

        transformers would build an empty tokenizer from the config alone (every word unknown) or fail
        with a list of every tokenizer class it has; neither names the folder that lacks the files.
        """
        if local_path(self.source) is None:
            return
        folder = Path(self.tokenizer_source())
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            where = "" if folder == local_path(self.source) else f": its folder {folder}"
            raise UsageError(f"{self.source_option()} {self.source}{where} holds no tokenizer (none of "
                             "tokenizer.json, tokenizer_config.json, vocab.json, vocab.txt, spiece.model)",
                             "put the model's tokenizer files beside its config.json (save_pretrained writes "
                             "them), or pass --arch a folder or hub id that has them")

    def warn_weights_beside_arch(self) -> None:
        """Warn when `--arch` is a save_pretrained folder with weights but `--pretrained` was not given: --arch
        gives only the config and tokenizer, so the default weights would be loaded into it."""
        folder = local_path(self.arch) if self.arch and self.pretrained_option is None else None
        weights = weight_files(folder) if folder is not None and folder.is_dir() else []
        if weights:
            from vipcli import console

            console.warn(f"--arch {self.arch} holds weights ({weights[0].name}) that --arch does not load (it gives "
                         f"the config and tokenizer): the weights are {self.default_pretrained}'s; pass --pretrained "
                         f"{self.arch} to use that folder's")

    def check_hub_files(self) -> None:
        """Without network, one VipError if the hub ids among the weights and the config source are not in the
        hub's cache (a local folder is left to the checks above and the load, which name what it lacks)."""
        ids = self.hub_ids
        if ids:
            thing, hint = self.what_and_hint()
            fail_fast_if_uncached(ids, self.weights or self.source, self.model_class, hint, thing,
                                  weights_repo=self.weights)  # a hub id's weight files, not only its config


def check_hf_clip(arch: str | None, pretrained: str | None) -> None:
    """The `hf-clip` backbone's early check (registered under `vip.backbone_offline_checks`)."""
    ModelSources(arch, pretrained, HF_CLIP_DEFAULT, HF_CLIP_CLASS, HF_CLIP_TYPES).check(early=True)


def check_siglip(arch: str | None, pretrained: str | None) -> None:
    """The `siglip` backbone's early check (registered under `vip.backbone_offline_checks`)."""
    ModelSources(arch, pretrained, SIGLIP_DEFAULT, SIGLIP_CLASS, SIGLIP_TYPES).check(early=True)
