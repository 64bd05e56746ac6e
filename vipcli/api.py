"""vip from Python: train a run, load it, classify image files or images held in memory, benchmark methods.

    import vipcli.api as vip

    result = vip.train("isic", shots=16)                 # what `vip train --data isic --shots 16` does
    model = vip.load(result.run_dir)                     # what `vip predict --model RUN` loads
    prediction = model.predict("scan.png")               # a file, or a PIL image
    prediction.label, prediction.probability             # "melanoma", 0.87 (calibrated)
    model.predict_many(["scans/", image])                # files, folders and PIL images, in order
    sweep = vip.benchmark("isic", methods=["coop", "vip"], shots=[1, 16])   # `vip benchmark`

This module is vip's Python interface: `train`, `benchmark`, `load`, `Model`, `Prediction`,
`Predictions`, `TrainResult`, `BenchmarkResult`, `VipError`, `ImageError`. They follow the same contracts as the
commands (the same run folders, results folders, feature cache, calibration and prediction sets)
and raise `VipError` (message and fix in `str(error)`) where a command prints its one-line error.
The rest of `vipcli` is internal and may change between releases.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from vipcli.errors import ImageError, UsageError, VipError
from vipcli.lazy_module import LazyModule as _LazyModule
from vipcli.results import BenchmarkResult, Prediction, Predictions, TrainResult

if TYPE_CHECKING:
    import torch
    from PIL import Image
else:  # light: torch and PIL load when a call needs them, or when a tool reads the annotations
    torch, Image = _LazyModule("torch"), _LazyModule("PIL.Image")

__all__ = ["train", "benchmark", "load", "Model", "Prediction", "Predictions", "TrainResult", "BenchmarkResult", "VipError",
           "ImageError"]


@contextlib.contextmanager
def _callers_random_state():
    """Run the block with the caller's random number generators put back after it: torch's (the CPU's, the
    CUDA devices' and an Apple GPU's), Python's `random` and NumPy's global one. A run seeds torch (`torch.manual_seed(seed)`) and
    loading a backbone draws from it; the caller's own sequence of random numbers is not moved by calling vip.
    It decorates the calls, so that what they import first is inside it too (rich draws from `random` as it loads)."""
    import random

    import numpy as np
    import torch

    initial_seed = torch.initial_seed()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    cpu, python, numpy = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    mps = torch.mps.get_rng_state() if torch.backends.mps.is_available() else None  # a run on "mps" seeds it too
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu)
        if mps is not None:
            torch.mps.set_rng_state(mps)
        random.setstate(python)
        np.random.set_state(numpy)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        elif torch.cuda.is_initialized():  # CUDA started inside the block: seeded as the caller's seed left it
            torch.cuda.manual_seed_all(initial_seed)


@_callers_random_state()
def train(data: str | os.PathLike, *, shots: int | str | None = 16, method: str = "vip", backbone: str = "clip",
          arch: str | None = None, pretrained: str | None = None,
          symptoms: Iterable[str] | Mapping[str, list[str]] = (),
          method_options: dict | None = None, schedule: str = "auto", epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, views: int = 8, seed: int = 1,
          split_seed: int | None = None, out: str | os.PathLike | None = None, force: bool = False, device: str | torch.device = "auto",
          workers: int | None = None, encode_batch: int = 64, use_cache: bool = True, image_fit: str = "crop",
          progress: bool = False, quiet: bool = False) -> TrainResult:
    """Train a method on a folder of images sorted by class and write its run folder (`vip train`).

    Args:
        data: folder of class subfolders, optionally under train/ val/ test/ (as for `vip train`): a str or any
            os.PathLike (pathlib.Path, a pure path, py.path), as every path argument.
        shots: labelled training images per class; "all" or None for every one.
        method: a method id (`vip methods list`); its settings as `method_options` ({"n_ctx": 8}): numbers,
            True/False, None or text, each checked by the setting's type as `--method-option` is.
        backbone, arch, pretrained: the frozen model, as `--backbone/--arch/--pretrained`.
        symptoms: symptom pack files, YAML files of {class: [symptoms]}, folders of them, or shipped pack
            names, one or a list; or a dict {class: [symptoms]} (default: the shipped packs that match
            the class folders). The run records the symptoms it used, as with files.
        schedule, epochs, batch_size, lr: the training schedule and its overrides.
        views: augmented views encoded (and cached) per training image.
        seed: seeds the split, the few-shot subset, initialisation and batches.
        split_seed: seeds any split vip makes instead of `seed` (`--split-seed`): a benchmark row's is its sweep's.
        out: the run folder (default: a new folder in runs/); `force` replaces an existing one.
        device: "auto", "cpu", "cuda", "cuda:N", "mps", or a torch.device.
        workers: image-decoding processes (default: one per usable core, at most 16).
        encode_batch: image views per image-encoder call (an image's `views` are split to fit); lower it if
            the GPU runs out of memory.
        use_cache: keep encoded features in the feature cache between runs.
        image_fit: how a non-square image fits the encoder's square (`--image-fit`): "crop" (the backbone's
            own), "pad" (centred on black) or "squash"; recorded in the run, which `load` predicts with.
        progress: draw progress bars on stderr (as the command does).
        quiet: print no plan, progress or informational lines on stderr (as `vip -q`); warnings are still
            printed, and kept in `warnings`.
    Returns:
        TrainResult: `run_dir`, `metrics` (what metrics.json holds), `failures` (unreadable files),
        `class_names`, `warnings` (every warning printed, as plain text, in order) and `schedule`.
    Raises:
        VipError: a folder, option or file that cannot work, before any image is encoded where it can be known.
    """
    from vipcli.train import TrainConfig
    from vipcli.train import train as train_run

    numbers = _check_arguments(data, views=views, epochs=epochs, batch_size=batch_size, workers=workers, lr=lr,
                               encode_batch=encode_batch)
    seed = _seed("seed", seed, "seed=1")
    if split_seed is not None:
        split_seed = _seed("split_seed", split_seed, "split_seed=1")
    config = TrainConfig(
        shots=_shots(shots), method=method, seed=seed, split_seed=split_seed,
        **_shared_settings(data, backbone, arch, pretrained, device, use_cache, schedule, symptoms, method_options,
                           out, force, image_fit, **numbers),
    )
    return _run(train_run, config, progress, quiet)


@_callers_random_state()
def benchmark(data: str | os.PathLike, *, methods: Iterable[str] | str | None = None,
              shots: Iterable = (1, 2, 4, 8, 16), seeds: Iterable[int] = (1, 2, 3), backbone: str = "clip",
              arch: str | None = None, pretrained: str | None = None,
              symptoms: Iterable[str] | Mapping[str, list[str]] = (), method_options: dict | None = None,
              schedule: str = "auto", epochs: int | None = None, batch_size: int | None = None,
              lr: float | None = None, views: int = 8, split_seed: int | None = None, out: str | os.PathLike | None = None,
              force: bool = False, batched: bool = True, keep_going: bool = False, device: str | torch.device = "auto",
              workers: int | None = None, encode_batch: int = 64, use_cache: bool = True, image_fit: str = "crop",
              progress: bool = False, quiet: bool = False) -> BenchmarkResult:
    """Compare methods on the same seeded few-shot subsets of a folder (`vip benchmark`), resuming a sweep
    stored in `out`.

    Args:
        data: folder of class subfolders, optionally under train/ val/ test/.
        methods: method ids (`vip methods list`), or "all" (default: `vip benchmark`'s).
        shots: labelled images per class, one row each; "all" (or None) for every image.
        seeds: seeds of the few-shot subsets, initialisation and batch order.
        split_seed: seed of any split vip makes (default: the stored sweep's, else the first seed).
        out: the results folder (default: benchmarks/<data folder name>); `force` starts it over instead
            of resuming it.
        batched: train the seeds and shot counts of one prompt method together (one text forward per step
            for all rows); False runs rows one after another (`--no-batch`), with the same results up to float
            rounding.
        keep_going: a row that fails (a method's error, not a stop; every row of a method whose first build fails)
            is recorded in `failed_rows` and results.json's `last_sweep.failed_rows`, and the other rows run
            (`--keep-going`); False stops the sweep at the first
            failure with its VipError, the rows finished before it kept.
        The other arguments are `train`'s, applied to every row.
    Returns:
        BenchmarkResult: `out`, `rows` (one dict per method, shots and seed, as results.json holds them),
        `summary` (per method and shots: its seeds, and over them the test set's accuracy_mean, accuracy_std,
        macro_f1_mean, macro_f1_std, balanced_accuracy_mean, balanced_accuracy_std; each std None with one
        seed), `class_names`, `skipped` and `trained`
        (rows resumed and run now), `failed_rows` (with keep_going), `encoded_views`, `failures` (unreadable
        files), `warnings` (every warning printed, as plain text, in order) and `config` (the sweep's stored
        settings).
    Raises:
        VipError: a folder, option or file that cannot work, before any image is encoded where it can be known.
    """
    from vipcli.benchmark import DEFAULT_METHODS, BenchmarkConfig, run_benchmark

    numbers = _check_arguments(data, views=views, epochs=epochs, batch_size=batch_size, workers=workers, lr=lr,
                               encode_batch=encode_batch)
    if split_seed is not None:
        split_seed = _seed("split_seed", split_seed, "split_seed=1")
    seeds, shots = _listed("seeds", seeds), _listed("shots", shots)  # once each: an iterator is read once
    methods = None if methods is None else _listed("methods", methods)
    config = BenchmarkConfig(
        methods=DEFAULT_METHODS if methods is None else _distinct("methods", methods, list(_method_ids(methods))),
        shots=_distinct("shots", shots, [_shots(value) for value in shots]),
        seeds=_distinct("seeds", seeds, [_seed("seeds", seed, "seeds=[1, 2, 3]") for seed in seeds]),
        split_seed=split_seed,
        batched=_flag("batched", batched), keep_going=_flag("keep_going", keep_going),
        **_shared_settings(data, backbone, arch, pretrained, device, use_cache, schedule, symptoms, method_options,
                           out, force, image_fit, **numbers),
    )
    return _run(run_benchmark, config, progress, quiet)


def _shared_settings(data, backbone, arch, pretrained, device, use_cache, schedule, symptoms, method_options, out,
                     force, image_fit, *, views, workers, encode_batch, epochs, batch_size, lr) -> dict:
    """The fields `TrainConfig` and `BenchmarkConfig` share, from `train`'s and `benchmark`'s keyword arguments (the
    numbers as `_check_arguments` returns them)."""
    from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings

    return dict(data=_path("data", data, "the path of a folder of class subfolders", "data='isic'"),
                method_options=_method_options(method_options),
                backbone=BackboneSettings(backbone, arch, pretrained, _device_name(device)),
                encoding=EncodingSettings(views=views, workers=workers, use_cache=_flag("use_cache", use_cache),
                                          batch_size=encode_batch, image_fit=_image_fit(image_fit)),
                schedule=ScheduleSettings(schedule, epochs, batch_size, lr), symptoms=_symptom_sources(symptoms),
                out=None if out is None else _path("out", out, "the path of the folder to write", "out='runs/a'"),
                force=_flag("force", force))


def _run(function, config, progress: bool, quiet: bool):
    """`function(config, progress bar or None)`, its errors worded for Python callers, with no informational lines
    if `quiet`; VIP_QUIET=maybe (a value neither on nor off) refused first, as the command does
    (`vipcli.env_flags.check_environment`)."""
    from vipcli import console
    from vipcli.env_flags import check_environment

    check_environment()
    with console.quiet(_flag("quiet", quiet)), _in_python_words(), \
            console.progress_bar() if _flag("progress", progress) else contextlib.nullcontext() as bar:
        return function(config, bar)


@_callers_random_state()
def load(run_dir: str | os.PathLike, *, device: str | torch.device = "auto", use_cache: bool = True) -> Model:
    """Load a run folder written by `vip train` (or `vipcli.api.train`) for prediction.

    Args:
        run_dir: the run folder (a str or any os.PathLike).
        device: "auto", "cpu", "cuda", "cuda:N", "mps", or a torch.device.
        use_cache: look up and keep a local weights file's digest and the backbone's passed load-time checks in
            the cache folder; False (as `vip predict --no-cache`) reads and writes nothing there, so a cache
            folder vip does not trust is no obstacle. Pass `use_cache=False` to `Model.predict` too.
        (No `quiet`: loading prints no plan, progress or informational line; what it prints are warnings, such as
        random weights or another backbone than the run recorded, which `quiet` keeps everywhere.)
    Returns:
        Model: the run's classes, method and device, and `predict` and `predict_many` for images.
    Raises:
        VipError: no run there, a backbone or method plugin that is not installed, weights that are missing.
        UsageError: VIP_QUIET, VIP_DEBUG or VIP_CUDA_GRAPHS neither on nor off (`vipcli.env_flags`), first.
    """
    from vipcli.cache_use import using_cache
    from vipcli.devices import resolve_device
    from vipcli.env_flags import check_environment
    from vipcli.predict import load_predictor

    check_environment()  # as train and benchmark: before the run's backbone loads
    with _in_python_words(), using_cache(_flag("use_cache", use_cache)):
        run_dir = _path("run_dir", run_dir, "the path of a run folder written by `vip train`", "run_dir='runs/a'")
        return Model(load_predictor(run_dir, resolve_device(_device_name(device))), use_cache=use_cache)


class Model:
    """A trained run, loaded once, that classifies images: `vipcli.api.load(run_dir)` makes one.

    A Model pickles as its run folder, device and `use_cache` (for multiprocessing, joblib or a file), not as its
    weights: unpickling loads that run folder again, as `load` does.
    """

    def __init__(self, predictor, use_cache: bool = True):
        self._predictor = predictor  # vipcli.predict.Predictor
        self._use_cache = use_cache  # as `load` was given it: a pickled model is loaded again with it
        self._told_no_explanation = False  # the note that the method explains nothing: once per model

    def __reduce__(self):
        """Pickle as `load(run_dir, device=..., use_cache=...)`: the backbone holds functions and open handles that
        do not pickle, and the run folder already holds everything else."""
        return _loaded_again, (str(self.run_dir), str(self.device), self._use_cache)

    def __repr__(self) -> str:
        return (f"Model({str(self.run_dir)!r}, method={self.method!r}, classes={self.classes!r}, "
                f"device={str(self.device)!r})")

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of `Prediction.probabilities`."""
        return list(self._predictor.class_names)

    @property
    def run_dir(self) -> Path:
        """The run folder this model was loaded from."""
        return Path(self._predictor.run_dir)

    @property
    def method(self) -> str:
        """The method id the run was trained with ("vip", "coop", ...)."""
        return str(self._predictor.metadata["method"])

    @property
    def device(self) -> torch.device:
        """The torch.device the model runs on."""
        return self._predictor.backbone.device

    @property
    def image_fit(self) -> str:
        """How the run fits a non-square image into the encoder's square ("crop", "pad" or "squash"), as trained;
        `predict` uses it."""
        return self._predictor.image_fit

    @property
    def calibrated(self) -> bool:
        """Whether probabilities are temperature-scaled and prediction sets available (runs of vip >= 0.2)."""
        return self._predictor.calibration is not None

    def predict(self, image: str | os.PathLike | Image.Image, *, explain: bool = False, coverage: float | None = None,
                use_cache: bool = True, quiet: bool = False) -> Prediction:
        """Classify one image: a file path or a PIL image in memory.

        Args:
            image: an image file (a str or any os.PathLike, such as a Path), or a PIL.Image.Image.
            explain: add, per class, each symptom's similarity, merge weight and contribution (None for
                a method that gives no explanation, such as linear-probe; a note on stderr says so once).
            coverage: add the conformal prediction set holding the true class with at least this
                probability (e.g. 0.9; needs a calibrated run).
            use_cache: look up and keep a file's features in the feature cache (images in memory never are).
            quiet: print no informational line on stderr (the note that the method explains nothing), as `vip -q`;
                warnings are still printed.
        Returns:
            Prediction: `label`, `probability`, `probabilities` ({class: p}), and `explanation` and
            `prediction_set` when asked; `path` is the file's, "" for an image in memory.
        Raises:
            ImageError: the file cannot be read as an image (the reason in `error.reason`).
            VipError: a folder (use `predict_many`), a value of another type, an impossible `coverage`.
        """
        [item] = _expand([image])  # an empty path, a numpy array: refused as predict_many refuses them
        if isinstance(item, Path) and item.is_dir():
            raise UsageError(f"{item} is a folder", "use model.predict_many([folder]) for the images in it")
        try:
            return self.predict_many([item], explain=explain, coverage=coverage, use_cache=use_cache, workers=0,
                                     quiet=quiet)[0]
        except ImageError as error:  # predict_many's fix names its skip_unreadable, which predict does not take
            if isinstance(item, Path):
                error.hint = "fix or replace it; model.predict_many(files, skip_unreadable=True) leaves such files out"
            raise

    @_callers_random_state()
    def predict_many(self, images: Iterable[str | os.PathLike | Image.Image], *, explain: bool = False,
                     coverage: float | None = None, skip_unreadable: bool = False, use_cache: bool = True,
                     workers: int | None = None, batch_size: int = 64, progress: bool = False,
                     quiet: bool = False) -> Predictions:
        """Classify many images: files, folders (searched with their subfolders, as `vip predict` does)
        and PIL images, in the order given.

        Args:
            images: an iterable of image files and folders (each a str or any os.PathLike) and PIL images.
            explain, coverage, use_cache: as for `predict`.
            skip_unreadable: leave out files that cannot be read (each named in a warning on stderr and in the
                result's `failures`) instead of raising.
            workers: image-decoding processes for files, 0 to decode in this process (default: one per
                usable core, at most 16).
            batch_size: images per image-encoder call (1 or more).
            progress: draw a progress bar on stderr.
            quiet: print no progress or informational line on stderr (as `vip -q`: `progress` draws nothing then);
                the warnings (each file skipped, each left out) are still printed.
        Returns:
            Predictions: a list of one Prediction per image, in input order (a folder's images sorted by path);
            a file left out by `skip_unreadable` has none, and is in its `failures` ({path: reason}).
        Raises:
            ImageError: a file that cannot be read, unless `skip_unreadable` (the first, with how many).
            VipError: a path that does not exist, a folder without images, a value of another type.
        """
        batch_size = _count("batch_size", batch_size, 1)
        for name, value in (("explain", explain), ("skip_unreadable", skip_unreadable), ("use_cache", use_cache),
                            ("progress", progress)):
            _flag(name, value)
        if workers is not None:
            workers = _count("workers", workers, 0)
        from vipcli import console

        with console.quiet(_flag("quiet", quiet)), _in_python_words(batch_argument="batch_size"):
            return self._predict_many(_expand(images), explain, _coverage(coverage), skip_unreadable, use_cache,
                                      workers, batch_size, progress)

    def _predict_many(self, items: list, explain: bool, coverage: float | None, skip_unreadable: bool,
                      use_cache: bool, workers: int | None, batch_size: int, progress: bool) -> Predictions:
        """`predict_many` on `items` already checked: Paths and loaded PIL images."""
        from vipcli import console
        from vipcli.features import default_cache_dir, encode_in_memory
        from vipcli.images import left_out_warning
        from vipcli.predict import classify, collect_images, predict
        from vipcli.settings import default_workers
        from vipcli.trust import set_threshold

        predictor = self._predictor
        cutoff = set_threshold(predictor.calibration, coverage, predictor.run_dir)  # refuses before any work
        if explain:
            self._note_if_nothing_to_explain()
        left_out: list[Path] = []
        # a file or folder -> its image files (a missing path is refused here); a PIL image stays itself
        groups = [collect_images([item], left_out) if isinstance(item, Path) else item for item in items]
        if left_out:
            from rich.markup import escape

            console.warn(escape(left_out_warning(left_out)))
        files = [path for group in groups if isinstance(group, list) for path in group]
        in_memory = [group for group in groups if not isinstance(group, list)]
        by_file, failures = {}, {}
        if files:
            cache = predictor.feature_cache(default_cache_dir() if use_cache else None)
            with console.progress_bar() if progress else contextlib.nullcontext() as bar:
                made, failures = predict(predictor, files, explain, cache,
                                         default_workers() if workers is None else workers, batch_size, bar, coverage)
            by_file = {prediction.path: prediction for prediction in made}
        if failures and not skip_unreadable:
            path, reason = next(iter(failures.items()))
            more = f" (and {len(failures) - 1} more unreadable)" if len(failures) > 1 else ""
            error = ImageError(path, reason + more)
            error.hint = "fix or remove it, or pass skip_unreadable=True"
            raise error
        console.warn_skipped(failures)
        features = encode_in_memory(predictor.backbone, in_memory, batch_size,  # [M, D]
                                    predictor.image_fit) if in_memory else None
        held = iter(classify(predictor, features, [""] * len(in_memory), explain, cutoff) if in_memory else [])
        results = Predictions(failures=failures)
        for group in groups:
            if isinstance(group, list):
                results.extend(by_file[str(path)] for path in group if str(path) in by_file)
            else:
                results.append(next(held))
        return results

    def _note_if_nothing_to_explain(self) -> None:
        """One note on stderr, the first time `explain` is asked of a method that gives no explanation (a call with
        `quiet` prints it not, and leaves it to the next call that is not quiet)."""
        from vipcli import console
        from vipcli.methods.base import gives_explanations

        if console.is_quiet():
            return
        if not self._told_no_explanation and not gives_explanations(self._predictor.method):
            console.info(f"note: method '{self.method}' gives no per-symptom explanation; "
                         "Prediction.explanation is None for it")
            self._told_no_explanation = True


def _loaded_again(run_dir: str, device: str, use_cache: bool) -> Model:
    """A pickled Model: its run folder loaded again on its device (`Model.__reduce__`)."""
    return load(run_dir, device=device, use_cache=use_cache)


# how an image held as an array becomes a PIL image, by the module of its type
_CONVERSIONS = (("numpy.", "pass PIL.Image.fromarray(array)"),
                ("torch.", "pass torchvision.transforms.functional.to_pil_image(tensor), a [3, H, W] tensor of 0..1"))


def _expand(images) -> list:
    """`images` as a list of Paths (files and folders) and PIL images; anything else is refused."""
    from PIL import Image

    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise UsageError(f"predict_many takes a list of images, got one {type(images).__name__}",
                         "pass [image], or use model.predict(image)")
    items = []
    for item in images:
        text = _path_text(item)
        if text is not None and not text.strip():  # Path("") is the current folder: never meant
            raise UsageError(f"image {len(items) + 1} of the input is an empty path",
                             "pass an image file or a folder ('.' for the current one)")
        if text is not None:
            items.append(Path(text))
        elif isinstance(item, Image.Image):
            items.append(_loaded(item, len(items)))
        else:
            kind = f"{type(item).__module__}.{type(item).__name__}".removeprefix("builtins.")
            hint = next((fix for prefix, fix in _CONVERSIONS if kind.startswith(prefix)),
                        "pass image files or folders (a str or os.PathLike) or PIL images")
            what = "None" if item is None else f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"  # not "a NoneType"
            raise UsageError(f"cannot classify {what}", hint)
    return items


def _loaded(image, position: int):
    """`image` with its pixels read (an image opened lazily reads them now); one that cannot be read,
    such as one whose file was closed (`with Image.open(...)` left), is an ImageError naming it."""
    name = getattr(image, "filename", "") or f"image {position + 1} of the input (in memory)"
    try:
        image.load()
    except (OSError, ValueError, AssertionError) as error:  # Pillow asserts an open file (`fp`) on a closed one
        reason = str(error) or "its file was closed before its pixels were read"
        error = ImageError(name, f"pixels cannot be read: {reason}")
        error.hint = "pass the file's path, or an image loaded while its file is open (Image.open(path).copy())"
        raise error from None
    if not image.width or not image.height:
        raise ImageError(name, f"an image of no pixels ({image.width}x{image.height})")
    return image


def _check_arguments(data, **numbers) -> dict:
    """`numbers` as Python's int and float (NumPy's numbers too), each refused, by the name the caller wrote, if of
    the wrong type or range; and a `data` that is not a path refused (the commands' parser does this for their
    options; here a float epochs would fail deep inside, as a Python error naming neither). Seeds are checked by
    `_seed`."""
    _path("data", data, "the path of a folder of class subfolders", "data='isic'")
    checked = {"views": _count("views", numbers["views"], 1),
               "encode_batch": _count("encode_batch", numbers["encode_batch"], 1)}
    for name, least in (("epochs", 1), ("batch_size", 1), ("workers", 0)):
        checked[name] = None if numbers[name] is None else _count(name, numbers[name], least)
    lr = numbers["lr"]
    if lr is not None and (not _real_number(lr) or not 0 < lr < math.inf):
        raise UsageError(f"lr={lr!r}: expected a positive number", "such as lr=0.002")
    checked["lr"] = None if lr is None else float(lr)
    return checked


def _whole_number(value) -> int | None:
    """`value` as an int if it is a whole number: Python's or NumPy's (np.int64(4), an item of np.arange), never
    True/False; else None."""
    from numbers import Integral

    if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, Integral):
        return None
    return int(value)


def _real_number(value) -> bool:
    """Whether `value` is a real number (Python's or NumPy's float or int), not True/False."""
    from numbers import Real

    return not isinstance(value, bool) and type(value).__name__ != "bool_" and isinstance(value, Real)


def _flag(name: str, value) -> bool:
    """`value` of the keyword argument `name`, refused unless True or False (a string "false" would be true)."""
    if type(value).__name__ not in ("bool", "bool_"):  # numpy's bool too
        raise UsageError(f"{name}={value!r}: expected True or False", f"such as {name}=False")
    return bool(value)


def _seed(name: str, value, example: str) -> int:
    """`value`, one seed of the keyword argument `name` (`seed`, `seeds`, `split_seed`), refused by that name
    unless a whole number in SEED_MIN..SEED_MAX; `example` is the fix, as the caller would write it."""
    from vipcli.cli.options import SEED_MAX, SEED_MIN

    shown = f"{name}={value!r}" if name != "seeds" else f"seeds: {value!r}"
    whole = _whole_number(value)
    if whole is None or whole < SEED_MIN:
        raise UsageError(f"{shown}: expected a whole number of {SEED_MIN} or more", f"such as {example}")
    if whole > SEED_MAX:
        raise UsageError(f"{shown}: expected at most {SEED_MAX}", f"such as {example}")
    return whole


def _listed(name: str, values) -> list:
    """`values` as a list, one value alone (a str, a number or None) as a list of one; an empty list is refused."""
    one = values is None or isinstance(values, str) or _whole_number(values) is not None  # np.int64(1) too
    listed = [values] if one else list(values)
    if not listed:
        raise UsageError(f"{name}=[]: expected at least one value")
    return listed


def _distinct(name: str, written: list, values: list) -> tuple:
    """`values` (the keyword argument `name`'s items as checked, `written` as the caller wrote them) as a tuple;
    one listed twice is refused, as in the commands' lists: `seeds=[1, 1]` is more often a typo for [1, 2] than a
    wish to run seed 1 once, and a sweep run over fewer seeds than listed would report its spread over them."""
    first: dict = {}  # each value -> the item it was first written as ("all" and None are one shots value)
    for item, value in zip(written, values):
        first.setdefault(value, item)
    if len(first) < len(values):
        repeated = ", ".join(repr(first[value]) for value in first if values.count(value) > 1)
        raise UsageError(f"{name}={written!r}: {repeated} is listed more than once",
                         f"list each value once, such as {name}={list(first.values())!r}")
    return tuple(values)


def _method_ids(methods) -> tuple[str, ...]:
    """`methods` as a tuple of method ids (one id alone as a tuple of one); a value that is not an id's text,
    or `vip benchmark`'s comma-separated form, is refused by name with the list to write instead."""
    ids = _listed("methods", methods)
    for value in ids:
        if not isinstance(value, str) or "," in value:
            example = [part.strip() for part in value.split(",")] if isinstance(value, str) else ["zeroshot", "vip"]
            raise UsageError(f"methods: {value!r}: expected a method id (`vip methods list`)",
                             f"such as methods={example!r}, or methods='all'")
    return tuple(ids)


def _count(name: str, value, least: int) -> int:
    """`value` of the keyword argument `name` as an int, refused unless a whole number >= `least`."""
    whole = _whole_number(value)
    if whole is None or whole < least:
        raise UsageError(f"{name}={value!r}: expected a whole number of {least} or more", f"such as {name}={least}")
    return whole


def _image_fit(value) -> str:
    """`image_fit` as `--image-fit` takes it: "crop", "pad" or "squash"."""
    from vipcli.image_fit import FITS

    fit = value.strip().lower() if isinstance(value, str) else None  # "PAD" as `--image-fit PAD` takes it
    if fit not in FITS:
        raise UsageError(f"image_fit={value!r}: expected 'crop', 'pad' or 'squash'",
                         "such as image_fit='pad' to keep the whole image")
    return fit


def _shots(shots) -> int | None:
    """`shots` as `vip train --shots` takes it: a positive number, or "all"/None for every image."""
    if shots is None or (isinstance(shots, str) and shots.strip().lower() == "all"):
        return None
    whole = int(shots) if isinstance(shots, str) and shots.strip().isdigit() else _whole_number(shots)
    if whole is None or whole < 1:
        raise UsageError(f"shots={shots!r}: expected a positive number of images per class", "or shots='all'")
    return whole


def _coverage(coverage) -> float | None:
    """`coverage` checked as the Python caller wrote it (the commands' own check names --coverage)."""
    if coverage is None:
        return None
    if not _real_number(coverage) or not 0 < coverage < 1:
        raise UsageError(f"coverage={coverage!r}: expected a probability strictly between 0 and 1",
                         "such as coverage=0.9")
    return float(coverage)


def _symptom_sources(values) -> tuple:
    """`symptoms` as `TrainConfig` takes them: names and paths as strings (one alone is a list of one; one
    given twice refused as `symptoms 'a.yaml' is given twice`); a dict, {class: [symptoms]} or one pack's mapping, as the packs it gives, read as a file of it is."""
    from vipcli.packs import distinct_sources, packs_from_mapping

    if isinstance(values, (str, os.PathLike)):
        return (str(_symptom_source(values)),)
    if isinstance(values, Mapping):
        return tuple(packs_from_mapping(dict(values), "the symptoms dict"))
    try:
        return distinct_sources([_symptom_source(value) for value in values])  # one twice refused, as `--symptoms`
    except UsageError as error:
        raise UsageError(_python_words(error.message), error.hint) from None


def _symptom_source(value) -> str:
    """One item of `symptoms`: a shipped pack's name, or a file or folder as a str or any os.PathLike."""
    if isinstance(value, str):
        return value
    return str(_path("symptoms", value, "a symptom pack's name, or the path of a symptoms file or folder",
                     "symptoms=['melanoma.yaml']"))


def _path_text(value) -> str | None:
    """`value` as the text of a path when it is a str or an os.PathLike (pathlib's paths, pure ones too, py.path's,
    any class with `__fspath__`; a bytes path decoded as the file system does); None for anything else."""
    if isinstance(value, str):
        return value
    if not isinstance(value, os.PathLike):
        return None
    try:
        return os.fsdecode(os.fspath(value))
    except TypeError:  # an __fspath__ that gives neither str nor bytes
        return None


def _path(name: str, value, expected: str, example: str) -> Path:
    """`value` of the keyword argument `name` as a Path: a str or any os.PathLike (`_path_text`); anything else, and
    an empty path (Path("") is the current folder: never meant), refused by that name:
    `data=5: expected the path of a folder of class subfolders (a str or os.PathLike) (such as data='isic')`."""
    text = _path_text(value)
    if text is None or not text.strip():
        raise UsageError(f"{name}={value!r}: expected {expected} (a str or os.PathLike)", f"such as {example}")
    return Path(text)


def _device_name(device) -> str | None:
    """`device` as the commands spell it: a torch.device (`torch.device("cpu")`) as its name, "cpu"; None is
    "auto"; anything else, such as a GPU's number (device=0, which read as "auto"), is refused by name."""
    import torch

    if device is None or isinstance(device, str):
        return device
    if isinstance(device, torch.device):
        return str(device)
    raise UsageError(f"device={device!r}: expected a device's name or a torch.device",
                     "such as device='cuda:0', device='cpu' or device='auto'")


def _method_options(options) -> dict[str, str]:
    """`method_options` as `vip train --method-option KEY=VALUE` takes them: each value as its text, so it is
    converted and checked by its setting's type (n_ctx=2.5 is refused as it is from the command line); a setting
    under both spellings (`{"n_ctx": 4, "n-ctx": 8}`) is refused, as `-o n_ctx=4 -o n-ctx=8` is."""
    from numbers import Number

    from vipcli.methods.base import check_each_setting_once

    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise UsageError(f"method_options={options!r}: expected a dict of the method's settings",
                         'such as method_options={"n_ctx": 8}')
    check_each_setting_once(dict(options))
    texts = {}
    for key, value in options.items():
        if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):  # numpy's bool too
            texts[str(key)] = "true" if value else "false"
        elif value is None or isinstance(value, (str, Number)):
            texts[str(key)] = str(value)
        else:
            raise UsageError(f"method_options[{key!r}]={value!r}: expected a number, True/False, None or text",
                             "see the method's settings with `vip methods show METHOD`")
    return texts


# the commands' option names in messages raised to Python callers -> the keyword arguments they are here
_PYTHON_WORDS = [
    (re.compile(r"--method-option ([\w-]+)"), lambda m: f"method_options['{m[1].replace('-', '_')}']"),
    (re.compile(r"--(n-ctx|class-specific-context)\b"), lambda m: f"method_options['{m[1].replace('-', '_')}']"),
    (re.compile(r"--method-option\b"), lambda m: "method_options"),
    (re.compile(r"^its settings: (.*)$"), lambda m: f"its settings: {m[1].replace('-', '_')}"),
    (re.compile(r"(has no setting) '([\w-]+)'$"), lambda m: f"{m[1]} '{m[2].replace('-', '_')}'"),
    (re.compile(r"^no benchmarked method has the setting '([\w-]+)'$"),
     lambda m: f"method_options['{m[1].replace('-', '_')}']: no benchmarked method has this setting"),
    (re.compile(r"--coverage (\d[\d.]*\d|\d)"), lambda m: f"coverage={m[1]}"),
    (re.compile(r"--(shots|workers|epochs|views|seed) (\d+)\b"), lambda m: f"{m[1]}={m[2]}"),
    (re.compile(r"--pretrained (none)\b"), lambda m: f"pretrained='{m[1]}'"),
    (re.compile(r"--image-fit (crop|pad|squash)\b"), lambda m: f"image_fit='{m[1]}'"),
    (re.compile(r"--coverage\b"), lambda m: "coverage"),
    (re.compile(r"--device (\w+(?::\d+)?) or auto\b"), lambda m: f"device='{m[1]}' or device='auto'"),
    (re.compile(r"--device (\w+(?::\d+)?)"), lambda m: f"device='{m[1]}'"),
    (re.compile(r"--data DIR\b"), lambda m: "data='FOLDER'"),
    (re.compile(r"pass --data ('[^']*'|[^\s,;)]+)"), lambda m: f"pass data={_unquoted(m[1])!r}"),
    (re.compile(r"--model RUN_DIR\b"), lambda m: "a run directory"),
    (re.compile(r"--model (.+), the run's folder$"), lambda m: f"{str(m[1])!r}, the run's folder"),
    (re.compile(r"pass --model with one of them"), lambda m: "pass one of them as run_dir"),
    (re.compile(r"pass --model ('[^']*'|[^\s,;)]+)"), lambda m: f"pass run_dir={_unquoted(m[1])!r}"),
    (re.compile(r"--symptoms FILE\b"), lambda m: "symptoms='FILE'"),
    (re.compile(r"--symptoms (the symptoms dict)\b"), lambda m: m[1]),  # not "symptoms the symptoms dict"
    (re.compile(r"--force\b"), lambda m: "force=True"),
    (re.compile(r"--no-cache\b"), lambda m: "use_cache=False"),
    (re.compile(r"--no-batch\b"), lambda m: "batched=False"),
    (re.compile(r"--encode-batch\b"), lambda m: "encode_batch"),
    (re.compile(r"--(data|shots|method|backbone|arch|pretrained|symptoms|schedule|epochs|batch-size|lr|views|seed|out"
                r"|device|workers|split-seed|image-fit)(?![\w-])"), lambda m: m[1].replace("-", "_")),
]


# a command to run in a shell, quoted in a message (`vip symptoms generate --data skin`): kept as written
_QUOTED_COMMAND = re.compile(r"`vip [^`]*`")


def _python_words(text: str | None) -> str | None:
    """`text` with the commands' option names of `_PYTHON_WORDS` as a Python caller writes them; a `vip ...`
    command quoted in it is left as it is, since it is run in a shell, where its options are options."""
    if not text:
        return text
    commands = _QUOTED_COMMAND.findall(text)
    text = _QUOTED_COMMAND.sub("\0", text)  # each command -> a NUL, put back in order after the rewording
    for pattern, words in _PYTHON_WORDS:
        text = pattern.sub(words, text)
    for command in commands:
        text = text.replace("\0", command, 1)
    return text


def _unquoted(word: str) -> str:
    """A path as a message gave it for the shell (`'my runs/a'`), as Python writes it: without the quotes."""
    import shlex

    try:
        return shlex.split(word)[0]
    except (ValueError, IndexError):
        return word


@contextlib.contextmanager
def _in_python_words(batch_argument: str = "encode_batch"):
    """Word warnings, and re-raise a VipError whose message or fix names an option of the commands
    (`--method-option n-ctx`, `--coverage`, `--device`, `--epochs`, `--force`, `--shots 1000`), with the
    keyword argument the caller wrote instead (`method_options['n_ctx']`, `epochs`, `force=True`, `shots=1000`;
    `--encode-batch` as `batch_argument`, the name of the call's images per encoder call). A GPU out of memory is
    the VipError the command prints for it, as the caller would word it."""
    from vipcli import console

    try:
        with console.wording(_python_words), _gpu_memory_as_vip_error():
            yield
    except VipError as error:
        if not isinstance(error, ImageError):  # its message is the file's name and reason, nothing to reword
            error.message, error.hint = _python_words(error.message), _python_words(error.hint)
            if error.hint and batch_argument != "encode_batch":
                error.hint = re.sub(r"\bencode_batch\b", batch_argument, error.hint)
            error.args = (error.message, *error.args[1:])
        raise


@contextlib.contextmanager
def _gpu_memory_as_vip_error():
    """A GPU that runs out of memory inside the block raises the VipError `vip` prints for it (what to lower), in
    place of torch's error and its allocator figures; with VIP_DEBUG on, torch's error is raised as it is."""
    from vipcli.devices import out_of_memory
    from vipcli.env_flags import env_flag

    try:
        yield
    except RuntimeError as error:
        memory = out_of_memory(error)
        if memory is None or env_flag("VIP_DEBUG"):
            raise
        raise memory from None
