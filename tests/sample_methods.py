"""Small method plugins for the method-contract tests: each a nearest-centroid method with one deliberate flaw.

Installed into a temporary site folder as the distribution `sample-methods` (module vip_sample_methods,
see plugin_helpers.py), exactly as a third-party method plugin is; the sound base is README's method
example (examples/vip-method-example), laid beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vip_method_example import NearestCentroid

from vipcli.fitting import fit_sgd
from vipcli.methods import Method
from vipcli.methods.prompting import PromptMethod, readable_class_name


class Centroid(NearestCentroid):
    """Sound: README's method example (the class centroids of the few-shot features, in a registered buffer)."""

    summary = "nearest centroid (sound)"


class ForgotBuffer(Centroid):
    """Flaw: keeps its centroids in a plain attribute, so the run stores nothing."""

    def __init__(self, setup, settings=None, stored=None):
        Method.__init__(self, setup, settings, stored)
        self.centroids = torch.zeros(setup.num_classes, setup.backbone.embed_dim, device=setup.device)


class CountInState(Centroid):
    """Flaw: state_tensors() holds a plain int beside the centroids (model.safetensors holds tensors only)."""

    def fit(self, data, context):
        self.count = len(data.train.y)
        return super().fit(data, context)

    def state_tensors(self):
        return {"centroids": self.centroids, "count": self.count}


class ExtraState(Centroid):
    """Flaw: a get_extra_state() dict, which nn.Module puts into state_dict() and so into state_tensors()."""

    def get_extra_state(self):
        return {"note": "kept"}

    def set_extra_state(self, state):
        self.note = state


class TrainsAsMethod(Centroid):
    """Flaw: `trains` written as a method (a forgotten class attribute): always true on the class."""

    def trains(self):
        return False


class SummaryAsProperty(Centroid):
    """Flaw: `summary` as a property: vip methods list would show '<property object ...>'."""

    @property
    def summary(self):
        return "nearest centroid"


class SkipsSuperInit(Centroid):
    """Flaw: __init__ never calls super().__init__ (nn.Module fails later, deep in vip)."""

    def __init__(self, setup, settings=None, stored=None):
        self.my_setup = setup


class AssignsSetup(Centroid):
    """Flaw: __init__ builds nn.Module itself and assigns self.setup (was "failed to build: AttributeError: property
    'setup' of 'AssignsSetup' object has no setter")."""

    def __init__(self, setup, settings=None, stored=None):
        nn.Module.__init__(self)
        self.setup = setup


class NoStoredArgument(Centroid):
    """Flaw: __init__ takes no `stored` (vip builds a method as Cls(setup, settings, stored))."""

    def __init__(self, setup, settings=None):
        super().__init__(setup, settings)


class Transposed(Centroid):
    """Flaw: forward returns [C, B]."""

    def forward(self, image_features):
        return super().forward(image_features).T


class NormalizesInPlace(Centroid):
    """Flaw: forward normalises the image features it is handed in place (they are the run's cached features)."""

    def forward(self, image_features):
        image_features /= image_features.norm(dim=-1, keepdim=True)
        return super().forward(image_features)


class CentersInPlace(Centroid):
    """Flaw: fit centres the training views in place (shared with evaluation and the other rows of a sweep)."""

    def fit(self, data, context):
        data.train.views.sub_(data.train.views.mean(dim=(0, 1), keepdim=True))
        return super().fit(data, context)


class BatchStandardized(Centroid):
    """Flaw: forward standardises each class's logits over the batch, so an image's logits depend on the others."""

    def forward(self, image_features):
        logits = super().forward(image_features)
        return (logits - logits.mean(dim=0)) / (logits.std(dim=0, correction=0) + 1e-6)


class LargeBatchStandardized(Centroid):
    """Flaw: forward standardises the logits over the batch only when it has more than 16 images ("enough to
    estimate them"): an image alone and in a small batch agree, but train's evaluation (thousands of images a
    call) and `vip predict` (64) do not."""

    def forward(self, image_features):
        logits = super().forward(image_features)
        if len(logits) <= 16:
            return logits
        return (logits - logits.mean(dim=0)) / (logits.std(dim=0, correction=0) + 1e-6)


