"""Fitting the learnable parts on frozen features: SGD over prompts, logistic regression, evaluation."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from vipcli import console
from vipcli.featuresets import FeatureSet, PreparedData
from vipcli.methods import MethodSpec
from vipcli.metrics import compute_metrics
from vipcli.schedule import Schedule

MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
LINEAR_PROBE_C = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # inverse regularisation strengths tried on val


@torch.no_grad()
def predict_probabilities(classifier, features: torch.Tensor, device) -> torch.Tensor:
    """Class probabilities [N, C] for image features [N, D] (class embeddings computed once)."""
    from vipcli.devices import autocast
    from vipcli.heads import PromptClassifier

    classifier.eval()
    if features.numel() == 0:
        return torch.empty(0, 0)
    with autocast(device):
        if isinstance(classifier, PromptClassifier):
            embeddings = classifier.class_embeddings()[0]  # [C, D]
            logits = torch.cat([classifier.logits_from(chunk.to(device), embeddings) for chunk in features.split(4096)])
        else:
            logits = classifier(features.to(device))
    return logits.float().softmax(dim=-1).cpu()  # [N, C]


def _accuracy(classifier, data: FeatureSet, device) -> float:
    probabilities = predict_probabilities(classifier, data.x, device)
    return float((probabilities.argmax(dim=1) == data.y).float().mean()) if len(data.y) else 0.0


def _cached_batches(train: FeatureSet, batch_size: int, generator):
    """One epoch of (features [B, D], labels [B]), each image in a random cached view."""
    order = torch.randperm(len(train.y), generator=generator)
    for idx in order.split(batch_size):
        view = torch.randint(train.views.shape[1], (len(idx),), generator=generator)
        yield train.views[idx, view], train.y[idx]


def _trainable_state(classifier) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in classifier.named_parameters() if p.requires_grad}


def fit_prompt_classifier(classifier, train: FeatureSet, val: FeatureSet, schedule: Schedule, seed: int, device,
                          reference=None, progress=None) -> dict:
    """SGD over the learnable prompts; keep the state with the best validation accuracy.

    Args:
        reference: None to train from cached views; else a callable(epoch, train: bool) yielding
            freshly encoded (features, labels) batches (the authors' way, for timing comparisons).
    Returns:
        {"best_epoch", "best_val_accuracy", "history": [{epoch, lr, loss, val_accuracy}]}
    """
    from vipcli.devices import fastest_cpu_threads

    parameters = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=schedule.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(seed)
    best = {"best_epoch": -1, "best_val_accuracy": -1.0, "history": []}
    best_state = _trainable_state(classifier)
    threads = contextlib.nullcontext() if reference else fastest_cpu_threads(lambda: _text_step(classifier), device)
    with threads, console.task(progress, "training prompts", schedule.epochs) as advance:
        for epoch in range(schedule.epochs):
            loss = _train_epoch(classifier, optimizer, schedule, epoch, train, generator, device, reference)
            val_accuracy = _reference_accuracy(classifier, reference, epoch, device) if reference else _accuracy(
                classifier, val, device)
            best["history"].append({"epoch": epoch, "lr": schedule.lr_at(epoch), "loss": loss,
                                    "val_accuracy": round(100 * val_accuracy, 2)})
            if val_accuracy > best["best_val_accuracy"]:
                best.update(best_epoch=epoch, best_val_accuracy=val_accuracy)
                best_state = _trainable_state(classifier)
            advance()
    classifier.load_state_dict(best_state, strict=False)
    best["best_val_accuracy"] = round(100 * best["best_val_accuracy"], 2)
    return best


def _train_epoch(classifier, optimizer, schedule, epoch, train, generator, device, reference) -> float:
    """One epoch of SGD; returns the mean loss."""
    from vipcli.devices import autocast

    for group in optimizer.param_groups:
        group["lr"] = schedule.lr_at(epoch)
    classifier.train()
    batches = reference(epoch, True) if reference else _cached_batches(train, schedule.batch_size, generator)
    losses = []
    for features, labels in batches:
        with autocast(device):
            logits = classifier(features.to(device))  # [B, C]
        loss = F.cross_entropy(logits.float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / max(len(losses), 1)


def _text_step(classifier) -> None:
    """A forward and backward pass of the text side that leaves no trace (for timing)."""
    classifier.class_embeddings()[0].sum().backward()
    classifier.zero_grad(set_to_none=True)


@torch.no_grad()
def _reference_accuracy(classifier, reference, epoch, device) -> float:
    classifier.eval()
    embeddings = classifier.class_embeddings()[0]
    correct = total = 0
    for features, labels in reference(epoch, False):
        correct += int((classifier.logits_from(features.to(device), embeddings).argmax(1).cpu() == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def fit_linear_probe(probe, train: FeatureSet, val: FeatureSet, seed: int) -> dict:
    """Logistic regression (L-BFGS) on normalised features; C chosen on validation accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = F.normalize(train.x, dim=-1).numpy()
    xv = F.normalize(val.x, dim=-1).numpy()
    best = None
    for c in LINEAR_PROBE_C:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, train.y.numpy())
        score = float((model.predict(xv) == val.y.numpy()).mean()) if len(xv) else 0.0
        if best is None or score > best[0]:
            best = (score, c, model)
    score, c, model = best
    weight, bias = np.asarray(model.coef_), np.asarray(model.intercept_)
    if weight.shape[0] == 1:  # binary: two logits whose softmax equals sklearn's sigmoid
        weight, bias = np.concatenate([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
    with torch.no_grad():
        probe.linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        probe.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return {"best_epoch": None, "best_val_accuracy": round(100 * score, 2), "C": c, "history": []}


def fit(spec: MethodSpec, classifier, data: PreparedData, schedule: Schedule, seed: int, device,
        reference=None, progress=None) -> dict:
    """Train `classifier` as `spec` says (nothing to train for the zero-shot baselines)."""
    if spec.linear:
        return fit_linear_probe(classifier, data.train, data.val, seed)
    if not spec.trainable:
        return {"best_epoch": None, "best_val_accuracy": round(100 * _accuracy(classifier, data.val, device), 2),
                "history": []}
    return fit_prompt_classifier(classifier, data.train, data.val, schedule, seed, device, reference, progress)


def evaluate(classifier, data: FeatureSet, num_classes: int, device) -> dict:
    """Metrics of `classifier` on one split's features."""
    probabilities = predict_probabilities(classifier, data.x, device)
    return compute_metrics(data.y.numpy(), probabilities.numpy(), num_classes)
