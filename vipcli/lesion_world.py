"""A procedural "lesion world": skin-like images with one spot whose visual attributes are known.

Every image is drawn from a `LesionAttributes` record (shape, border, colors, dots, redness, size)
and a seeded numpy generator, so the same seed always gives the same pixels. Two toy "diseases"
are defined only by how often they show each attribute (`DISEASES`); they overlap, and
`write_dataset` adds label noise, so telling them apart is learnable but not trivial.

`caption` describes the visual attributes in many phrasings and never names a disease; the toy
backbone (`vip_backbones.toy`) is pretrained on such captions only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PALETTE = {  # RGB of each color a spot can show
    "brown": (120, 72, 42),
    "black": (38, 28, 26),
    "blue": (78, 102, 160),
    "red": (182, 52, 56),
    "white": (232, 226, 222),
    "tan": (196, 150, 104),
}
BORDERS = ("sharp", "blurry", "jagged")
CLASS_NAMES = ("melanoma", "nevus")  # class folder names; they match vip's shipped symptom packs
SUPERSAMPLE = 2  # render at 2x and box-filter down, for smooth edges


@dataclass(frozen=True)
class LesionAttributes:
    """The visual attributes of one spot (all a caption may mention)."""

    asymmetric: bool  # outline differs from side to side (else mirror-symmetric, round or oval)
    border: str  # edge type: "sharp", "blurry" (fades into the skin) or "jagged" (ragged, notched)
    colors: tuple[str, ...]  # PALETTE names inside the spot; one name for a uniformly colored spot
    dots: bool  # small dark dots scattered inside the spot
    redness: bool  # a red, inflamed halo on the skin around the spot
    size: float  # spot radius as a fraction of half the image width, 0.3 (small) to 0.7 (large)


@dataclass(frozen=True)
class DiseaseProfile:
    """How often one toy disease shows each attribute (probabilities)."""

    asymmetric: float  # P(asymmetric outline)
    border: tuple[float, float, float]  # P(sharp), P(blurry), P(jagged)
    multicolor: float  # P(two or more colors)
    colors: tuple[str, ...]  # palette a spot of this disease draws its colors from
    single_colors: tuple[str, ...]  # colors of a one-colored spot
    dots: float  # P(dark dots inside)
    redness: float  # P(red halo around)
    size: tuple[float, float]  # uniform range of the radius fraction


DISEASES = {
    # melanoma-like: asymmetric, blurry or jagged, several colors, dark dots (the paper's symptoms)
    "melanoma": DiseaseProfile(
        asymmetric=0.8, border=(0.2, 0.35, 0.45), multicolor=0.8, colors=tuple(PALETTE),
        single_colors=("brown", "black"), dots=0.75, redness=0.2, size=(0.4, 0.7),
    ),
    # nevus-like: symmetric, sharp, one color. Redness is made more common here than in melanoma
    # (0.4 vs 0.2) because the paper lists "Redness or swelling around the spot" as a nevus symptom.
    "nevus": DiseaseProfile(
        asymmetric=0.15, border=(0.8, 0.1, 0.1), multicolor=0.15, colors=("brown", "tan", "black"),
        single_colors=("brown", "tan", "black"), dots=0.2, redness=0.4, size=(0.3, 0.6),
    ),
}
# No disease: what the toy backbone is pretrained on (attributes independent of each other).
UNIFORM = DiseaseProfile(
    asymmetric=0.5, border=(0.4, 0.3, 0.3), multicolor=0.55, colors=tuple(PALETTE),
    single_colors=tuple(PALETTE), dots=0.5, redness=0.5, size=(0.3, 0.7),
)


# Sampling ----------------------------------------------------------------------------------


def sample_attributes(disease: str | None, rng: np.random.Generator) -> LesionAttributes:
    """Draw the attributes of one spot.

    Args:
        disease: "melanoma" or "nevus" to follow that disease's profile, or None for attributes
            drawn independently of any disease (what the toy backbone is pretrained on).
        rng: the numpy generator every random choice comes from.
    Returns:
        A `LesionAttributes`.
    """
    profile = UNIFORM if disease is None else DISEASES[disease]
    multicolor = rng.random() < profile.multicolor
    if multicolor:
        count = int(rng.integers(2, min(4, len(profile.colors)) + 1))
        colors = tuple(str(c) for c in rng.choice(profile.colors, size=count, replace=False))
    else:
        colors = (str(rng.choice(profile.single_colors)),)
    return LesionAttributes(
        asymmetric=bool(rng.random() < profile.asymmetric),
        border=BORDERS[int(rng.choice(3, p=profile.border))],
        colors=colors,
        dots=bool(rng.random() < profile.dots),
        redness=bool(rng.random() < profile.redness),
        size=float(rng.uniform(*profile.size)),
    )


# Rendering ---------------------------------------------------------------------------------


def _grid(pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: (x, y), each [P, P]."""
    axis = (np.arange(pixels, dtype=np.float32) + 0.5) / pixels * 2 - 1  # [P]
    return np.meshgrid(axis, axis)


