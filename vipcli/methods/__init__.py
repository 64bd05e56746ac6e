"""Few-shot methods as plugins: the interface, and the registry of the entry-point group `vip.methods`.

Every method, built-in or third-party, is one class implementing `vipcli.methods.base.Method`,
registered under `vip.methods` (vip's own pyproject registers the built-ins exactly so). The core
asks this registry by id and never imports a method by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from vipcli.errors import VipError
from vipcli.methods.base import (FitContext, Method, MethodSetup, NoSettings, make_settings, settings_from_record,
                                 symptoms_matter)
from vipcli.plugins import PluginGroup

ENTRY_POINT_GROUP = "vip.methods"
METHODS = PluginGroup(ENTRY_POINT_GROUP, "method")
DEFAULT_BENCHMARK = ("zeroshot", "symptom-zeroshot", "linear-probe", "coop", "tip-adapter", "tip-adapter-f",
                     "clap", "biomedcoop", "vip")
__all__ = ["FitContext", "Method", "MethodSetup", "NoSettings", "METHODS", "MethodInfo", "method_class",
           "build_method", "restore_method", "list_methods", "make_settings", "settings_from_record",
           "fitting_without_schedule", "method_summary", "symptoms_matter"]


@dataclass(frozen=True)
class MethodInfo:
    """One installed method, as `vip methods list` shows it."""

    id: str
    distribution: str
    version: str
    target: str
    summary: str = ""
    trains: bool | None = None
    uses_shots: bool | None = None
    needs_symptoms: bool | None = None
    uses_symptoms: bool | None = None  # `symptoms_matter`: whether the symptoms can change its results
    settings: tuple[str, ...] = ()
    problem: str = ""  # why it cannot be used (failed import, registered twice, not a Method)
    shadowed: str = ""  # a third party's entry under a built-in id: the built-in is used (the message says the fix)


def method_class(method_id: str) -> type[Method]:
    """Import the method registered as `method_id` and check it implements the interface."""
    from vipcli.backbone import Backbone
    from vipcli.methods.contract import check_class

    loaded = METHODS.load(method_id)
    if isinstance(loaded, type) and issubclass(loaded, Backbone):
        raise METHODS.misplaced(method_id, "vip.backbones", "backbone (a vipcli.backbone.Backbone)")
    if not (isinstance(loaded, type) and issubclass(loaded, Method)):
        raise METHODS.wrong_kind(method_id, loaded, "vipcli.methods.Method")
    check_class(loaded, method_id)  # Settings a dataclass with defaults; a method that trains overrides fit
    return loaded


def method_summary(cls: type[Method]) -> str:
    """A method's one line: its `summary`, else the first line of its class's own docstring (a plugin that left
    `summary` out showed a blank after its id), else ""."""
    if cls.summary:
        return cls.summary
    doc = (cls.__dict__.get("__doc__") or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def fitting_without_schedule(cls: type[Method], method_id: str) -> str | None:
    """How a method that does not follow the run's schedule fits, in the words `vip train` and the run
    report use ("no training", ...); None for one that follows the schedule."""
    if not cls.uses_shots:
        return "no labelled images, no training"
    if not cls.trains:
        return "no training"
    if not cls.uses_schedule:
        return f"the method's own fitting (`vip methods show {method_id}`)"
    return None


def build_method(method_id: str, setup: MethodSetup, options: dict | None = None) -> Method:
    """A fresh (unfitted) method from `KEY=VALUE` options (or settings values) for training."""
    from vipcli.methods.backbone_guard import is_watched
    from vipcli.methods.device_probe import keep_placeholders, probe_devices

    cls = method_class(method_id)
    settings = make_settings(cls, options or {}, method_id)
    method = _construct(cls, method_id, setup, settings, None)
    if is_watched(method):  # a plugin: built once more on another device (once per class), before any image is encoded
        probe_devices(cls, method_id, setup, settings)
        keep_placeholders(method)  # plain CPU tensors it saves itself: fit must replace them
    return method


def restore_method(method_id: str, setup: MethodSetup, settings: dict, stored: dict, tensors: dict,
                   where: str, metadata: dict | None = None) -> Method:
    """Rebuild a fitted method from what a run stored (settings, JSON state, tensors), ready to predict.

    `metadata` (the run's) lets a tensor mismatch of a plugin method name the plugin versions it was
    trained with and that is installed.
    """
    from vipcli.methods.backbone_guard import check_kept, is_watched, state_if_watched
    from vipcli.methods.base import SETTINGS_FIX, StateMismatch
    from vipcli.methods.contract import check_on_device, method_code
    from vipcli.methods.device_probe import probe_restored
    from vipcli.provenance import tensor_mismatch

    cls = method_class(method_id)
    with method_code(method_id, "Settings", SETTINGS_FIX):  # the stored values through a plugin's __post_init__
        rebuilt = settings_from_record(cls, settings)
    method = _construct(cls, method_id, setup, rebuilt, stored)
    before = state_if_watched(method)
    try:
        method.load_state_tensors(tensors, where)
    except StateMismatch as error:
        if metadata is None:
            raise
        raise tensor_mismatch(error, method_id, metadata) from None
    check_kept(method, "load_state_tensors", before)
    check_on_device(method, "load_state_tensors")
    if is_watched(method):  # a plugin: reloaded once more on another device (once per class), before any image
        probe_restored(cls, method_id, setup, rebuilt, stored, tensors, where)
    method.eval()
    return method


def _construct(cls, method_id, setup, settings, stored) -> Method:
    """`cls(setup, settings, stored)`, its faults named; a plugin's instance guarded and watched (it must leave the
    shared backbone as it found it: `vipcli.methods.backbone_guard`)."""
    from vipcli.methods.backbone_guard import backbone_state, check_kept, watch
    from vipcli.methods.contract import MemberFault, check_on_device, guard_method, method_fault
    from vipcli.plugins import describe_failure, distribution_of, failure_hint, is_own_distribution, is_plugin_failure

    distribution = METHODS.distribution(method_id)
    before = None if is_own_distribution(distribution) else backbone_state(getattr(setup, "backbone", None))
    try:
        method = cls(setup, settings, stored)
    except MemberFault as fault:  # vip's own base class found the fault: name the method and the member
        raise method_fault(method_id, fault.member, fault.reason, fault.hint) from fault
    except BaseException as error:  # a SystemExit too: a plugin's sys.exit() must not end vip with its code
        if not is_plugin_failure(error):  # a VipError, a real Ctrl-C
            raise
        distribution = distribution_of(METHODS.entry_point(method_id))[0]
        if distribution == "vipcli":  # a built-in's bug
            raise
        raise VipError(f"method '{method_id}' from distribution {distribution} failed to build: "
                       f"{describe_failure(error)}", failure_hint(error, distribution, f"fix or reinstall {distribution}")) \
            from error
    if "_setup" not in vars(method):  # a plugin __init__ that never called Method.__init__: nn.Module fails later
        raise method_fault(method_id, "__init__", "__init__ did not call super().__init__(setup, settings, stored), "
                           "so the method is not set up (nn.Module's state, setup, settings)",
                           "call super().__init__(setup, settings, stored) first in __init__")
    method.id = method_id
    if not stored:
        from vipcli.methods.prompting import warn_same_prompts

        warn_same_prompts(method)
    guard_method(method, method_id, distribution)  # a plugin's exceptions name it
    if before is not None:
        watch(method)  # vip compares the backbone before and after each member it calls
        check_kept(method, "__init__", before)  # before any image is encoded with the changed backbone
    check_on_device(method, "__init__")  # a forgotten self.to(setup.device): before any image is encoded
    return method


def list_methods() -> list[MethodInfo]:
    """Every installed method with what it needs; a broken one is listed with its problem."""
    import dataclasses

    infos = []
    for plugin in METHODS.list():
        base = dict(id=plugin.id, distribution=plugin.distribution, version=plugin.version, target=plugin.target)
        if plugin.conflict:
            infos.append(MethodInfo(**base, problem=plugin.conflict))
            continue
        if plugin.shadowed:  # never imported: the built-in of that id is the one used
            infos.append(MethodInfo(**base, shadowed=plugin.shadowed))
            continue
        try:
            cls = method_class(plugin.id)
        except VipError as error:
            infos.append(MethodInfo(**base, problem=str(error)))  # the message and its fix
            continue
        infos.append(MethodInfo(**base, summary=method_summary(cls), trains=cls.trains, uses_shots=cls.uses_shots,
                                needs_symptoms=cls.needs_symptoms, uses_symptoms=symptoms_matter(cls),
                                settings=tuple(f.name.replace("_", "-") for f in dataclasses.fields(cls.Settings))))
    return infos
