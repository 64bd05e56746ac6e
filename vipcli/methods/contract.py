"""The method contract, checked: what vip enforces on every method plugin, and where.

A method plugin's mistakes surface as one line naming the method, its distribution, the member at
fault and the fix (a `vipcli.plugins.PluginError`), never as "a bug in vip" or as silently wrong
numbers:

- the class, when it is loaded (`check_class`): `Settings` is a dataclass whose every field has a
  default; a method that says it `trains` overrides `fit`;
- its calls (`guard_method`): an exception raised inside a plugin's `fit`, `forward`, `record`, ...
  names the plugin and the member;
- what `fit` reads: not the test split (`checked_fit` hands it `vipcli.featuresets.HeldOutSplit`);
- what `fit` and `forward` leave alone: the features they are handed, shared with evaluation and the other
  rows of a sweep, are not changed in place (`checked_fit`, `check_features_unchanged`); the shared backbone is
  not changed by any member vip calls (`vipcli.methods.backbone_guard`);
- what it returns: `fit` a dict (`checked_fit`), `forward` logits [B, C] (`check_logits`);
- how it trains with the shared SGD loop: at the first step, the loss is a 0-d tensor that depends
  on the method's parameters (`check_loss`) and every trainable parameter gets a gradient in
  the first epoch (`check_gradients`); each epoch's mean loss is finite (`vipcli.fitting.check_epoch_loss`);
- what `forward` gives, read back once at train time: not probabilities (a softmax left in forward:
  a warning in a run, `check_not_probabilities` fails it in `vip methods check`);
- `vip methods check` alone: a fit does not change what the next fresh instance learns
  (`check_sweep_order`: seed A, then B, then A again must give the same seed-A logits), learns from its
  images (`check_fits_differ`) and does not seed a global generator with a constant (`check_own_seeding`);
- what a run stores (`check_round_trip`): the fitted method's forward is deterministic
  (`check_deterministic`) and gives an image the same logits alone as in a batch
  (`check_batch_independent`), `record()` can be written as JSON (`stored_record`), and the method
  rebuilt from it and `state_tensors()` gives the fitted method's logits, so `vip predict` predicts
  what `vip train` measured.
"""

from __future__ import annotations

import dataclasses
import json

import torch

from vipcli.methods.base import StateMismatch
from vipcli.plugins import PluginError, guard_calls, is_own_distribution, plugin_code

# the members of a method instance the core calls (`train`: also through eval(); `merge_weights`: vip report)
GUARDED_MEMBERS = ("fit", "forward", "prepare", "explain", "record", "state_tensors", "load_state_tensors",
                   "training_loss", "batched_loss", "train", "merge_weights")
ROUND_TRIP_IMAGES = 64  # features compared between the fitted and the rebuilt method
ROUND_TRIP_TOLERANCE = 1e-4  # max difference of softmax probabilities
BATCH_PROBE_ROWS = 256  # rows of the large, reordered batch `check_batch_independent` compares with the sample's
PROBABILITY_TOLERANCE = 1e-4  # a row of logits in [0, 1] summing to 1 within this is a probability vector
STATE_ON_THE_INSTANCE = ("keep state on the instance (self.NAME, set in __init__ or fit), never on the class or in "
                         "a module-level variable")  # the fix for state that leaks from one fit into another
SWEEP_SEEDS = (2, 3)  # `vip methods check` fits seed A, then B, then A again (fresh instances; its run used seed 1)


class MemberFault(Exception):
    """Raised by vip's own base classes inside a method's `__init__`, where the method's id is not known yet;
    `vipcli.methods.build_method` turns it into a `PluginError` naming the method (see `method_fault`).

    Args:
        member: the member at fault (e.g. "make_prompts").
        reason: what is wrong.
        hint: the fix.
    """

    def __init__(self, member: str, reason: str, hint: str):
        super().__init__(f"{member}: {reason} ({hint})")
        self.member, self.reason, self.hint = member, reason, hint


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
    unreadable = _annotations_problem(settings)
    if unreadable is not None:
        return unreadable
    for option in dataclasses.fields(settings):
        if option.default is dataclasses.MISSING and option.default_factory is dataclasses.MISSING:
            return ("Settings", f"setting '{option.name.replace('_', '-')}' has no default",
                    "give every field a default value; --method-option KEY=VALUE only overrides defaults")
    untyped = _untyped_setting(settings)
    if untyped is not None:
        name, value = untyped
        defaults = {option.name: option.default for option in dataclasses.fields(settings)}
        default = defaults.get(name, dataclasses.MISSING)
        ignored = ("attribute, not a setting (--method-option cannot set it)" if default is dataclasses.MISSING else
                   f"attribute: the setting's default stays {default!r}, as the class it inherits from gives it")
        fix = f"annotate it: {name}: {type(value).__name__} = {value!r}"
        if default is dataclasses.MISSING:  # it may be meant as a constant of the method, not a setting
            fix += f", or {name}: typing.ClassVar[{type(value).__name__}] = {value!r} for a constant that is not one"
        return ("Settings", f"{settings.__name__}.{name} = {value!r} has no type annotation, so it is a plain class "
                            + ignored, fix)
    context = _context_settings_problem(cls, settings)
    if context is not None:
        return context
    declared = _declaration_problem(cls)
    if declared is not None:
        return declared
    if cls.needs_symptoms and not cls.uses_symptoms:
        return ("uses_symptoms", "needs_symptoms = True but uses_symptoms = False: a method that requires the "
                                 "symptoms cannot be one that no symptom changes",
                "drop uses_symptoms = False (the default, True, says the symptoms can change its results)")
    if cls.trains and cls.fit is Method.fit:
        return ("fit", "trains = True but fit is not overridden, so nothing would be learned",
                "return vipcli.fitting.fit_sgd(self, data, context) from fit for the shared SGD loop, "
                "fit your own way, or set trains = False")
    if cls.forward is Method.forward:
        return ("forward", "forward is not overridden, so there are no logits",
                "define forward(self, image_features) returning class logits [B, C]")
    for member, arguments in (("__init__", 3), ("fit", 2), ("forward", 1)):
        problem = _signature_problem(getattr(cls, member), member, arguments)
        if problem is not None:
            return problem
    return None


