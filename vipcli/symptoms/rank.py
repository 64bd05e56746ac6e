"""Rank symptoms on the user's own images: which ones the frozen backbone can actually see.

For every symptom of every class, on the training split:

- its similarity to each image is the cosine of image and symptom features minus the image's mean
  cosine over all ranked symptoms (so an image that resembles every text a little more than
  others does not count as evidence for any one symptom);
- AUROC: how well that similarity ranks the images of the symptom's class above the images of all
  other classes (0.5 is chance, 1.0 perfect, below 0.5 backwards);
- it "favours" another class when the images of that class match it significantly better than
  the images of its own class (pairwise AUROC below 1 - bound, and its whole interval below 0.5);
- unrelated: the highest AUROC that texts unrelated to any medical image ("A photo of a dog", ...)
  reach for its class, on the same similarity. When the classes' images differ at all, almost any
  text's similarity separates them a little, whether or not the backbone reads the text; a symptom
  the backbone sees must do better than text that says nothing of the images;
- its 95% interval: where its AUROC lies given how many images it was measured on (Newcombe's score
  interval, `auroc_interval`): "helps" on 12 images is a wide interval, on 1,200 a narrow one;
- it helps when its AUROC is above chance with 95% confidence (one-sided; the bound depends on
  how many images there are), or above --min-auroc when that is given (it then replaces the chance
  bound, in the pairwise test too), when the low end of its interval is above chance and what unrelated
  texts reach, and when it favours no other class: no verdict claims more than the interval shows.

`prune` removes the symptoms that do not help, keeping at least two per class; `keep` caps each class at its
K best. A kept symptom that
"points the wrong way" (AUROC below 0.5, or it favours another class: the other classes' images match
it better than its own class's) is recorded as such in the pruned pack, and the command warns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from vipcli.errors import UsageError, VipError
from vipcli.packs import SymptomPack, without_image_names

CONFIDENCE_Z = 1.645  # one-sided 95% normal quantile
INTERVAL_Z = 1.96  # two-sided 95% normal quantile: the AUROC's interval
INTERVAL_NAME = "95% interval"
KEEP_AT_LEAST = 2  # a pruned pack keeps at least this many symptoms
UNRELATED_TEXTS = (  # say nothing of any medical image: what they reach is what the backbone gives any text
    "A photo of a dog",
    "A red car parked on a street",
    "A bowl of hot soup",
    "A mountain landscape at sunset",
    "A page of printed text",
    "A ripe yellow banana",
    "A wooden chair in an empty room",
    "A city skyline at night",
)


@dataclass(frozen=True)
class SymptomScore:
    """How well one symptom separates its class on the user's images."""

    class_name: str  # the class folder the symptom belongs to
    symptom: str  # the symptom text, as in its pack
    auroc: float  # its class vs all other classes, in [0, 1]
    bound: float  # the AUROC it must beat to count as better than chance
    favours: str | None  # another class whose images match it significantly better, or None
    favours_auroc: float | None  # AUROC of its class vs that class (below 0.5)
    unrelated: float = 0.0  # the highest AUROC UNRELATED_TEXTS reach for its class (0: not measured)
    interval: tuple[float, float] | None = None  # the AUROC's 95% interval (`auroc_interval`); None: not measured

    @property
    def low(self) -> float:
        """The low end of its AUROC's 95% interval (the AUROC itself when no interval was measured)."""
        return self.auroc if self.interval is None else self.interval[0]

    @property
    def helps(self) -> bool:
        """True if it separates its class better than chance, the low end of its interval above both chance (0.5)
        and what unrelated texts reach, and favours no other class."""
        return self.auroc > self.bound and self.low > max(0.5, self.unrelated) and self.favours is None

    @property
    def like_unrelated_text(self) -> bool:
        """True if it beats chance but not what texts unrelated to the images reach for its class: the images
        differ, but nothing shows the backbone sees what the symptom says."""
        return self.favours is None and self.bound < self.auroc <= self.unrelated

    @property
    def unsure_over_unrelated(self) -> bool:
        """True if it beats chance and its AUROC beats the unrelated texts' reach, but its interval reaches down to
        that reach: on these images it may be no better than text unrelated to them."""
        return self.favours is None and self.auroc > self.bound and self.auroc > self.unrelated >= self.low

    @property
    def points_wrong_way(self) -> bool:
        """True if the other classes' images match it better than its own class's (AUROC below 0.5, or it
        significantly favours another class)."""
        return self.auroc < 0.5 or self.favours is not None

    @property
    def too_few_images(self) -> bool:
        """True when its bound is 1 or more: with so few images no AUROC, not even 1.0, beats chance."""
        return self.bound >= 1

    @property
    def verdict(self) -> str:
        """"helps", "favours <class>", "too few images to tell", "no better than unrelated text", "not clearly
        above unrelated text" or "no better than chance"."""
        if self.favours is not None:
            return f"favours {self.favours}"
        if self.helps:
            return "helps"
        if self.like_unrelated_text:
            return "no better than unrelated text"
        if self.unsure_over_unrelated:
            return "not clearly above unrelated text"
        return "too few images to tell" if self.too_few_images else "no better than chance"


