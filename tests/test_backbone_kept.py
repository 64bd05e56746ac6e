"""A method plugin must leave the shared backbone as it found it: vip loads one frozen backbone and shares it between a
run's training and its predictions and between the rows of a benchmark sweep. A plugin that trained or edited a
weight, unfroze the text tower, switched a module to train(), registered a hook or set an attribute vip reads made
later rows and `vip predict` silently differ (the round-trip check reused the same changed backbone); each is now one
line naming the plugin, the member that did it, what it changed and the fix."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines
from plugin_helpers import methods_fixture

CHANGING_METHODS = '''
import torch

from vip_method_example import NearestCentroid
from vipcli.methods.coop import Coop


def tower(method):
    """The first torch module of the method's backbone (the toy's whole model)."""
    return method.setup.backbone.modules()[0]


class TrainsTextTower(NearestCentroid):
    """Unfreezes the backbone and takes an SGD step on it in fit."""

    def fit(self, data, context):
        backbone = self.setup.backbone
        weights = [p for module in backbone.modules() for p in module.parameters()]
        for weight in weights:
            weight.requires_grad_(True)
        optimizer = torch.optim.SGD(weights, lr=0.1)
        backbone.encode_text(backbone.tokenize(list(self.setup.class_names))).pow(2).sum().backward()
        optimizer.step()
        return super().fit(data, context)


class UnfreezesOnly(NearestCentroid):
    """Sets requires_grad on the backbone's weights in fit, changing none of them."""

    def fit(self, data, context):
        for weight in tower(self).parameters():
            weight.requires_grad_(True)
        return super().fit(data, context)


class NudgesWeight(NearestCentroid):
    """Adds to a weight of the backbone in place in __init__."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        with torch.no_grad():
            tower(self).text.ln_final.weight.add_(0.5)


class FillsLogitScale(NearestCentroid):
    """Sets the backbone's logit scale to 0 in place in fit."""

    def fit(self, data, context):
        self.setup.backbone.logit_scale.fill_(0.0)
        return super().fit(data, context)


class ScaleThroughData(NearestCentroid):
    """Writes the logit scale through .data, which bumps no version counter, in fit."""

    def fit(self, data, context):
        self.setup.backbone.logit_scale.data.fill_(1.0)
        return super().fit(data, context)


class ProjThroughData(NearestCentroid):
    """Doubles a weight of the image tower through .data in fit: no version counter sees it."""

    def fit(self, data, context):
        tower(self).visual.proj.data.mul_(2)
        return super().fit(data, context)


class RowThroughData(NearestCentroid):
    """Adds 1 to one row of the text tower's token embedding through .data in fit: a write no version counter sees,
    between the elements vip samples of each weight (its first, middle and last 16)."""

    def fit(self, data, context):
        tower(self).text.token_embedding.weight.data[1] += 1.0
        return super().fit(data, context)


class SwapsData(NearestCentroid):
    """Gives a weight other values by assigning its .data in __init__."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        weight = tower(self).visual.proj
        weight.data = weight.data * 2


class WritesThroughNumpy(NearestCentroid):
    """Halves a weight of the text tower through a numpy view of it in fit: no version counter sees it."""

    def fit(self, data, context):
        tower(self).text.ln_final.weight.detach().numpy()[:] *= 0.5
        return super().fit(data, context)


class ShortContext(NearestCentroid):
    """Sets an attribute vip reads (context_length) in __init__."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        setup.backbone.context_length = 8


class PlainTower(NearestCentroid):
    """Turns on the authors' plain text tower in fit."""

    def fit(self, data, context):
        self.setup.backbone.plain_text_tower = True
        return super().fit(data, context)


class HooksImageTower(NearestCentroid):
    """Registers a forward hook on the image tower in __init__ (it would change every image encoded after)."""

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        tower(self).visual.register_forward_hook(lambda module, inputs, output: output * 2)


