"""Frozen features of a data set's splits: the few-shot training subset (with augmented views), val, test."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from vipcli import console
from vipcli.data import Dataset, few_shot_order, few_shot_union
from vipcli.decoding import DecodingWorkers
from vipcli.errors import VipError
from vipcli.features import encode_images


@dataclass
class FeatureSet:
    """Frozen image features of one split."""

    x: torch.Tensor  # [N, D] center-crop view
    y: torch.Tensor  # [N] labels
    paths: list[str]  # image files, aligned with rows
    views: torch.Tensor | None = None  # [N, V, D] augmented views (training set only)

    def to(self, device) -> FeatureSet:
        """The same split with its features and labels on `device` (moved once, e.g. for a whole fit)."""
        views = None if self.views is None else self.views.to(device)
        return FeatureSet(self.x.to(device), self.y.to(device), self.paths, views)


@dataclass
class PreparedData:
    """Features of the train subset, val and test, and what could not be read."""

    train: FeatureSet
    val: FeatureSet
    test: FeatureSet
    failures: dict[str, str] = field(default_factory=dict)  # file -> reason
    encoded_views: int = 0  # views that went through the image encoder (cache misses)
    shortfalls: dict[str, int] = field(default_factory=dict)  # class -> readable shots when fewer than asked
    unopened: int = 0  # training images never read: --shots took enough readable ones before them



class TestSplitRead(VipError):
    """A method's `fit` read the held-out test split (`HeldOutSplit`); `checked_fit` names the method."""

    def __init__(self, member: str, read: str | None = None):
        super().__init__(f"fit read {read or 'data.test.' + member}: the test split is held out from fitting, so that no "
                         "method learns from, or chooses its settings on, the images its test figures are "
                         "computed on",
                         "fit on data.train; choose epochs and settings on data.val")
        self.member = member


class HeldOutSplit:
    """What `fit` finds as `data.test`: reading any of it (`x`, `y`, `paths`, ..., its length, its
    items) raises `TestSplitRead`."""

    def __getattr__(self, member: str):
        if member.startswith("__"):  # copy, pickle and repr probe dunder names: not a read of the split
            raise AttributeError(member)
        raise TestSplitRead(member)

    def __len__(self) -> int:  # looked up on the class, so __getattr__ never sees it
        raise TestSplitRead("__len__", "len(data.test)")

    def __iter__(self):
        raise TestSplitRead("__iter__", "the items of data.test")

    def __repr__(self) -> str:
        return "HeldOutSplit()"


class CenterViewNotDeclared(VipError):
    """A method's `fit` read `data.train.x` without declaring `needs_center_view`; `checked_fit` names the method."""

    def __init__(self):
        super().__init__("fit read data.train.x, the un-augmented view of the training images, which vip encodes and "
                         "hands only to a method that declares needs_center_view = True (without it, data.train.x "
                         "holds no features, or only when another method of a benchmark asked for them)",
                         "set needs_center_view = True on the method class, or fit on data.train.views [N, V, D]")


class TrainWithoutCenterView:
    """What `fit` finds as `data.train` when its method does not declare `needs_center_view`: the split's `views`,
    `y` and `paths`; reading `x` raises `CenterViewNotDeclared`, whether or not it was encoded for another method."""

    def __init__(self, split: FeatureSet):
        self._split = split

    @property
    def x(self):
        """Refused: see the class."""
        raise CenterViewNotDeclared()

    def __getattr__(self, member: str):
        if member.startswith("__"):  # copy, pickle and repr probe dunder names
            raise AttributeError(member)
        return getattr(self._split, member)

    def to(self, device) -> TrainWithoutCenterView:
        """The same split on `device` (see `FeatureSet.to`), `x` still refused."""
        return TrainWithoutCenterView(self._split.to(device))


class ShotsNotDeclared(VipError):
    """A method's `fit` read `data.train` although its class says `uses_shots = False`; `checked_fit` names it."""

    def __init__(self, member: str):
        super().__init__(f"fit read data.train.{member}, but the method declares uses_shots = False (it uses no "
                         "labelled images), so vip encodes no training images for it, and a benchmark runs it once "
                         "per seed and reports it as zero-shot in every shots column",
                         "set uses_shots = True on the method class if fit learns from the labelled images; "
                         "otherwise fit without data.train (data.val is there to choose settings on)")


class NoTrainingImages:
    """What `fit` finds as `data.train` when its method declares `uses_shots = False`: reading any of it raises
    `ShotsNotDeclared` (vip hands such a method an empty training split, which would otherwise be read as
    None or as no rows, and fail deep in the plugin or fit nothing without a word)."""

    def __getattr__(self, member: str):
        if member.startswith("__"):  # copy, pickle and repr probe dunder names: not a read of the split
            raise AttributeError(member)
        raise ShotsNotDeclared(member)

    def __repr__(self) -> str:
        return "NoTrainingImages()"