CLASS_FLAGS = ("trains", "uses_shots", "needs_symptoms", "uses_symptoms", "needs_center_view", "uses_schedule",
               "learns_context", "learned_merge")  # read on the class (vip methods list, before any instance): True or False


def _declaration_problem(cls) -> tuple[str, str, str] | None:
    """(member, what is wrong, the fix) for a class attribute vip reads on the class that is not a plain value:
    `def trains(self)` or an `@property` (always true on the class, whatever it returns), a `summary` that is
    not a str."""
    for flag in (name for name in CLASS_FLAGS if hasattr(cls, name)):
        value = getattr(cls, flag)
        if not isinstance(value, bool):
            return (flag, f"{flag} is a {type(value).__name__}, not True or False: vip reads it on the class, "
                          "before any instance exists", f"write it as a class attribute: {flag} = True (or False)")
    if not isinstance(cls.summary, str):
        return ("summary", f"summary is a {type(cls.summary).__name__}, not a str: vip methods list reads it on the "
                           "class", 'write it as a class attribute: summary = "one line about the method"')
    return None


def _annotations_problem(settings) -> tuple[str, str, str] | None:
    """(member, what is wrong, the fix) for a `Settings` whose type annotations cannot be evaluated (a name its
    module does not define, read as text under `from __future__ import annotations`): vip reads them to convert
    `--method-option` values, to show the settings and to check a run's stored ones."""
    import typing

    from vipcli.plugins import describe_exception

    try:
        typing.get_type_hints(settings)
    except Exception as error:  # noqa: BLE001 - evaluating the plugin's annotations runs its code
        return ("Settings", f"the type annotations of {settings.__name__} cannot be evaluated "
                            f"({describe_exception(error)})",
                "import every name they use at the top of the module, or write the type itself "
                "(temperature: float = 0.01)")
    return None


def _untyped_setting(settings) -> tuple[str, object] | None:
    """(name, value) of a plain value (bool, int, float, str) written in a `Settings` dataclass without a type
    annotation (`temperature = 0.05`): dataclasses then make no field of it, so it looks like a setting but is not
    one; written in a subclass over an inherited setting (`n_ctx = 8`), it leaves that setting's default as it was.
    Names starting with '_' and ones annotated in the class that writes them (fields, ClassVar) are left alone."""
    for klass in settings.__mro__:
        if klass is object:
            continue
        annotated = set(klass.__dict__.get("__annotations__", {}))
        for name, value in vars(klass).items():
            if name.startswith("_") or name in annotated:
                continue
            if isinstance(value, (bool, int, float, str)):
                return name, value
    return None


def _signature_problem(function, member: str, arguments: int) -> tuple[str, str, str] | None:
    """(member, what is wrong, the fix) when `function` cannot be called with `arguments` positional
    arguments after self (__init__(setup, settings, stored), fit(data, context), forward(image_features)), else None."""
    import inspect

    expected = {"__init__": "__init__(self, setup, settings=None, stored=None)", "fit": "fit(self, data, context)",
                "forward": "forward(self, image_features)"}[member]
    try:
        inspect.signature(function).bind(None, *([None] * arguments))
    except TypeError as error:
        return (member, f"{member} cannot be called as {expected} ({error})", f"define it as {expected}")
    except ValueError:  # no signature to read (a builtin or C function): leave it to the call
        return None
    return None


def _context_settings_problem(cls, settings) -> tuple[str, str, str] | None:
    """A `PromptMethod` that learns context but whose `Settings` lacks `n_ctx` (the context's length)."""
    from vipcli.methods.prompting import PromptMethod

    if not (issubclass(cls, PromptMethod) and cls.learns_context):
        return None
    if "n_ctx" in {option.name for option in dataclasses.fields(settings)}:
        return None
    return ("Settings", f"learns_context = True but Settings ({settings.__name__}) has no n_ctx field (the number "
                        "of learned context vectors)",
            "subclass vipcli.methods.prompting.ContextSettings (@dataclass class MySettings(ContextSettings): ...), "
            "or leave Settings out: PromptMethod's default is ContextSettings")


def prompts_problem(prompts, class_names: list[str]) -> str | None:
    """What is wrong with `make_prompts`' result (one list of phrases per class), or None."""
    if not isinstance(prompts, (list, tuple)):
        return f"got {type(prompts).__name__}"
    if prompts and all(isinstance(entry, str) for entry in prompts):
        return "got a list of str"
    for name, entry in zip(class_names, prompts):
        if not isinstance(entry, (list, tuple)) or not all(isinstance(phrase, str) for phrase in entry):
            return f"got {type(entry).__name__} for class '{name}'" if not isinstance(entry, (list, tuple)) else \
                f"class '{name}' has a phrase that is not a str"
        if not entry:
            return f"class '{name}' has no phrase"
    if len(prompts) != len(class_names):
        return f"got {len(prompts)} lists for {len(class_names)} classes"
    return None


def check_prompts(prompts, class_names: list[str]) -> None:
    """Raise `MemberFault` for a `make_prompts` result that is not one non-empty list of str per class."""
    problem = prompts_problem(prompts, class_names)
    if problem is not None:
        raise MemberFault("make_prompts", f"expected one list of phrases per class (list[list[str]], in "
                                          f"setup.class_names order), {problem}",
                          "return e.g. [[f'a photo of a {name}.'] for name in setup.class_names]")


