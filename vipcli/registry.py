"""Backbone plugins, discovered through the entry-point group `vip.backbones`, loaded and checked.

`load_backbone` is the one way the core gets a backbone: it builds the plugin, names the plugin in
any exception the plugin raises (`PluginError`), freezes it and runs the cheap contract checks
before any image is encoded. `run_backbone_options` / `rebuild_backbone_options` make a run's
backbone options portable (absolute paths, small config files copied into the run directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vipcli.errors import VipError
from vipcli.plugins import (PluginError, PluginGroup, PluginInfo, guard_calls,
                            is_own_distribution, is_plugin_failure, plugin_failure)

ENTRY_POINT_GROUP = "vip.backbones"
BACKBONES = PluginGroup(ENTRY_POINT_GROUP, "backbone")
BackboneInfo = PluginInfo  # kept for plugins and scripts written against vip 0.1.0
GUARDED_MEMBERS = (
    "tokenize", "embed_tokens", "encode_text_embeds", "encode_text_parts", "encode_image", "image_transform",
    "describe", "modules", "encode_text", "content_lengths", "sequence_lengths", "fingerprint", "freeze",
)
RANDOM_WEIGHTS = "none"
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
CONFIG_MAX_BYTES = 1 << 20  # config files up to 1 MiB are copied into a run directory
COMPANION_MAX_BYTES = 64 << 20  # files read beside such a config (a tokenizer) up to 64 MiB each go with it
RUN_FILES_FOLDER = "backbone"  # inside the run directory: backbone/arch/<name>, backbone/pretrained/<name>


def list_backbones() -> list[PluginInfo]:
    """Every installed backbone plugin, sorted by id (nothing is imported)."""
    return BACKBONES.list()


def backbone_class(backbone_id: str):
    """Import the plugin registered as `backbone_id` and return its class, a `vipcli.backbone.Backbone` subclass
    (a method class registered as a backbone by mistake is one error saying which entry-point group it belongs
    to; anything else that is not a Backbone subclass, e.g. a module or a constant, one error naming it)."""
    from vipcli.backbone import Backbone
    from vipcli.methods.base import Method

    loaded = BACKBONES.load(backbone_id)
    if isinstance(loaded, type) and issubclass(loaded, Method):
        raise BACKBONES.misplaced(backbone_id, "vip.methods", "method (a vipcli.methods.Method)")
    if not (isinstance(loaded, type) and issubclass(loaded, Backbone)):
        raise BACKBONES.wrong_kind(backbone_id, loaded, "vipcli.backbone.Backbone")
    _check_not_abstract(loaded, backbone_id)
    return loaded


def _check_not_abstract(cls, backbone_id: str) -> None:
    """Refuse a backbone class that leaves one of `Backbone`'s abstract members undefined (a plugin that forgot
    `describe` or `image_transform`): Python would refuse to build it with a TypeError that reads as a bad
    --arch/--pretrained; named here, when the class is loaded, `vip backbones list` marks it unavailable too."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if not missing:
        return
    listed = ", ".join(missing)
    raise PluginError("backbone", backbone_id, BACKBONES.distribution(backbone_id) or "unknown", listed,
                      f"{cls.__name__} does not define {listed}, which every backbone must, so it cannot be built",
                      f"define {listed} in {cls.__name__} (README 'Writing a backbone plugin' lists each member and "
                      "what vip expects of it)")


def _main_process() -> bool:
    """False on a torchrun rank other than 0: its warnings would repeat rank 0's."""
    from vipcli.distributed import world_from_env

    return world_from_env().main


def backbone_fault(backbone, member: str, reason: str, hint: str | None = None) -> PluginError:
    """A `PluginError` naming a loaded backbone (its id and distribution) and the member at fault."""
    backbone_id = getattr(backbone, "id", None) or type(backbone).__name__
    try:
        distribution = BACKBONES.distribution(backbone_id)
    except VipError:  # built outside the registry (a script, a test)
        distribution = "unknown"
    return PluginError("backbone", backbone_id, distribution, member, reason, hint)


