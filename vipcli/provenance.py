"""Which installed distributions a run was trained with, and what to say when they are gone or changed.

`vip train` records, for the method and the backbone, the distribution that registered it (name and
version) in the run's metadata (`method_distribution`, `backbone_distribution`). When the run is
loaded, a plugin that is no longer installed is one line naming the distribution to install; a
method plugin whose settings changed since is a warning naming the settings and both versions.
Runs written before vip recorded this load as before (the messages then say the version is unknown).
"""

from __future__ import annotations

from pathlib import Path

from vipcli.errors import VipError
from vipcli.plugins import is_own_distribution


def distribution_record(group, plugin_id: str) -> dict[str, str]:
    """{"name", "version"} of the distribution that registers `plugin_id` in `group` (a `PluginGroup`)."""
    from vipcli.plugins import distribution_of

    name, version = distribution_of(group.entry_point(plugin_id))
    return {"name": name, "version": version}


def recorded(metadata: dict, kind: str) -> dict[str, str] | None:
    """The distribution a run recorded for its `kind` ("method" or "backbone"), or None (older runs, damaged field)."""
    value = metadata.get(f"{kind}_distribution")
    if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
        return {"name": value["name"], "version": str(value.get("version") or "")}
    return None


def spelled(record: dict[str, str] | None) -> str:
    """"name version" of a distribution record ("an unrecorded distribution" for runs that did not record it)."""
    if record is None:
        return "an unrecorded distribution"
    return f"{record['name']} {record['version']}".strip()


def run_name(file: str | Path) -> str:
    """The run directory of a run's model.safetensors (or the path as given)."""
    path = Path(file)
    return str(path.parent if path.name == "model.safetensors" else path)


def not_installed(file: str | Path, kind: str, plugin_id: str, metadata: dict, installed: list[str]) -> VipError:
    """The error for a run whose method or backbone plugin is not installed: which distribution to install."""
    source = recorded(metadata, kind)
    run = run_name(file)
    if source is None:
        listed = ", ".join(installed) or "none"
        return VipError(f"{run} was trained with {kind} '{plugin_id}', which is not installed (installed {kind}s: "
                        f"{listed})", f"install the {kind} plugin the run was trained with (see `vip {kind}s list`)")
    pin = f"{source['name']}=={source['version']}" if source["version"] else source["name"]
    return VipError(f"{run} was trained with {kind} '{plugin_id}' from {spelled(source)}, which is not installed",
                    f"pip install '{pin}'")


def check_installed(file: str | Path, kind: str, plugin_id: str, metadata: dict, group) -> None:
    """Raise `not_installed` when `plugin_id` is not registered in `group` (a `PluginGroup`) at all."""
    ids = [info.id for info in group.list()]
    if plugin_id not in ids:
        raise not_installed(file, kind, plugin_id, metadata, sorted(group.ids()))


def installed_record(group, plugin_id: str) -> dict[str, str] | None:
    """The distribution record of the installed plugin `plugin_id` of `group`, or None if it cannot be told."""
    try:
        return distribution_record(group, plugin_id)
    except VipError:
        return None


def installed_method(method_id: str) -> dict[str, str] | None:
    """The distribution record of the installed method `method_id` (None if it cannot be told)."""
    from vipcli.methods import METHODS

    return installed_record(METHODS, method_id)


def installed_backbone(backbone_id: str) -> dict[str, str] | None:
    """The distribution record of the installed backbone `backbone_id` (None if it cannot be told)."""
    from vipcli.registry import BACKBONES

    return installed_record(BACKBONES, backbone_id)


def settings_drift(run: str, method_id: str, settings_class, stored: dict, metadata: dict) -> str | None:
    """A warning for a plugin method whose stored settings no longer match its installed `Settings`.

    A stored setting the installed plugin does not know is ignored, and a setting the run lacks takes
    the installed default: either can change predictions. Built-in methods are left out (vip's own
    upgrades convert their settings).
    """
    import dataclasses

    from vipcli.methods.base import setting_default

    now = installed_method(method_id)
    if now is None or is_own_distribution(now["name"]):
        return None
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    unknown = [name for name in stored if name not in fields]
    missing = [f for name, f in fields.items() if name not in stored]
    if not unknown and not missing:
        return None
    parts = [f"stored setting '{name}' is no longer known and is ignored" for name in unknown]
    parts += [f"setting '{f.name}' is not in the run and takes its default {setting_default(f)!r}" for f in missing]
    return (f"{run}: method '{method_id}' was trained with {spelled(recorded(metadata, 'method'))}, "
            f"{spelled(now)} is installed: {'; '.join(parts)} (predictions may differ from the run's; install the "
            "version it was trained with, or retrain)")


def tensor_mismatch(error, method_id: str, metadata: dict) -> VipError:
    """A saved-tensor mismatch of a plugin method, naming the method plugin and its versions as the likely cause."""
    now, then = installed_method(method_id), recorded(metadata, "method")
    if now is None or is_own_distribution(now["name"]):
        return error
    if then is not None and then["version"]:
        install = f"pip install '{then['name']}=={then['version']}' to predict with this run"
    else:
        install = f"install the version of {now['name']} the run was trained with"
    return VipError(f"{error.message}; the run was trained with {spelled(then)} and {spelled(now)} is installed: "
                    f"the method plugin's saved state likely changed since",
                    f"{install}, or retrain it; if the plugin did not change, predict with the backbone and arch "
                    "the run was trained with")
