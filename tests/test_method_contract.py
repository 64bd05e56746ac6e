"""The method contract: a method plugin's mistake is one line naming it, its distribution, the member and the fix."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines, tiny_train_args
from plugin_helpers import install_sample_methods, site  # noqa: F401 - site is a fixture


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


@pytest.mark.parametrize("method, member, reason, fix", [
    ("forgot-buffer", "state_tensors", "rebuilt from what the run stores (tensors: none; record() keys: none)",
     "self.register_buffer(NAME, tensor)"),
    ("transposed", "forward", "forward returned logits [2, ", "return float logits [B, C]"),
    ("fit-returns-none", "fit", "fit returned NoneType, not a dict", "return super().fit(data, context)"),
    ("typo", "forward", "AttributeError: 'Typo' object has no attribute 'centroid'", "report it to the authors"),
    ("plain-weights", "fit", "fit_sgd found no trainable parameter", "nn.Parameter"),
])
def test_a_method_plugin_mistake_in_train_is_one_line_naming_it(cli, methods, isic_small, tiny_clip, tmp_path,
                                                                 method, member, reason, fix):
    run = tmp_path / "run"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, run, "--method", method))
    line = _one_error(err)
    assert code == 1 and line.startswith(f"error: method '{method}' (from sample-methods 0.1.0) failed in {member}: ")
    assert reason in line and fix in line
    assert not run.exists()  # nothing written that would predict something else


@pytest.mark.parametrize("method, reason", [
    ("no-default", "setting 'temperature' has no default"),
    ("plain-settings", "not a dataclass"),
    ("forgot-fit", "trains = True but fit is not overridden"),
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


def test_benchmark_names_a_method_whose_fit_returns_nothing(cli, methods, isic_small, tiny_clip, tmp_path):
    code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none",
                       "--methods", "fit-returns-none", "--shots", "1", "--seeds", "1", "--views", "2",
                       "--out", tmp_path / "bench", "--device", "cpu", "--workers", "0")
    assert code == 1 and "method 'fit-returns-none' (from sample-methods 0.1.0) failed in fit" in _one_error(err)
