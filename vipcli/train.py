"""`vip train` as a library: data -> frozen features -> learned prompts -> run directory."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vipcli import console
from vipcli.data import Dataset, load_dataset
from vipcli.errors import VipError
from vipcli.features import FeatureCache, default_cache_dir, iterate_fresh_features
from vipcli.featuresets import PreparedData, prepare_features
from vipcli.fitting import evaluate, fit
from vipcli.methods import MethodSpec, build_classifier, class_prompts, get_method
from vipcli.schedule import Schedule, resolve_schedule


@dataclass(frozen=True)
class TrainConfig:
    """Everything `vip train` needs; defaults are the CLI's."""

    data: Path  # folder of class subfolders, optionally under train/ val/ test/
    shots: int | None = 16  # labelled training images per class; None uses all
    method: str = "vip"  # vip, vip-cop-only, vip-mep-only, coop, zeroshot, symptom-zeroshot, linear-probe
    backbone: str = "clip"  # backbone plugin id
    arch: str | None = None  # architecture for the plugin (None: its default)
    pretrained: str | None = None  # weights for the plugin (None: its default; "none": random)
    symptoms: tuple[str, ...] = ()  # pack files, {class: [symptoms]} files, folders or shipped names
    schedule: str = "auto"  # auto (fewshot with --shots N, paper with all), fewshot or paper
    epochs: int | None = None  # override the schedule's epochs
    batch_size: int | None = None  # override the schedule's batch size
    lr: float | None = None  # override the schedule's learning rate
    n_ctx: int = 4  # M, learned context vectors
    class_specific_context: bool = False  # one context per class instead of one shared
    views: int = 8  # augmented views encoded (and cached) per training image
    seed: int = 1  # seeds the split, the few-shot subset, initialisation and batches
    out: Path | None = None  # run directory (None: runs/<data>-<method>-<shots>shot-seed<seed>)
    force: bool = False  # replace an existing --out
    device: str = "auto"  # auto, cpu, cuda, mps
    reference: bool = False  # re-encode every image every epoch with full-length text (authors' way)
    cache_dir: Path | None = None  # feature cache root (None: $VIP_CACHE_DIR or the user cache)
    use_cache: bool = True  # keep encoded features on disk between runs
    workers: int = 2  # image-decoding worker processes
    batch_size_encode: int = 64  # images per image-encoder call


@dataclass
class TrainResult:
    """What a finished `train` returns."""

    run_dir: Path
    metrics: dict  # "val", "test", "best_epoch", "history", "timings"
    failures: dict[str, str]  # unreadable file -> reason
    class_names: list[str]
    schedule: Schedule | None


# --- features -----------------------------------------------------------------------------


def default_run_dir(config: TrainConfig) -> Path:
    """runs/<data>-<method>-<shots>shot-seed<seed>, numbered -2, -3... if taken."""
    shots = "all" if config.shots is None else f"{config.shots}shot"
    base = Path("runs") / f"{Path(config.data).resolve().name}-{config.method}-{shots}-seed{config.seed}"
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def _reference_batches(backbone, dataset: Dataset, data: PreparedData, schedule, seed, workers, batch_size):
    """The authors' loop: every epoch decodes and encodes every train and val image again."""
    val = [s for s in dataset.splits["val"] if str(s.path) in set(data.val.paths)]

    def batches(epoch: int, train: bool):
        paths, labels = (data.train.paths, data.train.y.tolist()) if train else ([str(s.path) for s in val],
                                                                                 [s.label for s in val])
        size = schedule.batch_size if train else batch_size
        return iterate_fresh_features(backbone, paths, labels, train, size, workers, seed * 1000 + epoch)

    return batches


def _validate(config: TrainConfig, spec: MethodSpec) -> None:
    from vipcli.errors import UsageError

    if config.shots is not None and config.shots < 1:
        raise UsageError(f"--shots must be a positive number or 'all', got {config.shots}")
    if config.n_ctx < 0 or config.views < 1:
        raise UsageError("--n-ctx must be >= 0 and --views >= 1")
    if spec.learns_context and config.n_ctx == 0:
        raise UsageError(f"--method {spec.name} learns context: --n-ctx must be at least 1")


