"""The shared backbone, kept as it was: a method plugin that changes it is named right after the member that did it.

vip loads one frozen backbone and shares it between a run's training and its predictions and between the rows of a
`vip benchmark` sweep. A plugin that changed it (trained or edited a weight in place, unfroze a parameter, switched a
module to train() mode, registered a hook, set an attribute vip reads) left every later use of it silently
different, and the round-trip check could not see it: the rebuilt method reads the same changed backbone.

`backbone_state` takes a snapshot of what torch keeps on the host: each parameter's and buffer's identity, version
counter (bumped by every in-place change, under `torch.no_grad()` too), storage and `requires_grad`; each module's
`training` flag and hook dictionaries; the module tree; the attributes and functions of the backbone vip reads. A
write through `.data` (`weight.data.mul_(2)`) or numpy bumps no version counter, so the snapshot also copies a few
elements of every weight (`WeightSample`: a small tensor whole, a larger one's first, middle and last 16 elements,
in one `torch.cat` per dtype on the weights' device; compared bit for bit, one host sync per dtype): a write to a
whole weight is seen, one to a few rows or elements of a large weight may not be. A snapshot and its comparison cost
0.15-0.3 ms on the tests' tiny CLIP and 1.1-1.6 ms on ViT-B-16 (276 modules, 303 tensors; a shared 2-core CPU,
where its text tower takes 1.6 s over two prompts) without the sampled elements, which add 0.23 ms there when the
machine is quiet (0.59 -> 0.83 ms), 0.3-0.5 ms at load 10 (14,497 elements in 907 runs; sampling one element a row instead, which would see a write to any row, read 394,375 elements
in 2-8 ms). vip compares one before and after each member of a plugin method it calls (`__init__`, `fit`, a
sweep's batched fit, an overridden `train()`, `prepare`, `forward` over an evaluation, `state_tensors`, `record`,
`explain`, `load_state_tensors`). Every byte of every weight (`weights_digest`, 0.47-0.68 s on ViT-B-16) is compared
once a phase, not once a member: around `fit`; from the end of `fit` to the end of what follows it (the evaluation,
the round trip's `state_tensors`, `record` and rebuild; `check_kept_since_fit`), before the run or the sweep's row is
kept; and at `vip predict`, from before the run's method is rebuilt to after its `prepare`
(`whole_state_before_rebuild`), before any image is read. vip's own methods are not watched: its tests cover them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from vipcli.plugins import PluginError

# what vip reads of a backbone besides its modules: the attributes `vipcli.backbone.Backbone` declares ...
BACKBONE_ATTRIBUTES = ("id", "embed_dim", "token_width", "context_length", "num_prefix_tokens", "pad_token_id",
                       "end_token_id", "logit_scale", "device", "cuda_graphs", "plain_text_tower", "image_domain")
# ... and the functions it calls (replaced on the instance or on the class, every later use runs the new one)
BACKBONE_FUNCTIONS = ("tokenize", "embed_tokens", "encode_text_embeds", "encode_text_parts", "encode_text",
                      "encode_image", "image_transform", "describe", "modules", "content_lengths", "sequence_lengths")
HOOK_KINDS = {"_forward_hooks": "forward hook", "_forward_pre_hooks": "forward pre-hook",  # `_module_record`'s order
              "_backward_hooks": "backward hook", "_backward_pre_hooks": "backward pre-hook"}
GLOBAL_HOOKS = {"_global_forward_hooks": "global module forward hook",
                "_global_forward_pre_hooks": "global module forward pre-hook",
                "_global_backward_hooks": "global module backward hook",
                "_global_backward_pre_hooks": "global module backward pre-hook"}
SHARED = ("vip shares one loaded backbone between a run's training and its predictions and between the rows of a "
          "benchmark sweep, so vip predict and the later rows would silently use the changed one")
FIXES = {
    "weights": "leave the backbone frozen: learn parameters of the method's own (an nn.Parameter on self, a copy "
               "such as nn.Parameter(weight.detach().clone()) to start from a backbone weight) and call the "
               "backbone under torch.no_grad() where nothing of yours needs its gradient",
    "mode": "leave the backbone's modules in eval mode: call .eval() on any you switched to train() before the "
            "member returns",
    "hooks": "remove every hook before the member returns (handle = module.register_forward_hook(...); ...; "
             "handle.remove()), or work on what the backbone returns instead",
    "attributes": "leave the backbone's attributes and functions as it set them: keep a value or a wrapper of your "
                  "own on the method (self.NAME)",
}
_MISSING = object()
_watched: weakref.WeakSet = weakref.WeakSet()  # the plugin methods whose members are watched


class BackboneChanged(PluginError):
    """A method plugin changed the shared backbone: a benchmark sweep stops (its other methods' rows would use the
    changed backbone) instead of leaving the plugin out, as it leaves out one that fails otherwise."""


@dataclass(eq=False)
class BackboneState:
    """What `backbone_state` read of a backbone: compare two with `==` (fast), describe them with `changes`."""

    backbone: object
    modules: list = field(default_factory=list)  # every module under backbone.modules(), in order
    records: list = field(default_factory=list)  # per module: (training, hook keys, tensors)
    attributes: tuple = ()
    global_hooks: tuple = ()
    fingerprint: tuple = ()  # per dtype: the sampled elements of the weights (`WeightSample`), copied then
    sample: object = None  # the `WeightSample` they were read through (names each element's tensor)
    digests: tuple | None = None  # `weights_digest`: every byte of every weight, for a state taken `whole`

    def __eq__(self, other) -> bool:
        return (isinstance(other, BackboneState) and self.global_hooks == other.global_hooks
                and self.digests == other.digests
                and len(self.attributes) == len(other.attributes)
                and all(_same(a, b) for a, b in zip(self.attributes, other.attributes))
                and len(self.modules) == len(other.modules)
                and all(a is b for a, b in zip(self.modules, other.modules)) and self.records == other.records
                and same_fingerprint(self.fingerprint, other.fingerprint))


def backbone_state(backbone, whole: bool = False) -> BackboneState:
    """A snapshot of everything of `backbone` a method could change and vip would then use (no tensor is read but
    a 0-d `logit_scale` and the sampled elements); `whole`: every byte of every weight too (`weights_digest`),
    taken around a fit, where a write to a few rows through `.data` would fall between the sampled elements."""
    if backbone is None:
        return BackboneState(None)
    modules = [module for root in backbone_roots(backbone) for module in root.modules()]
    records = [_module_record(module) for module in modules]
    sample = weight_sample(backbone, modules, records)
    return BackboneState(backbone, modules, records, _attributes(backbone), _global_hooks(), sample.read(), sample,
                         weights_digest(modules) if whole else None)


def weights_digest(modules: list[nn.Module]) -> tuple:
    """(module index, tensor name, CRC-32 of its bytes) of every parameter and buffer of `modules`: a write through
    `.data` or numpy to any element changes its tensor's CRC (a weight on a GPU is copied to the host to be read).
    It reads every byte, so vip takes it around `fit` only (before and after: twice a run or sweep row), at 1.5 ms a
    digest on the toy backbone (4 MB), 43-53 ms on the small CLIP (92 MB) and 0.37-0.45 s on ViT-B-16 (600 MB), on
    the shared 2-core CPU at load 7.7."""
    import zlib

    found = []
    for index, module in enumerate(modules):
        for name, tensor in [*module._parameters.items(), *module._buffers.items()]:
            if tensor is None or tensor.layout != torch.strided or tensor.device.type == "meta" or not tensor.numel():
                continue
            host = tensor.detach().reshape(-1).cpu()  # no copy for a contiguous tensor on the CPU
            found.append((index, name, zlib.crc32(host.view(torch.uint8).numpy())))
    return tuple(found)


def backbone_roots(backbone) -> list[nn.Module]:
    """The torch modules holding the backbone's weights (`Backbone.modules()`; none for an object without it)."""
    modules = getattr(backbone, "modules", None)
    if not callable(modules):
        return []
    try:
        return [module for module in modules() if isinstance(module, nn.Module)]
    except Exception:  # the backbone plugin's own fault, which its contract check names; nothing to compare here
        return []


