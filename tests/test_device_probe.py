"""A method plugin that works only where torch makes tensors by default (the CPU) passed every check on the CPU and
failed on a GPU with torch's "Expected all tensors to be on the same device", after every image was encoded. vip now
builds each plugin once more on torch's meta device, a stand-in for a GPU, and runs its forward there
(`vipcli.methods.device_probe`); the mistakes themselves are in test_method_contract.py. Here: vip's own methods pass
it, a sound plugin that uses the CPU as a GPU allows is not refused, and the probe runs once per class and leaves the
global random generators as it found them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from plugin_helpers import methods_fixture

PROBED_METHODS = '''
import random

import numpy as np
import torch

from vip_method_example import NearestCentroid


class CountsBuilds(NearestCentroid):
    """Sound: draws from every global generator in __init__ and counts its instances; in forward it scales by a
    0-d tensor on the CPU and indexes with an index on the CPU, both of which torch allows on a GPU too."""

    built = 0

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        type(self).built += 1
        torch.randn(3), random.random(), np.random.rand()

    def forward(self, image_features):
        rows = torch.arange(image_features.shape[0])  # on the CPU: an index
        return super().forward(image_features[rows]) * torch.tensor(1.0)  # a 0-d tensor on the CPU


class CopiesFromTheCpu(NearestCentroid):
    """Sound: keeps a plain CPU tensor and, in forward, copies it to the features' device (new_tensor), writes
    through a CPU index (index_put_) and reads the shape of a CPU tensor (expand_as, view_as, reshape_as), each of
    which torch allows on a GPU too."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.prior = torch.ones(len(setup.class_names))  # a plain tensor: stays on the CPU

    def forward(self, image_features):
        logits = super().forward(image_features)
        prior = logits.new_tensor(self.prior)  # a copy onto the logits' device
        prior = prior.expand_as(torch.empty(logits.shape)).view_as(torch.empty(logits.shape))
        prior = prior.reshape_as(torch.empty(logits.shape)).clone()
        prior.index_put_((torch.tensor([0]),), torch.ones(logits.shape[1], device=logits.device))
        return logits * prior


class SavedPlaceholder(NearestCentroid):
    """Sound: a plain tensor attribute made on the CPU in __init__ as a placeholder, which forward uses and which the
    method saves itself (state_tensors); fit and load_state_tensors replace it with a tensor on setup.device, so no
    real forward ever sees the placeholder."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.prototypes = torch.zeros(setup.num_classes, setup.backbone.embed_dim)  # a placeholder, on the CPU

    def fit(self, data, context):
        fitted = super().fit(data, context)
        self.prototypes = self.centroids.clone()  # on setup.device, as the centroids are
        return fitted

    def state_tensors(self):
        return {**super().state_tensors(), "prototypes": self.prototypes}

    def load_state_tensors(self, tensors, where):
        super().load_state_tensors(tensors, where)
        self.prototypes = tensors["prototypes"].to(self.setup.device)

    def forward(self, image_features):
        return torch.nn.functional.normalize(image_features.float(), dim=-1) @ self.prototypes.T / 0.01


class FillsPlaceholder(SavedPlaceholder):
    """Flaw: fit fills the CPU placeholder in place, so on a GPU forward gets it on the CPU."""

    def fit(self, data, context):
        fitted = NearestCentroid.fit(self, data, context)
        self.prototypes.copy_(self.centroids)
        return fitted


class KeepsLoadedOnTheCpu(SavedPlaceholder):
    """Flaw: load_state_tensors keeps the loaded prototypes where they were read (the CPU), without
    .to(self.setup.device), when `flawed` (a class attribute a test sets): on a GPU, vip predict's forward fails."""

    flawed = True

    def load_state_tensors(self, tensors, where):
        NearestCentroid.load_state_tensors(self, tensors, where)
        self.prototypes = tensors["prototypes"] if self.flawed else tensors["prototypes"].to(self.setup.device)


