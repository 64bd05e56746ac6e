"""The method contract: a method plugin's mistake is one line naming it, its distribution, the member and the fix."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines, tiny_train_args
from plugin_helpers import install_distribution, install_sample_methods


@pytest.fixture
def methods(site):
    install_sample_methods(site)
    return site


def _one_error(err: str) -> str:
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err and "bug in vip" not in err, err
    return lines[0]


def test_a_sound_method_plugin_trains_and_predicts(cli, methods, isic_small, tiny_clip, tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "centroid-ok"))
    assert code == 0, err
    code, out, err = cli("predict", isic_small / "test", "--model", tmp_path / "run", "--json")
    assert code == 0, err
    assert len({p["probabilities"]["melanoma"] for p in json.loads(out)["predictions"]}) > 1  # not one constant


# how a fault the device probe found ends (`vipcli.methods.device_probe`)
PROBE = ("(found by building the method once more with its backbone on torch's meta device, a stand-in for a GPU: "
         "on a GPU it fails with \"Expected all tensors to be on the same device\")")


@pytest.mark.parametrize("method, member, reason, fix", [
    ("forgot-buffer", "state_tensors", "rebuilt from what the run stores (tensors: none; record() keys: none)",
     "self.register_buffer(NAME, tensor)"),
    ("transposed", "forward", "forward returned logits [2, ", "return float logits [B, C]"),
    ("fit-returns-none", "fit", "fit returned NoneType, not a dict", "return super().fit(data, context)"),
    ("sgd-fit-returns-tuple", "fit", "fit returned tuple, not a dict",
     "end fit with `return vipcli.fitting.fit_sgd(self, data, context)`"),
    ("typo", "forward", "AttributeError: 'Typo' object has no attribute 'centroid'", "report it to the authors"),
    ("plain-weights", "fit", "fit_sgd found no trainable parameter", "nn.Parameter"),
    # was "warning: --epochs 3 is not used by method ..., which follows no run schedule", then 3 epochs of training
    ("sgd-without-schedule", "uses_schedule", "fit trains with fit_sgd, which follows the run's schedule "
                                              "(--schedule, --epochs, --batch-size, --lr), but the class says "
                                              "uses_schedule = False", "set uses_schedule = True on the class"),
    ("records-tensor", "record", "record()['centroids'] is a Tensor", "plain JSON types"),
    ("dropout-forward", "forward", "forward is not deterministic", "F.dropout"),
    ("bank-sized-in-fit", "state_tensors", "bank: saved [", "the shape fit gives it"),
    ("peeks-at-test", "fit", "fit read data.test.y: the test split is held out", "data.val"),
    ("logits-elsewhere", "forward", "forward returned logits on meta, not on cpu", "image_features.device"),
    ("half-logits", "forward", "forward returned float16 logits, not float32 or float64", "return logits.float()"),
    ("normalizes-in-place", "forward", "forward changed image_features in place", "on a copy (x = x.clone())"),
    ("centers-in-place", "fit", "fit changed data.train.views in place", "on a copy (x = x.clone())"),
    ("batch-standardized", "forward", "forward gives an image other probabilities alone than in a batch of ",
     "never over the batch"),
    # alone and first in a batch, an image got what it got in the batch: both passed, and predicted otherwise
    ("large-batch-standardized", "forward", "forward gives an image other probabilities in a batch of 8 than in a "
                                            "batch of 256 (the same images reordered and repeated)", "never over the batch"),
    ("running-centered", "forward", "forward gives an image other probabilities in a batch of 8 than in a batch of "
                                    "256 (the same images reordered and repeated)", "never over the batch"),
    ("int-keys-record", "forward", "rebuilt from what the run stores, KeyError: 0: record()['offsets'] has int keys (0), "
                                   "which the run gives back as str ('0')", "read `stored` in __init__ as the run gives"),
    ("tuple-keys-record", "record", "record()['offsets'] has a tuple key (0, 1) (JSON keys are strings): the run "
                                    "stores record() as JSON", "return plain JSON types from record()"),
    ("reads-center-view", "fit", "fit read data.train.x, the un-augmented view of the training images",
     "set needs_center_view = True on the method class"),
    ("skips-super-init", "__init__", "__init__ did not call super().__init__(setup, settings, stored)",
     "call super().__init__(setup, settings, stored) first"),  # was "unexpected AttributeError ... a bug in vip"
    ("assigns-setup", "__init__", "__init__ assigned self.setup, which Method.__init__ sets",
     "call super().__init__(setup, settings, stored) first in __init__, and assign no self.setup"),
    # a value that is not a tensor was "unexpected AttributeError ... this is a bug in vip"
    ("count-in-state", "state_tensors", "state_tensors() gives 'count' a int, not a tensor", "keep numbers"),
    ("extra-state", "state_tensors", "state_tensors() gives '_extra_state' a dict, not a tensor",
     "a get_extra_state() is not saved: return its state from record() instead"),
    # the run was saved, and `vip predict IMAGE` of one image failed: only batches of two or more were tried
    ("squeezes-one-image", "forward", "forward returned logits [2] for 1 image of 2 classes",
     "for a batch of one image too (no .squeeze(): keep [1, C])"),
    # was "failed in fit: AttributeError: 'NoneType' object has no attribute 'float' (... report it to the authors"
    ("zero-shot-reads-shots", "fit", "fit read data.train.views, but the method declares uses_shots = False",
     "set uses_shots = True on the method class if fit learns from the labelled images"),
    # on a GPU each was "failed in forward: RuntimeError: Expected all tensors to be on the same device ... (report
    # it to the authors)": from fit_sgd's first step, after the run's evaluation, or in vip predict
    ("built-elsewhere", "__init__", "__init__ left buffer 'centroids' on meta, not on cpu where forward gets the "
                                    "image features (setup.device)", "end __init__ with self.to(setup.device)"),
    ("fits-elsewhere", "fit", "fit left buffer 'centroids' on meta, not on cpu where forward gets the image features",
     "self.NAME = tensor.to(self.setup.device)"),
    ("loads-elsewhere", "load_state_tensors", "load_state_tensors left buffer 'centroids' on meta, not on cpu",
     "move what it loads to self.setup.device"),
    # on the CPU each passed, and on a GPU failed with torch's "Expected all tensors to be on the same device" after
    # every image was encoded: a forgotten self.to(setup.device), a tensor made on the CPU in forward, a plain attribute
    ("forgets-to-move", "__init__", "__init__ left buffer 'centroids' on cpu, not on setup.device " + PROBE,
     "end __init__ with self.to(setup.device)"),
    ("bias-made-in-forward", "forward", "forward gave torch.Tensor.add a tensor on cpu and one on the image features' "
                                        "device " + PROBE, "torch.zeros(..., device=image_features.device)"),
    ("plain-cpu-weights", "forward", "forward gave torch.Tensor.matmul a tensor on cpu and one on the image features' "
                                     "device, where self.projection is a plain tensor on cpu", "self.register_buffer"),
])
def test_a_method_plugin_mistake_in_train_is_one_line_naming_it(cli, methods, isic_small, tiny_clip, tmp_path,
                                                                 method, member, reason, fix):
    line = _training_fault(cli, isic_small, tiny_clip, tmp_path, method, member)
    assert reason in line and fix in line


def _training_fault(cli, isic_small, tiny_clip, tmp_path, method: str, member: str) -> str:
    """The one error line of `vip train` with a faulty sample method, which names the method and the member;
    nothing was written that would predict something else."""
    run = tmp_path / "run"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, run, "--method", method))
    line = _one_error(err)
    assert code == 1 and line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) failed in {member}: ")
    assert not run.exists()
    return line


@pytest.mark.parametrize("method, reason", [
    ("no-default", "setting 'temperature' has no default"),
    ("plain-settings", "not a dataclass"),
    ("untyped-setting", "UntypedValue.temperature = 0.05 has no type annotation, so it is a plain class attribute, "
                        "not a setting (--method-option cannot set it)"),
    ("forgot-fit", "trains = True but fit is not overridden"),
    ("no-forward", "forward is not overridden, so there are no logits"),  # found after encoding, as 'report it'
    ("fit-without-context", "fit cannot be called as fit(self, data, context)"),
    # listed as "trains: yes" / "<property object at 0x...>" and used as such
    ("trains-as-method", "trains is a function, not True or False: vip reads it on the class"),
    ("summary-as-property", "summary is a property, not a str"),
    # was "failed to build: TypeError: ... takes from 2 to 3 positional arguments but 4 were given", after encoding
    ("no-stored-argument", "__init__ cannot be called as __init__(self, setup, settings=None, stored=None)"),
])
def test_a_method_class_that_cannot_work_is_refused_before_any_work(cli, methods, isic_small, tiny_clip, tmp_path,
                                                                    method, reason):
    code, out, err = cli("methods", "list", "--json")
    listed = {entry["id"]: entry for entry in json.loads(out)}
    assert code == 0 and reason in listed[method]["problem"] and not listed["centroid-ok"]["problem"]
    code, _, err = cli("methods", "show", method)
    assert code == 1 and reason in _one_error(err)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", method))
    line = _one_error(err)
    assert code == 1 and line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) failed in ")
    assert reason in line


def test_a_setting_written_without_a_type_names_the_annotation_to_add(cli, methods):
    code, _, err = cli("methods", "list")
    warned = [line for line in err.splitlines() if "'untyped-setting'" in line]
    fix = "annotate it: temperature: float = 0.05, or temperature: typing.ClassVar[float] = 0.05 for a constant " \
          "that is not one"
    assert code == 0 and len(warned) == 1 and f"({fix}); 'untyped-setting' is " \
                                                 "unavailable" in warned[0]  # vip methods list names the fix too
    code, _, err = cli("methods", "check", "untyped-setting", "-o", "temperature=0.1")
    line = _one_error(err)
    assert code == 1 and "failed in Settings: UntypedValue.temperature = 0.05 has no type annotation" in line
    assert line.endswith(f"({fix})")


def test_a_settings_validate_that_raises_value_error_names_the_method(cli, methods, isic_small, tiny_clip, tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "validate-value-error",
                                        "-o", "temperature=-1"))
    line = _one_error(err)
    assert code == 1 and "method 'validate-value-error' (from sample-methods 0.1.0) failed in Settings.validate: " \
                         "ValueError: temperature must be positive" in line and "UsageError" in line


def test_an_entry_point_naming_a_missing_class_says_which_name_to_fix(cli, methods, isic_small, tiny_clip, tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "missing-class"))
    line = _one_error(err)
    assert code == 1 and "'missing-class = vip_sample_methods:DoesNotExist' names DoesNotExist, which module " \
                         "vip_sample_methods does not define" in line
    assert "[project.entry-points.\"vip.methods\"] in sample-methods's pyproject.toml" in line


@pytest.mark.parametrize("method, reason", [
    ("fit-returns-none", "fit returned NoneType"),
    ("peeks-at-test", "fit read data.test.y: the test split is held out"),
])
def test_benchmark_names_a_method_whose_fit_breaks_the_contract(cli, methods, isic_small, tiny_clip, tmp_path,
                                                                method, reason):
    code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none",
                       "--methods", method, "--shots", "1", "--seeds", "1", "--views", "2",
                       "--out", tmp_path / "bench", "--device", "cpu", "--workers", "0")
    line = _one_error(err)
    assert code == 1 and f"method '{method}' (from sample-methods 0.1.0) failed in fit: " in line and reason in line


@pytest.mark.parametrize("method, member, reason, fix", [
    ("nan-loss", "training_loss", "the training loss (training_loss) is nan at epoch 1 of 3; training stopped there",
     "lower --lr"),
    ("vector-loss", "training_loss", "the training loss is a tensor of shape [", "return a 0-d loss, e.g. .mean()"),
    ("detached-loss", "training_loss", "the training loss does not depend on the method's parameters "
                                       "(head.weight, head.bias)", "use them in forward/training_loss"),
    ("ignores-head", "forward", "the training loss does not depend on the method's parameters "
                                "(head.weight, head.bias)", "set trains = False"),
    ("unused-head", "forward", "does not depend on the method's parameters spare.weight, spare.bias, so they would "
                               "never be learned", "requires_grad=False"),
])
def test_a_training_loss_mistake_is_one_line_with_the_fix(cli, methods, isic_small, tiny_clip, tmp_path,
                                                          method, member, reason, fix):
    line = _training_fault(cli, isic_small, tiny_clip, tmp_path, method, member)
    assert reason in line and fix in line and "max difference" not in line


def test_a_sound_trainable_plugin_passes_the_loss_checks(cli, methods, isic_small, tiny_clip, tmp_path):
    code, out, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "linear-ok"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["history"]) == 3 and metrics["history"][0]["epoch"] == 0
    best = metrics["best_epoch"]  # counted from 0 in the file; the console says both
    assert f"best validation epoch {best + 1} of 3 (best_epoch {best} in metrics.json, counted from 0); " in out


def test_a_parameter_used_by_some_batches_only_is_not_refused(cli, methods, isic_small, tiny_clip, tmp_path):
    """One parameter per class, used by the batches that hold that class: the first batch (1 shot per
    class, batch 1) holds one class only, and the other class's parameter gets its gradient later."""
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "per-class-bias",
                                        "--shots", "1", "--batch-size", "1"))
    assert code == 0, err