class RunningCentered(Centroid):
    """Flaw: forward centres each image's logits on the mean of the images before it in the batch (a running
    mean written for a stream): the first image of a batch gets what it gets alone, the others do not."""

    def forward(self, image_features):
        logits = super().forward(image_features)
        before = logits.cumsum(dim=0) - logits  # [B, C]: the sum of the rows before each
        count = torch.arange(len(logits), device=logits.device).clamp(min=1).unsqueeze(1)
        return logits - before / count


class AutocastOnly(Centroid):
    """Sound, as a bf16 plugin on CUDA is: its forward works only under the autocast vip predicts with (here a
    CPU bf16 autocast the test turns on), and raises outside it."""

    def forward(self, image_features):
        if not torch.is_autocast_enabled("cpu"):
            raise RuntimeError("expected mat1 and mat2 to have the same dtype")
        return super().forward(image_features)


class ReadsCenterView(Centroid):
    """Flaw: fits its centroids on data.train.x without declaring needs_center_view."""

    def fit(self, data, context):
        one_hot = F.one_hot(data.train.y, self.setup.num_classes).float()  # [N, C]
        self.centroids = F.normalize(one_hot.T @ F.normalize(data.train.x.float(), dim=-1), dim=-1)
        return {}


class IntKeysRecord(Centroid):
    """Flaw: record() keeps a per-class offset under int keys, which the run's JSON gives back as str keys."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.offsets = {c: 0.0 for c in range(setup.num_classes)} if stored is None else stored["offsets"]

    def record(self):
        return {"offsets": self.offsets}

    def forward(self, image_features):
        offsets = torch.tensor([self.offsets[c] for c in range(self.setup.num_classes)], device=image_features.device)
        return super().forward(image_features) + offsets



class TupleKeysRecord(Centroid):
    """Flaw: record() keeps an offset under a tuple key, which JSON cannot write at all."""

    def record(self):
        return {"offsets": {(0, 1): 0.0}}

@dataclass
class TypedSettings:
    """Settings of the types a plugin writes besides bool/int/float/str."""

    temperature: float | None = None
    mode: Literal["cosine", "dot"] = "cosine"
    layers: list[int] = field(default_factory=lambda: [1, 2])
    weights: dict[str, float] = field(default_factory=dict)


class TypedCentroid(Centroid):
    """Sound: README's method example with settings of other types (the temperature falls back to 0.01)."""

    Settings = TypedSettings

    def forward(self, image_features):
        return super().forward(image_features) / (self.settings.temperature or 0.01) * 0.01


@dataclass
class NeedsValue:
    temperature: float  # no default


class NoDefault(Centroid):
    """Flaw: a setting without a default."""

    Settings = NeedsValue


@dataclass
class UntypedValue:
    temperature = 0.05  # no annotation: a class attribute, not a dataclass field


class UntypedSetting(Centroid):
    """Flaw: a setting written without a type, so it is no setting at all."""

    Settings = UntypedValue


class PlainSettings(Centroid):
    """Flaw: Settings is not a dataclass."""

    class Settings:
        temperature = 0.01


class FitReturnsNone(Centroid):
    """Flaw: fit forgets to return its result."""

    def fit(self, data, context):
        super().fit(data, context)


class Typo(Centroid):
    """Flaw: forward reads an attribute that does not exist."""

    def forward(self, image_features):
        return image_features @ self.centroid.T


class ForgotFit(Centroid):
    """Flaw: says it trains but keeps Method.fit, which learns nothing."""

    trains = True
    fit = Method.fit


class NoForward(Method):
    """Flaw: no forward at all (Method's own raises NotImplementedError)."""

    summary = "no forward"
    trains = False


class FitWithoutContext(Centroid):
    """Flaw: fit takes the data only, not (data, context)."""

    def fit(self, data):  # noqa: D102 - the flaw under test
        return super().fit(data, None)


class PlainWeights(Centroid):
    """Flaw: trains with the shared SGD loop, but its weights are a plain tensor, not an nn.Parameter."""

    trains, uses_schedule = True, True

    def __init__(self, setup, settings=None, stored=None):
        Method.__init__(self, setup, settings, stored)
        self.weight = torch.zeros(setup.num_classes, setup.backbone.embed_dim, device=setup.device, requires_grad=True)

    def fit(self, data, context):
        return fit_sgd(self, data, context)

    def forward(self, image_features):
        return image_features.float() @ self.weight.T


@dataclass
class Checked:
    temperature: float = 0.01

    def validate(self):
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")


class ValidateRaisesValueError(Centroid):
    """Flaw: its Settings.validate raises ValueError rather than vipcli's UsageError."""

    Settings = Checked


