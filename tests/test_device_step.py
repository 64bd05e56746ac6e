"""A training step stays on its device: nothing read back to the host, nothing copied from it.

On a GPU every read-back (`.item()`, `int(tensor)`, `nonzero`) and every copy of a host tensor
makes the host wait for the device, and a prompt-learning step is short enough that such waits
dominate it. PyTorch's meta device stands in for the GPU on a machine without one: it computes
shapes only, refuses to mix with CPU tensors as CUDA does, and cannot be read back. The steps are
run under a dispatch mode that also records what CUDA would quietly allow (a CPU index tensor, a
host-to-device copy).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vipcli.featuresets import FeatureSet, PreparedData
from vipcli.fitting import _Run, _sgd_step_many, random_view_batches, sgd_step
from vipcli.methods import FitContext, MethodSetup, build_method
from vipcli.registry import load_backbone
from vipcli.schedule import Schedule

META = torch.device("meta")
NAMES = ["melanoma", "nevus", "gamma"]
SYMPTOMS = {
    "melanoma": ["The spot is asymmetric on both sides", "Small, dark areas within the spot"],
    "nevus": ["The spot is symmetric on both sides", "The spot has clear, well-defined edges", "a round blob"],
    "gamma": ["redness and swelling around the spot"],
}
READ_BACKS = {"_local_scalar_dense", "nonzero", "item", "equal", "is_nonzero"}


class HostTraffic(TorchDispatchMode):
    """Records ops that would make a GPU wait for the host or the host for the GPU."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on_device = any(t.device == META for t in tensors)
        if name in READ_BACKS:
            self.found.append(f"read-back: {func.__name__}")
        elif name in ("_to_copy", "copy_", "to") and any(t.device.type == "cpu" and t.dim() > 0 for t in tensors) \
                and (on_device or kwargs.get("device") == META):
            self.found.append(f"host copy: {func.__name__} {[tuple(t.shape) for t in tensors]}")
        elif on_device and any(t.device.type == "cpu" and t.dim() > 0 for t in tensors):
            self.found.append(f"host tensor in {func.__name__} {[(t.device.type, tuple(t.shape)) for t in tensors]}")
        return func(*args, **kwargs)


def features(count: int, views: int = 3) -> FeatureSet:
    """Class-balanced random features [count, 32] with `views` augmented views, on the CPU."""
    y = torch.arange(count) % len(NAMES)
    x = torch.randn(count, 32)
    return FeatureSet(x, y, [f"{i}.jpg" for i in range(count)], x[:, None] + torch.randn(count, views, 32))


@pytest.fixture(scope="module")
def meta_backbone(tiny_clip):
    """The tiny open_clip model, built on the meta device (shapes only)."""
    return load_backbone("clip", str(tiny_clip), "none", META, check=False, warn_random=False)


def optimizer_of(method):
    return torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                           weight_decay=5e-4)


@pytest.mark.parametrize("method_id,options", [("vip", {}), ("vip-cop-only", {}), ("vip-mep-only", {}),
                                               ("biomedcoop", {"init_context_from_words": False}),
                                               ("coop", {"class_specific_context": True})])
def test_a_training_step_stays_on_the_device(meta_backbone, method_id, options):
    method = build_method(method_id, MethodSetup(meta_backbone, NAMES, SYMPTOMS), options)
    train = features(12).to(META)
    batches = list(random_view_batches(train, 4, torch.Generator().manual_seed(1)))
    assert batches and all(f.device == META and y.device == META for f, y in batches)
    optimizer = optimizer_of(method)
    method.train()
    with HostTraffic() as traffic:
        for step, (batch_features, labels) in enumerate(batches):  # the first step checks loss and gradients
            loss = sgd_step(method, optimizer, batch_features, labels, META, check=step == 0)
    assert traffic.found == []
    assert loss.device == META and loss.dim() == 0


def test_a_batched_step_stays_on_the_device(meta_backbone):
    runs = []
    for seed in (1, 2, 3):
        method = build_method("vip", MethodSetup(meta_backbone, NAMES, SYMPTOMS), {})
        data = PreparedData(features(6 * seed), features(6), features(6))
        runs.append(_Run(method, data, FitContext(Schedule("fewshot", epochs=1, batch_size=4, lr=0.01), seed)))
    optimizer = torch.optim.SGD([{"params": run.parameters, "lr": 0.01} for run in runs], momentum=0.9)
    for run in runs:
        run.batches = list(random_view_batches(run.train, 4, run.generator))
        run.method.train()
    for step in range(2):  # the same stack twice: anything derived from the prompt ids is kept
        with HostTraffic() as traffic:
            _sgd_step_many(runs, step, optimizer, META)
        assert traffic.found == [], f"step {step}"
    assert all(len(run.losses) == 2 and run.losses[0].device == META for run in runs)