def method_code(method_id: str, member: str, hint: str | None = None):
    """A context manager: the block calls method `method_id`'s own code outside the members `guard_method` wraps
    on an instance (its class's `fits_in_batches()`, its `Settings` built or validated): a plugin's failure is a
    `PluginError` naming it and `member` (`hint`: the fix), as a failure in its `fit` is; a built-in's is left as
    it is (a bug in vip)."""
    def distribution() -> str | None:
        named = distribution_of_method(method_id)
        return None if is_own_distribution(named) else named

    return plugin_code("method", method_id, distribution, member, hint)


BATCHES_FIX = ("leave fits_in_batches to PromptMethod, whose own says when a method's rows can train together, "
               "or return False")


def trains_batched(cls, method_id: str) -> bool:
    """Whether the rows of method `method_id` (class `cls`) train together in a sweep: its class's
    `fits_in_batches()`, called as the plugin's code (`method_code`). A class that says yes but is not a
    `PromptMethod` that learns context (the only kind `vipcli.fitting.fit_sgd_many` trains) is the plugin's
    fault, named."""
    from vipcli.methods.prompting import PromptMethod

    ask = getattr(cls, "fits_in_batches", None)
    if ask is None:
        return False
    with method_code(method_id, "fits_in_batches"):
        fits = bool(ask())
    if fits and not (isinstance(cls, type) and issubclass(cls, PromptMethod) and cls.learns_context):
        raise method_fault(method_id, "fits_in_batches", "fits_in_batches() says its rows train together, but only a "
                                                         "PromptMethod that learns context (learns_context = True) "
                                                         "trains batched", BATCHES_FIX)
    return fits


def check_class(cls, method_id: str) -> None:
    """Raise a `PluginError` for a method class that cannot work (see `class_problem`)."""
    problem = class_problem(cls)
    if problem is not None:
        member, reason, hint = problem
        raise method_fault(method_id, member, reason, hint)


def guard_method(method, method_id: str, distribution: str) -> None:
    """Make a plugin's own exceptions name it and the member that raised (built-ins are left as they are)."""
    if not is_own_distribution(distribution):
        guard_calls(method, GUARDED_MEMBERS, "method", method_id, distribution)


def checked_fit(method, data, context) -> dict:
    """`method.fit(data, context)` with the test split held out (a method that reads it is refused: its test
    figures would not be honest), `data.train.x` refused to a method that does not declare `needs_center_view` and
    `data.train` to one that declares `uses_shots = False`, refusing a result that is not a dict (metrics.json holds it)."""
    from vipcli.featuresets import CenterViewNotDeclared, ShotsNotDeclared, TestSplitRead, without_test

    from vipcli.methods.backbone_guard import check_kept, keep_since_fit, state_if_watched
    from vipcli.methods.device_probe import check_placeholders_replaced

    before, backbone = split_versions(data), state_if_watched(method, whole=True)  # every byte: a fit runs once
    seen = without_test(data, bool(getattr(method, "needs_center_view", False)),
                        bool(getattr(method, "uses_shots", True)))
    try:
        fitted = method.fit(seen, context)
    except (TestSplitRead, CenterViewNotDeclared, ShotsNotDeclared) as error:
        raise method_fault(method.id, "fit", error.message, error.hint) from None
    keep_since_fit(method, check_kept(method, "fit", backbone))  # every byte: compared again before the run is written
    check_splits_unchanged(method, data, before)
    check_on_device(method, "fit")
    check_placeholders_replaced(method)
    if not isinstance(fitted, dict):
        ending = ("`return vipcli.fitting.fit_sgd(self, data, context)` (its dict holds the best epoch and history)"
                  if getattr(method, "uses_schedule", False) else "`return super().fit(data, context)`")
        raise method_fault(method.id, "fit", f"fit returned {type(fitted).__name__}, not a dict",
                           f"end fit with {ending}, or return a dict such as "
                           "{'best_epoch': None, 'best_val_accuracy': None, 'history': []}")
    return fitted


DEVICE_FIXES = {  # member -> how to put a method's tensors on setup.device
    "__init__": "end __init__ with self.to(setup.device), after creating every parameter and buffer",
    "fit": "create what fit learns on self.setup.device (torch.zeros(..., device=self.setup.device)), or move it "
           "there before assigning it (self.NAME = tensor.to(self.setup.device))",
    "load_state_tensors": "move what it loads to self.setup.device (.to(self.setup.device)), or leave loading to "
                          "Method.load_state_tensors",
}


def tensors_elsewhere(method, device: torch.device) -> list[tuple[str, str, torch.device]]:
    """(kind, name, device) of every parameter and buffer of `method` that is not on `device`."""
    from vipcli.backbone_contract import same_device

    named = [*(("parameter", name, t) for name, t in method.named_parameters()),
             *(("buffer", name, t) for name, t in method.named_buffers())]
    return [(kind, name, tensor.device) for kind, name, tensor in named if not same_device(tensor.device, device)]


def left_elsewhere(member: str, elsewhere: list[tuple[str, str, torch.device]]) -> str:
    """`tensors_elsewhere`'s first finding in words: "__init__ left parameter 'w' on cpu (2 more tensor(s) too)"."""
    kind, name, found = elsewhere[0]
    more = f" ({len(elsewhere) - 1} more tensor(s) too)" if len(elsewhere) > 1 else ""
    return f"{member} left {kind} '{name}' on {found}{more}"


def check_on_device(method, member: str) -> None:
    """Refuse a plugin method whose parameters or buffers are not all on `setup.device`, where vip hands
    `forward` the image features, right after `member` (`__init__`, `fit`, `load_state_tensors`) left them
    there: on a GPU its forward would fail with torch's "Expected all tensors to be on the same device". vip's own
    methods are not checked: a method is a plugin when `backbone_guard` watches it, decided once as it is built
    (looking up its distribution took 4-8 ms a call, every row of a sweep)."""
    from vipcli.methods.backbone_guard import is_watched

    if not is_watched(method):
        return
    device = method.setup.device
    elsewhere = tensors_elsewhere(method, device)
    if not elsewhere:
        return
    raise method_fault(method.id, member, f"{left_elsewhere(member, elsewhere)}, not on {device} where forward gets "
                                          "the image features (setup.device): forward would fail there with "
                                          "\"Expected all tensors to be on the same device\"", DEVICE_FIXES[member])