def _module_record(module: nn.Module) -> tuple:
    """(training, the keys of each hook dictionary, (name, id, version, storage, requires_grad) per tensor)."""
    hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks, module._backward_pre_hooks)
    parameters, buffers = module._parameters, module._buffers
    tensors = [_tensor_record(name, t) for name, t in parameters.items()] if parameters else []
    if buffers:
        tensors += [_tensor_record(name, t) for name, t in buffers.items()]
    return module.training, tuple(tuple(hook) if hook else () for hook in hooks), tuple(tensors)


def _tensor_record(name: str, tensor: torch.Tensor | None) -> tuple:
    if tensor is None:
        return name, None, None, None, None
    return name, id(tensor), _version(tensor), _storage(tensor), tensor.requires_grad


def _version(tensor: torch.Tensor) -> int | None:
    try:
        return tensor._version
    except RuntimeError:  # an inference tensor keeps no version counter
        return None


def _storage(tensor: torch.Tensor) -> int | None:
    try:
        return tensor.data_ptr()
    except RuntimeError:  # a tensor without storage (sparse, functional)
        return None


BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # element size -> integers of that size
SAMPLE_RUN = 16  # elements in each run read of a larger tensor: its first, its middle and its last 16
_samples: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # backbone -> its `WeightSample`


