"""Backbone plugins built into vip (installed as the import package `vip_backbones`).

They are registered under the entry-point group `vip.backbones` in pyproject.toml, exactly
as a third-party plugin would register its own.
"""
