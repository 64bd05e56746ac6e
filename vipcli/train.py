"""`vip train` as a library: data -> frozen features -> a fitted method -> run directory."""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vipcli import console
from vipcli.errors import UsageError, VipError
from vipcli.results import TrainResult
from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings

# torch and the data modules are imported inside the functions, so that building a TrainConfig
# (and failing on a bad option) costs no torch import.


@dataclass(frozen=True)
class TrainConfig:
    """Everything `vip train` needs; defaults are the CLI's."""

    data: Path  # folder of class subfolders, optionally under train/ val/ test/
    shots: int | None = 16  # labelled training images per class; None uses all
    method: str = "vip"  # a method id (see `vip methods list`)
    method_options: dict = field(default_factory=dict)  # the method's settings, KEY -> value (text or typed)
    backbone: BackboneSettings = BackboneSettings()
    encoding: EncodingSettings = EncodingSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    symptoms: tuple = ()  # pack files, {class: [symptoms]} files, folders or shipped names (str), or SymptomPacks
    seed: int = 1  # seeds the split, the few-shot subset, initialisation and batches
    split_seed: int | None = None  # seeds any split vip makes instead (a benchmark row's: its sweep's split seed)
    out: Path | None = None  # run directory (None: runs/<data>-<method>-<backbone>-<shots>-seed<seed>)
    force: bool = False  # replace an existing --out
    reference: bool = False  # the authors' way: every image re-encoded every epoch, the whole text tower every step


def default_run_dir(config: TrainConfig) -> Path:
    """runs/<data>-<method>-<backbone>-<shots>-seed<seed>, numbered -2, -3... if taken; a character a plugin id
    may hold that no folder name (on Windows) can (`org/clip`, `my:clip`) written `_`."""
    shots = "all" if config.shots is None else f"{config.shots}shot"
    name = f"{Path(config.data).resolve().name}-{config.method}-{config.backbone.id}-{shots}-seed{config.seed}"
    base = Path("runs") / re.sub(r'[<>:"/\\|?*\x00-\x1f]', "_", name)
    candidate, n = base, 2
    while candidate.exists() or _in_training(candidate):
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def _in_training(run_dir: Path) -> bool:
    """Whether a live `vip train` holds `run_dir`'s lock: it writes the run there when it finishes."""
    from vipcli.checkpoint import run_lock_file
    from vipcli.locks import lock_holder

    return lock_holder(run_lock_file(run_dir)) is not None


def _reference_batches(backbone, dataset, data, schedule, seed, encoding):
    """The authors' loop: every epoch decodes and encodes every train and val image again."""
    from vipcli.features import iterate_fresh_features

    val = [s for s in dataset.splits["val"] if str(s.path) in set(data.val.paths)]

    def batches(epoch: int, train: bool):
        paths, labels = (data.train.paths, data.train.y.tolist()) if train else ([str(s.path) for s in val],
                                                                                 [s.label for s in val])
        size = schedule.batch_size if train else encoding.batch_size
        return iterate_fresh_features(backbone, paths, labels, train, size, encoding.workers, seed * 1000 + epoch,
                                      encoding.image_fit)

    return batches


def check_config(config: TrainConfig):
    """Check every option before any image is decoded; return (method class, settings, schedule)."""
    if config.shots is not None and config.shots < 1:
        raise UsageError(f"--shots must be a positive number or 'all', got {config.shots}")
    from vipcli.data import check_data_folder

    check_data_folder(config.data)
    config.encoding.validate()
    config.encoding.cache_root()  # a cache folder every user can write: refused before the backbone loads
    from vipcli.methods import make_settings, method_class
    from vipcli.methods.prompting import PromptMethod
    from vipcli.packs import check_sources_exist

    cls = method_class(config.method)
    config.backbone.check()  # a misspelt --backbone, --device or --symptoms: before the data is listed and hashed
    check_sources_exist(config.symptoms)
    settings = make_settings(cls, config.method_options, config.method)
    if config.reference and not (issubclass(cls, PromptMethod) and cls.trains):
        raise UsageError(f"--reference re-encodes images for the shared prompt-training loop; method "
                         f"'{config.method}' does not use it", "drop --reference")
    schedule = config.schedule.resolve(config.shots)
    warn_unused_schedule(config.schedule, [(config.method, cls)])
    from vipcli.preflight import check_outside_data, check_run_dir

    run_dir = Path(config.out) if config.out else default_run_dir(config)
    check_run_dir(run_dir, config.force)  # before any work
    check_outside_data(run_dir, Path(config.data), "--out" if config.out else "the default run folder")
    config.backbone.check_weights()  # weights offline: after the usage errors, before the data is read
    return cls, settings, schedule


