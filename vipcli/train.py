"""`vip train` as a library: data -> frozen features -> learned prompts -> run directory."""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from vipcli import console
from vipcli.data import Dataset, few_shot_order, load_dataset
from vipcli.errors import VipError
from vipcli.features import FeatureCache, default_cache_dir, encode_images, iterate_fresh_features
from vipcli.methods import MethodSpec, build_classifier, class_prompts, get_method
from vipcli.metrics import compute_metrics
from vipcli.schedule import Schedule, resolve_schedule

MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
LINEAR_PROBE_C = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # inverse regularisation strengths tried on val


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
class FeatureSet:
    """Frozen image features of one split."""

    x: torch.Tensor  # [N, D] center-crop view
    y: torch.Tensor  # [N] labels
    paths: list[str]  # image files, aligned with rows
    views: torch.Tensor | None = None  # [N, V, D] augmented views (training set only)


@dataclass
class PreparedData:
    """Features of the train subset, val and test, and what could not be read."""

    train: FeatureSet
    val: FeatureSet
    test: FeatureSet
    failures: dict[str, str] = field(default_factory=dict)  # file -> reason
    encoded_views: int = 0  # views that went through the image encoder (cache misses)
    shortfalls: dict[str, int] = field(default_factory=dict)  # class -> readable shots when fewer than asked


@dataclass
class TrainResult:
    """What a finished `train` returns."""

    run_dir: Path
    metrics: dict  # "val", "test", "best_epoch", "history", "timings"
    failures: dict[str, str]  # unreadable file -> reason
    class_names: list[str]
    schedule: Schedule | None


# --- features -----------------------------------------------------------------------------


def _feature_set(encoded, samples, with_views: bool) -> FeatureSet:
    rows = [i for i in range(len(samples)) if i in encoded.eval]
    x = torch.stack([encoded.eval[i] for i in rows]) if rows else torch.empty(0, 0)
    views = torch.stack([encoded.train[i] for i in rows]) if (with_views and rows) else None
    labels = torch.tensor([samples[i].label for i in rows], dtype=torch.long)
    return FeatureSet(x, labels, [str(samples[i].path) for i in rows], views)


def _select_shots(backbone, dataset: Dataset, shots, seed, views, cache, encode_kwargs, advance):
    """Few-shot subset: per class the first `shots` readable images of a seeded order."""
    ordered = few_shot_order(dataset.splits["train"], len(dataset.class_names), seed)
    chosen: list[list] = [[] for _ in ordered]
    position = [0] * len(ordered)
    failures, encoded_views, gathered = {}, 0, {}
    while True:
        wanted = []
        for c, members in enumerate(ordered):
            need = shots - len(chosen[c])
            batch = members[position[c] : position[c] + max(need, 0)]
            position[c] += len(batch)
            wanted.extend(batch)
        if not wanted:
            break
        encoded = encode_images(backbone, [s.path for s in wanted], views, cache, seed=seed, advance=advance,
                                **encode_kwargs)
        failures.update({str(p): r for p, r in encoded.failures.items()})
        encoded_views += encoded.encoded
        for i, sample in enumerate(wanted):
            if i in encoded.eval:
                chosen[sample.label].append(sample)
                gathered[sample.path] = (encoded.eval[i], encoded.train[i])
    subset = sorted((s for members in chosen for s in members), key=lambda s: (s.label, str(s.path)))
    x = torch.stack([gathered[s.path][0] for s in subset]) if subset else torch.empty(0, 0)
    v = torch.stack([gathered[s.path][1] for s in subset]) if subset else None
    y = torch.tensor([s.label for s in subset], dtype=torch.long)
    shortfalls = {dataset.class_names[c]: len(m) for c, m in enumerate(chosen) if len(m) < shots}
    return FeatureSet(x, y, [str(s.path) for s in subset], v), failures, encoded_views, shortfalls


