"""A method plugin built once more on a second device, so that one which works only where torch makes tensors by
default (the CPU) is named before a run on a GPU fails with torch's "Expected all tensors to be on the same device".

`check_on_device` compares a method's parameters and buffers with `setup.device`, but on the CPU, where every check
of `vip methods check` and of a CPU run takes place, a plugin that forgot `self.to(setup.device)` or made a tensor on
the CPU inside `forward` leaves nothing to see: the CPU is both the default and `setup.device`. vip therefore builds
each plugin method once more with the toy backbone (random weights) on torch's meta device, which stands in for a
GPU: tensors there have shapes and no values, so building and running cost next to nothing. It then checks that
`__init__` left every parameter and buffer on that device, and runs `forward` on two image features there (the
method unfitted: what `fit` makes is not probed). A `MixedDevices` mode watches every torch call meanwhile and names
the first one given tensors on two devices; meta, unlike CUDA, lets some of them through (`x @ cpu_weight`), so the
mode is what finds them. As on a GPU, a 0-d tensor on the CPU (`x * torch.tensor(2.0)`), an index on the CPU
(`x[torch.arange(2)]`), a copy from the CPU (`x.new_tensor(cpu_values)`) and a tensor whose shape alone is read
(`x.expand_as(cpu_mask)`) are allowed.

Meta tensors hold no values: a read of one (`.item()`, `float(t)`, `.tolist()`, `.cpu()` then `.numpy()`) gives ones
of its shape and dtype, so a plugin that reads its backbone's logit scale or its text features as numpy as it is
built is judged too. Where a run is reloaded, a plugin whose `__init__` cannot run on meta (an operation with no meta
kernel, such as `torch.unique`) is built on the CPU with the toy backbone at the run's widths instead and moved to
meta, so that `load_state_tensors` and `forward` are still judged (`_built_on_cpu_moved`). A plugin that cannot be
built or run there for any other reason (it reads a part of its own backbone the toy has not, its code fails on the
stand-in values) is not judged: the probe says nothing, and returns why. It runs once per method class and process (a sweep builds
each method again for every row), quietly, and leaves the global random generators as they were (the CPU's, and
those of CUDA devices already started: the probe never starts CUDA itself).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
import weakref

import torch
from torch.overrides import TorchFunctionMode, resolve_name

PROBE_DEVICE = torch.device("meta")
PROBE_IMAGES = 2  # image features forward is run on
STAND_IN = ("found by building the method once more with its backbone on torch's meta device, a stand-in for a "
            "GPU: on a GPU it fails with \"Expected all tensors to be on the same device\"")
FIXES = {
    "__init__": "create every tensor on setup.device (torch.zeros(..., device=setup.device)), or move it there "
                "(.to(setup.device)) before combining it with what the backbone returns",
    "forward": "create what forward makes on image_features.device (torch.zeros(..., device=image_features.device)), "
               "or make it a buffer in __init__ (self.register_buffer(NAME, tensor)) so that self.to(setup.device) "
               "moves it",
    "load_state_tensors": "move every tensor it keeps to self.setup.device (self.NAME = "
                          "tensors[NAME].to(self.setup.device)), or make it a buffer in __init__ "
                          "(self.register_buffer(NAME, tensor)) and leave loading to Method.load_state_tensors",
}
# torch calls that take tensors on two devices on a GPU too: a copy (`x.new_tensor(cpu_values)`), indexing with an
# index on the CPU, one that reads only the other tensor's shape (`x.expand_as(cpu_mask)`), and what `nn.Module.to`
# calls as it moves a parameter
ACROSS_DEVICES = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.new_tensor, torch.Tensor.type_as,
                  torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put_, torch.Tensor.index_put,
                  torch.Tensor.expand_as, torch.Tensor.view_as, torch.Tensor.reshape_as,
                  torch._has_compatible_shallow_copy_type, torch.Tensor.data.__set__}
_probed: weakref.WeakSet = weakref.WeakSet()  # the method classes probed in this process
_probed_restored: weakref.WeakSet = weakref.WeakSet()  # those probed as a run reloaded them (`probe_restored`)
_backbone: list = []  # the toy backbone on PROBE_DEVICE, made once
_placeholders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # class -> its saved CPU placeholders' names
_placeholders_held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # method -> {name: placeholder}
PLACEHOLDER_FIX = ("assign it a new tensor in fit on self.setup.device (self.NAME = tensor.to(self.setup.device)), or "
                   "make it a buffer in __init__ (self.register_buffer(NAME, tensor)) so that self.to(setup.device) "
                   "moves it")


class MixedDevices(TorchFunctionMode):
    """Names the first torch call given tensors (of one dimension or more) on `device` and on another one."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.found: tuple[str, torch.device] | None = None  # (the call, the other device)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        read = read_stand_in(func, args, kwargs)
        if read is not NOT_A_READ:
            return read
        if self.found is None and func not in ACROSS_DEVICES:
            other = other_device([*args, *kwargs.values()], self.device)
            if other is not None:
                self.found = (resolve_name(func) or getattr(func, "__name__", repr(func)), other)
        return func(*args, **kwargs)


