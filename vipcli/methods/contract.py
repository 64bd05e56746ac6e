"""The method contract, checked: what vip enforces on every method plugin, and where.

A method plugin's mistakes surface as one line naming the method, its distribution, the member at
fault and the fix (a `vipcli.plugins.PluginError`), never as "a bug in vip" or as silently wrong
numbers:

- the class, when it is loaded (`check_class`): `Settings` is a dataclass whose every field has a
  default; a method that says it `trains` overrides `fit`;
- its calls (`guard_method`): an exception raised inside a plugin's `fit`, `forward`, `record`, ...
  names the plugin and the member;
- what it returns: `fit` a dict (`checked_fit`), `forward` logits [B, C] (`check_logits`);
- what a run stores (`check_round_trip`): the method rebuilt from `record()` and `state_tensors()`
  gives the fitted method's logits, so `vip predict` predicts what `vip train` measured.
"""

from __future__ import annotations

import dataclasses

import torch

from vipcli.plugins import PluginError, guard_calls

GUARDED_MEMBERS = ("fit", "forward", "prepare", "explain", "record", "state_tensors", "load_state_tensors",
                   "training_loss", "batched_loss")
BUILT_IN = "vipcli"  # the distribution of the built-in methods (tested by vip's own suite)
ROUND_TRIP_IMAGES = 64  # features compared between the fitted and the rebuilt method
ROUND_TRIP_TOLERANCE = 1e-4  # max difference of softmax probabilities


def distribution_of_method(method_id: str) -> str:
    """"name version" of the distribution that registers `method_id` ("unknown" if it cannot be told)."""
    from vipcli.methods import METHODS

    try:
        return METHODS.distribution(method_id) or "unknown"
    except Exception:  # an id no longer installed: the message still names the method
        return "unknown"


def method_fault(method_id: str, member: str, reason: str, hint: str) -> PluginError:
    """A `PluginError` naming the method, its distribution, the member at fault and the fix."""
    return PluginError("method", method_id, distribution_of_method(method_id), member, reason, hint)


def class_problem(cls) -> tuple[str, str, str] | None:
    """(member, what is wrong, the fix) for a method class that cannot work, else None."""
    from vipcli.methods.base import Method

    settings = getattr(cls, "Settings", None)
    if not (isinstance(settings, type) and dataclasses.is_dataclass(settings)):
        return ("Settings", f"Settings is {settings!r}, not a dataclass",
                "decorate it with @dataclasses.dataclass (use vipcli.methods.NoSettings for none)")
    for option in dataclasses.fields(settings):
        if option.default is dataclasses.MISSING and option.default_factory is dataclasses.MISSING:
            return ("Settings", f"setting '{option.name.replace('_', '-')}' has no default",
                    "give every field a default value; --method-option KEY=VALUE only overrides defaults")
    if cls.trains and cls.fit is Method.fit:
        return ("fit", "trains = True but fit is not overridden, so nothing would be learned",
                "return vipcli.fitting.fit_sgd(self, data, context) from fit for the shared SGD loop, "
                "fit your own way, or set trains = False")
    return None


def check_class(cls, method_id: str) -> None:
    """Raise a `PluginError` for a method class that cannot work (see `class_problem`)."""
    problem = class_problem(cls)
    if problem is not None:
        member, reason, hint = problem
        raise method_fault(method_id, member, reason, hint)


def guard_method(method, method_id: str, distribution: str) -> None:
    """Make a plugin's own exceptions name it and the member that raised (built-ins are left as they are)."""
    if distribution.split(" ")[0] != BUILT_IN:
        guard_calls(method, GUARDED_MEMBERS, "method", method_id, distribution)


def checked_fit(method, data, context) -> dict:
    """`method.fit(data, context)`, refusing a result that is not a dict (metrics.json holds it)."""
    fitted = method.fit(data, context)
    if not isinstance(fitted, dict):
        raise method_fault(method.id, "fit", f"fit returned {type(fitted).__name__}, not a dict",
                           "end fit with `return super().fit(data, context)`, or return a dict such as "
                           "{'best_epoch': None, 'best_val_accuracy': None, 'history': []}")
    return fitted


def check_logits(method, logits, images: int) -> None:
    """Refuse `forward` output that is not a float tensor [images, C] (shape only: nothing is read back)."""
    classes = method.setup.num_classes
    if not isinstance(logits, torch.Tensor):
        reason = f"forward returned {type(logits).__name__}, not a tensor"
    elif tuple(logits.shape) != (images, classes):
        shape = "[" + ", ".join(str(n) for n in logits.shape) + "]"
        reason = f"forward returned logits {shape} for {images} images of {classes} classes"
    elif not logits.is_floating_point():
        reason = f"forward returned {str(logits.dtype).replace('torch.', '')} logits"
    else:
        return
    raise method_fault(method.id, "forward", reason, "return float logits [B, C]: one row per image, one column "
                                                     "per class in setup.class_names order")


def check_round_trip(method, features: torch.Tensor, device) -> None:
    """Rebuild a fitted plugin method from what the run will store and compare its logits with the fitted one's.

    A method that keeps what it learned in a plain attribute (not a parameter, a registered buffer
    or `record()`) would otherwise save a run that predicts something else than what `vip train`
    measured. Built-in methods are not re-checked (vip's tests cover them).
    """
    from vipcli.fitting import predict_logits
    from vipcli.methods import restore_method

    if distribution_of_method(method.id).split(" ")[0] == BUILT_IN or not len(features):
        return
    sample = features[:ROUND_TRIP_IMAGES]  # [n, D]
    fitted = predict_logits(method, sample, device).softmax(dim=-1)  # [n, C]
    settings = dataclasses.asdict(method.settings)
    tensors = {name: tensor.detach().cpu() for name, tensor in method.state_tensors().items()}
    rebuilt = restore_method(method.id, method.setup, settings, method.record(), tensors,
                             f"method '{method.id}' rebuilt from its own record() and state_tensors()")
    again = predict_logits(rebuilt, sample, device).softmax(dim=-1)  # [n, C]
    difference = float((fitted - again).abs().max())
    if not difference <= ROUND_TRIP_TOLERANCE:
        stored = ", ".join(sorted(tensors)) or "none"
        keys = ", ".join(sorted(method.record() or {})) or "none"
        raise method_fault(
            method.id, "state_tensors",
            f"rebuilt from what the run stores (tensors: {stored}; record() keys: {keys}), it predicts other "
            f"probabilities than the fitted method (max difference {difference:.3g}): vip predict would not "
            "predict what vip train measured",
            "keep what fit learns in an nn.Parameter or a buffer: self.register_buffer(NAME, tensor) in __init__, "
            "then assign self.NAME = ... in fit; or return it from record() and read it back from `stored` in "
            "__init__")
