"""One registry for every extension point: plugins found through Python entry points.

Backbones (`vip.backbones`) and methods (`vip.methods`) are both `PluginGroup`s. The built-ins are
registered in vip's own pyproject exactly as a third party registers theirs, and nothing is imported
until a plugin is asked for by id. A bad plugin never takes the others down:

- an id registered by two distributions is disabled (an error naming both when it is asked for),
  while every other id keeps working;
- a plugin that fails to import is named with its distribution;
- an unknown id lists the installed ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from vipcli.errors import UsageError, VipError


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as `vip backbones list` / `vip methods list` show it."""

    id: str  # entry-point name: the value of --backbone / --method
    target: str  # "module:attribute" the entry point loads
    distribution: str  # the installed distribution that registers it
    version: str  # that distribution's version
    conflict: str = ""  # non-empty when two distributions register this id (the id is then disabled)


def distribution_of(entry_point: EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution that registers `entry_point` ("unknown" if none)."""
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "unknown", ""
    return dist.metadata["Name"] or "unknown", dist.version or ""


class PluginGroup:
    """The plugins of one entry-point group.

    Args:
        group: the entry-point group, e.g. "vip.backbones".
        kind: the word users see, e.g. "backbone" (used in messages and as the option name).
    """

    def __init__(self, group: str, kind: str):
        self.group, self.kind = group, kind

    def _scan(self) -> tuple[dict[str, EntryPoint], dict[str, str]]:
        """(entry points by id, conflict message by id) for what is installed now."""
        found: dict[str, EntryPoint] = {}
        conflicts: dict[str, str] = {}
        for entry_point in entry_points(group=self.group):
            previous = found.get(entry_point.name)
            if previous is None:
                found[entry_point.name] = entry_point
                continue
            if previous.value == entry_point.value and distribution_of(previous) == distribution_of(entry_point):
                continue  # the same distribution seen twice on sys.path
            first, second = distribution_of(previous)[0], distribution_of(entry_point)[0]
            conflicts[entry_point.name] = (
                f"{self.kind} id '{entry_point.name}' is registered twice: by {first} ({previous.value}) "
                f"and by {second} ({entry_point.value})"
            )
        return found, conflicts

    def list(self) -> list[PluginInfo]:
        """Every installed plugin of the group, sorted by id (nothing is imported)."""
        found, conflicts = self._scan()
        infos = []
        for name, entry_point in sorted(found.items()):
            distribution, version = distribution_of(entry_point)
            infos.append(PluginInfo(name, entry_point.value, distribution, version, conflicts.get(name, "")))
        return infos

    def ids(self) -> list[str]:
        """The usable ids (conflicting ones left out), sorted."""
        found, conflicts = self._scan()
        return sorted(name for name in found if name not in conflicts)

    def entry_point(self, plugin_id: str) -> EntryPoint:
        """The entry point registered as `plugin_id`; unknown or conflicting ids are one clear error."""
        found, conflicts = self._scan()
        if plugin_id in conflicts:
            raise VipError(conflicts[plugin_id], f"uninstall one of the two distributions; other {self.kind}s still work")
        entry_point = found.get(plugin_id)
        if entry_point is None:
            names = ", ".join(sorted(n for n in found if n not in conflicts)) or "none"
            raise UsageError(f"can't find {self.kind} '{plugin_id}'", f"installed {self.kind}s: {names}")
        return entry_point

    def load(self, plugin_id: str):
        """Import the plugin registered as `plugin_id` and return what its entry point names."""
        entry_point = self.entry_point(plugin_id)
        try:
            return entry_point.load()
        except Exception as error:  # a broken plugin must not take the others down
            distribution, _ = distribution_of(entry_point)
            raise VipError(
                f"{self.kind} '{plugin_id}' from distribution {distribution} failed to import: "
                f"{type(error).__name__}: {error}",
                f"reinstall or fix {distribution}; other {self.kind}s still work",
            ) from error