class DropoutForward(NearestCentroid):
    """Switches the backbone to train() mode in forward."""

    def forward(self, image_features):
        tower(self).train()
        return super().forward(image_features)


class TidyFit(NearestCentroid):
    """Switches the tower to train() and hooks it inside fit, and undoes both before returning: nothing to refuse."""

    def fit(self, data, context):
        handle = tower(self).register_forward_hook(lambda module, inputs, output: None)
        tower(self).train()
        tower(self).eval()
        handle.remove()
        return super().fit(data, context)


def nudge_row(method):
    """Add 1 to one row of the text tower's token embedding through .data: no version counter sees it, and it falls
    between the elements of each weight vip samples (its first, middle and last 16)."""
    tower(method).text.token_embedding.weight.data[1] += 1.0


class RowInForward(NearestCentroid):
    """Writes a row of the backbone through .data in forward (vip train's evaluation, vip predict)."""

    def forward(self, image_features):
        nudge_row(self)
        return super().forward(image_features)


class RowInStateTensors(NearestCentroid):
    """Writes a row of the backbone through .data in state_tensors (vip train saves the run through it)."""

    def state_tensors(self):
        nudge_row(self)
        return super().state_tensors()


class RowInRecord(NearestCentroid):
    """Writes a row of the backbone through .data in record (vip train saves the run's JSON state through it)."""

    def record(self):
        nudge_row(self)
        return super().record()


class RowOnLoad(NearestCentroid):
    """Writes a row of the backbone through .data in load_state_tensors, when `flawed` (a class attribute a test
    sets): the run's round trip and vip predict reload through it."""

    flawed = True

    def load_state_tensors(self, tensors, where):
        super().load_state_tensors(tensors, where)
        if self.flawed:
            nudge_row(self)


class DetachedCopyInStateTensors(NearestCentroid):
    """Overwrites a weight through copy_ on a .detach() of it in state_tensors: .detach() shares the weight's
    version counter, so the in-place write is seen as one."""

    def state_tensors(self):
        weight = tower(self).text.ln_final.weight
        weight.detach().copy_(weight * 0.5)
        return super().state_tensors()


class ExplainsInTrainMode(NearestCentroid):
    """Switches the backbone to train() mode in explain (vip predict --explain)."""

    def explain(self, image_features):
        tower(self).train()
        return super().explain(image_features)


class SoundBatches(Coop):
    """CoOp with a loss of its own, written for batched rows too, that leaves the backbone alone."""

    def training_loss(self, features, labels):
        return self.batched_loss(features, labels, self.prompt_features())

    def batched_loss(self, image_features, labels, prompt_features):
        return super().batched_loss(image_features, labels, prompt_features)


class DropoutInBatches(Coop):
    """CoOp whose batched loss (a sweep trains its rows together) leaves the text tower in train() mode."""

    def training_loss(self, features, labels):
        return self.batched_loss(features, labels, self.prompt_features())

    def batched_loss(self, image_features, labels, prompt_features):
        tower(self).text.train()
        return super().batched_loss(image_features, labels, prompt_features)