def warn_unused_split_seed(given: int | None, dataset, warn: bool = True) -> bool:
    """One warning (`warn`: this process is the one that prints) when `--split-seed` was given for data whose
    splits are its own folders (it seeds nothing there); return whether it was given and unused."""
    return warn_split_seed_of_own_splits(given, dataset.root, dataset.carved, warn)


def warn_split_seed_of_own_splits(given: int | None, root, carves: bool, warn: bool = True) -> bool:
    """`warn_unused_split_seed` for the data folder `root`, where `carves` says whether vip carves a split of it
    (`vipcli.data.carves_splits`, known before the data is read)."""
    from rich.markup import escape

    if given is None or carves:
        return False
    if warn:
        console.warn(escape(f"--split-seed {given} is not used: {root} has its own val/ and test/ folders, "
                            "so vip splits nothing"))
    return True


def warn_unused_schedule(schedule, methods: list[tuple[str, type]]) -> None:
    """One warning, before any work, when --schedule/--epochs/--batch-size/--lr were given and none of `methods`
    ((id, class) pairs) follows the run's schedule: they would change nothing, without a word."""
    from vipcli.distributed import world_from_env
    from vipcli.methods import fitting_without_schedule

    given = schedule.given()
    fittings = [(name, fitting_without_schedule(cls, name)) for name, cls in methods]
    if not given or any(fitting is None for _, fitting in fittings) or not world_from_env().main:
        return
    options = ", ".join(given)
    if len(fittings) == 1:
        name, fitting = fittings[0]
        console.warn(f"{options} {'is' if len(given) == 1 else 'are'} not used by method '{name}', which follows no "
                     f"run schedule: {fitting}")
    else:
        console.warn(f"{options} {'is' if len(given) == 1 else 'are'} not used: none of the methods follows the "
                     "run's schedule (`vip methods show ID` says how one fits)")


def train(config: TrainConfig, progress=None) -> TrainResult | None:
    """Train one method on one dataset and write its run directory.

    Args:
        config: the run's settings.
        progress: an optional rich Progress for long steps.
    Returns:
        TrainResult with the run directory, metrics, unreadable files and the warnings printed (the last of them
        one `skipped FILE: reason` line per unreadable file); None on a torchrun rank other than 0 (it encodes
        its share of the images into the feature cache, then stops).
    """
    from vipcli.cache_use import using_cache

    with console.keeping_warnings() as warned, using_cache(config.encoding.use_cache):  # --no-cache: nothing remembered
        result = _train(config, progress)
        if result is not None:  # named relative to the data folder, as every warning about its files
            console.warn_skipped(result.failures, config.data)
            if result.failures and result.unopened:
                from vipcli.featuresets import unopened_note

                console.info(unopened_note(result.unopened, config.shots))
    if result is not None:
        result.warnings = warned
    return result


DEFAULT_NAME_TRIES = 20  # default run folders another `vip train` took between our choice and our lock