def check_batch_features(backbone, features, images: int) -> None:
    """Refuse image features that are not one row of `embed_dim` per image of a batch of `images`: the
    load-time checks encode one image, so a plugin that drops or merges the rows of a larger batch (returns
    `features[:1]`, pools over the batch) would otherwise fail deep inside vip, or file features under the
    wrong images."""
    import torch

    dim = getattr(backbone, "embed_dim", None)
    shape = tuple(features.shape) if isinstance(features, torch.Tensor) else None
    if shape == (images, dim):
        return
    got = f"features {list(shape)}" if shape is not None else f"a {type(features).__name__}"
    raise backbone_fault(backbone, "encode_image", f"for a batch of {images} images it returned {got}, not "
                         f"[{images}, D={dim}]", "return one feature row per image of the batch, whatever the batch "
                         f"size ('vip backbones check {getattr(backbone, 'id', 'ID')}' encodes a batch of 2)")


OFFLINE_CHECKS_GROUP = "vip.backbone_offline_checks"  # vip's own: id -> check(arch, pretrained), no torch imported


def check_weights_early(backbone_id: str, arch: str | None, pretrained: str | None) -> None:
    """Before a command reads its data: the one-line missing-weights error where vip's own backbone `backbone_id`
    cannot have its weights (offline, not in the hub's cache; `vip_backbones.openclip_weights` for `clip` and
    `biomedclip`, `vip_backbones.hf_weights` for `hf-clip` and `siglip`), in seconds instead of after every image
    was listed, hashed and checked and the model library was imported. Found through the
    entry-point group `vip.backbone_offline_checks`, vip's own entries only; any other backbone is left to its load.
    """
    from importlib.metadata import entry_points

    from vipcli.plugins import distribution_of

    for point in entry_points(group=OFFLINE_CHECKS_GROUP):
        if point.name == backbone_id and is_own_distribution(distribution_of(point)[0]):
            point.load()(arch, pretrained)
            return


def is_random(pretrained: str | None) -> bool:
    """Whether `--pretrained` asks for random weights (`none`)."""
    return (pretrained or "").strip().lower() == RANDOM_WEIGHTS


def load_backbone(backbone_id: str, arch: str | None = None, pretrained: str | None = None, device=None, *,
                  check: bool = True, warn_random: bool = True):
    """Build a frozen, checked backbone by registry id.

    Args:
        backbone_id: entry-point name (`clip`, `hf-clip`, `siglip`, a plugin's id).
        arch: architecture name or config file, as the plugin understands it (None: its default).
        pretrained: weights (tag, hub id, local file/folder, or "none"; None: its default).
        device: torch.device to place the towers on.
        check: run the cheap contract checks (`vipcli.backbone_contract.run_checks`) and raise a
            `PluginError` naming the first broken member.
        warn_random: print a warning when `pretrained` is "none" (random weights).
    Returns:
        A `vipcli.backbone.Backbone` with every weight frozen, whose members raise `PluginError`
        (a `VipError` naming the plugin, its distribution and the member) instead of raw exceptions.
        Its `load_phases` dict says where the load's seconds went: `construct_s` (importing the
        plugin and running its `__init__`; a plugin may record finer phases of it, e.g. `import_s`,
        `build_s`, `weights_s`, `tokenizer_s`), `checks_s`, and `checks` ("ran", "remembered" by an
        earlier load, or "off").
    """
    import time

    import torch

    started = time.perf_counter()
    factory = backbone_class(backbone_id)
    distribution = BACKBONES.distribution(backbone_id)
    if warn_random and is_random(pretrained) and _main_process():
        from rich.markup import escape

        from vipcli import console

        console.warn(escape(f"--pretrained none: backbone '{backbone_id}' has random weights; results mean nothing "
                            "except as a timing or plumbing test"))
    with collections_paused():
        backbone = _construct(factory, backbone_id, distribution, arch, pretrained, device or torch.device("cpu"))
    constructed = time.perf_counter()
    backbone.id = backbone_id
    if not is_own_distribution(distribution):
        _note_options(backbone, arch, pretrained)
        _warn_other_device(backbone, distribution, device or torch.device("cpu"))
    guard_calls(backbone, GUARDED_MEMBERS, "backbone", backbone_id, distribution)
    backbone.freeze()
    checks = _enforce_contract(backbone, distribution) if check else "off"
    if warn_random and pretrained is None and _main_process():
        _warn_random_by_default(backbone, backbone_id)
    phases = getattr(backbone, "load_phases", None)
    phases = dict(phases) if isinstance(phases, dict) else {}
    phases.update(construct_s=round(constructed - started, 3), checks_s=round(time.perf_counter() - constructed, 3),
                  checks=checks)
    try:
        backbone.load_phases = phases
    except AttributeError:  # a plugin with __slots__: no phases recorded
        pass
    if freeze_after_loads:
        _freeze_loaded()
    return backbone