@dataclass(eq=False)
class WeightSample:
    """Views of a few elements of every parameter and buffer of a backbone, made once: reading them (`read`) costs
    one `torch.cat` per dtype on the weights' device and no host sync; comparing two readings (`same_fingerprint`)
    one sync per dtype.

    A write through `.data` (`weight.data.mul_(2)`, `weight.data.copy_(...)`), or through numpy, bumps no version
    counter, so only the values show it. Each view reads its tensor's storage as it is when read: a tensor of up to
    `3 * SAMPLE_RUN` elements whole, a larger one in three contiguous runs (its first, middle and last
    `SAMPLE_RUN` elements; contiguous runs are what `torch.cat` copies fast: strided samples, one a row, cost 10-50
    times as much). A write to a whole tensor is seen; one to a few rows or elements of a large tensor may fall
    between the runs."""

    key: tuple = ()  # (id, data_ptr) of every tensor the views were made for
    views: dict = field(default_factory=dict)  # dtype -> [view]
    labels: dict = field(default_factory=dict)  # dtype -> [(module index, tensor name, elements)], a tensor's runs
    fresh: dict = field(default_factory=dict)  # dtype -> {position in views: tensor} copied anew (not contiguous)

    def read(self) -> tuple:
        """The sampled elements now, one tensor per dtype (copies: later writes do not reach them)."""
        readings = []
        for dtype, views in self.views.items():
            fresh = self.fresh.get(dtype)
            if fresh:
                views = [_runs(fresh[i])[0] if i in fresh else view for i, view in enumerate(views)]
            readings.append(torch.cat(views) if len(views) > 1 else views[0].clone())
        return tuple(readings)

    def changed(self, before: tuple, after: tuple) -> list[tuple[int, str]]:
        """(module index, tensor name) of every tensor whose sampled elements differ between two readings."""
        found = []
        for labels, old, new in zip(self.labels.values(), before, after):
            if _same_bits(old, new):
                continue
            differs = (_bits(old).view(old.numel(), -1) != _bits(new).view(new.numel(), -1)).any(dim=1).tolist()
            start = 0
            for module, name, length in labels:
                if any(differs[start:start + length]):
                    found.append((module, name))
                start += length
        return found


