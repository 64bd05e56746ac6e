"""The `toy` backbone: a tiny CLIP-style model pretrained on the lesion world, shipped with vip.

It runs offline on a CPU in milliseconds, so `vip demo` and the tests have a backbone that
actually knows something: it was trained contrastively on `vipcli.lesion_world` images paired
with captions of their visual attributes only (never a disease name). Its weights, word
vocabulary and config live in one safetensors file, `weights/toy.safetensors`, reproduced by
`python -m vip_backbones.toy_pretrain` (see that module for the exact recipe).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vipcli.backbone import Backbone, clip_style_transform
from vipcli.errors import UsageError, VipError

FORMAT = "vip-toy/1"  # safetensors metadata "format" of a toy weights file
RANDOM_INIT_SEED = 0  # `--pretrained none` builds the same random towers every time
PAD, UNK, SOT, EOT = "[PAD]", "[UNK]", "[SOT]", "[EOT]"
TOKEN_PATTERN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
# Words prompt templates need beside the captions and symptom packs ("X X X X" placeholders too).
PROMPT_WORDS = "a an the photo image picture of this is x . , : ; - ( ) ' / skin spot lesion"
REPRODUCE = "python -m vip_backbones.toy_pretrain --out backbones/weights/toy.safetensors"


@dataclass(frozen=True)
class ToyConfig:
    """Architecture of the toy CLIP (stored in the weights file's metadata)."""

    image_size: int = 64  # square input resolution
    patch_size: int = 8  # ViT patch side in pixels
    vision_width: int = 128  # ViT token width
    vision_layers: int = 4  # ViT transformer blocks
    vision_heads: int = 4  # ViT attention heads
    text_width: int = 64  # W: token width of the text tower
    text_layers: int = 3  # text transformer blocks
    text_heads: int = 4  # text attention heads
    context_length: int = 40  # longest token sequence, start and end tokens included
    embed_dim: int = 128  # D: joint image/text space
    image_mean: tuple[float, float, float] = (0.76, 0.61, 0.53)  # lesion-world pixel mean (RGB, 0-1)
    image_std: tuple[float, float, float] = (0.17, 0.16, 0.14)  # lesion-world pixel std (RGB, 0-1)


# Tokenizer ---------------------------------------------------------------------------------


def split_words(text: str) -> list[str]:
    """Lower-case words and single punctuation marks: "Well-defined." -> [well, -, defined, .]."""
    return TOKEN_PATTERN.findall(text.lower())


def build_vocabulary() -> list[str]:
    """The word vocabulary: [PAD]=0, [UNK]=1, sorted words, then [SOT], and [EOT] with the largest id.

    Words come from every lesion-world caption phrase, every shipped symptom pack (symptoms, names
    and aliases, so class-name prompts are not all [UNK]) and common prompt words.
    """
    from vipcli.lesion_world import caption_phrases
    from vipcli.packs import shipped_packs

    texts = [*caption_phrases(), PROMPT_WORDS]
    for pack in shipped_packs():
        texts += [*pack.symptoms, pack.name, *pack.aliases]
    words = sorted({word for text in texts for word in split_words(text)})
    return [PAD, UNK, *words, SOT, EOT]


class WordTokenizer:
    """Word-level tokenizer, fully offline: lower-case, punctuation split off, unknown -> [UNK].

    Args:
        vocab: token strings by id; must start with [PAD], [UNK] and end with [SOT], [EOT].
        context_length: every output row is padded or truncated to this length.
    """

    def __init__(self, vocab: Sequence[str], context_length: int):
        if list(vocab[:2]) != [PAD, UNK] or list(vocab[-2:]) != [SOT, EOT]:
            raise VipError("toy vocabulary must start with [PAD], [UNK] and end with [SOT], [EOT]")
        self.vocab = list(vocab)
        self.ids = {word: index for index, word in enumerate(self.vocab)}
        self.context_length = context_length

    def encode(self, text: str) -> list[int]:
        """[SOT] word ids [EOT], truncated so that [EOT] always fits."""
        words = [self.ids.get(w, self.ids[UNK]) for w in split_words(text)][: self.context_length - 2]
        return [self.ids[SOT], *words, self.ids[EOT]]

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        rows = torch.zeros(len(texts), self.context_length, dtype=torch.long)  # [N, L], 0 = [PAD]
        for row, text in enumerate(texts):
            ids = self.encode(text)
            rows[row, : len(ids)] = torch.tensor(ids)
        return rows


# Model -------------------------------------------------------------------------------------


class Block(nn.Module):
    """Pre-norm transformer block (attention + 4x GELU MLP), optionally causal."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        """[N, L, W] -> [N, L, W]: pre-norm attention (causal for text) and MLP, each with a residual."""
        n, length, width = x.shape
        qkv = self.qkv(self.ln_1(x)).view(n, length, 3, self.heads, width // self.heads)  # [N, L, 3, H, W/H]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [N, H, L, W/H]
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # [N, H, L, W/H]
        x = x + self.out(attended.transpose(1, 2).reshape(n, length, width))  # [N, L, W]
        return x + self.mlp(self.ln_2(x))


class VisionTower(nn.Module):
    """ViT: patches + [CLS] -> transformer -> LayerNorm([CLS]) @ projection."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        width, grid = config.vision_width, config.image_size // config.patch_size
        self.patchify = nn.Conv2d(3, width, config.patch_size, config.patch_size, bias=False)
        self.cls = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * 0.01)
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.blocks = nn.ModuleList(Block(width, config.vision_heads) for _ in range(config.vision_layers))
        self.proj = nn.Parameter(torch.randn(width, config.embed_dim) * width**-0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images -> [B, D]: patches and [CLS] through the blocks, [CLS] normalised and projected."""
        x = self.patchify(images).flatten(2).transpose(1, 2)  # [B, P, Wv]
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding  # [B, P+1, Wv]
        x = self.ln_pre(x)
        for block in self.blocks:
            x = block(x, causal=False)
        return self.ln_post(x[:, 0]) @ self.proj  # [B, D]


class TextTower(nn.Module):
    """Causal transformer over word embeddings, pooled at the [EOT] token (the largest id)."""

    def __init__(self, config: ToyConfig, vocab_size: int):
        super().__init__()
        width = config.text_width
        self.token_embedding = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.positional_embedding = nn.Parameter(torch.randn(config.context_length, width) * 0.01)
        self.blocks = nn.ModuleList(Block(width, config.text_heads) for _ in range(config.text_layers))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, config.embed_dim) * width**-0.5)

    def forward_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] embeddings (any L <= context_length) and their ids [N, L] -> [N, D]."""
        length = ids.shape[1]
        x = embeds + self.positional_embedding[:length]  # [N, L, W]
        for block in self.blocks:
            x = block(x, causal=True)
        x = self.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]  # [N, W] at [EOT]
        return pooled @ self.text_projection  # [N, D]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N, D] text features."""
        return self.forward_embeds(self.token_embedding(ids), ids)  # [N, D]


