"""`vip benchmark` as a library: every method on the same seeded few-shot subsets and test set.

The dataset is loaded once and every image is encoded once per view through the shared feature
cache (all training images with their augmented views, val and test with the center view); each
(method, shots, seed) row then indexes those in-memory features, so a sweep of many rows costs one
encoder pass plus the text-side training of each row. After every finished row `results.json` and
`results.csv` are rewritten atomically, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from vipcli import console
from vipcli.data import Dataset, few_shot_order, load_dataset
from vipcli.errors import UsageError, VipError
from vipcli.featuresets import FeatureSet, PreparedData
from vipcli.methods import MethodSpec, get_method

RESULTS_FORMAT = "vip-benchmark"
RESULTS_VERSION = 1
DEFAULT_METHODS = ("zeroshot", "symptom-zeroshot", "linear-probe", "coop", "vip")
ZERO_SHOTS = 0  # the `shots` value of rows of methods that learn nothing
ROW_FIELDS = (
    "method", "shots", "seed", "shots_used", "n_train", "epochs", "best_epoch", "val_accuracy", "val_macro_f1",
    "val_auroc", "test_accuracy", "test_macro_f1", "test_auroc", "test_confusion_matrix", "fit_s", "finished_at",
)
OWN_FILES = {"results.json", "results.csv", "split.json", "shots.png", "speed.json"}  # what --out may hold
MATCHED_KEYS = ("data", "backbone", "arch", "pretrained", "backbone_fingerprint", "views", "schedule", "epochs",
                "batch_size", "lr", "n_ctx", "split_seed", "split_digest")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything `vip benchmark` needs; defaults are the CLI's."""

    data: Path  # folder of class subfolders, optionally under train/ val/ test/
    methods: tuple[str, ...] = DEFAULT_METHODS  # names from vipcli.methods.METHODS
    shots: tuple[int | None, ...] = (1, 2, 4, 8, 16)  # labelled images per class per row; None: all
    seeds: tuple[int, ...] = (1, 2, 3)  # seeds of the few-shot subsets, initialisation and batch order
    backbone: str = "clip"  # backbone plugin id
    arch: str | None = None  # architecture for the plugin (None: its default)
    pretrained: str | None = None  # weights for the plugin (None: its default; "none": random)
    symptoms: tuple[str, ...] = ()  # pack files, {class: [symptoms]} files, folders or shipped names
    schedule: str = "auto"  # auto (fewshot for K shots, paper for all), fewshot or paper
    epochs: int | None = None  # override the schedule's epochs
    batch_size: int | None = None  # override the schedule's batch size
    lr: float | None = None  # override the schedule's learning rate
    n_ctx: int = 4  # M, learned context vectors of the methods that learn context
    views: int = 8  # augmented views encoded (and cached) per training image
    split_seed: int | None = None  # seed of any split vip makes (None: the stored run's, else the first seed)
    out: Path | None = None  # results folder (None: benchmarks/<data folder name>)
    force: bool = False  # discard stored rows in --out instead of resuming
    device: str = "auto"  # auto, cpu, cuda, mps
    cache_dir: Path | None = None  # feature cache root (None: $VIP_CACHE_DIR or the user cache)
    workers: int = 2  # image-decoding worker processes
    batch_size_encode: int = 64  # images per image-encoder call


@dataclass
class BenchmarkResult:
    """What a finished `run_benchmark` returns."""

    out: Path  # the results folder
    class_names: list[str]  # logit order
    rows: list[dict]  # the requested grid's rows (stored ones included), in sweep order
    summary: list[dict]  # summarize(rows)
    config: dict  # the stored, matched configuration
    skipped: int = 0  # rows found finished in --out and not run again
    trained: int = 0  # rows run now
    encoded_views: int = 0  # views that went through the image encoder now (0 on a warm cache)
    failures: dict[str, str] = field(default_factory=dict)  # unreadable file -> reason
    warnings: list[str] = field(default_factory=list)  # shot caps and the like, also printed on stderr