def weight_sample(backbone, modules: list[nn.Module], records: list[tuple]) -> WeightSample:
    """The backbone's `WeightSample`, made once and kept while its tensors stay the same objects and storage."""
    key = tuple((entry[1], entry[3]) for record in records for entry in record[2])
    try:
        kept = _samples.get(backbone)
    except TypeError:  # not weak-referenceable
        kept = None
    if kept is not None and kept.key == key:
        return kept
    sample = _make_sample(modules, key)
    try:
        _samples[backbone] = sample
    except TypeError:
        pass
    return sample


def _make_sample(modules: list[nn.Module], key: tuple) -> WeightSample:
    sample = WeightSample(key)
    for index, module in enumerate(modules):
        for name, tensor in [*module._parameters.items(), *module._buffers.items()]:
            if tensor is None or tensor.layout != torch.strided or tensor.device.type == "meta" or not tensor.numel():
                continue
            views = sample.views.setdefault(tensor.dtype, [])
            runs = _runs(tensor)
            if not tensor.is_contiguous():  # read through a copy: copied anew at each reading
                sample.fresh.setdefault(tensor.dtype, {})[len(views)] = tensor
            views += runs
            sample.labels.setdefault(tensor.dtype, []).append((index, name, sum(run.numel() for run in runs)))
    return sample


