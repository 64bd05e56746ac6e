"""`vip benchmark --speed`: what a user feels, measured on their machine, backbone and data.

In one run: (a) feature extraction images/s on a cold cache, (b) wall time of a full default ViP
training run (paper schedule, all training data) with cached features, then again on the warm
cache, (c) the same in the reference mode (the authors' way: every image re-encoded every epoch,
the whole text tower every step), and the ratios (cold and warm), with the runs' accuracy,
(d) `vip predict` images/s on the test images, (e) peak memory, plus the machine it ran on and the
backbone's load phases; all written to speed.json.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from vipcli import console
from vipcli.schedule import PRESETS
from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings

SPEED_FORMAT = "vip-speed"
PAPER_EPOCHS = PRESETS["paper"].epochs  # epochs of the full default run (50)


@dataclass(frozen=True)
class SpeedConfig:
    """Settings of one speed measurement; defaults are the CLI's."""

    data: Path  # folder of class subfolders, optionally under train/ val/ test/
    backbone: BackboneSettings = BackboneSettings()
    encoding: EncodingSettings = EncodingSettings()
    symptoms: tuple[str, ...] = ()  # symptom sources, as for `vip train`
    epochs: int | None = None  # training epochs (None: the paper schedule's 50, the full default run)
    seed: int = 1  # seed of the split and of both training runs
    out: Path | None = None  # folder for speed.json (None: benchmarks/<data folder name>)


def describe_machine(device) -> dict:
    """CPU model, cores, torch threads, accelerator and library versions."""
    import importlib.metadata as metadata

    import torch

    from vipcli import __version__
    from vipcli.devices import gpu_name
    from vipcli.settings import usable_cores

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in ("torch", "open_clip_torch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    accelerator = gpu_name(device) or str(device)
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable_cores(), "torch_threads": torch.get_num_threads(),
            "device": str(device), "accelerator": accelerator, "platform": platform.platform(),
            "python": platform.python_version(), "vip": __version__, **versions}


def peak_memory(device) -> dict:
    """Peak resident memory of this process and of finished child processes (MiB; None where the OS has no
    getrusage, Windows), and CUDA peak."""
    import sys

    import torch

    cuda = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None
    try:
        import resource
    except ImportError:  # Windows: every figure was measured but this one, which must not lose the others
        return {"peak_rss_mib": None, "children_peak_rss_mib": None, "cuda_peak_allocated_mib": cuda}
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    to_mib = lambda value: round(value * scale / 2**20, 1)  # noqa: E731
    return {"peak_rss_mib": to_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
            "children_peak_rss_mib": to_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
            "cuda_peak_allocated_mib": cuda}


def measure_extraction(backbone, paths: list, cache_dir: Path, workers: int, batch_size: int, progress=None,
                       fit: str = "crop") -> dict:
    """Images/s of decoding + encoding the center view of `paths` (under image fit `fit`) into a cold on-disk cache."""
    from vipcli.features import FeatureCache, encode_images

    cache = FeatureCache(cache_dir, backbone, fit)
    with console.task(progress, "feature extraction", len(paths)) as advance:
        started = time.perf_counter()
        encoded = encode_images(backbone, paths, 0, cache, batch_size, workers, advance=advance)
        seconds = time.perf_counter() - started
    return {"images": len(encoded.eval), "seconds": round(seconds, 3),
            "images_per_s": round(len(encoded.eval) / max(seconds, 1e-9), 2)}


def time_train(config: SpeedConfig, scratch: Path, name: str, reference: bool, progress=None) -> dict:
    """Wall time and accuracy of one full ViP `train` run (paper schedule, all training data)."""
    from vipcli.train import TrainConfig, train

    cache = scratch / ("cache-train" if not reference else "cache-reference")
    encoding = replace(config.encoding, cache_dir=cache, use_cache=not reference)
    settings = TrainConfig(
        data=config.data, shots=None, method="vip", backbone=config.backbone, encoding=encoding,
        schedule=ScheduleSettings("paper", epochs=config.epochs), symptoms=config.symptoms, seed=config.seed,
        out=scratch / name, reference=reference,
    )
    started = time.perf_counter()
    result = train(settings, progress)
    seconds = time.perf_counter() - started
    metrics = result.metrics
    epochs, fit_s = len(metrics["history"]), metrics["timings"]["fit_s"]
    steps = metrics.get("steps", 0)
    return {"seconds": round(seconds, 3), "epochs": epochs, "best_epoch": metrics["best_epoch"],
            "steps": steps, "steps_per_s": round(steps / max(fit_s, 1e-9), 2),
            "val_accuracy": metrics["val"]["accuracy"], "test_accuracy": metrics["test"]["accuracy"],
            "test_macro_f1": metrics["test"]["macro_f1"], "timings": metrics["timings"],
            "per_epoch_s": round(fit_s / max(epochs, 1), 3),
            "projected_paper_s": round(seconds + (PAPER_EPOCHS - epochs) * fit_s / max(epochs, 1), 1)}