freeze_after_loads = False  # set by the `vip` command (`vipcli.cli.main.run`), never by the Python interface


def _freeze_loaded() -> None:
    """Collect once, then move every object alive now (the libraries, the backbone, the data listing) out of
    the garbage collector's later passes (`gc.freeze`): only the `vip` process does this, where they live as
    long as the command.

    Otherwise its next full collections, one while a sweep trains and one at exit, walk the ~450,000
    objects torch and open_clip made, 0.25-0.35 s of CPU each on the 2-core machine, and the young
    collections walk the objects the load made once more. Frozen objects are never freed, so the
    garbage of the load is collected first, and what an earlier load froze is put back first (`gc.unfreeze`):
    a command that loads a backbone more than once (`vip benchmark --speed`) frees the cycles of the runs
    it has finished with instead of keeping them to the end. A caller's own objects (the Python interface in
    a notebook) are left alone, since the interface never sets `freeze_after_loads`.
    """
    import gc

    if gc.isenabled():  # a caller that turned collections off keeps its objects as they are
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def _note_options(backbone, arch: str | None, pretrained: str | None) -> None:
    """Keep on a third-party backbone the `--arch`/`--pretrained` it was built with (a local path made absolute)
    as `built_with`, which the feature cache keys on besides `describe()`: a plugin whose describe() leaves out
    the config or seed these options choose then encodes each choice afresh, instead of serving one choice's
    cached features to another. vip's own backbones describe every option they read and are left as they are."""
    try:
        backbone.built_with = {option: _portable(option, value, {})
                               for option, value in (("arch", arch), ("pretrained", pretrained))}
    except AttributeError:  # a plugin with __slots__: keyed on describe() alone
        pass


def _warn_other_device(backbone, distribution: str, asked) -> None:
    """One warning when a third-party backbone says its towers are on another device than it was asked for
    (its __init__ ignored `device=`): it would encode there, e.g. on the CPU for a whole GPU run."""
    import torch

    from vipcli.backbone_contract import same_device

    found = getattr(backbone, "device", None)
    if not isinstance(found, torch.device) or same_device(found, asked) or not _main_process():
        return
    from rich.markup import escape

    from vipcli import console

    console.warn(escape(f"backbone '{backbone.id}' (from {distribution}) was asked for device {asked} but says its "
                        f"towers are on {found}, where it will encode: if that is not meant, build them on the device "
                        "__init__ is given (self.device = torch.device(device); modules .to(self.device))"))


def _warn_random_by_default(backbone, backbone_id: str) -> None:
    """Warn when a backbone loaded without `--pretrained` describes random weights (a plugin whose
    default is `none`): the same warning as an explicit `--pretrained none`, since a report says so too."""
    from vipcli import console
    from vipcli.report.notices import random_weights

    if not callable(getattr(backbone, "describe", None)):
        return  # a broken describe fails where the run records it, with its own message
    try:
        described = backbone.describe()
    except VipError:
        return
    if isinstance(described, dict) and random_weights({"backbone_describe": described}):
        from rich.markup import escape

        console.warn(escape(f"backbone '{backbone_id}' has random weights by default (--pretrained loads weights "
                            "where the backbone offers any); results mean nothing except as a timing or plumbing "
                            "test"))


@contextlib.contextmanager
def collections_paused():
    """No automatic garbage collection inside the block (it resumes after, if it was on).

    Importing a model library and building a model create hundreds of thousands of objects that live
    as long as the process; the collector would walk all of them again each time their number grows
    by a quarter: four full collections while open_clip is imported and ViT-B/16 built, 0.5 s of the
    load on a 2-core CPU. Paused, it walks them at most once, later.
    """
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _construct(factory, backbone_id: str, distribution: str, arch, pretrained, device):
    name = getattr(factory, "__name__", "factory")
    _check_signature(factory, backbone_id, distribution, name)
    try:
        return factory(arch=arch, pretrained=pretrained, device=device)
    except BaseException as error:
        if not is_plugin_failure(error):  # a VipError, a real Ctrl-C
            raise
        raise plugin_failure(  # (a sys.exit() in __init__ is not the plugin's to end vip: `failure_hint` says so)
            error, "backbone", backbone_id, distribution, f"{name}.__init__",
            f"check --arch/--pretrained; if they are right, report it to the authors of {distribution.split(' ')[0]} "
            "with the traceback that VIP_DEBUG=1 shows",
        ) from error


