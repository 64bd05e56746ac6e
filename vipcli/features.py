"""Frozen image features: each image decoded once, each view encoded once, cached on disk.

Nothing trainable in ViP touches the image side, so the image encoder's output for every
(image, augmented view) pair can be computed once and reused across epochs, runs and methods.
Cache entries live under `<cache>/features/<backbone fingerprint>/` and are keyed by the
file's resolved path, size and modification time, so a changed file or backbone is never
served stale.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vipcli.errors import ImageError
from vipcli.images import load_image

DECODE_MIN_SIDE = 512  # JPEGs much larger than this are decoded at a reduced scale


def default_cache_dir() -> Path:
    """`$VIP_CACHE_DIR`, else the platform's user cache folder for vip."""
    env = os.environ.get("VIP_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vip"))


class FeatureCache:
    """Per-image safetensors files holding `eval` [D] and `train` [V, D] features."""

    def __init__(self, root: Path | None, backbone):
        self.folder = None if root is None else Path(root) / "features" / backbone.fingerprint()

    def _file(self, path: Path) -> Path:
        stat = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, path: Path) -> dict[str, torch.Tensor]:
        """Cached tensors of `path` ({} on a miss or when caching is off)."""
        if self.folder is None:
            return {}
        from safetensors.torch import load_file

        try:
            return load_file(self._file(path))
        except Exception:  # missing or damaged entry: recompute
            return {}

    def put(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        """Store `tensors` for `path` atomically (temp file + rename)."""
        if self.folder is None:
            return
        from safetensors.torch import save_file

        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        os.close(handle)
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, temp)
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)


@dataclass
class EncodedImages:
    """Features of a list of images, in the order given."""

    eval: dict[int, torch.Tensor] = field(default_factory=dict)  # index -> [D] center-crop view
    train: dict[int, torch.Tensor] = field(default_factory=dict)  # index -> [V, D] augmented views
    failures: dict[Path, str] = field(default_factory=dict)  # unreadable file -> reason
    encoded: int = 0  # views that went through the image encoder (cache misses)
    readable: set[int] = field(default_factory=set)  # indices with every requested feature


class _ViewDataset(torch.utils.data.Dataset):
    """Decode each image once and return the views still missing from the cache."""

    def __init__(self, jobs, eval_transform, train_transform):
        self.jobs = jobs  # list of (index, path, need_eval, n_train_views)
        self.eval_transform, self.train_transform = eval_transform, train_transform

    def __len__(self):
        return len(self.jobs)

    def __getitem__(self, i):
        index, path, need_eval, n_views = self.jobs[i]
        try:
            image = load_image(path, min_side=DECODE_MIN_SIDE)
        except ImageError as error:
            return index, None, error.reason
        views = ([self.eval_transform(image)] if need_eval else []) + [
            self.train_transform(image) for _ in range(n_views)
        ]
        return index, torch.stack(views), ""  # [n, 3, H, W]


def _loader(dataset, workers: int, seed: int):
    workers = workers if len(dataset) >= 8 else 0
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, generator=generator,
        prefetch_factor=4 if workers else None, persistent_workers=False,
    )


@torch.no_grad()
def _encode(backbone, images: torch.Tensor) -> torch.Tensor:
    from vipcli.devices import autocast

    with autocast(backbone.device):
        return backbone.encode_image(images.to(backbone.device)).float().cpu()  # [B, D]


def encode_images(backbone, paths, views: int = 0, cache: FeatureCache | None = None, batch_size: int = 64,
                  workers: int = 2, seed: int = 0, advance=lambda n=1: None, center: bool = True) -> EncodedImages:
    """Center-crop features of every image, plus `views` augmented views each.

    Args:
        backbone: the frozen backbone.
        paths: image files.
        views: augmented training views wanted per image (0 for evaluation sets).
        cache: where features persist between runs (None: keep them in memory only).
        batch_size: images per encoder call.
        workers: DataLoader processes decoding and transforming images.
        seed: seeds the augmentation of views computed now.
        advance: progress callback, called once per image.
        center: also encode the center-crop view (prompt learning needs only the augmented views
            of training images; a linear probe and evaluation need the center view).
    Returns:
        EncodedImages with features for every readable image and reasons for the others.
    """
    cache = cache or FeatureCache(None, backbone)
    result, cached, jobs = EncodedImages(), {}, []
    for index, path in enumerate(map(Path, paths)):
        try:
            cached[index] = cache.get(path)
        except OSError as error:
            result.failures[path] = f"unreadable ({error.strerror or error})"
            advance()
            continue
        have_views = cached[index].get("train", torch.empty(0)).shape[0]
        need_eval, need_views = center and "eval" not in cached[index], max(0, views - have_views)
        if need_eval or need_views:
            jobs.append((index, path, need_eval, need_views))
        else:
            advance()
    fresh = _encode_jobs(backbone, jobs, batch_size, workers, seed, result, advance)
    for index, path, need_eval, need_views in jobs:
        if index not in fresh:
            continue
        entry = _merge_entry(cached[index], fresh[index], need_eval)
        cache.put(path, entry)
        cached[index] = entry
    for index, entry in cached.items():
        has_views = entry.get("train", torch.empty(0)).shape[0] >= views
        if (not center or "eval" in entry) and has_views and (center or views):
            result.readable.add(index)
            if "eval" in entry:
                result.eval[index] = entry["eval"]
            if views:
                result.train[index] = entry["train"][:views]
    return result


def _merge_entry(old: dict, new: torch.Tensor, has_eval: bool) -> dict:
    entry = dict(old)
    if has_eval:
        entry["eval"], new = new[0], new[1:]
    if new.shape[0]:
        entry["train"] = torch.cat([old["train"], new]) if "train" in old else new  # [V, D]
    return entry


def _encode_jobs(backbone, jobs, batch_size, workers, seed, result, advance) -> dict[int, torch.Tensor]:
    """Run the image encoder over every missing view, batching across images."""
    if not jobs:
        return {}
    dataset = _ViewDataset(jobs, backbone.image_transform(False), backbone.image_transform(True))
    fresh: dict[int, torch.Tensor] = {}
    pending: list[tuple[int, torch.Tensor]] = []

    def flush():
        if not pending:
            return
        stacked = torch.cat([views for _, views in pending])  # [sum n, 3, H, W]
        features = _encode(backbone, stacked)  # [sum n, D]
        result.encoded += features.shape[0]
        for (index, views), chunk in zip(pending, features.split([v.shape[0] for _, v in pending])):
            fresh[index] = chunk
        pending.clear()

    path_of = {index: path for index, path, _, _ in jobs}
    for index, views, reason in _loader(dataset, workers, seed):
        advance()
        if views is None:
            result.failures[path_of[index]] = reason
            continue
        pending.append((index, views))
        if sum(v.shape[0] for _, v in pending) >= batch_size:
            flush()
    flush()
    return fresh


class FreshViews(torch.utils.data.Dataset):
    """The reference mode's data: decode and augment every image again on each access."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(load_image(self.paths[i], min_side=DECODE_MIN_SIDE)), self.labels[i]


def iterate_fresh_features(backbone, paths, labels, train: bool, batch_size: int, workers: int, seed: int):
    """Yield (features [B, D], labels [B]) re-encoding every image now (reference mode)."""
    dataset = FreshViews(paths, labels, backbone.image_transform(train))
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=train, num_workers=workers if len(dataset) >= 8 else 0,
        generator=generator,
    )
    for images, batch_labels in loader:
        yield _encode(backbone, images), batch_labels
