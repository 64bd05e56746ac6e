"""Backbone plugins, discovered through the entry-point group `vip.backbones`."""

from __future__ import annotations

from vipcli.plugins import PluginGroup, PluginInfo

ENTRY_POINT_GROUP = "vip.backbones"
BACKBONES = PluginGroup(ENTRY_POINT_GROUP, "backbone")
BackboneInfo = PluginInfo  # kept for plugins and scripts written against vip 0.1.0


def list_backbones() -> list[PluginInfo]:
    """Every installed backbone plugin, sorted by id (nothing is imported)."""
    return BACKBONES.list()


def backbone_class(backbone_id: str):
    """Import the plugin registered as `backbone_id` and return its factory."""
    return BACKBONES.load(backbone_id)


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