IN_PLACE_FIX = ("compute out of place (F.normalize(x, dim=-1), x - mean) or on a copy (x = x.clone()); never "
               "write into the tensors vip hands you")


def check_splits_unchanged(method, data, before: dict[str, int]) -> None:
    """Refuse a fit that changed a tensor of `data` in place (`before`: `split_versions(data)` before the fit)."""
    changed = [name for name, version in split_versions(data).items() if version != before.get(name)]
    if changed:
        raise method_fault(method.id, "fit", f"fit changed {', '.join(changed)} in place (an in-place operation such "
                                             "as .sub_(), /= or x[...] = on it): these features are shared with the "
                                             "run's evaluation and the other rows of a benchmark sweep, whose "
                                             "results would change", IN_PLACE_FIX)


def tensor_version(value) -> int | None:
    """`value`'s version counter, which torch bumps on every in-place change (a view shares its base's);
    None for what is not a tensor or has no counter (an inference tensor)."""
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return value._version
    except RuntimeError:  # an inference tensor does not track its version
        return None


def split_versions(data) -> dict[str, int]:
    """The version counter of every tensor `fit` is handed (data.train.views/x/y, data.val.x/y), by name."""
    versions = {}
    for split in ("train", "val"):
        for member in ("views", "x", "y"):
            version = tensor_version(getattr(getattr(data, split, None), member, None))
            if version is not None:
                versions[f"data.{split}.{member}"] = version
    return versions


def check_features_unchanged(method, features: torch.Tensor, before: int | None) -> None:
    """Refuse a `forward` that changed the image features it was given in place (`before`: their version
    counter before the call): they are the run's cached features, read again by later evaluations."""
    if before is not None and tensor_version(features) != before:
        raise method_fault(method.id, "forward", "forward changed image_features in place (an in-place operation "
                                                 "such as /=, .mul_() or x[...] = on it): they are the run's cached "
                                                 "features, so later evaluations, vip predict and the other rows of "
                                                 "a benchmark sweep would see other features", IN_PLACE_FIX)


LOGIT_DTYPES = (torch.float32, torch.float64)  # what forward may return (or autocast's dtype, under autocast)


def autocast_logits(logits: torch.Tensor) -> bool:
    """Whether `logits` are in the dtype of an autocast that is on for their device (vip's bf16 autocast on
    CUDA makes a matmul's output bf16; `prepared_logits` casts it to float32)."""
    try:
        kind = logits.device.type
        return torch.is_autocast_enabled(kind) and logits.dtype == torch.get_autocast_dtype(kind)
    except RuntimeError:  # a device type autocast does not know
        return False


def check_logits(method, logits, images: int, device: torch.device | None = None) -> None:
    """Refuse `forward` output that is not a float32/float64 tensor [images, C] on `device`, the image
    features' device (shape, dtype and device only: nothing is read back)."""
    classes = method.setup.num_classes
    if not isinstance(logits, torch.Tensor):
        reason = f"forward returned {type(logits).__name__}, not a tensor"
    elif tuple(logits.shape) != (images, classes):
        shape = "[" + ", ".join(str(n) for n in logits.shape) + "]"
        reason = f"forward returned logits {shape} for {images} image{'s' * (images != 1)} of {classes} classes"
    elif not logits.is_floating_point():
        reason = f"forward returned {str(logits.dtype).replace('torch.', '')} logits"
    elif logits.dtype not in LOGIT_DTYPES and not autocast_logits(logits):
        raise method_fault(method.id, "forward", f"forward returned {str(logits.dtype).replace('torch.', '')} "
                                                 "logits, not float32 or float64: vip computes probabilities, "
                                                 "calibration and metrics from them at full precision",
                           "return logits.float()")
    elif device is not None and logits.device != device:
        raise method_fault(method.id, "forward", f"forward returned logits on {logits.device}, not on {device} "
                                                 "where the image features are",
                           "compute them on image_features.device: register what fit learns as a parameter or "
                           "buffer (the method is moved with .to(setup.device)), or .to(image_features.device)")
    else:
        return
    hint = "return float logits [B, C]: one row per image, one column per class in setup.class_names order"
    if isinstance(logits, torch.Tensor) and logits.dim() < 2 and images == 1:  # the batch dimension squeezed away
        hint += ", for a batch of one image too (no .squeeze(): keep [1, C])"
    raise method_fault(method.id, "forward", reason, hint)


EXPLANATION_FIX = ("return None, or one dict per class in setup.class_names order: {'class': name, 'symptoms': "
                   "[{'symptom': str, 'similarity': float, 'weight': float}, ...]} (optionally 'contribution': float); "
                   "numbers as Python floats (float(tensor)), not tensors")


def explanation_problem(explanation, class_names: list[str]) -> str | None:
    """What is wrong with an `explain()` result (see `check_explanation`), in words; None when it is well formed."""
    if explanation is None:
        return None
    if not isinstance(explanation, (list, tuple)):
        return f"explain returned {type(explanation).__name__}, not a list"
    for index, group in enumerate(explanation):
        where = f"item {index}"
        if not isinstance(group, dict) or not isinstance(group.get("class"), str):
            return f"{where} is {_kind(group)}, not a dict with a 'class' name"
        if group["class"] not in class_names:
            return f"{where} names class {group['class']!r}, which is not one of {', '.join(map(repr, class_names))}"
        symptoms = group.get("symptoms")
        if not isinstance(symptoms, (list, tuple)):
            return f"{where} (class {group['class']!r}) has 'symptoms' {_kind(symptoms)}, not a list"
        for entry in symptoms:
            problem = _symptom_entry_problem(entry)
            if problem is not None:
                return f"a symptom of class {group['class']!r} {problem}"
    return None


