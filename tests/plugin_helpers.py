"""Installing fake distributions with entry points into a temporary sys.path folder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

SAMPLE_PLUGINS = Path(__file__).resolve().parent / "sample_plugins.py"
SAMPLE_METHODS = Path(__file__).resolve().parent / "sample_methods.py"
METHOD_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vip-method-example"


def install_distribution(site: Path, name: str, entry_points: str, module_source: Path | None = None,
                         module_name: str | None = None, group: str = "vip.backbones") -> None:
    """Lay out an installed distribution (dist-info with entry points of `group`) on a sys.path folder."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry_points}\n")
    if module_source is not None:
        shutil.copy(module_source, site / (module_name or module_source.name))


def install_sample_plugins(site: Path) -> None:
    """The plugins of sample_plugins.py as the distribution `sample-plugins` (module vip_sample_plugins)."""
    sys.path.insert(0, str(SAMPLE_PLUGINS.parent))
    from sample_plugins import ENTRY_POINTS

    install_distribution(site, "sample-plugins", ENTRY_POINTS, SAMPLE_PLUGINS, "vip_sample_plugins.py")


def install_sample_methods(site: Path) -> None:
    """The methods of sample_methods.py as the distribution `sample-methods` (module vip_sample_methods).

    They break README's method example, so its module is laid beside them (a module only: its own
    `centroid` entry point is not registered).
    """
    shutil.copy(METHOD_EXAMPLE / "vip_method_example.py", site / "vip_method_example.py")
    sys.path.insert(0, str(SAMPLE_METHODS.parent))
    from sample_methods import ENTRY_POINTS

    install_distribution(site, "sample-methods", ENTRY_POINTS, SAMPLE_METHODS, "vip_sample_methods.py",
                         group="vip.methods")


def install_methods_module(site: Path, module: str, source: str, classes: dict, monkeypatch, data: Path) -> Path:
    """Methods of `source` (written as `module`.py beside README's method example), each class of `classes`
    (id -> class name) in a distribution of its own (`ID-dist`), and a small lesion data set at `data`."""
    from vipcli.lesion_world import write_dataset

    shutil.copy(METHOD_EXAMPLE / "vip_method_example.py", site / "vip_method_example.py")
    (site / f"{module}.py").write_text(source)
    for name, cls in classes.items():
        install_distribution(site, f"{name}-dist", f"{name} = {module}:{cls}", group="vip.methods")
    monkeypatch.delitem(sys.modules, module, raising=False)  # a fresh import (its counters too)
    write_dataset(data, {"train": 2, "val": 2, "test": 2}, seed=0)
    return data


def methods_fixture(module: str, source: str, classes: dict):
    """A pytest fixture giving the folder of a small lesion data set, with the methods of `source` installed as
    `install_methods_module` installs them (each class of `classes` in a distribution of its own), and `module`
    forgotten after the test."""
    @pytest.fixture
    def installed(site, tmp_path, monkeypatch):
        yield install_methods_module(site, module, source, classes, monkeypatch, tmp_path / "lesions")
        sys.modules.pop(module, None)

    return installed
