"""Settings shared by `vip train`, `vip benchmark` and `--speed`: one dataclass per concern."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BackboneSettings:
    """Which frozen model, and where it runs."""

    id: str = "clip"  # backbone plugin id (see `vip backbones list`)
    arch: str | None = None  # architecture for the plugin (None: its default)
    pretrained: str | None = None  # weights for the plugin (None: its default; "none": random)
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps

    def load(self, device=None):
        """Build the frozen backbone (on `device`, else the resolved `self.device`)."""
        from vipcli.devices import resolve_device
        from vipcli.registry import load_backbone

        return load_backbone(self.id, self.arch, self.pretrained, device or resolve_device(self.device))

    def check(self) -> None:
        """Refuse a backbone id that no installed plugin registers, and a --device this machine cannot give, before
        the data is read: they are mistakes of the command line, named in one line, not after every image of the
        data was listed and hashed (and its warnings printed). Nothing of the plugin is imported here."""
        check_backbone_and_device(self.id, self.device)

    def check_weights(self) -> None:
        """Refuse weights of vip's own hub backbones (`clip`, `biomedclip`, `hf-clip`, `siglip`) that cannot be had
        offline (`vipcli.registry.check_weights_early`): the load's own one-line error, called after the usage errors
        (`check` among them: the id is known by then) and before the data folder is read; neither the model library
        nor the plugin is imported."""
        from vipcli.registry import check_weights_early

        check_weights_early(self.id, self.arch, self.pretrained)


def check_backbone_and_device(backbone_id: str, device: str) -> None:
    """One UsageError for an unknown backbone id (with the closest installed one) or an unusable device name."""
    from vipcli.devices import resolve_device
    from vipcli.registry import BACKBONES

    BACKBONES.entry_point(backbone_id)
    resolve_device(device)


@dataclass(frozen=True)
class EncodingSettings:
    """How images become frozen features."""

    views: int = 8  # augmented views encoded (and cached) per training image
    workers: int | None = None  # image-decoding worker processes (None: one per usable core, at most 16)
    batch_size: int = 64  # image views per image-encoder call (--encode-batch)
    cache_dir: Path | None = None  # feature cache root (None: $VIP_CACHE_DIR or the user cache)
    use_cache: bool = True  # keep encoded features on disk between runs
    image_fit: str = "crop"  # crop, pad or squash: how an image is fitted into the encoder's square (vipcli.image_fit)

    def __post_init__(self):
        if self.workers is None:
            object.__setattr__(self, "workers", default_workers())

    def validate(self) -> None:
        """Refuse values that cannot work."""
        from vipcli.errors import UsageError
        from vipcli.image_fit import checked_fit

        checked_fit(self.image_fit)
        if self.views < 1:
            raise UsageError(f"--views must be at least 1, got {self.views}")
        if self.workers < 0:
            raise UsageError(f"--workers must be 0 or more, got {self.workers}")
        if self.batch_size < 1:
            raise UsageError(f"--encode-batch must be at least 1, got {self.batch_size}")

    def cache_root(self) -> Path | None:
        """The folder of the feature cache these settings ask for (None with `use_cache=False`); a VipError for
        one every user can write (`vipcli.cache_trust`): called before any work, it refuses such a folder
        before the backbone loads."""
        from vipcli.cache_admin import default_root

        return (self.cache_dir or default_root()) if self.use_cache else None

    def cache(self, backbone):
        """The feature cache these settings ask for (a memory-only one with `use_cache=False`), under their image fit."""
        from vipcli.features import FeatureCache

        return FeatureCache(self.cache_root(), backbone, self.image_fit)


@dataclass(frozen=True)
class ScheduleSettings:
    """The optimisation schedule of methods trained with the shared SGD loop."""

    name: str = "auto"  # auto (fewshot with --shots N, paper with all), fewshot or paper
    epochs: int | None = None  # override the schedule's epochs
    batch_size: int | None = None  # override the schedule's batch size
    lr: float | None = None  # override the schedule's learning rate

    def given(self) -> list[str]:
        """The options that set this schedule, as typed (`["--epochs 3", "--lr 0.01"]`); [] for the default."""
        return [f"{option} {value:g}" if isinstance(value, float) else f"{option} {value}"
                for option, value in (("--schedule", None if self.name == "auto" else self.name),
                                      ("--epochs", self.epochs), ("--batch-size", self.batch_size), ("--lr", self.lr))
                if value is not None]

    def resolve(self, shots: int | None):
        """The vipcli.schedule.Schedule for a run with `shots` (None: all images)."""
        from vipcli.schedule import resolve_schedule

        return resolve_schedule(self.name, shots, self.epochs, self.batch_size, self.lr)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one), at least 1."""
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


_capped_warned: set[int] = set()


def usable_workers(requested: int) -> int:
    """`requested` decoding workers, at most one per usable core (warned once per value).

    A --workers far above the cores (999 on a 2-core machine) started that many processes, each
    with its own copy of the decoding libraries, decoded slower than the default, and let PyTorch
    print its own multi-line warning.
    """
    cores = usable_cores()
    if requested <= cores:
        return requested
    if requested not in _capped_warned:
        _capped_warned.add(requested)
        from vipcli import console

        console.warn(f"--workers {requested}: this machine has {cores} usable core(s); using {cores} decoding "
                     "worker(s)")
    return cores


def default_workers() -> int:
    """Image-decoding workers when --workers is not given: the usable cores, at most 16.

    Under torchrun the cores are shared by the processes of a node (LOCAL_WORLD_SIZE), less one
    each for the process itself.
    """
    import os

    usable = usable_cores()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if local_processes > 1:
        usable = usable // local_processes - 1
    return max(1, min(usable, 16))
