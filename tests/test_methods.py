"""The method seam: every method through one interface, its paper's formula, and runs that stay true."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vipcli.featuresets import FeatureSet, PreparedData
from vipcli.methods import FitContext, MethodSetup, build_method
from vipcli.registry import load_backbone
from vipcli.schedule import resolve_schedule

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0.1.0"
SYMPTOMS = {
    "melanoma": ["The spot is asymmetric on both sides", "Small, dark areas within the spot", "blurry edges"],
    "nevus": ["The spot is symmetric on both sides", "The spot has clear, well-defined edges"],
}


@pytest.fixture(scope="module")
def backbone(tiny_clip):
    return load_backbone("clip", str(tiny_clip), "none")


def separable(backbone, n_per_class=6, views=3, seed=0) -> PreparedData:
    """Features of two well-separated classes in the backbone's space (train with views, val, test)."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(2, backbone.embed_dim, generator=generator) * 3  # [C, D]

    def split(n, with_views):
        y = torch.arange(2).repeat_interleave(n)  # [N]
        x = centers[y] + torch.randn(len(y), backbone.embed_dim, generator=generator) * 0.5  # [N, D]
        v = x[:, None] + torch.randn(len(y), views, backbone.embed_dim, generator=generator) * 0.3 if with_views else None
        return FeatureSet(x, y, [f"{i}.jpg" for i in range(len(y))], v)

    return PreparedData(split(n_per_class, True), split(8, False), split(8, False))


# --- 0.1.0 runs still predict identically --------------------------------------------------------


@pytest.mark.parametrize("method", ["vip", "coop", "zeroshot", "linear-probe"])
def test_a_run_written_by_vip_0_1_0_predicts_identically(cli, tmp_path, method):
    images = tmp_path / "images"
    shutil.copytree(FIXTURE / "images", images)
    code, out, err = cli("predict", images, "--model", FIXTURE / method, "--json", "--explain", "--no-cache",
                         "--device", "cpu", "--workers", "0")
    assert code == 0, err
    expected = json.loads((FIXTURE / f"{method}.expected.json").read_text())["predictions"]
    got = json.loads(out)["predictions"]
    assert [Path(p["path"]).name for p in got] == [Path(p["path"]).name for p in expected]
    for new, old in zip(got, expected):
        assert new["label"] == old["label"]
        for name, probability in old["probabilities"].items():
            assert new["probabilities"][name] == pytest.approx(probability, abs=2e-4)
        assert (new["explanation"] is None) == (old["explanation"] is None)
        if old["explanation"]:
            assert [[e["symptom"] for e in g["symptoms"]] for g in new["explanation"]] == [
                [e["symptom"] for e in g["symptoms"]] for g in old["explanation"]]


# --- each method's formula on hand-set tensors ------------------------------------------------


def test_tip_adapter_logits_follow_the_paper(backbone):
    from vipcli.methods.tip_adapter import tip_logits

    f = torch.tensor([[3.0, 4.0, 0.0]])  # normalised: [0.6, 0.8, 0]
    class_weights = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    keys = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    values = torch.tensor([[1.0, 0], [0, 1.0]])
    got = tip_logits(f, class_weights, keys, values, alpha=2.0, beta=5.0, scale=torch.tensor(100.0))
    clip = torch.tensor([[60.0, 80.0]])
    cache = torch.tensor([[math.exp(-5 * (1 - 0.6)), math.exp(-5 * (1 - 0.0))]])
    torch.testing.assert_close(got, clip + 2.0 * cache)


def test_tip_adapter_searches_alpha_beta_on_validation_and_round_trips(backbone, tmp_path):
    data = separable(backbone)
    method = build_method("tip-adapter", MethodSetup(backbone, ["a", "b"], {}))
    fitted = method.fit(data, FitContext(resolve_schedule("fewshot", 4), seed=1))
    assert fitted["best_val_accuracy"] == 100.0
    assert 0.1 <= method.alpha < 3.0 and 0.1 <= method.beta < 7.0
    assert method.cache_keys.shape == (12, backbone.embed_dim) and torch.allclose(method.cache_keys.norm(dim=-1),
                                                                                 torch.ones(12))
    from vipcli.methods import restore_method

    again = restore_method("tip-adapter", MethodSetup(backbone, ["a", "b"], {}), {}, method.record(),
                           method.state_tensors(), "here")
    torch.testing.assert_close(again(data.test.x), method(data.test.x))