# --- options and the sweep grid -----------------------------------------------------------


def default_out(data: Path) -> Path:
    """benchmarks/<data folder name>."""
    return Path("benchmarks") / Path(data).resolve().name


def shots_key(shots: int | None) -> int | str:
    """How a shots value is written in rows: the number, or "all"."""
    return "all" if shots is None else shots


def validate(config: BenchmarkConfig) -> list[MethodSpec]:
    """Check the option values (before anything is loaded or written); return the method specs."""
    if not config.methods or not config.seeds or not config.shots:
        raise UsageError("--methods, --shots and --seeds each need at least one value")
    specs = [get_method(name) for name in dict.fromkeys(config.methods)]
    if any(s is not None and s < 1 for s in config.shots):
        raise UsageError(f"--shots values must be positive numbers or 'all', got {list(config.shots)}")
    if config.views < 1 or config.n_ctx < 1:
        raise UsageError("--views and --n-ctx must be at least 1")
    if config.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {config.workers}")
    return specs


def sweep_jobs(specs: list[MethodSpec], shots: tuple, seeds: tuple) -> list[tuple[MethodSpec, int | str, int]]:
    """(spec, shots key, seed) for every row; methods that learn nothing get one row per seed at 0 shots."""
    jobs = [(spec, ZERO_SHOTS, seed) for spec in specs if not spec.trainable for seed in dict.fromkeys(seeds)]
    for k in dict.fromkeys(shots):
        jobs += [(spec, shots_key(k), seed) for spec in specs if spec.trainable for seed in dict.fromkeys(seeds)]
    return jobs


def row_key(row: dict) -> tuple[str, str, int]:
    """Identity of a row: (method, shots as text, seed)."""
    return row["method"], str(row["shots"]), int(row["seed"])


# --- the stored results -------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file in the same folder and a rename."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.chmod(temp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_stored(out: Path) -> dict | None:
    """The results.json of an earlier sweep in `out` (None if there is none)."""
    path = out / "results.json"
    if not path.is_file():
        foreign = _foreign_files(out)
        if foreign:
            raise VipError(f"--out {out} holds files of something else ({', '.join(foreign[:3])})",
                           "choose an empty or new --out folder")
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VipError(f"{path} is unreadable ({error})", "pass --force to start this benchmark over") from None
    if stored.get("format") != RESULTS_FORMAT or not isinstance(stored.get("rows"), list):
        raise VipError(f"{path} is not a vip benchmark results file", "pass --force or choose another --out")
    return stored


def _foreign_files(out: Path) -> list[str]:
    """Names in `out` that a benchmark did not write (temp files of an interrupted write excepted)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in OWN_FILES and not p.name.startswith("."))


def check_matches(stored: dict, current: dict, out: Path) -> None:
    """Refuse to mix rows made with other data, backbone, views or schedule overrides."""
    before = stored.get("config", {})
    differ = [key for key in MATCHED_KEYS if before.get(key) != current.get(key)]
    old, new = before.get("symptoms") or {}, current.get("symptoms") or {}
    if old and new and old != new:
        differ.append("symptoms")
    if differ:
        detail = "; ".join(f"{k}: stored {before.get(k)!r}, now {current.get(k)!r}" for k in differ if k != "symptoms")
        raise VipError(f"{out}/results.json was made with other settings ({detail or 'symptoms differ'})",
                       "rerun with the stored settings to resume, pass --force to start over, or choose another --out")


def results_csv(rows: list[dict]) -> str:
    """One CSV line per row, ROW_FIELDS as columns (the confusion matrix as JSON text)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "test_confusion_matrix": json.dumps(row.get("test_confusion_matrix"))})
    return buffer.getvalue()


def save_results(out: Path, config: dict, class_names: list[str], rows: list[dict]) -> None:
    """Rewrite results.json and results.csv atomically (every stored row, with the summary)."""
    document = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "config": config, "class_names": class_names,
                "rows": rows, "summary": summarize(rows)}
    write_atomic(out / "results.json", json.dumps(document, indent=2))
    write_atomic(out / "results.csv", results_csv(rows))


