"""The documented contract of what vip writes, field by field: a run directory (docs/DESIGN.md "The run directory",
README's "The run directory") and a benchmark folder (README's "Benchmark"), and the environment variables vip
reads. Each test fails when a field the docs promise disappears, or when vip writes a field the docs do not name."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from lesion_runs import make_lesions, train_toy

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DESIGN = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")

HEADER_FIELDS = {"format", "format_version", "vip_version", "method", "backbone", "arch", "pretrained", "class_names",
                 "symptoms", "n_ctx", "config", "metadata", "content_sha256"}
METRICS_FIELDS = {"val", "test", "best_epoch", "best_val_accuracy", "history", "steps", "timings", "device",
                  "machine", "torch_threads", "finished_at", "calibration", "conformal", "shortfalls", "image_fit"}
SPLIT_METRICS = {"n", "accuracy", "balanced_accuracy", "macro_f1", "auroc", "confusion_matrix"}
VS_CHANCE_FIELDS = {"class", "auroc", "p", "p_perfect", "auroc_needed"}
SPLIT_FIELDS = {"root", "class_names", "origin", "seed", "split_seed", "shots", "train_subset", "train", "val",
                "test", "unreadable", "duplicates", "linked_class_folders", "groups_across_splits"}
BENCHMARK_ROW_FIELDS = {"method", "shots", "seed", "shots_used", "test_accuracy", "test_balanced_accuracy",
                        "test_macro_f1", "test_auroc", "test_confusion_matrix", "test_vs_chance", "device", "machine",
                        "finished_at", "method_distribution"}
SUMMARY_CSV_COLUMNS = ["method", "shots", "n_seeds", "seeds", "shots_used", "test_accuracy_mean_pct",
                       "test_accuracy_std_pct", "test_macro_f1_mean_pct", "test_macro_f1_std_pct", "test_auroc_mean_pct",
                       "test_auroc_std_pct", "test_balanced_accuracy_mean_pct", "test_balanced_accuracy_std_pct"]


def section(text: str, heading: str) -> str:
    """The text of the markdown section that starts at `heading`, up to the next heading of its level or above."""
    start = text.index(heading)
    level = heading.split(" ")[0]
    following = re.compile(rf"^#{{1,{len(level)}}} ", re.M)
    found = following.search(text, start + len(heading))
    return text[start:found.start() if found else len(text)]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A ViP run on the toy backbone (4 epochs, 2 views), written by `vip train`'s library call."""
    root = tmp_path_factory.mktemp("contract")
    data = make_lesions(root / "data", {"train": 8, "val": 4, "test": 4})
    return train_toy(data, root / "run", root / "cache")


def test_run_header_holds_the_documented_string_fields(toy_run):
    from safetensors import safe_open

    with safe_open(str(toy_run / "model.safetensors"), "pt") as handle:
        header = handle.metadata()
        shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    assert set(header) == HEADER_FIELDS
    assert all(isinstance(value, str) for value in header.values())
    assert (header["format"], header["format_version"], header["method"]) == ("vip-run", "2", "vip")
    document = json.loads(header["metadata"])
    assert isinstance(document["method_settings"], dict) and isinstance(document["method_state"], dict)
    assert document["image_fit"] == "crop" and isinstance(document["calibration"]["temperature"], float)
    c, n_ctx = len(document["class_names"]), int(header["n_ctx"])
    d, w = shapes["merge.token"][1], shapes["context"][1]
    assert shapes == {"context": (n_ctx, w), "merge.token": (c, d), "merge.w_q": (d, d), "merge.w_k": (d, d)}


def test_run_yaml_is_the_header_document(toy_run):
    import yaml
    from safetensors import safe_open

    with safe_open(str(toy_run / "model.safetensors"), "pt") as handle:
        document = json.loads(handle.metadata()["metadata"])
    assert yaml.safe_load((toy_run / "run.yaml").read_text(encoding="utf-8")) == document


def test_split_json_holds_the_documented_fields(toy_run):
    split = json.loads((toy_run / "split.json").read_text())
    assert set(split) == SPLIT_FIELDS
    path, label = split["train"][0]
    assert isinstance(path, str) and not Path(path).is_absolute() and isinstance(label, int)
    assert isinstance(split["unreadable"], dict) and split["duplicates"] == [] == split["linked_class_folders"]
    assert set(split["train_subset"]) <= {entry[0] for entry in split["train"]}