def test_tip_adapter_search_reads_the_device_once_and_picks_what_a_scan_picks(backbone):
    """The search read two numbers back per beta (400 GPU waits per fit of the default grid, 30 fits in the
    default sweep); now once per search, with the same choice: the first best point in grid order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from vipcli.methods.tip_adapter import search_grid

    class Reads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += func.__name__.split(".")[0] in ("_local_scalar_dense", "item")
            return func(*args, **(kwargs or {}))

    data = separable(backbone, seed=3)
    data.val.x[:4] = -data.val.x[:4]  # some wrong at every point, so the grid has a real best and ties
    reads = []
    for steps in (5, 40):
        method = build_method("tip-adapter", MethodSetup(backbone, ["a", "b"], {}), {"beta_steps": str(steps)})
        method.build_cache(data.train)
        with Reads() as counted:
            score = method.search(data.val)
        reads.append(counted.count)
        # the scan the search replaced: keep a point only when strictly better
        best = (-1.0, None, None)
        f = F.normalize(data.val.x, dim=-1)
        for beta in search_grid(7.0, steps):
            for alpha in torch.tensor(search_grid(3.0, 20)):
                logits = method.logit_scale.exp() * f @ method.class_weights.T + alpha * (
                    torch.exp(-beta * (1 - f @ method.cache_keys.T)) @ method.cache_values)
                accuracy = float((logits.argmax(-1) == data.val.y).float().mean())
                if accuracy > best[0]:
                    best = (accuracy, float(alpha), beta)
        assert (score, method.alpha, method.beta) == pytest.approx(best)
    assert reads[0] == reads[1] <= 3  # not one per beta


def test_tip_adapter_keys_normalise_the_mean_of_the_raw_views_as_the_authors_cache():
    """The authors average the encoder's raw output over augmentation epochs, then normalise: a view
    with a longer feature weighs more (normalising each view first would weigh them equally)."""
    from types import SimpleNamespace

    from vipcli.methods.tip_adapter import TipAdapter

    views = torch.tensor([[[4.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 2.0]]])  # [N=2, V=2, D=2]
    method = SimpleNamespace(setup=SimpleNamespace(device=torch.device("cpu"), num_classes=2))
    TipAdapter.build_cache(method, SimpleNamespace(views=views, y=torch.tensor([0, 1])))
    expected = torch.tensor([[4.0, 1.0], [1.0, 1.0]]) / torch.tensor([[17.0 ** 0.5], [2.0 ** 0.5]])
    torch.testing.assert_close(method.cache_keys, expected)
    torch.testing.assert_close(method.cache_values, torch.eye(2))


def test_tip_adapter_f_trains_the_keys_and_keeps_the_best_epoch(backbone):
    data = separable(backbone)
    method = build_method("tip-adapter-f", MethodSetup(backbone, ["a", "b"], {}), {"epochs": "3"})
    fitted = method.fit(data, FitContext(resolve_schedule("fewshot", 4), seed=1))
    assert len(fitted["history"]) == 3 and fitted["best_val_accuracy"] == 100.0
    assert "cache_keys" in method.state_tensors() and method.adapter is None


def test_clap_penalty_is_the_zero_shot_probability_of_the_true_class():
    from vipcli.methods.clap import class_adaptive_penalty

    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    expected = torch.tensor([(torch.softmax(logits[0], 0)[0] + 0.5) / 2, torch.softmax(logits[2], 0)[1]])
    torch.testing.assert_close(class_adaptive_penalty(logits, labels, 2), expected)


def test_clap_defaults_are_the_authors_configuration():
    """jusiro/CLAP trains with configs/trainers/SGD_lr1e-1_B256_ep300.yaml: SGD, lr 0.1, batch 256, 300 epochs."""
    from vipcli.methods.clap import ClapSettings

    assert (ClapSettings().lr, ClapSettings().batch_size, ClapSettings().epochs) == (0.1, 256, 300)


def test_clap_starts_at_zero_shot_and_its_loss_is_ce_plus_the_weighted_pull(backbone):
    data = separable(backbone)
    method = build_method("clap", MethodSetup(backbone, ["a", "b"], {}), {"epochs": "2"})
    zero_shot = build_method("zeroshot", MethodSetup(backbone, ["a", "b"], {}))
    torch.testing.assert_close(method(data.test.x), zero_shot(data.test.x), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        method.prototypes.add_(torch.ones_like(method.prototypes))
    penalty = torch.tensor([0.25, 0.75])
    d = method.prototypes.shape[1]
    torch.testing.assert_close(method.constraint(penalty), (0.25 * d + 0.75 * d) / 2 * torch.tensor(1.0))
    fitted = method.fit(data, FitContext(resolve_schedule("fewshot", 4), seed=1))
    assert len(fitted["penalty"]) == 2 and all(0 <= p <= 1 for p in fitted["penalty"])


def test_biomedcoop_prunes_outliers_by_robust_z_scores():
    from vipcli.methods.biomedcoop import prune_outliers

    scores = torch.tensor([10.0, 10.5, 9.5, 10.2, 9.8, 30.0])
    keep = prune_outliers(scores, 1.5)
    assert keep.tolist() == [True, True, True, True, True, False]
    assert prune_outliers(torch.tensor([1.0, 5.0]), 1.5).all()  # too few to judge
    assert prune_outliers(torch.tensor([1.0, 1.0, 1.0, 9.0]), 1.5).all()  # no spread (MAD 0): nothing to judge by
    assert prune_outliers(torch.tensor([2.0, 2.0, 2.0]), 1.5).all()


def test_biomedcoop_robust_z_scores_are_signed_as_the_authors_code():
    """Standardising the signed (s - median) / MAD is standardising s itself: a prompt is pruned for being
    far from the others' mean, never for sitting at the median (the absolute deviation pruned it)."""
    from vipcli.methods.biomedcoop import prune_outliers

    scores = torch.tensor([0.0, 0.1, 0.2, 5.0, 9.8, 9.9, 10.0])  # the median prompt (5.0) is no outlier
    assert prune_outliers(scores, 1.5).tolist() == [True] * 7
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        scores = torch.randn(int(torch.randint(3, 12, (1,), generator=generator)), generator=generator,
                             dtype=torch.float64) * 3
        expected = ((scores - scores.mean()) / scores.std()).abs() <= 1.5
        assert prune_outliers(scores, 1.5).tolist() == expected.tolist()


