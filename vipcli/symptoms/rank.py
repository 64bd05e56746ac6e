"""Rank symptoms on the user's own images: which ones the frozen backbone can actually see.

For every symptom of every class, on the training split:

- its similarity to each image is the cosine of image and symptom features minus the image's mean
  cosine over all ranked symptoms (so an image that resembles every text a little more than
  others does not count as evidence for any one symptom);
- AUROC: how well that similarity ranks the images of the symptom's class above the images of all
  other classes (0.5 is chance, 1.0 perfect, below 0.5 backwards);
- it "favours" another class when the images of that class match it significantly better than
  the images of its own class (pairwise AUROC below 1 - bound, its whole interval below 0.5, and its one-sided p
  below 0.05 after Holm's correction across its class's pairwise tests);
- unrelated: how far from chance, either way, texts unrelated to any medical image ("A photo of a dog", ...)
  reach for its class, on the same similarity (0.5 + the largest |AUROC - 0.5|: which way such a text falls is
  chance), with a 95% interval from a class-stratified bootstrap over the images, centred on the reach
  (`centred_interval`; fixed seed; 1,000 resamples, or
  40 per symptom of the class with the most where that is more, `bootstrap_resamples`). When the classes' images differ at all, almost any
  text's similarity separates them a little, whether or not the backbone reads the text; a symptom
  the backbone sees must do better than text that says nothing of the images;
- its 95% interval: where its AUROC lies given how many images it was measured on (Newcombe's score
  interval, `auroc_interval`): "helps" on 12 images is a wide interval, on 1,200 a narrow one;
- it helps when it passes every test of RULE (`failed_tests`), and its verdict names the first it fails: it
  favours no other class; its AUROC is above chance with 95% confidence (one-sided; the bound depends on how many
  images there are), or above --min-auroc when that is given (it then replaces the chance bound, in the pairwise
  test too); the low end of its interval is above chance and what unrelated texts reach (no verdict claims more
  than the interval shows); and the larger one-sided p of its test against chance (Hanley-McNeil) and its paired
  bootstrap test against the unrelated reach survives Holm's correction across its class's symptoms (`holm`,
  FAMILY_ALPHA). A Holm p under 0.05 beside another verdict is never a "helps": an earlier test failed.

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
FAMILY_ALPHA = 0.05  # Holm's correction: the chance that any "helps" of one class is a fluke stays under this
TESTS = ("favours", "chance", "unrelated", "correction")  # RULE's tests, in the order a verdict names the first failed
RULE = ("a symptom helps only when it passes every test, and its verdict names the first it fails: it favours no other "
        "class (that claim Holm-corrected too), its AUROC beats the bound, the low end of its interval is "
        "above both chance and the unrelated texts' reach, and its Holm p is under 0.05")
CORRECTION = ("Holm's step-down correction across each class's symptoms (family-wise error 5%) of the larger one-sided "
              "p of the two tests: above chance, and above the unrelated texts' reach; and of each \"favours\" claim, "
              "across its class's pairwise tests (its symptoms times the other classes)")
BOOTSTRAP_RESAMPLES = 1000  # class-stratified resamples of the images: the unrelated reach's interval, the paired test
BOOTSTRAP_SEED = 0  # fixed: the same images give the same intervals and verdicts
RESAMPLES_PER_SYMPTOM = 40  # at least this many resamples per symptom of the largest class (`bootstrap_resamples`)
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
    unrelated_interval: tuple[float, float] | None = None  # the reach's 95% bootstrap interval; None: not measured
    p_chance: float | None = None  # one-sided p of its AUROC against chance (`chance_p`); None: not tested
    p_unrelated: float | None = None  # one-sided paired bootstrap p against the unrelated reach; None: not tested
    p_holm: float | None = None  # `p_value` after Holm's correction across its class's symptoms
    images: int = 0  # how many images the AUROC was measured on (its class and the others)
    favours_before_correction: str | None = None  # the class it would favour were Holm's correction not applied
    favours_p: float | None = None  # one-sided p of that pairwise AUROC below chance (`chance_p`); None: no such class
    favours_p_holm: float | None = None  # `favours_p` after Holm's correction across its class's pairwise tests

    @property
    def low(self) -> float:
        """The low end of its AUROC's 95% interval (the AUROC itself when no interval was measured)."""
        return self.auroc if self.interval is None else self.interval[0]

    @property
    def p_value(self) -> float | None:
        """Its raw p: the larger of its two tests' (chance, unrelated), since "helps" needs both; None: not tested."""
        tested = [p for p in (self.p_chance, self.p_unrelated) if p is not None]
        return max(tested) if tested else None

    @property
    def survives_correction(self) -> bool:
        """True unless Holm's correction across its class's symptoms takes its "helps" back (or it was not tested)."""
        return self.p_holm is None or self.p_holm < FAMILY_ALPHA

    @property
    def clears_chance(self) -> bool:
        """True if its AUROC beats the bound (the chance bound for its image counts, or --min-auroc)."""
        return self.auroc > self.bound

    @property
    def clears_unrelated(self) -> bool:
        """True if the low end of its AUROC's interval is above both chance (0.5) and the unrelated texts' reach."""
        return self.low > max(0.5, self.unrelated)

    @property
    def failed_tests(self) -> tuple[str, ...]:
        """The tests of RULE it fails, in RULE's order ("favours", "chance", "unrelated", "correction"); empty
        exactly when it helps. Its verdict names the first."""
        failed = {"favours": self.favours is not None, "chance": not self.clears_chance,
                  "unrelated": not self.clears_unrelated, "correction": not self.survives_correction}
        return tuple(name for name in TESTS if failed[name])

    @property
    def passes_before_correction(self) -> bool:
        """True if it would help were it the only symptom of its class tested (Holm's correction aside)."""
        return self.favours is None and self.clears_chance and self.clears_unrelated

    @property
    def helps(self) -> bool:
        """True if it passes every test of RULE: it favours no other class, its AUROC beats the bound, the low end of
        its interval is above both chance (0.5) and what unrelated texts reach, and its Holm p is below
        FAMILY_ALPHA."""
        return not self.failed_tests

    @property
    def lost_to_correction(self) -> bool:
        """True if it would help on its own, but Holm's correction across its class's symptoms takes that back."""
        return self.passes_before_correction and not self.survives_correction

    @property
    def favours_lost_to_correction(self) -> bool:
        """True if it would favour another class on its own, but Holm's correction across its class's pairwise tests
        takes that back."""
        return self.favours is None and self.favours_before_correction is not None

    @property
    def unrelated_decides(self) -> bool:
        """True if its p is that of the test against the unrelated texts (not the one against chance)."""
        return self.p_unrelated is not None and self.p_unrelated > (self.p_chance or 0.0)

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
        """The first test of RULE it fails, in words: "favours <class>"; "too few images to tell" or "no better than
        chance" (its AUROC does not beat the bound); "no better than unrelated text" (nor the unrelated texts' reach)
        or "not clearly above unrelated text" (the low end of its interval does not clear it; without unrelated
        texts, "no better than chance"); after Holm's correction, the test whose p decides: "not clearly above
        unrelated text" or "no better than chance". "helps" when it fails none."""
        failed = self.failed_tests
        if not failed:
            return "helps"
        if failed[0] == "favours":
            return f"favours {self.favours}"
        if failed[0] == "chance":
            return "too few images to tell" if self.too_few_images else "no better than chance"
        if failed[0] == "unrelated" and self.unrelated > 0:
            return "no better than unrelated text" if self.auroc <= self.unrelated else "not clearly above unrelated text"
        if failed[0] == "correction" and self.unrelated_decides:
            return "not clearly above unrelated text"
        return "no better than chance"

    @property
    def past_the_bound(self) -> bool:
        """True if its AUROC is further from 0.5 than the one-sided bound, either way."""
        return abs(self.auroc - 0.5) > self.bound - 0.5

    @property
    def interval_holds_chance(self) -> bool:
        """True if its AUROC's 95% interval reaches 0.5 (or no interval was measured)."""
        return self.interval is None or self.interval[0] <= 0.5 <= self.interval[1]

    @property
    def verdict_text(self) -> str:
        """The verdict as the table words it: "no better than chance" for an AUROC past the bound whose interval
        reaches 0.5, or that Holm's correction takes back, reads "not distinguishable from chance with N images". An
        AUROC below chance whose whole interval is under 0.5 is distinguishable from chance (the wrong way): it keeps
        "no better than chance"."""
        undecided = self.interval_holds_chance or self.lost_to_correction
        if self.verdict == "no better than chance" and self.past_the_bound and undecided and self.images:
            return f"not distinguishable from chance with {self.images} images"
        return self.verdict


