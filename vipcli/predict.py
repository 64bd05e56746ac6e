"""`vip predict` as a library: a trained run + image files -> classes, probabilities, symptoms."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from vipcli import console
from vipcli.errors import UsageError, VipError
from vipcli.images import is_image_file


@dataclass
class Prediction:
    """One image's result."""

    path: str  # the image file
    label: str  # predicted class
    probability: float  # probability of the predicted class
    probabilities: dict[str, float]  # class -> probability, in logit order
    explanation: list[dict] | None = None  # per class: prompts with similarity and merge weight
    prediction_set: list[str] | None = None  # classes within the conformal threshold, with --coverage


@dataclass
class Predictor:
    """A loaded run, ready to classify images; class-side work is done once."""

    run_dir: Path
    metadata: dict
    backbone: object
    method: torch.nn.Module  # a fitted vipcli.methods.Method
    class_names: list[str]
    failures: dict[str, str] = field(default_factory=dict)
    calibration: object | None = None  # vipcli.trust.RunCalibration; None for runs of an earlier vip


def load_predictor(run_dir: str | Path, device="cpu", backbone_id: str | None = None) -> Predictor:
    """Rebuild the backbone and the fitted method exactly as the run stored them.

    Args:
        run_dir: a run directory written by `vip train`.
        device: torch.device for inference.
        backbone_id: if given, must match the run's backbone (a clear error names both).
    """
    from vipcli.checkpoint import read_checkpoint
    from vipcli.methods import MethodSetup, restore_method
    from vipcli.registry import load_backbone, rebuild_backbone_options
    from vipcli.trust import read_calibration

    tensors, meta = read_checkpoint(run_dir)
    if backbone_id and backbone_id != meta.get("backbone"):
        raise UsageError(f"{run_dir} was trained with backbone '{meta.get('backbone')}', not '{backbone_id}'",
                         f"drop --backbone or pass --backbone {meta.get('backbone')}")
    arch, pretrained = rebuild_backbone_options(run_dir, meta.get("arch_option") or None,
                                                meta.get("pretrained_option") or None)
    backbone = load_backbone(meta["backbone"], arch, pretrained, device)
    if backbone.fingerprint() != meta.get("backbone_fingerprint"):
        console.warn(f"the weights of backbone '{meta['backbone']}' differ from those {run_dir} was trained with "
                     f"({backbone.describe().get('weights')} vs {(meta.get('backbone_describe') or {}).get('weights')})")
    setup = MethodSetup(backbone, list(meta["class_names"]), meta.get("symptoms") or {})
    method = restore_method(meta["method"], setup, meta.get("method_settings") or {}, meta.get("method_state") or {},
                            tensors, str(run_dir))
    method.prepare()
    return Predictor(Path(run_dir), meta, backbone, method, list(meta["class_names"]),
                     calibration=read_calibration(meta))


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Files as given plus the image files inside given folders (sorted); missing paths fail."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if is_image_file(p))
            if not found:
                raise VipError(f"folder {item} has no image files")
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise VipError(f"no such file or folder: {item}")
    return files


def predict(predictor: Predictor, paths: list[Path], explain: bool = False, cache=None, workers: int = 2,
            batch_size: int = 64, progress=None, coverage: float | None = None
            ) -> tuple[list[Prediction], dict[str, str]]:
    """Classify image files with the run's calibrated probabilities.

    Args:
        coverage: if given, each prediction gets the conformal set of classes that holds the true
            class with at least this probability (needs a run that stored its calibration).
    Returns:
        (predictions for readable files, {unreadable file: reason})
    """
    from vipcli.features import encode_images
    from vipcli.trust import calibrated_softmax, prediction_set, set_threshold

    cutoff = set_threshold(predictor.calibration, coverage, predictor.run_dir)  # refuses before any work

    with console.task(progress, "predicting", len(paths)) as advance:
        encoded = encode_images(predictor.backbone, paths, 0, cache, batch_size, workers, advance=advance)
    method, device = predictor.method, predictor.backbone.device
    readable = [i for i in range(len(paths)) if i in encoded.eval]
    predictions = []
    if readable:
        features = torch.stack([encoded.eval[i] for i in readable])  # [N, D]
        with torch.no_grad():
            logits = torch.cat([method(chunk.to(device)).float().cpu() for chunk in features.split(4096)])  # [N, C]
        probabilities = calibrated_softmax(logits, predictor.calibration)  # [N, C], temperature applied
        for row, i in enumerate(readable):
            best = int(probabilities[row].argmax())
            explanation = method.explain(features[row].to(device)) if explain else None
            predictions.append(Prediction(
                str(paths[i]), predictor.class_names[best], round(float(probabilities[row, best]), 4),
                {n: round(float(p), 4) for n, p in zip(predictor.class_names, probabilities[row])}, explanation,
                prediction_set(probabilities[row], predictor.class_names, cutoff),
            ))
    return predictions, {str(p): r for p, r in encoded.failures.items()}