@dataclass(frozen=True)
class RankConfig:
    """What to rank on, and with which backbone."""

    data: Path  # folder of class subfolders (optionally under train/ val/ test/)
    backbone: str = "clip"  # backbone plugin id
    arch: str | None = None  # architecture option for the plugin
    pretrained: str | None = None  # weights option for the plugin
    symptoms: tuple[str, ...] = ()  # --symptoms sources (pack files, folders, shipped names); shipped packs after
    seed: int = 1  # seed of any split vip makes (the same as `vip train --seed`)
    min_auroc: float | None = None  # fixed bound instead of the chance bound
    device: str = "auto"  # torch device name
    use_cache: bool = True  # read and write the on-disk feature cache
    workers: int = 2  # image-decoding worker processes
    cache_dir: Path | None = None  # feature cache root (default: the user cache folder)
    image_fit: str = "crop"  # crop, pad or squash: the images as `vip train --image-fit` sees them (vipcli.image_fit)


@dataclass
class RankResult:
    """Every symptom's score, and what it was measured on."""

    scores: list[SymptomScore]  # per class (dataset order), best first
    class_names: list[str]  # class folders, sorted
    packs: dict[str, SymptomPack]  # class name -> the pack ranked
    counts: list[int]  # readable training images per class
    failures: dict = field(default_factory=dict)  # unreadable file -> reason
    backbone: dict = field(default_factory=dict)  # id, arch, pretrained, fingerprint
    device: str = "cpu"  # where the encoders ran
    split: str = "folder"  # where the training split came from
    image_fit: str = "crop"  # how the images were fitted into the encoder's square
    unrelated: dict = field(default_factory=dict)  # class -> the highest AUROC UNRELATED_TEXTS reach for it


def chance_bound(n_positive: int, n_negative: int, z: float = CONFIDENCE_Z) -> float:
    """The AUROC a useless symptom stays below with the given confidence (Hanley-McNeil null SE)."""
    if n_positive == 0 or n_negative == 0:
        return 1.0
    return 0.5 + z * math.sqrt((n_positive + n_negative + 1) / (12.0 * n_positive * n_negative))


def auroc_interval(auroc: float, n_positive: int, n_negative: int, z: float = INTERVAL_Z) -> tuple[float, float]:
    """The 95% interval of an AUROC measured on `n_positive` images of its class against `n_negative` others.

    Newcombe's score interval (Statistics in Medicine 25:559, 2006, method 5): every θ in [0, 1] with
    (auroc - θ)² <= z² V(θ), where V(θ) = θ(1 - θ) / (n_positive n_negative) x [1 + (n - 1)((1 - θ) / (2 - θ) +
    θ / (1 + θ))] is the Hanley-McNeil variance of an AUROC of θ, n the mean of the two counts. It depends only on
    the AUROC and the counts (no resampling, no seed), stays inside [0, 1], and is not empty at 1.0: 6 images
    against 6 with a perfect AUROC give 0.689 to 1, 600 against 600 give 0.997 to 1.
    """
    if n_positive <= 0 or n_negative <= 0:
        return 0.0, 1.0
    mean_count = (n_positive + n_negative) / 2

    def excess(theta: float) -> float:  # > 0 outside the interval, <= 0 inside; <= 0 at theta = auroc
        variance = theta * (1 - theta) / (n_positive * n_negative) * (
            1 + (mean_count - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))
        return (auroc - theta) ** 2 - z * z * variance

    return _edge(excess, 0.0, auroc), _edge(excess, 1.0, auroc)