def _outline(attrs: LesionAttributes, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boundary radius at each angle: an oval, bulged unevenly if asymmetric, notched if jagged."""
    tilt = rng.uniform(0, np.pi)
    radius = 1 + rng.uniform(0, 0.12) * np.cos(2 * (theta - tilt))  # mirror-symmetric oval
    if attrs.asymmetric:
        for k, (low, high) in zip((1, 2, 3), ((0.18, 0.3), (0.06, 0.14), (0.08, 0.16))):
            radius = radius + rng.uniform(low, high) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if attrs.border == "jagged":
        for k in rng.choice(np.arange(7, 19), size=5, replace=False):
            radius = radius + rng.uniform(0.03, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return attrs.size * radius  # [P, P]


def _skin(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A skin-toned background with uneven lighting and fine grain. Returns [P, P, 3] float."""
    tone = np.array([226, 188, 160], np.float32) * rng.uniform(0.82, 1.03)  # [3]
    light = 1 + 0.06 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y)  # [P, P]
    mottle = 1 + 0.02 * np.sin(rng.uniform(2, 5) * x + rng.uniform(0, 6)) * np.sin(rng.uniform(2, 5) * y)
    grain = rng.normal(0, 3.0, size=(*x.shape, 1)).astype(np.float32)  # [P, P, 1]
    return tone * (light * mottle)[..., None] + grain


