"""`vip demo`: the whole product on the shipped toy backbone and a generated lesion world, offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoConfig:
    """What the demo generates and runs; the defaults finish in about 30 s on 2 idle CPU cores."""

    out: Path = Path("vip-demo")  # folder for the data set, the trained run and the benchmark
    seed: int = 0  # seed of the generated lesion world
    train_per_class: int = 64  # generated training images per class
    val_per_class: int = 32  # generated validation images per class
    test_per_class: int = 150  # generated test images per class
    shots: int = 16  # labelled images per class for the ViP run
    bench_shots: tuple[int, ...] = (1, 4, 16)  # shots of the benchmark sweep
    bench_seeds: tuple[int, ...] = (1, 2, 3)  # seeds of the benchmark sweep
    methods: tuple[str, ...] = ("zeroshot", "symptom-zeroshot", "coop", "vip")  # benchmarked methods
    workers: int = 0  # image-decoding workers (64-px PNGs decode faster in-process)


def make_dataset(config: DemoConfig) -> Path:
    """Write the seeded melanoma-like / nevus-like lesion world under `out/data` (replacing an earlier one).

    It is written into a hidden staging folder beside `data` and renamed into place when whole, so a demo stopped
    while it writes (Ctrl-C, `kill`) leaves the earlier data set as it was, never one with some splits missing."""
    from vipcli.atomic import atomic_folder
    from vipcli.lesion_world import write_dataset

    data = Path(config.out) / "data"
    counts = {"train": config.train_per_class, "val": config.val_per_class, "test": config.test_per_class}
    with atomic_folder(data, durable=False) as staging:  # a few hundred small files, regenerated at will
        write_dataset(staging, counts, seed=config.seed)
    return data


def train_config(config: DemoConfig, data: Path):
    """The demo's `vip train --backbone toy --shots 16` run."""
    from vipcli.train import TrainConfig

    from vipcli.settings import BackboneSettings, EncodingSettings

    return TrainConfig(data=data, shots=config.shots, backbone=BackboneSettings("toy", device="cpu"),
                       encoding=EncodingSettings(workers=config.workers), out=Path(config.out) / "run", force=True)


def benchmark_config(config: DemoConfig, data: Path):
    """The demo's `vip benchmark` sweep over the toy backbone."""
    from vipcli.benchmark import BenchmarkConfig

    from vipcli.settings import BackboneSettings, EncodingSettings

    return BenchmarkConfig(data=data, methods=config.methods, shots=config.bench_shots, seeds=config.bench_seeds,
                           backbone=BackboneSettings("toy", device="cpu"), encoding=EncodingSettings(workers=config.workers),
                           out=Path(config.out) / "benchmark", force=True)


def sample_images(data: Path, per_class: int = 1) -> list[Path]:
    """The first `per_class` test images of each class, to show predictions on."""
    return [p for folder in sorted((data / "test").iterdir()) for p in sorted(folder.glob("*.png"))[:per_class]]