class ToyCLIP(nn.Module):
    """The two towers and a learned log temperature (CLIP's init, 1/0.07)."""

    def __init__(self, config: ToyConfig, vocab_size: int):
        super().__init__()
        self.visual = VisionTower(config)
        self.text = TextTower(config, vocab_size)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] image features."""
        return self.visual(images)  # [B, D]

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N, D] text features."""
        return self.text(ids)  # [N, D]


# Weights files -----------------------------------------------------------------------------


def shipped_weights_path() -> Path:
    """Where the packaged toy weights live."""
    return Path(__file__).resolve().parent / "weights" / "toy.safetensors"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_toy_weights(path: str | Path, model: ToyCLIP, vocab: list[str], config: ToyConfig, extra: dict) -> None:
    """Write weights (fp32), vocabulary, config and `extra` metadata atomically to a .safetensors file."""
    from vipcli.atomic import safetensors_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().float().contiguous().cpu() for name, t in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": json.dumps(asdict(config)), "vocab": json.dumps(vocab)}
    metadata.update({key: json.dumps(value) for key, value in extra.items()})
    blob = safetensors_bytes(tensors, metadata)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_toy_weights(path: str | Path) -> tuple[dict, list[str], ToyConfig, dict]:
    """Read a toy weights file. Returns (state dict, vocabulary, config, all metadata)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:
        raise VipError(f"{path}: not a readable safetensors file ({type(error).__name__}: {error})") from None
    if metadata.get("format") != FORMAT:
        raise VipError(f"{path}: not toy backbone weights (format {metadata.get('format')!r}, expected {FORMAT!r})")
    config = json.loads(metadata["config"])
    config = ToyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return state, json.loads(metadata["vocab"]), config, metadata


def build_random_model(config: ToyConfig, vocab_size: int, seed: int = RANDOM_INIT_SEED) -> ToyCLIP:
    """A freshly initialised ToyCLIP, the same for the same seed (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ToyCLIP(config, vocab_size)


# The plugin --------------------------------------------------------------------------------


class ToyBackbone(Backbone):
    """A tiny CLIP pretrained on lesion-world images and attribute captions (64x64 px, D=128).

    `--arch`: None or "toy" (the shipped architecture). `--pretrained`: None or "shipped" (the
    packaged weights), a path to a toy .safetensors file, or "none" (seeded random weights).
    """

    image_domain = "the generated lesion world of `vip demo` (coloured spots on skin-toned squares)"

    def __init__(self, arch: str | None = None, pretrained: str | None = None, device=None):
        if arch not in (None, "", "toy"):
            raise UsageError(f"unknown toy architecture '{arch}'", "the toy backbone has one architecture: toy")
        self.device = torch.device(device or "cpu")
        self.pretrained, path = _resolve_pretrained(pretrained)
        if path is None:
            self.config, self.vocab = ToyConfig(), build_vocabulary()
            self.model = build_random_model(self.config, len(self.vocab))
            self.weights_digest = "random:" + hashlib.sha256(json.dumps(self.vocab).encode()).hexdigest()
        else:
            state, self.vocab, self.config, _ = load_toy_weights(path)
            self.model = ToyCLIP(self.config, len(self.vocab))
            self.model.load_state_dict(state)
            self.weights_digest = file_sha256(path)
        self.model = self.model.to(self.device).eval()
        self.tokenizer = WordTokenizer(self.vocab, self.config.context_length)
        self.embed_dim = self.config.embed_dim
        self.token_width = self.config.text_width
        self.context_length = self.config.context_length
        self.num_prefix_tokens = 1
        self.pad_token_id = self.vocab.index(PAD)
        self.logit_scale = self.model.logit_scale.detach().reshape(())

    def modules(self) -> list[nn.Module]:
        """The one module vip freezes and moves: the toy CLIP."""
        return [self.model]

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> [N, context_length] ids with the toy word-level tokenizer."""
        return self.tokenizer(list(texts))  # [N, context_length]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N, L, W] token embeddings."""
        return self.model.text.token_embedding(ids.to(self.device))  # [N, L, W]

    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] token embeddings -> [N, D] text features (pooled at [EOT])."""
        return self.model.text.forward_embeds(embeds.to(self.device), ids.to(self.device))  # [N, D]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] image features."""
        return self.model.encode_image(images.to(self.device))  # [B, D]

    def image_transform(self, train: bool):
        """The toy's input size and normalisation; `train` adds crops from half to all of the image."""
        return clip_style_transform(self.config.image_size, self.config.image_mean, self.config.image_std, train,
                                    crop_scale=(0.5, 1.0))

    def describe(self) -> dict:
        """The identity: arch, weights as given, the weights' sha256 and the config."""
        return {
            "arch": "toy",
            "pretrained": self.pretrained,
            "weights_sha256": self.weights_digest,  # "random:<vocab digest>" for --pretrained none
            "config": json.loads(json.dumps(asdict(self.config))),  # plain JSON: tuples become lists
        }


def _resolve_pretrained(pretrained: str | None) -> tuple[str, Path | None]:
    """(pretrained id for describe(), weights path or None for random init)."""
    choice = (pretrained or "shipped").strip()
    if choice.lower() == "none":
        return "none", None
    if choice.lower() == "shipped":
        path = shipped_weights_path()
        if not path.is_file():
            raise VipError(f"the shipped toy weights are missing ({path})", f"rebuild them with: {REPRODUCE}")
        return "shipped", path
    path = Path(choice).expanduser()
    if not path.is_file():
        raise UsageError(
            f"--pretrained {pretrained}: no such toy weights file",
            "pass 'shipped' (default), a toy .safetensors file, or 'none' for random weights",
        )
    return str(path.resolve()), path
