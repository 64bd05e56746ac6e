"""`vip benchmark` as a library: every method on the same seeded few-shot subsets and test set.

The dataset is loaded once and every image is encoded once per view through the shared feature
cache (all training images with their augmented views, val and test with the center view); each
(method, shots, seed) row then indexes those in-memory features, so a sweep of many rows costs one
encoder pass plus the text-side training of each row. After every finished row `results.json`,
`results.csv` and `summary.csv` are rewritten atomically, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.markup import escape

from vipcli import console, shell
from vipcli.data import (Dataset, carves_splits, check_data_folder, copies_record, few_shot_order, left_out_record,
                         load_dataset, relative_to_data)
from vipcli.devices import where_run
from vipcli.errors import UsageError, VipError
from vipcli.plugins import PluginError
from vipcli.atomic import write_atomic
from vipcli.features import decoding_digest
from vipcli.featuresets import FeatureSet, PreparedData
from vipcli.methods import DEFAULT_BENCHMARK
from vipcli.metrics import missed_rows_warning
from vipcli.provenance import installed_backbone, installed_method
from vipcli.results import BenchmarkResult
from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings
from vipcli.sweep_folder import (SWEEP_LOCK, check_matches, check_options_match, check_same_readability,
                                 content_digest, orders_to_carry, read_json, read_stored, refuse_foreign_files,
                                 relative_stored_name, save_results, split_digest, split_of_another_sweep, summarize,
                                 upgrade_split_digest, upgrade_stored_config, warn_other_versions)

DEFAULT_METHODS = DEFAULT_BENCHMARK
ZERO_SHOTS = 0  # the `shots` value of rows of methods that learn nothing


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything `vip benchmark` needs; defaults are the CLI's."""

    data: Path  # folder of class subfolders, optionally under train/ val/ test/
    methods: tuple[str, ...] = DEFAULT_METHODS  # method ids (see `vip methods list`); ("all",) for every one
    shots: tuple[int | None, ...] = (1, 2, 4, 8, 16)  # labelled images per class per row; None: all
    seeds: tuple[int, ...] = (1, 2, 3)  # seeds of the few-shot subsets, initialisation and batch order
    method_options: dict = field(default_factory=dict)  # settings applied to every method that has them
    backbone: BackboneSettings = BackboneSettings()
    encoding: EncodingSettings = EncodingSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    symptoms: tuple[str, ...] = ()  # pack files, {class: [symptoms]} files, folders or shipped names
    split_seed: int | None = None  # seed of any split vip makes (None: the stored run's, else the first seed)
    out: Path | None = None  # results folder (None: benchmarks/<data folder name>)
    force: bool = False  # discard stored rows in --out instead of resuming
    batched: bool = True  # train rows of one prompt method together (one text forward per step for all)
    keep_going: bool = False  # a row that fails is recorded (last_sweep.failed_rows) and the other rows run


# --- options and the sweep grid -----------------------------------------------------------


def default_out(data: Path) -> Path:
    """benchmarks/<data folder name>."""
    return Path("benchmarks") / Path(data).resolve().name


def shots_key(shots: int | None) -> int | str:
    """How a shots value is written in rows: the number, or "all"."""
    return "all" if shots is None else shots


def method_ids(config: BenchmarkConfig) -> list[str]:
    """The requested method ids, `all` expanded to every installed method that loads (`installed_methods`)."""
    ids = []
    for name in config.methods:
        ids.extend(installed_methods()[0] if name == "all" else [name])
    return list(dict.fromkeys(ids))


def installed_methods() -> tuple[list[str], dict[str, str]]:
    """(the installed method ids that load, {id: why not} for the others): what `--methods all` runs. A broken
    plugin (a failed import, not a Method, an id two distributions register) is left out, as `vip methods list`
    marks it, rather than refusing the whole sweep; naming it in `--methods` still fails with its reason."""
    from vipcli.methods import list_methods

    infos = [info for info in list_methods() if not info.shadowed]  # a built-in id: its built-in is listed too
    return [info.id for info in infos if not info.problem], {info.id: info.problem for info in infos if info.problem}


def warn_left_out(config: BenchmarkConfig) -> None:
    """One warning per installed method that `--methods all` leaves out because it cannot load."""
    from vipcli.distributed import world_from_env

    if "all" not in config.methods or not world_from_env().main:
        return
    for name, problem in installed_methods()[1].items():
        console.warn(escape(f"{problem}; '{name}' is left out of --methods all"))


def validate(config: BenchmarkConfig, left_out: dict | None = None) -> tuple[list[tuple[str, type]], frozenset[str]]:
    """Check the option values (before anything is loaded or written); return the (id, method class) pairs to run,
    and the ids of those whose rows train together (each plugin's `fits_in_batches()` asked once, here; none
    without `config.batched`). `left_out` gets a `failed_plugin_record` of each plugin of `--methods all` left out."""
    from vipcli.methods import make_settings, method_class
    from vipcli.methods.base import settings_fields
    from vipcli.methods.contract import trains_batched
    from vipcli.packs import check_sources_exist

    if not config.methods or not config.seeds or not config.shots:
        raise UsageError("--methods, --shots and --seeds each need at least one value")
    if any(s is not None and s < 1 for s in config.shots):
        raise UsageError(f"--shots values must be positive numbers or 'all', got {list(config.shots)}")
    config.encoding.validate()
    config.encoding.cache_root()  # a cache folder every user can write: refused before the backbone loads
    for shots in config.shots:  # --schedule/--epochs/--batch-size/--lr: refused before split.json is written
        config.schedule.resolve(shots)
    warn_left_out(config)
    methods = [(name, method_class(name)) for name in method_ids(config)]
    config.backbone.check()  # a misspelt --backbone, --device or --symptoms: before the data is listed and hashed
    check_sources_exist(config.symptoms)
    optional = optional_methods(config, [name for name, _ in methods])
    together = set()
    for name, cls in list(methods):
        try:
            make_settings(cls, options_for(cls, config.method_options), name)
            if config.batched and trains_batched(cls, name):  # a plugin's failure is known before any work
                together.add(name)
        except PluginError as error:  # its Settings or fits_in_batches() failed: the plugin's fault, not the options'
            if name not in optional:
                raise
            warn_plugin_left_out(name, error)
            methods.remove((name, cls))
            if left_out is not None:
                left_out[name] = failed_plugin_record(error, "its settings, before any row")
    from vipcli.train import warn_unused_schedule

    warn_unused_schedule(config.schedule, methods)
    known = {key.replace("-", "_") for _, cls in methods for key in settings_fields(cls.Settings)}
    unknown = [key for key in config.method_options if key.replace("-", "_") not in known]
    if unknown:
        raise UsageError(f"no benchmarked method has the setting '{unknown[0].replace('_', '-')}'",  # as typed
                         "`vip methods show ID` lists a method's settings")
    return methods, frozenset(together)


def options_for(cls, options: dict) -> dict:
    """The shared method options that `cls` has a setting for."""
    from vipcli.methods.base import settings_fields

    fields = settings_fields(cls.Settings)
    return {k: v for k, v in options.items() if k.replace("-", "_") in fields}