class FillsPlaceholderOnLoad(SavedPlaceholder):
    """Flaw: load_state_tensors fills the CPU placeholder __init__ made in place, so it stays on the CPU."""

    def load_state_tensors(self, tensors, where):
        NearestCentroid.load_state_tensors(self, tensors, where)
        self.prototypes.copy_(tensors["prototypes"])


class MovesInPrepare(KeepsLoadedOnTheCpu):
    """Sound: load_state_tensors keeps the loaded prototypes on the CPU, and prepare, which vip calls before any
    forward, moves them to setup.device."""

    def prepare(self):
        self.prototypes = self.prototypes.to(self.setup.device)


class ReadsItem(NearestCentroid):
    """Sound: reads its backbone's logit scale as a Python number as it is built."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.scale = float(setup.backbone.logit_scale.exp().item())

    def forward(self, image_features):
        return super().forward(image_features) * self.scale


class ReadsNumpyLate(NearestCentroid):
    """Flaw: reads its class names' text features as numpy and registers them after self.to(setup.device), so the
    buffer stays on the CPU."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        text = setup.backbone.encode_text(setup.backbone.tokenize(list(setup.class_names)))
        self.register_buffer("text", torch.from_numpy(text.detach().cpu().numpy()).float())

    def forward(self, image_features):
        return super().forward(image_features) + image_features.float() @ self.text.T


class CountsSigns(KeepsLoadedOnTheCpu):
    """Counts the distinct signs of its class names' text features with torch.unique as it is built, which has no
    meta kernel: the probe cannot build it on the meta device. Its load_state_tensors keeps the loaded prototypes on
    the CPU when `flawed` (a class attribute a test sets), as KeepsLoadedOnTheCpu's does."""

    flawed = True

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        text = setup.backbone.encode_text(setup.backbone.tokenize(list(setup.class_names)))  # [C, D]
        self.signs = int(torch.unique(text.sign()).numel())


class NeedsAVitStem(NearestCentroid):
    """Reads the patch size of an open_clip ViT's stem (backbone.model.visual.conv1) as it is built, which the toy
    backbone has not: no toy, on meta or on the CPU, can stand in for its backbone."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.patch = setup.backbone.model.visual.conv1.kernel_size


class DrawsOnTheGpu(NearestCentroid):
    """Draws from the GPU's generator in __init__ (here a stand-in: it sets the state of device 1's)."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        torch.cuda.set_rng_state(torch.full((16,), 7, dtype=torch.uint8), 1)