def _edge(excess, outside: float, inside: float, steps: int = 60) -> float:
    """Where `excess` turns from > 0 (at `outside`, an end of [0, 1]) to <= 0 (at `inside`), by bisection."""
    if excess(outside) <= 0:
        return outside
    for _ in range(steps):
        middle = (outside + inside) / 2
        outside, inside = (middle, inside) if excess(middle) > 0 else (outside, middle)
    return inside


def too_few_to_judge(class_names: list[str], counts: list[int]) -> dict[str, str]:
    """class -> "2 against 2": the classes whose image counts (theirs against the other classes') no AUROC can
    beat the chance bound with; with 2 images against 2, even a perfect 1.0 stays under it (1.031)."""
    total = sum(counts)
    return {name: f"{count} against {total - count}" for name, count in zip(class_names, counts)
            if chance_bound(count, total - count) >= 1}


ENOUGH_HINT = f"with 16 against 16, a symptom needs an AUROC above {chance_bound(16, 16):.2f}"


def too_few_error(classes: dict[str, str]) -> VipError:
    """The error of `--prune` on the classes `too_few_to_judge` found: pruning them would follow noise."""
    listed = "; ".join(f"{name}: {counts}" for name, counts in classes.items())
    return VipError(f"too few training images to prune by ({listed}): no AUROC, not even 1.0, beats "
                    "chance with 95% confidence at these counts",
                    f"add training images ({ENOUGH_HINT}), or pass --min-auroc to prune by a bound of your own")


def centered_similarity(image_features, text_features):
    """Cosine of every image with every symptom, minus the image's mean over the symptoms.

    Args:
        image_features: [N, D] image features (any norm).
        text_features: [S, D] symptom features (any norm).
    Returns:
        [N, S] numpy array.
    """
    import torch.nn.functional as F

    images = F.normalize(image_features.float(), dim=-1)  # [N, D]
    texts = F.normalize(text_features.float(), dim=-1)  # [S, D]
    cosine = images @ texts.T  # [N, S]
    return (cosine - cosine.mean(dim=1, keepdim=True)).cpu().numpy()


def unrelated_similarity(image_features, text_features, unrelated_features):
    """Cosine of every image with every unrelated text, minus the image's mean over the ranked symptoms (the
    same centering as `centered_similarity`, which the unrelated texts do not change).

    Args:
        image_features: [N, D] image features (any norm).
        text_features: [S, D] the ranked symptoms' features (any norm).
        unrelated_features: [U, D] the unrelated texts' features (any norm).
    Returns:
        [N, U] numpy array.
    """
    import torch.nn.functional as F

    images = F.normalize(image_features.float(), dim=-1)  # [N, D]
    mean = (images @ F.normalize(text_features.float(), dim=-1).T).mean(dim=1, keepdim=True)  # [N, 1]
    return (images @ F.normalize(unrelated_features.float(), dim=-1).T - mean).cpu().numpy()