def test_biomedcoop_loss_is_ce_plus_consistency_plus_distillation(backbone):
    method = build_method("biomedcoop", MethodSetup(backbone, ["melanoma", "nevus"], SYMPTOMS),
                          {"sccm_lambda": "0", "kdsp_lambda": "0"})
    features, labels = torch.randn(4, backbone.embed_dim), torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(method.training_loss(features, labels), F.cross_entropy(method(features), labels))
    with_terms = build_method("biomedcoop", MethodSetup(backbone, ["melanoma", "nevus"], SYMPTOMS))
    with torch.no_grad():
        with_terms.context.copy_(method.context)
    assert with_terms.training_loss(features, labels) > method.training_loss(features, labels)
    padded, mask, _, counts = with_terms.ensemble_block()  # [C, K, D], [C, K]
    assert int(mask.sum()) == 3 + 3 + 3 + 2 and counts[0] == int(mask[0].sum()) == 6


def test_biomedcoop_context_starts_from_the_words_a_photo_of_a(backbone):
    method = build_method("biomedcoop", MethodSetup(backbone, ["melanoma", "nevus"], {}))
    ids = backbone.tokenize(["a photo of a"])
    torch.testing.assert_close(method.context.detach(), backbone.embed_tokens(ids)[0, 1:5].float())


# --- the run directory is the source of truth -------------------------------------------------------


def test_predict_uses_the_stored_prompts_not_todays_defaults(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    from conftest import tiny_train_args

    out = tmp_path / "zs"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out, "--method", "zeroshot"))
    assert code == 0, err
    code, before, _ = cli("predict", isic_small / "test", "--model", out, "--json")
    import vipcli.methods.zeroshot as zeroshot

    monkeypatch.setattr(zeroshot, "ZERO_SHOT_TEMPLATE", "an x-ray of {}, probably.")
    code, after, err = cli("predict", isic_small / "test", "--model", out, "--json")
    assert code == 0, err and json.loads(after)["predictions"] == json.loads(before)["predictions"]
    import yaml

    stored = yaml.safe_load((out / "run.yaml").read_text())
    assert stored["method_state"]["prompts"] == [["a photo of a melanoma."], ["a photo of a nevus."]]


def test_train_banner_counts_shots_only_for_methods_that_use_labelled_images(cli, isic_small, tiny_clip, tmp_path):
    from conftest import tiny_train_args

    def banner(method, *extra):
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / method, "--method", method, *extra))
        assert code == 0, err
        return next(line for line in err.splitlines() if line.startswith(f"{method} on 2 classes"))

    zeroshot = banner("zeroshot")
    assert zeroshot.startswith("zeroshot on 2 classes (melanoma, nevus); no labelled images, no training;")
    assert "shot" not in zeroshot.replace("zeroshot", "")
    # the same words as the run report's schedule row, with the command that shows the method's settings
    assert banner("linear-probe", "--shots", "1").startswith(
        "linear-probe on 2 classes (melanoma, nevus), 1 shot per class; "
        "the method's own fitting (`vip methods show linear-probe`);")