class LinearHead(Centroid):
    """Sound: a linear head over the normalised features, trained with the shared SGD loop."""

    trains, uses_schedule = True, True

    def __init__(self, setup, settings=None, stored=None):
        Method.__init__(self, setup, settings, stored)
        self.head = nn.Linear(setup.backbone.embed_dim, setup.num_classes)
        self.to(setup.device)

    def fit(self, data, context):
        return fit_sgd(self, data, context)

    def forward(self, image_features):
        return 10 * self.head(F.normalize(image_features.float(), dim=-1))


class SgdWithoutSchedule(LinearHead):
    """Flaw: trains with fit_sgd, which follows the run's schedule, but says uses_schedule = False (vip warned that
    --epochs was not used, then trained for that many epochs)."""

    uses_schedule = False


class SgdFitReturnsTuple(LinearHead):
    """Flaw: trains with fit_sgd but returns two of its figures instead of its dict."""

    def fit(self, data, context):
        fitted = fit_sgd(self, data, context)
        return fitted["best_epoch"], fitted["best_val_accuracy"]


class PerClassBias(LinearHead):
    """Sound: a bias per class, only the biases of the classes in a batch take part in its loss
    (a batch may hold one class only: the other bias gets its gradient in a later batch)."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(())) for _ in range(setup.num_classes)])
        self.to(setup.device)

    def training_loss(self, features, labels):
        logits = self(features)
        present = sorted(set(labels.tolist()))
        bias = torch.stack([self.biases[c] if c in present else logits.new_zeros(()) for c in range(logits.shape[1])])
        return F.cross_entropy(logits + bias, labels)


class NanLoss(LinearHead):
    """Flaw: its training loss is NaN."""

    def training_loss(self, features, labels):
        return F.cross_entropy(self(features), labels) * float("nan")


class VectorLoss(LinearHead):
    """Flaw: training_loss returns the per-image losses (forgot the mean)."""

    def training_loss(self, features, labels):
        return F.cross_entropy(self(features), labels, reduction="none")


class DetachedLoss(LinearHead):
    """Flaw: training_loss is computed on detached logits."""

    def training_loss(self, features, labels):
        return F.cross_entropy(self(features).detach(), labels)


class UnusedHead(LinearHead):
    """Flaw: declares a second head that forward never uses."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.spare = nn.Linear(setup.backbone.embed_dim, setup.num_classes)
        self.to(setup.device)


class IgnoresHead(LinearHead):
    """Flaw: forward never uses the head it trains (no training_loss of its own)."""

    def forward(self, image_features):
        return 10 * F.normalize(image_features.float(), dim=-1)[:, :self.setup.num_classes]


class NanFit(Centroid):
    """Flaw: its own fit leaves NaN centroids (no training loss to catch it)."""

    def fit(self, data, context):
        fitted = super().fit(data, context)
        self.centroids = torch.full_like(self.centroids, float("nan"))
        return fitted


class RecordsTensor(Centroid):
    """Flaw: record() returns a tensor, which the run's JSON metadata cannot hold."""

    def record(self):
        return {"centroids": self.centroids}


class DropoutForward(Centroid):
    """Flaw: F.dropout left on in forward (training=True is its default), so forward is random."""

    def forward(self, image_features):
        return super().forward(F.dropout(image_features, 0.5))


class HalfLogits(Centroid):
    """Flaw: forward returns float16 logits (vip's softmax, calibration and metrics need float32 or float64)."""

    def forward(self, image_features):
        return super().forward(image_features).half()


class SharedRunningMean(Centroid):
    """Flaw: keeps a running mean of every fit's centroids on the class, so each fit moves the next one's."""

    seen: list = []  # class-level: shared by every instance in the process

    def fit(self, data, context):
        result = super().fit(data, context)
        self.seen.append(self.centroids.clone())
        self.centroids = F.normalize(torch.stack(self.seen).mean(dim=0), dim=-1)
        return result


class FirstFitWins(Centroid):
    """Flaw: keeps the first fit's centroids on the class and hands them to every later fit ("first fit wins"),
    so every fit gives the same result, whatever its seed and images; fitting A, B, A again looks consistent."""

    kept: dict = {}  # class-level: shared by every instance in the process

    def fit(self, data, context):
        result = super().fit(data, context)
        self.centroids = self.kept.setdefault("centroids", self.centroids.clone())
        return result


