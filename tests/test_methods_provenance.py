"""A run records which distributions provided its method and backbone; loading it names them when they are gone or changed."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from safetensors import safe_open

from conftest import error_lines, resave_run, tiny_train_args
from plugin_helpers import install_sample_methods


@pytest.fixture
def centroid_run(cli, site, isic_small, tiny_clip, tmp_path):
    """A run of the sample plugin method `centroid-ok` (distribution sample-methods 0.1.0)."""
    install_sample_methods(site)
    run = tmp_path / "run"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, run, "--method", "centroid-ok"))
    assert code == 0, err
    return run


def _edit(run, target, document=None, tensors=None):
    """A copy of `run` whose metadata document and tensors were changed by the given callables."""
    shutil.copytree(run, target)
    with safe_open(str(target / "model.safetensors"), "pt") as handle:
        header = dict(handle.metadata())
        weights = {k: handle.get_tensor(k) for k in handle.keys()}
    meta = json.loads(header["metadata"])
    if document:
        document(meta)
    if tensors:
        tensors(weights)
    header["metadata"] = json.dumps(meta)
    resave_run(target / "model.safetensors", weights, header)
    return target


def _predict(cli, run, isic_small):
    return cli("predict", sorted((isic_small / "test" / "nevus").iterdir())[0], "--model", run, "--device", "cpu")


def test_a_run_records_the_distributions_of_its_method_and_backbone(centroid_run):
    from vipcli import __version__

    document = yaml.safe_load((centroid_run / "run.yaml").read_text())
    assert document["method_distribution"] == {"name": "sample-methods", "version": "0.1.0"}
    assert document["backbone_distribution"] == {"name": "vipcli", "version": __version__}


def test_a_run_whose_method_plugin_is_gone_names_the_distribution_to_install(cli, centroid_run, site, isic_small):
    shutil.rmtree(site / "sample_methods-0.1.0.dist-info")  # pip uninstall sample-methods
    code, out, err = _predict(cli, centroid_run, isic_small)
    [line] = error_lines(err)
    assert code == 1 and out == "" and "Traceback" not in err
    assert line == (f"error: {centroid_run} was trained with method 'centroid-ok' from sample-methods 0.1.0, which "
                    "is not installed (pip install 'sample-methods==0.1.0')")


def test_a_run_whose_backbone_plugin_is_gone_names_the_distribution_to_install(cli, centroid_run, isic_small,
                                                                                tmp_path):
    def gone(meta):
        meta["backbone"], meta["backbone_distribution"] = "tiny-gone", {"name": "gone-backbones", "version": "1.2.0"}

    run = _edit(centroid_run, tmp_path / "gone", gone)
    code, out, err = _predict(cli, run, isic_small)
    [line] = error_lines(err)
    assert code == 1 and out == "" and "Traceback" not in err
    assert line == (f"error: {run} was trained with backbone 'tiny-gone' from gone-backbones 1.2.0, which is not "
                    "installed (pip install 'gone-backbones==1.2.0')")

    def unrecorded(meta):  # a run written before the distributions were recorded
        gone(meta)
        del meta["backbone_distribution"]

    run = _edit(centroid_run, tmp_path / "older", unrecorded)
    code, _, err = _predict(cli, run, isic_small)
    [line] = error_lines(err)
    assert code == 1 and f"{run} was trained with backbone 'tiny-gone', which is not installed (installed " \
                         "backbones: " in line and "can't find" not in line


def test_settings_the_installed_plugin_no_longer_has_are_a_warning_naming_them_and_both_versions(cli, centroid_run,
                                                                                                  isic_small, tmp_path):
    def renamed(meta):  # as if version 0.0.9 of the plugin called `temperature` `temp`
        meta["method_settings"] = {"temp": 0.05}
        meta["method_distribution"]["version"] = "0.0.9"

    run = _edit(centroid_run, tmp_path / "renamed", renamed)
    code, _, err = _predict(cli, run, isic_small)
    warnings = [line for line in err.splitlines() if line.startswith("warning:") and "centroid-ok" in line]
    assert code == 0, err
    assert len(warnings) == 1 and f"{run}: method 'centroid-ok' was trained with sample-methods 0.0.9, " \
                                  "sample-methods 0.1.0 is installed: stored setting 'temp' is no longer known and " \
                                  "is ignored; setting 'temperature' is not in the run and takes its default 0.01" \
                                  in warnings[0]
    code, _, err = _predict(cli, centroid_run, isic_small)
    assert code == 0 and "centroid-ok" not in err  # the settings match: nothing to say


def test_a_saved_tensor_mismatch_names_the_method_plugin_versions(cli, centroid_run, isic_small, tmp_path):
    def renamed(weights):  # as if the plugin renamed its buffer since
        weights["class_means"] = weights.pop("centroids")

    run = _edit(centroid_run, tmp_path / "renamed", tensors=renamed)
    code, _, err = _predict(cli, run, isic_small)
    [line] = error_lines(err)
    assert code == 1 and "Traceback" not in err
    assert "the run was trained with sample-methods 0.1.0 and sample-methods 0.1.0 is installed: the method " \
           "plugin's saved state likely changed since" in line
    assert "pip install 'sample-methods==0.1.0' to predict with this run, or retrain it" in line