@contextlib.contextmanager
def run_dir_lock(config: TrainConfig):
    """Yield the run folder (`--out`, or the default one, chosen once), holding `.NAME.lock` beside it while the
    run trains (in the process that writes it): a second `vip train` into the same `--out` is refused at once,
    not after training to find it taken; a second one without `--out` takes the next default name; `vip predict`
    on it meanwhile says that it is still training. Taken once the folder is checked."""
    from vipcli import distributed
    from vipcli.atomic import made_folder
    from vipcli.checkpoint import run_lock_file
    from vipcli.locks import output_lock
    from vipcli.preflight import check_run_dir

    if not distributed.world_from_env().main:
        yield Path(config.out) if config.out else None  # not the rank that writes the run
        return
    for attempt in range(DEFAULT_NAME_TRIES):
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        with contextlib.ExitStack() as held:
            held.enter_context(made_folder(run_dir.parent))
            try:
                held.enter_context(output_lock(run_dir, lock=run_lock_file(run_dir)))
            except VipError:
                if config.out or attempt == DEFAULT_NAME_TRIES - 1:
                    raise
                continue  # another `vip train` took this default name as we chose it: the next one
            check_run_dir(run_dir, config.force)  # again: a run that held the lock may have written it since
            yield run_dir
            return


def _train(config: TrainConfig, progress=None) -> TrainResult | None:
    """`train`'s work, its warnings kept by the caller: the checks, then the run under its folder's lock."""
    started = time.perf_counter()
    cls, _, schedule = check_config(config)
    with run_dir_lock(config) as run_dir:
        return _fit_and_save(config, cls, schedule, run_dir, started, progress)