def sweep_jobs(methods: list[tuple[str, type]], shots: tuple, seeds: tuple) -> list[tuple[str, type, int | str, int]]:
    """(id, class, shots key, seed) for every row; methods that use no shots get one row per seed at 0 shots."""
    jobs = [(name, cls, ZERO_SHOTS, seed) for name, cls in methods if not cls.uses_shots
            for seed in dict.fromkeys(seeds)]
    for k in dict.fromkeys(shots):
        jobs += [(name, cls, shots_key(k), seed) for name, cls in methods if cls.uses_shots
                 for seed in dict.fromkeys(seeds)]
    return jobs


def row_key(row: dict) -> tuple[str, str, int]:
    """Identity of a row: (method, shots as text, seed)."""
    return row["method"], str(row["shots"]), int(row["seed"])


# --- features -----------------------------------------------------------------------------


def encode_pool(backbone, dataset: Dataset, shots: tuple, seeds: tuple, views: int, center: bool, cache,
                workers: int, batch_size: int, progress=None) -> PreparedData:
    """Encode what the sweep uses, once: the few-shot subsets of every seed (with `views` augmented
    views, and the center view if `center`), and val and test (center view).

    Only the union of the subsets is encoded: per seed and class, the first K readable images of its
    seeded order, K the largest shots value (every training image when a shots value is 'all').
    """
    from vipcli.decoding import DecodingWorkers
    from vipcli.features import encode_images
    from vipcli.featuresets import check_enough, encode_all, encode_union, feature_set, unopened_note

    train = dataset.splits["train"]
    largest = None if any(s is None for s in shots) else max(shots)
    orders = [few_shot_order(train, len(dataset.class_names), s) for s in dict.fromkeys(seeds)]
    total = (len(train) if largest is None else min(len(train), largest * len(dataset.class_names) * len(orders)))
    images = total + len(dataset.splits["val"]) + len(dataset.splits["test"])
    with console.task(progress, "encoding images", images) as advance, DecodingWorkers(workers, images) as shared:
        encode_kwargs = {"batch_size": batch_size, "workers": workers, "shared": shared}  # one set of workers
        if largest is None:  # every training image: the pool is the features' own block, not a stacked copy
            pool_train, failures, encoded_views = encode_all(backbone, train, views, cache, encode_kwargs, advance,
                                                             center)
            unopened = 0
        else:
            readable, failures, encoded_views = encode_union(  # path -> (center [D] | None, views [V, D])
                backbone, train, orders, largest, views, cache, encode_kwargs, advance, center)
            unopened = len(train) - len(readable) - len(failures) if largest != ZERO_SHOTS else 0
            members = [s for s in train if str(s.path) in readable]
            x = [readable[str(s.path)][0] for s in members]
            pool_train = FeatureSet(
                torch.stack(x) if members and all(v is not None for v in x) else torch.empty(len(members), 0),
                torch.tensor([s.label for s in members], dtype=torch.long), [str(s.path) for s in members],
                torch.stack([readable[str(s.path)][1] for s in members]) if members else None)  # [N, V, D]
        parts = {}
        for name in ("val", "test"):
            samples = dataset.splits[name]
            encoded = encode_images(backbone, [s.path for s in samples], 0, cache, advance=advance, **encode_kwargs)
            failures.update({str(p): r for p, r in encoded.failures.items()})
            encoded_views += encoded.encoded
            parts[name] = feature_set(encoded, samples, with_views=False)
    console.warn_skipped(failures, dataset.root)
    if failures and unopened:
        console.info(unopened_note(unopened, largest, len(orders)))
    pool = PreparedData(pool_train, parts["val"], parts["test"], failures, encoded_views)
    check_enough(pool, dataset, train_required=largest != ZERO_SHOTS)  # a zero-shot-only sweep encodes none
    if len(pool.test.y) == 0:
        raise VipError("no readable test images", "add images to test/ or let vip split train")
    return pool


def readable_order(pool: PreparedData, dataset: Dataset, seed: int) -> list[list[int]]:
    """Per class, rows of `pool.train` in the seeded few-shot order (unreadable images left out)."""
    row_of = {path: i for i, path in enumerate(pool.train.paths)}
    ordered = few_shot_order(dataset.splits["train"], len(dataset.class_names), seed)
    return [[row_of[str(s.path)] for s in members if str(s.path) in row_of] for members in ordered]


def select_subset(pool: PreparedData, order: list[list[int]], shots: int | None):
    """The K-shot training FeatureSet: per class the first K readable images of the seeded order.

    A subset of every image of the pool in the pool's order (shots 'all' on data listed class by class) is the
    pool's own tensors, not a copy of them: a fit that changes them in place is refused (`checked_fit`).
    Returns:
        (FeatureSet with x [N, D], views [N, V, D], y [N]; images used per class)
    """
    chosen = [rows if shots is None else rows[:shots] for rows in order]
    index = sorted((i for rows in chosen for i in rows), key=lambda i: (int(pool.train.y[i]), pool.train.paths[i]))
    counts = [len(rows_c) for rows_c in chosen]
    if index == list(range(len(pool.train.paths))):  # every image, in the pool's order ('all'): its tensors, no copy
        return FeatureSet(pool.train.x, pool.train.y, list(pool.train.paths), pool.train.views), counts
    rows = torch.tensor(index, dtype=torch.long)
    views = None if pool.train.views is None else pool.train.views[rows]  # None: a zero-shot-only pool
    subset = FeatureSet(pool.train.x[rows], pool.train.y[rows], [pool.train.paths[i] for i in index], views)
    return subset, counts


def warn_capped_shots(shots: tuple, counts: list[int], class_names: list[str], files: list[int] | None = None) -> None:
    """One warning per (shots value, class) with fewer training images than asked.

    Args:
        counts: training images per class: the files (before encoding), or the readable ones (after).
        files: with readable `counts`, the files per class: only the classes that unreadable images left
            short are warned about then (the others were, before encoding).
    """
    kind = "training" if files is None else "readable training"
    for k in dict.fromkeys(s for s in shots if s is not None):
        for name, count, found in zip(class_names, counts, files or counts):
            if count < k and (files is None or count < found):
                console.warn(f"--shots {k}: class '{name}' has only {count} {kind} "
                             f"{console.plural(count, 'image')}; capped to {count} (see shots_used in results)")


# --- one row ------------------------------------------------------------------------------


def run_row(method_id: str, cls, shots: int | str, seed: int, context: dict, progress=None) -> dict:
    """Build, fit and evaluate one (method, shots, seed) on the pooled features; return its row."""
    started = time.perf_counter()
    row = _build_row(method_id, cls, shots, seed, context, progress)
    from vipcli.methods.contract import checked_fit

    fitted = checked_fit(row["method"], row["data"], row["fit_context"])
    return _finish_row(row, fitted, context, time.perf_counter() - started)