# --- summary ------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return round(statistics.fmean(values), 2), round(std, 2)


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample std (n-1) over seeds of test accuracy and macro-F1, per (method, shots).

    Returns:
        [{method, shots, seeds, accuracy_mean, accuracy_std, macro_f1_mean, macro_f1_std}] in row order.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], str(row["shots"])), []).append(row)
    summary = []
    for members in groups.values():
        accuracy = _mean_std([r["test_accuracy"] for r in members])
        f1 = _mean_std([r["test_macro_f1"] for r in members])
        summary.append({"method": members[0]["method"], "shots": members[0]["shots"],
                        "seeds": sorted(int(r["seed"]) for r in members), "accuracy_mean": accuracy[0],
                        "accuracy_std": accuracy[1], "macro_f1_mean": f1[0], "macro_f1_std": f1[1]})
    return summary


# --- features -----------------------------------------------------------------------------


def encode_pool(backbone, dataset: Dataset, views: int, cache, seed: int, workers: int, batch_size: int,
                progress=None) -> PreparedData:
    """Encode all training images (center + `views` augmented views) and val/test (center) once.

    The result is the pool every (method, shots, seed) row draws its few-shot subset from.
    """
    from vipcli.features import encode_images
    from vipcli.featuresets import check_enough, feature_set

    splits, parts, failures, encoded_views = dataset.splits, {}, {}, 0
    total = sum(len(splits[name]) for name in ("train", "val", "test"))
    with console.task(progress, "encoding images", total) as advance:
        for name in ("train", "val", "test"):
            encoded = encode_images(backbone, [s.path for s in splits[name]], views if name == "train" else 0, cache,
                                    batch_size, workers, seed=seed, advance=advance)
            failures.update({str(p): r for p, r in encoded.failures.items()})
            encoded_views += encoded.encoded
            parts[name] = feature_set(encoded, splits[name], with_views=name == "train")
    console.warn_skipped(failures)
    pool = PreparedData(parts["train"], parts["val"], parts["test"], failures, encoded_views)
    check_enough(pool, dataset)
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

    Returns:
        (FeatureSet with x [N, D], views [N, V, D], y [N]; images used per class)
    """
    chosen = [rows if shots is None else rows[:shots] for rows in order]
    index = sorted((i for rows in chosen for i in rows), key=lambda i: (int(pool.train.y[i]), pool.train.paths[i]))
    rows = torch.tensor(index, dtype=torch.long)
    subset = FeatureSet(pool.train.x[rows], pool.train.y[rows], [pool.train.paths[i] for i in index],
                        pool.train.views[rows])
    return subset, [len(rows_c) for rows_c in chosen]


def warn_capped_shots(shots: tuple, order: list[list[int]], class_names: list[str]) -> list[str]:
    """One warning per (shots value, class) with fewer readable training images than asked."""
    messages = []
    for k in dict.fromkeys(s for s in shots if s is not None):
        for name, rows in zip(class_names, order):
            if len(rows) < k:
                messages.append(f"--shots {k}: class '{name}' has only {len(rows)} readable training images; "
                                f"capped to {len(rows)} (see shots_used in results)")
    for message in messages:
        console.warn(message)
    return messages


# --- one row ------------------------------------------------------------------------------


def run_row(spec: MethodSpec, shots: int | str, seed: int, context: dict, progress=None) -> dict:
    """Build, fit and evaluate one (method, shots, seed) on the pooled features; return its row."""
    from vipcli.methods import build_classifier
    from vipcli.schedule import resolve_schedule
    from vipcli.fitting import evaluate, fit

    config, pool, names = context["config"], context["pool"], context["class_names"]
    k = None if shots == "all" else int(shots)  # 0 for methods that learn nothing: an empty subset
    subset, used = select_subset(pool, readable_order(pool, context["dataset"], seed), k)
    schedule = resolve_schedule(config.schedule, k, config.epochs, config.batch_size, config.lr)
    started = time.perf_counter()
    torch.manual_seed(seed)
    classifier = build_classifier(spec, context["backbone"], names, context["symptoms"], config.n_ctx)
    data = PreparedData(subset, pool.val, pool.test)
    fitted = fit(spec, classifier, data, schedule, seed, context["device"], progress=progress)
    val = evaluate(classifier, pool.val, len(names), context["device"])
    test = evaluate(classifier, pool.test, len(names), context["device"])
    return {
        "method": spec.name, "shots": shots, "seed": seed, "shots_used": min(used), "n_train": len(subset.y),
        "epochs": schedule.epochs if spec.trainable and not spec.linear else 0, "best_epoch": fitted.get("best_epoch"),
        **{f"val_{k}": val[k] for k in ("accuracy", "macro_f1", "auroc")},
        **{f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "auroc")},
        "test_confusion_matrix": test["confusion_matrix"], "fit_s": round(time.perf_counter() - started, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


# --- the whole sweep ----------------------------------------------------------------------


def split_digest(dataset: Dataset) -> str:
    """A short digest of the exact files and labels of every split."""
    blob = json.dumps({name: [[str(s.path), s.label] for s in samples] for name, samples in dataset.splits.items()})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_record(config: BenchmarkConfig, backbone, dataset: Dataset, split_seed: int, symptoms: dict) -> dict:
    """The settings stored with the results and matched on resume (plus the sweep's lists, informative)."""
    return {
        "data": str(Path(config.data).resolve()), "backbone": config.backbone, "arch": config.arch,
        "pretrained": config.pretrained, "backbone_fingerprint": backbone.fingerprint(),
        "backbone_describe": backbone.describe(), "views": config.views, "schedule": config.schedule,
        "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr, "n_ctx": config.n_ctx,
        "split_seed": split_seed, "split_digest": split_digest(dataset), "symptoms": symptoms,
        "last_sweep": {"methods": list(config.methods), "shots": [shots_key(s) for s in config.shots],
                       "seeds": list(config.seeds)},
    }


def _split_record(dataset: Dataset, pool: PreparedData, split_seed: int, seeds, shots, stored: dict | None) -> dict:
    """split.json: every split's files, and per seed the few-shot order (first K per class = K shots)."""
    root = Path(dataset.root)

    def relative(path) -> str:
        return str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else str(path)

    largest = None if any(s is None for s in shots) else max(shots)
    orders = dict((stored or {}).get("few_shot_order", {}))
    for seed in seeds:
        order = readable_order(pool, dataset, seed)
        orders[str(seed)] = {name: [relative(pool.train.paths[i]) for i in rows[:largest]]
                             for name, rows in zip(dataset.class_names, order)}
    return {
        "root": str(root.resolve()), "class_names": dataset.class_names, "origin": dataset.origin,
        "split_seed": split_seed,
        **{name: [[relative(s.path), s.label] for s in dataset.splits[name]] for name in ("train", "val", "test")},
        "few_shot_order": orders, "unreadable": pool.failures,
    }


def _load_symptoms(specs: list[MethodSpec], class_names: list[str], sources) -> dict:
    """Symptoms per class: required when a symptom method is asked for, recorded when available."""
    from vipcli.packs import symptoms_for_classes

    if any(spec.prompts == "symptoms" for spec in specs):
        return symptoms_for_classes(class_names, list(sources))
    try:
        return symptoms_for_classes(class_names, list(sources))
    except VipError:
        return {}


def _prepare(config: BenchmarkConfig, specs: list[MethodSpec]) -> dict:
    """Load everything the rows share, checking a stored sweep matches before writing anything."""
    from vipcli.devices import resolve_device
    from vipcli.prompts import check_method_prompts
    from vipcli.registry import load_backbone

    out = Path(config.out) if config.out else default_out(config.data)
    stored = None if config.force else read_stored(out)
    split_seed = config.split_seed
    if split_seed is None:
        split_seed = (stored or {}).get("config", {}).get("split_seed")
    if split_seed is None:
        split_seed = config.seeds[0]
    dataset = load_dataset(config.data, seed=split_seed)
    symptoms = _load_symptoms(specs, dataset.class_names, config.symptoms)
    device = resolve_device(config.device)
    backbone = load_backbone(config.backbone, config.arch, config.pretrained, device)
    record = config_record(config, backbone, dataset, split_seed, symptoms)
    for spec in specs:  # a symptom too long for the text tower fails before any image is encoded (#14)
        check_method_prompts(spec, backbone, dataset.class_names, symptoms, config.n_ctx)
    if stored is not None:
        check_matches(stored, record, out)
        record["symptoms"] = symptoms or stored["config"].get("symptoms") or {}
    return {"config": config, "out": out, "stored": stored, "dataset": dataset, "symptoms": symptoms,
            "device": device, "backbone": backbone, "record": record, "class_names": dataset.class_names}


def run_benchmark(config: BenchmarkConfig, progress=None) -> BenchmarkResult:
    """Train and evaluate every (method, shots, seed) on shared features; resume a stored sweep.

    Args:
        config: the sweep's settings.
        progress: an optional rich Progress for long steps.
    Returns:
        BenchmarkResult with the requested grid's rows, their summary and what was skipped.
    """
    from vipcli.features import FeatureCache, default_cache_dir
    from vipcli.preflight import check_output_folder

    specs = validate(config)
    check_output_folder(config.out or default_out(config.data))  # writable and not full, before any work (#14)
    context = _prepare(config, specs)
    out, stored, dataset = context["out"], context["stored"], context["dataset"]
    rows = {row_key(r): r for r in (stored or {}).get("rows", [])}
    jobs = sweep_jobs(specs, config.shots, config.seeds)
    pending = [job for job in jobs if (job[0].name, str(job[1]), job[2]) not in rows]
    if len(pending) < len(jobs):
        console.info(f"resuming {out}: {len(jobs) - len(pending)} finished rows skipped, {len(pending)} to run")
    result = BenchmarkResult(out, dataset.class_names, [], [], context["record"], len(jobs) - len(pending))
    if pending:
        cache = FeatureCache(config.cache_dir or default_cache_dir(), context["backbone"])
        pool = encode_pool(context["backbone"], dataset, config.views, cache, context["record"]["split_seed"],
                           config.workers, config.batch_size_encode, progress)
        context["pool"] = pool
        result.encoded_views, result.failures = pool.encoded_views, pool.failures
        result.warnings = warn_capped_shots(config.shots, readable_order(pool, dataset, config.seeds[0]),
                                            dataset.class_names)
        out.mkdir(parents=True, exist_ok=True)
        split = _split_record(dataset, pool, context["record"]["split_seed"], config.seeds, config.shots,
                              _read_json(out / "split.json") if stored else None)
        write_atomic(out / "split.json", json.dumps(split, indent=2))
        result.trained = run_pending(pending, rows, context, progress)
    result.rows = [rows[(spec.name, str(shots), seed)] for spec, shots, seed in jobs]
    result.summary = summarize(result.rows)
    if result.rows:
        from vipcli.plots import plot_shots

        plot_shots(result.rows, out / "shots.png", [shots_key(s) for s in dict.fromkeys(config.shots)])
    return result


def run_pending(pending: list, rows: dict, context: dict, progress=None) -> int:
    """Run each pending row, saving all rows atomically after each one; return how many ran."""
    with console.task(progress, "benchmark rows", len(pending)) as advance:
        for spec, shots, seed in pending:
            row = run_row(spec, shots, seed, context, progress)
            rows[row_key(row)] = row
            save_results(context["out"], context["record"], context["class_names"], list(rows.values()))
            advance()
    return len(pending)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