def test_benchmark_names_a_method_whose_loss_is_nan_and_keeps_the_rows_before(cli, methods, isic_small, tiny_clip,
                                                                              tmp_path):
    out = tmp_path / "bench"
    code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none",
                       "--methods", "linear-ok,nan-loss", "--shots", "1", "--seeds", "1", "--views", "2",
                       "--epochs", "2", "--out", out, "--device", "cpu", "--workers", "0")
    line = _one_error(err)
    assert code == 1 and line.startswith("error: method 'nan-loss' (from sample-methods 0.1.0) failed in "
                                         "training_loss: the training loss (training_loss) is nan at epoch 1 of 2")
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [row["method"] for row in rows] == ["linear-ok"]  # the finished row is kept; a rerun resumes after it


def test_readmes_prompt_method_recipe_trains_with_context_settings(cli, methods, isic_small, tiny_clip, tmp_path):
    code, out, err = cli("methods", "show", "readme-prompts", "--json")
    assert code == 0 and [s["name"] for s in json.loads(out)["settings"]] == ["n-ctx", "class-specific-context"]
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "readme-prompts",
                                        "--n-ctx", "2"))
    assert code == 0, err
    code, out, err = cli("predict", isic_small / "test", "--model", tmp_path / "run", "--json", "--explain")
    assert code == 0, err


