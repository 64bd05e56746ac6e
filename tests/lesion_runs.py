"""Small lesion-world data sets and runs on the shipped toy backbone, for the calibration and report tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

COUNTS = {"train": 16, "val": 12, "test": 15}  # per class: 24 validation images in all


def make_lesions(folder: Path, counts: dict = COUNTS, seed: int = 0) -> Path:
    """Write a lesion world (melanoma/nevus) under `folder`."""
    from vipcli.lesion_world import write_dataset

    write_dataset(folder, counts, seed=seed)
    return folder


def trained_world(tmp_path_factory, counts: dict) -> tuple[Path, Path]:
    """A lesion world of `counts` images per class and split, and a toy-backbone run trained on it (with a feature
    cache of its own): (data folder, run folder)."""
    root = tmp_path_factory.mktemp("lesions")
    data = make_lesions(root / "data", counts)
    return data, train_toy(data, root / "run", root / "train-cache")


def train_toy(data: Path, out: Path, cache: Path, method: str = "vip") -> Path:
    """`vip train --backbone toy` for a few epochs, with its own feature cache."""
    from vipcli.train import TrainConfig, train

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(cache))
        from vipcli.settings import BackboneSettings, EncodingSettings, ScheduleSettings

        train(TrainConfig(data=data, shots=8, method=method, backbone=BackboneSettings("toy", device="cpu"),
                          schedule=ScheduleSettings(epochs=4), encoding=EncodingSettings(views=2, workers=0),
                          out=out, seed=1))
    return out


def strip_calibration(run: Path) -> Path:
    """Make `run` look like one written before vip stored calibration (header, run.yaml, metrics.json)."""
    import yaml
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = run / "model.safetensors"
    with safe_open(str(model), "pt") as handle:
        metadata = {k: v for k, v in (handle.metadata() or {}).items() if k not in ("calibration", "content_sha256")}
        if "metadata" in metadata:  # format 2: the whole document as JSON
            document = json.loads(metadata["metadata"])
            document.pop("calibration", None)
            metadata["metadata"] = json.dumps(document)
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    save_file(tensors, str(model), metadata=metadata)
    readable = yaml.safe_load((run / "run.yaml").read_text())
    readable.pop("calibration")
    (run / "run.yaml").write_text(yaml.safe_dump(readable, sort_keys=False))
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("calibration", "conformal"):
        metrics.pop(key)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run