def _check_signature(factory, backbone_id: str, distribution: str, name: str) -> None:
    """Refuse a backbone class that cannot be built as `Cls(arch=..., pretrained=..., device=...)`."""
    import inspect

    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C factory: nothing to check
        return
    try:
        signature.bind(arch=None, pretrained=None, device=None)
    except TypeError:
        raise PluginError(
            "backbone", backbone_id, distribution, f"{name}.__init__", f"its signature {signature} does not take "
            "arch=, pretrained= and device=",
            "vip builds every backbone as Cls(arch=..., pretrained=..., device=...): give __init__ those three "
            "keyword arguments, each with a default of None",
        ) from None


CHECKS_FOLDER = "checks"  # under the cache root: one small file per backbone that passed the load-time checks
CHECKS_PASSED_TEXT = "passed the load-time contract checks\n"


def _checks_passed_marker(backbone, distribution: str):
    """The file that records that this exact backbone (plugin, its version and code, class, weights,
    device type; for a third-party backbone also the `--arch`/`--pretrained` it was built with, `built_with`)
    passed the load-time checks.

    Keyed on `built_with` as the feature cache is: a plugin whose describe() leaves out the seed or config these
    options choose keeps a pass, and probes, per choice, so `--pretrained 5` after `--pretrained 0` is checked
    afresh rather than refused as other weights under one describe() (its features are cached apart too)."""
    import hashlib

    from vipcli.features import default_cache_dir

    from vipcli import __version__
    from vipcli.backbone_contract import CONTRACT_VERSION
    from vipcli.plugins import plugin_source_digest

    cls = type(backbone)
    identity = "|".join([backbone.id, f"{cls.__module__}.{cls.__qualname__}", distribution,
                         f"code-{plugin_source_digest(cls)}", backbone.fingerprint(),
                         str(getattr(backbone, "device", "cpu")).split(":")[0], f"contract-{CONTRACT_VERSION}",
                         f"vip-{__version__}"])  # an edited plugin, a new check, or a new vip runs them again
    built_with = getattr(backbone, "built_with", None)
    if isinstance(built_with, dict):  # a third party's options (absent for vip's own: their markers unchanged)
        identity += "|" + json.dumps(built_with, sort_keys=True)
    return default_cache_dir() / CHECKS_FOLDER / hashlib.sha256(identity.encode()).hexdigest()[:32]


def _marker_text(backbone_id: str) -> str:
    return f"{CHECKS_PASSED_TEXT}backbone: {backbone_id}\n"


def forget_contract_passes(backbone_id: str) -> int:
    """Remove every remembered pass of the load-time checks for `backbone_id` (any weights, device
    or plugin version); the next load runs them again. Returns how many were removed.

    Called when `vip backbones check` finds a fault: no later load may trust an earlier pass. A cache folder
    vip does not trust (`vipcli.cache_trust`) has no pass to forget (no load reads one there), and its refusal
    must not take the place of the fault being reported.
    """
    from vipcli.features import default_cache_dir

    try:
        folder = default_cache_dir() / CHECKS_FOLDER
    except VipError:
        return 0
    removed = 0
    for marker in folder.glob("*") if folder.is_dir() else ():
        try:
            if marker.is_file() and marker.stat().st_size < 4096 and marker.read_text() == _marker_text(backbone_id):
                marker.unlink()
                _probes_file(marker).unlink(missing_ok=True)  # kept for that pass alone
                removed += 1
        except (OSError, UnicodeDecodeError):
            pass  # a marker that cannot be read or removed: an unwritable cache keeps it
    return removed


