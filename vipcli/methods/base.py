"""The method interface: what every few-shot method (built-in or plugin) implements.

A method turns frozen image features into class logits. It is built from a `MethodSetup` (the
backbone, class names, symptoms) and its own settings dataclass, fitted on cached features of the
few-shot training images (the image encoder never runs per epoch), and saved as named tensors plus
JSON-able settings and state in the run directory. `vip predict` rebuilds it from exactly what the
run stored, never from today's defaults.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from vipcli.errors import UsageError, VipError


@dataclass
class MethodSetup:
    """What a method is built from: everything outside its own settings."""

    backbone: Any  # a frozen vipcli.backbone.Backbone
    class_names: list[str]  # logit order
    symptoms: dict[str, list[str]] = field(default_factory=dict)  # class -> symptom phrases ({} if none)
    trim: bool = True  # run the text tower only up to the longest prompt (False: the authors' full length)

    @property
    def device(self) -> torch.device:
        """The device the backbone (and so the method) lives on."""
        return self.backbone.device

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.class_names)


@dataclass
class FitContext:
    """How to fit: the schedule and seed of the run, and where to report progress."""

    schedule: Any  # vipcli.schedule.Schedule (epochs, batch size, lr, cosine after one warm-up epoch)
    seed: int  # seeds batches and any random initialisation done during fitting
    progress: Any = None  # an optional rich Progress
    reference: Callable | None = None  # the authors' loop: callable(epoch, train) -> (features, labels) batches


@dataclass
class NoSettings:
    """Settings of a method that has none."""


class Method(nn.Module):
    """A few-shot classifier over frozen image features.

    Subclasses set the class attributes, define `Settings` (a dataclass of their options, each with
    a default) and implement `forward`; they override `fit`, `explain`, `record` and the state
    methods where the defaults don't fit. Register the class under the entry-point group
    `vip.methods`; the entry-point name becomes `id`.

    Class attributes:
        summary: one line for `vip methods list` and help texts.
        trains: fitting learns something from the labelled images.
        uses_shots: the labelled few-shot images are used at all (a training-free cache uses them
            without training; zero-shot methods don't use them and run once per seed in a sweep).
        needs_symptoms: the class symptoms are required (`vip train` fails early without them).
        uses_symptoms: the class symptoms can change what the method computes (default True, the safe answer).
            False declares that no symptom can: a benchmark sweep of such methods resumes with other --symptoms,
            and `vip methods check` fits it with two symptom sets to hold it to its word. A class that inherits
            False from one of vip's own methods without declaring it again is taken to use them
            (`symptoms_matter`).
        uses_schedule: fit uses the run's schedule (--schedule, --epochs, --batch-size, --lr), as the
            shared SGD loop `vipcli.fitting.fit_sgd` does; methods with their own loop take settings.
        needs_center_view: fit wants the un-augmented view of each training image in `data.train.x`
            (otherwise only the augmented views `data.train.views` are encoded).
    """

    id: str = ""
    summary: ClassVar[str] = ""
    trains: ClassVar[bool] = True
    uses_shots: ClassVar[bool] = True
    needs_symptoms: ClassVar[bool] = False
    uses_symptoms: ClassVar[bool] = True
    needs_center_view: ClassVar[bool] = False
    uses_schedule: ClassVar[bool] = False
    Settings: ClassVar[type] = NoSettings

    def __init__(self, setup: MethodSetup, settings=None, stored: dict | None = None):
        """Build the method.

        Args:
            setup: backbone, class names and symptoms.
            settings: an instance of `Settings` (None: its defaults).
            stored: the JSON state `record()` returned when the run was trained (None when training).
        """
        super().__init__()
        self._setup = [setup]  # a list keeps the frozen backbone out of this module's parameters
        self.settings = settings if settings is not None else self.Settings()

    # --- what the core reads -----------------------------------------------------------------

    @property
    def setup(self) -> MethodSetup:
        """The backbone, class names and symptoms this method was built from."""
        return self._setup[0]

    @setup.setter
    def setup(self, value) -> None:
        """Refused: `Method.__init__` keeps the setup (out of the module's parameters); a plugin that assigns it
        instead of calling `super().__init__` is told so, in the words of the check for a skipped `super().__init__`."""
        from vipcli.methods.contract import MemberFault

        raise MemberFault("__init__", "__init__ assigned self.setup, which Method.__init__ sets (so the method is "
                                      "not set up: nn.Module's state, setup, settings)",
                          "call super().__init__(setup, settings, stored) first in __init__, and assign no self.setup")

    @property
    def backbone(self):
        """The frozen backbone."""
        return self.setup.backbone

    def fit(self, data, context: FitContext) -> dict:
        """Learn from the few-shot training features; return what to record in metrics.json.

        Args:
            data: a vipcli.featuresets.PreparedData (train with `views` [N, V, D] and, when
                `needs_center_view`, `x` [N, D]; val with `x` [M, D]).
            context: schedule, seed, progress.
        Returns:
            {"best_epoch": int | None, "best_val_accuracy": float | None, "history": [...], ...}
        """
        return {"best_epoch": None, "best_val_accuracy": None, "history": []}

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Class logits for image features: [B, D] -> [B, C]."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Called once before inference (after fit or loading): cache anything image-independent."""

    def explain(self, image_feature: torch.Tensor) -> list[dict] | None:
        """Per class, the prompts behind its logit for one image [D], or None if the method has none.

        Returns:
            [{"class": name, "symptoms": [{"symptom", "similarity", "weight"}]}] in class order.
        """
        return None

    def record(self) -> dict:
        """JSON-able state that predict needs besides the tensors (prompts, searched values...)."""
        return {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors saved in model.safetensors (default: every parameter and persistent buffer)."""
        return {name: tensor.detach() if isinstance(tensor, torch.Tensor) else tensor  # else: refused, named
                for name, tensor in self.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Load tensors saved by `state_tensors`; a mismatch is one clear error naming `where`."""
        expected = {name: tuple(t.shape) for name, t in self.state_tensors().items()}
        found = {name: tuple(t.shape) for name, t in tensors.items()}
        if expected != found:
            mismatch = StateMismatch(f"{where}: saved tensors {found} do not fit backbone '{self.backbone.id}' with "
                                     f"method '{self.id}', which needs {expected}",
                                     "predict with the backbone and arch the run was trained with")
            mismatch.found, mismatch.expected = found, expected
            raise mismatch
        self.load_state_dict(tensors, strict=False)


def symptoms_matter(cls) -> bool:
    """Whether the class symptoms can change what method class `cls` computes: its `uses_symptoms`, except that a
    class outside vip that inherits False from one of vip's own methods is taken to use them until it declares
    False itself: vip vouches for its own methods' code, not for what a subclass adds (its `make_prompts`, say)."""
    if getattr(cls, "uses_symptoms", True):
        return True
    declared_by = next(klass for klass in cls.__mro__ if "uses_symptoms" in vars(klass))
    return _is_vip_class(declared_by) and not _is_vip_class(cls)


def _is_vip_class(cls) -> bool:
    """Whether `cls` is defined in vip's own package (`vipcli`)."""
    return cls.__module__.split(".")[0] == "vipcli"


class StateMismatch(VipError):
    """Saved tensors that do not fit the method as built (names or shapes differ); `found` and `expected`
    map each tensor's name to its shape (saved, and as the method was built)."""

    found: dict = {}
    expected: dict = {}


# --- settings -------------------------------------------------------------------------------------


def gives_explanations(method: Method) -> bool:
    """Whether `method` overrides `Method.explain` (the base gives no per-symptom explanation: None)."""
    return type(method).explain is not Method.explain


def settings_fields(settings_class) -> dict[str, dataclasses.Field]:
    """The option fields of a settings dataclass, by name."""
    return {f.name: f for f in dataclasses.fields(settings_class)}


def setting_default(option: dataclasses.Field):
    """The default of a settings field: its `default`, or what its `default_factory` makes."""
    return option.default if option.default is not dataclasses.MISSING else option.default_factory()


def _optional_of(kind):
    """X for `Optional[X]` / `X | None` (one type besides None), else None."""
    import types

    if typing.get_origin(kind) not in (typing.Union, types.UnionType):
        return None
    others = [a for a in typing.get_args(kind) if a is not type(None)]
    return others[0] if len(others) == 1 and len(others) < len(typing.get_args(kind)) else None


def _sequence_of(kind):
    """T for `list[T]`, `tuple[T, ...]` (a comma-separated option), else None."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def setting_type_name(kind) -> str:
    """A settings field's type in words, as `vip methods show` prints it (`float or none`, `one of: a, b`)."""
    if _optional_of(kind) is not None:
        return f"{setting_type_name(_optional_of(kind))} or none"
    if typing.get_origin(kind) is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(kind))
    if _sequence_of(kind) is not None:
        return f"comma-separated {setting_type_name(_sequence_of(kind))}"
    return getattr(kind, "__name__", str(kind))


_KIND_WORDS = {int: "a whole number", float: "a number"}  # a setting's type in a fix's words
_CONTAINERS = (dict, list, tuple, set, frozenset)  # bare: dict('{"a": 1}') fails, list('ab') is ['a', 'b']


def _convert(value: str, kind, option: str, default=dataclasses.MISSING):
    """`value` as a setting of type `kind`; a UsageError naming `option`, the type and what to pass (`default`,
    when it is a plain value, as the example)."""
    if kind is bool or kind == "bool":
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{option}: expected true or false, got '{value}'", f"pass {option}=true or false")
    if _optional_of(kind) is not None:
        return None if value.strip().lower() == "none" else _convert(value, _optional_of(kind), option, default)
    if typing.get_origin(kind) is typing.Literal:
        for allowed in typing.get_args(kind):
            if str(allowed) == value.strip() or (isinstance(allowed, bool) and str(allowed).lower() == value.strip()):
                return allowed
        raise UsageError(f"{option}: expected {setting_type_name(kind)}, got '{value}'")
    if _sequence_of(kind) is not None:
        items = [_convert(item.strip(), _sequence_of(kind), option) for item in value.split(",") if item.strip()]
        return items if typing.get_origin(kind) is list else tuple(items)
    if typing.get_origin(kind) is not None or not callable(kind) or kind in _CONTAINERS:  # dict[...], a Union, dict
        raise UsageError(f"{option}: a setting of type {setting_type_name(kind)} cannot be set on the command line",
                         "vip converts bool, int, float, str, a Literal, X | None and list[X] settings; leave it at "
                         "its default, or ask the method's authors for a setting of one of those types")
    words = _KIND_WORDS.get(kind, f"a {setting_type_name(kind)}")
    plain = isinstance(default, (int, float, str)) and not isinstance(default, bool)
    example = f", such as {option}={default}" if plain else ""
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option}: expected {setting_type_name(kind)}, got '{value}'",
                         f"pass {words}{example}") from None
    if isinstance(converted, float) and not math.isfinite(converted):
        raise UsageError(f"{option}: expected a finite number, got '{value}'", f"pass a finite number{example}")
    return converted