class IgnoresShots(Centroid):
    """Flaw: declares it uses shots, but its fit sets class centroids from nothing the training images hold."""

    def fit(self, data, context):
        result = super().fit(data, context)
        generator = torch.Generator().manual_seed(0)
        self.centroids = F.normalize(torch.randn(self.centroids.shape, generator=generator), dim=-1)  # [C, D]
        return result


class UnseededNoise(Centroid):
    """Flaw: perturbs its centroids with Python's random, which context.seed does not fix (no state is shared)."""

    def fit(self, data, context):
        import random

        result = super().fit(data, context)
        noise = torch.tensor([random.gauss(0.0, 0.5) for _ in range(self.centroids.numel())])  # [C * D]
        self.centroids = F.normalize(self.centroids + noise.view_as(self.centroids), dim=-1)  # [C, D]
        return result


class SeedsItself(Centroid):
    """Flaw: seeds a global generator with a constant in fit (torch's, NumPy's or Python's, by `generator`) and
    perturbs its centroids from it, so every seed of a sweep draws the same noise."""

    generator = "torch"

    def fit(self, data, context):
        import random

        import numpy as np

        result = super().fit(data, context)
        size = self.centroids.numel()
        if self.generator == "torch":
            torch.manual_seed(0)
            noise = torch.randn(size)  # [C * D]
        elif self.generator == "numpy":
            np.random.seed(0)
            noise = torch.from_numpy(np.random.standard_normal(size)).float()
        else:
            random.seed(0)
            noise = torch.tensor([random.gauss(0.0, 1.0) for _ in range(size)])
        self.centroids = F.normalize(self.centroids + 0.1 * noise.view_as(self.centroids), dim=-1)  # [C, D]
        return result


class NumpySeedsItself(SeedsItself):
    """Flaw: `SeedsItself` with NumPy's global generator."""

    generator = "numpy"


class RandomSeedsItself(SeedsItself):
    """Flaw: `SeedsItself` with Python's `random`."""

    generator = "random"


class SoftmaxInForward(Centroid):
    """Flaw: forward returns probabilities (vip applies softmax to what forward returns)."""

    def forward(self, image_features):
        return super().forward(image_features).softmax(dim=-1)


class BankSizedInFit(Centroid):
    """Flaw: fit replaces an empty [0, D] buffer with one of a data-dependent length, which __init__ cannot rebuild."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.register_buffer("bank", torch.zeros(0, setup.backbone.embed_dim, device=setup.device))  # [N, D] fitted

    def fit(self, data, context):
        fitted = super().fit(data, context)
        self.bank = F.normalize(data.train.views.float().mean(dim=1), dim=-1)  # [N, D]
        return fitted


class PeeksAtTest(Centroid):
    """Flaw: fits its centroids on the test split's labelled features, which its test figures are computed on."""

    def fit(self, data, context):
        one_hot = F.one_hot(data.test.y, self.setup.num_classes).float()  # [T, C]
        self.centroids = F.normalize(one_hot.T @ F.normalize(data.test.x.float(), dim=-1), dim=-1)  # [C, D]
        return super(Centroid, self).fit(data, context)


class LogitsElsewhere(Centroid):
    """Flaw: forward returns its logits on another device than the features' (meta stands in for a GPU)."""

    def forward(self, image_features):
        return super().forward(image_features).to("meta")


class ReadmePrompts(PromptMethod):
    """Sound: README's PromptMethod recipe as written (no Settings: PromptMethod's default ContextSettings)."""

    summary = "learned context + 'a photo of a {class}.'"
    learns_context = True

    def make_prompts(self, setup):
        return [[f"a photo of a {readable_class_name(name)}."] for name in setup.class_names]


@dataclass
class TemperatureOnly:
    temperature: float = 1.0


class PlainPromptSettings(ReadmePrompts):
    """Flaw: learns context, but its Settings is a plain dataclass without n_ctx."""

    Settings = TemperatureOnly


class FlatPrompts(ReadmePrompts):
    """Flaw: make_prompts returns one str per class, not a list of phrases per class."""

    def make_prompts(self, setup):
        return [f"a photo of a {name}" for name in setup.class_names]



class SqueezesOneImage(Centroid):
    """Flaw: squeezes its logits, so a batch of one image gets [C], not [1, C]; every batch of two or more passed,
    and the run was saved, to fail only when `vip predict` was given a single image."""

    def forward(self, image_features):
        return super().forward(image_features).squeeze()