def unrelated_reach(unrelated, labels, class_count: int) -> list[float]:
    """Per class index, the highest AUROC (its class against the others) of any column of `unrelated` [N, U];
    0.0 for a class without images or when there are no columns."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    reach = []
    for index in range(class_count):
        positive = labels == index
        if unrelated is None or unrelated.shape[1] == 0 or positive.all() or not positive.any():
            reach.append(0.0)
            continue
        reach.append(max(float(roc_auc_score(positive, unrelated[:, column])) for column in range(unrelated.shape[1])))
    return reach


def score_symptoms(similarity, labels, owners: list[int], texts: list[str], class_names: list[str],
                   min_auroc: float | None = None, unrelated=None) -> list[SymptomScore]:
    """Score each symptom (column of `similarity`) for the class that owns it.

    Args:
        similarity: [N, S] image-symptom similarity.
        labels: [N] class index of each image.
        owners: [S] class index owning each symptom.
        texts: [S] the symptom texts.
        class_names: names by class index.
        min_auroc: a fixed bound; None uses the chance bound for the image counts.
        unrelated: [N, U] the images' similarity to texts unrelated to them (`unrelated_similarity`); a symptom
            helps only if the low end of its 95% interval beats the highest AUROC they reach for its class. None:
            not measured.
    Returns:
        One SymptomScore per symptom, per class in class order, best AUROC first.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    reach = unrelated_reach(unrelated, labels, len(class_names))
    scores = []
    for column, (owner, text) in enumerate(zip(owners, texts)):
        values = similarity[:, column]  # [N]
        positive = labels == owner
        bound = min_auroc if min_auroc is not None else chance_bound(int(positive.sum()), int((~positive).sum()))
        auroc = float(roc_auc_score(positive, values))
        favours, favours_auroc = None, None
        for other in range(len(class_names)):
            negative = labels == other
            if other == owner or not negative.any():
                continue
            pair = positive | negative
            pairwise = float(roc_auc_score(positive[pair], values[pair]))
            pair_bound = min_auroc if min_auroc is not None else chance_bound(int(positive.sum()), int(negative.sum()))
            pair_high = auroc_interval(pairwise, int(positive.sum()), int(negative.sum()))[1]
            if pairwise < 1 - pair_bound and pair_high < 0.5 and (favours_auroc is None or pairwise < favours_auroc):
                favours, favours_auroc = class_names[other], pairwise
        interval = auroc_interval(auroc, int(positive.sum()), int((~positive).sum()))
        scores.append(SymptomScore(class_names[owner], text, auroc, bound, favours, favours_auroc, reach[owner],
                                   interval))
    order = {name: index for index, name in enumerate(class_names)}
    return sorted(scores, key=lambda s: (order[s.class_name], -s.auroc))