def test_run_metadata_keeps_real_types(cli, isic_small, tiny_clip, tmp_path):
    from conftest import tiny_train_args

    out = tmp_path / "vip"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out, "--class-specific-context", "--n-ctx", "2"))
    assert code == 0, err
    from vipcli.checkpoint import read_checkpoint

    _, meta = read_checkpoint(out)
    assert meta["method_settings"] == {"n_ctx": 2, "class_specific_context": True}
    assert meta["config"]["shots"] == 4 and meta["config"]["encoding"]["views"] == 2


def test_method_options_are_checked_before_any_work(cli, isic_small, tmp_path):
    code, _, err = cli("train", "--data", isic_small, "--method", "clap", "-o", "epochs=many", "--out", tmp_path / "x")
    assert code == 2 and "epochs" in err and "expected int" in err
    code, _, err = cli("train", "--data", isic_small, "--method", "zeroshot", "--n-ctx", "3", "--out", tmp_path / "x")
    assert code == 2 and "method 'zeroshot' has no setting 'n-ctx'" in err  # as `vip methods show` spells it
    assert not (tmp_path / "x").exists()


def test_a_context_setting_given_to_a_method_that_learns_none_says_which_methods_take_it(cli, tmp_path):
    """`vip train --method linear-probe --n-ctx 8` said only "(its settings: none)", of an option vip offers."""
    for method, option in (("linear-probe", ["--n-ctx", "8"]), ("tip-adapter", ["--class-specific-context"])):
        code, _, err = cli("train", "--data", tmp_path, "--method", method, *option, "--out", tmp_path / "x")
        setting = option[0].removeprefix("--")
        assert code == 2 and err.splitlines()[-1].endswith(
            f"; {setting} is a setting of the methods that learn context, such as coop and vip (vip methods list))"), err


def test_methods_list_shows_what_each_method_needs(cli):
    code, out, err = cli("methods", "list", "--json")
    assert code == 0, err
    listed = {m["id"]: m for m in json.loads(out)}
    assert listed["vip"]["needs_symptoms"] and listed["vip"]["trains"] and listed["vip"]["uses_shots"]
    assert not listed["tip-adapter"]["trains"] and listed["tip-adapter"]["uses_shots"]
    assert not listed["zeroshot"]["uses_shots"] and listed["linear-probe"]["distribution"] == "vipcli"
    assert "sccm-lambda" in listed["biomedcoop"]["settings"]


def test_cli_default_benchmark_methods_match_the_library():
    from vipcli.cli.benchmark import DEFAULT_METHODS
    from vipcli.methods import DEFAULT_BENCHMARK

    assert DEFAULT_METHODS == DEFAULT_BENCHMARK


def test_method_option_help_and_unknown_setting_point_to_methods_show(cli, isic_small, tmp_path):
    """`vip methods list` shows no settings: the -o help and the benchmark's hint name `vip methods show ID`."""
    code, out, _ = cli("train", "--help")
    assert code == 0 and "vip methods show ID" in " ".join(out.replace("│", " ").split())
    code, _, err = cli("benchmark", "--data", isic_small, "--methods", "zeroshot,coop", "-o", "temprature=2",
                       "--out", tmp_path / "b")
    assert code == 2 and "no benchmarked method has the setting 'temprature'" in err
    assert "`vip methods show ID` lists a method's settings" in err and "methods list" not in err
    code, _, err = cli("benchmark", "--data", isic_small, "--methods", "zeroshot,linear-probe", "-o", "n-ctx=8",
                       "--out", tmp_path / "b")
    assert code == 2 and "no benchmarked method has the setting 'n-ctx'" in err  # as typed (it said 'n_ctx')