def measure_predict(run_dir: Path, paths: list, device, workers: int, batch_size: int, progress=None) -> dict:
    """`vip predict` on `paths` with a trained run: model load time and images/s (no feature cache)."""
    from vipcli.predict import load_predictor, predict

    started = time.perf_counter()
    predictor = load_predictor(run_dir, device)
    loaded = time.perf_counter()
    predictions, _ = predict(predictor, [Path(p) for p in paths], cache=None, workers=workers,
                             batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - loaded
    return {"images": len(predictions), "load_s": round(loaded - started, 3),
            "load_phases": getattr(predictor.backbone, "load_phases", {}), "seconds": round(seconds, 3),
            "images_per_s": round(len(predictions) / max(seconds, 1e-9), 2)}


def measure_speed(config: SpeedConfig, progress=None) -> dict:
    """Run every measurement once and write `speed.json` in `config.out`.

    Args:
        config: data, backbone and the run's settings.
        progress: an optional rich Progress for long steps.
    Returns:
        The speed report (as written to speed.json).
    Each warning (the data's, the backbone's) is printed once, not once per timed run.
    """
    with console.each_warning_once():
        return _measure_speed(config, progress)


def _measure_speed(config: SpeedConfig, progress=None) -> dict:
    from dataclasses import asdict

    from vipcli.atomic import write_atomic
    from vipcli.benchmark import default_out
    from vipcli.data import check_data_folder, load_dataset
    from vipcli.devices import resolve_device
    from vipcli.preflight import check_output_folder
    from vipcli.schedule import resolve_schedule
    from vipcli.sweep_folder import check_speed_out

    check_output_folder(config.out or default_out(config.data))  # before any work
    check_speed_out(Path(config.out or default_out(config.data)), config.data)
    check_data_folder(config.data)  # a missing --data, then weights offline: before the data is read
    config.backbone.check_weights()
    device = resolve_device(config.backbone.device)
    schedule = resolve_schedule("paper", None, config.epochs)
    load_before = _load_average()
    dataset = load_dataset(config.data, seed=config.seed)
    splits = {name: [str(s.path) for s in samples] for name, samples in dataset.splits.items()}
    with tempfile.TemporaryDirectory(prefix="vip-speed-") as folder:
        scratch = Path(folder)
        started = time.perf_counter()
        backbone = config.backbone.load(device)
        load_s = time.perf_counter() - started
        describe, fingerprint = backbone.describe(), backbone.fingerprint()
        load_phases = getattr(backbone, "load_phases", {})
        everything = splits["train"] + splits["val"] + splits["test"]
        extraction = measure_extraction(backbone, everything, scratch / "cache-extract", config.encoding.workers,
                                        config.encoding.batch_size, progress, config.encoding.image_fit)
        del backbone
        console.info("timing a full ViP training run with cached features ...")
        cached = time_train(config, scratch, "run-cached", False, progress)
        console.info("timing it again on the now warm cache (what each further run or benchmark row costs) ...")
        warm = time_train(config, scratch, "run-cached-warm", False, progress)
        console.info("timing the reference mode (the authors' way: every image re-encoded every epoch, the whole "
                     "text tower every step) ...")
        reference = time_train(config, scratch, "run-reference", True, progress)
        predicted = measure_predict(scratch / "run-cached", splits["test"], device, config.encoding.workers,
                                    config.encoding.batch_size, progress)
    report = {
        "format": SPEED_FORMAT, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": describe_machine(device), "load_average": {"before": load_before, "after": _load_average()},
        "backbone": {"id": config.backbone.id, "arch": config.backbone.arch, "pretrained": config.backbone.pretrained,
                     "fingerprint": fingerprint, "describe": describe, "load_s": round(load_s, 3),
                     "load_phases": load_phases},
        "data": {"path": str(Path(config.data).resolve()), **{name: len(paths) for name, paths in splits.items()}},
        "schedule": asdict(schedule), "schedule_paper_epochs": PAPER_EPOCHS, "views": config.encoding.views,
        "image_fit": config.encoding.image_fit, "feature_extraction": extraction, "train_cached": cached, "train_cached_warm": warm,
        "train_reference": reference, "reference_text_tower": "plain",  # the library's own forward (since 0.2.0)
        "speedup": round(reference["seconds"] / max(cached["seconds"], 1e-9), 2),
        "speedup_warm": round(reference["seconds"] / max(warm["seconds"], 1e-9), 2),
        "speedup_projected_paper": round(reference["projected_paper_s"] / max(cached["projected_paper_s"], 1e-9), 2),
        "predict": predicted, "memory": peak_memory(device),
    }
    out = Path(config.out) if config.out else default_out(config.data)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "speed.json", json.dumps(report, indent=2))
    report["path"] = str(out / "speed.json")
    return report


def load_phases_text(phases: dict) -> str:
    """A backbone's `load_phases` in one line: "plugin 2.4 s (import 2.1, ...), checks 0.0 s (remembered)"."""
    parts = [f"{name[:-2]} {phases[name]:.1f}" for name in ("import_s", "build_s", "weights_s", "tokenizer_s")
             if isinstance(phases.get(name), (int, float))]
    text = f"plugin {phases.get('construct_s', 0):.1f} s" + (f" ({', '.join(parts)})" if parts else "")
    return text + f", checks {phases.get('checks_s', 0):.1f} s ({phases.get('checks', '?')})"


def _load_average():
    return os.getloadavg() if hasattr(os, "getloadavg") else None