def test_a_prompt_method_whose_settings_lack_n_ctx_is_refused_with_the_fix(cli, methods, isic_small, tiny_clip,
                                                                            tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "plain-prompt-settings"))
    line = _one_error(err)
    assert code == 1 and line.startswith("error: method 'plain-prompt-settings' (from sample-methods 0.1.0) failed "
                                         "in Settings: learns_context = True but Settings (TemperatureOnly) has no "
                                         "n_ctx field")
    assert "subclass vipcli.methods.prompting.ContextSettings" in line and "AttributeError" not in line


def test_make_prompts_returning_a_list_of_str_is_refused_when_the_method_is_built(cli, methods, isic_small,
                                                                                  tiny_clip, tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "flat-prompts"))
    line = _one_error(err)
    assert code == 1 and line.startswith("error: method 'flat-prompts' (from sample-methods 0.1.0) failed in "
                                         "make_prompts: expected one list of phrases per class (list[list[str]]")
    assert "got a list of str" in line and "encoding images" not in err and not (tmp_path / "run").exists()


def test_methods_list_shows_the_providing_distributions_version(cli, methods):
    from vipcli import __version__

    code, out, _ = cli("methods", "list")
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in out.splitlines() if "│" in line}
    assert code == 0 and rows["centroid-ok"] == "sample-methods 0.1.0" and rows["coop"] == f"vipcli {__version__}"