def run_rows_together(method_id: str, cls, jobs: list[tuple], context: dict, progress=None) -> list[dict]:
    """Fit several (shots, seed) rows of one method in one batched loop (`fit_sgd_many`).

    Each row is built, seeded and evaluated exactly as `run_row` builds it; only the text tower
    runs once per step over every row's prompts. Each row's `fit_s` is its share of the group's time.
    """
    from vipcli.fitting import fit_sgd_many
    from vipcli.methods.backbone_guard import check_kept, keep_since_fit, state_if_watched
    from vipcli.methods.contract import check_on_device, check_splits_unchanged, split_versions
    from vipcli.methods.device_probe import check_placeholders_replaced

    started = time.perf_counter()
    built = [_build_row(method_id, cls, shots, seed, context, progress) for shots, seed in jobs]
    before = [split_versions(b["data"]) for b in built]
    backbone = state_if_watched(built[0]["method"], whole=True)  # the rows share it; every byte, around a fit
    fitted = fit_sgd_many([b["method"] for b in built], [b["data"] for b in built],
                          [b["fit_context"] for b in built], progress, batchable=True)  # rows grouped by its answer
    after = check_kept(built[0]["method"], "fit", backbone, f"its {len(built)} rows of the sweep, trained together,")
    keep_since_fit(built[-1]["method"], after)  # compared after the last row's evaluation: all the rows' members
    for b, versions in zip(built, before):  # as `checked_fit` refuses it for a row run alone
        check_splits_unchanged(b["method"], b["data"], versions)
        check_on_device(b["method"], "fit")
        check_placeholders_replaced(b["method"])
    share = (time.perf_counter() - started) / len(built)
    return [_finish_row(b, f, context, share) for b, f in zip(built, fitted)]


def _build_row(method_id: str, cls, shots: int | str, seed: int, context: dict, progress=None) -> dict:
    """The method (seeded initialisation), K-shot data and fit context of one row."""
    from vipcli.fitting import seed_global_generators
    from vipcli.methods import FitContext, MethodSetup, build_method

    config, pool, names = context["config"], context["pool"], context["class_names"]
    k = None if shots == "all" else int(shots)  # 0 for methods that use no shots: an empty subset
    subset, used = select_subset(pool, readable_order(pool, context["dataset"], seed), k)
    schedule = config.schedule.resolve(k)
    seed_global_generators(seed)  # the row's draws, a plugin's from NumPy or `random` too, whatever ran before it
    setup = MethodSetup(context["backbone"], names, context["symptoms"])
    method = build_method(method_id, setup, options_for(cls, config.method_options))
    return {"method_id": method_id, "cls": cls, "shots": shots, "seed": seed, "used": used, "subset": subset,
            "schedule": schedule, "method": method, "data": PreparedData(subset, pool.val, pool.test),
            "fit_context": FitContext(schedule, seed, progress)}


