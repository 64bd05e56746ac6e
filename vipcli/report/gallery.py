"""A gallery of predicted images: thumbnail, true class, prediction, probability, set, top symptoms."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from vipcli.report.html import file_name, image, number, text
from vipcli.report.units import coverage_percent, percent_text

THUMBNAIL_SIDE = 192  # CSS pixels: the longer side of an image as a card shows it
TOP_SYMPTOMS = 3  # symptoms shown per image


@dataclass
class GalleryItem:
    """One image of a gallery."""

    path: str  # the image file
    truth: str | None  # the true class, when known
    label: str  # the predicted class
    probability: float  # its probability
    prediction_set: list[str] | None  # the conformal set, when one was asked for
    top_symptoms: list[dict] | None  # the predicted class's symptoms that pushed it up most (None: not shown)

    @property
    def wrong(self) -> bool:
        """The prediction is known to be wrong."""
        return self.truth is not None and self.truth != self.label


def top_symptoms(prediction, limit: int = TOP_SYMPTOMS) -> list[dict]:
    """Up to `limit` of the predicted class's symptoms that pushed its logit up (largest contribution
    first); symptoms with a contribution of zero or less pushed it down or not at all and are left out,
    so the list may be empty.

    A method whose explanation has no `contribution` (a plugin's) is ranked by merge weight x similarity.
    """
    for group in prediction.explanation or []:
        if group["class"] == prediction.label:
            ranked = sorted((e for e in group["symptoms"] if _pull(e) > 0), key=_pull, reverse=True)
            return ranked[:limit]
    return []


def _pull(entry: dict) -> float:
    """How much one symptom pushed its class's logit up."""
    contribution = entry.get("contribution")
    return contribution if contribution is not None else entry["weight"] * entry["similarity"]


def truth_from_folder(path: str | Path, class_names: list[str]) -> str | None:
    """The class whose name is the image's folder name (case-insensitive), else None."""
    folder = Path(path).parent.name.lower()
    return next((name for name in class_names if name.lower() == folder), None)


def gallery_items(predictions, truths: dict[str, str | None], with_symptoms: bool) -> list[GalleryItem]:
    """GalleryItems of `predictions`, errors first (most confident first), then the least sure right ones.

    Args:
        truths: image path -> true class (None or absent: unknown).
        with_symptoms: show the top symptoms (methods that describe classes by symptoms).
    """
    items = [GalleryItem(p.path, truths.get(p.path), p.label, p.probability, p.prediction_set,
                         top_symptoms(p) if with_symptoms else None) for p in predictions]
    return sorted(items, key=lambda i: (not i.wrong, -i.probability if i.wrong else i.probability, i.path))


@dataclass
class Thumbnail:
    """An image as a card embeds it: its encoded bytes and the CSS pixels it is shown at."""

    payload: bytes
    mime: str
    size: tuple[int, int]  # (width, height) shown, CSS pixels
    pixelated: bool  # a small image shown a whole number of times larger, each pixel a crisp square


def thumbnail(path: str | Path, side: int = THUMBNAIL_SIDE) -> Thumbnail | None:
    """The image as a card shows it, never blurred by the browser resizing it (None when it cannot be read
    any more): one larger than `side` is reduced to it once, with a Lanczos filter, and shown at that size
    (JPEG, full colour resolution); a smaller one keeps its pixels (PNG) and is shown the largest whole
    number of times larger that fits `side`, drawn pixelated rather than smoothed."""
    from PIL import Image

    from vipcli.errors import ImageError
    from vipcli.images import load_image

    try:
        picture = load_image(path, min_side=side)
    except ImageError:
        return None
    buffer = io.BytesIO()
    if max(picture.size) > side:
        picture.thumbnail((side, side), Image.Resampling.LANCZOS)
        picture.save(buffer, format="JPEG", quality=90, subsampling=0)  # 4:4:4: colour edges as sharp as the rest
        return Thumbnail(buffer.getvalue(), "image/jpeg", picture.size, False)
    scale = side // max(picture.size)
    picture.save(buffer, format="PNG")
    return Thumbnail(buffer.getvalue(), "image/png", (picture.width * scale, picture.height * scale), scale > 1)


def shown_name(path: Path, root: Path | None) -> Path:
    """`path` relative to the data folder `root` when it lies there, as given or with links resolved (a
    subset of symbolic links to another folder is named as in the subset); else `path` itself."""
    if root is None:
        return path
    given = (Path(os.path.abspath(path)), Path(os.path.abspath(root)))  # as given, `..` taken out
    for candidate, folder in (given, (path.resolve(), root.resolve())):
        if candidate.is_relative_to(folder):
            return candidate.relative_to(folder)
    return path


def _card(item: GalleryItem, root: Path | None) -> str:
    small = thumbnail(item.path)
    shown = shown_name(Path(item.path), root)
    picture = (image(small.payload, card_alt(item, shown), small.mime, "pixels" if small.pixelated else None, small.size)
               if small else "<p>(image no longer readable)</p>")
    verdict = ""
    if item.truth is not None:
        verdict = ('<span class="tag wrong">wrong</span> ' if item.wrong else '<span class="tag right">right</span> ')
    # the image, what vip made of it (facts) and why (symptoms): three boxes, stacked on screen, side by side in print
    lines = [f'<li class="card{" wrong" if item.wrong else ""}">', picture,
             f'<div class="facts"><div class="name">{file_name(shown)}</div>']
    if item.truth is not None:
        lines.append(f"<div>true class: <b>{text(item.truth)}</b></div>")
    probability = percent_text(item.probability, 1)
    lines.append(f"<div>{verdict}predicted: <b>{text(item.label)}</b> (probability {probability})</div>")
    if item.prediction_set is not None:
        members = ", ".join(item.prediction_set) if item.prediction_set else "empty: no class is likely enough"
        missed = item.truth is not None and item.truth not in item.prediction_set
        lines.append(f"<div>prediction set: {{{text(members)}}}"
                     + (' <span class="tag wrong">misses the true class</span>' if missed else "") + "</div>")
    lines.append("</div>")
    if item.top_symptoms is not None:
        lines.append(f'<div class="why">{_symptoms_html(item)}</div>')
    lines.append("</li>")
    return "".join(lines)


def card_alt(item: GalleryItem, shown: Path) -> str:
    """The alt text of a card's image: its file and what vip made of it, so that a screen reader moving from image
    to image (NVDA's G key) hears each one's verdict, not its file name alone.

    e.g. 'test/nevus/nevus_00016.png: true class nevus, predicted melanoma (wrong), probability 95.0%'."""
    verdict = "" if item.truth is None else f"true class {item.truth}, "
    outcome = "" if item.truth is None else (" (wrong)" if item.wrong else " (right)")
    return f"{shown}: {verdict}predicted {item.label}{outcome}, probability {percent_text(item.probability, 1)}"


def _symptoms_html(item: GalleryItem) -> str:
    """The symptoms that pushed the predicted class up, or a line saying that none did."""
    if not item.top_symptoms:
        return f"<div>no symptom pushed towards {text(item.label)}</div>"
    entries = "".join(f"<li>{text(e['symptom'])} <span class=\"detail\">(similarity "
                      f"{number(e['similarity'], 3, signed=True)}, weight {number(e['weight'], 3)}"
                      f"{_contribution(e)})</span></li>" for e in item.top_symptoms)
    return f"<div>symptoms that pushed towards {text(item.label)} most:</div><ul>{entries}</ul>"


def _contribution(entry: dict) -> str:
    contribution = entry.get("contribution")
    return "" if contribution is None else f", contribution {number(contribution, 3, signed=True)}"


OUT_OF_KIND = ("vip does not check that an image is of the kind the run was trained on: an image of another "
               "modality, body site or subject still gets one of the run's classes, often with a high probability, "
               "and a prediction set. The probabilities and sets hold only for images like the run's validation "
               "images.")


def sets_explained(coverage: float) -> str:
    """A paragraph saying in plain words what a card's prediction set at `coverage` means (HTML)."""
    share = coverage_percent(coverage)
    return (f"<p><b>Prediction set</b> (coverage {share}): the classes the model cannot rule out for "
            f"that image. For at least {share} of images like the validation images, on average over them "
            f"(not for each class), the set holds the true class. One class: the model names one; two or more: "
            f"it cannot tell them apart, so read the image as any of them; empty: no class is likely enough, "
            f"look at that image twice.</p>")


SYMPTOMS_MEANING = (
    "<p>Under a card are the predicted class's symptoms that pushed its score up most: the descriptions the "
    "image <i>matches</i> best in the backbone's features, not signs found in the image (an image of another "
    "kind matches some too). "
    "<b>similarity</b>: how close the image is to the symptom's words, from -1 to +1 (higher: closer); "
    "<b>weight</b>: how much the symptom counts in its class's description, the same for every image; "
    "<b>contribution</b>: how much it added to the class's score (its logit) for this image.</p>")


def gallery_html(items: list[GalleryItem], limit: int | None = None, root: Path | None = None,
                 more: str | None = None) -> str:
    """The cards of the first `limit` items (all when None) and a line saying what is shown.

    Args:
        more: how to show more cards, said when `limit` leaves out every right prediction (e.g. "pass --gallery
            78"); None: only that they are left out.
    """
    if not items:  # a run whose test images are gone from the disk (its report says so) or that had none
        return "<p>There are no images to show.</p>"
    shown = items if limit is None else items[:limit]
    known = [i for i in items if i.truth is not None]
    errors = sum(i.wrong for i in items)
    if len(shown) == len(items):
        summary = "The one image is shown" if len(items) == 1 else f"All {len(items)} images are shown"
    else:
        summary = f"{len(shown)} of the {len(items)} images {'is' if len(shown) == 1 else 'are'} shown"
    if len(known) == 1 and len(items) == 1:
        summary += f"; its class is known, and it is predicted {'wrongly' if errors else 'right'}"
    elif known and not errors:
        summary += f"; none of the {len(known)} whose class is known is predicted wrongly: the least sure come first"
    elif known:
        summary += (f"; {errors} of the {len(known)} whose class is known "
                    + ("is predicted wrongly and comes first" if errors == 1
                       else "are predicted wrongly and come first (most confident first)")
                    + (", then the right ones, least sure first" if errors < len(known) else ""))
        cut_short = shown and len(shown) < len(items)  # --gallery 0 shows no card: none of them is wrong either
        if len(known) > errors and cut_short and all(i.wrong for i in shown if i.truth is not None):
            summary += (f". Only wrong ones fit in the {len(shown)} shown, so none of the right ones is here"
                        + (f" ({more})" if more else ""))
    elif len(items) > 1:  # no true class to put errors first: the ones the model is least sure of lead
        summary += ", least sure first"
    cards = "".join(_card(item, root) for item in shown)
    symptoms = SYMPTOMS_MEANING if any(i.top_symptoms for i in shown) else ""
    # a list, so that a screen reader says how many cards there are and moves card to card (role="list": Safari
    # drops the list's meaning once its bullets are hidden)
    gallery = f'<ul class="gallery" role="list">{cards}</ul>' if cards else ""
    return f"<p>{text(summary)}.</p>{symptoms}{gallery}"