def rank_on_data(config: RankConfig, progress=None) -> RankResult:
    """Score every symptom of every class on the training split with the frozen backbone.

    Args:
        config: data folder, backbone, symptom sources, bound.
        progress: an optional rich Progress for image encoding.
    Returns:
        RankResult with one SymptomScore per symptom.
    Raises:
        VipError: no data, a class without a pack, fewer than two classes with readable images.
    """
    import torch

    from vipcli import console
    from vipcli.data import load_dataset
    from vipcli.devices import resolve_device
    from vipcli.features import FeatureCache, default_cache_dir, encode_images
    from vipcli.packs import check_sources_exist, packs_for_classes
    from vipcli.prompts import build_prompt_bank, encode_prompts
    from vipcli.registry import load_backbone
    from vipcli.settings import check_backbone_and_device

    if config.min_auroc is not None and not 0.5 <= config.min_auroc < 1:
        raise UsageError(f"--min-auroc {config.min_auroc}: must be at least 0.5 and below 1")
    check_backbone_and_device(config.backbone, config.device)  # before the data is listed and hashed
    check_sources_exist(config.symptoms)
    dataset = load_dataset(config.data, seed=config.seed)
    packs = packs_for_classes(dataset.class_names, list(config.symptoms), data=config.data)
    device = resolve_device(config.device)
    root = (config.cache_dir or default_cache_dir()) if config.use_cache else None  # (refused: before loading)
    backbone = load_backbone(config.backbone, config.arch, config.pretrained, device)
    prompts = [list(packs[name].symptoms) for name in dataset.class_names]
    bank = build_prompt_bank(backbone, prompts, n_ctx=0)  # a symptom too long for the text tower: before encoding
    unrelated_bank = build_prompt_bank(backbone, [list(UNRELATED_TEXTS)], n_ctx=0)
    cache = FeatureCache(root, backbone, config.image_fit)
    train = dataset.splits["train"]
    with console.task(progress, "encoding training images", len(train)) as advance:
        encoded = encode_images(backbone, [s.path for s in train], 0, cache, workers=config.workers, advance=advance)
    readable = sorted(encoded.readable)
    labels = [train[i].label for i in readable]
    counts = [labels.count(c) for c in range(len(dataset.class_names))]
    if sum(1 for n in counts if n) < 2:
        raise VipError(
            f"{config.data}: fewer than two classes have readable training images ({_counts(dataset, counts)})",
            "add readable images to the class folders",
        )
    with torch.no_grad():
        text_features = encode_prompts(backbone, bank, None).cpu()  # [S, D]
        unrelated_features = encode_prompts(backbone, unrelated_bank, None).cpu()  # [U, D]
    images = torch.stack([encoded.eval[i] for i in readable])  # [N, D]
    similarity = centered_similarity(images, text_features)  # [N, S]
    unrelated = unrelated_similarity(images, text_features, unrelated_features)  # [N, U]
    owners = bank.class_index.tolist()
    texts = [symptom for class_prompts in prompts for symptom in class_prompts]
    scores = score_symptoms(similarity, labels, owners, texts, dataset.class_names, config.min_auroc, unrelated)
    reach = unrelated_reach(unrelated, labels, len(dataset.class_names))
    describe = backbone.describe()
    return RankResult(
        scores=scores, class_names=dataset.class_names, packs=packs, counts=counts, failures=encoded.failures,
        backbone={"id": config.backbone, "arch": str(describe.get("arch", config.arch or "")),
                  "pretrained": str(describe.get("pretrained", config.pretrained or "")),
                  "fingerprint": backbone.fingerprint()},
        device=str(device), split=dataset.origin.get("train", "folder"), image_fit=config.image_fit,
        unrelated=dict(zip(dataset.class_names, reach)),
    )