def test_a_fit_that_leaves_nan_weights_is_named_in_train_and_benchmark(cli, methods, isic_small, tiny_clip, tmp_path):
    expected = "error: method 'nan-fit' (from sample-methods 0.1.0) failed in forward: after fit, forward gives NaN " \
               "or infinite logits"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "nan-fit"))
    line = _one_error(err)
    assert code == 1 and line.startswith(expected) and "max difference" not in line
    code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none",
                       "--methods", "nan-fit", "--shots", "1", "--seeds", "1", "--views", "2",
                       "--out", tmp_path / "bench", "--device", "cpu", "--workers", "0")
    assert code == 1 and _one_error(err).startswith(expected)


def test_a_prompt_method_without_settings_gets_context_settings_only_if_it_learns_context():
    """A zero-shot-like PromptMethod must not offer -o n_ctx=... that does nothing (and its runs must
    not warn that n_ctx is missing); one that learns context gets n_ctx by default."""
    from vipcli.methods import NoSettings
    from vipcli.methods.prompting import ContextSettings, PromptMethod

    class FixedPrompts(PromptMethod):
        def make_prompts(self, setup):
            return [[f"a photo of a {name}."] for name in setup.class_names]

    class LearnedContext(FixedPrompts):
        learns_context = True

    class OwnSettings(PromptMethod):
        Settings = ContextSettings

    class FromOwnSettings(OwnSettings):
        pass

    assert FixedPrompts.Settings is NoSettings and LearnedContext.Settings is ContextSettings
    assert FromOwnSettings.Settings is ContextSettings  # a base's explicit choice is inherited


@pytest.mark.parametrize("read, said", [(len, "fit read len(data.test): the test split is held out"),
                                        (list, "fit read the items of data.test: the test split is held out")])