def prepare_features(backbone, dataset: Dataset, shots: int | None, seed: int, views: int, cache,
                     workers: int = 2, batch_size: int = 64, progress=None) -> PreparedData:
    """Encode the training subset (with augmented views), val and test once, through the cache."""
    kwargs = {"workers": workers, "batch_size": batch_size}
    splits = dataset.splits
    total = (min(len(splits["train"]), shots * len(dataset.class_names)) if shots else len(splits["train"]))
    with console.task(progress, "encoding images", total + len(splits["val"]) + len(splits["test"])) as advance:
        if shots:
            train, failures, encoded_views, shortfalls = _select_shots(
                backbone, dataset, shots, seed, views, cache, kwargs, advance)
        else:
            encoded = encode_images(backbone, [s.path for s in splits["train"]], views, cache, seed=seed,
                                    advance=advance, **kwargs)
            train = _feature_set(encoded, splits["train"], with_views=True)
            failures, encoded_views, shortfalls = {str(p): r for p, r in encoded.failures.items()}, encoded.encoded, {}
        prepared = PreparedData(train, None, None, failures, encoded_views, shortfalls)
        for name in ("val", "test"):
            encoded = encode_images(backbone, [s.path for s in splits[name]], 0, cache, seed=seed,
                                    advance=advance, **kwargs)
            prepared.failures.update({str(p): r for p, r in encoded.failures.items()})
            prepared.encoded_views += encoded.encoded
            setattr(prepared, name, _feature_set(encoded, splits[name], with_views=False))
    _check_enough(prepared, dataset)
    return prepared


def _check_enough(prepared: PreparedData, dataset: Dataset) -> None:
    counts = torch.bincount(prepared.train.y, minlength=len(dataset.class_names)).tolist()
    empty = [name for name, n in zip(dataset.class_names, counts) if n == 0]
    if empty:
        first = next(iter(sorted(prepared.failures.items())), None)
        example = f"; e.g. {first[0]}: {first[1]}" if first else ""
        raise VipError(
            f"no readable training images for class {', '.join(repr(e) for e in empty)} "
            f"({len(prepared.failures)} unreadable files in all{example})",
            "replace or remove the unreadable files, or add readable images",
        )
    if len(prepared.val.y) == 0:
        raise VipError("no readable validation images", "add images to val/ or let vip split train")


# --- fitting ------------------------------------------------------------------------------


@torch.no_grad()
def predict_probabilities(classifier, features: torch.Tensor, device) -> torch.Tensor:
    """Class probabilities [N, C] for image features [N, D] (class embeddings computed once)."""
    from vipcli.devices import autocast
    from vipcli.heads import PromptClassifier

    classifier.eval()
    if features.numel() == 0:
        return torch.empty(0, 0)
    with autocast(device):
        if isinstance(classifier, PromptClassifier):
            embeddings = classifier.class_embeddings()[0]  # [C, D]
            logits = torch.cat([classifier.logits_from(chunk.to(device), embeddings) for chunk in features.split(4096)])
        else:
            logits = classifier(features.to(device))
    return logits.float().softmax(dim=-1).cpu()  # [N, C]


def _accuracy(classifier, data: FeatureSet, device) -> float:
    probabilities = predict_probabilities(classifier, data.x, device)
    return float((probabilities.argmax(dim=1) == data.y).float().mean()) if len(data.y) else 0.0


def _cached_batches(train: FeatureSet, batch_size: int, generator):
    """One epoch of (features [B, D], labels [B]), each image in a random cached view."""
    order = torch.randperm(len(train.y), generator=generator)
    for idx in order.split(batch_size):
        view = torch.randint(train.views.shape[1], (len(idx),), generator=generator)
        yield train.views[idx, view], train.y[idx]


def _trainable_state(classifier) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in classifier.named_parameters() if p.requires_grad}


def fit_prompt_classifier(classifier, train: FeatureSet, val: FeatureSet, schedule: Schedule, seed: int, device,
                          reference=None, progress=None) -> dict:
    """SGD over the learnable prompts; keep the state with the best validation accuracy.

    Args:
        reference: None to train from cached views; else a callable(epoch, train: bool) yielding
            freshly encoded (features, labels) batches (the authors' way, for timing comparisons).
    Returns:
        {"best_epoch", "best_val_accuracy", "history": [{epoch, lr, loss, val_accuracy}]}
    """
    from vipcli.devices import fastest_cpu_threads

    parameters = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=schedule.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(seed)
    best = {"best_epoch": -1, "best_val_accuracy": -1.0, "history": []}
    best_state = _trainable_state(classifier)
    threads = contextlib.nullcontext() if reference else fastest_cpu_threads(lambda: _text_step(classifier), device)
    with threads, console.task(progress, "training prompts", schedule.epochs) as advance:
        for epoch in range(schedule.epochs):
            loss = _train_epoch(classifier, optimizer, schedule, epoch, train, generator, device, reference)
            val_accuracy = _reference_accuracy(classifier, reference, epoch, device) if reference else _accuracy(
                classifier, val, device)
            best["history"].append({"epoch": epoch, "lr": schedule.lr_at(epoch), "loss": loss,
                                    "val_accuracy": round(100 * val_accuracy, 2)})
            if val_accuracy > best["best_val_accuracy"]:
                best.update(best_epoch=epoch, best_val_accuracy=val_accuracy)
                best_state = _trainable_state(classifier)
            advance()
    classifier.load_state_dict(best_state, strict=False)
    best["best_val_accuracy"] = round(100 * best["best_val_accuracy"], 2)
    return best