def _kind(value) -> str:
    """`value`'s kind in words: 'missing' for None, else its type's name with an article."""
    return "missing" if value is None else f"a {type(value).__name__}"


def _symptom_entry_problem(entry) -> str | None:
    """What is wrong with one symptom of an explanation, or None: a dict with 'symptom' (str), 'similarity' and
    'weight' (numbers) and, optionally, 'contribution' (a number or None); numbers are Python ints or floats,
    which the prediction files and the report write as JSON."""
    if not isinstance(entry, dict):
        return f"is {_kind(entry)}, not a dict"
    if not isinstance(entry.get("symptom"), str):
        return f"has 'symptom' {_kind(entry.get('symptom'))}, not a str"
    for key in ("similarity", "weight", "contribution"):
        value = entry.get(key)
        if key == "contribution" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"({entry['symptom']!r}) has {key!r} {_kind(value)}, not a number"
    return None


def check_explanation(method, explanation) -> None:
    """Refuse an `explain()` result that `vip predict --explain`, its prediction files and the report cannot show
    (`explanation_problem`): it would otherwise fail inside vip, or write a file that cannot be read back."""
    problem = explanation_problem(explanation, list(method.setup.class_names))
    if problem is not None:
        raise method_fault(method.id, "explain", problem, EXPLANATION_FIX)


def loss_member(method) -> str:
    """The member whose output the shared SGD loop differentiates: `training_loss` if the method has one, else `forward`."""
    return "training_loss" if getattr(method, "training_loss", None) is not None else "forward"


def trainable_names(method, limit: int = 6) -> str:
    """The names of the method's trainable parameters, the first `limit` of them, comma-separated."""
    return _first_names([name for name, p in method.named_parameters() if p.requires_grad], limit) or "none"


def _first_names(names: list[str], limit: int = 6) -> str:
    """The first `limit` of `names`, comma-separated, with how many there are in all when more."""
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def non_finite_logits_fault(method) -> PluginError:
    """The fault of a fitted method whose forward gives NaN or infinite logits (its weights diverged)."""
    return method_fault(method.id, "forward", "after fit, forward gives NaN or infinite logits",
                        "look for log(0), a division by zero or an overflow in fit/forward; keep the fitted "
                        "tensors finite")


def check_loss(method, loss) -> None:
    """Refuse a training loss that is not a 0-d tensor depending on the method's parameters (before backward).

    Shapes and autograd flags only: nothing is read back from the device.
    """
    member = loss_member(method)
    if not isinstance(loss, torch.Tensor):
        raise method_fault(method.id, member, f"{member} returned {type(loss).__name__}, not a tensor",
                           "return the loss as a 0-d torch tensor, e.g. F.cross_entropy(logits, labels)")
    if loss.dim() != 0:
        shape = "[" + ", ".join(str(n) for n in loss.shape) + "]"
        raise method_fault(method.id, member, f"the training loss is a tensor of shape {shape}, not a 0-d loss",
                           "return a 0-d loss, e.g. .mean() of the per-image losses")
    if not loss.requires_grad:
        raise method_fault(
            method.id, member,
            f"the training loss does not depend on the method's parameters ({trainable_names(method)})",
            "use them in forward/training_loss (no .detach(), no torch.no_grad() around the logits), or set "
            "trains = False and fit without vipcli.fitting.fit_sgd")


def check_gradients(method, seen: set[str]) -> None:
    """Refuse trainable parameters that got no gradient in any step of the first epoch (`seen`: the
    names of those that did; flags only)."""
    unused = [name for name, p in method.named_parameters() if p.requires_grad and name not in seen]
    if unused:
        raise method_fault(
            method.id, loss_member(method),
            f"the training loss does not depend on the method's parameters {_first_names(unused)}, so they would "
            "never be learned",
            "use them in forward/training_loss, or create what is not learned with requires_grad=False "
            "(or as a buffer: self.register_buffer(NAME, tensor))")


def stored_record(method, record=None):
    """`method.record()` (or `record`, what it already returned) as a run stores it and `vip predict` reads
    it back (through JSON: a tuple comes back a list); what JSON cannot hold (a tensor, an array) is
    refused as the plugin's fault, before anything is written."""
    from vipcli.backbone_contract import json_problem

    record = method.record() if record is None else record
    try:
        return json.loads(json.dumps(record))
    except (TypeError, ValueError) as error:
        problem = json_problem(record, "record()") or f"record() cannot be written as JSON ({error})"
        raise method_fault(method.id, "record", f"{problem}: the run stores record() as JSON",
                           "return plain JSON types from record() (str, int, float, bool, None, list, dict), e.g. "
                           "tensor.tolist() or float(value); keep tensors in a buffer "
                           "(self.register_buffer(NAME, tensor)), which the run stores as tensors") from None


JSON_ALTERATION_FIX = ("return from record() what JSON gives back as it is (str keys, lists), or read `stored` in "
                       "__init__ as the run gives it back")


def json_alteration(value, path: str = "record()") -> str | None:
    """Where `value` would come back from the run's JSON other than it is: a dict key that is not a str (it
    comes back a str) or a tuple (it comes back a list), said in words; None when it comes back equal, or when
    JSON cannot hold it at all (a tuple key, a tensor: `stored_record` names that)."""
    if isinstance(value, tuple):
        return f"{path} is a tuple, which the run gives back as a list"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(value, dict) and not isinstance(key, str):
            try:
                returned = next(iter(json.loads(json.dumps({key: None}))))  # 0 -> "0", True -> "true"
            except (TypeError, ValueError):  # a key JSON cannot write (a tuple): not an alteration
                return None
            return f"{path} has {type(key).__name__} keys ({key!r}), which the run gives back as str ({returned!r})"
        found = json_alteration(item, f"{path}[{key!r}]")
        if found is not None:
            return found
    return None


