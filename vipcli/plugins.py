"""One registry for every extension point: plugins found through Python entry points.

Backbones (`vip.backbones`) and methods (`vip.methods`) are both `PluginGroup`s. The built-ins are
registered in vip's own pyproject exactly as a third party registers theirs, and nothing is imported
until a plugin is asked for by id. A bad plugin never takes the others down:

- an id registered by two distributions is disabled (an error naming both when it is asked for),
  while every other id keeps working; but an id of vip's own (a built-in) always wins: the other
  distribution's entry is shadowed, listed as such, and named in a warning when the id is used;
- a plugin that fails to import is named with its distribution;
- an unknown id lists the installed ones;
- an exception raised inside a loaded plugin becomes a `PluginError` naming the plugin, its
  distribution and the member that failed (`guard_calls`), never "a bug in vip".
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, Iterable

from vipcli.errors import UsageError, VipError


def closest_name(typed: str, names: Iterable[str]) -> str | None:
    """The one of `names` a typo away from `typed` (the same but for case, 'VIP' for 'vip'; else difflib's
    closest match), or None."""
    import difflib

    names = list(names)
    same_but_case = [name for name in names if name.lower() == typed.lower()]
    close = same_but_case or difflib.get_close_matches(typed, names, n=1)
    return close[0] if close else None


def did_you_mean(typed: str, names: Iterable[str]) -> str:
    """"; did you mean 'vip'?" for an id one typo away from an installed one (as for commands), else ""."""
    close = closest_name(typed, names)
    return f"; did you mean '{close}'?" if close else ""


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as `vip backbones list` / `vip methods list` show it."""

    id: str  # entry-point name: the value of --backbone / --method
    target: str  # "module:attribute" the entry point loads
    distribution: str  # the installed distribution that registers it
    version: str  # that distribution's version
    conflict: str = ""  # non-empty when two distributions register this id (the id is then disabled)
    shadowed: str = ""  # non-empty for a third party's entry under a built-in id (the built-in is used)


OWN_DISTRIBUTION = "vipcli"  # vip's own distribution (its one home): its ids, the built-ins, win over a plugin's
_warned_shadows: set[tuple[str, str]] = set()  # (group, id) whose shadowed entries were warned about


_read_distributions: dict[tuple, tuple[str, str]] = {}  # metadata_key -> (name, version) already read