def _enforce_contract(backbone, distribution: str) -> str:
    """Run the cheap contract checks once per backbone (the pass is remembered in the cache folder).

    Returns "ran" or "remembered" (an earlier load of this backbone passed them).
    """
    from vipcli.backbone_contract import first_failure, run_checks
    from vipcli.cache_use import cache_in_use

    try:
        marker = _checks_passed_marker(backbone, distribution) if cache_in_use() else None  # None: --no-cache
        remembered = marker is not None and marker.is_file()
    except Exception:  # a plugin whose fingerprint fails is caught by the checks themselves
        marker, remembered = None, False
    if remembered:
        _same_weights_as_remembered(backbone, distribution, marker)
        return "remembered"
    checks = run_checks(backbone)
    failure = first_failure(checks)
    if failure is None:
        if marker is not None:
            _remember_pass(backbone, distribution, marker)
        return "ran"
    from vipcli.console import counted

    others = sum(1 for c in checks if c.ok is False) - 1
    more = f"; {counted(others, 'more check')} failed" if others else ""
    raise PluginError(
        "backbone", backbone.id, distribution, failure.member, f"{failure.detail}{more}",
        f"run 'vip backbones check {backbone.id}' with the same --arch/--pretrained for the whole contract table",
    )


def _remember_pass(backbone, distribution: str, marker: Path) -> None:
    """Keep the pass of the load-time checks in `marker`, a third-party backbone's probes first: a pass remembered
    without them (a command killed between the two writes) would let later loads of other weights through unchecked
    for good. Each file is written whole or not at all; an unwritable cache only means the checks run again."""
    from vipcli.atomic import write_atomic

    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        _remember_probes(backbone, distribution, marker)
        write_atomic(marker, _marker_text(backbone.id))
    except OSError:
        pass


def _probes_file(marker: Path) -> Path:
    """Where a third-party backbone's remembered pass keeps its `probe_features` (beside the pass's marker)."""
    return marker.with_name(marker.name + ".probes.json")


def _remember_probes(backbone, distribution: str, marker: Path) -> None:
    """Keep a third-party backbone's `probe_features` beside its remembered pass, for `_same_weights_as_remembered`
    (vip's own backbones describe their weights fully and are left out). OSError is the caller's."""
    from vipcli.backbone_contract import probe_features

    if is_own_distribution(distribution):
        return
    try:
        probes = probe_features(backbone).tolist()
    except Exception:  # noqa: BLE001 - the checks just passed; a probe that fails is only not remembered
        return
    from vipcli.atomic import write_atomic

    write_atomic(_probes_file(marker), json.dumps(probes))


def _same_weights_as_remembered(backbone, distribution: str, marker: Path) -> None:
    """Refuse a third-party backbone whose probes give other features than at the load its pass was remembered
    from, although `describe()` is the same (an unseeded random init): cached features, checkpoints and predictions
    would mix weights. Costs one text and one image pass at a remembered load."""
    import torch

    from vipcli.backbone_contract import UNSEEDED_FIX, other_weights, probe_features

    try:
        remembered = torch.tensor(json.loads(_probes_file(marker).read_text()))
    except (OSError, ValueError, TypeError):  # none kept (vip's own, an older vip, an unwritable cache), or damaged
        if not is_own_distribution(distribution):
            with contextlib.suppress(OSError):  # kept now, so that later loads are held to these weights
                _remember_probes(backbone, distribution, marker)
        return
    apart = other_weights(remembered, probe_features(backbone))
    if apart is not None:
        raise PluginError("backbone", backbone.id, distribution, "describe",
                          f"this load and an earlier one with the same describe() give the probe prompts and image "
                          f"{apart}: the weights are not what describe() says (an unseeded random init, or a "
                          "weights file replaced under the same --pretrained path that describe() does not digest?), "
                          "so cached features, runs and predictions would mix weights", UNSEEDED_FIX)


# Run directories: portable backbone options ---------------------------------------------------


@dataclass(frozen=True)
class RunBackboneOptions:
    """What a run directory stores to rebuild its backbone from anywhere.

    Attributes:
        arch, pretrained: the option values to store (path-like values made absolute; others as given).
        files: run-relative destination -> source file, small config files to copy into the run
            (e.g. {"backbone/arch/tiny-clip.json": Path("/abs/tiny-clip.json")}).
    """

    arch: str | None
    pretrained: str | None
    files: dict[str, Path] = field(default_factory=dict)


def _split_schema(value: str) -> tuple[str, str]:
    """("local-dir:", "rest") for open_clip's local-dir schema, else ("", value)."""
    return ("local-dir:", value[len("local-dir:"):]) if value.startswith("local-dir:") else ("", value)


