"""A settings dict of the Python interface that gives one setting twice, in two spellings, is refused as the command
line refuses an option given twice: `method_options={"n_ctx": 4, "n-ctx": 8}`, a symptoms dict naming one class as
`melanoma` and `Melanoma`. Each kept one value without a word."""

from __future__ import annotations

import pytest

import vipcli.api as vip
from vipcli.errors import UsageError, VipError


@pytest.mark.parametrize("run", [vip.train, vip.benchmark])
def test_method_options_giving_a_setting_under_both_spellings_is_refused_before_any_work(run, tmp_path):
    """`{"n_ctx": 4, "n-ctx": 8}` trained with n_ctx 8 (the last one): now one UsageError naming both keys, before the
    data folder is even looked at."""
    with pytest.raises(UsageError) as raised:
        run(tmp_path / "no-such-data", method_options={"n_ctx": 4, "alpha": 1, "n-ctx": 8}, out=tmp_path / "out")
    assert str(raised.value) == ("method_options['n-ctx']=8: the setting n_ctx is given twice (first as "
                                 "method_options['n_ctx']=4) (give each setting once, with the value you mean)")
    assert not (tmp_path / "out").exists()


def test_a_library_config_giving_a_setting_twice_is_refused_where_the_settings_are_made():
    """`TrainConfig`/`BenchmarkConfig` and `build_method` hand their dict to `make_settings`, which refuses it too
    (a dict of one spelling each still works)."""
    from vipcli.methods import make_settings, method_class

    coop = method_class("coop")
    with pytest.raises(UsageError, match=r"^method_options\['n_ctx'\]='8': the setting n_ctx is given twice \(first "
                                         r"as method_options\['n-ctx'\]='4'\)"):
        make_settings(coop, {"n-ctx": "4", "n_ctx": "8"}, "coop")
    assert make_settings(coop, {"n-ctx": "4", "class_specific_context": "true"}, "coop").n_ctx == 4


def test_a_symptoms_dict_naming_one_class_twice_is_refused(tmp_path):
    """Classes match ignoring case and separators, so `{"melanoma": [...], "Melanoma": [...]}` used the first entry's
    symptoms and dropped the other's; the dict, or a symptoms file of that shape, is now refused naming both keys."""
    from vipcli.packs import load_symptom_file

    symptoms = {"melanoma": ["an asymmetric spot"], "nevus": ["a round spot"], "Melanoma": ["blurry edges"]}
    with pytest.raises(VipError) as raised:
        vip.train(tmp_path / "no-such-data", symptoms=symptoms, out=tmp_path / "out")
    assert str(raised.value).startswith("the symptoms dict: 'melanoma' and 'Melanoma' name the same class")
    assert not (tmp_path / "out").exists()
    written = tmp_path / "symptoms.yaml"
    written.write_text("basal_cell: [a pearly bump]\nbasal cell: [a rolled edge]\n")
    with pytest.raises(VipError, match=r"symptoms\.yaml: 'basal_cell' and 'basal cell' name the same class"):
        load_symptom_file(written)
    written.write_text("basal_cell: [a pearly bump]\nnevus: [a round spot]\n")
    assert [pack.name for pack in load_symptom_file(written)] == ["basal_cell", "nevus"]
