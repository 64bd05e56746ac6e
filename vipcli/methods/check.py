"""`vip methods check ID`: a method plugin through the whole of `vip train` and `vip predict`, in seconds.

The method is trained on a small synthetic lesion world with the shipped toy backbone (2 shots per
class, 2 epochs of the run's schedule), saved, rebuilt from its run directory and used to predict the
test images, all in a temporary folder with a feature cache of its own. Every check `vip train` and
`vip predict` make on a method runs on the way (class, settings, prompts, fit, logits, record, the
round trip), so a plugin's mistake shows here as the one line it would be in a real run, before hours
of encoding a real data set.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHECK_IMAGES = {"train": 6, "val": 4, "test": 4}  # per class of the lesion world
CHECK_SHOTS = 2
CHECK_EPOCHS = 2


@dataclass(frozen=True)
class MethodCheck:
    """What `check_method` did: the method, the images it learned from and predicted, and their counts."""

    method: str
    shots: int
    classes: list[str]
    predicted: int


def check_method(method_id: str, options: dict | None = None) -> MethodCheck:
    """Train `method_id` (with `options`, as `--method-option`) on a synthetic lesion world with the toy
    backbone, reload the run and predict its test images; any contract violation raises its VipError.
    The run's own lines (its plan, warnings about the synthetic data's calibration) are not shown."""
    from vipcli.lesion_world import write_dataset
    from vipcli.predict import load_predictor, predict
    from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings
    from vipcli.train import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="vip-methods-check-") as scratch:
        root = Path(scratch)
        write_dataset(root / "data", n_per_class=dict(CHECK_IMAGES), seed=0)
        config = TrainConfig(data=root / "data", shots=CHECK_SHOTS, method=method_id, method_options=dict(options or {}),
                             backbone=BackboneSettings("toy", device="cpu"),
                             encoding=EncodingSettings(views=2, workers=0, cache_dir=root / "cache"),
                             schedule=ScheduleSettings(epochs=CHECK_EPOCHS), out=root / "run")
        images = sorted((root / "data" / "test").rglob("*.png"))
        with contextlib.redirect_stderr(io.StringIO()):  # a failure is raised, and said once by the caller
            result = train(config)
            predictor = load_predictor(result.run_dir, "cpu")
            predictions, failures = predict(predictor, images, explain=True, workers=0)
            if not failures and len(predictions) == len(images):
                check_sweep(config)
        if failures or len(predictions) != len(images):
            from vipcli.errors import VipError

            raise VipError(f"method '{method_id}': {len(predictions)} of {len(images)} check images were predicted",
                           "this is a bug in vip; rerun with VIP_DEBUG=1 and report the traceback")
        return MethodCheck(method_id, CHECK_SHOTS, result.class_names, len(predictions))


def check_sweep(config) -> None:
    """Fit the method as a benchmark sweep does, in one process: seed A, then seed B, then seed A again, each
    a fresh instance on its seed's shots; the two seed-A fits must give the same test logits
    (`check_sweep_order`), seeds A and B must not give exactly the same logits when their training images
    differ (`check_fits_differ`), the first fit's logits must not be probabilities
    (`check_not_probabilities`), no fit may seed a global random generator with a constant
    (`check_own_seeding`), and a method that declares `uses_symptoms = False` must give the same logits built
    with two different symptom sets (`check_symptoms_unused`). First, as a sweep does, its class is asked whether
    its rows train together (`trains_batched`: only a `PromptMethod` that learns context can say yes)."""
    import random

    import numpy as np
    import torch

    from vipcli.data import load_dataset
    from vipcli.featuresets import prepare_features
    from vipcli.fitting import predict_logits
    from vipcli.methods import FitContext, MethodSetup, build_method, method_class, symptoms_matter
    from vipcli.methods.contract import (SWEEP_SEEDS, check_fits_differ, check_not_probabilities,
                                         check_own_seeding, check_sweep_order, checked_fit, global_random_states,
                                         trains_batched)
    from vipcli.packs import packs_for_run, symptoms_of
    from vipcli.train import encoding_plan

    cls = method_class(config.method)
    trains_batched(cls, config.method)  # a sweep asks first: a class claiming batched rows it cannot train fails
    dataset = load_dataset(config.data, seed=SWEEP_SEEDS[0], train_optional=not cls.uses_shots)
    symptoms = symptoms_of(packs_for_run(dataset.class_names, list(config.symptoms), required=cls.needs_symptoms,
                                         data=config.data))
    backbone = config.backbone.load(torch.device("cpu"))
    cache, schedule = config.encoding.cache(backbone), config.schedule.resolve(config.shots)
    shots, views, center = encoding_plan(config, cls)
    test = None
    fits = []  # (training split, test logits [T, C]) per fit, in the sweep's order
    states = []  # global_random_states() after each fit
    for index, seed in enumerate((*SWEEP_SEEDS, SWEEP_SEEDS[0])):
        torch.manual_seed(seed)
        random.seed(index)  # other states before each fit (also before the two seed-A fits): a fit that seeds
        np.random.seed(index)  # them with a constant ends in one state, and one that draws unseeded gives others
        method = build_method(config.method, MethodSetup(backbone, dataset.class_names, symptoms),
                              config.method_options)
        data = prepare_features(backbone, dataset, shots, seed, views, cache, workers=0, center_train=center,
                                train_required=cls.uses_shots)
        checked_fit(method, data, FitContext(schedule, seed, None, None))
        states.append(global_random_states())
        test = data.test.x if test is None else test  # [T, D]: every fit predicts the same images
        logits = predict_logits(method, test, backbone.device)  # [T, C]
        if not fits:
            check_not_probabilities(method, logits)
        fits.append((data.train, logits))
    if cls.uses_shots and not same_training_data(fits[0][0], fits[1][0]):
        check_fits_differ(config.method, SWEEP_SEEDS, fits[0][1], fits[1][1])
    check_sweep_order(config.method, SWEEP_SEEDS, fits[0][1], fits[2][1])
    check_own_seeding(config.method, SWEEP_SEEDS, states[0], states[1])
    if not symptoms_matter(cls):  # it says no symptom changes it: two symptom sets, the same logits
        check_symptom_free(config, backbone, dataset, test)


def check_symptom_free(config, backbone, dataset, test) -> None:
    """Fit the method of `config`, which declares `uses_symptoms = False`, twice on the same images and seed (the
    first of `SWEEP_SEEDS`), built with each of `other_symptom_sets`; their logits on `test` [T, D] must agree
    (`check_symptoms_unused`)."""
    from vipcli.featuresets import prepare_features
    from vipcli.fitting import predict_logits, seed_global_generators
    from vipcli.methods import FitContext, MethodSetup, build_method, method_class
    from vipcli.methods.contract import SWEEP_SEEDS, check_symptoms_unused, checked_fit
    from vipcli.train import encoding_plan

    cls, seed = method_class(config.method), SWEEP_SEEDS[0]
    shots, views, center = encoding_plan(config, cls)
    data = prepare_features(backbone, dataset, shots, seed, views, config.encoding.cache(backbone), workers=0,
                            center_train=center, train_required=cls.uses_shots)
    logits = []
    for symptoms in other_symptom_sets(dataset.class_names):
        seed_global_generators(seed)
        method = build_method(config.method, MethodSetup(backbone, dataset.class_names, symptoms),
                              config.method_options)
        checked_fit(method, data, FitContext(config.schedule.resolve(config.shots), seed, None, None))
        logits.append(predict_logits(method, test, backbone.device))  # [T, C]
    check_symptoms_unused(config.method, *logits)


def other_symptom_sets(class_names: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Two {class: [symptoms]} sets that differ for every class, in their phrases and their number: what a method
    that declares `uses_symptoms = False` is built with twice by `check_sweep`."""
    return ({name: [f"{name} with an irregular border", "several colours"] for name in class_names},
            {name: [f"small round {name}"] for name in class_names})


def same_training_data(first, second) -> bool:
    """Whether two fits' training splits (`FeatureSet`) hold the same images, features and augmented views."""
    import torch

    def same(a, b) -> bool:
        return a is b or (a is not None and b is not None and a.shape == b.shape and torch.equal(a, b))

    return first.paths == second.paths and same(first.x, second.x) and same(first.views, second.views)