def test_the_length_or_items_of_the_held_out_test_split_are_a_read_of_it(read, said):
    """A plugin's fit that takes len(data.test) or loops over it is told the split is held out, not a TypeError."""
    from vipcli.featuresets import HeldOutSplit, TestSplitRead

    with pytest.raises(TestSplitRead) as raised:
        read(HeldOutSplit())
    assert raised.value.message.startswith(said)


@pytest.mark.parametrize("method, fault", [
    ("centroid-ok", None),
    ("peeks-at-test", "failed in fit: fit read data.test"),
    ("dropout-forward", "failed in forward"),
    ("records-tensor", "failed in record"),
    ("half-logits", "failed in forward: forward returned float16 logits"),
    ("shared-running-mean", "failed in fit: fitted with seed 2, then seed 3, then seed 2 again (a fresh instance "
                            "each time), its two seed-2 fits give logits"),
    ("softmax-in-forward", "failed in forward: forward returns probabilities, vip applies softmax itself"),
    ("running-centered", "failed in forward: forward gives an image other probabilities in a batch of 8 than in a "
                         "batch of 256"),
    # passed on the CPU, where the check runs, and failed on a GPU
    ("forgets-to-move", "failed in __init__: __init__ left buffer 'centroids' on cpu, not on setup.device " + PROBE),
    ("bias-made-in-forward", "failed in forward: forward gave torch.Tensor.add a tensor on cpu"),
    ("plain-cpu-weights", "failed in forward: forward gave torch.Tensor.matmul a tensor on cpu"),
])
def test_methods_check_runs_a_plugin_through_train_and_predict_in_seconds(cli, methods, method, fault):
    """There was no way to try a method plugin before a run on real data: its mistakes showed after encoding."""
    code, out, err = cli("methods", "check", method)
    if fault is None:
        assert code == 0 and f"method '{method}' passes: trained on a synthetic lesion world" in out, err
        assert "used to predict 8 images" in out and "warning" not in err
    else:
        line = _one_error(err)
        assert code == 1 and line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) {fault}"), line


def test_a_leak_between_fits_names_the_order_of_the_sweep_and_the_fix(cli, methods):
    code, _, err = cli("methods", "check", "shared-running-mean")
    line = _one_error(err)
    assert "results would depend on the order of a benchmark sweep" in line
    assert line.endswith("(keep state on the instance (self.NAME, set in __init__ or fit), never on the class or in "
                         "a module-level variable; draw random numbers from a torch.Generator seeded with "
                         "context.seed)")


def test_a_fit_drawing_unseeded_random_numbers_is_not_blamed_on_shared_state_alone(cli, methods):
    """A fit using Python's random (not fixed by context.seed) was told only that it shares state between instances."""
    code, _, err = cli("methods", "check", "unseeded-noise")
    line = _one_error(err)
    assert code == 1 and "its two seed-2 fits give logits" in line
    assert "random numbers that context.seed does not fix (numpy, Python's random)" in line
    assert "torch.Generator seeded with context.seed" in line


@pytest.mark.parametrize("method", ["first-fit-wins", "ignores-shots"])
def test_a_fit_that_gives_one_result_whatever_its_images_is_named(cli, methods, method):
    """A "first fit wins" cache on the class passed: seeds 2, 3 and 2 again all gave the first fit's result, so
    the two seed-2 fits agreed, and every row of a sweep would have reported one fit."""
    code, _, err = cli("methods", "check", method)
    line = _one_error(err)
    assert code == 1 and line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) failed in fit: "
                                         "fitted with seed 2, then seed 3 on other training images"), line
    assert "both fits give exactly the same logits" in line and "uses_shots = False" in line


@pytest.mark.parametrize("method, generator", [("seeds-itself", "torch's"), ("numpy-seeds-itself", "NumPy's"),
                                               ("random-seeds-itself", "Python's random")])
def test_a_fit_that_seeds_a_global_generator_with_a_constant_is_named(cli, methods, method, generator):
    """`torch.manual_seed(0)` inside fit passed: the fits of other seeds learned from other images, so they
    differed, yet every seed of a sweep drew the same noise and the spread over seeds measured less than it said."""
    code, _, err = cli("methods", "check", method)
    line = _one_error(err)
    assert code == 1 and line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) failed in fit: "
                                         "fitted with seed 2, then seed 3 (each from other random states), "
                                         f"{generator} global random generator ends both fits in the same state"), line
    assert line.endswith("(seed from context.seed, or draw random numbers from a torch.Generator seeded with "
                         "context.seed; never a constant)"), line


