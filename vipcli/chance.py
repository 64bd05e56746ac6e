"""Whether a run's test predictions tell its classes apart better than guessing would.

A model on images its backbone does not know (the toy backbone on real photographs, a photo model on
X-rays) can print figures that look like results: 54% accuracy, AUROC 54. Each class's probability is
tested one-sided against the other classes' images (the Mann-Whitney U test, whose statistic is the
class's one-vs-rest AUROC times the number of image pairs): a run none of whose classes beats guessing
at `LEVEL` is named in a warning, and so is a test split too small for any ranking to beat it.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.05  # a guess scores at least this high less often than this: better than chance


def chance_scores(labels, probabilities) -> list[tuple[int, float, float, float]]:
    """Each tested class's one-vs-rest AUROC (percent), the chance a guess scores at least as high, and that chance
    for a perfect ranking (the least any model can reach on these images).

    Args:
        labels: [N] true class indices.
        probabilities: [N, C] predicted class probabilities.
    Returns:
        (class index, AUROC %, one-sided p-value, a perfect ranking's p-value) for class 1 of two classes (one test
        says it all), for every class of more; [] where a class has no image (nothing to test it against).
    """
    from scipy.stats import mannwhitneyu

    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)  # [N, C]
    classes = probabilities.shape[1] if probabilities.ndim == 2 else 0
    if classes < 2 or len(set(labels.tolist())) < classes:
        return []
    scores = []
    for index in ([1] if classes == 2 else range(classes)):
        own, rest = probabilities[labels == index, index], probabilities[labels != index, index]
        tested = mannwhitneyu(own, rest, alternative="greater")
        perfect = mannwhitneyu(np.arange(rest.size, rest.size + own.size), np.arange(rest.size), alternative="greater")
        scores.append((index, 100.0 * float(tested.statistic) / (own.size * rest.size), float(tested.pvalue),
                       float(perfect.pvalue)))
    return scores


def vs_chance(labels, probabilities, class_names: list[str]) -> list[dict]:
    """`chance_scores` as metrics.json's `test.vs_chance` keeps them: [{"class", "auroc" (%), "p", "p_perfect"}]."""
    return [{"class": class_names[index], "auroc": round(auroc, 2), "p": round(p, 4), "p_perfect": round(floor, 4)}
            for index, auroc, p, floor in chance_scores(labels, probabilities)]


def at_chance(scores: list[dict]) -> bool:
    """Whether `vs_chance` scores were tested (every class has test images) and none beats chance at `LEVEL`."""
    return bool(scores) and all(score["p"] >= LEVEL for score in scores)


def too_few(scores: list[dict]) -> bool:
    """Whether the test images are too few for any model to beat chance at `LEVEL` on any class (a record of vip
    builds before `p_perfect` counts as enough)."""
    return bool(scores) and all(score.get("p_perfect", 0) >= LEVEL for score in scores)


def chance_sentence(scores: list[dict], class_names: list[str], images: int) -> str:
    """What a run at chance (`at_chance(scores)`) does, in words: the warning's and the run report's sentence."""
    if too_few(scores):
        perfect = min(score["p_perfect"] for score in scores)
        return (f"the {images} test images are too few to tell any model from guessing: even one that ranks every "
                f"image right would score that high by chance {perfect:.0%} of the time")
    least = min(score["p"] for score in scores)
    if len(class_names) == 2:
        [score] = scores
        return (f"the model tells {class_names[0]} from {class_names[1]} no better than chance on the {images} test "
                f"images: its AUROC of {score['auroc']:.2f} is not clearly above the 50 of guessing (a guess scores "
                f"as high {least:.0%} of the time)")
    each = ", ".join(f"{score['class']} {score['auroc']:.2f}" for score in scores)
    return (f"the model tells none of its {len(class_names)} classes from the others better than chance on the "
            f"{images} test images (one-vs-rest AUROC: {each}; a guess scores each as high at least {least:.0%} of "
            "the time)")


def chance_level_warning(scores: list[dict], class_names: list[str], images: int, image_domain: str = "",
                         backbone_id: str = "") -> str:
    """A warning for a run none of whose classes its model tells apart better than chance on test, "" otherwise.

    Args:
        scores: `vs_chance` of the test images.
        class_names: the C class names.
        images: how many test images.
        image_domain: the backbone's `image_domain` (the only images its weights know, where narrow), named in
            the advice.
        backbone_id: the backbone's id, named with `image_domain`.
    """
    if not at_chance(scores):
        return ""
    if too_few(scores):
        advice = "give the test split more images of each class to measure the model"
    elif image_domain:
        advice = (f"backbone '{backbone_id}' knows only {image_domain}; for other images pass another backbone "
                  "(`vip backbones list`)")
    else:
        advice = ("its figures say nothing of these images: try more shots, another backbone (`vip backbones list`), "
                  "or see what the backbone tells apart with `vip symptoms rank`")
    return f"{chance_sentence(scores, class_names, images)}; {advice}"