def check_deterministic(method, first: torch.Tensor, second: torch.Tensor) -> None:
    """Refuse a forward that gives other logits [n, C] for the same features twice (randomness left in it):
    the rebuilt method could not match it, and predictions would change from call to call.

    The logits are compared (relative to the largest, within `ROUND_TRIP_TOLERANCE`), not their softmax: a
    confident method's probabilities are all near 0 or 1, and two calls with other dropout masks could agree
    on them to 1e-4 by chance and pass here, to fail later as a storage fault.
    """
    difference = float((first - second).abs().max() / first.abs().max().clamp_min(1e-12)) if len(first) else 0.0
    if not difference <= ROUND_TRIP_TOLERANCE:
        raise method_fault(method.id, "forward", f"forward is not deterministic in eval: the same features give "
                                                 f"logits {difference:.3g} apart (relative)",
                           "remove randomness from forward (F.dropout without training=self.training, torch.rand*, "
                           "sampling); vip calls it in eval mode (self.training is False)")


def full_precision_probabilities(method, features: torch.Tensor, device) -> torch.Tensor:
    """Softmax of a prepared method's logits for `features` [n, D], computed on `device` without autocast
    (float32 on the CPU, [n, C]): a bf16 output may round one ulp apart for two batch sizes, float32 does not."""
    with torch.no_grad():
        return method(features.to(device)).float().softmax(dim=-1).cpu()