def _runs(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Views of `tensor`'s elements in storage order: all of a small one, else its first, middle and last
    `SAMPLE_RUN` (one copy of them, for a tensor that is not contiguous)."""
    flat = tensor.detach().view(-1) if tensor.is_contiguous() else None
    count = tensor.numel()
    if count <= 3 * SAMPLE_RUN:
        return [flat if flat is not None else tensor.detach().reshape(-1)]
    middle = (count - SAMPLE_RUN) // 2
    if flat is None:  # the same elements of a strided tensor, as one copy of 48 (copying the tensor costs more)
        positions = torch.cat([torch.arange(start, start + SAMPLE_RUN) for start in (0, middle, count - SAMPLE_RUN)])
        return [tensor.detach()[torch.unravel_index(positions.to(tensor.device), tensor.shape)]]
    return [flat[:SAMPLE_RUN], flat[middle:middle + SAMPLE_RUN], flat[count - SAMPLE_RUN:]]


def same_fingerprint(before: tuple, after: tuple) -> bool:
    """Whether two readings of a `WeightSample` hold the same bits (NaN equals NaN; one host sync per dtype)."""
    return len(before) == len(after) and all(_same_bits(old, new) for old, new in zip(before, after))


def _same_bits(old: torch.Tensor, new: torch.Tensor) -> bool:
    return old.shape == new.shape and torch.equal(_bits(old), _bits(new))


def _bits(values: torch.Tensor) -> torch.Tensor:
    """`values` (1-d) seen as integers of their size: compared bit for bit, NaN is no different from another value
    (comparing as int32 is ten times as fast as comparing bytes)."""
    return values.view(BITS.get(values.element_size(), torch.uint8))


def _attributes(backbone) -> tuple:
    """The attributes vip reads (a tensor by identity, version, storage and, when 0-d, value: a write through
    `.data` bumps no version), then the functions it calls, each as the instance and as its class hold it."""
    values = []
    for name in BACKBONE_ATTRIBUTES:
        value = getattr(backbone, name, _MISSING)
        if isinstance(value, torch.Tensor):
            scalar = float(value) if value.dim() == 0 and value.device.type != "meta" else None
            value = ("tensor", id(value), _version(value), _storage(value), scalar)
        values.append(value)
    own = getattr(backbone, "__dict__", {})
    values += [(own.get(name, _MISSING), getattr(type(backbone), name, _MISSING)) for name in BACKBONE_FUNCTIONS]
    return tuple(values)


def _global_hooks() -> tuple:
    """The keys of torch's global module hooks (`register_module_forward_hook` & co.), which every module runs."""
    from torch.nn.modules import module as torch_module

    return tuple(tuple(getattr(torch_module, name, ())) for name in GLOBAL_HOOKS)


# --- describing what changed ---------------------------------------------------------------------

# what a change says, "{}" standing for the names it applies to, most harmful first within each kind of `FIXES`
THROUGH_DATA = "changed {} through .data (a write torch's version counter does not see)"
CHANGED = ("changed {} in place", THROUGH_DATA, "replaced {}", "added {}", "removed {}",
           "unfroze {} (requires_grad=True)", "froze {} (requires_grad=False)",
           "switched {} to train() mode (dropout then draws anew on every pass)", "switched {} to eval() mode",
           "registered a {}", "removed a {}", "set {}", "replaced {} on the instance",
           "replaced {} on the backbone's class")


def changes(before: BackboneState, after: BackboneState) -> list[tuple[str, str, str]]:
    """(kind, what changed with "{}" for the name, name) for every difference from `before` to `after`, most
    harmful first; kinds are the keys of `FIXES`, the templates those of `CHANGED`."""
    names = module_names(after.backbone)
    found = _structure_changes(before, after, names)
    if not found:
        for module, old, new in zip(after.modules, before.records, after.records):
            found += _module_changes(names.get(id(module), type(module).__name__), old, new)
        found += _value_changes(before, after, names, {name for _, _, name in found})
    found += _attribute_changes(before.attributes, after.attributes)
    found += [("hooks", "registered a {}", GLOBAL_HOOKS[name]) for name, old, new
              in zip(GLOBAL_HOOKS, before.global_hooks, after.global_hooks) if set(new) - set(old)]
    kinds = list(FIXES)
    return sorted(found, key=lambda change: (kinds.index(change[0]), CHANGED.index(change[1])))


def module_names(backbone) -> dict[int, str]:
    """id(module) -> its name as a user reaches it (`backbone.model.transformer.resblocks.0.attn`)."""
    names = {}
    for index, root in enumerate(backbone_roots(backbone)):
        attribute = next((key for key, value in getattr(backbone, "__dict__", {}).items() if value is root), None)
        prefix = f"backbone.{attribute}" if attribute else f"backbone.modules()[{index}]"
        for name, module in root.named_modules(prefix=prefix):
            names.setdefault(id(module), name)
    return names


def _value_changes(before: BackboneState, after: BackboneState, names: dict[int, str], named: set) -> list[tuple]:
    """The tensors whose sampled values, or whose bytes (`weights_digest`), changed though their version counter did
    not (a write through `.data`)."""
    if before.sample is not after.sample:  # other tensors or storage: `_tensor_changes` names them
        return []
    changed = after.sample.changed(before.fingerprint, after.fingerprint)
    if before.digests is not None and after.digests is not None:
        changed += [(index, name) for (index, name, old), (_, _, new) in zip(before.digests, after.digests)
                    if old != new and (index, name) not in changed]
    found = []
    for index, name in changed:
        module = after.modules[index]
        full = f"{names.get(id(module), type(module).__name__)}.{name}"
        if full not in named:
            named.add(full)
            found.append(("weights", THROUGH_DATA, full))
    return found


def _structure_changes(before: BackboneState, after: BackboneState, names: dict[int, str]) -> list[tuple]:
    if len(before.modules) == len(after.modules) and all(a is b for a, b in zip(before.modules, after.modules)):
        return []
    old, new = {id(module) for module in before.modules}, {id(module) for module in after.modules}
    return ([("weights", "added {}", f"module {names.get(id(m), type(m).__name__)}")
             for m in after.modules if id(m) not in old]
            + [("weights", "removed {}", f"module {type(m).__name__}") for m in before.modules if id(m) not in new])


def _module_changes(name: str, old: tuple, new: tuple) -> list[tuple[str, str, str]]:
    found = []
    (old_training, old_hooks, old_tensors), (training, hooks, tensors) = old, new
    if training != old_training:
        found.append(("mode", "switched {} to train() mode (dropout then draws anew on every pass)" if training
                      else "switched {} to eval() mode", name))
    for kind, old_keys, keys in zip(HOOK_KINDS.values(), old_hooks, hooks):
        if set(keys) - set(old_keys):
            found.append(("hooks", "registered a {}", f"{kind} on {name}"))
        elif set(old_keys) - set(keys):
            found.append(("hooks", "removed a {}", f"{kind} from {name}"))
    return found + _tensor_changes(name, old_tensors, tensors)


def _tensor_changes(module: str, old: tuple, new: tuple) -> list[tuple[str, str, str]]:
    before = {entry[0]: entry for entry in old}
    found = []
    for entry in new:
        name, previous = f"{module}.{entry[0]}", before.pop(entry[0], None)
        if previous is None:
            found.append(("weights", "added {}", name))
        elif previous[1] != entry[1] or previous[3] != entry[3]:  # another tensor, or other storage (.data = ...)
            found.append(("weights", "replaced {}", name))
        elif previous[2] != entry[2]:
            found.append(("weights", "changed {} in place", name))
        elif previous[4] != entry[4]:
            found.append(("weights", "unfroze {} (requires_grad=True)" if entry[4] else
                          "froze {} (requires_grad=False)", name))
    return found + [("weights", "removed {}", f"{module}.{name}") for name in before]


def _attribute_changes(old: tuple, new: tuple) -> list[tuple[str, str, str]]:
    found = []
    for name, previous, value in zip(BACKBONE_ATTRIBUTES, old, new):
        if _same(previous, value):
            continue
        kind = "weights" if name == "logit_scale" else "attributes"
        if _is_tensor(previous) and _is_tensor(value) and previous[1] == value[1]:  # the same tensor, changed
            shown = f" ({previous[4]:.4g} -> {value[4]:.4g})" if value[4] is not None else ""
            found.append((kind, "changed {} in place", f"backbone.{name}{shown}"))
        else:
            found.append((kind, "set {}", f"backbone.{name} to {_shown(value)} (was {_shown(previous)})"))
    first = len(BACKBONE_ATTRIBUTES)
    for name, previous, value in zip(BACKBONE_FUNCTIONS, old[first:], new[first:]):
        if previous[0] is not value[0]:
            found.append(("attributes", "replaced {} on the instance", f"backbone.{name}"))
        elif previous[1] is not value[1]:
            found.append(("attributes", "replaced {} on the backbone's class", name))
    return found


def _is_tensor(value) -> bool:
    return isinstance(value, tuple) and value[:1] == ("tensor",)


def _same(a, b) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # a value whose == is not a bool (an array)
        return False


def _shown(value) -> str:
    if value is _MISSING:
        return "nothing"
    if _is_tensor(value):
        return "another tensor"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(found: list[tuple[str, str, str]], limit: int = 2) -> str:
    """The changes in words, those of one template together: its first two names and how many more, for the
    first `limit` templates (and how many kinds of change more)."""
    grouped: dict[str, list[str]] = {}
    for _, template, name in found:
        grouped.setdefault(template, []).append(name)
    phrases = [template.format(_listed(_outermost(names))) for template, names in grouped.items()]
    more = len(phrases) - limit
    return "; ".join(phrases[:limit]) + (f" (and {more} other kind(s) of change)" if more > 0 else "")


def _outermost(names: list[str]) -> list[str]:
    """`names` without those inside another of them (`backbone.model.visual` goes when `backbone.model` is there)."""
    kept = set(names)
    return [name for name in names if not any(name.startswith(other + ".") for other in kept if other != name)]


def _listed(names: list[str], limit: int = 2) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# --- the checks ---------------------------------------------------------------------------------


def watch(method) -> None:
    """Compare the backbone before and after each of `method`'s members vip calls (see `kept_by`)."""
    _watched.add(method)


def is_watched(method) -> bool:
    """Whether `method` is a plugin method whose members `kept_by` watches."""
    try:
        return method in _watched
    except TypeError:  # not weak-referenceable: not one vip built
        return False


def check_kept(method, member: str, before: BackboneState | None, doing: str | None = None) -> BackboneState | None:
    """Raise `BackboneChanged` naming `member` when the backbone differs from `before` (taken right before
    `member` ran; `doing`: how the message says what ran, default the member); return the state now, to compare
    the next member with. `before` None (a method not watched): nothing is read."""
    if before is None:
        return None
    after = backbone_state(before.backbone, whole=before.digests is not None)
    if after == before:
        return after
    from vipcli.methods.contract import distribution_of_method

    found = changes(before, after) or [("weights", "changed {} in place", "the backbone")]
    raise BackboneChanged("method", method.id, distribution_of_method(method.id), member,
                          f"{doing or member} changed the shared backbone: {describe(found)}; {SHARED}",
                          FIXES[found[0][0]])


def left_changed(error: Exception, before: BackboneState | None) -> bool:
    """Whether a method's failure (`error`) left the backbone changed since `before`: a sweep then stops
    rather than leave the method out and run the others on the changed backbone."""
    return isinstance(error, BackboneChanged) or (before is not None and backbone_state(before.backbone) != before)


def state_if_watched(method, whole: bool = False) -> BackboneState | None:
    """The backbone's state before a member of `method` runs, when `method` is watched (`whole`: with every byte of
    every weight, `weights_digest`, for a fit); else None (free)."""
    return backbone_state(method.setup.backbone, whole) if is_watched(method) else None


def kept_by(method, member: str, call, *args):
    """`call(*args)`, a member of `method` vip calls outside fit and forward (`state_tensors`, `record`, `explain`),
    refusing it when it changed the backbone (a plugin's; vip's own methods are called as they are)."""
    before = state_if_watched(method)
    result = call(*args)
    check_kept(method, member, before)
    return result


_since_fit: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # plugin method -> the whole state after its fit
AFTER_FIT = "a member called after fit"
AFTER_FIT_DOING = ("the members vip called after fit (eval, prepare, forward over the validation and test splits, "
                   "state_tensors, record, and __init__ and load_state_tensors of the method rebuilt from them)")


def keep_since_fit(method, state: BackboneState | None) -> None:
    """Keep `state` (every byte of every weight, taken right after `method`'s fit) for `check_kept_since_fit`."""
    if state is not None and state.digests is not None:
        _since_fit[method] = state


def check_kept_since_fit(method) -> None:
    """Refuse `method` when every byte of every weight is not as its fit left it (`keep_since_fit`): each member
    after fit was compared on its own, but through the sampled elements only, which a write through `.data` to a
    few rows of a large weight falls between; one digest here sees it, before anything of the run is written."""
    try:
        before = _since_fit.pop(method, None)
    except TypeError:  # not weak-referenceable: not a method vip watches
        return
    check_kept(method, AFTER_FIT, before, AFTER_FIT_DOING)


REBUILT = "__init__, load_state_tensors or prepare"
REBUILT_DOING = "rebuilding the run's method (__init__, load_state_tensors, prepare)"


def whole_state_before_rebuild(method_id: str, backbone) -> BackboneState | None:
    """Every byte of every weight of `backbone` before a plugin method `method_id` is rebuilt from a run (compared
    by `check_kept(method, REBUILT, ...)` once it is ready, before any image is encoded); None for vip's own
    methods and for an id vip cannot resolve (rebuilding it names the problem)."""
    from vipcli.errors import VipError
    from vipcli.methods import METHODS
    from vipcli.plugins import is_own_distribution

    try:
        own = is_own_distribution(METHODS.distribution(method_id))
    except VipError:
        return None
    return None if own else backbone_state(backbone, whole=True)