def without_test(data: PreparedData, center_view: bool = True, uses_shots: bool = True) -> PreparedData:
    """`data` as `fit` sees it: train and val, the test split held out (`HeldOutSplit`); without `center_view`
    (the method's `needs_center_view`), `data.train.x` refused too (`TrainWithoutCenterView`); without
    `uses_shots`, all of `data.train` (`NoTrainingImages`)."""
    train = data.train if center_view else TrainWithoutCenterView(data.train)
    if not uses_shots:
        train = NoTrainingImages()
    return dataclasses.replace(data, train=train, test=HeldOutSplit())


def _stack(features: list, rows: int) -> torch.Tensor:
    """Stack per-image features, or an empty [rows, 0] block when some were not requested."""
    if features and all(f is not None for f in features):
        return torch.stack(features)
    return torch.empty(rows, 0)


def feature_set(encoded, samples, with_views: bool) -> FeatureSet:
    """The readable images of `samples` as a FeatureSet: center features, labels, paths, and their
    augmented views when `with_views` (images that could not be read are left out). The features are
    taken out of `encoded` (`EncodedImages.pop_rows`), not copied: a full data set's are held once."""
    rows = sorted(i for i in encoded.readable if i < len(samples))
    x = encoded.pop_rows("eval", rows)  # [N, D], or [N, 0] without center views
    x = torch.empty(len(rows), 0) if x is None else x
    views = encoded.pop_rows("train", rows) if with_views else None  # [N, V, D]
    labels = torch.tensor([samples[i].label for i in rows], dtype=torch.long)
    return FeatureSet(x, labels, [str(samples[i].path) for i in rows], views)


def encode_union(backbone, train: list, orders: list, shots: int | None, views: int, cache, encode_kwargs: dict,
                 advance, center: bool = True) -> tuple[dict, dict, int]:
    """Encode the few-shot subsets of one or more seeded orders, replacing unreadable images.

    For every order (see `vipcli.data.few_shot_order`) and class, the first `shots` readable images
    (every training image when `shots` is None): an image that cannot be read is replaced by the
    next one of its order, encoded in another round, until each class has enough or runs out.
    Returns:
        (readable: path -> (center view [D] or None, augmented views [V, D] or None),
         failures: path -> reason, views that went through the image encoder)
    """
    failures, encoded_views, readable = {}, 0, {}
    while True:
        wanted = few_shot_union(train, orders, shots, failures)
        new = [sample for sample in wanted if str(sample.path) not in readable and str(sample.path) not in failures]
        if not new:
            return readable, failures, encoded_views
        encoded = encode_images(backbone, [s.path for s in new], views, cache, advance=advance, center=center,
                                **encode_kwargs)
        encoded_views += note_failures(encoded, new, failures)
        for i, sample in enumerate(new):
            if i in encoded.readable:
                readable[str(sample.path)] = (encoded.eval.get(i), encoded.train.get(i))


def note_failures(encoded, samples: list, failures: dict) -> int:
    """Add to `failures` (path -> reason) why each image of `samples` that `encoded` holds no features of was
    left out; return how many views went through the image encoder."""
    failures.update({str(p): r for p, r in encoded.failures.items()})
    for i, sample in enumerate(samples):
        if i not in encoded.readable and str(sample.path) not in failures:
            failures[str(sample.path)] = "could not be encoded"
    return encoded.encoded


def encode_all(backbone, samples: list, views: int, cache, encode_kwargs: dict, advance,
               center: bool = True) -> tuple[FeatureSet, dict, int]:
    """Every image of `samples` (a whole training split) with `views` augmented views, and the center view if
    `center`, as one FeatureSet made from the features' own block (`feature_set`): held once, never stacked.
    Returns:
        (FeatureSet of the readable images, failures: path -> reason, views that went through the encoder)
    """
    encoded = encode_images(backbone, [s.path for s in samples], views, cache, advance=advance, center=center,
                            **encode_kwargs)
    failures = {}
    encoded_views = note_failures(encoded, samples, failures)
    return feature_set(encoded, samples, with_views=True), failures, encoded_views