def train(config: TrainConfig, progress=None) -> TrainResult:
    """Train one method on one dataset and write its run directory.

    Args:
        config: the run's settings.
        progress: an optional rich Progress for long steps.
    Returns:
        TrainResult with the run directory, metrics and unreadable files.
    """
    from vipcli.devices import resolve_device
    from vipcli.packs import symptoms_for_classes
    from vipcli.preflight import check_run_dir
    from vipcli.prompts import check_method_prompts
    from vipcli.registry import load_backbone

    started = time.perf_counter()
    spec = get_method(config.method)
    _validate(config, spec)
    check_run_dir(config.out or default_run_dir(config), config.force)  # before any work (#14)
    device = resolve_device(config.device)
    schedule = resolve_schedule(config.schedule, config.shots, config.epochs, config.batch_size, config.lr)
    dataset = load_dataset(config.data, seed=config.seed)
    symptoms = _symptoms(spec, dataset.class_names, config.symptoms, symptoms_for_classes)
    torch.manual_seed(config.seed)
    backbone = load_backbone(config.backbone, config.arch, config.pretrained, device)
    loaded = time.perf_counter()
    console.info(_plan(config, spec, dataset, schedule, backbone, device))
    check_method_prompts(spec, backbone, dataset.class_names, symptoms, config.n_ctx)  # before encoding (#14)
    cache = FeatureCache(config.cache_dir or default_cache_dir(), backbone) if config.use_cache else FeatureCache(None, backbone)
    # the reference mode encodes training images afresh every epoch: here only once, to find the readable ones
    views = 0 if config.reference else config.views
    center_train = spec.linear or config.reference
    data = prepare_features(backbone, dataset, config.shots, config.seed, views, cache, config.workers,
                            config.batch_size_encode, progress, center_train=center_train)
    encoded = time.perf_counter()
    torch.manual_seed(config.seed)
    classifier = build_classifier(spec, backbone, dataset.class_names, symptoms, config.n_ctx,
                                  config.class_specific_context, trim=not config.reference)
    reference = _reference_batches(backbone, dataset, data, schedule, config.seed, config.workers,
                                   config.batch_size_encode) if config.reference else None
    fitted = fit(spec, classifier, data, schedule, config.seed, device, reference, progress)
    trained = time.perf_counter()
    metrics = {
        "val": evaluate(classifier, data.val, len(dataset.class_names), device),
        "test": evaluate(classifier, data.test, len(dataset.class_names), device),
        **fitted,
        "timings": {"load_backbone_s": round(loaded - started, 3), "encode_s": round(encoded - loaded, 3),
                    "fit_s": round(trained - encoded, 3), "total_s": round(time.perf_counter() - started, 3),
                    "encoded_views": data.encoded_views},
        "device": str(device), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
    }
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    _write(run_dir, config, spec, backbone, dataset, data, classifier, symptoms, schedule, metrics)
    return TrainResult(run_dir, metrics, data.failures, dataset.class_names, schedule if spec.trainable else None)


def _plan(config, spec, dataset, schedule, backbone, device) -> str:
    shots = "all images" if config.shots is None else f"{config.shots} shots per class"
    fitting = (f"schedule {schedule.name}: {schedule.epochs} epochs, batch {schedule.batch_size}, lr {schedule.lr}"
               if spec.trainable and not spec.linear else "no prompt training")
    arch = backbone.describe().get("arch", "")
    return (f"{spec.name} on {len(dataset.class_names)} classes ({', '.join(dataset.class_names)}), {shots}; "
            f"{fitting}; backbone {config.backbone} ({Path(str(arch)).name}) on {device}")


def _symptoms(spec, class_names, sources, lookup) -> dict[str, list[str]]:
    if spec.prompts == "symptoms":
        return lookup(class_names, list(sources))
    try:  # recorded for explanations when available; not required by class-name methods
        return lookup(class_names, list(sources))
    except VipError:
        return {}


def _write(run_dir, config, spec, backbone, dataset, data, classifier, symptoms, schedule, metrics) -> None:
    from vipcli.checkpoint import write_run

    root = Path(dataset.root)

    def relative(paths):
        return [str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else str(p) for p in paths]

    tensors = {name: p for name, p in classifier.named_parameters()}
    config_record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    config_record["symptoms"] = list(config.symptoms)
    metadata = {
        "method": spec.name, "backbone": config.backbone, "arch": backbone.describe().get("arch", config.arch or ""),
        "arch_option": config.arch or "", "pretrained_option": config.pretrained or "",
        "pretrained": str(backbone.describe().get("pretrained", "")), "backbone_fingerprint": backbone.fingerprint(),
        "backbone_describe": backbone.describe(), "class_names": dataset.class_names, "symptoms": symptoms,
        "prompts": class_prompts(spec, dataset.class_names, symptoms) if spec.prompts else [],
        "n_ctx": str(config.n_ctx if spec.learns_context else 0), "class_specific_context": str(config.class_specific_context),
        "schedule": asdict(schedule), "config": config_record,
    }
    split = {
        "root": str(root.resolve()), "class_names": dataset.class_names, "origin": dataset.origin,
        "seed": config.seed, "shots": config.shots,
        "train_subset": relative(data.train.paths),
        **{name: [[p, s.label] for p, s in zip(relative([s.path for s in dataset.splits[name]]), dataset.splits[name])]
           for name in ("train", "val", "test")},
        "unreadable": {p: r for p, r in data.failures.items()},
    }
    metrics = {**metrics, "shortfalls": data.shortfalls}
    write_run(run_dir, tensors, metadata, split, metrics, force=config.force)