'''

probed = methods_fixture("probed_methods", PROBED_METHODS, {"counts-builds": "CountsBuilds",
                                                           "copies-from-the-cpu": "CopiesFromTheCpu",
                                                           "saved-placeholder": "SavedPlaceholder",
                                                           "fills-placeholder": "FillsPlaceholder",
                                                           "draws-on-the-gpu": "DrawsOnTheGpu",
                                                           "reads-item": "ReadsItem",
                                                           "keeps-loaded-on-the-cpu": "KeepsLoadedOnTheCpu",
                                                           "fills-placeholder-on-load": "FillsPlaceholderOnLoad",
                                                           "moves-in-prepare": "MovesInPrepare",
                                                           "reads-numpy-late": "ReadsNumpyLate",
                                                           "counts-signs": "CountsSigns",
                                                           "needs-a-vit-stem": "NeedsAVitStem"})


def _toy_setup():
    from vipcli.methods import MethodSetup
    from vipcli.registry import load_backbone

    symptoms = {"melanoma": ["asymmetric shape", "irregular border"], "nevus": ["round shape", "even colour"]}
    return MethodSetup(load_backbone("toy", None, None, torch.device("cpu")), ["melanoma", "nevus"], symptoms)


def test_a_plugin_is_probed_once_per_class_and_the_random_generators_are_left_as_they_were(probed):
    import sys

    from vipcli.methods import build_method, method_class

    setup = _toy_setup()
    cls = method_class("counts-builds")
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    cls(setup)  # what building it once leaves in the generators
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    cls.built = 0
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    build_method("counts-builds", setup)
    assert cls.built == 2  # built for the run and once more on meta, where its CPU scalar and CPU index pass
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert (np.random.get_state()[1] == states[2]).all()
    build_method("counts-builds", setup)  # the next row of a sweep: not probed again
    assert cls.built == 3
    sys.modules.pop("probed_methods", None)


def test_a_plugin_that_copies_from_the_cpu_or_reads_a_cpu_tensors_shape_is_not_refused(probed):
    """`x.new_tensor(cpu_values)`, `x.expand_as(cpu_mask)` (view_as, reshape_as) and `x.index_put_` with an index on
    the CPU run on a GPU: the probe named them as "gave torch.Tensor.new_tensor a tensor on cpu and one on the image
    features' device" and refused a sound plugin before its run."""
    from vipcli.methods import make_settings, method_class
    from vipcli.methods.device_probe import probe_devices

    cls = method_class("copies-from-the-cpu")
    assert probe_devices(cls, "copies-from-the-cpu", _toy_setup(), make_settings(cls, {}, "copies-from-the-cpu")) \
        == "passed"


@pytest.mark.parametrize("method_id", ["zeroshot", "symptom-zeroshot", "linear-probe", "coop", "vip", "vip-cop-only",
                                       "vip-mep-only"])
def test_vips_own_methods_pass_the_probe(method_id):
    """vip's methods are not probed in a run (its tests cover them), but they are what plugins build on: the probe
    must build and run them on meta without finding a fault, not merely give up."""
    from vipcli.methods import make_settings, method_class
    from vipcli.methods.device_probe import probe_devices

    cls = method_class(method_id)
    assert probe_devices(cls, method_id, _toy_setup(), make_settings(cls, {}, method_id)) == "passed"


@pytest.mark.parametrize("method_id", ["biomedcoop", "tip-adapter", "tip-adapter-f"])
def test_a_method_that_reads_values_as_it_is_built_is_judged(method_id):
    """These copy a tensor to the CPU or read a number in __init__ (meta tensors hold no values): the probe said
    "not judged" of them; the reads now give stand-in values, and the methods pass."""
    from vipcli.methods import make_settings, method_class
    from vipcli.methods.device_probe import probe_devices

    cls = method_class(method_id)
    assert probe_devices(cls, method_id, _toy_setup(), make_settings(cls, {}, method_id)) == "passed"


def test_clap_is_judged():
    """clap counted its prompts per class with torch.bincount as it was built, which has no meta kernel: the probe
    said "not judged" of it (and of a plugin built on vipcli.prompts.class_text_features). It counts them on the
    host now, and passes."""
    from vipcli.methods import make_settings, method_class
    from vipcli.methods.device_probe import probe_devices

    cls = method_class("clap")
    assert probe_devices(cls, "clap", _toy_setup(), make_settings(cls, {}, "clap")) == "passed"


@pytest.mark.parametrize("method", ["keeps-loaded-on-the-cpu", "fills-placeholder-on-load"])
def test_a_tensor_load_state_tensors_leaves_on_the_cpu_is_refused_before_the_run_is_saved(probed, cli, tmp_path,
                                                                                          method):
    """vip predict reloads a run through the plugin's own load_state_tensors, which vip never probed: a saved
    placeholder filled in place, or a loaded tensor kept without .to(self.setup.device), stayed on the CPU, passed
    every check on the CPU and failed on a GPU with torch's "Expected all tensors to be on the same device"."""
    from conftest import error_lines

    code, _, err = cli("train", "--data", probed, "--backbone", "toy", "--method", method, "--shots", "2",
                       "--views", "1", "--workers", "0", "--out", tmp_path / "run")
    line, = error_lines(err)
    assert code == 1 and line.startswith(
        f"error: method '{method}' (from {method}-dist 0.1.0) failed in load_state_tensors: after load_state_tensors, "
        "forward gave torch.Tensor.matmul a tensor on cpu and one on the image features' device, where "
        "self.prototypes is a plain tensor on cpu"), line
    assert "self.NAME = tensors[NAME].to(self.setup.device)" in line and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_vip_predict_probes_the_run_it_reloads(probed, cli, tiny_clip, tmp_path, monkeypatch):
    """A run saved before vip probed reloading (here: the plugin's flaw switched on after training) is refused by
    vip predict in one line, before any image is read; the tiny CLIP's widths are not the toy's, which the probe
    takes on. A plugin that moves what it loaded in prepare passes."""
    import weakref

    import probed_methods
    from conftest import error_lines, tiny_train_args

    from vipcli.methods import device_probe

    image = sorted((probed / "test").rglob("*.png"))[0]
    for method in ("keeps-loaded-on-the-cpu", "moves-in-prepare"):
        monkeypatch.setattr(probed_methods.KeepsLoadedOnTheCpu, "flawed", False)
        code, _, err = cli(*tiny_train_args(probed, tiny_clip, tmp_path / method, "--method", method,
                                            "--shots", "2", "--views", "1"))
        assert code == 0, err
        monkeypatch.setattr(probed_methods.KeepsLoadedOnTheCpu, "flawed", True)
        monkeypatch.setattr(device_probe, "_probed_restored", weakref.WeakSet())  # a new process
        code, out, err = cli("predict", image, "--model", tmp_path / method, "--json")
        if method == "moves-in-prepare":
            assert code == 0 and out, err
            continue
        line, = error_lines(err)
        assert code == 1 and out == "" and line.startswith(
            "error: method 'keeps-loaded-on-the-cpu' (from keeps-loaded-on-the-cpu-dist 0.1.0) failed in "
            "load_state_tensors: after load_state_tensors, forward gave torch.Tensor.matmul a tensor on cpu"), line


def test_a_plugin_that_reads_values_as_it_is_built_is_judged(probed):
    """A plugin reading its backbone's logit scale with .item() passes; one that reads its text features as numpy
    and registers them after self.to(setup.device) is refused when built (the probe said "not judged" of both, and
    the second failed on a GPU with "Expected all tensors to be on the same device" after every image was encoded)."""
    from vipcli.methods import build_method
    from vipcli.plugins import PluginError

    setup = _toy_setup()
    assert build_method("reads-item", setup).scale > 0
    with pytest.raises(PluginError) as error:
        build_method("reads-numpy-late", setup)
    assert " ".join(str(error.value).split()).startswith(
        "method 'reads-numpy-late' (from reads-numpy-late-dist 0.1.0) failed in __init__: __init__ left buffer 'text' "
        "on cpu, not on setup.device"), str(error.value)


def test_a_cpu_placeholder_the_method_saves_and_fit_replaces_is_not_refused(probed, cli):
    """A plain tensor attribute made on the CPU in __init__, which fit and load_state_tensors replace on
    setup.device and state_tensors saves, never reaches a real forward: the probe refused it before its run as
    "forward gave torch.Tensor.matmul a tensor on cpu ..., where self.prototypes is a plain tensor on cpu"."""
    code, out, err = cli("methods", "check", "saved-placeholder")
    assert code == 0 and "method 'saved-placeholder' passes" in out, err


def test_a_cpu_placeholder_that_fit_fills_in_place_is_refused_after_fit(probed, cli):
    """The same placeholder filled in place by fit stays on the CPU: on a GPU forward would fail."""
    code, _, err = cli("methods", "check", "fills-placeholder")
    line = " ".join(err.split())
    assert code == 1 and line.startswith("error: method 'fills-placeholder' (from fills-placeholder-dist 0.1.0) "
                                         "failed in fit: fit left self.prototypes, a plain tensor that __init__ "
                                         "made on cpu and forward uses, in place"), line
    assert "self.NAME = tensor.to(self.setup.device)" in line and "Traceback" not in err


def test_the_probe_keeps_the_generators_of_cuda_devices_already_started(probed, monkeypatch):
    """The probe forked torch's CPU generator only: a plugin drawing on a GPU as the probe built it moved that GPU's
    generator, so a seeded run's draws there depended on whether the class had been probed. CUDA is faked here (two
    devices already started, their generators' states in a dict); the probe must not start CUDA itself."""
    from vipcli.methods import build_method

    states = {0: torch.zeros(16, dtype=torch.uint8), 1: torch.ones(16, dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": states[device].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": states.__setitem__(device, state))
    build_method("draws-on-the-gpu", _toy_setup())  # built for the run (draws), then probed (draws again)
    assert torch.equal(states[0], torch.zeros(16, dtype=torch.uint8))
    assert torch.equal(states[1], torch.full((16,), 7, dtype=torch.uint8))  # as the real build left it, no more
    states[1] = torch.ones(16, dtype=torch.uint8)
    from vipcli.methods.device_probe import isolated

    with isolated():
        torch.cuda.set_rng_state(torch.full((16,), 9, dtype=torch.uint8), 1)
    assert torch.equal(states[1], torch.ones(16, dtype=torch.uint8))


def test_a_plugin_the_meta_device_cannot_build_is_judged_built_on_the_cpu(probed, cli, tmp_path, monkeypatch):
    """A plugin whose __init__ uses an operation with no meta kernel (torch.unique) made the reload probe say "not
    judged", so a load_state_tensors that kept what it loaded on the CPU passed vip train and failed on a GPU. The
    probe now builds it on the CPU with the toy backbone, moves it to meta and judges load_state_tensors and forward
    there: the flawed one is refused before the run is saved, the sound one passes and says how it was built."""
    import weakref

    import probed_methods

    from conftest import error_lines
    from vipcli.methods import device_probe, make_settings, method_class

    code, _, err = cli("train", "--data", probed, "--backbone", "toy", "--method", "counts-signs", "--shots", "2",
                       "--views", "1", "--workers", "0", "--out", tmp_path / "run")
    line, = error_lines(err)
    assert code == 1 and line.startswith(
        "error: method 'counts-signs' (from counts-signs-dist 0.1.0) failed in load_state_tensors: after "
        "load_state_tensors, forward gave torch.Tensor.matmul a tensor on cpu and one on the image features' device, "
        "where self.prototypes is a plain tensor on cpu"), line
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(probed_methods.CountsSigns, "flawed", False)
    monkeypatch.setattr(device_probe, "_probed_restored", weakref.WeakSet())  # a new process
    setup, cls = _toy_setup(), method_class("counts-signs")
    fitted = cls(setup, make_settings(cls, {}, "counts-signs"))
    found = device_probe.probe_restored(cls, "counts-signs", setup, make_settings(cls, {}, "counts-signs"), {},
                                        fitted.state_tensors(), "a test")
    assert found.startswith("passed (load_state_tensors and forward; built on the CPU with the toy backbone: "
                            "__init__ raised NotImplementedError on the meta device: "), found


def test_a_plugin_no_toy_can_stand_in_for_is_not_judged_and_says_why(probed):
    """What needs its own backbone's parts cannot be built with the toy anywhere: "not judged", with both reasons."""
    from vipcli.methods import make_settings, method_class
    from vipcli.methods.device_probe import probe_restored

    setup, cls = _toy_setup(), method_class("needs-a-vit-stem")
    settings = make_settings(cls, {}, "needs-a-vit-stem")
    found = probe_restored(cls, "needs-a-vit-stem", setup, settings, {}, {}, "a test")
    assert found.startswith("not judged: __init__ raised AttributeError on the meta device: ") and \
        "; on the CPU with the toy backbone: AttributeError: " in found and "conv1" in found, found