def select_shots(backbone, dataset: Dataset, shots, seed, views, cache, encode_kwargs, advance, center=True):
    """Few-shot subset: per class the first `shots` readable images of a seeded order."""
    ordered = few_shot_order(dataset.splits["train"], len(dataset.class_names), seed)
    gathered, failures, encoded_views = encode_union(backbone, dataset.splits["train"], [ordered], shots, views,
                                                     cache, encode_kwargs, advance, center)
    chosen = [[s for s in members if str(s.path) in gathered][:shots] for members in ordered]
    subset = sorted((s for members in chosen for s in members), key=lambda s: (s.label, str(s.path)))
    x = _stack([gathered[str(s.path)][0] for s in subset], len(subset))  # [N, D] or [N, 0]
    v = torch.stack([gathered[str(s.path)][1] for s in subset]) if subset and views else None  # [N, V, D]
    y = torch.tensor([s.label for s in subset], dtype=torch.long)
    shortfalls = {dataset.class_names[c]: len(m) for c, m in enumerate(chosen) if len(m) < shots}
    unopened = len(dataset.splits["train"]) - len(gathered) - len(failures)
    return FeatureSet(x, y, [str(s.path) for s in subset], v), failures, encoded_views, shortfalls, unopened


def unopened_note(unopened: int, shots: int, seeds: int = 1) -> str:
    """The info line under the list of unreadable files when --shots left `unopened` training images unread (vip
    reads each class's first `shots` readable images of a seeded order, per seed of `seeds`, and no more): the list
    names only the unreadable ones among the images read."""
    per_seed = " per seed" if seeds > 1 else ""
    return (f"note: {unopened} training {console.plural(unopened, 'image was', 'images were')} not opened (for "
            f"--shots vip reads only the first {shots} readable {console.plural(shots, 'image')} of each "
            f"class{per_seed}), so unreadable files among them are not listed above")


def prepare_features(backbone, dataset: Dataset, shots: int | None, seed: int, views: int, cache,
                     workers: int = 2, batch_size: int = 64, progress=None, center_train: bool = True,
                     train_required: bool = True) -> PreparedData:
    """Encode the training subset (with augmented views), val and test once, through the cache.

    `center_train=False` skips the center view of training images (only a linear probe uses it);
    `train_required=False` (a method that uses no labelled images) lets a class have none.
    """
    kwargs = {"workers": workers, "batch_size": batch_size}
    splits = dataset.splits
    total = (min(len(splits["train"]), shots * len(dataset.class_names)) if shots is not None
             else len(splits["train"]))
    images = total + len(splits["val"]) + len(splits["test"])
    with console.task(progress, "encoding images", images) as advance, DecodingWorkers(workers, images) as shared:
        kwargs["shared"] = shared  # the splits share one set of decoding workers
        if shots is not None:  # 0 (a method that uses no labelled images): an empty training set
            train, failures, encoded_views, shortfalls, unopened = select_shots(
                backbone, dataset, shots, seed, views, cache, kwargs, advance, center_train)
        else:
            train, failures, encoded_views = encode_all(backbone, splits["train"], views, cache, kwargs, advance,
                                                        center_train)
            shortfalls, unopened = {}, 0
        prepared = PreparedData(train, None, None, failures, encoded_views, shortfalls, unopened)
        for name in ("val", "test"):
            encoded = encode_images(backbone, [s.path for s in splits[name]], 0, cache,
                                    advance=advance, **kwargs)
            prepared.failures.update({str(p): r for p, r in encoded.failures.items()})
            prepared.encoded_views += encoded.encoded
            setattr(prepared, name, feature_set(encoded, splits[name], with_views=False))
    check_enough(prepared, dataset, train_required)
    return prepared


def check_enough(prepared: PreparedData, dataset: Dataset, train_required: bool = True) -> None:
    """Refuse (VipError) training data with a class left without a single readable image (when
    `train_required`), and val without one."""
    counts = torch.bincount(prepared.train.y, minlength=len(dataset.class_names)).tolist()
    empty = [name for name, n in zip(dataset.class_names, counts) if n == 0 and train_required]
    if empty:
        first = next(iter(sorted(prepared.failures.items())), None)
        example = f"; e.g. {first[0]}: {first[1]}" if first else ""
        raise VipError(
            f"no readable training images for class {', '.join(repr(e) for e in empty)} "
            f"({len(prepared.failures)} unreadable files in all{example})",
            "replace or remove the unreadable files, or add readable images",
        )
    if len(prepared.val.y) == 0:
        if not dataset.splits["val"]:
            raise VipError(f"{dataset.root} has no validation images", "add images to val/<class>/ or let vip "
                           "split train (leave out val/)")
        val = {str(sample.path) for sample in dataset.splits["val"]}
        example = next((f" (e.g. {p}: {r})" for p, r in sorted(prepared.failures.items()) if p in val), "")
        raise VipError(f"none of the {len(val)} validation images is readable{example}",
                       "replace or remove the unreadable files")
