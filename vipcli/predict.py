"""`vip predict` as a library: a trained run + image files -> classes, probabilities, symptoms."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

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
    prediction_set: list[str] | None = None  # (#11) classes within the conformal threshold, with --coverage


@dataclass
class Predictor:
    """A loaded run, ready to classify images; class embeddings are computed once."""

    run_dir: Path
    metadata: dict
    backbone: object
    classifier: torch.nn.Module
    class_names: list[str]
    class_embeddings: torch.Tensor | None  # [C, D] for prompt methods, None for the linear probe
    prompt_features: torch.Tensor | None  # [P, D] text features of every prompt
    weights: torch.Tensor | None  # [C, K] merge weights (uniform when averaged)
    failures: dict[str, str] = field(default_factory=dict)
    calibration: object | None = None  # (#11) vipcli.trust.RunCalibration; None for runs of an earlier vip


def _expected_tensors(classifier) -> dict[str, tuple]:
    return {name: tuple(p.shape) for name, p in classifier.named_parameters()}


def load_predictor(run_dir: str | Path, device="cpu", backbone_id: str | None = None) -> Predictor:
    """Rebuild the backbone and classifier a run was trained with.

    Args:
        run_dir: a run directory written by `vip train`.
        device: torch.device for inference.
        backbone_id: if given, must match the run's backbone (a clear error names both).
    """
    from vipcli.checkpoint import read_checkpoint
    from vipcli.methods import build_classifier, get_method
    from vipcli.registry import load_backbone
    from vipcli.trust import read_calibration

    tensors, meta = read_checkpoint(run_dir)
    if backbone_id and backbone_id != meta.get("backbone"):
        raise UsageError(f"{run_dir} was trained with backbone '{meta.get('backbone')}', not '{backbone_id}'",
                         f"drop --backbone or pass --backbone {meta.get('backbone')}")
    spec = get_method(meta["method"])
    backbone = load_backbone(meta["backbone"], meta.get("arch_option") or None, meta.get("pretrained_option") or None,
                             device)
    if backbone.fingerprint() != meta.get("backbone_fingerprint"):
        console.warn(f"the weights of backbone '{meta['backbone']}' differ from those {run_dir} was trained with "
                     f"({backbone.describe().get('weights')} vs {meta['backbone_describe'].get('weights')})")
    classifier = build_classifier(spec, backbone, meta["class_names"], meta.get("symptoms") or {},
                                  int(meta.get("n_ctx", "4")), meta.get("class_specific_context") == "True")
    _load_tensors(classifier, tensors, run_dir, meta)
    classifier.eval()
    embeddings = features = weights = None
    if hasattr(classifier, "class_embeddings"):
        with torch.no_grad():
            embeddings, features, weights, _ = classifier.class_embeddings()
    return Predictor(Path(run_dir), meta, backbone, classifier, meta["class_names"], embeddings, features, weights,
                     calibration=read_calibration(meta))  # (#11) hook 4: the stored temperature and scores


def _load_tensors(classifier, tensors: dict, run_dir, meta) -> None:
    expected = _expected_tensors(classifier)
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if expected != found:
        raise VipError(
            f"{run_dir}: checkpoint tensors {found} do not fit backbone '{meta['backbone']}' "
            f"({meta.get('arch')}), which needs {expected}",
            "predict with the backbone and arch the run was trained with",
        )
    classifier.load_state_dict(tensors, strict=False)


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


def _explain(predictor: Predictor, feature: torch.Tensor) -> list[dict]:
    """Per class: each prompt's cosine similarity to the image and its merge weight."""
    bank = predictor.classifier.bank
    similarities = F.normalize(predictor.prompt_features, dim=-1) @ F.normalize(feature, dim=-1)  # [P]
    symptoms = predictor.metadata.get("symptoms") or {}
    result = []
    for c, name in enumerate(predictor.class_names):
        rows = (bank.class_index == c).nonzero().flatten().tolist()
        phrases = symptoms.get(name) if predictor.metadata["method"] in ("vip", "vip-cop-only", "vip-mep-only",
                                                                         "symptom-zeroshot") else None
        phrases = phrases or [bank.texts[r] for r in rows]
        entries = [{"symptom": phrases[k], "similarity": round(float(similarities[r]), 4),
                    "weight": round(float(predictor.weights[c, k]), 4)} for k, r in enumerate(rows)]
        result.append({"class": name, "symptoms": entries})
    return result


def predict(predictor: Predictor, paths: list[Path], explain: bool = False, cache=None, workers: int = 2,
            batch_size: int = 64, progress=None, coverage: float | None = None) -> tuple[list[Prediction], dict[str, str]]:
    """Classify image files.

    Args:
        coverage: if given, each prediction gets the conformal set of classes that holds the true
            class with at least this probability (needs a run that stored its calibration).
    Returns:
        (predictions for readable files, {unreadable file: reason})
    """
    from vipcli.features import encode_images
    from vipcli.trust import calibrated_softmax, prediction_set, set_threshold

    cutoff = set_threshold(predictor.calibration, coverage, predictor.run_dir)  # (#11) hook 5: before any work

    with console.task(progress, "predicting", len(paths)) as advance:
        encoded = encode_images(predictor.backbone, paths, 0, cache, batch_size, workers, advance=advance)
    predictions = []
    for i, path in enumerate(paths):
        if i not in encoded.eval:
            continue
        feature = encoded.eval[i].to(predictor.backbone.device)  # [D]
        with torch.no_grad():
            if predictor.class_embeddings is not None:
                logits = predictor.classifier.logits_from(feature[None], predictor.class_embeddings)[0]  # [C]
            else:
                logits = predictor.classifier(feature[None])[0]
        probabilities = calibrated_softmax(logits, predictor.calibration).cpu()  # (#11) hook 6: [C], T applied
        best = int(probabilities.argmax())
        predictions.append(Prediction(
            str(path), predictor.class_names[best], round(float(probabilities[best]), 4),
            {n: round(float(p), 4) for n, p in zip(predictor.class_names, probabilities)},
            _explain(predictor, feature) if explain and predictor.prompt_features is not None else None,
            prediction_set(probabilities, predictor.class_names, cutoff),  # (#11) hook 7
        ))
    return predictions, {str(p): r for p, r in encoded.failures.items()}