def test_metrics_json_holds_the_documented_fields(toy_run):
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert set(metrics) == METRICS_FIELDS
    for name in ("val", "test"):
        assert SPLIT_METRICS <= set(metrics[name]), name
    assert metrics["test"]["vs_chance"] and all(set(entry) == VS_CHANCE_FIELDS for entry in metrics["test"]["vs_chance"])
    assert isinstance(metrics["best_epoch"], int) and isinstance(metrics["steps"], int) and metrics["steps"] > 0
    assert isinstance(metrics["torch_threads"], int) and metrics["shortfalls"] == {}


def test_every_metrics_field_is_named_in_the_docs(toy_run):
    """README's run directory section and docs/DESIGN.md name each top-level field metrics.json holds."""
    metrics = json.loads((toy_run / "metrics.json").read_text())
    readme = section(README, "### The run directory")
    design = section(DESIGN, "## The run directory (contract)")
    assert [name for name in metrics if not re.search(rf"\b{name}\b", readme)] == []
    assert [name for name in metrics if f"`{name}`" not in design] == []


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, toy_run) -> Path:
    """A one-seed benchmark of zeroshot and linear-probe on the toy backbone, through the `vip` command."""
    from vipcli.cli.main import main

    root = toy_run.parent
    out = root / "sweep"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        code = main(["benchmark", "-q", "--data", str(root / "data"), "--backbone", "toy", "--device", "cpu",
                     "--methods", "zeroshot,linear-probe", "--shots", "2", "--seeds", "1", "--views", "2",
                     "--workers", "0", "--out", str(out), "--json"])
    assert code == 0
    return out


def test_benchmark_folder_holds_the_documented_files_and_fields(sweep, capsys):
    capsys.readouterr()
    assert {"results.json", "results.csv", "summary.csv", "split.json", "shots.png"} <= {p.name for p in sweep.iterdir()}
    results = json.loads((sweep / "results.json").read_text())
    assert {"config", "class_names", "rows", "summary"} <= set(results)
    assert "backbone_distribution" in results["config"]
    for row in results["rows"]:
        assert BENCHMARK_ROW_FIELDS <= set(row), row["method"]
    with open(sweep / "results.csv", newline="") as handle:
        columns = next(csv.reader(handle))
    assert columns[-2:] == ["val_balanced_accuracy", "test_balanced_accuracy"]
    with open(sweep / "summary.csv", newline="") as handle:
        assert next(csv.reader(handle)) == SUMMARY_CSV_COLUMNS
    split = json.loads((sweep / "split.json").read_text())
    assert {"train", "val", "test", "unreadable", "duplicates", "linked_class_folders", "few_shot_order"} <= set(split)


PRUNED_FIELDS = {"by", "date", "data", "backbone", "training_images", "removed", "keep", "beyond_keep"}


def test_pruned_pack_records_the_documented_provenance(toy_run, capsys):
    """`vip symptoms rank --prune --keep K --out DIR` writes packs in the documented format, `source.pruned` as
    README's "Rank symptoms on your images" names it."""
    import yaml

    from vipcli.cli.main import main

    root = toy_run.parent
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        code = main(["symptoms", "rank", "-q", "--data", str(root / "data"), "--backbone", "toy", "--device", "cpu",
                     "--prune", "--keep", "3", "--out", str(root / "pruned")])
    capsys.readouterr()
    assert code == 0
    pack = yaml.safe_load((root / "pruned" / "melanoma.yaml").read_text(encoding="utf-8"))
    assert {"name", "symptoms", "aliases", "modality", "source"} <= set(pack)
    pruned = pack["source"]["pruned"]
    assert PRUNED_FIELDS <= set(pruned) and pruned["keep"] == 3 and isinstance(pruned["training_images"], int)
    for entry in pruned["removed"] + pruned.get("kept_below_bound", []):
        assert {"symptom", "auroc", "verdict"} <= set(entry) <= {"symptom", "auroc", "interval", "verdict"}


def test_every_vip_environment_variable_is_documented():
    """Each VIP_* variable vip's code reads is named in README (the test suite's own, VIP_TEST_*, are vip's too)."""
    read = set()
    for source in [*(ROOT / "vipcli").rglob("*.py"), *(ROOT / "backbones").rglob("*.py")]:
        read |= set(re.findall(r"\bVIP_[A-Z_]+\b", source.read_text(encoding="utf-8")))
    assert read, "no VIP_ variable found: the scan is broken"
    assert sorted(name for name in read if f"`{name}" not in README and f"{name}=" not in README) == []
