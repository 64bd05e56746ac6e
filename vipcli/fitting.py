"""Fitting methods on frozen features: the shared SGD loop, inference and evaluation.

Everything here works through the `vipcli.methods.Method` interface, so a method plugin gets
the same loop, best-epoch selection and metrics as the built-ins.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vipcli import console
from vipcli.devices import autocast
from vipcli.errors import VipError
from vipcli.featuresets import FeatureSet
from vipcli.methods.prompting import encode_stacked_prompts, fits_together
from vipcli.metrics import compute_metrics

MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4


def seed_global_generators(seed: int) -> None:
    """Seed torch's global generators (`torch.manual_seed`), Python's `random` and NumPy's with a run's or a
    benchmark row's `seed`, before its method is built and fitted.

    A method plugin that draws from NumPy or Python's `random` in `__init__` or `fit` (`np.random.permutation`,
    `random.shuffle`, a library left at `random_state=None`) then gives the same result for the same seed: in
    another process (their state was drawn from the OS at start) and after the other rows of a sweep. vip's own
    code draws from generators of its own, so its results do not change. `vip methods check` still refuses such
    a plugin: context.seed does not fix those draws where other code draws between this and `fit`.
    """
    import random

    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@torch.no_grad()
def predict_logits(method, features: torch.Tensor, device) -> torch.Tensor:
    """Logits [N, C] (float32, on the CPU) for image features [N, D]; class-side work done once."""
    from vipcli.methods.backbone_guard import check_kept, state_if_watched

    backbone = state_if_watched(method)  # a plugin's: the backbone as each member found it
    method.eval()
    if type(method).train is not torch.nn.Module.train:  # torch's own train() changes nothing outside the method
        backbone = check_kept(method, "train", backbone, "train(False), called by eval(),")
    method.prepare()
    backbone = check_kept(method, "prepare", backbone)
    if features.numel() == 0:
        return torch.empty(0, len(method.setup.class_names))
    return _kept_logits(method, features, device, backbone).cpu()


def prepared_logits(method, features: torch.Tensor, device) -> torch.Tensor:
    """Logits [N, C] (float32, on `device`) of a prepared method for image features [N, D], in chunks.

    The one place inference computes logits (training's evaluation and `vip predict`), under the
    device's autocast, so a run's metrics, its calibration and its predictions agree to the digit.
    """
    from vipcli.methods.backbone_guard import state_if_watched

    return _kept_logits(method, features, device, state_if_watched(method))


def _kept_logits(method, features: torch.Tensor, device, backbone) -> torch.Tensor:
    """`prepared_logits`, refusing a forward that changed the backbone from `backbone` (its state before; None for a
    method vip does not watch)."""
    from vipcli.methods.backbone_guard import check_kept

    with autocast(device):
        logits = torch.cat([_logits(method, chunk.to(device)).float() for chunk in features.split(4096)])  # [N, C]
    check_kept(method, "forward", backbone)
    return logits


def _logits(method, features: torch.Tensor) -> torch.Tensor:
    """`method(features)`, its shape checked against the contract ([B, C]; nothing read back), and the
    features left as they were (forward must not change them in place)."""
    from vipcli.methods.contract import check_features_unchanged, check_logits, tensor_version

    before = tensor_version(features)
    logits = method(features)  # [B, C]
    check_features_unchanged(method, features, before)
    check_logits(method, logits, len(features), features.device)
    return logits


def accuracy(method, data: FeatureSet, device) -> float:
    """Top-1 accuracy (0-1) of `method` on a split's center-view features."""
    if not len(data.y):
        return 0.0
    return float((predict_logits(method, data.x, device).argmax(dim=1) == data.y.cpu()).float().mean())


def random_view_batches(train: FeatureSet, batch_size: int, generator):
    """One epoch of (features [B, D], labels [B]), each image in a random cached augmented view.

    The draws come from the CPU `generator`, all at the start of the epoch (the same numbers, in
    the same order, as drawing batch by batch), and go to `train`'s device in one transfer; the
    batches are then cut where the features live, so a step on a GPU reads nothing from the host.
    """
    order = torch.randperm(len(train.y), generator=generator)  # [N]
    chunks = order.split(batch_size)
    views = [torch.randint(train.views.shape[1], (len(idx),), generator=generator) for idx in chunks]
    if not chunks:
        return
    device = train.views.device
    order, view = order.to(device), torch.cat(views).to(device)  # [N], [N]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]  # [B]
        yield train.views[idx, view[start:start + batch_size]], train.y[idx]


def mean_loss(losses: list[torch.Tensor]) -> float:
    """The mean of an epoch's step losses (0-d tensors, detached), read from the device once."""
    return torch.stack(losses).cpu().double().mean().item() if losses else 0.0  # float64 on the CPU (MPS has none)


class _BestEpoch:
    """A fit's history and its best validation epoch so far, with the trainable state of that epoch."""

    def __init__(self, method):
        self.method = method
        self.epoch, self.accuracy, self.history, self.steps = -1, -1.0, [], 0
        self.state = trainable_state(method)

    def record(self, epoch: int, lr: float, loss: float, val_accuracy: float) -> None:
        """Add an epoch (accuracy 0-1) to the history; keep the method's state if it is the best yet."""
        self.history.append({"epoch": epoch, "lr": lr, "loss": loss, "val_accuracy": round(100 * val_accuracy, 2)})
        if val_accuracy > self.accuracy:
            self.epoch, self.accuracy = epoch, val_accuracy
            self.state = trainable_state(self.method)

    def finish(self) -> dict:
        """Load the best epoch's state into the method (in eval mode) and return what `fit_sgd` returns."""
        self.method.load_state_dict(self.state, strict=False)
        self.method.train(False)
        return {"best_epoch": self.epoch, "best_val_accuracy": round(100 * self.accuracy, 2),
                "history": self.history, "steps": self.steps}


def trainable_state(method) -> dict[str, torch.Tensor]:
    """A copy of every trainable parameter (for keeping the best epoch)."""
    return {name: p.detach().clone() for name, p in method.named_parameters() if p.requires_grad}


def no_training(method, data) -> dict:
    """The fit result of a method that learns nothing: its validation accuracy."""
    device = method.setup.device
    return {"best_epoch": None, "best_val_accuracy": round(100 * accuracy(method, data.val, device), 2), "history": []}


def training_loss(method, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The method's own `training_loss` if it has one, else cross-entropy on its logits."""
    own = getattr(method, "training_loss", None)
    if own is not None:
        return own(features, labels)
    return F.cross_entropy(_logits(method, features).float(), labels)


def fit_sgd(method, data, context) -> dict:
    """SGD (momentum 0.9, weight decay 5e-4) with the run's schedule; keep the best validation epoch.

    Args:
        method: a Method whose trainable parameters are fitted.
        data: PreparedData (train.views [N, V, D] and val.x [M, D]).
        context: FitContext (schedule, seed, progress, reference: None to train from cached views,
            else a callable(epoch, train) yielding freshly encoded batches, the authors' way).
    Returns:
        {"best_epoch", "best_val_accuracy", "history": [{epoch, lr, loss, val_accuracy}], "steps": optimizer steps}
    """
    from vipcli.methods.contract import method_fault

    device, schedule, reference = method.setup.device, context.schedule, context.reference
    if not type(method).uses_schedule:  # vip would tell the user --epochs/--lr go unused, then train with them
        raise method_fault(method.id, "uses_schedule", "fit trains with fit_sgd, which follows the run's schedule "
                           "(--schedule, --epochs, --batch-size, --lr), but the class says uses_schedule = False",
                           "set uses_schedule = True on the class")
    parameters = [p for p in method.parameters() if p.requires_grad]
    if not parameters:
        raise method_fault(method.id, "fit", "fit_sgd found no trainable parameter in the method",
                           "create what it learns in __init__ as nn.Parameter or nn.Module attributes, "
                           "not as plain tensors")
    optimizer = torch.optim.SGD(parameters, lr=schedule.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(context.seed)
    best = _BestEpoch(method)
    train, val = (None, None) if reference else (data.train.to(device), data.val.to(device))  # moved once
    with console.task(context.progress, "training prompts", schedule.epochs) as advance:
        for epoch in range(schedule.epochs):
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr_at(epoch)
            batches = reference(epoch, True) if reference else random_view_batches(train, schedule.batch_size,
                                                                                    generator)
            loss, steps = sgd_epoch(method, optimizer, batches, device, check=epoch == 0)
            check_epoch_loss(method, loss, epoch, schedule.epochs)  # the epoch's mean is read anyway
            best.steps += steps
            val_accuracy = _reference_accuracy(method, reference, epoch, device) if reference else accuracy(
                method, val, device)
            best.record(epoch, schedule.lr_at(epoch), loss, val_accuracy)
            advance()
    return best.finish()


class _Run:
    """One run's own state inside `fit_sgd_many`: parameters, batch generator, best epoch, history."""

    def __init__(self, method, data, context):
        self.method, self.schedule = method, context.schedule
        self.parameters = [p for p in method.parameters() if p.requires_grad]
        self.group: dict = {}  # its parameter group of the shared optimizer (own lr, momentum buffers)
        self.generator = torch.Generator().manual_seed(context.seed)
        self.best = _BestEpoch(method)
        self.batches: list = []
        device = method.setup.device
        self.train, self.val = data.train.to(device), data.val.to(device)  # moved once for the whole fit
        self.losses: list[torch.Tensor] = []  # this epoch's step losses (0-d, detached)


def fit_sgd_many(methods: list, datas: list, contexts: list, progress=None, batchable: bool | None = None
                 ) -> list[dict]:
    """Fit several runs of one prompt method together, each exactly as `fit_sgd` would alone.

    The runs (e.g. the seeds and shot counts of one method in a benchmark) share the backbone
    and prompts; each has its own context, merge prompt, optimizer, schedule, batch generator,
    best-epoch selection and history. Per step, the text tower runs once over the stacked
    prompts of every run still training (S x P prompts) instead of once per run; a run whose
    epoch has fewer steps, or that has fewer epochs, simply drops out of the stack. Results
    match separate `fit_sgd` runs up to float rounding of the larger batched products.

    Args:
        methods: PromptMethods for which `vipcli.methods.prompting.fits_together` holds.
        datas: per run, its PreparedData (train.views [N, V, D], val.x [M, D]).
        contexts: per run, its FitContext (cached features only: `reference` must be None).
        progress: an optional rich Progress.
        batchable: the method class's `fits_in_batches()` answer where the caller asked it already (a sweep
            groups its rows by it); None asks it here.
    Returns:
        Per run, what `fit_sgd` returns.
    """
    if not methods:
        return []
    if not fits_together(methods, batchable) or any(c.reference is not None for c in contexts):
        raise ValueError("fit_sgd_many needs runs of one batchable prompt method on cached features")
    device = methods[0].setup.device
    runs = [_Run(m, d, c) for m, d, c in zip(methods, datas, contexts)]
    # one SGD over every run's parameters, a parameter group per run: SGD is per parameter, so this is
    # each run's own optimizer; a run that sits out a step has no gradient and is left untouched
    optimizer = torch.optim.SGD([{"params": run.parameters, "lr": run.schedule.lr} for run in runs],
                                momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    for run, group in zip(runs, optimizer.param_groups):
        run.group = group

    epochs = max(run.schedule.epochs for run in runs)
    label = f"training prompts ({len(runs)} runs batched)"
    with console.task(progress, label, epochs) as advance:
        for epoch in range(epochs):
            active = [run for run in runs if epoch < run.schedule.epochs]
            for run in active:
                run.group["lr"] = run.schedule.lr_at(epoch)
                run.batches = list(random_view_batches(run.train, run.schedule.batch_size, run.generator))
                run.losses = []
                run.method.train()
            for step in range(max(len(run.batches) for run in active)):
                _sgd_step_many([run for run in active if step < len(run.batches)], step, optimizer, device)
            _validate_many(active, epoch, device)
            advance()
    return [run.best.finish() for run in runs]


def _sgd_step_many(stepping: list, step: int, optimizer, device) -> None:
    """One SGD step of every run in `stepping`, with one batched text forward and backward."""
    with autocast(device):
        prompt_features = encode_stacked_prompts([run.method for run in stepping])  # S x [P, D]
        losses = [run.method.batched_loss(run.batches[step][0].to(device), run.batches[step][1].to(device), features)
                  for run, features in zip(stepping, prompt_features)]
    optimizer.zero_grad(set_to_none=True)
    torch.stack([loss.float() for loss in losses]).sum().backward()  # runs share no parameter: own gradients
    optimizer.step()  # runs not in `stepping` have no gradient: skipped
    for run, loss in zip(stepping, losses):
        run.losses.append(loss.detach())  # no device sync per step
        run.best.steps += 1


@torch.no_grad()
def _validate_many(active: list, epoch: int, device) -> None:
    """Validation accuracy of every active run (prompts encoded together), its history and best epoch."""
    for run in active:
        run.method.eval()
    for run, features in zip(active, encode_stacked_prompts([run.method for run in active])):
        run.method.prepare(features)
        val = run.val
        if len(val.y):
            logits = prepared_logits(run.method, val.x, device)  # [M, C]
            val_accuracy = float((logits.argmax(dim=1) == val.y).float().mean())  # on the device, one read
        else:
            val_accuracy = 0.0
        loss = mean_loss(run.losses)
        check_epoch_loss(run.method, loss, epoch, run.schedule.epochs)
        run.best.record(epoch, run.schedule.lr_at(epoch), loss, val_accuracy)


def sgd_epoch(method, optimizer, batches, device, check: bool = False) -> tuple[float, int]:
    """One pass of `optimizer` over (features, labels) batches; returns (the mean loss, steps taken).

    With `check` (a fit's first epoch), the first step checks the loss against the method contract,
    and a trainable parameter that no step of the epoch gave a gradient is one clear error (a
    parameter used for some batches only, such as one per class, needs only one of them).
    """
    from vipcli.methods.contract import check_gradients

    method.train()
    seen: set[str] | None = set() if check else None
    losses = [sgd_step(method, optimizer, features, labels, device, check=check and step == 0, seen=seen)
              for step, (features, labels) in enumerate(batches)]
    if seen is not None and losses:
        check_gradients(method, seen)
    return mean_loss(losses), len(losses)


def sgd_step(method, optimizer, features: torch.Tensor, labels: torch.Tensor, device,
             check: bool = False, seen: set | None = None) -> torch.Tensor:
    """One optimizer step on a batch (features [B, D], labels [B]); returns the loss, 0-d and detached.

    Nothing is read back from the device: the loss stays a tensor until the epoch's mean. With
    `check` (a fit's first step), a loss that is not a 0-d tensor depending on the method's
    parameters is one clear error; `seen` collects the names of the parameters that got a gradient
    (flags only: still nothing is read back).
    """
    from vipcli.methods.contract import check_loss

    with autocast(device):
        loss = training_loss(method, features.to(device), labels.to(device))
    if check:
        check_loss(method, loss)
    optimizer.zero_grad(set_to_none=True)
    loss.float().backward()
    if seen is not None:
        seen.update(name for name, p in method.named_parameters() if p.grad is not None)
    optimizer.step()
    return loss.detach()


def check_epoch_loss(method, loss: float, epoch: int, epochs: int) -> None:
    """Stop a fit at the first epoch whose mean loss (already on the host) is NaN or infinite."""
    if math.isfinite(loss):
        return
    from vipcli.methods.contract import loss_member, method_fault

    if type(method).__module__.startswith("vipcli."):  # vip's own methods: the schedule diverged
        raise VipError(f"training diverged: the training loss is {loss} at epoch {epoch + 1} of {epochs}; "
                       "training stopped there", "lower the learning rate (--lr, or the method's -o lr=...)")

    member = loss_member(method)
    source = "training_loss" if member == "training_loss" else "the cross-entropy of forward's logits"
    raise method_fault(method.id, member, f"the training loss ({source}) is {loss} at epoch {epoch + 1} of "
                                          f"{epochs}; training stopped there",
                       "look for log(0), a division by zero or an overflow in forward/training_loss "
                       "(compute the loss in float32, e.g. F.cross_entropy(logits.float(), labels)), "
                       "or lower --lr")


@torch.no_grad()
def _reference_accuracy(method, reference, epoch, device) -> float:
    method.eval()
    method.prepare()
    correct = total = 0
    for features, labels in reference(epoch, False):
        correct += int((prepared_logits(method, features, device).argmax(1).cpu() == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def evaluate(method, data: FeatureSet, num_classes: int, device, class_names: list[str] | None = None) -> dict:
    """Metrics of `method` on one split's features (NaN or infinite logits are the method's fault, named); with
    `class_names`, also each class's AUROC against guessing (`vs_chance`, as metrics.json's test block keeps it)."""
    logits = predict_logits(method, data.x, device)  # [N, C] on the CPU
    if not bool(torch.isfinite(logits).all()):
        from vipcli.methods.contract import non_finite_logits_fault

        raise non_finite_logits_fault(method)
    metrics = metrics_of(logits, data.y, num_classes)
    if class_names is not None:
        from vipcli.chance import vs_chance

        metrics["vs_chance"] = vs_chance(data.y.numpy(), logits.softmax(dim=-1).numpy(), class_names)
    return metrics


def metrics_of(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Metrics (vipcli.metrics.compute_metrics) of logits [N, C] against labels [N]."""
    return compute_metrics(labels.numpy(), logits.softmax(dim=-1).numpy(), num_classes)