def _pigment(attrs: LesionAttributes, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The spot's own colors: one jittered color, or soft patches of several. Returns [P, P, 3]."""
    base = np.array([PALETTE[c] for c in attrs.colors], np.float32)  # [K, 3]
    base = base * rng.uniform(0.9, 1.1, size=(len(base), 1))
    if len(base) == 1:
        shade = 1 - 0.08 * np.clip(1 - np.hypot(x, y) / attrs.size, 0, 1)  # slightly darker centre
        return base[0] * shade[..., None]
    seeds = 3 * len(base)
    angle, rho = rng.uniform(0, 2 * np.pi, seeds), attrs.size * np.sqrt(rng.uniform(0, 1, seeds))
    cx, cy = rho * np.cos(angle), rho * np.sin(angle)  # [S]
    dist2 = (x[None] - cx[:, None, None]) ** 2 + (y[None] - cy[:, None, None]) ** 2  # [S, P, P]
    weight = np.exp(-(dist2 - dist2.min(axis=0)) / 0.006)  # soft Voronoi cells
    weight /= weight.sum(axis=0)
    palette = base[np.arange(seeds) % len(base)]  # [S, 3]; every color gets cells
    return np.einsum("spq,sc->pqc", weight, palette)


def _dots(attrs: LesionAttributes, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coverage [P, P] of small dark dots inside the spot (zeros when it has none)."""
    if not attrs.dots:
        return np.zeros_like(x)
    count = int(rng.integers(6, 15))
    angle, rho = rng.uniform(0, 2 * np.pi, count), 0.7 * attrs.size * np.sqrt(rng.uniform(0, 1, count))
    cx, cy, r = rho * np.cos(angle), rho * np.sin(angle), rng.uniform(0.035, 0.06, count)  # [N]
    dist = np.sqrt((x[None] - cx[:, None, None]) ** 2 + (y[None] - cy[:, None, None]) ** 2)  # [N, P, P]
    return np.clip((r[:, None, None] - dist).max(axis=0) / 0.02 + 0.5, 0, 1)


def render_lesion(attrs: LesionAttributes, size: int, rng: np.random.Generator):
    """Draw one spot on skin.

    Args:
        attrs: what the spot looks like.
        size: side of the square image in pixels.
        rng: the numpy generator every random detail (placement, lighting, noise) comes from.
    Returns:
        An RGB `PIL.Image.Image` of `size` x `size`.
    """
    from PIL import Image

    pixels = size * SUPERSAMPLE
    x, y = _grid(pixels)
    x, y = x - rng.uniform(-0.1, 0.1), y - rng.uniform(-0.1, 0.1)  # spot not always centred
    dist, theta = np.hypot(x, y), np.arctan2(y, x)  # [P, P]
    edge = _outline(attrs, theta, rng)  # [P, P]
    skin = _skin(x, y, rng)
    if attrs.redness:
        halo = np.exp(-np.maximum(dist - edge, 0) / rng.uniform(0.1, 0.18))[..., None]  # [P, P, 1]
        skin = skin + 0.6 * halo * (np.array([205, 80, 80], np.float32) - skin)
    softness = rng.uniform(0.05, 0.09) if attrs.border == "blurry" else 0.006
    alpha = 1 / (1 + np.exp(np.clip((dist - edge) / softness, -50, 50)))  # [P, P]
    spot = _pigment(attrs, x, y, rng)
    dots = _dots(attrs, x, y, rng)[..., None]
    spot = spot + dots * (np.array(PALETTE["black"], np.float32) * 0.8 - spot)
    image = skin + alpha[..., None] * (spot - skin)  # [P, P, 3]
    image = image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))  # [S, S, 3]
    return Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8), "RGB")


# Captions ----------------------------------------------------------------------------------

SHAPE_PHRASES = {
    True: (
        "the spot is asymmetric", "an asymmetric spot", "an irregular, asymmetric shape",
        "the two halves of the spot do not match", "a lopsided, uneven shape", "the shape is irregular",
        "the spot looks different on each side", "an uneven outline from side to side",
        "the sides are not the same", "the spot is not symmetric",
    ),
    False: (
        "the spot is symmetric", "a symmetric spot", "a round, regular shape", "an even oval shape",
        "the two halves match", "the shape is regular", "the spot looks the same on both sides",
        "a neat round outline", "an evenly shaped spot", "both sides are alike",
    ),
}
BORDER_PHRASES = {
    "sharp": (
        "sharp edges", "clear edges", "well-defined borders", "a crisp, smooth border",
        "the border is clear and distinct", "clean, smooth edges", "a sharp outline", "the edges are well defined",
    ),
    "blurry": (
        "blurry edges", "the edges are blurred", "a fuzzy, unclear border", "the border fades into the skin",
        "soft, blurry borders", "poorly defined edges", "indistinct edges", "a hazy outline",
    ),
    "jagged": (
        "jagged edges", "a jagged border", "ragged, notched edges", "the border is rough and irregular",
        "spiky edges", "an uneven, jagged outline", "irregular, notched borders", "the edges are jagged",
    ),
}
ONE_COLOR_PHRASES = (
    "a consistent {c} color", "one even {c} color", "a uniform {c} color", "it is {c} all over",
    "a single color, {c}", "the color is evenly {c}", "a solid {c} spot", "the same {c} color throughout",
)
MANY_COLOR_PHRASES = (
    "multiple colors, {list}", "several colors: {list}", "a mix of {list}", "many colors, like {list}",
    "uneven color, with {list}", "patches of {list}", "it has {list} areas", "{list} in patches",
    "a variety of colors such as {list}",
)
DOT_PHRASES = {
    True: (
        "tiny dark dots within the spot", "dark spots inside it", "small black dots", "dotted with dark points",
        "small dark areas inside", "speckled with dark dots", "little dark specks", "dark dots scattered inside",
    ),
    False: ("no dots inside", "a clean interior", "the inside is smooth, without dots", "no dark specks"),
}
REDNESS_PHRASES = {
    True: (
        "redness around the spot", "red, inflamed skin around it", "a red ring around the spot",
        "the surrounding skin is red", "reddened, swollen skin around it", "a red halo around the spot",
        "red swelling around it", "the skin around it is red and swollen",
    ),
    False: (
        "normal skin around it", "the surrounding skin looks normal", "no redness around the spot",
        "calm skin around it",
    ),
}
SIZE_PHRASES = {
    "small": ("a small spot", "the spot is small", "a tiny spot"),
    "medium": ("a medium-sized spot", "a spot of medium size"),
    "large": ("a large spot", "the spot is large", "a big spot"),
}
OPENERS = (
    "", "a skin spot.", "a close-up photo of a spot on the skin.", "an image of a spot on the skin.",
    "a dermoscopic image of a spot.", "a photo of a skin spot.", "a spot on the skin.",
)
CONNECTORS = (", ", ". ", "; ", " and ", ", with ")


def size_word(size: float) -> str:
    """"small", "medium" or "large" for a radius fraction."""
    return "small" if size < 0.43 else "large" if size > 0.57 else "medium"


def _color_list(colors: tuple[str, ...], rng: np.random.Generator) -> str:
    names = [str(c) for c in rng.permutation(list(colors))]
    last = " or " if rng.random() < 0.25 else " and "
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + last + names[-1]


def _pick(phrases, rng: np.random.Generator) -> str:
    return str(phrases[int(rng.integers(len(phrases)))])


def describe_attributes(attrs: LesionAttributes, rng: np.random.Generator) -> list[str]:
    """One freshly phrased clause per attribute (absent dots/redness only sometimes said)."""
    if len(attrs.colors) == 1:
        color = _pick(ONE_COLOR_PHRASES, rng).format(c=attrs.colors[0])
    else:
        color = _pick(MANY_COLOR_PHRASES, rng).format(list=_color_list(attrs.colors, rng))
    clauses = [
        _pick(SHAPE_PHRASES[attrs.asymmetric], rng),
        _pick(BORDER_PHRASES[attrs.border], rng),
        color,
        _pick(SIZE_PHRASES[size_word(attrs.size)], rng),
    ]
    for present, phrases in ((attrs.dots, DOT_PHRASES), (attrs.redness, REDNESS_PHRASES)):
        if present or rng.random() < 0.4:
            clauses.append(_pick(phrases[present], rng))
    return clauses


def caption(attrs: LesionAttributes, rng: np.random.Generator) -> str:
    """A freshly phrased description of the visual attributes only (never a disease name).

    Each attribute is mentioned with probability 0.75 (at least one), in random order and
    wording, joined by varied punctuation, sometimes after an opener like "a skin spot.".

    Args:
        attrs: the spot to describe.
        rng: the numpy generator for wording choices.
    Returns:
        A lower-case caption, e.g. "a skin spot. jagged edges, the spot is asymmetric."
    """
    clauses = describe_attributes(attrs, rng)
    keep = rng.random(len(clauses)) < 0.75
    keep[int(rng.integers(len(clauses)))] = True
    chosen = [clauses[i] for i in rng.permutation(len(clauses)) if keep[i]]
    text = chosen[0]
    for clause in chosen[1:]:
        text += _pick(CONNECTORS, rng) + clause
    opener = _pick(OPENERS, rng)
    return f"{opener} {text}.".strip()


def caption_phrases() -> list[str]:
    """Every phrase a caption can be built from, colors filled in (for building a vocabulary)."""
    phrases = [*OPENERS, *CONNECTORS]
    for table in (SHAPE_PHRASES, BORDER_PHRASES, DOT_PHRASES, REDNESS_PHRASES, SIZE_PHRASES):
        phrases += [p for group in table.values() for p in group]
    colors = " ".join(PALETTE) + " , or and"
    phrases += [p.format(c=colors, list=colors) for p in (*ONE_COLOR_PHRASES, *MANY_COLOR_PHRASES)]
    return phrases


# Data sets ---------------------------------------------------------------------------------


def sample_task(n_per_class: int, seed: int, noise: float = 0.05) -> list[tuple[LesionAttributes, int, int]]:
    """The (attributes, label index into CLASS_NAMES, image seed) of a balanced noisy task set.

    With probability `noise` an item's attributes are drawn from the other disease while it keeps
    its label (label noise); the disease profiles themselves overlap.
    """
    rng = np.random.default_rng(seed)
    items = []
    for label, name in enumerate(CLASS_NAMES):
        for _ in range(n_per_class):
            source = CLASS_NAMES[1 - label] if rng.random() < noise else name
            items.append((sample_attributes(source, rng), label, int(rng.integers(2**31))))
    return items


def render_task(n_per_class: int, seed: int, size: int = 64, noise: float = 0.05):
    """A task set in memory: (list of PIL images, list of labels, list of attributes)."""
    items = sample_task(n_per_class, seed, noise)
    images = [render_lesion(a, size, np.random.default_rng(s)) for a, _, s in items]
    return images, [label for _, label, _ in items], [a for a, _, _ in items]


def _save_png(image, path: Path) -> None:
    """Write atomically (temp file + rename), so an interrupted run leaves no half-written image."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_dataset(
    out_dir: str | Path,
    n_per_class: int | dict[str, int] = 200,
    seed: int = 0,
    size: int = 64,
    splits: dict[str, float] | None = None,
    noise: float = 0.05,
    replace: bool = False,
) -> dict[str, dict[str, int]]:
    """Write a seeded two-class lesion-world data set as `DIR/{split}/{melanoma,nevus}/*.png`.

    Args:
        out_dir: destination folder (created). A split folder in it that already holds files is
            refused (the two data sets would mix), unless `replace`.
        n_per_class: images per class, in total over all splits (or per split: {"train": 64, ...}).
        seed: the same seed gives byte-identical files.
        size: image side in pixels.
        splits: fractions per split, default {"train": 0.5, "val": 0.2, "test": 0.3}; ignored when
            n_per_class is a per-split mapping.
        noise: probability that an image's attributes come from the other disease (label noise).
        replace: delete the split folders first (how `vip demo` rewrites its own data set).
    Returns:
        {split: {class name: number of images written}}.
    Raises:
        VipError: a split folder already holds files and `replace` is False.
    """
    out_dir = Path(out_dir)
    counts = _split_counts(n_per_class, splits)
    _clear_or_refuse(out_dir, counts, replace)
    written: dict[str, dict[str, int]] = {}
    for index, (split, n) in enumerate(counts.items()):
        images, labels, _ = render_task(n, seed * 1000 + index, size, noise)
        written[split] = {name: 0 for name in CLASS_NAMES}
        for image, label in zip(images, labels):
            name = CLASS_NAMES[label]
            folder = out_dir / split / name
            folder.mkdir(parents=True, exist_ok=True)
            _save_png(image, folder / f"{name}_{written[split][name]:05d}.png")
            written[split][name] += 1
    return written


def _clear_or_refuse(out_dir: Path, splits, replace: bool) -> None:
    """Delete the split folders `write_dataset` writes (replace), or refuse one that holds files."""
    import shutil

    from vipcli.errors import VipError

    for split in splits:
        folder = out_dir / split
        if not folder.is_dir() or not any(folder.iterdir()):
            continue
        if replace:
            shutil.rmtree(folder)
        else:
            raise VipError(f"{folder} already holds files; a new lesion world written there would mix with them",
                           "write it to a new folder, or delete that one first")


def _split_counts(n_per_class: int | dict[str, int], splits: dict[str, float] | None) -> dict[str, int]:
    if isinstance(n_per_class, dict):
        return dict(n_per_class)
    splits = splits or {"train": 0.5, "val": 0.2, "test": 0.3}
    counts = {split: int(round(n_per_class * share)) for split, share in splits.items()}
    first = next(iter(counts))
    counts[first] += n_per_class - sum(counts.values())
    return counts