def _fit_and_save(config: TrainConfig, cls, schedule, run_dir: Path | None, started: float,
                  progress=None) -> TrainResult | None:
    """Load, encode, fit, evaluate and write `run_dir`, the run folder of a checked `config` (None on a rank that
    does not write it)."""
    import torch

    from vipcli.data import load_dataset
    from vipcli.packs import matched_packs_line, packs_for_run, symptoms_of
    from vipcli import distributed
    from vipcli.backbone import set_plain_text_tower
    from vipcli.featuresets import prepare_features
    from vipcli.chance import vs_chance
    from vipcli.devices import where_run
    from vipcli.fitting import metrics_of, predict_logits, seed_global_generators
    from vipcli.graphs import graph_status
    from vipcli.metrics import missed_classes_warning
    from vipcli.methods import FitContext, MethodSetup, build_method
    from vipcli.methods.backbone_guard import check_kept_since_fit
    from vipcli.methods.contract import check_round_trip, checked_fit
    from vipcli.preflight import check_decoding_memory, check_feature_memory

    world = distributed.world_from_env()  # torchrun: every rank encodes its share, rank 0 trains (#13)
    distributed.check_shared_cache(world, config.encoding.use_cache)
    dataset = load_dataset(config.data, seed=split_seed(config), train_optional=not cls.uses_shots)
    warn_unused_split_seed(config.split_seed, dataset, warn=world.main)
    packs = packs_for_run(dataset.class_names, list(config.symptoms), required=cls.needs_symptoms, data=config.data)
    symptoms = symptoms_of(packs)
    device = distributed.rank_device(config.backbone.device, world)
    torch.manual_seed(config.seed)
    backbone = config.backbone.load(device)
    if config.reference:  # the authors' way, for this run's backbone alone: every text pass through the plain tower
        set_plain_text_tower(backbone)
    loaded = time.perf_counter()
    if world.main:
        console.info(_plan(config, cls, dataset, schedule, backbone, device))
        carved = dataset.carved_line()
        if carved:
            console.info(carved)
    if world.main and packs and cls.needs_symptoms:  # a method that uses no symptoms is not told of them
        console.info(matched_packs_line(packs))
    if world.main:
        warn_data_gaps(dataset, config.shots if cls.uses_shots else None)
    seed_global_generators(config.seed)  # a plugin's draws from NumPy or `random` too: the same run for the same seed
    setup = MethodSetup(backbone, dataset.class_names, symptoms, trim=not config.reference)
    method = build_method(config.method, setup, config.method_options)  # prompts checked before any encoding
    shots, views, center_train = encoding_plan(config, cls)
    cache = config.encoding.cache(backbone)
    jobs = distributed.training_jobs(dataset, shots, [config.seed], views, center_train)
    check_feature_memory(jobs, backbone.embed_dim, views)
    check_decoding_memory(backbone, config.encoding, views)
    run = {"command": "train", "out": os.path.abspath(config.out) if config.out else "the default run folder"}
    if not distributed.encode_shared(backbone, world, jobs, cache, config.encoding.batch_size,
                                     config.encoding.workers, progress, run=run):
        return None  # not rank 0: its share of the features is in the cache
    data = prepare_features(backbone, dataset, shots, config.seed, views, cache, config.encoding.workers,
                            config.encoding.batch_size, progress, center_train=center_train,
                            train_required=cls.uses_shots)
    encoded = time.perf_counter()
    if world.main and cls.uses_shots:
        warn_unreadable_shortfalls(dataset, config.shots, data.shortfalls)
    if world.main:
        warn_unreadable_splits(dataset, data)
    reference = _reference_batches(backbone, dataset, data, schedule, config.seed,
                                   config.encoding) if config.reference else None
    fitted = checked_fit(method, data, FitContext(schedule, config.seed, progress, reference))
    trained = time.perf_counter()
    val_logits = predict_logits(method, data.val.x, device)  # [M, C], once for metrics and calibration
    test_logits = predict_logits(method, data.test.x, device)  # [T, C]
    check_round_trip(method, data.val.x if len(data.val.x) else data.test.x, device)  # predict = what was measured
    check_kept_since_fit(method)  # every byte of the backbone as fit left it, before anything is written
    calibrated = calibrate(val_logits, data.val.y, test_logits, data.test.y)  # temperature, conformal scores
    metrics = {
        "val": metrics_of(val_logits, data.val.y, len(dataset.class_names)),
        "test": metrics_of(test_logits, data.test.y, len(dataset.class_names)),
        **fitted,
        "timings": {"load_backbone_s": round(loaded - started, 3), "encode_s": round(encoded - loaded, 3),
                    "fit_s": round(trained - encoded, 3), "total_s": round(time.perf_counter() - started, 3),
                    "encoded_views": data.encoded_views, "backbone_load": getattr(backbone, "load_phases", {}),
                    "cuda_graphs": graph_status(backbone)},
        **where_run(device),  # device, machine
        "torch_threads": torch.get_num_threads(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # as a benchmark row says it
        **calibrated.metrics,  # the "calibration" and "conformal" blocks
        "shortfalls": data.shortfalls,  # class -> readable shots, where fewer than --shots
        "image_fit": config.encoding.image_fit,  # how images met the encoder's square (also in run.yaml)
    }
    metrics["test"]["vs_chance"] = vs_chance(data.test.y.numpy(), test_logits.softmax(dim=-1).numpy(),
                                             dataset.class_names)  # each class's AUROC against guessing
    uses_schedule = cls.trains and cls.uses_schedule
    write_train_run(run_dir, config, method, backbone, dataset, data, symptoms, schedule, metrics,
                    calibrated.calibration)
    missed = missed_classes_warning(metrics["test"]["confusion_matrix"], dataset.class_names,
                                    console.printable(run_dir), uses_shots=cls.uses_shots)
    if missed:
        from rich.markup import escape

        console.warn(escape(missed))  # class and folder names are the user's
    warn_chance_level(backbone, config, metrics["test"], dataset.class_names)
    return TrainResult(run_dir, metrics, data.failures, dataset.class_names, schedule if uses_schedule else None,
                       unopened=data.unopened if cls.uses_shots else 0)


def warn_chance_level(backbone, config: TrainConfig, test: dict, class_names: list[str]) -> None:
    """Warn when the test images do not show that the model tells a class apart better than chance (`test`:
    metrics.json's block, with `vs_chance`), unless the backbone has random weights, which its load has already
    warned of."""
    from rich.markup import escape

    from vipcli.chance import chance_level_warning
    from vipcli.report.notices import random_weights

    options = {"backbone_describe": backbone.describe(), "pretrained_option": config.backbone.pretrained or ""}
    if random_weights(options):  # warned of as the backbone loaded
        return
    warning = chance_level_warning(test["vs_chance"], class_names, test["n"],
                                   str(getattr(backbone, "image_domain", "") or ""), config.backbone.id)
    if warning:
        console.warn(escape(warning))  # class names are the user's


def split_seed(config: TrainConfig) -> int:
    """The seed of any split vip carves from train/ for `config`: `--split-seed`, else `--seed`."""
    return config.seed if config.split_seed is None else config.split_seed


ZERO_SHOT_TRAIN_IMAGES = 0  # per class: a method that uses no labelled images encodes none


def encoding_plan(config: TrainConfig, cls) -> tuple[int | None, int, bool]:
    """(shots, augmented views, center view) of the training images `vip train` encodes for `cls`.

    A method that uses no labelled images (zero-shot) gets none, instead of `--shots` x `--views` images
    that would play no part (with `--shots all`, every training image 8 times), and runs without train/
    too. The reference mode encodes training images afresh every epoch, so here only once (center
    view), to find the readable ones.
    """
    if not cls.uses_shots:
        return ZERO_SHOT_TRAIN_IMAGES, 0, True
    views = 0 if config.reference else config.encoding.views
    return config.shots, views, cls.needs_center_view or config.reference


def _plan(config, cls, dataset, schedule, backbone, device) -> str:
    """The first line of `vip train`: method, classes, images used, fitting, backbone and device."""
    from vipcli.methods import fitting_without_schedule

    if config.shots is None:
        shots = ", all images"
    else:
        shots = f", {config.shots} {console.plural(config.shots, 'shot')} per class"
        if config.shots > min(dataset.counts("train"), default=0):
            shots += " (every training image of a class with fewer)"
    fitting = fitting_without_schedule(cls, config.method)
    if not cls.uses_shots:  # zero-shot: the labelled images play no part (val and test still score it)
        shots = ""
    elif fitting is None:
        fitting = (f"schedule {schedule.name}: {schedule.epochs} {console.plural(schedule.epochs, 'epoch')}, "
                   f"batch {schedule.batch_size}, lr {schedule.lr}")
    return (f"{config.method} on {len(dataset.class_names)} classes ({', '.join(dataset.class_names)}){shots}; "
            f"{fitting}; {backbone_plan(config, backbone, device)}")


def backbone_plan(config, backbone, device) -> str:
    """The end of `vip train`'s and `vip benchmark`'s plan line (`config`: either's): "backbone ID (ARCH) on DEVICE",
    then how images are fit to a square unless they are cropped, as by default."""
    arch = Path(str(backbone.describe().get("arch", ""))).name
    fit = config.encoding.image_fit
    fit = "" if fit == "crop" else f"; images {'padded' if fit == 'pad' else 'squashed'} to a square (--image-fit {fit})"
    return f"backbone {config.backbone.id} ({arch}) on {device}{fit}"


WITHOUT_IMAGES_OF = {"val": "checkpoint selection and calibration never see it",  # a class with none in a split
                     "test": "its test figures cannot be measured"}


def warn_data_gaps(dataset, shots: int | None) -> None:
    """Before any encoding: one warning per class with no val or test image, or fewer training images than --shots."""
    for split, role in WITHOUT_IMAGES_OF.items():
        for name, count in zip(dataset.class_names, dataset.counts(split)):
            if count == 0:
                console.warn(f"class '{name}' has no {split} images: {role} (add images to its {split} folder, "
                             f"or remove {split}/ and vip carves one from train/)")
    if shots is None:
        return
    for name, count in zip(dataset.class_names, dataset.counts("train")):
        if count < shots:
            console.warn(f"--shots {shots}: class '{name}' has only {count} training "
                         f"{console.plural(count, 'image')}; {'it is' if count == 1 else f'all {count} are'} used "
                         f"(pass --shots {count} or fewer for equal classes)")


def warn_unreadable_shortfalls(dataset, shots: int | None, shortfalls: dict) -> None:
    """After decoding: classes left with fewer shots than asked because some of their images were unreadable."""
    if shots is None:
        return
    files = dict(zip(dataset.class_names, dataset.counts("train")))
    for name, count in shortfalls.items():
        if count < min(shots, files[name]):
            console.warn(f"--shots {shots}: class '{name}' has only {count} readable training "
                         f"{console.plural(count, 'image')}; used {count} "
                         "(the unreadable ones are listed below)")


def warn_unreadable_splits(dataset, data) -> None:
    """After decoding: one warning per class whose val or test images were all unreadable (a class with no
    such files was warned about before encoding, by warn_data_gaps); its figures leave it out silently else."""
    for split, role in WITHOUT_IMAGES_OF.items():
        readable = set(getattr(data, split).y.tolist())
        for index, (name, files) in enumerate(zip(dataset.class_names, dataset.counts(split))):
            if files and index not in readable:
                console.warn(f"class '{name}': none of its {files} {split} {console.plural(files, 'image')} could be "
                             f"read: {role} (the unreadable ones are listed below)")


def calibrate(val_logits, val_labels, test_logits, test_labels):
    """Fit the temperature and conformal scores on validation logits, score them on test; print warnings."""
    from vipcli.trust import calibrate_run

    calibrated = calibrate_run(val_logits, val_labels, test_logits, test_labels)
    for message in calibrated.warnings:
        console.warn(message)
    return calibrated


def write_train_run(run_dir, config, method, backbone, dataset, data, symptoms, schedule, metrics,
                    calibration=None) -> None:
    """Write the run directory: the method's tensors and everything predict needs to rebuild it."""
    from vipcli.checkpoint import write_run
    from vipcli.methods.backbone_guard import kept_by
    from vipcli.data import copies_record, left_out_record, relative_to_data
    from vipcli.methods import METHODS
    from vipcli.provenance import distribution_record
    from vipcli.registry import BACKBONES, copy_run_files, run_backbone_options

    root = Path(dataset.root)
    # path-like --arch/--pretrained stored absolute, small config files copied into the run
    options = run_backbone_options(config.backbone.id, config.backbone.arch, config.backbone.pretrained,
                                   getattr(backbone, "config_companions", ()))

    def relative(paths):
        return [relative_to_data(path, root) for path in paths]

    config_record = _jsonable(asdict(config))
    metadata = {
        "method": method.id, "method_settings": _jsonable(asdict(method.settings)), "method_state": kept_by(method, "record", method.record),
        "backbone": config.backbone.id, "arch": backbone.describe().get("arch", config.backbone.arch or ""),
        "arch_option": options.arch or "", "pretrained_option": options.pretrained or "",
        "pretrained": str(backbone.describe().get("pretrained", "")), "backbone_fingerprint": backbone.fingerprint(),
        "backbone_describe": backbone.describe(), "class_names": dataset.class_names, "symptoms": symptoms,
        "schedule": asdict(schedule), "config": config_record,
        "image_fit": config.encoding.image_fit,  # read by predict (`vipcli.image_fit.run_fit`; absent: crop)
        "method_distribution": distribution_record(METHODS, method.id),  # {name, version}: what to install
        "backbone_distribution": distribution_record(BACKBONES, config.backbone.id),
        **({"calibration": calibration.record()} if calibration else {}),  # temperature + conformal scores
    }
    split = {
        "root": str(root.resolve()), "class_names": dataset.class_names, "origin": dataset.origin,
        "seed": config.seed, "split_seed": split_seed(config), "shots": config.shots,
        # the labelled images the method learned from: none for a zero-shot one (it uses none of the one
        # image per class `encoding_plan` encodes)
        "train_subset": relative(data.train.paths) if method.uses_shots else [],
        **{name: [[p, s.label] for p, s in zip(relative([s.path for s in dataset.splits[name]]), dataset.splits[name])]
           for name in ("train", "val", "test")},
        "unreadable": dict(zip(relative(list(data.failures)), data.failures.values())),  # as the lists name files
        **left_out_record(dataset.left_out, relative),
        **copies_record(dataset, relative),  # images in two splits or classes, as warned
    }
    write_run(run_dir, kept_by(method, "state_tensors", method.state_tensors), metadata, split, metrics, force=config.force,
              extra=lambda staging: copy_run_files(options, staging))


def _jsonable(value):
    """Paths to strings, tuples to lists, recursively (what JSON and YAML can hold)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