def _local_path(value: str | None) -> Path | None:
    """The existing file or folder `value` names (after `local-dir:` and `~`), or None."""
    if not value:
        return None
    _, rest = _split_schema(value)
    path = Path(os.path.expanduser(rest))
    return path if path.exists() else None


def _portable(option: str, value: str | None, files: dict[str, Path], companions: Sequence[str] = ()) -> str | None:
    path = _local_path(value)
    if path is None:
        return value  # a tag, a hub id, "none", or None: stored as given
    schema, _ = _split_schema(value)
    absolute = path.resolve()
    if absolute.is_file() and absolute.suffix.lower() in CONFIG_SUFFIXES and absolute.stat().st_size <= CONFIG_MAX_BYTES:
        beside = [absolute.parent / name for name in companions
                  if name != absolute.name and (absolute.parent / name).is_file()]
        # with companions, in a folder named as the original's: a backbone may name a config by its folder
        folder = f"{RUN_FILES_FOLDER}/{option}" + (f"/{absolute.parent.name}" if beside else "")
        if all(file.stat().st_size <= COMPANION_MAX_BYTES for file in beside):  # else: the original is read
            for file in [absolute, *beside]:
                files[f"{folder}/{file.name}"] = file
    return schema + str(absolute)


def run_backbone_options(backbone_id: str, arch: str | None, pretrained: str | None,
                         companions: Sequence[str] = ()) -> RunBackboneOptions:
    """The `--arch`/`--pretrained` values a run should store, and the config files to copy into it.

    A value naming an existing local file or folder (also after `local-dir:` or `~`) is stored as an
    absolute path, so the run predicts from any working directory; such a file that is a small config
    (.json/.yaml up to 1 MiB, e.g. an open_clip model config given as `--arch`) is also copied into the
    run directory, with the files named in `companions` that lie beside it (a transformers config.json's
    tokenizer and preprocessor files), so the run still rebuilds its backbone when the original is
    moved or edited. Tags, hub ids and `none` are stored as given. Weights are never copied.

    Args:
        backbone_id: the registry id (kept for plugins whose options need it; unused by the built-ins).
        arch, pretrained: the options as the user passed them.
        companions: file names the backbone reads beside a config file (its `config_companions`).
    """
    files: dict[str, Path] = {}
    return RunBackboneOptions(_portable("arch", arch, files, companions),
                              _portable("pretrained", pretrained, files, companions), files)


def copy_run_files(options: RunBackboneOptions, run_dir: str | Path) -> None:
    """Copy `options.files` into `run_dir` (call it on the temporary run folder before it is renamed)."""
    for relative, source in options.files.items():
        target = Path(run_dir) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def check_backbone_paths(run_dir: str | Path, **options: str | None) -> None:
    """VipError when a local path a run's backbone was built from (an `--arch`/`--pretrained` value as
    `run_backbone_options` stored it, absolute) is gone: said of the run, since predict takes neither option."""
    for option, value in options.items():
        path = Path(_split_schema(value or "")[1])
        if path.is_absolute() and not path.exists():
            raise VipError(f"{run_dir} was trained with --{option} {path}, which no longer exists",
                           "put it back at that path, or train again with its new path: a run records where "
                           "its backbone's weights and config were, not the files themselves")


def rebuild_backbone_options(run_dir: str | Path, arch: str | None, pretrained: str | None) -> tuple:
    """The (arch, pretrained) to load a run's backbone with, given the values the run stored.

    A stored path whose file was copied into the run (`backbone/<option>/<name>`, or, copied with its
    companions, `backbone/<option>/<folder>/<name>`) is replaced by that copy: it is exactly what the
    run was trained with, wherever the run now lives. Everything else comes back as stored.
    """

    def rebuilt(option: str, value: str | None) -> str | None:
        if not value:
            return value
        schema, rest = _split_schema(value)
        folder, original = Path(run_dir) / RUN_FILES_FOLDER / option, Path(rest)
        copies = [folder / original.name, folder / original.parent.name / original.name]
        copy = next((path for path in copies if path.is_file()), None)
        return schema + str(copy.resolve()) if copy is not None else value

    return rebuilt("arch", arch), rebuilt("pretrained", pretrained)