@pytest.mark.parametrize("method, option, message", [
    ("biomedcoop", "tau=0", "error: --method-option tau=0.0: must be above 0: the prompts more than tau standard "
                            "deviations from the mean are pruned, so 0 or less prunes them all (pass a value such as "
                            "--method-option tau=1.5 (its default))"),
    ("biomedcoop", "sccm-lambda=-1", "error: --method-option sccm-lambda=-1.0: a loss weight must be 0 or more"),
    ("biomedcoop", "kdsp-lambda=-0.5", "error: --method-option kdsp-lambda=-0.5: a loss weight must be 0 or more"),
    ("tip-adapter", "alpha-steps=0", "error: --method-option alpha-steps=0: the search needs at least one step "
                                     "(pass a value such as --method-option alpha-steps=20 (its default))"),
    ("tip-adapter-f", "beta-scale=0.1", "error: --method-option beta-scale=0.1: the search runs from 0.1"),
    ("tip-adapter-f", "lr=0", "error: --method-option lr=0.0: must be above 0 (pass a value such as "
                              "--method-option lr=0.001 (its default))"),
    ("clap", "batch-size=0", "error: --method-option batch-size=0: must be above 0"),
])
def test_a_method_setting_out_of_range_is_one_line_naming_it_before_any_work(cli, tmp_path, no_work, method, option,
                                                                            message):
    for name in ("melanoma", "nevus"):
        (tmp_path / "data" / name).mkdir(parents=True)
    for command in (["train", "--method", method, "--out", tmp_path / "run"],
                    ["benchmark", "--methods", f"coop,{method}", "--out", tmp_path / "sweep"]):
        code, _, err = cli(*command, "--data", tmp_path / "data", "--backbone", "toy", "--method-option", option)
        assert code == 2 and [line for line in err.splitlines() if line.startswith("error:")][0].startswith(message)
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_methods_list_never_cuts_a_method_id(cli, monkeypatch):
    """In a 40-column terminal `vip methods list` showed `tip-…` twice and `vip-…` twice for the ids --method
    takes: each id now folds onto a second line instead."""
    from vipcli.methods import METHODS

    monkeypatch.setenv("COLUMNS", "40")
    code, out, _ = cli("methods", "list")
    ids: list[str] = []
    for cells in (line.split("│") for line in out.split("┡")[1].splitlines() if line.startswith("│")):
        if cells[2].strip():  # a row's first line (its `trains` cell): a new id
            ids.append("")
        ids[-1] += cells[1].strip()
    assert code == 0 and ids == METHODS.ids(), out


def test_the_built_ins_declaring_no_symptoms_give_the_same_logits_with_other_symptoms(backbone):
    """A sweep of vip's zeroshot, linear-probe, coop, tip-adapter(-f) and clap resumes with other --symptoms because
    they declare uses_symptoms = False: each, fitted on the same features and seed with two different symptom sets,
    gives the same logits. BiomedCoOp, which uses them, does not (the comparison can fail)."""
    from vipcli.fitting import predict_logits, seed_global_generators
    from vipcli.methods import method_class, symptoms_matter
    from vipcli.methods.check import other_symptom_sets

    data, names = separable(backbone), ["melanoma", "nevus"]
    quick = {"tip-adapter-f": {"epochs": 2}, "clap": {"epochs": 2}}

    def logits(method_id: str, symptoms: dict) -> torch.Tensor:
        seed_global_generators(1)
        method = build_method(method_id, MethodSetup(backbone, names, symptoms), quick.get(method_id))
        method.fit(data, FitContext(resolve_schedule("fewshot", 4, epochs=2), seed=1))
        return predict_logits(method, data.test.x, backbone.device)  # [T, C]

    first, second = other_symptom_sets(names)
    declared = ["zeroshot", "linear-probe", "coop", "tip-adapter", "tip-adapter-f", "clap"]
    for method_id in declared:
        assert not symptoms_matter(method_class(method_id)), method_id
        assert torch.equal(logits(method_id, first), logits(method_id, second)), method_id
    assert symptoms_matter(method_class("biomedcoop"))
    assert not torch.equal(logits("biomedcoop", first), logits("biomedcoop", second))


def test_a_setting_of_a_bare_container_type_is_refused_as_one_the_command_line_cannot_set():
    """`-o mapping=...` for a `dict` setting said "expected dict, got '{"a": 1}' (pass a dict)", a fix no value could
    follow; a bare `list` setting took `-o names=ab` as ['a', 'b']. Both keep their default: -o names them as
    settings it cannot set."""
    from dataclasses import dataclass, field

    from vipcli.errors import UsageError
    from vipcli.methods.base import Method, make_settings

    @dataclass
    class Containers:
        mapping: dict = field(default_factory=dict)
        names: list = field(default_factory=list)
        count: int = 1

    class WithContainers(Method):
        Settings = Containers

    for key, value in (("mapping", '{"a": 1}'), ("names", "ab")):
        with pytest.raises(UsageError) as refused:
            make_settings(WithContainers, {key: value}, "with-containers")
        assert "cannot be set on the command line" in str(refused.value) and "pass a" not in refused.value.hint
    assert make_settings(WithContainers, {"count": "3"}, "with-containers").count == 3