def chance_p(auroc: float, n_positive: int, n_negative: int) -> float:
    """The one-sided p of an AUROC against chance (0.5) on the Hanley-McNeil null standard error, the one
    `chance_bound` uses: below 0.05 exactly when the AUROC beats the chance bound. 1.0 without images."""
    if n_positive <= 0 or n_negative <= 0:
        return 1.0
    standard_error = math.sqrt((n_positive + n_negative + 1) / (12.0 * n_positive * n_negative))
    return 0.5 * math.erfc((auroc - 0.5) / standard_error / math.sqrt(2))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p values (Holm 1979), in the order given: the k-th smallest p times (m - k + 1),
    never below an earlier one, at most 1. Each adjusted p under 0.05 holds the chance of any false finding among
    the m under 5%, whatever their dependence."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


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
    """Per class index, how far from chance any column of `unrelated` [N, U] (texts that say nothing of the images)
    lands for it (its class against the others), either way: 0.5 + the largest |AUROC - 0.5|. Which way such a text
    falls is chance (which class's images it happens to sit nearer); how far is what the images give any text.
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
        reach.append(float(reach_of(np.array([roc_auc_score(positive, unrelated[:, column])
                                              for column in range(unrelated.shape[1])]))))
    return reach


def reach_of(aurocs):
    """0.5 + the largest |AUROC - 0.5| over the last axis of `aurocs` (unrelated texts): what `unrelated_reach`
    gives for them."""
    import numpy as np

    return 0.5 + np.abs(np.asarray(aurocs) - 0.5).max(axis=-1)


def stratified_weights(labels, resamples: int, rng):
    """[resamples, N] how many times each image is drawn when each class's images are drawn again with
    replacement, as many as it has (class-stratified bootstrap: the counts the intervals rest on stay fixed)."""
    import numpy as np

    labels = np.asarray(labels)
    rows = np.arange(resamples)[:, None] * len(labels)  # [R, 1] where each resample's counts start
    weights = np.zeros(resamples * len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        drawn = members[rng.integers(0, len(members), size=(resamples, len(members)))]  # [R, n]
        weights += np.bincount((rows + drawn).ravel(), minlength=weights.size)
    return weights.reshape(resamples, len(labels))


def weighted_aurocs(values, positive, weights):
    """[R, C] AUROC of each column of `values` [N, C] for `positive` [N] against the rest, with each image counted
    as often as `weights` [R, N] says (ties count one half), one row per resample."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    result = np.empty((weights.shape[0], values.shape[1]))
    for column in range(values.shape[1]):
        order = np.argsort(values[:, column], kind="stable")
        sorted_values = values[order, column]
        drawn = weights[:, order]  # [R, N]
        is_positive = positive[order]
        pairs = drawn[:, is_positive].sum(axis=1) * drawn[:, ~is_positive].sum(axis=1)
        if (sorted_values[1:] != sorted_values[:-1]).all():  # no ties (features): a positive's negatives below it
            below = np.cumsum(drawn * ~is_positive, axis=1)[:, is_positive]
            result[:, column] = (drawn[:, is_positive] * below).sum(axis=1) / pairs
            continue
        starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])  # each group of tied values
        positives = np.add.reduceat(drawn * is_positive, starts, axis=1)  # [R, G]
        negatives = np.add.reduceat(drawn * ~is_positive, starts, axis=1)  # [R, G]
        below = np.cumsum(negatives, axis=1) - negatives  # negatives strictly below each group
        result[:, column] = (positives * (below + 0.5 * negatives)).sum(axis=1) / pairs
    return result