def check_setting(settings, name: str, ok: bool, rule: str) -> None:
    """UsageError naming the method setting `name` (and its value) when `ok` is False: `rule` says what it must
    be, the hint gives the setting's default as an example. For a Settings class's validate()."""
    if ok:
        return
    option = f"--method-option {name.replace('_', '-')}"
    default = {f.name: f.default for f in dataclasses.fields(settings)}.get(name)
    raise UsageError(f"{option}={getattr(settings, name)}: {rule}", f"pass a value such as {option}={default} (its default)")


def check_positive_training(settings) -> None:
    """check_setting for a method's own training loop: `epochs`, `lr` and `batch_size` above 0."""
    for name in ("epochs", "lr", "batch_size"):
        check_setting(settings, name, getattr(settings, name) > 0, "must be above 0")


def check_each_setting_once(options: dict[str, Any]) -> None:
    """UsageError for the first setting a `method_options` dict gives under both its spellings (`{"n_ctx": 4,
    "n-ctx": 8}`, which kept one value without a word), as the command line refuses `-o n-ctx=4 -o n_ctx=8`."""
    given: dict[str, str] = {}  # each setting -> how the dict gave it first
    for key, value in options.items():
        name, shown = str(key).replace("-", "_"), f"method_options[{key!r}]={value!r}"
        if name in given:
            raise UsageError(f"{shown}: the setting {name} is given twice (first as {given[name]})",
                             "give each setting once, with the value you mean")
        given[name] = shown