def _counts(dataset, counts: list[int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in zip(dataset.class_names, counts))


@dataclass(frozen=True)
class PrunedPack:
    """One class's pack after pruning."""

    class_name: str  # the class folder
    pack: SymptomPack  # the new pack (the original when nothing was removed)
    removed: tuple[SymptomScore, ...]  # symptoms taken out
    kept_anyway: tuple[SymptomScore, ...]  # flagged symptoms kept so the pack has KEEP_AT_LEAST
    beyond_keep: tuple[SymptomScore, ...] = ()  # of `removed`, those taken out only to keep the K best (--keep K)

    @property
    def kept_wrong_way(self) -> tuple[SymptomScore, ...]:
        """The kept symptoms that point the wrong way (see `SymptomScore.points_wrong_way`)."""
        return tuple(s for s in self.kept_anyway if s.points_wrong_way)


def prune(result: RankResult, data: Path, keep: int | None = None, drop_unhelpful: bool = True) -> list[PrunedPack]:
    """Each class's pack without the symptoms that do not help, keeping at least two (the best); with `keep`, at
    most its `keep` best.

    Args:
        result: the ranking.
        data: the data folder (recorded in the pack's provenance).
        keep: the most symptoms a class keeps (`--keep K`), the best first (`best_first`); None: no cap.
        drop_unhelpful: remove the symptoms that do not help (`--prune`); False keeps them unless `keep` cuts them.
    Returns:
        One PrunedPack per class, in class order.
    Raises:
        UsageError: two classes share one pack (each needs its own to be pruned on its own), or `keep` is below 1.
    """
    check_keep(keep)
    _refuse_shared_packs(result)
    undecided = {s.class_name for s in result.scores if s.too_few_images}  # none under --min-auroc
    if undecided and drop_unhelpful:
        found = too_few_to_judge(result.class_names, result.counts)
        raise too_few_error({name: counts for name, counts in found.items() if name in undecided})
    pruned = []
    for name in result.class_names:
        scores = best_first([s for s in result.scores if s.class_name == name])
        kept, kept_anyway = _chosen(scores, keep, drop_unhelpful)
        item = _pruned_pack(result, data, name, scores, kept, kept_anyway, keep, drop_unhelpful)
        pruned.append(item)
    return pruned


def check_keep(keep: int | None) -> None:
    """UsageError unless `keep` (`--keep K`, the most symptoms a class keeps) is None or at least 1."""
    if keep is not None and keep < 1:
        raise UsageError(f"--keep {keep}: must be at least 1", "give how many symptoms each class keeps, e.g. --keep 3")


def best_first(scores: list[SymptomScore]) -> list[SymptomScore]:
    """One class's symptoms in the order `--keep` takes them: those that help, then the rest, each by AUROC."""
    return sorted(scores, key=lambda s: (not s.helps, -s.auroc))


def _chosen(scores: list[SymptomScore], keep: int | None, drop_unhelpful: bool) -> tuple[list, list]:
    """(kept, kept only to reach the floor) of one class's `best_first` scores."""
    cap = len(scores) if keep is None else min(keep, len(scores))
    if not drop_unhelpful:
        return scores[:cap], []
    helping = [s for s in scores if s.helps][:cap]
    floor = min(KEEP_AT_LEAST, cap)
    return helping, [s for s in scores if not s.helps][: max(0, floor - len(helping))]


def _pruned_pack(result: RankResult, data: Path, name: str, scores: list, kept: list, kept_anyway: list,
                 keep: int | None, drop_unhelpful: bool) -> PrunedPack:
    original = result.packs[name]
    keep_texts = {s.symptom for s in (*kept, *kept_anyway)}
    removed = tuple(s for s in scores if s.symptom not in keep_texts)
    beyond = tuple(s for s in removed if s.helps or not drop_unhelpful)  # removed only by the cap
    pack = replace(original, source=without_image_names(original.source))  # vip 0.1.0's named its images
    item = PrunedPack(name, pack, removed, tuple(kept_anyway), beyond)
    if removed or item.kept_wrong_way:
        symptoms = tuple(s for s in original.symptoms if s in keep_texts)  # the pack's own order
        source = {**pack.source, "pruned": _provenance(result, data, item, keep, drop_unhelpful)}
        item = replace(item, pack=replace(original, symptoms=symptoms, source=source, path=""))
    return item


def _refuse_shared_packs(result: RankResult) -> None:
    seen: dict[int, str] = {}
    for name in result.class_names:
        other = seen.setdefault(id(result.packs[name]), name)
        if other != name:
            raise UsageError(
                f"classes {other!r} and {name!r} use the same pack {result.packs[name].name!r}",
                "give each class its own pack with --symptoms before pruning",
            )


def _provenance(result: RankResult, data: Path, item: PrunedPack, keep: int | None = None,
                drop_unhelpful: bool = True) -> dict:
    def rows(scores):
        return [{"symptom": s.symptom, "auroc": round(s.auroc, 3), "interval": [round(v, 3) for v in s.interval],
                 "verdict": s.verdict} if s.interval else
                {"symptom": s.symptom, "auroc": round(s.auroc, 3), "verdict": s.verdict} for s in scores]

    options = ["--prune"] * drop_unhelpful + ([f"--keep {keep}"] if keep is not None else [])
    record = {
        "by": "vip symptoms rank " + " ".join(options),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": str(data),
        "backbone": dict(result.backbone),
        "training_images": sum(result.counts),
        "removed": rows(item.removed),
    }
    if keep is not None:
        record["keep"] = keep
        record["beyond_keep"] = [s.symptom for s in item.beyond_keep]
    if item.kept_anyway:
        record["kept_below_bound"] = rows(item.kept_anyway)
    if item.kept_wrong_way:  # the other classes' images match these better than this class's: rewrite them
        record["kept_wrong_way"] = rows(item.kept_wrong_way)
    return record
