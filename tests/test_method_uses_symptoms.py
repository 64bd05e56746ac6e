"""A method says whether the symptoms can change its results (`uses_symptoms`, default True): a benchmark sweep of
methods that declare False resumes with other --symptoms, `vip methods check` holds a method to that word, and a
plugin that says nothing (or inherits False from one of vip's methods) is taken to use them, as before."""

from __future__ import annotations

import json

from conftest import error_lines, two_symptom_packs
from plugin_helpers import methods_fixture

DECLARING_METHODS = '''
from vip_method_example import NearestCentroid
from vipcli.methods.coop import Coop
from vipcli.methods.prompting import readable_class_name


class Honest(NearestCentroid):
    """Class centroids: no symptom changes them."""

    uses_symptoms = False


class Liar(NearestCentroid):
    """Declares that no symptom changes it, but scales its logits by the first class's number of symptoms."""

    uses_symptoms = False

    def forward(self, image_features):
        count = len(self.setup.symptoms.get(self.setup.class_names[0], []))
        return super().forward(image_features) * (1 + count)


class Silent(NearestCentroid):
    """An older plugin: says nothing of the symptoms."""


class CoopWithSymptoms(Coop):
    """CoOp (which declares uses_symptoms = False) with each class's symptoms added to its prompts."""

    def make_prompts(self, setup):
        return [[readable_class_name(name), *setup.symptoms.get(name, [])] for name in setup.class_names]


class Contradicts(NearestCentroid):
    """Requires the symptoms and says none changes it."""

    needs_symptoms = True
    uses_symptoms = False
'''

declaring = methods_fixture("declaring_methods", DECLARING_METHODS, {
    "honest": "Honest", "liar": "Liar", "silent": "Silent", "coop-with-symptoms": "CoopWithSymptoms",
    "contradicts": "Contradicts"})


def test_a_plugin_declaring_no_symptoms_resumes_with_other_symptoms(cli, declaring, tmp_path):
    """Only vip's own methods on a hand-kept list resumed with other --symptoms. A plugin that declares
    uses_symptoms = False now does too (one without the attribute is refused as before: see the next test)."""
    first, second = two_symptom_packs(tmp_path / "packs")
    out = tmp_path / "bench"
    sweep = ("benchmark", "--data", declaring, "--backbone", "toy", "--methods", "honest", "--shots", "1",
             "--views", "1", "--workers", "0", "--out", out)
    code, _, err = cli(*sweep, "--seeds", "1", "--symptoms", first)
    assert code == 0, err
    code, _, err = cli(*sweep, "--seeds", "1,2", "--symptoms", second)
    assert code == 0 and "1 finished rows skipped, 1 to run" in err, err
    document = json.loads((out / "results.json").read_text())
    assert len(document["rows"]) == 2 and document["config"]["symptoms"]["melanoma"] == ["asymmetric shape"]


def test_what_each_method_says_of_the_symptoms_is_what_a_resume_trusts(declaring):
    """vip's own methods that read no symptom declare it; a plugin's subclass of one of them that adds the symptoms
    to its prompts inherits the declaration but is not taken at its parent's word."""
    from vipcli.benchmark import settings_no_row_uses
    from vipcli.methods import method_class, symptoms_matter

    free = {"zeroshot", "linear-probe", "coop", "tip-adapter", "tip-adapter-f", "clap"}
    for name in (*free, "vip", "vip-cop-only", "vip-mep-only", "biomedcoop", "symptom-zeroshot"):
        assert symptoms_matter(method_class(name)) is (name not in free), name
    assert "symptoms" in settings_no_row_uses([*free, "honest"])
    for reads in ("silent", "coop-with-symptoms", "symptom-zeroshot"):
        assert "symptoms" not in settings_no_row_uses(["zeroshot", reads]), reads
    assert method_class("coop-with-symptoms").uses_symptoms is False  # inherited, and not trusted


def test_methods_check_holds_a_method_to_uses_symptoms_false(cli, declaring):
    """A plugin could declare that no symptom changes it and read them: `vip methods check` now builds it with two
    symptom sets and fails it where its logits differ; an honest one passes."""
    code, printed, err = cli("methods", "check", "honest")
    assert code == 0 and "method 'honest' passes" in printed, err
    code, _, err = cli("methods", "check", "liar")
    line, = error_lines(err)
    assert code == 1 and "declares uses_symptoms = False, but built with two different symptom sets" in line, err
    assert "drop uses_symptoms = False" in line


def test_needs_symptoms_with_uses_symptoms_false_is_refused_when_the_class_loads(cli, declaring):
    """A method that requires the symptoms and says none changes it is a contradiction, named with its fix."""
    code, printed, err = cli("methods", "list", "--json")
    listed = {info["id"]: info for info in json.loads(printed)}
    assert "needs_symptoms = True but uses_symptoms = False" in listed["contradicts"]["problem"], err
    assert listed["honest"]["uses_symptoms"] is False and listed["silent"]["uses_symptoms"] is True
    assert listed["biomedcoop"]["uses_symptoms"] is True and listed["coop"]["uses_symptoms"] is False
