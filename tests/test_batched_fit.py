"""Batched training: several runs of one prompt method in one text forward, each as if run alone."""

from __future__ import annotations

import json

import pytest
import torch

from vipcli import benchmark
from vipcli.featuresets import FeatureSet, PreparedData
from vipcli.fitting import fit_sgd, fit_sgd_many
from vipcli.methods import FitContext, MethodSetup, build_method
from vipcli.methods.prompting import fits_together
from vipcli.registry import load_backbone
from vipcli.schedule import Schedule

from test_benchmark import bench_args

NAMES = ["melanoma", "nevus", "gamma"]
SYMPTOMS = {
    "melanoma": ["The spot is asymmetric on both sides", "Small, dark areas within the spot"],
    "nevus": ["The spot is symmetric on both sides", "The spot has clear, well-defined edges", "a round blob"],
    "gamma": ["redness and swelling around the spot"],
}


@pytest.fixture(scope="module")
def backbone(tiny_clip):
    return load_backbone("clip", str(tiny_clip), "none")


def features(count: int, seed: int, views: int = 3) -> FeatureSet:
    """Random class-dependent features [count, 32] with `views` augmented views each."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(count) % len(NAMES)
    centers = torch.randn(len(NAMES), 32, generator=generator)
    x = centers[y] + 0.8 * torch.randn(count, 32, generator=generator)  # [N, D]
    return FeatureSet(x, y, [f"{i}.jpg" for i in range(count)], x[:, None] + 0.3 * torch.randn(count, views, 32,
                                                                                            generator=generator))


def run_setup(method_id, backbone, shots: int, seed: int, options=None):
    """A freshly seeded method, its K-shot data and fit context (epochs differ with the shot count)."""
    torch.manual_seed(seed)
    method = build_method(method_id, MethodSetup(backbone, NAMES, SYMPTOMS), options or {})
    data = PreparedData(features(3 * shots, 100 + shots + seed), features(9, 7), features(9, 8))
    schedule = Schedule("fewshot", epochs=3 + shots, batch_size=2, lr=0.01)  # steps per epoch differ too
    return method, data, FitContext(schedule, seed)


@pytest.mark.parametrize("method_id,options", [("vip", {}), ("coop", {}), ("coop", {"class_specific_context": True}),
                                               ("biomedcoop", {}), ("biomedcoop", {"tau": "0.5"})])
def test_batched_runs_equal_separate_runs(backbone, method_id, options):
    grid = [(shots, seed) for shots in (1, 2) for seed in (1, 2)]
    alone = []
    for shots, seed in grid:
        method, data, context = run_setup(method_id, backbone, shots, seed, options)
        alone.append((fit_sgd(method, data, context), method))
    runs = [run_setup(method_id, backbone, shots, seed, options) for shots, seed in grid]
    together = fit_sgd_many([r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs])
    assert len(together) == len(grid)
    for (expected, method), result, (batched, *_), (shots, _) in zip(alone, together, runs, grid):
        assert result["best_epoch"] == expected["best_epoch"]
        assert result["best_val_accuracy"] == expected["best_val_accuracy"]
        assert len(result["history"]) == 3 + shots and result["steps"] == expected["steps"] == (3 + shots) * -(-3 * shots // 2)
        for mine, theirs in zip(result["history"], expected["history"]):
            assert mine["val_accuracy"] == theirs["val_accuracy"] and mine["lr"] == theirs["lr"]
            assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-4, abs=1e-6)
        for name, tensor in method.state_dict().items():  # the kept (best-epoch) parameters
            torch.testing.assert_close(batched.state_dict()[name], tensor, rtol=1e-4, atol=1e-5)
    trained = [r[0].context for r in runs]
    assert not torch.allclose(trained[0], trained[1])  # each run learned its own context


def test_only_runs_of_one_context_method_fit_together(backbone):
    vip = [run_setup("vip", backbone, 1, seed)[0] for seed in (1, 2)]
    coop = run_setup("coop", backbone, 1, 1)[0]
    assert fits_together(vip)
    assert not fits_together([vip[0], coop])  # other prompts
    assert not fits_together([run_setup("vip-mep-only", backbone, 1, 1)[0]])  # nothing text-side learns
    assert fits_together([run_setup("biomedcoop", backbone, 1, seed)[0] for seed in (1, 2)])  # loss from prompts
    assert not fits_together([vip[0], run_setup("vip-cop-only", backbone, 1, 1)[0]])  # another method


def test_a_training_loss_without_its_batched_loss_is_not_batched(backbone):
    from vipcli.methods.biomedcoop import BiomedCoop
    from vipcli.methods.coop import Coop

    class WeightedBiomedCoop(BiomedCoop):  # a third-party change of the loss that batched_loss does not know
        def training_loss(self, features, labels):
            return 2 * super().training_loss(features, labels)

    class CoopWithOwnLoss(Coop):
        def training_loss(self, features, labels):
            return self(features).logsumexp(dim=1).mean()

    class CoopWithOnlyBatchedLoss(Coop):  # fit_sgd would still train it with cross-entropy
        def batched_loss(self, image_features, labels, prompt_features):
            return 2 * super().batched_loss(image_features, labels, prompt_features)

    assert BiomedCoop.fits_in_batches() and Coop.fits_in_batches()
    for cls in (WeightedBiomedCoop, CoopWithOwnLoss, CoopWithOnlyBatchedLoss):
        assert not cls.fits_in_batches(), cls.__name__
    method = WeightedBiomedCoop(MethodSetup(backbone, NAMES, SYMPTOMS))
    assert not fits_together([method])
    pending = [("mine", WeightedBiomedCoop, shots, seed) for shots in (1, 2) for seed in (1, 2)]
    assert benchmark.row_groups(pending) == [[job] for job in pending]  # each row alone
    assert benchmark.row_groups([("biomedcoop", BiomedCoop, 1, seed) for seed in (1, 2)]) == \
        [[("biomedcoop", BiomedCoop, 1, 1), ("biomedcoop", BiomedCoop, 1, 2)]]


def test_sweep_rows_are_the_same_batched_or_one_by_one(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    args = ("--methods", "vip,coop,biomedcoop,linear-probe", "--shots", "1,2", "--seeds", "1,2", "--json")
    real, groups = benchmark.run_rows_together, []

    def recording(name, cls, jobs, context, progress=None):
        groups.append((name, list(jobs)))
        return real(name, cls, jobs, context, progress)

    monkeypatch.setattr(benchmark, "run_rows_together", recording)
    code, stdout, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "batched", *args))
    assert code == 0, stderr
    batched = json.loads(stdout)["rows"]
    grid = [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert sorted(groups) == [("biomedcoop", grid), ("coop", grid), ("vip", grid)]
    groups.clear()
    code, stdout, stderr = cli(*bench_args(isic_small, tiny_clip, tmp_path / "alone", *args, "--no-batch"))
    assert code == 0, stderr
    assert groups == []
    alone = json.loads(stdout)["rows"]
    drop = ("fit_s", "finished_at")
    assert len(batched) == len(alone) == 16
    for mine, theirs in zip(batched, alone):
        assert {k: v for k, v in mine.items() if k not in drop} == {k: v for k, v in theirs.items() if k not in drop}
    # results.json stores them in the sweep's order either way (batched, they finished method by method)
    stored = {name: [(r["method"], r["shots"], r["seed"]) for r in
                     json.loads((tmp_path / name / "results.json").read_text())["rows"]] for name in ("batched", "alone")}
    assert stored["batched"] == stored["alone"] == [(r["method"], r["shots"], r["seed"]) for r in batched]