def test_same_training_data_tells_other_images_and_other_views_apart():
    import torch

    from vipcli.featuresets import FeatureSet
    from vipcli.methods.check import same_training_data

    x, y, views = torch.randn(4, 8), torch.tensor([0, 0, 1, 1]), torch.randn(4, 2, 8)
    base = FeatureSet(x, y, ["a", "b", "c", "d"], views)
    assert same_training_data(base, FeatureSet(x.clone(), y, ["a", "b", "c", "d"], views.clone()))
    assert not same_training_data(base, FeatureSet(x, y, ["a", "b", "c", "e"], views))
    assert not same_training_data(base, FeatureSet(x, y, ["a", "b", "c", "d"], views + 1))
    assert not same_training_data(base, FeatureSet(x, y, ["a", "b", "c", "d"], None))


def test_a_run_of_a_method_that_returns_probabilities_warns_once_and_finishes(cli, methods, isic_small, tiny_clip,
                                                                              tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "softmax-in-forward"))
    said = [line for line in err.splitlines() if "forward returns probabilities" in line]
    assert code == 0 and len(said) == 1 and "return the scores before softmax" in said[0], err
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "ok", "--method", "centroid-ok"))
    assert code == 0 and "probabilities" not in err, err


def test_every_built_in_method_passes_methods_check(cli):
    from vipcli.methods import list_methods

    for info in list_methods():
        code, out, err = cli("methods", "check", info.id)
        assert code == 0 and f"method '{info.id}' passes" in out, err