NOT_A_READ = object()
SCALAR_READS = {torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__,
                torch.Tensor.__index__}


def read_stand_in(func, args, kwargs):
    """What a read of a probe tensor's values gives: meta tensors hold none, so `.item()`, `float(t)`, `.tolist()`
    and a copy to the CPU (`.cpu()`, `.to("cpu")`, then `.numpy()`) would end the probe ("not judged"); they read
    ones instead, of the tensor's dtype and shape, so that a plugin reading a value as it is built (its backbone's
    logit scale, its text features as numpy) is still judged. NOT_A_READ for any other call."""
    tensor = args[0] if args else None
    if not (isinstance(tensor, torch.Tensor) and tensor.device == PROBE_DEVICE):
        return NOT_A_READ
    if func in SCALAR_READS:
        return func(torch.ones((), dtype=tensor.dtype))
    if func is torch.Tensor.tolist:
        return torch.ones(tensor.shape, dtype=tensor.dtype).tolist()
    if func is torch.Tensor.cpu or (func is torch.Tensor.to and _to_cpu(args[1:], kwargs)):
        dtype = next((value for value in [*args[1:], kwargs.get("dtype")] if isinstance(value, torch.dtype)),
                     tensor.dtype)
        return torch.ones(tensor.shape, dtype=dtype)
    return NOT_A_READ


def _to_cpu(args, kwargs) -> bool:
    """Whether `Tensor.to(*args, **kwargs)` copies to the CPU."""
    for value in [*args, kwargs.get("device")]:
        if isinstance(value, torch.Tensor):
            return value.device.type == "cpu"
        if isinstance(value, (str, torch.device)):
            return torch.device(value).type == "cpu"
    return False


def other_device(values: list, device: torch.device) -> torch.device | None:
    """The device other than `device` of a tensor among `values` (and the lists and tuples in them), when one of
    them is on `device`; 0-d tensors do not count (torch lets a 0-d CPU tensor into a GPU operation)."""
    devices = {value.device for value in _tensors(values) if value.dim() > 0}
    if device not in devices or len(devices) < 2:
        return None
    return next(found for found in devices if found != device)


def _tensors(values) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [item for item in value if isinstance(item, torch.Tensor)]
    return found


