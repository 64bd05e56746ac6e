"""What vip's Python interface returns: `Prediction` (one image's result), `Predictions` (many, with the files left
out), `TrainResult` (a finished run),
`BenchmarkResult` (a finished sweep).

Kept apart from the modules that make them (`predict`, `train`, `benchmark` import torch or rich) so that
`vipcli.api` can import them, and tools that read its annotations (`typing.get_type_hints`) find them, without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vipcli.shares import rounded_share


DECIMALS = 4  # probabilities and explanation figures in JSON, JSONL and CSV


@dataclass
class Prediction:
    """One image's result, at full precision (`record` rounds it for files and JSON).

    Attributes:
        path: the image file ("" for an image given in memory).
        label: the predicted class.
        probability: the predicted class's probability (temperature-scaled on a calibrated run).
        probabilities: {class: probability} for every class, in the run's class order.
        explanation: with explain, per class {"class", "symptoms": [{"symptom", "similarity", "weight",
            "contribution"}]}; None otherwise, and for a method that gives no explanation.
        prediction_set: with coverage, the classes of the conformal prediction set; None otherwise.
    """

    path: str  # the image file
    label: str  # predicted class
    probability: float  # probability of the predicted class
    probabilities: dict[str, float]  # class -> probability, in logit order
    explanation: list[dict] | None = None  # per class: prompts with similarity, merge weight, contribution
    prediction_set: list[str] | None = None  # classes within the conformal threshold, with --coverage

    def record(self, explain: bool = True) -> dict:
        """This prediction as JSON, every figure rounded once from full precision to DECIMALS places.

        Rounding once (never a rounded value again) keeps two classes' probabilities summing to
        exactly 1 as printed; a probability under 1 never reads 1.0, nor one over 0 reads 0.0
        (`vipcli.shares`); the explanation is None unless `explain`.
        """
        return {"path": self.path, "label": self.label, "probability": rounded_share(self.probability, DECIMALS),
                "probabilities": {name: rounded_share(p, DECIMALS) for name, p in self.probabilities.items()},
                "explanation": rounded_explanation(self.explanation) if explain else None,
                "prediction_set": self.prediction_set}


class Predictions(list):
    """What `Model.predict_many` returns: a list of Prediction, in input order, that also names the files left out.

    It is a plain list in every other way (indexing, `len`, comparison with a list, pickling); a slice of it is a
    plain list.

    Attributes:
        failures: {unreadable image file: reason}, the files `skip_unreadable=True` left out (each also warned of
            on stderr), in the order they were met; empty when every file was read.
    """

    def __init__(self, predictions=(), failures: dict[str, str] | None = None):
        super().__init__(predictions)
        self.failures: dict[str, str] = dict(failures or {})

    def __repr__(self) -> str:
        listed = super().__repr__()
        return f"Predictions({listed}, failures={self.failures!r})" if self.failures else f"Predictions({listed})"


def rounded_explanation(explanation: list[dict] | None) -> list[dict] | None:
    """An explanation with its similarities, weights and contributions rounded to DECIMALS places."""
    if explanation is None:
        return None
    return [{**group, "symptoms": [{key: round(value, DECIMALS) if isinstance(value, float) else value
                                    for key, value in entry.items()} for entry in group["symptoms"]]}
            for group in explanation]


@dataclass
class TrainResult:
    """What a finished `train` returns.

    Attributes:
        run_dir: the run folder written (for `vip predict --model` and `vipcli.api.load`).
        metrics: what the run's metrics.json holds ("val", "test": {"n", "accuracy", "balanced_accuracy",
            "macro_f1", "auroc", "confusion_matrix"}, "calibration", "conformal", ...).
        failures: {unreadable image file: reason}, files left out of training and evaluation.
        class_names: the classes, in the order of predictions' probabilities.
        schedule: the training schedule used (None for a method that fits itself).
        warnings: every warning the run printed on stderr (short classes, calibration, ...), as plain text,
            in order, ending with a `skipped FILE: reason` line per file of `failures`.
        unopened: training images vip never read, as --shots took enough readable ones before them (unreadable
            files among them are not in `failures`).
    """

    run_dir: Path
    metrics: dict  # "val", "test", "best_epoch", "history", "timings"
    failures: dict[str, str]  # unreadable file -> reason
    class_names: list[str]
    schedule: object | None  # the Schedule used by the shared SGD loop (None if the method has its own)
    warnings: list[str] = field(default_factory=list)  # what the run warned on stderr, in order
    unopened: int = 0  # training images never read, as --shots took enough readable ones before them

    def to_dict(self) -> dict:
        """This result as plain JSON-ready values, the document `vip train --json` prints: run_dir (as text),
        class_names, unreadable ({file: reason}; also under its older name, skipped), warnings, and what
        metrics.json holds. `json.dumps(result.to_dict())` writes it."""
        return {"run_dir": str(self.run_dir), "class_names": list(self.class_names),
                "unreadable": dict(self.failures), "skipped": dict(self.failures),  # skipped: the older name
                "warnings": list(self.warnings), **self.metrics}

    def __repr__(self) -> str:
        """A line, not metrics.json: the run folder, the classes, the accuracy per split, and how many warnings
        and unreadable files there are (the attributes hold them all)."""
        from vipcli.console import counted  # rich: loaded when a result is shown, not when this module is

        scores = [f"{split} accuracy {self.metrics[split]['accuracy']}%" for split in ("val", "test")
                  if isinstance(self.metrics.get(split), dict) and "accuracy" in self.metrics[split]]
        return (f"<TrainResult {str(self.run_dir)!r}: {', '.join(self.class_names)}; "
                f"{', '.join(scores) or 'no scores'}; {counted(len(self.warnings), 'warning')}, "
                f"{counted(len(self.failures), 'unreadable file')}>")


@dataclass
class BenchmarkResult:
    """What a finished `run_benchmark` (and `vipcli.api.benchmark`) returns.

    Attributes:
        out: the results folder (results.json, results.csv, summary.csv, shots.png, split.json).
        class_names: the classes, in logit order.
        rows: one dict per (method, shots, seed) of the requested grid, stored ones included, in sweep
            order, as results.json holds them (test_accuracy, test_balanced_accuracy, test_macro_f1, ...; a
            row kept from a sweep of an earlier vip lacks val_balanced_accuracy and test_balanced_accuracy).
        summary: per method and shots, one dict: method, shots, seeds, and the mean and sample std over
            the seeds of test accuracy, macro-F1 and balanced accuracy (accuracy_mean, accuracy_std,
            macro_f1_mean, macro_f1_std, balanced_accuracy_mean, balanced_accuracy_std; each std None with one
            seed), from each row's confusion matrix.
        config: the sweep's stored configuration, matched on resume.
        skipped: rows found finished in `out` and not run again.
        trained: rows run now.
        encoded_views: views that went through the image encoder now (0 on a warm cache).
        failures: {unreadable image file: reason}.
        warnings: every warning the sweep printed on stderr (shot caps, skipped images, ...), as plain text.
        failed_rows: with keep_going (`--keep-going`), the rows that failed now, each {method, shots, seed, error}
            (the error in one line), as results.json's `last_sweep.failed_rows` holds them; not in `rows`, and run
            again by the next sweep of the same grid.
    """

    out: Path  # the results folder
    class_names: list[str]  # logit order
    rows: list[dict]  # the requested grid's rows (stored ones included), in sweep order
    summary: list[dict]  # summarize(rows)
    config: dict  # the stored, matched configuration
    skipped: int = 0  # rows found finished in --out and not run again
    trained: int = 0  # rows run now
    encoded_views: int = 0  # views that went through the image encoder now (0 on a warm cache)
    failures: dict[str, str] = field(default_factory=dict)  # unreadable file -> reason
    warnings: list[str] = field(default_factory=list)  # what the sweep warned on stderr, in order
    failed_rows: list[dict] = field(default_factory=list)  # --keep-going: {method, shots, seed, error} of each

    def to_dict(self) -> dict:
        """This result as plain JSON-ready values, the document `vip benchmark --json` prints: out (as text),
        class_names, skipped, trained, failed_rows, encoded_views, warnings, unreadable ({file: reason}), config,
        summary and rows. `json.dumps(sweep.to_dict())` writes it."""
        return {"out": str(self.out), "class_names": list(self.class_names), "skipped": self.skipped,
                "trained": self.trained, "failed_rows": list(self.failed_rows), "encoded_views": self.encoded_views,
                "warnings": list(self.warnings), "unreadable": dict(self.failures), "config": self.config,
                "summary": self.summary, "rows": self.rows}

    def __repr__(self) -> str:
        """A line, not results.json: the results folder, the grid's methods, shots and seeds, how many rows ran
        now and were resumed, and how many warnings and unreadable files there are (the attributes hold them all)."""
        from vipcli.console import counted  # rich: loaded when a result is shown, not when this module is

        grid = "; ".join(f"{name} {', '.join(str(value) for value in dict.fromkeys(row[key] for row in self.rows))}"
                         for name, key in (("methods", "method"), ("shots", "shots"), ("seeds", "seed")))
        failed = f", {len(self.failed_rows)} failed" if self.failed_rows else ""
        return (f"<BenchmarkResult {str(self.out)!r}: {counted(len(self.rows), 'row')} "
                f"({self.trained} run now, {self.skipped} resumed{failed}); {grid}; "
                f"{counted(len(self.warnings), 'warning')}, "
                f"{counted(len(self.failures), 'unreadable file')}>")