def test_logits_in_the_dtype_of_an_autocast_that_is_on_pass_the_check():
    """vip's bf16 autocast on CUDA makes a built-in method's logits bf16: only outside an autocast is bf16 refused."""
    from types import SimpleNamespace

    import torch

    from vipcli.errors import VipError
    from vipcli.methods.contract import check_logits

    method = SimpleNamespace(id="zeroshot", setup=SimpleNamespace(num_classes=2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        check_logits(method, torch.randn(3, 2, dtype=torch.bfloat16), 3)
    check_logits(method, torch.randn(3, 2, dtype=torch.float64), 3)
    with pytest.raises(VipError, match="forward returned bfloat16 logits, not float32 or float64"):
        check_logits(method, torch.randn(3, 2, dtype=torch.bfloat16), 3)


def test_probabilities_computed_in_bf16_are_still_told_apart_from_logits():
    """On a GPU the logits are computed under bf16 autocast: softmaxed rows then sum to 1 only within about
    1e-2, so the 1e-4 rule let `forward`'s softmax pass there without the warning."""
    import torch

    from vipcli.methods.contract import are_probabilities

    scores = torch.randn(64, 7, generator=torch.Generator().manual_seed(0)) * 3  # [n, C]
    probabilities = scores.to(torch.bfloat16).softmax(dim=-1).float()  # what a softmax in forward gives on CUDA
    assert not are_probabilities(probabilities)  # the float32 rule alone misses them
    assert are_probabilities(probabilities, computed_in=torch.bfloat16)
    assert not are_probabilities(scores, computed_in=torch.bfloat16)
    assert not are_probabilities(scores.sigmoid(), computed_in=torch.bfloat16)  # in [0, 1], not summing to 1


def test_a_setting_overridden_in_a_subclass_without_a_type_is_refused_naming_the_default_kept():
    import dataclasses

    from vipcli.methods import list_methods, method_class
    from vipcli.methods.contract import class_problem
    from vipcli.methods.coop import Coop

    @dataclasses.dataclass
    class LongerContext(Coop.Settings):
        n_ctx = 8  # no annotation: CoOp's default (4) is what the method gets

    class LongerCoOp(Coop):
        Settings = LongerContext

    assert LongerContext().n_ctx == 4  # the pitfall the check names
    member, reason, fix = class_problem(LongerCoOp)
    assert member == "Settings" and reason.startswith("LongerContext.n_ctx = 8 has no type annotation")
    assert "the setting's default stays 4" in reason and fix == "annotate it: n_ctx: int = 8"
    assert all(class_problem(method_class(info.id)) is None for info in list_methods() if not info.problem)


def test_settings_of_other_types_are_shown_and_converted_as_typed(cli, methods):
    from vipcli.errors import UsageError
    from vipcli.methods import method_class
    from vipcli.methods.base import make_settings

    code, out, err = cli("methods", "show", "typed-settings", "--json")
    shown = {entry["name"]: (entry["type"], entry["default"]) for entry in json.loads(out)["settings"]}
    assert code == 0 and shown == {"temperature": ("float or none", None), "mode": ("one of: cosine, dot", "cosine"),
                                   "layers": ("comma-separated int", [1, 2]), "weights": ("dict", {})}, err
    code, out, err = cli("methods", "show", "typed-settings")
    assert code == 0 and "  layers = [1, 2]  (comma-separated int)" in out  # the factory's value, not MISSING
    cls = method_class("typed-settings")
    settings = make_settings(cls, {"temperature": "0.5", "mode": "dot", "layers": "3, 4"}, "typed-settings")
    assert (settings.temperature, settings.mode, settings.layers) == (0.5, "dot", [3, 4])  # not ['3', ',', ' ', '4']
    assert make_settings(cls, {"temperature": "none"}, "typed-settings").temperature is None
    for option, said in (("mode=cos", "--method-option mode: expected one of: cosine, dot, got 'cos'"),
                         ("weights=a", "--method-option weights: a setting of type dict cannot be set on the command "
                                       "line")):
        with pytest.raises(UsageError) as error:
            make_settings(cls, dict([option.split("=")]), "typed-settings")
        assert str(error.value).startswith(said), str(error.value)


def test_a_forward_that_runs_only_under_autocast_is_not_refused_by_the_batch_check(cli, methods, monkeypatch):
    """The batch-size check computes probabilities without autocast (float32): a plugin with bf16 weights, which
    predicts under vip's bf16 autocast on CUDA, failed there with its own dtype error although it works; the check
    is then skipped (its predictions were made and checked under autocast)."""
    import torch

    import vipcli.fitting

    monkeypatch.setattr(vipcli.fitting, "autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))
    code, out, err = cli("methods", "check", "autocast-only")
    assert code == 0 and "method 'autocast-only' passes" in out, err


@pytest.mark.parametrize("method, reason", [
    # was "error: unexpected KeyError: 'symptoms' (this is a bug in vip; ...)", after the run was saved
    ("malformed-explanation", "item 0 names class 'spots', which is not one of 'melanoma', 'nevus'"),
    # was "error: unexpected TypeError: Object of type Tensor is not JSON serializable (this is a bug in vip; ...)"
    ("tensor-explanation", "a symptom of class 'melanoma' ('looks like melanoma') has 'similarity' a Tensor, "
                           "not a number"),
])
def test_an_explanation_vip_cannot_show_names_the_method_and_its_shape(cli, methods, isic_small, tiny_clip, tmp_path,
                                                                        method, reason):
    """`vip predict --explain` shows, writes and reports what explain() returns: a malformed one is the plugin's
    fault, with the shape vip expects, in `vip predict` and in `vip methods check`."""
    run, image = tmp_path / "run", sorted((isic_small / "test" / "melanoma").iterdir())[0]
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, run, "--method", method))
    assert code == 0, err
    for args in (["predict", image, "--model", run, "--explain", "--json"], ["methods", "check", method]):
        code, out, err = cli(*args)
        line = _one_error(err)
        assert code == 1 and out == "", out
        assert line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) failed in explain: {reason}")
        assert "{'class': name, 'symptoms': [{'symptom': str, 'similarity': float, 'weight': float}, ...]}" in line


def test_a_plugins_well_formed_explanation_is_shown_and_written(cli, methods, isic_small, tiny_clip, tmp_path):
    run, image = tmp_path / "run", sorted((isic_small / "test" / "melanoma").iterdir())[0]
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, run, "--method", "explains-centroids"))
    assert code == 0, err
    code, out, err = cli("predict", image, "--model", run, "--explain", "--json")
    assert code == 0, err
    groups = json.loads(out)["predictions"][0]["explanation"]
    assert [group["class"] for group in groups] == ["melanoma", "nevus"]
    assert [group["symptoms"][0]["symptom"] for group in groups] == ["looks like melanoma", "looks like nevus"]


def test_a_fit_drawing_from_python_random_gives_the_same_run_for_the_same_seed(cli, methods, isic_small, tiny_clip,
                                                                              tmp_path):
    """Python's `random` and NumPy's global generators were never seeded: `vip train --seed 1` of a plugin that
    draws from them gave another model at every run (their state comes from the OS at start), without a word.
    `vip methods check` still refuses such a fit; a run no longer depends on it."""
    image = sorted((isic_small / "test" / "melanoma").iterdir())[0]
    probabilities = []
    for run in (tmp_path / "first", tmp_path / "second"):
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, run, "--method", "unseeded-noise"))
        assert code == 0, err
        code, out, err = cli("predict", image, "--model", run, "--json")
        assert code == 0, err
        probabilities.append(json.loads(out)["predictions"][0]["probabilities"])
    assert probabilities[0] == probabilities[1]