def batch_probe(sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of at least BATCH_PROBE_ROWS rows made of `sample` [n, D] (n > 1), first in reverse order, then
    repeated as it is; and the row of `sample` each of its rows is ([rows] indices). A forward that treats
    each image alone gives each row the probabilities of that image in `sample`; one that reads the other
    rows shows it there, even when the first image alone cannot: a reduction only over large batches (train's
    evaluation computes logits thousands of rows at a time, `vip predict` 64) or over the rows before an
    image (a running mean: the first row is as alone)."""
    n = len(sample)
    reps = max(2, -(-BATCH_PROBE_ROWS // n))
    rows = torch.cat([torch.arange(n - 1, -1, -1), torch.arange(n).repeat(reps - 1)])  # [n * reps]
    return sample[rows], rows


def check_batch_independence(method, sample: torch.Tensor, device) -> None:
    """Refuse a fitted method whose probabilities for an image of `sample` ([n, D], at most ROUND_TRIP_IMAGES
    rows) depend on the other images of its batch (`check_batch_independent`: alone, in `sample`, and in
    `batch_probe`'s large reordered batch). A forward that runs only under autocast (bf16 weights on CUDA) is
    left unchecked. Three forwards of at most BATCH_PROBE_ROWS rows: a few ms.

    First, one image alone goes through forward as `vip predict IMAGE` sends it (`check_logits`): a forward whose
    output loses its batch dimension for one image (`.squeeze()`: [C], not [1, C]) passes every check on larger
    batches, and would save a run that cannot predict a single image."""
    from vipcli.fitting import prepared_logits

    sample = sample[:ROUND_TRIP_IMAGES]
    prepared_logits(method, sample[:1], device)  # [1, C], or the plugin's fault, named
    try:
        in_batch, alone = (full_precision_probabilities(method, rows, device) for rows in (sample, sample[:1]))
        probe = None
        if len(sample) > 1:
            batch, rows = batch_probe(sample)
            probe = full_precision_probabilities(method, batch, device), rows
    except PluginError:  # a forward that runs only under autocast: predicted by the caller, unchecked here
        return
    check_batch_independent(method, in_batch, alone, probe)


def check_batch_independent(method, in_batch: torch.Tensor, alone: torch.Tensor,
                            probe: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """Refuse a forward whose probabilities for the first image alone ([1, C]) differ from its row of a batch's
    (`in_batch` [n, C], n > 1; both `full_precision_probabilities`), or whose probabilities in `probe`
    (those of `batch_probe`'s batch [m, C], and its rows' indices into the batch) differ from `in_batch`'s for
    the same image: the logits depend on the other images of the batch, so predictions would change with the
    batch size, the order and which images vip predict is given together."""
    if len(in_batch) < 2:
        return
    n = len(in_batch)
    comparisons = [(alone, in_batch[:1], f"alone than in a batch of {n}", "alone")]
    if probe is not None:
        reordered, rows = probe
        comparisons.append((reordered, in_batch[rows], f"in a batch of {n} than in a batch of {len(rows)} (the same "
                                                       "images reordered and repeated)", f"in the batch of {len(rows)}"))
    for other, mine, where, there in comparisons:
        difference = float((mine - other).abs().max())
        if difference <= ROUND_TRIP_TOLERANCE:
            continue
        apart = f"max difference {difference:.3g}" if bool(torch.isfinite(other).all()) else f"NaN or infinite {there}"
        raise method_fault(method.id, "forward", f"forward gives an image other probabilities {where} ({apart}): its "
                                                 "logits depend on the other images of the batch, so predictions would "
                                                 "change with the batch size and with the images predicted together",
                           "compute each image's logits from its own features only (reduce over dim=-1, never over "
                           "the batch, dim 0: no mean, std, norm or softmax across images)")


def check_sweep_order(method_id: str, seeds: tuple, first: torch.Tensor, again: torch.Tensor) -> None:
    """Refuse a method whose fit with seed A after a fit with seed B (fresh instances) gives other logits
    [n, C] than its first fit with seed A: state shared between instances (on the class or its module)
    leaks from one fit into the next, or fit draws random numbers that the seed does not fix (numpy's or
    Python's generators), so a sweep's results would depend on its order.

    The logits are compared (relative to the largest, within `ROUND_TRIP_TOLERANCE`), not their softmax:
    a confident method's probabilities are all near 0 or 1 and would hide the leak.
    """
    difference = float((first - again).abs().max() / first.abs().max().clamp_min(1e-12)) if len(first) else 0.0
    if not difference <= ROUND_TRIP_TOLERANCE:
        a, b = seeds[0], seeds[1]
        said = (f"fitted with seed {a}, then seed {b}, then seed {a} again (a fresh instance each time), its two "
                f"seed-{a} fits give logits {difference:.3g} apart (relative): fit changes state shared between "
                "instances, or draws random numbers that context.seed does not fix (numpy, Python's random), so "
                "results would depend on the order of a benchmark sweep")
        raise method_fault(method_id, "fit", said, f"{STATE_ON_THE_INSTANCE}; draw random numbers from a "
                                                   "torch.Generator seeded with context.seed")


def check_symptoms_unused(method_id: str, first: torch.Tensor, second: torch.Tensor) -> None:
    """Refuse a method declaring `uses_symptoms = False` whose test logits [n, C] differ (relative to the largest,
    beyond `ROUND_TRIP_TOLERANCE`) between two fits on the same images and seed, built with two different symptom
    sets: it reads the symptoms after all, so a benchmark sweep resumed with other --symptoms would mix rows of
    both."""
    difference = float((first - second).abs().max() / first.abs().max().clamp_min(1e-12)) if len(first) else 0.0
    if not difference <= ROUND_TRIP_TOLERANCE:
        said = (f"declares uses_symptoms = False, but built with two different symptom sets and fitted on the same "
                f"images and seed, it gives logits {difference:.3g} apart (relative): the symptoms change its "
                "results, so a benchmark sweep resumed with other --symptoms would mix rows of both")
        raise method_fault(method_id, "uses_symptoms", said, "drop uses_symptoms = False (the default, True, is "
                                                            "right for a method that reads setup.symptoms)")


def check_fits_differ(method_id: str, seeds: tuple, first: torch.Tensor, second: torch.Tensor) -> None:
    """Refuse a method that uses shots whose fit with seed B gives exactly the test logits [n, C] of its fit
    with seed A although the two fits learned from different training images: fit keeps the result of an
    earlier fit (a cache on the class or in its module, "first fit wins", which the A-B-A order check cannot
    see since every fit then gives the first one's result) or ignores its training data, so every row of a
    benchmark sweep would report the same fit. Only exact equality is refused: two real fits on other images
    never agree to the last bit."""
    if len(first) and first.shape == second.shape and torch.equal(first, second):
        said = (f"fitted with seed {seeds[0]}, then seed {seeds[1]} on other training images (a fresh instance "
                "each time), both fits give exactly the same logits: fit reuses a fit kept from an earlier one (a "
                "cache on the class or in a module-level variable) or ignores its training data, so every row of "
                "a benchmark sweep would report one fit")
        raise method_fault(method_id, "fit", said, f"{STATE_ON_THE_INSTANCE}; a method that learns nothing from "
                                                   "labelled images declares uses_shots = False")


def global_random_states() -> tuple:
    """The state of every global random number generator a fit could seed: torch's (the CPU's), Python's
    `random` and NumPy's, in that order, as values that compare with `==` (see `check_own_seeding`)."""
    import random

    import numpy as np

    numpy_state = np.random.get_state()
    return (torch.random.get_rng_state().tolist(), random.getstate(), (numpy_state[0], numpy_state[1].tolist(),
                                                                        *numpy_state[2:]))


def check_own_seeding(method_id: str, seeds: tuple, first: tuple, second: tuple) -> None:
    """Refuse a method whose fit seeds a global random number generator with a constant (`torch.manual_seed(0)`,
    `np.random.seed(0)`, `random.seed(0)` inside fit): fitted with seed A, then seed B, each from other
    generator states (`check_sweep` sets them), the generator ends both fits in the same state. Every seed of
    a benchmark sweep would then draw the same initialisation and batch order, and the spread over seeds would
    measure the few-shot subsets only. `first` and `second` are `global_random_states()` after each fit."""
    names = ("torch's", "Python's random", "NumPy's")  # in the order of global_random_states()
    reseeded = [name for name, a, b in zip(names, first, second) if a == b]
    if reseeded:
        said = (f"fitted with seed {seeds[0]}, then seed {seeds[1]} (each from other random states), "
                f"{' and '.join(reseeded)} global random generator ends both fits in the same state: fit seeds it "
                "with a constant (torch.manual_seed(0), np.random.seed(0), random.seed(0)), so every seed of a "
                "benchmark sweep would draw the same random numbers")
        raise method_fault(method_id, "fit", said, "seed from context.seed, or draw random numbers from a "
                                                   "torch.Generator seeded with context.seed; never a constant")


def are_probabilities(logits: torch.Tensor, computed_in: torch.dtype | None = None) -> bool:
    """Whether every row of `logits` [n, C] is a probability vector: entries in [0, 1], summing to 1 within
    `PROBABILITY_TOLERANCE` (n > 0), or within C rounding steps of `computed_in` when the logits were
    computed in a coarser dtype (bf16 under a GPU's autocast: its rows sum to 1 only within about 1e-2)."""
    if not len(logits):
        return False
    tolerance = PROBABILITY_TOLERANCE
    if computed_in is not None and computed_in.is_floating_point:
        tolerance = max(tolerance, logits.shape[-1] * torch.finfo(computed_in).eps)
    inside = bool(((logits >= 0) & (logits <= 1)).all())
    return inside and bool(((logits.double().sum(dim=-1) - 1).abs() <= tolerance).all())


PROBABILITIES = "forward returns probabilities, vip applies softmax itself"
PROBABILITIES_FIX = "return the scores before softmax"


def check_not_probabilities(method, logits: torch.Tensor) -> None:
    """Refuse a method whose logits [n, C] are all probability vectors (a softmax left in forward)."""
    if are_probabilities(logits):
        raise method_fault(method.id, "forward", f"{PROBABILITIES}: every row of its {len(logits)} sets of logits "
                                                 "lies in [0, 1] and sums to 1", PROBABILITIES_FIX)


def warn_probabilities(method, logits: torch.Tensor, computed_in: torch.dtype | None = None) -> None:
    """One warning (a real run goes on) when every row of a fitted plugin method's logits [n, C] is a
    probability vector: softmax over probabilities flattens every figure computed from them.
    `computed_in`: the autocast dtype they were computed in, if any (see `are_probabilities`)."""
    if not are_probabilities(logits, computed_in):
        return
    from rich.markup import escape

    from vipcli import console

    console.warn(escape(f"method '{method.id}' (from {distribution_of_method(method.id)}): {PROBABILITIES}, so "
                        f"its probabilities are flattened towards 1/{logits.shape[-1]}: {PROBABILITIES_FIX} "
                        f"(vip methods check {method.id} fails it)"))


def rebuilt_shapes_fault(method, mismatch) -> PluginError:
    """The fault of a method whose `__init__` builds tensors of other names or shapes than `fit` leaves (e.g.
    an empty buffer that fit replaces with one sized by the data): the run could not be loaded by predict."""
    def shape(size) -> str:
        return "[" + ", ".join(str(n) for n in size) + "]" if size is not None else "none"

    names = sorted(set(mismatch.found) | set(mismatch.expected))
    differ = "; ".join(f"{name}: saved {shape(mismatch.found.get(name))}, __init__ makes "
                       f"{shape(mismatch.expected.get(name))}" for name in names
                       if mismatch.found.get(name) != mismatch.expected.get(name))
    return method_fault(method.id, "state_tensors",
                        f"rebuilt from what the run stores, its tensors do not fit the fitted ones ({differ}): "
                        "vip predict could not load the run",
                        "create every parameter and buffer in __init__ with the shape fit gives it (from setup, "
                        "settings, or a size that record() returns and __init__ reads back from `stored`)")


def stored_tensors(method) -> dict[str, torch.Tensor]:
    """What `method.state_tensors()` gives, detached on the CPU, as model.safetensors will hold it; a value that
    is not a tensor (a count, a list, the dict of `get_extra_state`) is the plugin's fault, named before anything
    is written."""
    from vipcli.methods.backbone_guard import kept_by

    tensors = kept_by(method, "state_tensors", method.state_tensors)
    if not isinstance(tensors, dict):
        raise method_fault(method.id, "state_tensors", f"state_tensors() returned {type(tensors).__name__}, not a "
                                                       "dict of tensors", STATE_TENSORS_FIX)
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise method_fault(method.id, "state_tensors",
                               f"state_tensors() gives {name!r} a {type(value).__name__}, not a tensor: "
                               "model.safetensors holds tensors only", STATE_TENSORS_FIX)
    return {name: tensor.detach().cpu() for name, tensor in tensors.items()}


STATE_TENSORS_FIX = ("keep numbers, strings and lists in record() (JSON; read them back from `stored` in __init__) "
                     "and tensors in parameters or buffers; a get_extra_state() is not saved: return its state from "
                     "record() instead")


def check_round_trip(method, features: torch.Tensor, device) -> None:
    """Rebuild a fitted plugin method from what the run will store and compare its logits with the fitted one's.

    A method that keeps what it learned in a plain attribute (not a parameter, a registered buffer
    or `record()`) would otherwise save a run that predicts something else than what `vip train`
    measured. Built-in methods are not re-checked (vip's tests cover them).
    """
    from vipcli.devices import autocast_dtype
    from vipcli.fitting import predict_logits
    from vipcli.methods import restore_method
    from vipcli.methods.backbone_guard import kept_by

    if is_own_distribution(distribution_of_method(method.id)) or not len(features):
        return
    sample = features[:ROUND_TRIP_IMAGES]  # [n, D]
    logits = predict_logits(method, sample, device)  # [n, C]
    fitted = logits.softmax(dim=-1)  # [n, C]
    if not bool(torch.isfinite(fitted).all()):  # NaN weights are not a storage problem: say what they are
        raise non_finite_logits_fault(method)
    warn_probabilities(method, logits, autocast_dtype(device))  # bf16 on CUDA: rows sum to 1 within ~1e-2
    check_deterministic(method, logits, predict_logits(method, sample, device))
    check_batch_independence(method, sample, device)
    settings = dataclasses.asdict(method.settings)
    tensors = stored_tensors(method)
    where = f"method '{method.id}' rebuilt from its own record() and state_tensors()"
    record = kept_by(method, "record", method.record)  # asked once: a plugin's record() may be slow, or count its calls
    altered = json_alteration(record)  # where the stored record() comes back other than it was
    try:
        rebuilt = restore_method(method.id, method.setup, settings, stored_record(method, record), tensors, where)
        again = predict_logits(rebuilt, sample, device).softmax(dim=-1)  # [n, C]
    except StateMismatch as mismatch:  # at train time the plugin's __init__ is at fault, not the backbone
        raise rebuilt_shapes_fault(method, mismatch) from None
    except PluginError as error:  # e.g. a KeyError on an int key that came back a str
        if altered is None:
            raise
        raise method_fault(method.id, error.member, f"rebuilt from what the run stores, {error.reason}: {altered}",
                           JSON_ALTERATION_FIX) from None
    difference = float((fitted - again).abs().max())
    if not difference <= ROUND_TRIP_TOLERANCE and altered is not None:
        raise method_fault(method.id, "record", f"rebuilt from what the run stores, it predicts other probabilities "
                                                f"than the fitted method (max difference {difference:.3g}): {altered}",
                           JSON_ALTERATION_FIX)
    if not difference <= ROUND_TRIP_TOLERANCE:
        stored = ", ".join(sorted(tensors)) or "none"
        keys = ", ".join(sorted(map(str, record or {}))) or "none"
        raise method_fault(
            method.id, "state_tensors",
            f"rebuilt from what the run stores (tensors: {stored}; record() keys: {keys}), it predicts other "
            f"probabilities than the fitted method (max difference {difference:.3g}): vip predict would not "
            "predict what vip train measured",
            "keep what fit learns in an nn.Parameter or a buffer: self.register_buffer(NAME, tensor) in __init__, "
            "then assign self.NAME = ... in fit; or return it from record() and read it back from `stored` in "
            "__init__")
