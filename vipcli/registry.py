"""Backbone plugins, discovered through the entry-point group `vip.backbones`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from vipcli.errors import UsageError, VipError

ENTRY_POINT_GROUP = "vip.backbones"


@dataclass(frozen=True)
class BackboneInfo:
    """One installed backbone plugin, as `vip backbones list` shows it."""

    id: str  # entry-point name, the value of --backbone
    target: str  # "module:attribute" the entry point loads
    distribution: str  # the installed distribution that registers it
    version: str  # that distribution's version


def _distribution_of(entry_point: EntryPoint) -> tuple[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "unknown", ""
    return dist.metadata["Name"] or "unknown", dist.version or ""


def _entry_points() -> dict[str, EntryPoint]:
    """Entry points by id; the same id from two distributions is an error naming both."""
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        previous = found.get(entry_point.name)
        if previous is not None and previous.value != entry_point.value:
            first, second = _distribution_of(previous)[0], _distribution_of(entry_point)[0]
            raise VipError(
                f"backbone id '{entry_point.name}' is registered twice: by {first} ({previous.value}) "
                f"and by {second} ({entry_point.value})",
                "uninstall one of the two distributions",
            )
        found[entry_point.name] = entry_point
    return found


def list_backbones() -> list[BackboneInfo]:
    """Every installed backbone plugin, sorted by id (nothing is imported)."""
    infos = []
    for name, entry_point in sorted(_entry_points().items()):
        distribution, version = _distribution_of(entry_point)
        infos.append(BackboneInfo(name, entry_point.value, distribution, version))
    return infos


def backbone_class(backbone_id: str):
    """Import the plugin registered as `backbone_id` and return its factory."""
    available = _entry_points()
    entry_point = available.get(backbone_id)
    if entry_point is None:
        names = ", ".join(sorted(available)) or "none"
        raise UsageError(f"can't find backbone '{backbone_id}'", f"installed backbones: {names}")
    try:
        return entry_point.load()
    except Exception as error:  # a broken plugin must not take the others down
        distribution, _ = _distribution_of(entry_point)
        raise VipError(
            f"backbone '{backbone_id}' from distribution {distribution} failed to import: "
            f"{type(error).__name__}: {error}",
            f"reinstall or fix {distribution}; other backbones still work",
        ) from error


def load_backbone(backbone_id: str, arch: str | None = None, pretrained: str | None = None, device=None):
    """Build a frozen backbone by registry id.

    Args:
        backbone_id: entry-point name (`clip`, `biomedclip`, a plugin's id).
        arch: architecture name or config file, as the plugin understands it (None: its default).
        pretrained: weights (tag, hf-hub id, local file/folder, or "none"; None: its default).
        device: torch.device to place the towers on.
    Returns:
        A `vipcli.backbone.Backbone` with every weight frozen.
    """
    import torch

    factory = backbone_class(backbone_id)
    backbone = factory(arch=arch, pretrained=pretrained, device=device or torch.device("cpu"))
    backbone.id = backbone_id
    backbone.freeze()
    return backbone