def test_a_benchmark_row_of_a_fit_drawing_from_numpy_does_not_depend_on_the_rows_before(cli, methods, isic_small,
                                                                                         tiny_clip, tmp_path):
    rows = {}
    for seeds in ("1,2", "2"):
        out = tmp_path / f"seeds-{seeds.replace(',', '-')}"
        code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none",
                           "--methods", "numpy-noise", "--shots", "2", "--seeds", seeds, "--epochs", "1",
                           "--views", "1", "--device", "cpu", "--workers", "0", "--out", out)
        assert code == 0, err
        rows[seeds] = {row["seed"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["1,2"][2]["test_auroc"] == rows["2"][2]["test_auroc"]
    assert rows["1,2"][2]["test_macro_f1"] == rows["2"][2]["test_macro_f1"]
    assert rows["1,2"][2]["test_confusion_matrix"] == rows["2"][2]["test_confusion_matrix"]


def test_a_method_that_forgets_to_move_itself_to_the_setup_device_is_refused_when_built(methods):
    """README's method example without its `self.to(setup.device)`: on a GPU its centroids stayed on the CPU, where
    `vip predict` loads the run's tensors into them, and forward failed with torch's "Expected all tensors to be on
    the same device", reported as a plugin fault with no fix. A backbone on meta stands in for the GPU."""
    import sys
    from types import SimpleNamespace

    import torch

    from vipcli.methods import MethodSetup, build_method
    from vipcli.plugins import PluginError

    source = (methods / "vip_method_example.py").read_text()
    assert source.count("        self.to(setup.device)\n") == 1
    (methods / "forgets_to.py").write_text(source.replace("        self.to(setup.device)\n", ""))
    install_distribution(methods, "forgets-to", "forgets-to = forgets_to:NearestCentroid", group="vip.methods")
    on_the_cpu = MethodSetup(SimpleNamespace(device=torch.device("cpu"), embed_dim=8), ["melanoma", "nevus"])
    with pytest.raises(PluginError) as error:  # built once more on meta, a stand-in for a GPU (it passed here)
        build_method("forgets-to", on_the_cpu)
    assert str(error.value).startswith(
        "method 'forgets-to' (from forgets-to 0.1.0) failed in __init__: __init__ left buffer 'centroids' on cpu, "
        "not on setup.device " + PROBE)
    elsewhere = MethodSetup(SimpleNamespace(device=torch.device("meta"), embed_dim=8), ["melanoma", "nevus"])
    with pytest.raises(PluginError) as error:
        build_method("forgets-to", elsewhere)
    assert str(error.value) == (
        "method 'forgets-to' (from forgets-to 0.1.0) failed in __init__: __init__ left buffer 'centroids' on cpu, "
        "not on meta where forward gets the image features (setup.device): forward would fail there with \"Expected "
        "all tensors to be on the same device\" (end __init__ with self.to(setup.device), after creating every "
        "parameter and buffer)")
    assert build_method("centroid-ok", elsewhere).centroids.device.type == "meta"  # README's example as written
    sys.modules.pop("forgets_to", None)


@pytest.mark.parametrize("method, left", [
    ("built-elsewhere", "on meta"),
    ("forgets-to-move", "on cpu, not on setup.device"),  # found on the CPU by the device probe
    ("plain-cpu-weights", None),  # forward uses a plain tensor attribute on the CPU: found by the device probe too
])
def test_a_benchmark_refuses_a_method_left_on_another_device_before_encoding(cli, methods, isic_small, tiny_clip,
                                                                              tmp_path, method, left):
    import os
    from pathlib import Path

    code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none", "--methods",
                       method, "--shots", "2", "--seeds", "1", "--out", tmp_path / "sweep", "--device",
                       "cpu", "--workers", "0")
    line = _one_error(err)
    start = (f"__init__: __init__ left buffer 'centroids' {left}" if left else
             "forward: forward gave torch.Tensor.matmul a tensor on cpu")
    assert code == 1 and line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) failed in {start}"), \
        line
    assert not list((Path(os.environ["VIP_CACHE_DIR"]) / "features").glob("*/*"))  # before any image was encoded
