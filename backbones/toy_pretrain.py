"""The exact, seeded recipe that produces the shipped toy backbone weights.

    python -m vip_backbones.toy_pretrain --out backbones/weights/toy.safetensors

1. Render `images` lesion-world images (64x64) whose attributes are drawn independently of any
   disease (`sample_attributes(None, ...)`), so the model never sees a disease's correlations.
2. Train the toy CLIP contrastively (symmetric InfoNCE) on those images, each paired at every
   step with a freshly phrased caption of its visual attributes (never a disease name), with a
   random flip/transpose of the image; AdamW, linear warm-up then cosine decay.
3. Report what the model knows on a seeded two-disease task set (class-name zero-shot, symptom
   zero-shot with the shipped packs, the packs swapped, a linear probe) and write fp32 weights,
   vocabulary, config, recipe and those figures into one safetensors file, atomically.

With the same torch version, `--threads` and vocabulary, the output file is byte-identical run
to run. The vocabulary is built from the symptom packs shipped at the time; to reproduce the
shipped file after packs were added, reuse its vocabulary:

    python -m vip_backbones.toy_pretrain --out backbones/weights/toy.safetensors \
        --vocab-from backbones/weights/toy.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vip_backbones.toy import (
    ToyCLIP,
    ToyConfig,
    WordTokenizer,
    build_random_model,
    build_vocabulary,
    load_toy_weights,
    save_toy_weights,
)
from vipcli import lesion_world


@dataclass(frozen=True)
class PretrainConfig:
    """The recipe (stored in the weights file's metadata as "recipe")."""

    images: int = 12000  # pre-rendered lesion-world images
    steps: int = 800  # optimizer steps
    batch_size: int = 256  # image-caption pairs per step
    lr: float = 1e-3  # AdamW peak learning rate
    warmup: int = 40  # linear warm-up steps, then cosine decay to 0
    weight_decay: float = 0.05  # AdamW decoupled decay on weight matrices (not on norms/biases)
    seed: int = 0  # seeds images, captions, initialisation and batch order
    threads: int = 2  # torch CPU threads; bitwise results depend on it
    eval_per_class: int = 300  # task images per class for the knowledge report (and again for the probe fit)


# Data --------------------------------------------------------------------------------------


def render_images(count: int, seed: int, log=print) -> tuple[torch.Tensor, list]:
    """Pre-render `count` disease-agnostic lesion images. Returns (uint8 [N, H, W, 3], attributes)."""
    rng = np.random.default_rng(seed)
    size = ToyConfig().image_size
    pixels = np.empty((count, size, size, 3), np.uint8)
    attributes, start = [], time.time()
    for index in range(count):
        attrs = lesion_world.sample_attributes(None, rng)
        pixels[index] = np.asarray(lesion_world.render_lesion(attrs, size, rng))
        attributes.append(attrs)
        if (index + 1) % 2000 == 0 or index + 1 == count:
            log(f"rendered {index + 1}/{count} images ({(index + 1) / (time.time() - start) * 60:.0f}/min)")
    return torch.from_numpy(pixels), attributes


def normalize(pixels: torch.Tensor, config: ToyConfig) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W] (same as ToTensor + Normalize)."""
    x = pixels.permute(0, 3, 1, 2).float() / 255  # [B, 3, H, W]
    mean = torch.tensor(config.image_mean).view(1, 3, 1, 1)  # [1, 3, 1, 1], per channel
    std = torch.tensor(config.image_std).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip, vertical flip and transpose per image (attributes unchanged). [B, 3, H, W]."""
    flips = torch.rand(3, images.shape[0], generator=generator) < 0.5  # [3, B]
    images = torch.where(flips[0].view(-1, 1, 1, 1), images.flip(-1), images)  # [B, 3, H, W]
    images = torch.where(flips[1].view(-1, 1, 1, 1), images.flip(-2), images)
    return torch.where(flips[2].view(-1, 1, 1, 1), images.transpose(-1, -2), images)