def _train_epoch(classifier, optimizer, schedule, epoch, train, generator, device, reference) -> float:
    """One epoch of SGD; returns the mean loss."""
    from vipcli.devices import autocast

    for group in optimizer.param_groups:
        group["lr"] = schedule.lr_at(epoch)
    classifier.train()
    batches = reference(epoch, True) if reference else _cached_batches(train, schedule.batch_size, generator)
    losses = []
    for features, labels in batches:
        with autocast(device):
            logits = classifier(features.to(device))  # [B, C]
        loss = F.cross_entropy(logits.float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / max(len(losses), 1)


def _text_step(classifier) -> None:
    """A forward and backward pass of the text side that leaves no trace (for timing)."""
    classifier.class_embeddings()[0].sum().backward()
    classifier.zero_grad(set_to_none=True)


@torch.no_grad()
def _reference_accuracy(classifier, reference, epoch, device) -> float:
    classifier.eval()
    embeddings = classifier.class_embeddings()[0]
    correct = total = 0
    for features, labels in reference(epoch, False):
        correct += int((classifier.logits_from(features.to(device), embeddings).argmax(1).cpu() == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def fit_linear_probe(probe, train: FeatureSet, val: FeatureSet, seed: int) -> dict:
    """Logistic regression (L-BFGS) on normalised features; C chosen on validation accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = F.normalize(train.x, dim=-1).numpy()
    xv = F.normalize(val.x, dim=-1).numpy()
    best = None
    for c in LINEAR_PROBE_C:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, train.y.numpy())
        score = float((model.predict(xv) == val.y.numpy()).mean()) if len(xv) else 0.0
        if best is None or score > best[0]:
            best = (score, c, model)
    score, c, model = best
    weight, bias = np.asarray(model.coef_), np.asarray(model.intercept_)
    if weight.shape[0] == 1:  # binary: two logits whose softmax equals sklearn's sigmoid
        weight, bias = np.concatenate([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
    with torch.no_grad():
        probe.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        probe.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return {"best_epoch": None, "best_val_accuracy": round(100 * score, 2), "C": c, "history": []}


def fit(spec: MethodSpec, classifier, data: PreparedData, schedule: Schedule, seed: int, device,
        reference=None, progress=None) -> dict:
    """Train `classifier` as `spec` says (nothing to train for the zero-shot baselines)."""
    if spec.linear:
        return fit_linear_probe(classifier, data.train, data.val, seed)
    if not spec.trainable:
        return {"best_epoch": None, "best_val_accuracy": round(100 * _accuracy(classifier, data.val, device), 2),
                "history": []}
    return fit_prompt_classifier(classifier, data.train, data.val, schedule, seed, device, reference, progress)


def evaluate(classifier, data: FeatureSet, num_classes: int, device) -> dict:
    """Metrics of `classifier` on one split's features."""
    probabilities = predict_probabilities(classifier, data.x, device)
    return compute_metrics(data.y.numpy(), probabilities.numpy(), num_classes)


# --- the whole run ------------------------------------------------------------------------


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
    from vipcli.registry import load_backbone

    started = time.perf_counter()
    spec = get_method(config.method)
    _validate(config, spec)
    device = resolve_device(config.device)
    schedule = resolve_schedule(config.schedule, config.shots, config.epochs, config.batch_size, config.lr)
    dataset = load_dataset(config.data, seed=config.seed)
    symptoms = _symptoms(spec, dataset.class_names, config.symptoms, symptoms_for_classes)
    torch.manual_seed(config.seed)
    backbone = load_backbone(config.backbone, config.arch, config.pretrained, device)
    loaded = time.perf_counter()
    console.info(_plan(config, spec, dataset, schedule, backbone, device))
    cache = FeatureCache(config.cache_dir or default_cache_dir(), backbone) if config.use_cache else FeatureCache(None, backbone)
    views = 1 if config.reference else config.views
    data = prepare_features(backbone, dataset, config.shots, config.seed, views, cache, config.workers,
                            config.batch_size_encode, progress)
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