def bootstrap_against_unrelated(similarity, unrelated, labels, owners: list[int], class_count: int,
                                resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """The unrelated reach's 95% interval per class, and each symptom's one-sided p against it, from one
    class-stratified bootstrap over the images (fixed seed: the same images give the same figures).

    Each resample measures every symptom and the reach (`reach_of`, over every unrelated text) on the same images,
    so the test is paired and carries the reach's own uncertainty: p = (1 + resamples where the symptom does not
    beat the reach) / (1 + resamples).

    Returns:
        (class index -> (low, high) or None (`centred_interval`), [S] p of each symptom or None for a class without
        images either way).
    """
    import numpy as np

    labels, owners_array = np.asarray(labels), np.asarray(owners)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // max(1, len(labels))))  # [chunk, N] arrays of at most ~32 MB
    reaches = {index: [] for index in range(class_count)}
    not_above = np.zeros(len(owners))
    done = 0
    while done < resamples:
        weights = stratified_weights(labels, min(chunk, resamples - done), rng)  # [R, N]
        for index in range(class_count):
            positive = labels == index
            if positive.all() or not positive.any():
                continue
            reach = reach_of(weighted_aurocs(unrelated, positive, weights))  # [R]
            reaches[index].append(reach)
            columns = np.flatnonzero(owners_array == index)
            if len(columns):
                symptoms = weighted_aurocs(similarity[:, columns], positive, weights)  # [R, S_class]
                not_above[columns] += (symptoms <= reach[:, None]).sum(axis=0)
        done += weights.shape[0]
    estimates = unrelated_reach(unrelated, labels, class_count)
    intervals = {index: centred_interval(estimates[index], np.concatenate(found)) if found else None
                 for index, found in reaches.items()}
    tested = [bool(reaches[owner]) for owner in owners]
    p_values = [float((1 + count) / (1 + resamples)) if ok else None for count, ok in zip(not_above, tested)]
    return intervals, p_values


def centred_interval(estimate: float, resampled) -> tuple[float, float]:
    """The 95% interval of the unrelated reach `estimate` from its bootstrap values `resampled` [R], with the
    bootstrap's median bias taken out: the 2.5th and 97.5th percentiles moved by `estimate` - their median, within
    [0.5, 1]. The reach is a largest |AUROC - 0.5| over the texts, and a resample's largest runs higher than the
    images' own (a text that lands near chance on them lands further off on most resamples): the plain percentile
    interval could lie wholly above the estimate (0.566 with 0.577-0.728). This one holds the estimate by
    construction and keeps the bootstrap's spread on either side of it."""
    import numpy as np

    low, median, high = np.percentile(resampled, [2.5, 50, 97.5])
    shift = estimate - median
    return float(max(0.5, low + shift)), float(min(1.0, high + shift))


def bootstrap_resamples(owners) -> int:
    """How many bootstrap resamples a ranking takes, `owners` naming each symptom's class: BOOTSTRAP_RESAMPLES, or
    RESAMPLES_PER_SYMPTOM per symptom of the class with the most where that is more. The bootstrap's smallest p is
    1 / (1 + resamples), and Holm's correction multiplies the smallest p of a class of m symptoms by m: with 1,000
    resamples no symptom of a class of 51 or more could pass FAMILY_ALPHA, however clearly it beat the unrelated
    texts; with 40 per symptom the smallest corrected p stays near 0.025."""
    from collections import Counter

    largest = max(Counter(owners).values(), default=0)
    return max(BOOTSTRAP_RESAMPLES, RESAMPLES_PER_SYMPTOM * largest)


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
            helps only if the low end of its 95% interval beats how far from chance they reach for its class
            (`unrelated_reach`), and a paired bootstrap shows it above that reach (`bootstrap_against_unrelated`).
            None: not measured.
    Returns:
        One SymptomScore per symptom, per class in class order, best AUROC first. Each carries its raw p (the
        larger of its tests against chance and the unrelated texts) and that p after Holm's correction across its
        class's symptoms (`holm`); it helps only if the corrected p is below FAMILY_ALPHA.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    reach = unrelated_reach(unrelated, labels, len(class_names))
    measured = unrelated is not None and unrelated.shape[1] > 0
    intervals, p_unrelated = (bootstrap_against_unrelated(similarity, unrelated, labels, owners, len(class_names),
                                                          resamples=bootstrap_resamples(owners))
                              if measured else ({}, [None] * len(owners)))
    pairs = [pairwise_tests(similarity[:, column], labels, owner, class_names, min_auroc)
             for column, owner in enumerate(owners)]
    scores = []
    for column, (owner, text) in enumerate(zip(owners, texts)):
        positive = labels == owner
        n_positive, n_negative = int(positive.sum()), int((~positive).sum())
        bound = min_auroc if min_auroc is not None else chance_bound(n_positive, n_negative)
        auroc = float(roc_auc_score(positive, similarity[:, column]))
        interval = auroc_interval(auroc, n_positive, n_negative)
        scores.append(SymptomScore(class_names[owner], text, auroc, bound, None, None, reach[owner],
                                   interval, intervals.get(owner), chance_p(auroc, n_positive, n_negative),
                                   p_unrelated[column], images=n_positive + n_negative))
    order = {name: index for index, name in enumerate(class_names)}
    return sorted(corrected(with_favours(scores, pairs)), key=lambda s: (order[s.class_name], -s.auroc))


@dataclass(frozen=True)
class PairwiseTest:
    """One symptom's class against one other class: does the other class's images match it significantly better?"""

    other: str  # the other class
    auroc: float  # its class vs that class (below 0.5: that class's images match it better)
    beyond_bound: bool  # below 1 - bound (the chance bound for the two counts, or --min-auroc) and its whole interval
    # below 0.5
    p: float  # one-sided p of that AUROC below chance (`chance_p`)


def pairwise_tests(values, labels, owner: int, class_names: list[str], min_auroc: float | None) -> list[PairwiseTest]:
    """One `PairwiseTest` per other class with images, of one symptom's similarity `values` [N] to each image."""
    from sklearn.metrics import roc_auc_score

    positive = labels == owner
    tests = []
    for other in range(len(class_names)):
        negative = labels == other
        if other == owner or not negative.any():
            continue
        pair = positive | negative
        pairwise = float(roc_auc_score(positive[pair], values[pair]))
        n_positive, n_negative = int(positive.sum()), int(negative.sum())
        pair_bound = min_auroc if min_auroc is not None else chance_bound(n_positive, n_negative)
        pair_high = auroc_interval(pairwise, n_positive, n_negative)[1]
        tests.append(PairwiseTest(class_names[other], pairwise, pairwise < 1 - pair_bound and pair_high < 0.5,
                                  chance_p(1 - pairwise, n_positive, n_negative)))
    return tests


def with_favours(scores: list[SymptomScore], pairs: list[list[PairwiseTest]]) -> list[SymptomScore]:
    """`scores` with the class each favours set: of its `pairs` beyond the bound whose p stays below FAMILY_ALPHA after
    Holm's correction across all its class's pairwise tests (its symptoms times the other classes), the lowest
    AUROC. `favours_before_correction` is the class it would favour without the correction."""
    by_class: dict[str, list[int]] = {}
    for index, score in enumerate(scores):
        by_class.setdefault(score.class_name, []).append(index)
    result = list(scores)
    for members in by_class.values():
        family = [(index, test) for index in members for test in pairs[index]]
        adjusted = dict(zip([(index, test.other) for index, test in family], holm([test.p for _, test in family])))
        for index in members:
            candidates = sorted((test for test in pairs[index] if test.beyond_bound), key=lambda test: test.auroc)
            if not candidates:
                continue
            kept = [test for test in candidates if adjusted[index, test.other] < FAMILY_ALPHA]
            shown = kept[0] if kept else candidates[0]
            result[index] = replace(scores[index], favours=kept[0].other if kept else None,
                                    favours_auroc=kept[0].auroc if kept else None,
                                    favours_before_correction=candidates[0].other, favours_p=shown.p,
                                    favours_p_holm=adjusted[index, shown.other])
    return result


def corrected(scores: list[SymptomScore]) -> list[SymptomScore]:
    """`scores` with `p_holm` set: each p after Holm's correction across the symptoms of its class (`holm`)."""
    by_class: dict[str, list[int]] = {}
    for index, score in enumerate(scores):
        by_class.setdefault(score.class_name, []).append(index)
    result = list(scores)
    for members in by_class.values():
        for index, adjusted in zip(members, holm([scores[i].p_value for i in members])):
            result[index] = replace(scores[index], p_holm=adjusted)
    return result


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