def make_settings(method_class, options: dict[str, Any], method_id: str):
    """The method's settings from `KEY=VALUE` options (strings converted by field type).

    Unknown keys, and a setting given under both spellings (`n_ctx` and `n-ctx`), are usage errors.
    """
    from vipcli.methods.contract import method_code

    check_each_setting_once(options)
    settings_class = method_class.Settings
    hints = typing.get_type_hints(settings_class)
    known = settings_fields(settings_class)
    values = {}
    # the plugin's code runs here: a setting's type may be its own class (converting a value calls it), and its
    # Settings' __init__, __post_init__ or default_factory may raise
    with method_code(method_id, "Settings", SETTINGS_FIX):
        for key, value in options.items():
            name = str(key).replace("-", "_")
            if name not in known:
                listed = ", ".join(n.replace("_", "-") for n in known) or "none"
                raise UsageError(f"method '{method_id}' has no setting '{name.replace('_', '-')}'",
                                 f"its settings: {listed}{_CONTEXT_SETTINGS.get(name, '')}")
            option = f"--method-option {name.replace('_', '-')}"  # spelled as typed and as `vip methods list` shows it
            values[name] = _convert(value, hints[name], option, known[name].default) if isinstance(value, str) else value
        settings = settings_class(**values)
    check = getattr(settings, "validate", None)
    if check is not None:
        with method_code(method_id, "Settings.validate", SETTINGS_FIX):  # raises ValueError & co., or exits: named
            check()
    return settings


SETTINGS_FIX = "raise vipcli.errors.UsageError(message, hint) for a bad value"
# the settings that --n-ctx and --class-specific-context set, given to a method that learns no context
_CONTEXT_SETTINGS = {name: f"; {name.replace('_', '-')} is a setting of the methods that learn context, such as coop "
                           "and vip (vip methods list)" for name in ("n_ctx", "class_specific_context")}


def settings_from_record(method_class, record: dict):
    """Rebuild settings stored in a run (unknown keys from newer versions are ignored)."""
    known = settings_fields(method_class.Settings)
    return method_class.Settings(**{k: v for k, v in (record or {}).items() if k in known})