def trim(ids: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns no row needs (the text tower is causal). [N, L] -> [N, L']."""
    return ids[:, : int((ids != 0).sum(dim=1).max())]


# Training ----------------------------------------------------------------------------------


def learning_rate(step: int, recipe: PretrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to 0 at `steps`."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: ToyCLIP, recipe: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6)


def contrastive_loss(model: ToyCLIP, images: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE over the batch. Returns (loss, image->text top-1 accuracy)."""
    image_features = F.normalize(model.encode_image(images), dim=-1)  # [B, D]
    text_features = F.normalize(model.encode_text(ids), dim=-1)  # [B, D]
    logits = model.logit_scale.exp() * image_features @ text_features.T  # [B, B]
    target = torch.arange(logits.shape[0])  # [B]: image i matches caption i
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return loss, (logits.argmax(dim=1) == target).float().mean().item()


def train(
    model: ToyCLIP, pixels: torch.Tensor, attributes: list, tokenizer: WordTokenizer, recipe: PretrainConfig, log=print
) -> None:
    """Run the contrastive recipe in place on `model`.

    Args:
        model: the freshly initialised toy CLIP.
        pixels: pre-rendered images, uint8 [N, H, W, 3].
        attributes: the `LesionAttributes` of each image (captions are phrased afresh each step).
        tokenizer: the word tokenizer of `model`'s vocabulary.
        recipe: steps, batch size, learning rate and seeds.
        log: where progress lines go.
    """
    config = ToyConfig()
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    caption_rng = np.random.default_rng(recipe.seed + 2)
    optimizer = build_optimizer(model, recipe)
    order, start = torch.empty(0, dtype=torch.long), time.time()
    model.train()
    for step in range(recipe.steps):
        if len(order) < recipe.batch_size:
            order = torch.cat([order, torch.randperm(len(pixels), generator=generator)])
        batch, order = order[: recipe.batch_size], order[recipe.batch_size :]
        images = augment(normalize(pixels[batch], config), generator)  # [B, 3, H, W]
        ids = trim(tokenizer([lesion_world.caption(attributes[i], caption_rng) for i in batch.tolist()]))  # [B, L]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe)
        loss, accuracy = contrastive_loss(model, images, ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if (step + 1) % 20 == 0 or step + 1 == recipe.steps:
            elapsed = time.time() - start
            eta = elapsed / (step + 1) * (recipe.steps - step - 1)
            log(f"step {step + 1}/{recipe.steps}  loss {loss.item():.3f}  batch acc {accuracy:.2f}  "
                f"lr {learning_rate(step, recipe):.2e}  {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min")
    model.eval()


# Knowledge report --------------------------------------------------------------------------


@torch.no_grad()
def encode_pil(model: ToyCLIP, images: list, config: ToyConfig) -> torch.Tensor:
    """Normalised image features of PIL images. Returns [N, D]."""
    pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images]))  # [N, H, W, 3]
    return F.normalize(model.encode_image(normalize(pixels, config)), dim=-1)


@torch.no_grad()
def encode_texts(model: ToyCLIP, tokenizer: WordTokenizer, texts: list[str]) -> torch.Tensor:
    """Normalised text features. Returns [N, D]."""
    return F.normalize(model.encode_text(tokenizer(texts)), dim=-1)


def symptom_accuracy(image_features: torch.Tensor, labels: torch.Tensor, class_texts: list[list[str]], encode) -> float:
    """Accuracy of argmax over classes of the mean cosine to each class's texts (docs/METHOD.md section 4)."""
    scores = torch.stack([(image_features @ encode(texts).T).mean(dim=1) for texts in class_texts], dim=1)  # [N, C]
    return (scores.argmax(dim=1) == labels).float().mean().item()


def measure_knowledge(model: ToyCLIP, tokenizer: WordTokenizer, per_class: int, seed: int) -> dict:
    """Class-name zero-shot, symptom zero-shot, packs swapped and linear probe on seeded task sets."""
    from sklearn.linear_model import LogisticRegression

    from vipcli.packs import shipped_packs

    config, packs = ToyConfig(), {p.name: list(p.symptoms) for p in shipped_packs()}
    images, labels, _ = lesion_world.render_task(per_class, seed)
    features, labels = encode_pil(model, images, config), torch.tensor(labels)  # [N, D], [N]
    encode = lambda texts: encode_texts(model, tokenizer, texts)  # noqa: E731
    names = [[f"a photo of a {name}."] for name in lesion_world.CLASS_NAMES]
    symptoms = [packs[name] for name in lesion_world.CLASS_NAMES]
    fit_images, fit_labels, _ = lesion_world.render_task(per_class, seed + 1)
    probe = LogisticRegression(max_iter=5000).fit(encode_pil(model, fit_images, config).numpy(), fit_labels)
    return {
        "eval_images": len(labels),
        "class_name_zeroshot": symptom_accuracy(features, labels, names, encode),
        "symptom_zeroshot": symptom_accuracy(features, labels, symptoms, encode),
        "symptom_zeroshot_swapped": symptom_accuracy(features, labels, symptoms[::-1], encode),
        "linear_probe": float(probe.score(features.numpy(), labels.numpy())),
    }


# Entry point -------------------------------------------------------------------------------


def pretrain(out: Path, recipe: PretrainConfig, vocab_from: Path | None = None, log=print) -> dict:
    """Render, train, measure and save. Returns the knowledge figures.

    Args:
        out: the .safetensors file to write.
        recipe: the training recipe.
        vocab_from: a toy weights file whose vocabulary to reuse (to reproduce it exactly even
            after more symptom packs were added); None builds it from the packs shipped now.
        log: where progress lines go.
    """
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    vocab = load_toy_weights(vocab_from)[1] if vocab_from else build_vocabulary()
    config = ToyConfig()
    tokenizer = WordTokenizer(vocab, config.context_length)
    log(f"recipe {json.dumps(asdict(recipe))}; vocabulary {len(vocab)} words")
    pixels, attributes = render_images(recipe.images, recipe.seed, log)
    model = build_random_model(config, len(vocab), seed=recipe.seed)
    log(f"toy CLIP: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    train(model, pixels, attributes, tokenizer, recipe, log)
    figures = measure_knowledge(model, tokenizer, recipe.eval_per_class, seed=10_000 + recipe.seed)
    log("knowledge: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))
    extra = {"recipe": asdict(recipe), "figures": figures, "torch": torch.__version__}
    save_toy_weights(out, model, vocab, config, extra)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return figures


def parse_args(argv: list[str] | None) -> tuple[Path, Path | None, PretrainConfig]:
    """The output file, the optional vocabulary source and the recipe, from the command line."""
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(prog="python -m vip_backbones.toy_pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--vocab-from", type=Path, help="reuse this toy weights file's vocabulary")
    for field, value in asdict(defaults).items():
        kind = type(value)
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=value, help=f"default {value}")
    args = vars(parser.parse_args(argv))
    out, vocab_from = args.pop("out"), args.pop("vocab_from")
    return out, vocab_from, PretrainConfig(**args)


def main(argv: list[str] | None = None) -> int:
    """Pretrain the toy weights as the command line says; the exit status."""
    out, vocab_from, recipe = parse_args(argv)
    pretrain(out, recipe, vocab_from, log=lambda line: print(time.strftime("%H:%M:%S"), line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