def _finish_row(row: dict, fitted: dict, context: dict, fit_seconds: float) -> dict:
    """Evaluate a fitted row's method on val and test; the row as stored."""
    from vipcli.fitting import evaluate
    from vipcli.methods.backbone_guard import check_kept_since_fit

    pool, names, cls, method = context["pool"], context["class_names"], row["cls"], row["method"]
    started = time.perf_counter()
    val = evaluate(method, pool.val, len(names), context["device"])
    test = evaluate(method, pool.test, len(names), context["device"], names)  # with its test against chance
    fit_seconds += time.perf_counter() - started
    check_batch_once(row["method_id"], method, context)  # after evaluate's own checks (NaN logits); not timed
    check_kept_since_fit(method)  # every byte of the shared backbone as fit left it, before the row is kept
    schedule = row["schedule"]
    epochs = schedule.epochs if cls.trains and cls.uses_schedule else getattr(method.settings, "epochs", 0)
    return {
        "method": row["method_id"], "shots": row["shots"], "seed": row["seed"], "shots_used": min(row["used"]),
        "n_train": len(row["subset"].y), "epochs": epochs if cls.trains else 0, "best_epoch": fitted.get("best_epoch"),
        **{f"val_{k}": val[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auroc")},
        **{f"test_{k}": test[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auroc")},
        "test_confusion_matrix": test["confusion_matrix"], "test_vs_chance": test["vs_chance"],
        "fit_s": round(fit_seconds, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        **where_run(context["device"]),  # device, machine: a resumed sweep's rows may come from several
        "method_distribution": installed_method(row["method_id"]),  # {name, version}: which code made this row
    }


def check_batch_once(method_id: str, method, context: dict) -> None:
    """The first evaluated row of each plugin method in a sweep: refuse one whose predictions for an image depend on
    the other images of its batch (`check_batch_independence`, as `vip train` refuses it), before any of its
    figures is written: the sweep evaluates thousands of images a call, `vip predict` 64. Once per method and
    sweep (a few ms); vip's own methods are covered by its tests."""
    from vipcli.methods.contract import check_batch_independence, distribution_of_method
    from vipcli.plugins import is_own_distribution

    checked = context.setdefault("batch_checked", set())
    if method_id in checked:
        return
    checked.add(method_id)
    pool = context["pool"]
    sample = pool.val.x if len(pool.val.x) else pool.test.x  # [n, D], as `vip train` checks
    if len(sample) and not is_own_distribution(distribution_of_method(method_id)):
        check_batch_independence(method, sample, context["device"])


# --- the whole sweep ----------------------------------------------------------------------


def config_record(config: BenchmarkConfig, backbone, dataset: Dataset, split_seed: int, symptoms: dict,
                  content: str | None = None, methods: list[str] | None = None) -> dict:
    """The settings stored with the results and matched on resume (plus the sweep's lists, informative).

    `content`: the images' `content_digest` (computed here when not given); `methods`: the ids the sweep runs
    (default: `method_ids(config)`), without the plugins `--methods all` left out at their first build.
    """
    every_path = [sample.path for samples in dataset.splits.values() for sample in samples]
    options = option_record(config)
    return {
        "data": options["data"], "backbone": options["backbone"], "arch": options["arch"],
        "pretrained": options["pretrained"], "backbone_fingerprint": backbone.fingerprint(),
        "backbone_describe": backbone.describe(), "backbone_distribution": installed_backbone(config.backbone.id),
        **{key: options[key] for key in ("views", "image_fit", "schedule", "epochs", "batch_size", "lr",
                                         "method_options")},
        "split_seed": split_seed, "split_digest": split_digest(dataset),
        "content_digest": content or content_digest(dataset), "decoding": decoding_digest(every_path),
        "symptoms": symptoms,
        "last_sweep": {"methods": method_ids(config) if methods is None else methods,
                       "shots": [shots_key(s) for s in config.shots], "seeds": list(config.seeds)},
    }


def option_record(config: BenchmarkConfig) -> dict:
    """The stored settings that the options alone give (`OPTION_KEYS`), as `config_record` records them."""
    return {"data": str(Path(config.data).resolve()), "backbone": config.backbone.id, "arch": config.backbone.arch,
            "pretrained": config.backbone.pretrained, "views": config.encoding.views,
            "image_fit": config.encoding.image_fit, "schedule": config.schedule.name, "epochs": config.schedule.epochs,
            "batch_size": config.schedule.batch_size, "lr": config.schedule.lr,
            "method_options": {k.replace("-", "_"): v for k, v in config.method_options.items()}}


SCHEDULE_SETTINGS = ("schedule", "epochs", "batch_size", "lr")  # --schedule, --epochs, --batch-size, --lr


def settings_no_row_uses(method_names) -> frozenset[str]:
    """The stored settings that no row of the methods `method_names` (those of the stored rows and of the sweep)
    can depend on, so that a resume may differ in them: `views` where no method uses the labelled images (whose
    augmented views they are), the schedule's where none follows the run's schedule, `symptoms` where each
    declares that no symptom can change it (`uses_symptoms = False`, as `symptoms_matter` trusts it). A method that
    cannot be looked up (a plugin uninstalled since) may use all."""
    from vipcli.methods import fitting_without_schedule, method_class, symptoms_matter

    try:
        classes = [(name, method_class(name)) for name in dict.fromkeys(method_names)]
    except VipError:
        return frozenset()
    unused = set()
    if not any(cls.uses_shots for _, cls in classes):
        unused.add("views")
    if all(fitting_without_schedule(cls, name) is not None for name, cls in classes):
        unused.update(SCHEDULE_SETTINGS)
    if not any(symptoms_matter(cls) for _, cls in classes):
        unused.add("symptoms")
    return frozenset(unused)


def _split_record(dataset: Dataset, pool: PreparedData, split_seed: int, seeds, shots, stored: dict | None,
                  results_digest: str | None = None) -> dict:
    """split.json: every split's files, and per seed the few-shot order (first K per class = K shots);
    `stored` is the sweep's split.json, `results_digest` the split digest of the results.json it resumes
    (None: begun afresh), recorded so that a later resume can tell the two were written together."""
    root = Path(dataset.root)

    def relative(path) -> str:
        return relative_to_data(path, root)

    largest = None if any(s is None for s in shots) else max(shots)
    orders = dict((stored or {}).get("few_shot_order", {}))
    for seed in seeds:
        order = readable_order(pool, dataset, seed)
        kept = orders.get(str(seed)) if isinstance(orders.get(str(seed)), dict) else {}
        # a resume with fewer shots keeps the longer order its stored rows trained on (one readable order)
        orders[str(seed)] = {name: max([relative(pool.train.paths[i]) for i in rows[:largest]],
                                       list(kept.get(name) or []), key=len)
                             for name, rows in zip(dataset.class_names, order)}
    return {
        "root": str(root.resolve()), "class_names": dataset.class_names, "origin": dataset.origin,
        "split_seed": split_seed,
        "results_split_digest": results_digest,  # results.json's when this was written (`upgrade_split_digest`)
        **{name: [[relative(s.path), s.label] for s in dataset.splits[name]] for name in ("train", "val", "test")},
        "few_shot_order": orders,  # files of earlier runs that were not read again now stay listed
        "unreadable": {**{relative_stored_name(path, root): reason for path, reason in (stored or {}).get("unreadable",
                                                                                                  {}).items()},
                       **{relative(path): reason for path, reason in pool.failures.items()}},
        **left_out_record(dataset.left_out, lambda paths: [relative(path) for path in paths]),
        **copies_record(dataset, lambda paths: [relative(path) for path in paths]),  # as warned
    }


def sweep_split_seed(config: BenchmarkConfig, stored_seed: int | None, carves: bool | None) -> int:
    """The seed of the splits vip carves from train/: `--split-seed`, else the stored sweep's, else the first seed.
    Where the data has its own val/ and test/ (`carves` False) a given --split-seed seeds nothing, so a resume keeps
    the stored one: resuming with another is not a change of settings."""
    if carves is False and stored_seed is not None:
        return stored_seed
    for seed in (config.split_seed, stored_seed):
        if seed is not None:
            return seed
    return config.seeds[0]


def _prepare(config: BenchmarkConfig, methods: list[tuple[str, type]], left_out: dict) -> dict:
    """Load everything the rows share, checking a stored sweep matches before writing anything."""
    from vipcli import distributed

    out = Path(config.out) if config.out else default_out(config.data)
    refuse_foreign_files(out, "choose an empty or new --out folder")
    stored = None if config.force else read_stored(out)
    unused = settings_no_row_uses([str(row.get("method")) for row in (stored or {}).get("rows", [])]
                                  + [name for name, _ in methods])  # a resume may differ in these
    stored_seed = (stored or {}).get("config", {}).get("split_seed")
    carves = carves_splits(config.data) if Path(config.data).is_dir() else None  # None: load_dataset says why not
    split_seed = sweep_split_seed(config, stored_seed, carves)
    if stored is not None:  # options that differ: refused before the data is read or the backbone loaded
        options = {**option_record(config), **({"split_seed": split_seed} if carves else {})}  # a carved split's seed
        check_options_match(upgrade_stored_config(stored), options, out, unused)
    check_data_folder(config.data)  # a missing --data is named before weights a connected machine would download
    config.backbone.check_weights()  # weights offline: after the usage errors and a resume's, before the data is read
    from vipcli.train import warn_split_seed_of_own_splits

    world = distributed.world_from_env()  # torchrun: every rank encodes its share, rank 0 runs the rows (#13)
    warn_split_seed_of_own_splits(config.split_seed, config.data, carves is not False, warn=world.main)
    dataset = load_dataset(config.data, seed=split_seed,  # zero-shot methods alone: {val,test}/ without train/ too
                           train_optional=not any(cls.uses_shots for _, cls in methods))
    from vipcli.packs import packs_for_run, symptoms_of

    symptoms = symptoms_of(packs_for_run(dataset.class_names, list(config.symptoms),
                                         required=any(cls.needs_symptoms for _, cls in methods), data=config.data))
    distributed.check_shared_cache(world, config.encoding.use_cache)
    device = distributed.rank_device(config.backbone.device, world)
    backbone = config.backbone.load(device)
    stored_content = (stored or {}).get("config", {}).get("content_digest")
    content = None if world.main or not stored_content else stored_content  # only rank 0 reads every image's bytes
    unbuilt: dict[str, Exception] = {}  # --keep-going: the methods whose first build failed, with why
    methods = check_prompts(methods, backbone, dataset.class_names, symptoms, config, world.main, left_out, unbuilt,
                            (out, len((stored or {}).get("rows", []))))
    optional = optional_methods(config, [name for name, _ in methods])  # left out, not fatal, if they fail later
    record = config_record(config, backbone, dataset, split_seed, symptoms, content, [name for name, _ in methods])
    if left_out:  # the plugins --methods all left out before any row: why they have no rows
        record["last_sweep"]["left_out"] = dict(left_out)
    stored_split = read_json(out / "split.json") if stored is not None else None  # read once per sweep
    rewrite_split = False
    if stored is not None:
        check_matches(upgrade_split_digest(upgrade_stored_config(stored), dataset, stored_split), record, out, unused)
        record["symptoms"] = symptoms or stored["config"].get("symptoms") or {}
        rewrite_split = split_of_another_sweep(stored_split, dataset)  # neither trusted nor merged: written anew
        stored_split = None if rewrite_split else stored_split
    return {"config": config, "out": out, "stored": stored, "stored_split": stored_split, "dataset": dataset,
            "symptoms": symptoms, "world": world, "device": device, "backbone": backbone, "record": record,
            "class_names": dataset.class_names, "rewrite_split": rewrite_split, "methods": methods,
            "optional": optional, "left_out": set(), "batch_checked": set(), "failed_rows": [], "unbuilt": unbuilt}


def check_prompts(methods, backbone, class_names, symptoms, config: BenchmarkConfig, warn: bool = True,
                  left_out: dict | None = None, unbuilt: dict | None = None,
                  resume: tuple[Path, int] | None = None) -> list:
    """Build each method once, so a prompt too long for the text tower, or a plugin whose `__init__` fails, fails
    before any image is encoded; return the (id, class) pairs the sweep runs.

    A third-party plugin that `--methods all` brought in (not named in --methods too) and that fails this build is
    left out, with one warning (if `warn`) naming it, its distribution and the reason, as `all` leaves out one that
    cannot load; `left_out` gets a `failed_plugin_record` of each plugin left out. Any other method that fails it
    fails its own rows with `--keep-going` (`config.keep_going`): it stays in the sweep, and `unbuilt` gets its
    error (`record_unbuilt_rows` records its rows as failed); without the flag the sweep stops, its one line naming
    --keep-going and, with `resume` (the results folder, the rows stored in it), what is kept. A build that left
    the shared backbone changed stops the sweep whatever the flag: the other methods would run on it.
    """
    from vipcli.methods import MethodSetup, build_method
    from vipcli.methods.backbone_guard import backbone_state, left_changed

    setup = MethodSetup(backbone, class_names, symptoms)
    optional = optional_methods(config, [name for name, _ in methods])
    kept = backbone_state(backbone) if optional or config.keep_going else None
    built = []
    for name, cls in methods:
        try:
            build_method(name, setup, options_for(cls, config.method_options))
        except Exception as error:  # noqa: BLE001 - left out, recorded or stopping, as below
            if left_changed(error, kept):  # the others would run on the changed backbone
                raise
            if name in optional and isinstance(error, VipError):
                if warn:
                    warn_plugin_left_out(name, error)
                if left_out is not None:
                    left_out[name] = failed_plugin_record(error, "its first build, before any row")
                continue
            if config.keep_going and unbuilt is not None:
                unbuilt[name] = error
            else:
                stop = known_error(error, f"while building {name} for its rows")
                raise (with_resume_hint(stop, *resume) if resume else stop) from error
        built.append((name, cls))
    return built


def record_unbuilt_rows(jobs: list[tuple], context: dict) -> None:
    """Record the pending (name, cls, shots, seed) `jobs` of the methods whose first build failed (`--keep-going`,
    `context["unbuilt"]`) as failed, before any image is encoded: each method's rows with its error, one warning per
    method (`record_failed_rows`); the same command builds them again."""
    for name, error in context["unbuilt"].items():
        group = [job for job in jobs if job[0] == name]
        if group:
            record_failed_rows(known_error(error, f"while building {name} for its rows"), context, group,
                               f"{name}'s {rows_named(group)}")


def warn_plugin_left_out(name: str, error: VipError, kept: str = "") -> None:
    """One warning: `error` (secrets masked), and that the plugin `name` is left out of --methods all (`kept`: what
    of it stays, in a few words)."""
    from vipcli.plugins import known_secrets
    from vipcli.symptoms.llm import redact

    console.warn(escape(f"{redact(str(error), known_secrets())}; '{name}' is left out of --methods all"
                        + (f" ({kept})" if kept else "")))


def optional_methods(config: BenchmarkConfig, names: list[str]) -> set[str]:
    """The ids among `names` that only `--methods all` brought in and that are not vip's own: third-party plugins
    a sweep of `all` may leave out when they fail to build."""
    from vipcli.methods import METHODS
    from vipcli.plugins import is_own_distribution

    if "all" not in config.methods:
        return set()
    return {name for name in names
            if name not in config.methods and not is_own_distribution(METHODS.distribution(name))}


def run_benchmark(config: BenchmarkConfig, progress=None) -> BenchmarkResult:
    """Train and evaluate every (method, shots, seed) on shared features; resume a stored sweep.

    Args:
        config: the sweep's settings.
        progress: an optional rich Progress for long steps.
    Returns:
        BenchmarkResult with the requested grid's rows, their summary and what was skipped.
    """
    from vipcli.plugins import scans_held

    with scans_held():  # the installed plugins are read once for the whole sweep, not at each of its lookups
        return _checked_sweep(config, progress)


def _checked_sweep(config: BenchmarkConfig, progress=None) -> BenchmarkResult:
    """`run_benchmark` inside `scans_held`: check the options and the output folder, then run the sweep."""
    from vipcli.preflight import check_output_folder, check_outside_data

    left_out: dict[str, dict] = {}  # plugins --methods all leaves out, with why (results.json's last_sweep)
    methods, together = validate(config, left_out)
    out = Path(config.out or default_out(config.data))
    check_output_folder(out)  # writable and not full, before any work
    check_outside_data(out, Path(config.data), "--out" if config.out else "the default results folder")
    from vipcli.cache_use import using_cache

    # a second sweep into --out is refused at its lock; --no-cache: no weights digest or check pass kept
    with sweep_lock(out), console.keeping_warnings() as warned, using_cache(config.encoding.use_cache):
        result = _run_sweep(config, methods, together, progress, left_out)
    if result is not None:  # None on a torchrun rank other than 0
        result.warnings = warned
    return result


@contextlib.contextmanager
def sweep_lock(out: Path):
    """Hold the lock of a sweep's `out` folder (`OUT/.vip-benchmark.lock`) for the block, in the process
    that writes results.json (rank 0 under torchrun); while another process holds it, one VipError.

    Two sweeps into one folder each rewrite results.json from the rows they hold, so without it the
    last to write silently dropped the other's rows. The lock lies inside the folder, so a sweep needs
    no more than the folder itself to be writable (a mount point will do); folders the sweep created
    (`out` and its missing parents) are removed again if the sweep stops before writing anything into them.
    """
    from vipcli import distributed
    from vipcli.atomic import made_folder
    from vipcli.locks import output_lock

    if not distributed.world_from_env().main:
        yield
        return
    with made_folder(out), output_lock(out, lock=out / SWEEP_LOCK):
        yield


def _run_sweep(config: BenchmarkConfig, methods: list[tuple[str, type]], together: frozenset[str],
               progress=None, left_out: dict | None = None) -> BenchmarkResult:
    """`run_benchmark` once `out` is held: prepare, encode, run the pending rows (those of the methods in
    `together` in batched groups), write the results."""
    context = _prepare(config, methods, {} if left_out is None else left_out)
    methods = context["methods"]  # less any plugin `--methods all` left out when it failed to build
    out, stored, stored_split, dataset = context["out"], context["stored"], context["stored_split"], context["dataset"]
    rows = {row_key(r): r for r in (stored or {}).get("rows", [])}
    jobs = sweep_jobs(methods, config.shots, config.seeds)
    pending = [job for job in jobs if (job[0], str(job[2]), job[3]) not in rows]
    if context["world"].main:
        console.info(sweep_plan(config, methods, jobs, dataset, context["backbone"], context["device"], out))
        carved = dataset.carved_line()
        if carved:
            console.info(carved)
    if len(pending) < len(jobs) and context["world"].main:  # under torchrun every rank reads the stored rows
        console.info(f"resuming {out}: {len(jobs) - len(pending)} finished rows skipped, {len(pending)} to run")
    if context["world"].main:
        warn_other_versions(list(rows.values()), [job[0] for job in pending], out)
    result = BenchmarkResult(out, dataset.class_names, [], [], context["record"], len(jobs) - len(pending))
    record_unbuilt_rows(pending, context)  # --keep-going: the rows of methods whose first build failed, failed now
    to_run = [job for job in pending if job[0] not in context["unbuilt"]]
    # the rows whose images are encoded: those to run, or every row when split.json must be written anew
    basis = to_run or (jobs if context["rewrite_split"] else [])
    run = {"command": "benchmark", "out": os.path.abspath(out), "rows": f"{len(pending)} of {len(jobs)}"}
    if not basis:  # under torchrun, every rank still checks with rank 0 that there is nothing to run
        from vipcli.distributed import agree_without_encoding

        agree_without_encoding(context["world"], run)
    if basis:
        trained_shots = tuple(dict.fromkeys(None if job[2] == "all" else job[2] for job in basis
                                            if job[2] != ZERO_SHOTS))
        shots = trained_shots or (ZERO_SHOTS,)  # zero-shot rows alone: no training image is encoded
        center = any(cls.needs_center_view for _, cls, _, _ in basis)
        from vipcli.distributed import encode_shared, training_jobs
        from vipcli.methods.backbone_guard import backbone_state
        from vipcli.preflight import check_decoding_memory, check_feature_memory
        from vipcli.train import warn_data_gaps, warn_unreadable_splits

        if context["world"].main:  # before any image is encoded, as `vip train` warns
            warn_data_gaps(dataset, None)  # a class with no val or test image
            warn_capped_shots(trained_shots, dataset.counts("train"), dataset.class_names)
        largest = None if any(k is None for k in shots) else max(shots)
        encode_jobs = training_jobs(dataset, largest, config.seeds, config.encoding.views, center)
        check_feature_memory(encode_jobs, context["backbone"].embed_dim, config.encoding.views)
        check_decoding_memory(context["backbone"], config.encoding, config.encoding.views)
        if not encode_shared(context["backbone"], context["world"], encode_jobs, config.encoding.cache(
                context["backbone"]), config.encoding.batch_size, config.encoding.workers, progress, run=run):
            return None  # not rank 0 under torchrun: its share of the features is in the cache (#13)
        pool = encode_pool(context["backbone"], dataset, shots, config.seeds, config.encoding.views, center,
                           config.encoding.cache(context["backbone"]), config.encoding.workers,
                           config.encoding.batch_size, progress)
        context["pool"] = pool
        context["pool_versions"] = pool_versions(pool)  # a failed row that changed them stops the sweep
        context["backbone_state"] = backbone_state(context["backbone"])  # and one that changed the backbone
        context["batched"] = together
        result.encoded_views, result.failures = pool.encoded_views, pool.failures
        warn_capped_shots(trained_shots, [len(rows) for rows in readable_order(pool, dataset, config.seeds[0])],
                          dataset.class_names, dataset.counts("train"))  # only shots some pending row trains with
        warn_unreadable_splits(dataset, pool)  # a class none of whose val or test images could be read
        check_same_readability(stored_split, pool, dataset.root, out)  # before any row: rows of one set of images
        out.mkdir(parents=True, exist_ok=True)
        if config.force:  # the figure and report of the rows --force discards: the figure is drawn anew at the end
            for shown in ("shots.png", "report.html"):
                (out / shown).unlink(missing_ok=True)
        split = _split_record(dataset, pool, context["record"]["split_seed"], config.seeds, config.shots,
                              stored_split, (stored or {}).get("config", {}).get("split_digest"))
        carried = orders_to_carry(read_json(out / "split.json"), dataset, split["split_seed"],
                                  config.seeds) if config.force else {}
        write_atomic(out / "split.json", json.dumps(
            {**split, "few_shot_order": {**split["few_shot_order"], **carried}}, indent=2))
        context["split_after_first_row"] = split if carried else None  # the old rows, and their orders, go then
        result.trained = run_pending(to_run, rows, context, progress)
    if context["failed_rows"] and not to_run and context["world"].main:  # every row to run failed to build
        save_results(out, context["record"], context["class_names"], in_sweep_order(rows, pending))
    result.rows = [rows[(name, str(shots), seed)] for name, _, shots, seed in jobs  # a left-out plugin, a failed row
                   if (name, str(shots), seed) in rows]  # (--keep-going): the finished rows only
    result.failed_rows = list(context["failed_rows"])
    result.summary = summarize(result.rows)
    missed = missed_rows_warning(result.rows, dataset.class_names)
    if missed and context["world"].main:
        console.warn(escape(missed))  # the class names are the user's
    if context["world"].main:
        warn_rows_at_chance(result.rows, context)
    if not pending and rows and context["world"].main:  # all resumed: rewrite results.csv, summary.csv (and .json)
        save_results(out, context["record"], context["class_names"], list(rows.values()))  # in case one was damaged
        if stored_split is None and not context["rewrite_split"]:  # not rewritten: nothing ran
            console.warn(escape(f"{out / 'split.json'} is missing or unreadable: it lists the images behind these "
                                "results (pass --force to run the sweep again and rewrite it)"))
    if result.trained and context["world"].main and (out / "report.html").is_file():
        console.warn(escape(f"{out / 'report.html'} does not show the {console.counted(result.trained, 'row')} run "
                            f"now (run `{shell.command('vip', 'report', out)}` to redraw it)"))
    if result.rows and context["world"].main:  # one writer under torchrun
        from vipcli.plots import benchmark_title, plot_shots

        # every stored row, as results.json, summary.csv and `vip report` hold them: a sweep extended by one
        # cell keeps the whole figure; titled with the data and the backbone
        plot_shots(in_sweep_order(rows, pending), out / "shots.png", title=benchmark_title(context["record"]),
                   class_names=context["class_names"])
    return result


def warn_rows_at_chance(rows: list[dict], context: dict) -> None:
    """One warning naming the rows whose test images do not show that their model beats chance
    (`chance_rows_warning`), as `vip train` warns of such a run; none when the backbone has random weights, which
    its load has already warned of."""
    from vipcli.chance import chance_rows_warning
    from vipcli.report.notices import random_weights

    if random_weights(context["record"]):
        return
    backbone = context["backbone"]
    warning = chance_rows_warning(rows, str(getattr(backbone, "image_domain", "") or ""), context["config"].backbone.id)
    if warning:
        console.warn(escape(warning))  # method ids of plugins are not vip's


def sweep_plan(config: BenchmarkConfig, methods: list[tuple[str, type]], jobs: list, dataset: Dataset, backbone,
               device, out: Path) -> str:
    """The first line of `vip benchmark`, as `vip train` opens with its plan: the rows (methods x shots x seeds),
    the classes, the backbone and device, and where the results go."""
    shots, seeds = list(dict.fromkeys(config.shots)), list(dict.fromkeys(config.seeds))
    learning = [name for name, cls in methods if cls.uses_shots]
    zero_shot = [name for name, cls in methods if not cls.uses_shots]
    grid = (f"{console.counted(len(learning), 'method')} ({', '.join(learning)}) x "
            f"{console.counted(len(shots), 'shot count')} ({', '.join(str(shots_key(k)) for k in shots)}) x "
            f"{console.counted(len(seeds), 'seed')} ({', '.join(map(str, seeds))})" if learning else "")
    zero = (f"{console.counted(len(zero_shot), 'zero-shot method')} ({', '.join(zero_shot)}) once per seed"
            if zero_shot else "")
    from vipcli.train import backbone_plan

    return (f"benchmark of {console.counted(len(jobs), 'row')}: {', and '.join(part for part in (grid, zero) if part)}"
            f"; {len(dataset.class_names)} classes ({', '.join(dataset.class_names)}); "
            f"{backbone_plan(config, backbone, device)}; results in {console.printable(out)}")


def in_sweep_order(rows: dict, jobs: list) -> list[dict]:
    """The rows to store, whatever order they finished in: those of no job in `jobs` (the rows stored
    before this run, in their stored order) first, then those of `jobs` (the rows this run trains) in
    its order, so that results.json is the same file whether rows trained together or one after another,
    and a rerun of part of a sweep, with nothing to train, leaves its rows where they were."""
    keys = [(name, str(shots), seed) for name, _, shots, seed in jobs]
    current = set(keys)
    return [row for key, row in rows.items() if key not in current] + [rows[key] for key in keys if key in rows]


def run_pending(pending: list, rows: dict, context: dict, progress=None) -> int:
    """Run each pending row, saving all rows atomically after each row or batched group; return how many ran.

    Rows of one method that can train together (`PromptMethod.fits_in_batches`: the seeds and
    shot counts of ViP, CoOp...) run as groups of up to `BATCHED_ROWS` in one batched loop (`context["batched"]`:
    the ids of such methods, as `validate` found them, or True to ask each class, False for none); every other
    row runs alone, in sweep order. The rows stored before
    keep their places; those run now follow them in sweep order, see `in_sweep_order`.
    """
    batched = context.get("batched", True)
    ran = 0
    with console.task(progress, "benchmark rows", len(pending)) as advance:
        for group in row_groups(pending, batched):
            name = group[0][0]
            if name in context.setdefault("left_out", set()):  # failed in an earlier row: its other rows are not run
                advance(len(group))
                continue
            finished = run_or_settle(group, context, progress, len(rows))
            ran += len(finished)
            for row in finished:
                rows[row_key(row)] = row
            if not finished:  # failed: left out or recorded (--keep-going)
                if rows or context["failed_rows"]:  # last_sweep says why these rows are missing
                    save_results(context["out"], context["record"], context["class_names"],
                                 in_sweep_order(rows, pending))
                advance(len(group))
                continue
            save_results(context["out"], context["record"], context["class_names"], in_sweep_order(rows, pending))
            if context.get("split_after_first_row") is not None:  # --force: the orders carried over go too
                write_atomic(context["out"] / "split.json", json.dumps(context.pop("split_after_first_row"), indent=2))
            advance(len(group))
    return ran


def run_group(group: list[tuple], context: dict, progress=None) -> list[dict]:
    """The finished rows of one of `row_groups`' groups: a row alone (`run_row`), or rows of one method
    trained together (`run_rows_together`)."""
    name, cls = group[0][0], group[0][1]
    if len(group) == 1:
        return [run_row(name, cls, group[0][2], group[0][3], context, progress)]
    return run_rows_together(name, cls, [(shots, seed) for _, _, shots, seed in group], context, progress)


def run_or_settle(group: list[tuple], context: dict, progress=None, kept: int = 0) -> list[dict]:
    """The finished rows of `group` (`run_group`); after a failure, none: it is settled by `settle_failed_group`
    (left out, recorded as failed, or raised). With `--keep-going`, rows that failed trained together run again one
    by one (`retries_alone`), so that one row's failure does not record the others of its group as failed."""
    name = group[0][0]
    try:
        return run_group(group, context, progress)
    except Exception as error:  # noqa: BLE001 - a row's failure: left out, recorded or stopping, as below
        if not retries_alone(group, error, context):
            settle_failed_group(name, error, context, group, kept)  # or raise: see its docstring
            return []
        console.warn(escape(f"{one_line_error(error)}; {name}'s {group_label(group).removeprefix('its ')} failed: "
                            "running them one by one (--keep-going)"))
    return [row for job in group for row in run_or_settle([job], context, progress, kept)]


def retries_alone(group: list[tuple], error: Exception, context: dict) -> bool:
    """Whether the rows of `group`, which failed trained together with `error`, run again one by one: with
    `--keep-going`, for a group of several rows of a method the sweep keeps (not one that `--methods all` leaves
    out), whose failure left the features and the backbone the rows share as they were."""
    return (len(group) > 1 and context["config"].keep_going and not left_out_on_failure(group[0][0], error, context)
            and not changed_what_rows_share(error, context))


def changed_what_rows_share(error: Exception, context: dict) -> bool:
    """Whether the failure `error` left the pooled features changed in place or the shared backbone changed: the
    other rows would be computed on them, so the sweep stops whatever --keep-going says."""
    from vipcli.methods.backbone_guard import left_changed

    return pool_versions(context["pool"]) != context.get("pool_versions") \
        or left_changed(error, context.get("backbone_state"))


def left_out_on_failure(name: str, error: Exception, context: dict) -> bool:
    """Whether method `name`, failing with `error`, is one that only `--methods all` brought in (a third-party
    plugin, `context["optional"]`) and whose VipError leaves it out of the sweep (`leave_out_failed`)."""
    return name in context.get("optional", ()) and isinstance(error, VipError)


def settle_failed_group(name: str, error: Exception, context: dict, group: list[tuple], kept: int = 0) -> None:
    """After `error` in the rows of `group` (of method `name`; `kept` rows stored so far): a plugin that only `--methods all` brought in is
    left out (`leave_out_failed`); with `--keep-going` the rows are recorded as failed (`record_failed_rows`) and
    the sweep goes on; otherwise the sweep stops, its one line saying that the finished rows are kept and naming
    `--keep-going`. A failure that changed the features or the backbone every row shares stops it whatever the
    flag: the other rows would be computed on them."""
    if changed_what_rows_share(error, context):
        raise error
    if left_out_on_failure(name, error, context):
        leave_out_failed(name, error, context, group)
    elif context["config"].keep_going:
        record_failed_rows(error, context, group)
    else:
        raise with_resume_hint(known_error(error, f"in {name} {group_label(group)}"), context["out"], kept) from error


def record_failed_rows(error: Exception, context: dict, group: list[tuple], said: str = "") -> None:
    """Record each (name, cls, shots, seed) row of `group` as failed in `last_sweep.failed_rows` (method, shots,
    seed and the error in one line), with one warning naming them (`said`: the rows in words, if not those of a
    group of `row_groups`): the sweep goes on without them, and a rerun of the same command runs them again, as
    they are not among the stored rows."""
    message = one_line_error(error)
    failed = [{"method": name, "shots": shots, "seed": seed, "error": message} for name, _, shots, seed in group]
    context["failed_rows"].extend(failed)
    context["record"]["last_sweep"]["failed_rows"] = list(context["failed_rows"])
    rows = said or (f"{group[0][0]} {group_label(group)}" if len(group) == 1
                    else f"{group[0][0]}'s {group_label(group).removeprefix('its ')}")
    if getattr(context.get("world"), "main", True):  # under torchrun, rank 0 says it
        console.warn(escape(f"{message}; {rows} {'is' if len(group) == 1 else 'are'} recorded as failed, and the "
                            "sweep goes on (--keep-going)"))


def one_line_error(error: Exception) -> str:
    """`error` as results.json records a failed row's: a VipError's message (a GPU out of memory as the CLI says
    it), another exception as "Type: message", on one line, secrets masked."""
    from vipcli.devices import out_of_memory
    from vipcli.plugins import known_secrets
    from vipcli.symptoms.llm import redact

    error = out_of_memory(error) or error
    text = error.message if isinstance(error, VipError) else f"{type(error).__name__}: {error}"
    return redact(" ".join(str(text).split()), known_secrets())


def known_error(error: Exception, where: str) -> VipError:
    """`error`, raised `where` (e.g. "in coop its 2 rows trained together (...)", "while building coop for its
    rows"), as the VipError that stops the sweep or fails its rows: a VipError as it is, a GPU out of memory as the
    CLI says it, any other exception (vip's own code: plugins' are PluginErrors) as the bug it is, naming where."""
    from vipcli.devices import out_of_memory

    if isinstance(error, VipError):
        return error
    return out_of_memory(error) or VipError(
        f"unexpected {one_line_error(error)} {where}",
        "this is a bug in vip; rerun with VIP_DEBUG=1 and report the traceback")


def with_resume_hint(error: VipError, out: Path, kept: int) -> VipError:
    """`error`, its hint ending with what stopping the sweep kept and how to go on: the `kept` finished rows stay in
    `out`, the same command resumes it, `--keep-going` runs the other rows."""
    going = "add --keep-going to record the rows that fail and run the others"
    said = (f"the rows finished before it are kept in {out / 'results.json'}: run the same command again to resume, "
            f"or {going}" if kept else f"no row had finished before it; {going}")
    error.hint = f"{error.hint}; {said}" if error.hint else said
    return error


def leave_out_failed(name: str, error: VipError, context: dict, group: list[tuple] = ()) -> None:
    """After `error` in a row of method `name` (in `group`, the rows run together): leave the method's remaining
    rows out of the sweep with one warning, when only `--methods all` brought it in (a third-party plugin,
    `context["optional"]`), as `check_prompts` leaves out one whose first build fails; its finished rows stay, and
    it leaves the sweep's recorded methods (`last_sweep`) for its `left_out`, which says where and why it failed.
    Raise `error` for a built-in or a method named in --methods, and for any method whose failure left the pooled
    features changed in place or the shared backbone changed (the other methods' rows would see them)."""
    if not left_out_on_failure(name, error, context) or changed_what_rows_share(error, context):
        raise error
    context.setdefault("left_out", set()).add(name)
    sweep = context["record"]["last_sweep"]
    sweep["methods"] = [method for method in sweep["methods"] if method != name]
    sweep.setdefault("left_out", {})[name] = failed_plugin_record(error, group_label(group))
    warn_plugin_left_out(name, error, "the rows it finished are kept")


def failed_plugin_record(error: VipError, failed_in: str) -> dict:
    """What results.json's `last_sweep.left_out` keeps of a plugin that `--methods all` left out: where it
    failed (`failed_in`: its rows, or a step before any row) and the error (secrets masked), so that `vip report`
    and a reader of the file learn why the method has no rows, or fewer than the others."""
    from vipcli.plugins import known_secrets
    from vipcli.symptoms.llm import redact

    return {"failed_in": failed_in, "error": redact(getattr(error, "message", str(error)), known_secrets())}


def group_label(group: list[tuple]) -> str:
    """The (name, cls, shots, seed) rows of one of `row_groups`' groups in words: "1-shot seed 2", or "its 3 rows
    trained together (1-shot seed 1, 1-shot seed 2, 2-shot seed 1)"."""
    labels = [row_label(shots, seed) for _, _, shots, seed in group]
    return labels[0] if len(labels) == 1 else f"its {len(labels)} rows trained together ({', '.join(labels)})"


def rows_named(group: list[tuple]) -> str:
    """Rows of one method in words, however they run: "1-shot seed 2 row", "2 rows (1-shot seed 1, 1-shot seed 2)"."""
    labels = [row_label(shots, seed) for _, _, shots, seed in group]
    return f"{labels[0]} row" if len(labels) == 1 else f"{len(labels)} rows ({', '.join(labels)})"


def row_label(shots, seed) -> str:
    """A row as the report names it: "1-shot seed 2", or "seed 2" for a method that uses no shots."""
    return f"seed {seed}" if str(shots) == str(ZERO_SHOTS) else f"{shots}-shot seed {seed}"


def failed_row_name(row: dict) -> str:
    """A failed row (`last_sweep.failed_rows`) as the tables and the report name it: "vip 4-shot seed 2", "zeroshot
    seed 1"."""
    return f"{row['method']} {row_label(row['shots'], row['seed'])}"


def pool_versions(pool: PreparedData) -> dict[str, int | None]:
    """The version counters of every tensor of the pooled features (train, val, test), which torch bumps on an
    in-place change: a failed row that changed them leaves nothing the other rows could honestly use."""
    from vipcli.methods.contract import tensor_version

    return {f"{split}.{member}": tensor_version(getattr(getattr(pool, split), member, None))
            for split in ("train", "val", "test") for member in ("views", "x", "y")}


BATCHED_ROWS = 16  # the most rows of one method trained together (bounds the stacked prompts' memory)


def row_groups(pending: list, batched: bool | Collection[str] = True) -> list[list[tuple]]:
    """Pending (name, cls, shots, seed) jobs grouped for `run_pending`: batchable rows of one method
    together (in chunks of `BATCHED_ROWS`), every other row alone; groups in sweep order of first row.

    `batched`: the ids of the methods whose rows train together (what `validate` found, asking each plugin's
    `fits_in_batches()` once, where its failure leaves it out of `--methods all`); True asks each class here
    (once a method), False trains every row alone."""
    from vipcli.methods.contract import trains_batched

    answers: dict[str, bool] = {}

    def fits_together(name: str, cls) -> bool:
        if not isinstance(batched, bool):
            return name in batched
        if batched and name not in answers:
            answers[name] = trains_batched(cls, name)
        return batched and answers[name]

    groups: list[list[tuple]] = []
    open_group: dict[str, list] = {}
    for job in pending:
        name, cls = job[0], job[1]
        fits = fits_together(name, cls)
        group = open_group.get(name) if fits else None
        if group is None or len(group) >= BATCHED_ROWS:
            group = []
            groups.append(group)
            if fits:
                open_group[name] = group
        group.append(job)
    return groups