class ZeroShotReadsShots(Centroid):
    """Flaw: declares uses_shots = False (a zero-shot method, run once per seed in a sweep) but fits on data.train,
    which vip then hands empty."""

    uses_shots = False


class MalformedExplanation(Centroid):
    """Flaw: explain() gives one entry under a class name of its own, without the symptoms vip --explain shows."""

    def explain(self, image_feature):
        return [{"class": "spots", "score": float(image_feature.sum())}]


class TensorExplanation(Centroid):
    """Flaw: explain() is shaped right but its numbers are tensors, which a prediction file cannot hold."""

    def explain(self, image_feature):
        cosine = F.normalize(image_feature.float(), dim=-1) @ self.centroids.T  # [C]
        return [{"class": name, "symptoms": [{"symptom": f"looks like {name}", "similarity": cosine[c],
                                              "weight": torch.tensor(1.0)}]}
                for c, name in enumerate(self.setup.class_names)]


class ExplainsCentroids(Centroid):
    """Sound: explain() gives each class one 'symptom', the cosine to its centroid, as plain floats."""

    def explain(self, image_feature):
        cosine = (F.normalize(image_feature.float(), dim=-1) @ self.centroids.T).tolist()  # [C]
        return [{"class": name, "symptoms": [{"symptom": f"looks like {name}", "similarity": cosine[c],
                                              "weight": 1.0}]}
                for c, name in enumerate(self.setup.class_names)]


class NumpyNoise(Centroid):
    """Flaw: perturbs its centroids with NumPy's global generator, which context.seed does not fix."""

    def fit(self, data, context):
        import numpy as np

        result = super().fit(data, context)
        noise = torch.from_numpy(np.random.normal(0.0, 0.5, self.centroids.shape)).float()  # [C, D]
        self.centroids = F.normalize(self.centroids + noise, dim=-1)  # [C, D]
        return result


class BuiltElsewhere(Centroid):
    """Flaw: __init__ leaves its centroids on another device than setup.device, as a forgotten
    self.to(setup.device) leaves them on the CPU of a GPU run (meta stands in for the other device)."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.centroids = self.centroids.to("meta")


class FitsElsewhere(Centroid):
    """Flaw: fit assigns its centroids on another device than setup.device, as a tensor made on the CPU in fit
    (torch.eye(C), a new nn.Linear) is on a GPU run (meta stands in for the other device)."""

    def fit(self, data, context):
        result = super().fit(data, context)
        self.centroids = self.centroids.to("meta")
        return result


class ForgetsToMove(Centroid):
    """Flaw: README's example without its self.to(setup.device): on a GPU run its centroids stay on the CPU, and
    forward fails with torch's "Expected all tensors to be on the same device"; on the CPU nothing shows it."""

    def __init__(self, setup, settings=None, stored=None):
        Method.__init__(self, setup, settings, stored)
        self.register_buffer("centroids", torch.zeros(setup.num_classes, setup.backbone.embed_dim))  # [C, D]


class BiasMadeInForward(Centroid):
    """Flaw: forward adds a bias it makes on the CPU (torch.zeros without a device): on a GPU run it fails there."""

    def forward(self, image_features):
        return super().forward(image_features) + torch.zeros(self.setup.num_classes)