class ShapesOnly:
    """Towers that give tensors of the backbone contract's shapes on `PROBE_DEVICE`, holding no values: running the
    toy's own towers on meta imports torch's Python meta kernels (its embedding and `triu`: 900 modules, 3 s)."""

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N, L, W] token embeddings (shape only)."""
        return torch.empty(*ids.shape, self.token_width, device=PROBE_DEVICE)

    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] embeddings -> [N, D] text features (shape only)."""
        return torch.empty(embeds.shape[0], self.embed_dim, device=PROBE_DEVICE)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images -> [B, D] image features (shape only)."""
        return torch.empty(images.shape[0], self.embed_dim, device=PROBE_DEVICE)


def probe_backbone():
    """The toy backbone (random weights) on `PROBE_DEVICE`, its towers `ShapesOnly`: made once; None when it cannot
    be made."""
    if not _backbone:
        try:
            from vipcli.registry import backbone_class

            toy = backbone_class("toy")
            with torch.random.fork_rng(devices=[]):
                _backbone.append(type(f"ShapesOnly{toy.__name__}", (ShapesOnly, toy), {})(None, "none", PROBE_DEVICE))
        except Exception:  # vip's toy missing or broken: its own tests say so; the probe says nothing
            _backbone.append(None)
    return _backbone[0]


def probe_devices(cls, method_id: str, setup, settings) -> str:
    """Build `cls` once more on `PROBE_DEVICE` and run its forward there, once per class and process; raise a
    `PluginError` naming `method_id` and the member (`__init__`, `forward`) that left a tensor on the CPU or used
    one there. Returns what was found otherwise: "passed", "probed before", or why it could not judge ("not
    judged: ...")."""
    if cls in _probed:
        return "probed before"
    _probed.add(cls)
    backbone = probe_backbone()
    if backbone is None:
        return "not judged: the toy backbone could not be made on the meta device"
    method, found = _built_on_probe_device(cls, setup, backbone, settings, None)
    _refuse_mixed(method_id, "__init__", found, "setup.device")
    if isinstance(method, Exception):
        return f"not judged: __init__ raised {type(method).__name__}: {method}"
    _refuse_left_elsewhere(method, method_id)
    return _probe_forward(method, method_id, backbone.embed_dim)


def probe_restored(cls, method_id: str, setup, settings, stored, tensors: dict, where: str) -> str:
    """Rebuild `cls` as `vip predict` does (`stored`, the run's `tensors` through its own `load_state_tensors`, then
    `prepare`) once more on `PROBE_DEVICE`, with a probe backbone of the run's widths, and run its forward there,
    once per class and process; raise a `PluginError` naming `method_id`, `load_state_tensors` and the tensor it left on the CPU (a
    saved placeholder kept where `__init__` made it, a loaded tensor kept without `.to(self.setup.device)`), which a
    CPU run cannot see and a GPU's forward fails on. Returns "passed", "probed before" or "not judged: ..."."""
    if cls in _probed_restored:
        return "probed before"
    _probed_restored.add(cls)
    backbone = _probe_backbone_like(setup.backbone)
    if backbone is None:
        return "not judged: the toy backbone could not be made on the meta device"
    method, found = _built_on_probe_device(cls, setup, backbone, settings, stored)
    on_cpu = None  # why the method was built on the CPU instead, when it was
    if isinstance(method, Exception):
        from vipcli.plugins import describe_exception

        on_cpu = f"__init__ raised {describe_exception(method).replace(': ', ' on the meta device: ', 1)}"
        method = _built_on_cpu_moved(cls, setup, backbone, settings, stored)
        if isinstance(method, Exception):
            return f"not judged: {on_cpu}; on the CPU with the toy backbone: {describe_exception(method)}"
    else:
        _refuse_mixed(method_id, "__init__", found, "setup.device")
    with isolated(), MixedDevices(PROBE_DEVICE) as watch:
        try:
            method.load_state_tensors(dict(tensors), where)
            method.prepare()  # as vip predict calls it, before any forward: it may move what was loaded
        except Exception as error:
            return f"not judged: reloading raised {type(error).__name__}: {error}"
    _refuse_mixed(method_id, "load_state_tensors", watch.found, "setup.device")
    _refuse_left_elsewhere(method, method_id, "load_state_tensors")
    found = _probe_forward(method, method_id, backbone.embed_dim, after="load_state_tensors")
    if on_cpu is None or found != "passed":
        return found
    return f"passed (load_state_tensors and forward; built on the CPU with the toy backbone: {on_cpu})"


def _built_on_cpu_moved(cls, setup, probe, settings, stored):
    """`cls` built on the CPU with a toy backbone of real values and the run's widths (`cpu_toy_like`), then moved
    to `PROBE_DEVICE` whole (its parameters, buffers and plain tensor attributes), its setup's backbone the `probe`:
    for a plugin whose `__init__` cannot run on the meta device (an operation meta has no kernel for, a value it
    computes with), so that what `load_state_tensors` and `forward` do with devices is still judged (`__init__`'s
    own placement is not: everything it made was moved). Returns the method, or the exception that stopped it."""
    with isolated():
        try:
            toy = cpu_toy_like(setup.backbone)
            method = cls(dataclasses.replace(setup, backbone=toy), copied(settings), stored)
            method.to(PROBE_DEVICE)
            for name, value in list(vars(method).items()):
                if isinstance(value, torch.Tensor):
                    setattr(method, name, value.to(PROBE_DEVICE))
            method._setup = [dataclasses.replace(setup, backbone=probe)]  # setup.device: the probe's
        except Exception as error:
            return error
    return method


def cpu_toy_like(real):
    """vip's toy backbone on the CPU, random weights (the global generators untouched), its text tower and joint
    space rebuilt at the widths (`token_width`, `embed_dim`) of the run's backbone `real` where they differ (its
    3-layer text tower: the toy made and rebuilt in 0.4 s at ViT-B-16's widths, 512, on the loaded 2-core CPU)."""
    import sys

    from vipcli.registry import backbone_class

    toy = backbone_class("toy")(None, "none", torch.device("cpu"))
    widths = {name: value for name, value in run_widths(real).items() if value != getattr(toy, name)}
    if widths:
        config = dataclasses.replace(toy.config, embed_dim=widths.get("embed_dim", toy.embed_dim),
                                     text_width=widths.get("token_width", toy.token_width))
        build_random_model = sys.modules[type(toy).__module__].build_random_model
        toy.config, toy.model = config, build_random_model(config, len(toy.vocab)).eval()
        toy.embed_dim, toy.token_width = config.embed_dim, config.text_width
        toy.logit_scale = toy.model.logit_scale.detach().reshape(())
    return toy


def _built_on_probe_device(cls, setup, backbone, settings, stored):
    """(`cls` built on `PROBE_DEVICE` with the probe `backbone` in place of the real one and `stored` (None: a fresh
    instance), or the exception its `__init__` raised; what `MixedDevices` found meanwhile)."""
    elsewhere = dataclasses.replace(setup, backbone=backbone)
    with isolated(), MixedDevices(PROBE_DEVICE) as watch:
        try:
            method = cls(elsewhere, copied(settings), stored)
        except Exception as error:
            method = error
    return method, watch.found


def _probe_backbone_like(real):
    """`probe_backbone()` with the widths (`embed_dim`, `token_width`) of the run's backbone `real`, so that the
    run's saved tensors fit the probe's instance; None when the toy cannot be made on the meta device."""
    import copy

    toy = probe_backbone()
    if toy is None:
        return None
    widths = run_widths(real)
    if all(value == getattr(toy, name) for name, value in widths.items()):
        return toy
    like = copy.copy(toy)
    for name, value in widths.items():
        setattr(like, name, value)
    return like


def run_widths(real) -> dict[str, int]:
    """The widths (`embed_dim`, `token_width`) of the run's backbone `real` that it states (as ints): what a toy
    standing in for it must have for the run's saved tensors to fit."""
    widths = {name: getattr(real, name, None) for name in ("embed_dim", "token_width")}
    return {name: value for name, value in widths.items() if isinstance(value, int)}


def _probe_forward(method, method_id: str, width: int, after: str | None = None) -> str:
    """Run the probe instance's forward on two image features on `PROBE_DEVICE`; refuse a torch call given a
    tensor on the CPU too, as `forward` (unfitted), or as a fault of `after` (`load_state_tensors`, which must have
    put every tensor forward uses on the device: no placeholder is allowed then)."""
    features = torch.empty(PROBE_IMAGES, width, device=PROBE_DEVICE)
    with isolated(), MixedDevices(PROBE_DEVICE) as watch, torch.no_grad():
        try:
            method.eval()
            logits = method.forward(features)
        except Exception as error:
            logits = error
    plain = _plain_tensors(method, watch.found)
    if after is not None and plain:  # a plain tensor `after` left on the CPU
        _refuse_mixed(method_id, after, watch.found, "the image features' device", plain, during="forward")
    elif after is None and watch.found is not None and _only_saved_placeholders(method, features):
        return "passed"
    _refuse_mixed(method_id, "forward", watch.found, "the image features' device", plain)
    if isinstance(logits, Exception):
        return f"not judged: forward raised {type(logits).__name__}: {logits}"
    if isinstance(logits, torch.Tensor) and logits.device != PROBE_DEVICE:
        from vipcli.methods.contract import method_fault

        raise method_fault(method_id, "forward", f"forward returned logits on {logits.device}, not on the image "
                                                 f"features' device ({STAND_IN})", FIXES["forward"])
    return "passed"


def _only_saved_placeholders(method, features: torch.Tensor) -> bool:
    """Whether what forward mixed is only plain tensor attributes that the method saves itself (its own
    `state_tensors()` returns them): placeholders that `fit` and `load_state_tensors` replace before any real
    `forward`. Moved to the probe's device, forward must then run without mixing devices; the placeholders are
    remembered for the class (`placeholders_of`), and a fit that leaves one in place is refused after it
    (`check_placeholders_replaced`)."""
    plain = {name: value for name, value in vars(method).items()
             if isinstance(value, torch.Tensor) and value.device != PROBE_DEVICE}
    if not plain:
        return False
    with isolated():
        try:
            saved = method.state_tensors()
        except Exception:
            return False
    if not isinstance(saved, dict) or not all(any(kept is value for kept in saved.values()) for value in plain.values()):
        return False
    for name, value in plain.items():
        setattr(method, name, value.to(PROBE_DEVICE))
    with isolated(), MixedDevices(PROBE_DEVICE) as watch, torch.no_grad():
        try:
            method.forward(features)
        except Exception:
            pass
    if watch.found is not None:
        return False
    _placeholders[type(method)] = tuple(plain)
    return True


def placeholders_of(cls) -> tuple[str, ...]:
    """The plain tensor attributes of method class `cls` that the probe found on the CPU after `__init__`, used
    by forward and saved by the method itself: `fit` must replace each (`check_placeholders_replaced`)."""
    return _placeholders.get(cls, ())


def keep_placeholders(method) -> None:
    """Remember the placeholders (`placeholders_of` its class) a freshly built plugin method holds, for
    `check_placeholders_replaced` after its fit."""
    names = placeholders_of(type(method))
    if names:
        _placeholders_held[method] = {name: getattr(method, name, None) for name in names}


def check_placeholders_replaced(method) -> None:
    """Refuse a fitted plugin method that still holds a placeholder `__init__` made on the CPU (`keep_placeholders`),
    or one that `fit` replaced with a tensor off `setup.device`: its forward uses it, so on a GPU it would fail with
    "Expected all tensors to be on the same device"."""
    from vipcli.methods.contract import method_fault

    try:
        held = _placeholders_held.pop(method, {})
    except TypeError:  # an object no weak reference can name: `keep_placeholders` kept nothing for it
        return
    for name, placeholder in held.items():
        value = getattr(method, name, None)
        if value is placeholder:
            raise method_fault(method.id, "fit", f"fit left self.{name}, a plain tensor that __init__ made on "
                                                 f"{placeholder.device} and forward uses, in place (a plain tensor "
                                                 f"stays where it was made: {STAND_IN})", PLACEHOLDER_FIX)
        if isinstance(value, torch.Tensor) and value.device != method.setup.device:
            raise method_fault(method.id, "fit", f"fit left self.{name} on {value.device}, not on "
                                                 f"{method.setup.device} where forward gets the image features",
                               PLACEHOLDER_FIX)


def _refuse_mixed(method_id: str, member: str, found: tuple | None, where: str, plain: str = "",
                  during: str | None = None) -> None:
    """Refuse `member` when `found` names a torch call given tensors on two devices (`during`: the member that made
    the call, when another than the one at fault: forward, after `load_state_tensors` left a tensor on the CPU)."""
    if found is None:
        return
    from vipcli.methods.contract import method_fault

    call, other = found
    caller = f"after {member}, {during}" if during else member
    raise method_fault(method_id, member, f"{caller} gave {call} a tensor on {other} and one on {where}{plain} "
                                          f"({STAND_IN})", FIXES[member])


def _plain_tensors(method, found: tuple | None) -> str:
    """", where self.NAME is a plain tensor attribute on the other device" for the method's tensors that are neither
    parameters nor buffers (`self.to(setup.device)` does not move them), else ""."""
    if found is None:
        return ""
    names = [f"self.{name}" for name, value in vars(method).items()
             if isinstance(value, torch.Tensor) and value.device == found[1]]
    if not names:
        return ""
    return f", where {', '.join(names[:3])} {'is a plain tensor' if len(names) == 1 else 'are plain tensors'} " \
           f"on {found[1]} (self.to(setup.device) moves parameters and buffers only)"


def _refuse_left_elsewhere(method, method_id: str, member: str = "__init__") -> None:
    from vipcli.methods.contract import DEVICE_FIXES, left_elsewhere, method_fault, tensors_elsewhere

    elsewhere = tensors_elsewhere(method, PROBE_DEVICE)
    if elsewhere:
        raise method_fault(method_id, member, f"{left_elsewhere(member, elsewhere)}, not on setup.device "
                                              f"({STAND_IN})", DEVICE_FIXES[member])


def copied(settings):
    """A copy of a method's settings (a dataclass), so that the probe's instance shares nothing with the real one."""
    return dataclasses.replace(settings) if dataclasses.is_dataclass(settings) else settings


@contextlib.contextmanager
def isolated():
    """Run plugin code quietly (its prints and warnings were shown when it was built for real), leaving torch's (the
    CPU's and every CUDA device's), Python's and numpy's global random generators as they were."""
    from vipcli.features import cpu_generators_kept

    with cpu_generators_kept(), cuda_generators_kept(), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def cuda_generators_kept():
    """Run the block, then put back the generator of every CUDA device as it was, without starting CUDA: when CUDA
    was started before, each device's state is kept (`fork_rng(devices=[])` keeps the CPU's only); when the block
    started it (a plugin drawing on "cuda" itself), each device's generator is reseeded with its initial seed, the
    state it had when CUDA started."""
    started = torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if started else []
    states = [torch.cuda.get_rng_state(device) for device in devices]
    try:
        yield
    finally:
        for device, state in zip(devices, states):
            torch.cuda.set_rng_state(state, device)
        if not started and torch.cuda.is_initialized():
            for device in range(torch.cuda.device_count()):
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(torch.cuda.initial_seed())
