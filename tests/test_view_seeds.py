"""The seed of each augmented view: what `vipcli.features.seeded` draws and what it leaves alone."""

from __future__ import annotations

import random

import numpy as np
import torch

from vipcli.features import seeded


def test_seeded_draws_what_a_global_seed_draws_and_restores_every_generator():
    """A view drawn under `seeded(s)` is the one torch.manual_seed(s) gave (the feature cache's views stay
    the same), and the global generators continue as if the block had not run."""
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected_after = torch.rand(3), random.random(), np.random.rand()
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    expected_inside = torch.rand(4), torch.randint(0, 1000, (2,)), random.random(), np.random.rand()

    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    with seeded(123):
        inside = torch.rand(4), torch.randint(0, 1000, (2,)), random.random(), np.random.rand()
    after = torch.rand(3), random.random(), np.random.rand()

    assert torch.equal(inside[0], expected_inside[0]) and torch.equal(inside[1], expected_inside[1])
    assert inside[2:] == expected_inside[2:]
    assert torch.equal(after[0], expected_after[0]) and after[1:] == expected_after[1:]


def test_seeded_seeds_no_device_generator(monkeypatch):
    """`seeded` touches the CPU generator only: torch.manual_seed would also seed every GPU's generator (left
    changed after the block) and, before CUDA starts, record a traceback per view (a tenth of a view's time)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(("cuda", seed)))
    monkeypatch.setattr(torch.mps, "manual_seed", lambda seed: calls.append(("mps", seed)))
    with seeded(7):
        torch.rand(1)
    assert calls == []