class PlainCpuWeights(Centroid):
    """Flaw: a projection kept in a plain attribute made on the CPU, which self.to(setup.device) does not move:
    forward's matmul fails on a GPU run (on torch's meta device, unlike CUDA, the matmul goes through)."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.projection = torch.eye(setup.backbone.embed_dim)  # [D, D]

    def forward(self, image_features):
        return super().forward(image_features @ self.projection)


class LoadsElsewhere(Centroid):
    """Flaw: load_state_tensors assigns what it loads where it was read, not on setup.device (the CPU, for a run
    predicted on a GPU; meta stands in for the other device)."""

    def load_state_tensors(self, tensors, where):
        self.centroids = tensors["centroids"].to("meta")


ENTRY_POINTS = "\n".join([
    "no-stored-argument = vip_sample_methods:NoStoredArgument",
    "trains-as-method = vip_sample_methods:TrainsAsMethod",
    "summary-as-property = vip_sample_methods:SummaryAsProperty",
    "skips-super-init = vip_sample_methods:SkipsSuperInit",
    "assigns-setup = vip_sample_methods:AssignsSetup",
    "sgd-without-schedule = vip_sample_methods:SgdWithoutSchedule",
    "count-in-state = vip_sample_methods:CountInState",
    "extra-state = vip_sample_methods:ExtraState",
    "logits-elsewhere = vip_sample_methods:LogitsElsewhere",
    "peeks-at-test = vip_sample_methods:PeeksAtTest",
    "records-tensor = vip_sample_methods:RecordsTensor",
    "dropout-forward = vip_sample_methods:DropoutForward",
    "half-logits = vip_sample_methods:HalfLogits",
    "shared-running-mean = vip_sample_methods:SharedRunningMean",
    "softmax-in-forward = vip_sample_methods:SoftmaxInForward",
    "unseeded-noise = vip_sample_methods:UnseededNoise",
    "seeds-itself = vip_sample_methods:SeedsItself",
    "numpy-seeds-itself = vip_sample_methods:NumpySeedsItself",
    "random-seeds-itself = vip_sample_methods:RandomSeedsItself",
    "first-fit-wins = vip_sample_methods:FirstFitWins",
    "ignores-shots = vip_sample_methods:IgnoresShots",
    "bank-sized-in-fit = vip_sample_methods:BankSizedInFit",
    "nan-fit = vip_sample_methods:NanFit",
    "readme-prompts = vip_sample_methods:ReadmePrompts",
    "plain-prompt-settings = vip_sample_methods:PlainPromptSettings",
    "flat-prompts = vip_sample_methods:FlatPrompts",
    "linear-ok = vip_sample_methods:LinearHead",
    "sgd-fit-returns-tuple = vip_sample_methods:SgdFitReturnsTuple",
    "per-class-bias = vip_sample_methods:PerClassBias",
    "nan-loss = vip_sample_methods:NanLoss",
    "vector-loss = vip_sample_methods:VectorLoss",
    "detached-loss = vip_sample_methods:DetachedLoss",
    "unused-head = vip_sample_methods:UnusedHead",
    "ignores-head = vip_sample_methods:IgnoresHead",
    "centroid-ok = vip_sample_methods:Centroid",
    "forgets-to-move = vip_sample_methods:ForgetsToMove",
    "bias-made-in-forward = vip_sample_methods:BiasMadeInForward",
    "plain-cpu-weights = vip_sample_methods:PlainCpuWeights",
    "forgot-buffer = vip_sample_methods:ForgotBuffer",
    "transposed = vip_sample_methods:Transposed",
    "normalizes-in-place = vip_sample_methods:NormalizesInPlace",
    "centers-in-place = vip_sample_methods:CentersInPlace",
    "batch-standardized = vip_sample_methods:BatchStandardized",
    "large-batch-standardized = vip_sample_methods:LargeBatchStandardized",
    "running-centered = vip_sample_methods:RunningCentered",
    "autocast-only = vip_sample_methods:AutocastOnly",
    "int-keys-record = vip_sample_methods:IntKeysRecord",
    "tuple-keys-record = vip_sample_methods:TupleKeysRecord",
    "reads-center-view = vip_sample_methods:ReadsCenterView",
    "typed-settings = vip_sample_methods:TypedCentroid",
    "no-default = vip_sample_methods:NoDefault",
    "plain-settings = vip_sample_methods:PlainSettings",
    "untyped-setting = vip_sample_methods:UntypedSetting",
    "fit-returns-none = vip_sample_methods:FitReturnsNone",
    "typo = vip_sample_methods:Typo",
    "forgot-fit = vip_sample_methods:ForgotFit",
    "no-forward = vip_sample_methods:NoForward",
    "fit-without-context = vip_sample_methods:FitWithoutContext",
    "plain-weights = vip_sample_methods:PlainWeights",
    "validate-value-error = vip_sample_methods:ValidateRaisesValueError",
    "missing-class = vip_sample_methods:DoesNotExist",
    "squeezes-one-image = vip_sample_methods:SqueezesOneImage",
    "zero-shot-reads-shots = vip_sample_methods:ZeroShotReadsShots",
    "malformed-explanation = vip_sample_methods:MalformedExplanation",
    "tensor-explanation = vip_sample_methods:TensorExplanation",
    "explains-centroids = vip_sample_methods:ExplainsCentroids",
    "numpy-noise = vip_sample_methods:NumpyNoise",
    "built-elsewhere = vip_sample_methods:BuiltElsewhere",
    "fits-elsewhere = vip_sample_methods:FitsElsewhere",
    "loads-elsewhere = vip_sample_methods:LoadsElsewhere",
])