def distribution_of(entry_point: EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution that registers `entry_point` ("unknown" if none).

    A distribution's metadata file is parsed once per process while its bytes are unchanged (`metadata_key`):
    every plugin lookup scans the group's entry points, and parsing each one's metadata (Python's e-mail
    parser) cost 20-35 ms a lookup on the 2-core machine, several lookups per benchmark row.
    """
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "unknown", ""
    key = metadata_key(dist)
    known = _read_distributions.get(key) if key is not None else None
    if known is not None:
        return known
    metadata = dist.metadata  # parsed anew on every access: read it once for both fields
    found = (metadata["Name"] or "unknown", metadata["Version"] or "")
    if key is not None:
        _read_distributions[key] = found
    return found


def metadata_key(dist) -> tuple | None:
    """What identifies the metadata of an installed distribution as it is now: its folder and the bytes of its
    metadata file (a reinstall or an edit changes them; reading them costs a hundredth of parsing them); None where
    it cannot be told (a distribution that is not a folder on disk)."""
    import os

    folder = getattr(dist, "_path", None)  # importlib.metadata.PathDistribution: the .dist-info / .egg-info
    if folder is None:
        return None
    for name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, name), "rb") as file:
                return str(folder), name, file.read()
        except (OSError, TypeError, ValueError):
            continue
    return None


_held_scans: dict | None = None  # group -> `_scan` result, inside `scans_held` (None outside it)


@contextlib.contextmanager
def scans_held():
    """Inside the block, each plugin group's installed entry points are read once, at its first lookup.

    Every lookup by id (building a method, recording the distribution of a run or of a benchmark row)
    otherwise reads and parses every installed distribution's entry_points.txt again: 3-5 ms of CPU each
    on the 2-core machine, about 190 lookups in a 32-row sweep, 62 in `vip demo`. Every `vip` command holds
    its plugins for its whole run (`vipcli.cli.main`), as a sweep of the Python interface does: the code it
    imported is what it runs, whatever is installed meanwhile. Re-entrant (an inner block keeps the outer
    block's scans); outside any block every lookup reads what is installed now.
    """
    global _held_scans
    if _held_scans is not None:
        yield
        return
    _held_scans = {}
    try:
        yield
    finally:
        _held_scans = None


class PluginError(VipError):
    """A plugin's own failure: names the plugin, its distribution and the member that failed.

    Args:
        kind: "backbone", "method", ...
        plugin_id: the id the plugin is registered under.
        distribution: "name version" of the distribution that provides it.
        member: the attribute or method that failed (e.g. "encode_image", "__init__").
        reason: what went wrong, in a few words.
        hint: what to do about it (default: report it to the distribution's authors).
    """

    def __init__(self, kind: str, plugin_id: str, distribution: str, member: str, reason: str,
                 hint: str | None = None):
        self.kind, self.plugin_id, self.distribution, self.member = kind, plugin_id, distribution, member
        self.reason = reason
        name = distribution.split(" ")[0] or "unknown"
        super().__init__(
            f"{kind} '{plugin_id}' (from {distribution}) failed in {member}: {reason}",
            hint or f"a fault in the plugin, not in vip: report it to the authors of {name} "
                    "with the traceback that VIP_DEBUG=1 shows",
        )


def describe_exception(error: BaseException) -> str:
    """`Type: message` on one line, whole (library messages often span several lines), with every secret
    vip knows of masked (`known_secrets`)."""
    from vipcli.symptoms.llm import redact

    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = redact(text, known_secrets())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def known_secrets() -> list[str]:
    """Every secret a plugin's or a library's text must never show: the Hugging Face credentials
    (`hub_secrets`) and the values of the environment variables named like secrets
    (`vipcli.symptoms.llm.environment_secrets`: OPENAI_API_KEY and the other LLM keys, tokens, passwords,
    the proxies' credentials)."""
    from vipcli.symptoms.llm import environment_secrets

    return list(dict.fromkeys(hub_secrets() + environment_secrets()))


HUB_TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def hub_secrets() -> list[str]:
    """What a library's error must never show: the Hugging Face token (in HF_TOKEN or
    HUGGING_FACE_HUB_TOKEN, or stored by `hf auth login`) and the user name and password of HF_ENDPOINT.

    huggingface_hub names the URL it asked in its errors, HF_ENDPOINT's credentials included, and a
    mirror may echo the Authorization header in its error text.
    """
    import os
    import sys

    from vipcli.symptoms.llm import url_secrets

    found = [os.environ.get(name, "").strip() for name in HUB_TOKEN_VARIABLES]
    hub = sys.modules.get("huggingface_hub")  # loaded when the error came from the hub; not imported for it
    if hub is not None:
        try:
            found.append(hub.get_token() or "")
        except Exception:  # noqa: BLE001 - an unreadable token file, an old huggingface_hub: the variables stay
            pass
    return [secret for secret in found if secret] + url_secrets(os.environ.get("HF_ENDPOINT", ""))


def is_plugin_failure(error: BaseException) -> bool:
    """Whether `error`, raised out of a plugin's code (its `__init__`, `fit`, `encode_image`...), is the plugin's
    failure, to be said in one line naming it: any exception but a VipError (already one line), and also a
    SystemExit (a plugin's sys.exit() must not end vip, silently, with the plugin's exit code) or another
    BaseException; a KeyboardInterrupt only when no Ctrl-C or SIGTERM reached vip
    (`stop_signals.raised_without_signal`): a real one stops the command as everywhere."""
    from vipcli import stop_signals

    if isinstance(error, VipError):
        return False
    if isinstance(error, KeyboardInterrupt):
        return stop_signals.raised_without_signal()
    return True


def describe_failure(error: BaseException) -> str:
    """`describe_exception`, with what only ends a process said: a SystemExit is "SystemExit: 3 (it tried to end
    the process)", a KeyboardInterrupt the plugin raised says that no Ctrl-C reached vip."""
    if isinstance(error, SystemExit):
        return f"SystemExit: {error.code} (it tried to end the process)"
    if isinstance(error, KeyboardInterrupt):
        return "KeyboardInterrupt (raised by the plugin: no Ctrl-C or SIGTERM reached vip)"
    return describe_exception(error)


ENDS_PROCESS_HINT = ("a plugin must not call sys.exit() or raise KeyboardInterrupt: raise an exception instead; "
                     "report it to the authors of {name}")


@contextlib.contextmanager
def plugin_code(kind: str, plugin_id: str, distribution: str | Callable[[], str | None], member: str,
                hint: str | None = None):
    """The block as a call into a plugin's own code, its `member`: any failure of the plugin's
    (`is_plugin_failure`: an exception that is not a VipError, a SystemExit...) is re-raised as a `PluginError`
    naming it (`hint`: the fix, as `plugin_failure` takes it). The one seam every call into a plugin goes through,
    the members of an instance (`guard_call`) and what the core asks of a plugin's class.

    `distribution`: "name version", or a callable that tells it once a failure needs it (a lookup saved on every
    call that succeeds); None from it means vip's own code (a built-in), whose failure is left as it is: a bug in
    vip, shown as one.
    """
    try:
        yield
    except BaseException as error:
        if not is_plugin_failure(error):
            raise
        named = distribution() if callable(distribution) else distribution
        if named is None:
            raise
        raise plugin_failure(error, kind, plugin_id, named, member, hint) from error


def guard_call(function: Callable, kind: str, plugin_id: str, distribution: str, member: str) -> Callable:
    """`function`, re-raising any failure of the plugin's (`is_plugin_failure`: an exception that is not a
    VipError, a SystemExit...) as a `PluginError` naming it (`plugin_code`)."""

    @functools.wraps(function)
    def guarded(*args, **kwargs):
        with plugin_code(kind, plugin_id, distribution, member):
            return function(*args, **kwargs)

    guarded.__vip_guarded__ = True
    return guarded


def failure_hint(error: BaseException, distribution: str, otherwise: str | None = None) -> str | None:
    """The hint for a plugin failure `error`: that a plugin must not end the process, for a SystemExit or a
    KeyboardInterrupt it raised; else `otherwise`."""
    if isinstance(error, (SystemExit, KeyboardInterrupt)):
        return ENDS_PROCESS_HINT.format(name=distribution.split(" ")[0] or "unknown")
    return otherwise


def plugin_failure(error: BaseException, kind: str, plugin_id: str, distribution: str, member: str,
                   hint: str | None = None) -> PluginError:
    """The `PluginError` for `error`, a failure (`is_plugin_failure`) raised out of the plugin's `member`
    (`hint`: the fix, unless the plugin tried to end the process, `failure_hint`)."""
    return PluginError(kind, plugin_id, distribution, member, describe_failure(error),
                       failure_hint(error, distribution, hint))


def guard_calls(instance, members: Iterable[str], kind: str, plugin_id: str, distribution: str) -> None:
    """Wrap the named methods of one plugin instance with `guard_call`, in place.

    The instance keeps its class (isinstance and type-based keys still see the plugin's own class);
    the wrappers live in the instance's `__dict__`. Calls a plugin makes to its own guarded methods
    report the innermost member that failed.
    """
    for member in members:
        method = getattr(instance, member, None)
        if not callable(method) or getattr(method, "__vip_guarded__", False):
            continue
        try:
            object.__setattr__(instance, member, guard_call(method, kind, plugin_id, distribution, member))
        except AttributeError:  # __slots__ without __dict__: left unguarded
            return


class PluginGroup:
    """The plugins of one entry-point group.

    Args:
        group: the entry-point group, e.g. "vip.backbones".
        kind: the word users see, e.g. "backbone" (used in messages and as the option name).
    """

    def __init__(self, group: str, kind: str):
        self.group, self.kind = group, kind

    def _scan(self) -> tuple[dict[str, EntryPoint], dict[str, str], dict[str, list[EntryPoint]]]:
        """(entry points by id, conflict message by id, shadowed entry points by id) for what is installed now,
        or, inside `scans_held`, as the block's first lookup of this group found it (`_scan_installed`)."""
        if _held_scans is None:
            return self._scan_installed()
        if self.group not in _held_scans:
            _held_scans[self.group] = self._scan_installed()
        return _held_scans[self.group]

    def _scan_installed(self) -> tuple[dict[str, EntryPoint], dict[str, str], dict[str, list[EntryPoint]]]:
        """`_scan`'s answer read from the installed distributions' entry points (several ms: every
        distribution's entry_points.txt is read and parsed).

        An id vip registers itself (a built-in) keeps vip's entry point whoever else registers it: the
        others are shadowed. Two other distributions registering one id make it a conflict.
        """
        found: dict[str, EntryPoint] = {}
        conflicts: dict[str, str] = {}
        shadowed: dict[str, list[EntryPoint]] = {}
        # vip's own entries first (a stable sort keeps sys.path order otherwise): every third party's
        # entry under a built-in id then meets the built-in, however many there are and wherever they lie
        for entry_point in sorted(entry_points(group=self.group), key=lambda entry: not _is_own(entry)):
            previous = found.get(entry_point.name)
            if previous is None:
                found[entry_point.name] = entry_point
                continue
            if previous.value == entry_point.value and distribution_of(previous) == distribution_of(entry_point):
                continue  # the same distribution seen twice on sys.path
            if _is_own(previous) and not _is_own(entry_point):  # a built-in id: vip's entry wins
                shadowed.setdefault(entry_point.name, []).append(entry_point)
                continue
            first, second = distribution_of(previous)[0], distribution_of(entry_point)[0]
            conflicts[entry_point.name] = (
                f"{self.kind} id '{entry_point.name}' is registered twice: by {first} ({previous.value}) "
                f"and by {second} ({entry_point.value})"
            )
        return found, conflicts, shadowed

    def shadow_message(self, entry_point: EntryPoint) -> str:
        """One line saying that `entry_point` (a third party's, under a built-in id) is shadowed, and the fix."""
        name, version = distribution_of(entry_point)
        return (f"{self.kind} '{entry_point.name}' of {f'{name} {version}'.strip()} ({entry_point.value}) is "
                f"shadowed by vip's built-in '{entry_point.name}', which is used instead: rename the id under "
                f"[project.entry-points.\"{self.group}\"] in {name}'s pyproject.toml and reinstall it")

    def warn_shadowed(self, plugin_id: str, shadowed: dict[str, list[EntryPoint]] | None = None) -> None:
        """Warn on stderr, once per process, about each third-party entry shadowed by the built-in `plugin_id`."""
        if (self.group, plugin_id) in _warned_shadows:
            return
        entries = (self._scan()[2] if shadowed is None else shadowed).get(plugin_id, [])
        if not entries:
            return
        _warned_shadows.add((self.group, plugin_id))
        from rich.markup import escape

        from vipcli import console
        from vipcli.distributed import world_from_env

        if not world_from_env().main:  # a torchrun rank other than 0 would repeat rank 0's warning
            return

        for entry_point in entries:
            console.warn(escape(self.shadow_message(entry_point)))

    def list(self) -> list[PluginInfo]:
        """Every installed plugin of the group, sorted by id (nothing is imported); a shadowed entry
        follows the built-in it is shadowed by."""
        found, conflicts, shadowed = self._scan()
        infos = []
        for name, entry_point in sorted(found.items()):
            distribution, version = distribution_of(entry_point)
            infos.append(PluginInfo(name, entry_point.value, distribution, version, conflicts.get(name, "")))
            for hidden in shadowed.get(name, []):
                distribution, version = distribution_of(hidden)
                infos.append(PluginInfo(name, hidden.value, distribution, version, shadowed=self.shadow_message(hidden)))
        return infos

    def ids(self) -> list[str]:
        """The usable ids (conflicting ones left out), sorted."""
        found, conflicts, _ = self._scan()
        return sorted(name for name in found if name not in conflicts)

    def entry_point(self, plugin_id: str) -> EntryPoint:
        """The entry point registered as `plugin_id`; unknown or conflicting ids are one clear error, and
        a built-in id that a third party also registers is warned about (once per process)."""
        found, conflicts, shadowed = self._scan()
        if plugin_id in conflicts:
            raise VipError(conflicts[plugin_id], f"uninstall one of the two distributions; other {self.kind}s still work")
        entry_point = found.get(plugin_id)
        if entry_point is None:
            usable = sorted(n for n in found if n not in conflicts)
            raise UsageError(f"can't find {self.kind} '{plugin_id}'{did_you_mean(plugin_id, usable)}",
                             f"installed {self.kind}s: {', '.join(usable) or 'none'}")
        self.warn_shadowed(plugin_id, shadowed)
        return entry_point

    def distribution(self, plugin_id: str) -> str:
        """"name version" of the distribution that registers `plugin_id` (errors as `entry_point`)."""
        name, version = distribution_of(self.entry_point(plugin_id))
        return f"{name} {version}".strip()

    def misplaced(self, plugin_id: str, right_group: str, right_kind: str) -> VipError:
        """The error for `plugin_id`, whose entry point names a `right_kind` plugin that belongs under the
        entry-point group `right_group`, not under this one (a method registered as a backbone, or the reverse)."""
        entry_point = self.entry_point(plugin_id)
        distribution, _ = distribution_of(entry_point)
        return VipError(f"{self.kind} '{plugin_id}' from distribution {distribution}: its entry point '{plugin_id} = "
                        f"{entry_point.value}' names a {right_kind}, registered under {self.group}",
                        f"move that line under [project.entry-points.\"{right_group}\"] in {distribution}'s "
                        f"pyproject.toml and reinstall it (pip install DIR); other {self.kind}s still work")

    def wrong_kind(self, plugin_id: str, loaded, base: str) -> VipError:
        """The error for `plugin_id`, whose entry point names `loaded`, which is not a subclass of `base`
        (e.g. "vipcli.backbone.Backbone"): a module, a constant, a function or an unrelated class."""
        entry_point = self.entry_point(plugin_id)
        distribution, _ = distribution_of(entry_point)
        return VipError(f"{self.kind} '{plugin_id}' from distribution {distribution}: its entry point '{plugin_id} = "
                        f"{entry_point.value}' names {_kind_of(loaded)}, not a subclass of {base}",
                        f"point it at your {base.rsplit('.', 1)[-1]} subclass (module:Class) under "
                        f"[project.entry-points.\"{self.group}\"] in {distribution}'s pyproject.toml and reinstall "
                        f"it (pip install DIR); other {self.kind}s still work")

    def load(self, plugin_id: str):
        """Import the plugin registered as `plugin_id` and return what its entry point names.

        What the module prints while imported is held (`vipcli.plugin_output`): passed on after a successful
        import, left out of a failed one, whose one error line says so. A KeyboardInterrupt the module raises
        itself, when no signal reached vip's handler (`stop_signals.raised_without_signal`), is the plugin's
        failure; one from Ctrl-C stops the command as everywhere.
        """
        from vipcli import stop_signals
        from vipcli.plugin_output import held_import_output

        entry_point = self.entry_point(plugin_id)
        try:
            with held_import_output() as output:
                try:
                    return entry_point.load()
                except KeyboardInterrupt as error:
                    if not stop_signals.raised_without_signal():
                        raise
                    raise self._import_failure(plugin_id, entry_point, error) from None
                except BaseException as error:  # a broken plugin must not take the others down, nor exit for them
                    raise self._import_failure(plugin_id, entry_point, error) from (
                        None if isinstance(error, SystemExit) else error)
        except VipError as failure:
            failure.hint = (failure.hint or "") + output.hint()
            raise

    def _import_failure(self, plugin_id: str, entry_point: EntryPoint, error: BaseException) -> VipError:
        """The one-line error for `plugin_id`, whose module failed to import with `error`."""
        distribution, _ = distribution_of(entry_point)
        if isinstance(error, (SystemExit, KeyboardInterrupt)):  # sys.exit(), argparse at import: not vip's to end
            ended, doing = ((f"tried to end the process (SystemExit: {error.code})",
                             "call sys.exit() or parse the command line") if isinstance(error, SystemExit) else
                            ("raised KeyboardInterrupt, though no Ctrl-C or SIGTERM reached vip",
                             "raise KeyboardInterrupt"))
            return VipError(
                f"{self.kind} '{plugin_id}' from distribution {distribution} failed to import: its module "
                f"{entry_point.module} {ended}",
                f"a module must not {doing} when imported: report it to the authors of {distribution}; other "
                f"{self.kind}s still work",
            )
        missing = _missing_attribute(entry_point, error)
        if missing:
            return VipError(
                f"{self.kind} '{plugin_id}' from distribution {distribution}: its entry point "
                f"'{plugin_id} = {entry_point.value}' names {missing}, which module {entry_point.module} "
                "does not define",
                f"fix the name under [project.entry-points.\"{self.group}\"] in {distribution}'s pyproject.toml "
                f"and reinstall it (pip install DIR); other {self.kind}s still work",
            )
        if _names_missing_module(entry_point, error):
            return VipError(
                f"{self.kind} '{plugin_id}' from distribution {distribution} failed to import: its entry point "
                f"'{plugin_id} = {entry_point.value}' names module {entry_point.module}, which is not installed "
                f"({describe_exception(error)})",
                f"fix the module name under [project.entry-points.\"{self.group}\"] in {distribution}'s "
                f"pyproject.toml and reinstall it (pip install DIR); other {self.kind}s still work",
            )
        dependency = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
        if dependency:  # the plugin's module imports a package that is not installed
            top = dependency.split(".")[0]
            return VipError(
                f"{self.kind} '{plugin_id}' from distribution {distribution} failed to import: its module "
                f"{entry_point.module} needs {dependency}, which is not installed ({describe_exception(error)})",
                f"install the package that provides {top} (pip install {top}, if that is its name), or reinstall "
                f"{distribution} with its dependencies; other {self.kind}s still work",
            )
        return VipError(
            f"{self.kind} '{plugin_id}' from distribution {distribution} failed to import: "
            f"{describe_exception(error)}",
            f"reinstall or fix {distribution}; other {self.kind}s still work",
        )


def _kind_of(loaded) -> str:
    """What an entry point's target is, in a few words: "module x", "class X", "function f", "an int"."""
    import inspect

    if inspect.ismodule(loaded):
        return f"module {loaded.__name__}"
    if isinstance(loaded, type):
        return f"class {loaded.__qualname__}"
    if inspect.isroutine(loaded):
        return f"function {getattr(loaded, '__qualname__', loaded)}"
    name = type(loaded).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def is_own_distribution(distribution: str | None) -> bool:
    """Whether a "name version" distribution (as `PluginGroup.distribution` gives it) is vip's own: a built-in."""
    return (distribution or "").split(" ")[0].lower().replace("_", "-") == OWN_DISTRIBUTION


def _is_own(entry_point: EntryPoint) -> bool:
    """Whether `entry_point` is registered by vip's own distribution (a built-in)."""
    return is_own_distribution(distribution_of(entry_point)[0])


def _names_missing_module(entry_point: EntryPoint, error: Exception) -> bool:
    """Whether `error` says that the module an entry point names (or a package above it) does not exist, as
    opposed to a module that exists but fails inside, e.g. on an import of its own."""
    missing = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    return bool(missing) and (entry_point.module == missing or entry_point.module.startswith(missing + "."))


def _missing_attribute(entry_point: EntryPoint, error: Exception) -> str | None:
    """The attribute an entry point names that its (importable) module lacks, else None."""
    import importlib
    import sys

    if not isinstance(error, AttributeError) or not entry_point.attr:
        return None
    module = sys.modules.get(entry_point.module)
    if module is None:
        try:
            module = importlib.import_module(entry_point.module)
        except Exception:
            return None
    target = module
    for part in entry_point.attr.split("."):
        if not hasattr(target, part):
            return entry_point.attr
        target = getattr(target, part)
    return None


SOURCE_DIGEST_SKIPPED = ("builtins", "torch")  # besides the standard library: never a plugin's own code
SOURCE_DIGEST_MAX_SIBLINGS = 64  # .py files read from the package folder of a plugin's class


def _is_library_module(module_name: str) -> bool:
    """Whether `module_name` belongs to the standard library or torch (not a plugin's code)."""
    import sys

    top = module_name.split(".")[0]
    return top in SOURCE_DIGEST_SKIPPED or top in sys.stdlib_module_names


BUILTIN_BACKBONES = "vip_backbones"  # the import package of vip's own backbones


def plugin_source_files(cls: type) -> list:
    """The source files that define a plugin class: its module, its base classes' modules (outside
    torch and the standard library) and, for a third party's class, the other modules of its own
    package folder, sorted. For a backbone of vip's own (`vip_backbones`), the package's modules its
    module imports, directly or through each other (`vipcli.source_imports`), instead of all of them:
    an edit to one backbone leaves the others' feature caches alone; a third party's class built on one
    of them (a subclass of `vip_backbones.hf_clip.HFClipBackbone`) gets the modules that one imports
    too. (vip's own code is digested whole for every backbone, by `vipcli.features.installation_identity`.)

    A file that cannot be located (a built-in or frozen module) is left out.
    """
    import sys
    from pathlib import Path

    from vipcli.source_imports import imported_modules

    files: set[Path] = set()
    for klass in cls.__mro__:
        if _is_library_module(klass.__module__):
            continue
        path = getattr(sys.modules.get(klass.__module__), "__file__", None)
        if path:
            files.add(Path(path))
    builtin = [klass.__module__ for klass in cls.__mro__ if klass.__module__.split(".")[0] == BUILTIN_BACKBONES]
    files.update(imported_modules(builtin, (BUILTIN_BACKBONES,)).values())  # a plugin's built-in base runs them too
    if cls.__module__.split(".")[0] == BUILTIN_BACKBONES:
        return sorted(files)
    own = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if own and (Path(own).parent / "__init__.py").is_file():  # a package: its sibling modules are the plugin too
        files.update(sorted(Path(own).parent.glob("*.py"))[:SOURCE_DIGEST_MAX_SIBLINGS])
    return sorted(files)


def plugin_source_digest(cls: type) -> str:
    """A sha256 (hex, 16 digits) of `plugin_source_files(cls)`: each file's name and content, in an order of
    their own (never their folders', so every layout of an installation, a wheel's, an editable one's, gives
    one digest).

    It changes when the plugin's code is edited, also in an editable install whose version stays
    the same. Reading a few source files takes milliseconds.
    """
    from vipcli.digests import sources_digest

    return sources_digest((path.name, path) for path in plugin_source_files(cls))