'''

CHANGING = {"trains-tower": "TrainsTextTower", "unfreezes": "UnfreezesOnly", "nudges": "NudgesWeight",
            "fills-scale": "FillsLogitScale", "scale-data": "ScaleThroughData", "proj-data": "ProjThroughData",
            "row-data": "RowThroughData",
            "swaps-data": "SwapsData", "numpy-write": "WritesThroughNumpy", "short-context": "ShortContext",
            "plain-tower": "PlainTower", "hooks-image": "HooksImageTower", "dropout-forward": "DropoutForward",
            "tidy-fit": "TidyFit", "sound-batches": "SoundBatches", "dropout-batches": "DropoutInBatches",
            "row-forward": "RowInForward", "row-state-tensors": "RowInStateTensors", "row-record": "RowInRecord",
            "row-on-load": "RowOnLoad", "detached-copy": "DetachedCopyInStateTensors",
            "explains-in-train": "ExplainsInTrainMode"}
SHARED = ("vip shares one loaded backbone between a run's training and its predictions and between the rows of a "
          "benchmark sweep")


# the plugins above, each in a distribution of its own, and a small lesion data set
changing = methods_fixture("changing_methods", CHANGING_METHODS, CHANGING)


def _train(cli, data, out, method: str):
    return cli("train", "--data", data, "--backbone", "toy", "--method", method, "--shots", "2", "--epochs", "1",
               "--views", "1", "--workers", "0", "--out", out)


@pytest.mark.parametrize("method, member, changed, fix", [
    ("trains-tower", "fit", "fit changed the shared backbone: changed backbone.model.", "leave the backbone frozen"),
    ("unfreezes", "fit", "fit changed the shared backbone: unfroze backbone.model.", "leave the backbone frozen"),
    ("nudges", "__init__", "__init__ changed the shared backbone: changed backbone.model.text.ln_final.weight in "
                           "place", "leave the backbone frozen"),
    ("fills-scale", "fit", "fit changed the shared backbone: changed backbone.model.logit_scale, backbone.logit_scale "
                           "({toy} -> 0) in place",
     "leave the backbone frozen"),
    ("scale-data", "fit", "fit changed the shared backbone: changed backbone.logit_scale ({toy} -> 1) in place",
     "leave the backbone frozen"),
    # a write through .data (or numpy) bumps no version counter: every later row used the changed weight
    ("proj-data", "fit", "fit changed the shared backbone: changed backbone.model.visual.proj through .data (a write "
                         "torch's version counter does not see)", "leave the backbone frozen"),
    # one row of a large weight fell between the sampled elements: every byte is compared around a fit
    ("row-data", "fit", "fit changed the shared backbone: changed backbone.model.text.token_embedding.weight through "
                        ".data (a write torch's version counter does not see)", "leave the backbone frozen"),
    ("swaps-data", "__init__", "__init__ changed the shared backbone: replaced backbone.model.visual.proj",
     "leave the backbone frozen"),
    ("numpy-write", "fit", "fit changed the shared backbone: changed backbone.model.text.ln_final.weight through "
                           ".data (a write torch's version counter does not see)", "leave the backbone frozen"),
    ("short-context", "__init__", "__init__ changed the shared backbone: set backbone.context_length to 8 (was 40)",
     "keep a value or a wrapper of your own on the method"),
    ("plain-tower", "fit", "fit changed the shared backbone: set backbone.plain_text_tower to True (was False)",
     "keep a value or a wrapper of your own on the method"),
    ("hooks-image", "__init__", "__init__ changed the shared backbone: registered a forward hook on "
                                "backbone.model.visual", "remove every hook before the member returns"),
    ("dropout-forward", "forward", "forward changed the shared backbone: switched backbone.model to train() mode",
     "leave the backbone's modules in eval mode"),
])
def test_vip_train_names_the_member_that_changed_the_backbone(cli, changing, tmp_path, method, member, changed, fix):
    """Each mistake is one line naming the plugin, the member, what changed and the fix; no run folder is written."""
    from vipcli.registry import load_backbone

    changed = changed.format(toy=f"{float(load_backbone('toy', None, None).logit_scale):.4g}")
    code, _, err = _train(cli, changing, tmp_path / "run", method)
    line, = error_lines(err)
    assert code == 1 and line.startswith(f"error: method '{method}' (from {method}-dist 0.1.0) failed in {member}: "
                                         f"{changed}"), err
    assert SHARED in line and fix in line and "Traceback" not in err, line
    assert not (tmp_path / "run").exists()


def test_a_hook_registered_in_init_is_refused_before_any_image_is_encoded(cli, changing, tmp_path):
    """A hook on the image tower would change every feature encoded after it, and the cache keeps them: the build
    is refused before the first image is read, and the feature cache stays empty."""
    import os

    code, _, err = _train(cli, changing, tmp_path / "run", "hooks-image")
    assert code == 1, err
    cache = os.environ["VIP_CACHE_DIR"]
    assert not [files for _, _, files in os.walk(cache) if any(f.endswith(".safetensors") for f in files)]


def test_a_fit_that_undoes_what_it_switched_passes_and_one_that_does_not_is_refused(cli, changing, tmp_path):
    """train() and a hook switched on and off inside fit leave the backbone as it was: the run is written. The same
    switch left on (in forward) is refused."""
    code, _, err = _train(cli, changing, tmp_path / "tidy", "tidy-fit")
    assert code == 0, err
    assert (tmp_path / "tidy" / "model.safetensors").exists()
    code, _, err = _train(cli, changing, tmp_path / "run", "dropout-forward")
    assert code == 1 and "changed the shared backbone" in err, err


def _sweep(cli, data, out, methods: str, *extra):
    return cli("benchmark", "--data", data, "--backbone", "toy", "--methods", methods, "--shots", "1", "--seeds",
               "1,2", "--epochs", "1", "--views", "1", "--workers", "0", "--out", out, "--json", *extra)


def test_a_benchmark_stops_at_the_row_that_changed_the_backbone_and_keeps_the_rows_before(cli, changing, tmp_path):
    """The sweep's later rows would use the changed backbone: the sweep stops with the plugin's line, the rows
    finished before it stay in results.json."""
    code, _, err = _sweep(cli, changing, tmp_path / "bench", "zeroshot,fills-scale")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: method 'fills-scale' (from fills-scale-dist 0.1.0) failed in fit: "
                                         "fit changed the shared backbone"), err
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["rows"]
    assert {row["method"] for row in rows} == {"zeroshot"}


def test_a_benchmark_of_all_methods_does_not_leave_out_a_plugin_that_changed_the_backbone(cli, changing, tmp_path):
    """`--methods all` leaves out a plugin that fails, and runs the others: on a changed backbone they would report
    other figures, so a plugin that changed it stops the sweep instead (here at its first build)."""
    code, _, err = _sweep(cli, changing, tmp_path / "bench", "all")
    line, = error_lines(err)
    assert code == 1 and "changed the shared backbone" in line and "left out" not in err, err


def test_batched_rows_of_a_sweep_that_changed_the_backbone_are_named(cli, changing, tmp_path):
    """A sweep trains a prompt method's rows together (fit_sgd_many, no fit of the plugin's own is called): plugins
    that leave the backbone alone run as before, and a batched loss that left the text tower in train() mode is
    named after that batched fit."""
    code, printed, err = _sweep(cli, changing, tmp_path / "sound", "sound-batches,tidy-fit,coop")
    assert code == 0 and not error_lines(err), err
    assert len(json.loads(printed)["rows"]) == 6
    code, _, err = _sweep(cli, changing, tmp_path / "bench", "dropout-batches")
    line, = error_lines(err)
    assert code == 1 and line.startswith(
        "error: method 'dropout-batches' (from dropout-batches-dist 0.1.0) failed in fit: its 2 rows of the sweep, "
        "trained together, changed the shared backbone: switched backbone.model.text to train() mode"), err


@pytest.mark.parametrize("ours, readmes", [("trains-tower", "tunes-text-tower"), ("dropout-forward", "dropout-on")])
def test_readmes_error_lines_are_what_vip_prints(cli, changing, tmp_path, ours, readmes):
    """README's method guide shows the line of a plugin that fine-tunes the text tower in fit and of one that switches
    it to train() in forward (the same code as two plugins above): after "failed in", vip prints exactly that."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    shown, = [line for line in readme.splitlines() if line.startswith(f"error: method '{readmes}' ")]
    code, _, err = _train(cli, changing, tmp_path / "run", ours)
    line, = error_lines(err)
    assert code == 1 and line.split(" failed in ", 1)[1] == shown.split(" failed in ", 1)[1], (line, shown)


AFTER_FIT = ("a member called after fit: the members vip called after fit (eval, prepare, forward over the validation "
             "and test splits, state_tensors, record, and __init__ and load_state_tensors of the method rebuilt from "
             "them) changed the shared backbone: changed backbone.model.text.token_embedding.weight through .data (a "
             "write torch's version counter does not see)")


@pytest.mark.parametrize("method, after_member", [
    # one row written through .data falls between the sampled elements each member is compared by: every byte of
    # every weight is compared once after the evaluation and the round trip, before anything is written
    ("row-forward", AFTER_FIT), ("row-state-tensors", AFTER_FIT), ("row-record", AFTER_FIT),
    ("row-on-load", AFTER_FIT),
    # an in-place write is seen right after the member (state_tensors was not watched at all)
    ("detached-copy", "state_tensors: state_tensors changed the shared backbone: changed "
                      "backbone.model.text.ln_final.weight in place"),
])
def test_vip_train_refuses_a_member_after_fit_that_changed_the_backbone(cli, changing, tmp_path, method,
                                                                       after_member):
    """The whole-weight digest was taken around fit only: a plugin that wrote a few rows of the backbone through .data
    in forward, state_tensors, record or load_state_tensors was saved, and `vip predict` and a sweep's later rows used
    the changed backbone. Now it is one line naming the plugin, the member and the fix; no run folder is written."""
    code, _, err = _train(cli, changing, tmp_path / "run", method)
    line, = error_lines(err)
    assert code == 1 and line.startswith(f"error: method '{method}' (from {method}-dist 0.1.0) failed in "
                                         f"{after_member}"), line
    assert SHARED in line and "leave the backbone frozen" in line and "Traceback" not in err, line
    assert not (tmp_path / "run").exists()


def test_vip_predict_refuses_a_rebuild_that_changed_the_backbone_before_any_image_is_read(cli, changing, tmp_path,
                                                                                         monkeypatch):
    """A run saved while load_state_tensors left the backbone alone, reloaded once it writes a row through .data: vip
    predict would have classified every image with features of the changed backbone. It is refused in one line,
    nothing printed; the same run predicts once load_state_tensors is sound again."""
    import changing_methods

    image = sorted((changing / "test").rglob("*.png"))[0]
    monkeypatch.setattr(changing_methods.RowOnLoad, "flawed", False)
    code, _, err = _train(cli, changing, tmp_path / "run", "row-on-load")
    assert code == 0, err
    monkeypatch.setattr(changing_methods.RowOnLoad, "flawed", True)
    code, out, err = cli("predict", image, "--model", tmp_path / "run", "--json")
    line, = error_lines(err)
    assert code == 1 and out == "" and line.startswith(
        "error: method 'row-on-load' (from row-on-load-dist 0.1.0) failed in __init__, load_state_tensors or prepare: "
        "rebuilding the run's method (__init__, load_state_tensors, prepare) changed the shared backbone: changed "
        "backbone.model.text.token_embedding.weight through .data"), line
    monkeypatch.setattr(changing_methods.RowOnLoad, "flawed", False)
    code, out, err = cli("predict", image, "--model", tmp_path / "run", "--json")
    assert code == 0 and out, err


def test_vip_predict_explain_refuses_an_explain_that_changed_the_backbone(cli, changing, tmp_path):
    """explain was not watched: one that left the backbone in train() mode changed every later image's features."""
    image = sorted((changing / "test").rglob("*.png"))[0]
    code, _, err = _train(cli, changing, tmp_path / "run", "explains-in-train")
    assert code == 0, err
    code, out, err = cli("predict", image, "--model", tmp_path / "run", "--explain", "--json")
    line, = error_lines(err)
    assert code == 1 and line.startswith(
        "error: method 'explains-in-train' (from explains-in-train-dist 0.1.0) failed in explain: explain changed the "
        "shared backbone: switched backbone.model to train() mode"), line
