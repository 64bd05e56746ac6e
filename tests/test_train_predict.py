"""End to end: `vip train` -> run directory -> `vip predict`, on real images and tiny towers."""

from __future__ import annotations

import json

import pytest
import yaml
from safetensors import safe_open

from conftest import error_lines, resave_run, tiny_train_args


@pytest.fixture
def trained(cli, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli(*tiny_train_args(isic_small, tiny_clip, out))
    assert code == 0, stderr
    return out, stdout


def test_train_writes_the_run_directory_contract(trained, isic_small):
    out, stdout = trained
    assert sorted(p.name for p in out.iterdir()) == ["backbone", "metrics.json", "model.safetensors", "run.yaml",
                                                     "split.json"]
    assert [p.name for p in (out / "backbone" / "arch").iterdir()] == ["tiny-clip.json"]  # the config travels along
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        shapes = {k: tuple(handle.get_tensor(k).shape) for k in handle.keys()}
        meta = handle.metadata()
    assert shapes == {"context": (4, 32), "merge.token": (2, 32), "merge.w_q": (32, 32), "merge.w_k": (32, 32)}
    assert json.loads(meta["class_names"]) == ["melanoma", "nevus"]
    assert meta["method"] == "vip" and meta["backbone"] == "clip" and meta["n_ctx"] == "4"
    assert len(json.loads(meta["symptoms"])["melanoma"]) == 4
    split = json.loads((out / "split.json").read_text())
    assert len(split["train_subset"]) == 8 and len(split["test"]) == 8 and split["origin"]["val"] == "folder"
    metrics = json.loads((out / "metrics.json").read_text())
    for part in ("val", "test"):
        assert {"accuracy", "macro_f1", "auroc", "confusion_matrix"} <= set(metrics[part])
    assert len(metrics["history"]) == 3 and 0 <= metrics["best_epoch"] < 3
    assert yaml.safe_load((out / "run.yaml").read_text())["method"] == "vip"
    assert "accuracy" in stdout and "AUROC" in stdout and "test" in stdout


def test_few_shot_subset_is_reproducible(cli, isic_small, tiny_clip, tmp_path):
    subsets = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / name, "--seed", seed))
        assert code == 0, err
        subsets.append(json.loads((tmp_path / name / "split.json").read_text())["train_subset"])
    assert subsets[0] == subsets[1] and subsets[0] != subsets[2]


def test_the_same_command_again_trains_the_same_model_and_writes_the_same_file(cli, isic_small, tiny_clip, tmp_path):
    """Bit for bit: nothing in a run depends on timing (CPU threads are not chosen by a stopwatch). And byte
    for byte, so its digest (the `model` of `vip predict --out` records) names the model: safetensors writes
    its metadata in hash-map order, which changed from save to save (three saves, to catch an order that
    comes out the same twice by chance)."""
    import torch

    from vipcli.predict import model_digest

    weights, histories, digests = [], [], []
    for _ in range(3):
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--seed", "3", "--force"))
        assert code == 0, err
        with safe_open(str(tmp_path / "run" / "model.safetensors"), "pt") as handle:
            weights.append({k: handle.get_tensor(k) for k in handle.keys()})
        histories.append(json.loads((tmp_path / "run" / "metrics.json").read_text())["history"])
        digests.append(model_digest(tmp_path / "run"))
    assert all(w.keys() == weights[0].keys() for w in weights)
    assert all(torch.equal(w[k], weights[0][k]) for w in weights for k in w)
    assert histories[0] and all(h == histories[0] for h in histories)
    assert len(set(digests)) == 1


def test_predict_round_trip_matches_the_training_evaluation(cli, trained, isic_small):
    out, _ = trained
    code, stdout, err = cli("predict", isic_small / "test", "--model", out, "--json", "--device", "cpu")
    assert code == 0, err
    document = json.loads(stdout)
    assert len(document["predictions"]) == 8 and document["classes"] == ["melanoma", "nevus"]
    for p in document["predictions"]:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-3 and p["label"] in p["probabilities"]
    truth = [p["path"].split("/")[-2] for p in document["predictions"]]
    accuracy = 100 * sum(t == p["label"] for t, p in zip(truth, document["predictions"])) / 8
    assert accuracy == pytest.approx(json.loads((out / "metrics.json").read_text())["test"]["accuracy"])
    code, again, _ = cli("predict", isic_small / "test", "--model", out, "--json", "--device", "cpu")
    assert json.loads(again)["predictions"] == document["predictions"]


def test_predict_computes_logits_as_training_evaluated_them_under_autocast(cli, isic_small, tiny_clip, tmp_path,
                                                                           monkeypatch):
    """On CUDA both run under bf16 autocast; forced here on the CPU, where bf16 shows in the 3rd digit."""
    import torch

    from vipcli import devices, trust
    from vipcli.features import encode_images
    from vipcli.fitting import predict_logits
    from vipcli.predict import collect_images, load_predictor
    from vipcli.trust import calibrated_softmax

    monkeypatch.setattr(devices, "autocast_dtype", lambda device: torch.bfloat16)
    out = tmp_path / "run"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out))
    assert code == 0, err
    # predict at T = 1: the temperature this tiny random model fits depends on the CPU's rounding, and on an AVX2
    # CPU it was so large that every probability read 0.50 to 4 decimals, with or without autocast
    monkeypatch.setattr(trust, "calibrated_softmax", lambda logits, calibration: calibrated_softmax(logits, None))
    code, stdout, err = cli("predict", isic_small / "test", "--model", out, "--json", "--device", "cpu")
    assert code == 0, err
    predicted = {p["path"]: p["probabilities"] for p in json.loads(stdout)["predictions"]}
    predictor = load_predictor(out)
    paths = collect_images([isic_small / "test"])
    encoded = encode_images(predictor.backbone, paths, workers=0)
    features = torch.stack([encoded.eval[i] for i in range(len(paths))])  # [N, D]
    evaluated = calibrated_softmax(predict_logits(predictor.method, features, "cpu"), None)
    with torch.no_grad():  # what predict computed before: the same logits without autocast
        plain = calibrated_softmax(predictor.method(features).float(), None)
    assert not torch.allclose(plain, evaluated, atol=1e-4)  # autocast does show at predict's 4 decimals
    for path, row in zip(paths, evaluated):
        assert list(predicted[str(path)].values()) == [round(float(p), 4) for p in row]


def test_explain_lists_each_symptom_with_similarity_and_weight(cli, trained, isic_small):
    out, _ = trained
    image = sorted((isic_small / "test" / "melanoma").iterdir())[0]
    code, stdout, _ = cli("predict", image, "--model", out, "--explain", "--json", "--device", "cpu")
    explanation = json.loads(stdout)["predictions"][0]["explanation"]
    assert [group["class"] for group in explanation] == ["melanoma", "nevus"]
    melanoma = explanation[0]["symptoms"]
    assert melanoma[0]["symptom"] == "The spot is asymmetric on both sides"
    assert abs(sum(s["weight"] for s in melanoma) - 1) < 1e-3 and all(-1 <= s["similarity"] <= 1 for s in melanoma)
    code, text, _ = cli("predict", image, "--model", out, "--explain", "--device", "cpu")
    assert "Small, dark areas within the spot" in text and "merge" in text and "contri-" in text


def test_predict_bad_file_names_it_and_still_predicts_the_rest(cli, trained, isic_small, tmp_path):
    out, _ = trained
    bad = tmp_path / "broken.png"
    bad.write_text("nope")
    good = sorted((isic_small / "test" / "nevus").iterdir())[0]
    code, stdout, err = cli("predict", good, bad, "--model", out, "--device", "cpu")
    assert code == 1 and good.name in stdout
    assert f"{bad}: not an image" in err and "Traceback" not in err
    assert err.splitlines()[-1] == "error: 1 of 2 images could not be read (fix or remove the files listed above)"


def test_predict_of_one_unreadable_image_counts_it_in_the_singular(cli, trained, tmp_path):
    """`vip predict scan.jpg` of one corrupt file ended "error: 1 of 1 images could not be read"."""
    out, _ = trained
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(b"\xff\xd8\xff")  # a JPEG cut off after its first marker
    code, stdout, err = cli("predict", bad, "--model", out, "--device", "cpu")
    assert code == 1 and stdout == ""
    assert err.splitlines()[-1] == "error: 1 of 1 image could not be read (fix or remove the files listed above)"


def test_predict_into_the_folder_it_reads_does_not_call_its_own_files_left_out(cli, trained, isic_small, tmp_path):
    """`vip predict scans --out scans/p.jsonl` warned about its own p.jsonl and p.jsonl.lock as files "not named as
    an image vip reads"; a file of the user's there still is."""
    import shutil

    out, _ = trained
    scans = tmp_path / "scans"
    scans.mkdir()
    for image in sorted((isic_small / "test" / "nevus").iterdir())[:2]:
        shutil.copy(image, scans / image.name)
    for _ in range(2):  # the second time, p.jsonl is there from the first
        code, _, err = cli("predict", scans, "--model", out, "--device", "cpu", "--out", scans / "p.jsonl", "--force")
        assert code == 0 and "left out" not in err, err
    (scans / "notes.txt").write_text("mine")
    code, _, err = cli("predict", scans, "--model", out, "--device", "cpu", "--out", scans / "p.jsonl", "--force")
    assert code == 0 and "left out 1 file not named as an image vip reads" in err and "notes.txt" in err


def test_predict_names_a_model_that_is_no_run_before_anything_about_the_images(cli, isic_small, tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "notes.txt").write_text("not an image")
    code, _, err = cli("predict", tmp_path / "scans", "--model", tmp_path / "no-run", "--device", "cpu")
    assert code == 1 and err.strip().splitlines() == [
        f"error: run directory not found: {tmp_path / 'no-run'} (pass --model RUN_DIR written by `vip train`)"]


def test_predict_of_a_folder_of_dicom_exports_without_a_suffix_names_them_and_the_fix(cli, trained, tmp_path):
    """A PACS export (IM000001, IM000002: DICOM files without .dcm) given to `vip predict` was called a folder with
    "no image files", with no word of the files it holds or of renaming them."""
    run, _ = trained
    export = tmp_path / "export"
    export.mkdir()
    for name in ("IM000001", "IM000002"):
        (export / name).write_bytes(bytes(128) + b"DICM" + bytes(64))  # a DICOM file's preamble and marker
    code, _, err = cli("predict", export, "--model", run)
    assert code == 1 and error_lines(err) == [
        f"error: folder {export} has no image files (in it or in its subfolders), only 2 files not named as an image "
        "vip reads (jpg, jpeg, png, bmp, tif, tiff, webp, dcm, dicom): IM000001, IM000002 (2 look like DICOM files "
        "without a .dcm suffix: rename them to .dcm)"]


def test_predict_counts_a_bad_file_given_twice_twice(cli, trained, isic_small, tmp_path):
    out, _ = trained
    bad = tmp_path / "broken.png"
    bad.write_text("nope")
    good = sorted((isic_small / "test" / "nevus").iterdir())[0]
    code, stdout, err = cli("predict", good, bad, bad, "--model", out, "--device", "cpu")
    assert code == 1 and err.splitlines()[-1] == ("error: 2 of 3 images could not be read "
                                                  "(fix or remove the files listed above)"), err


@pytest.mark.parametrize("target, message", [
    ("missing", "run directory not found"),
    ("empty-dir", "has no model.safetensors"),
    ("foreign", "not a vip checkpoint"),
    ("garbage", "not a readable safetensors checkpoint"),
    ("run.yaml", "run.yaml is a file, not a run directory (pass --model {run}, the run's folder)"),
])
def test_bad_checkpoints_are_refused_in_one_line(cli, tmp_path, isic_small, target, message):
    from safetensors.torch import save_file
    import torch

    run = tmp_path / target
    if target != "missing":
        run.mkdir()
    if target == "foreign":
        save_file({"weight": torch.zeros(2)}, run / "model.safetensors")
    if target == "garbage":
        (run / "model.safetensors").write_bytes(b"\x00" * 64)
    if target == "run.yaml":  # a file of the run given for its folder
        (run / "model.safetensors").write_bytes(b"\x00" * 64)
        (run / "run.yaml").write_text("format: vip-run\n")
        run, message = run / "run.yaml", message.format(run=run)
    code, _, err = cli("predict", isic_small / "test", "--model", run)
    assert code == 1 and message in err and len(error_lines(err)) == 1 and "Traceback" not in err


def test_checkpoint_from_another_backbone_is_refused(cli, trained, isic_small):
    out, _ = trained
    code, _, err = cli("predict", isic_small / "test", "--model", out, "--backbone", "biomedclip")
    assert code == 2 and "trained with backbone 'clip', not 'biomedclip'" in err


def test_checkpoint_that_does_not_fit_the_backbone_is_refused(cli, trained, isic_small, tmp_path):
    from safetensors.torch import load_file
    import torch

    out, _ = trained
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        meta = handle.metadata()
    tensors = load_file(out / "model.safetensors")
    tensors["context"] = torch.zeros(4, 64)
    resave_run(out / "model.safetensors", tensors, meta)
    code, _, err = cli("predict", isic_small / "test", "--model", out)
    assert code == 1 and "do not fit backbone 'clip'" in err


def test_existing_out_is_not_overwritten_without_force(cli, trained, isic_small, tiny_clip):
    out, _ = trained
    before = (out / "model.safetensors").read_bytes()
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out, "--seed", "2"))
    assert code == 1 and "already exists" in err and (out / "model.safetensors").read_bytes() == before
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out, "--seed", "2", "--force"))
    assert code == 0 and (out / "model.safetensors").read_bytes() != before


def test_a_second_train_into_the_same_out_is_refused_at_once_not_after_training(cli, isic_small, tiny_clip, tmp_path,
                                                                                monkeypatch):
    """Two `vip train --out R` at once: the second trained in full, then found R taken at save."""
    import os
    import socket

    from vipcli import featuresets
    from vipcli.locks import output_lock

    out = tmp_path / "runs" / "r"
    encoded = []
    real = featuresets.prepare_features
    monkeypatch.setattr(featuresets, "prepare_features", lambda *a, **k: encoded.append(1) or real(*a, **k))
    (tmp_path / "runs").mkdir()
    with output_lock(out, lock=tmp_path / "runs" / ".r.lock"):  # as a vip train running in another process holds it
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out))
    assert code == 1 and error_lines(err) == [
        f"error: {out} is being written by another vip process (pid {os.getpid()} on host {socket.gethostname()}) "
        "(wait for it to finish, or pass another --out)"]
    assert encoded == [] and os.listdir(tmp_path / "runs") == []
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out))  # that one ended: its lock went with it
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "runs")) == ["r"]


def test_a_run_still_training_is_named_as_such_by_every_reader_not_as_missing(cli, isic_small, tiny_clip, tmp_path):
    """`vip train --out R` writes R only when it finishes: a user who ran `vip predict --model R` (or report,
    symptoms show, --symptoms R) in another terminal meanwhile was told R was not found, as for a typo."""
    import os
    import socket

    from vipcli.locks import output_lock

    run = tmp_path / "runs" / "r"
    image = next((isic_small / "test" / "nevus").iterdir())
    readers = [("predict", image, "--model", run), ("report", run), ("symptoms", "show", run),
               tiny_train_args(isic_small, tiny_clip, tmp_path / "other", "--symptoms", run)]
    (tmp_path / "runs").mkdir()
    with output_lock(run, lock=tmp_path / "runs" / ".r.lock"):  # as a vip train running in another process holds it
        for args in readers:
            code, _, err = cli(*args)
            assert code == 1 and error_lines(err) == [
                f"error: {run} is still being trained: `vip train` (pid {os.getpid()} on host "
                f"{socket.gethostname()}) writes the run there when it finishes (wait for it to finish, then run "
                "this command again)"], args
    for args in readers:  # no one trains it: a path that is missing, as before
        code, _, err = cli(*args)
        assert code != 0 and "still being trained" not in err and str(run) in err, args


def test_a_train_without_out_holds_its_default_folder_and_another_takes_the_next_name(cli, isic_small, tiny_clip,
                                                                                     tmp_path, monkeypatch):
    """`vip train` without --out held no lock while it trained: `vip predict --model runs/NAME` meanwhile said
    "not found", and a second `vip train` started with the same arguments chose the same default folder."""
    import os

    from vipcli import featuresets
    from vipcli.checkpoint import run_lock_file
    from vipcli.locks import lock_holder, output_lock

    monkeypatch.chdir(tmp_path)
    args = tiny_train_args(isic_small, tiny_clip, "unused")
    del args[args.index("--out"):args.index("--out") + 2]
    held, real = [], featuresets.prepare_features

    def encoding(*a, **k):  # mid-run: which lock files a live process holds
        runs = tmp_path / "runs"
        held.extend(sorted(p.name for p in runs.iterdir() if lock_holder(p) is not None) if runs.is_dir() else [])
        return real(*a, **k)

    monkeypatch.setattr(featuresets, "prepare_features", encoding)
    code, _, err = cli(*args)
    assert code == 0, err
    (first,) = os.listdir(tmp_path / "runs")  # the run, its lock file gone with the lock
    assert held == [f".{first}.lock"]
    taken = tmp_path / "runs" / f"{first}-2"  # the next default name, as another `vip train` trains it
    with output_lock(taken, lock=run_lock_file(taken)):
        code, out, err = cli(*args)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "runs")) == [first, f"{first}-3"]


def test_interrupted_run_leaves_nothing_behind(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    import vipcli.fitting

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vipcli.fitting, "sgd_epoch", interrupted)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.glob("run*")) == [] and list(tmp_path.glob(".run*")) == []
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "new" / "deeper" / "run"))
    assert code == 130 and not (tmp_path / "new").exists()  # the folders made for its --out lock go with it


def test_sigterm_stops_like_ctrl_c_with_its_own_line_and_code(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    """`kill`, `timeout` and Slurm's time limit send SIGTERM: one line, exit 143, nothing half-written."""
    import os
    import signal

    import vipcli.fitting

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread at once
        raise AssertionError("SIGTERM did not stop the run")

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(vipcli.fitting, "sgd_epoch", terminated)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 143 and error_lines(err) == ["error: terminated (SIGTERM); nothing half-written was left behind"]
    assert list(tmp_path.glob("run*")) == [] and list(tmp_path.glob(".run*")) == []
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_write_failure_midway_leaves_no_partial_run(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    import vipcli.checkpoint

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(vipcli.checkpoint.json, "dumps", broken_dump)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 1 and "disk full" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".run", "run"))] == []


def test_biomedclip_path_trains_and_predicts(cli, isic_small, tiny_biomedclip, tmp_path):
    out = tmp_path / "bert-run"
    args = tiny_train_args(isic_small, tiny_biomedclip, out, "--backbone", "biomedclip")
    code, _, err = cli(*args)
    assert code == 0, err
    code, stdout, err = cli("predict", isic_small / "test" / "nevus", "--model", out, "--json")
    assert code == 0, err and len(json.loads(stdout)["predictions"]) == 4


@pytest.mark.parametrize("method", ["coop", "zeroshot", "symptom-zeroshot", "linear-probe", "vip-mep-only"])
def test_baseline_methods_train_and_predict(cli, isic_small, tiny_clip, tmp_path, method):
    out = tmp_path / method
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out, "--method", method))
    assert code == 0, err
    # the symptom packs are named only to a method that uses them
    assert any(line.startswith("symptoms: ") for line in err.splitlines()) == (
        method in ("symptom-zeroshot", "vip-mep-only")), err
    encoded = json.loads((out / "metrics.json").read_text())["timings"]["encoded_views"]
    if method in ("zeroshot", "symptom-zeroshot"):  # no labelled image plays a part: none is encoded
        assert encoded == 8 + 8
    # split.json's train_subset (the report's "train (used)") is what the method learned from: none for zero-shot
    used = json.loads((out / "split.json").read_text())["train_subset"]
    assert len(used) == (0 if method in ("zeroshot", "symptom-zeroshot") else 2 * 4), used
    code, stdout, err = cli("predict", isic_small / "test" / "melanoma", "--model", out, "--json", "--explain")
    assert code == 0, err
    predictions = json.loads(stdout)["predictions"]
    assert len(predictions) == 4
    assert (predictions[0]["explanation"] is None) == (method == "linear-probe")
    note = "note: method 'linear-probe' gives no per-symptom explanation; --explain shows nothing for it"
    assert err.splitlines().count(note) == (1 if method == "linear-probe" else 0), err  # once, not per image


def test_reference_mode_runs_the_whole_text_tower_the_authors_way(cli, isic_small, tiny_clip, tmp_path, monkeypatch):
    import torch
    from open_clip.transformer import Transformer

    import vipcli.methods.contract

    calls = {"ref": [], "cached": []}  # (positions, gradients on) of each text-tower call during the fit
    fitting = []
    own_forward, own_fit = Transformer.forward, vipcli.methods.contract.checked_fit

    def spy(self, x, attn_mask=None):
        if fitting and attn_mask is not None:  # the causal text tower (the image tower has no mask)
            calls[fitting[-1]].append((x.shape[1], torch.is_grad_enabled()))
        return own_forward(self, x, attn_mask=attn_mask)

    def fit(method, data, context):
        fitting.append(run)
        try:
            return own_fit(method, data, context)
        finally:
            fitting.pop()

    monkeypatch.setattr(Transformer, "forward", spy)
    monkeypatch.setattr(vipcli.methods.contract, "checked_fit", fit)
    for run, extra in (("cached", ()), ("ref", ("--reference",))):
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / run, *extra))
        assert code == 0, err
    metrics = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert len(metrics["history"]) == 3 and metrics["test"]["n"] == 8
    # the reference: open_clip's own forward over all 77 positions at every step and every validation
    assert {length for length, _ in calls["ref"]} == {77}
    assert sum(grad for _, grad in calls["ref"]) == metrics["steps"] > 0
    assert sum(not grad for _, grad in calls["ref"]) >= len(metrics["history"])  # at least once per epoch
    assert calls["cached"] == []  # vip's own path: trimmed, packed, pooled (never open_clip's forward)


def test_feature_cache_skips_the_image_encoder_on_a_second_run(cli, isic_small, tiny_clip, tmp_path):
    views = []
    for name in ("first", "second"):
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / name))
        views.append(json.loads((tmp_path / name / "metrics.json").read_text())["timings"]["encoded_views"])
    assert views == [8 * 2 + 8 + 8, 0]  # train: 2 augmented views (no center view for prompts); val; test
    import os

    first, second = sorted((isic_small / "test" / "nevus").iterdir())[:2]
    first.write_bytes(first.read_bytes())  # new mtime, same bytes: the same features, nothing to encode
    cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "third"))
    assert json.loads((tmp_path / "third" / "metrics.json").read_text())["timings"]["encoded_views"] == 0
    big, small = sorted((first, second), key=lambda p: p.stat().st_size, reverse=True)
    stat = big.stat()  # other bytes, same size and mtime (as `cp -p`, `rsync -t` or `tar` leave them)
    big.write_bytes(small.read_bytes().ljust(stat.st_size, b"\0"))
    os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "fourth"))
    assert json.loads((tmp_path / "fourth" / "metrics.json").read_text())["timings"]["encoded_views"] == 1


def test_usage_errors_exit_2_in_one_line(cli, isic_small):
    for args, message in ((["--shots", "zero"], "--shots zero"), (["--method", "magic"], "can't find method 'magic'"),
                          (["--schedule", "slow"], "unknown schedule"), (["--device", "tpu"], "unknown device")):
        code, _, err = cli("train", "--data", isic_small, *args)
        assert code == 2 and message in err and len(error_lines(err)) == 1 and "Traceback" not in err, err


def test_a_cuda_device_this_machine_lacks_is_named_with_the_ones_it_has(monkeypatch):
    """On a one-GPU machine `--device cuda:7` passed, to fail later as an "unexpected" invalid device ordinal;
    `--device cuda:x` was torch's own RuntimeError."""
    import torch

    from vipcli.devices import resolve_device
    from vipcli.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda") and resolve_device("cuda:0") == torch.device("cuda:0")
    for name, message in (("cuda:7", "--device cuda:7: this machine has 1 CUDA GPU visible to torch (cuda:0)"),
                          ("cuda:x", "unknown device 'cuda:x'"), ("cudax", "unknown device 'cudax'")):
        with pytest.raises(UsageError) as refused:
            resolve_device(name)
        assert refused.value.message == message
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no CUDA GPU is visible to torch"):
        resolve_device("cuda:0")


def test_on_a_mac_auto_picks_mps_and_nothing_cuda_only_or_bf16_is_asked_of_it(monkeypatch):
    """A Mac as this Linux machine can pretend one: MPS available, no CUDA. `auto` is mps, which computes in
    float32 (no bf16 autocast), captures no CUDA graph, and is never asked a CUDA question (its name, its peak)."""
    import torch

    from vipcli import graphs, speed
    from vipcli.devices import autocast, autocast_dtype, resolve_device, where_run

    def cuda_only(*_, **__):
        raise AssertionError("a CUDA-only call made for an mps device")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    for name in ("get_device_name", "max_memory_allocated", "synchronize", "make_graphed_callables"):
        monkeypatch.setattr(torch.cuda, name, cuda_only)
    mps = resolve_device("auto")
    assert mps == torch.device("mps") and resolve_device("mps") == mps
    assert autocast_dtype(mps) is None and type(autocast(mps)).__name__ == "nullcontext"
    assert graphs.graph_maker(mps) is None
    assert where_run(mps)["device"] == "mps" and speed.peak_memory(mps)["cuda_peak_allocated_mib"] is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with both: CUDA first
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("raised, said", [
    ("OutOfMemoryError", "CUDA out of memory"),
    ("RuntimeError", "MPS backend out of memory (MPS allocated: 17.8 GB, other allocations: 1.2 GB)"),
])
def test_a_gpu_out_of_memory_is_one_line_naming_what_to_lower(cli, isic_small, tiny_clip, tmp_path, monkeypatch,
                                                                raised, said):
    """A GPU too small for the batch printed "unexpected OutOfMemoryError ... this is a bug in vip"."""
    import torch

    from vipcli import featuresets

    def full(*_, **__):
        kind = torch.OutOfMemoryError if raised == "OutOfMemoryError" else RuntimeError
        raise kind(f"{said}. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB")

    monkeypatch.setattr(featuresets, "prepare_features", full)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    free = ("quit the apps that hold the Mac's memory (Activity Monitor's Memory tab lists them), which its GPU "
            "shares" if "MPS" in said else "free the GPU (nvidia-smi lists what holds it)")  # (no nvidia-smi on a Mac)
    assert code == 1 and error_lines(err) == [
        f"error: the GPU ran out of memory ({said}) (pass a smaller --encode-batch (images per encoder call, 64 by "
        f"default), or {free}; README's 'Out of memory' lists the rest)"]
    assert not (tmp_path / "run").exists()


def test_encode_batch_bounds_every_image_encoder_call_even_below_views(cli, tmp_path, monkeypatch):
    """README's fix for a GPU out of memory while encoding is a smaller --encode-batch; but the views of one image
    went to the encoder together, so `--views 20 --encode-batch 4` called it with 20 images at once."""
    from vipcli import features
    from vipcli.lesion_world import write_dataset

    write_dataset(tmp_path / "data", n_per_class={"train": 2, "val": 2, "test": 2}, seed=0)
    sizes = []
    encode = features._encode_batch  # every call of the image encoder while encoding
    monkeypatch.setattr(features, "_encode_batch", lambda backbone, batch: sizes.append(len(batch)) or
                        encode(backbone, batch))
    code, _, err = cli("train", "--data", tmp_path / "data", "--backbone", "toy", "--shots", "2", "--epochs", "1",
                       "--views", "20", "--encode-batch", "4", "--workers", "0", "--device", "cpu", "--out",
                       tmp_path / "run")
    assert code == 0, err
    assert sizes and max(sizes) <= 4 and sum(sizes) >= 2 * 2 * 20  # every view of the four training images
    sizes.clear()  # images whose views fit whole go whole, with no call of a fragment left over (a GPU pays per call)
    code, _, err = cli("train", "--data", tmp_path / "data", "--backbone", "toy", "--shots", "2", "--epochs", "1",
                       "--views", "8", "--encode-batch", "20", "--workers", "0", "--device", "cpu", "--no-cache",
                       "--out", tmp_path / "run8")
    assert code == 0, err
    assert sizes[:2] == [16, 16]  # the four training images' 8 views, two images a call (a third would be 24)


def test_views_whose_decoded_pixels_would_not_fit_in_memory_are_refused_before_encoding(cli, tmp_path, monkeypatch):
    """The memory check counted the features only (small), so a huge --views passed it and the kernel killed the
    run while one image's views were decoded (100,000 views of 224x224: 15 GB an image): one line now, before any
    image is decoded, naming the most views that fit."""
    from vipcli import features, preflight
    from vipcli.lesion_world import write_dataset
    from vipcli.registry import load_backbone

    write_dataset(tmp_path / "data", n_per_class={"train": 2, "val": 2, "test": 2}, seed=0)
    decoded = []
    monkeypatch.setattr(features.ViewDecoder, "__getitem__", lambda self, group: decoded.append(group))
    view = 3 * 64 * 64  # the toy backbone's 64x64 view, 8-bit
    monkeypatch.setattr(preflight, "physical_memory", lambda: 2 * 100 * view)  # half of it: 100 views
    args = ("--data", tmp_path / "data", "--backbone", "toy", "--shots", "2", "--device", "cpu", "--out",
            tmp_path / "run")
    code, _, err = cli("train", *args, "--views", "101", "--workers", "0")
    assert code == 1 and err.count("error:") == 1 and decoded == [] and not (tmp_path / "run").exists(), err
    assert ("error: --views 101: the decoded views of the images in flight at once would take 1.2 MiB of memory "
            "(1.2 MiB an image), more than half of the 2.3 MiB this process may use (pass --views 100 or fewer)"
            ) in " ".join(err.split())
    assert features.training_view_bytes(load_backbone("toy", None, None, warn_random=False)) == view


def test_a_split_seed_for_data_with_its_own_splits_is_named_and_never_blocks_a_resume(cli, tmp_path):
    """`--split-seed` seeds only the splits vip makes; on a folder with its own train/ val/ test/ it did nothing
    without a word, and resuming a sweep with another value was refused as "made with other settings"."""
    from vipcli.lesion_world import write_dataset

    write_dataset(tmp_path / "data", n_per_class={"train": 2, "val": 2, "test": 2}, seed=0)
    unused = f"warning: --split-seed 5 is not used: {tmp_path / 'data'} has its own val/ and test/ folders, so vip " \
             "splits nothing"
    code, _, err = cli("train", "--data", tmp_path / "data", "--backbone", "toy", "--method", "zeroshot",
                       "--split-seed", "5", "--workers", "0", "--out", tmp_path / "run")
    assert code == 0 and unused in " ".join(err.split()), err
    sweep = ("benchmark", "--data", tmp_path / "data", "--backbone", "toy", "--methods", "zeroshot", "--seeds", "1",
             "--workers", "0", "--out", tmp_path / "bench")
    code, _, err = cli(*sweep, "--split-seed", "5")
    assert code == 0 and unused in " ".join(err.split()), err
    code, printed, err = cli(*sweep, "--split-seed", "7")
    assert code == 0, err
    assert "0 rows run, 1 resumed from earlier" in " ".join(printed.split()), printed
    write_dataset(tmp_path / "unsplit", n_per_class=6, seed=0, splits={"train": 1.0})  # one folder: vip splits it
    code, _, err = cli("train", "--data", tmp_path / "unsplit" / "train", "--backbone", "toy", "--method",
                       "zeroshot", "--split-seed", "5", "--workers", "0", "--out", tmp_path / "run2")
    assert code == 0 and "not used" not in err, err


def test_schedule_options_a_method_does_not_follow_are_named_before_any_work(cli, tmp_path):
    """`--epochs`/`--lr`/`--schedule` changed nothing for a method with its own fitting (linear-probe, tip-adapter,
    clap, the zero-shot methods), without a word; they are now named in one warning before the backbone loads."""
    from vipcli.lesion_world import write_dataset

    write_dataset(tmp_path / "data", n_per_class={"train": 2, "val": 2, "test": 2}, seed=0)
    args = ("--data", tmp_path / "data", "--backbone", "toy", "--views", "1", "--workers", "0", "--device", "cpu")
    code, _, err = cli("train", *args, "--method", "linear-probe", "--epochs", "3", "--lr", "0.01", "--out",
                       tmp_path / "lp")
    assert code == 0, err
    [line] = [line for line in err.splitlines() if "not used" in line]
    assert line == ("warning: --epochs 3, --lr 0.01 are not used by method 'linear-probe', which follows no run "
                    "schedule: the method's own fitting (`vip methods show linear-probe`)")
    assert err.index(line) < err.index("linear-probe on 2 classes")  # before the plan line, before any work
    code, _, err = cli("train", *args, "--method", "zeroshot", "--schedule", "paper", "--out", tmp_path / "zs")
    assert code == 0 and "warning: --schedule paper is not used by method 'zeroshot', which follows no run " \
                          "schedule: no labelled images, no training" in err, err
    code, _, err = cli("train", *args, "--method", "vip", "--epochs", "1", "--out", tmp_path / "vip")
    assert code == 0 and "not used" not in err, err
    code, _, err = cli("benchmark", "--data", tmp_path / "data", "--backbone", "toy", "--methods",
                       "linear-probe,tip-adapter", "--shots", "1", "--seeds", "1", "--epochs", "2", "--views", "1",
                       "--workers", "0", "--out", tmp_path / "bench")
    assert code == 0 and ("warning: --epochs 2 is not used: none of the methods follows the run's schedule (`vip "
                          "methods show ID` says how one fits)") in " ".join(err.split()), err


def test_command_line_mistakes_are_one_usage_line(cli):
    for args, message in ((["predict", "x.png"], "Missing option '--model'"),
                          (["train", "--data", "x", "--epochs", "abc"], "--epochs must be a whole number, got 'abc'"),
                          (["nosuch"], "No such command 'nosuch'")):
        code, _, err = cli(*args)
        assert code == 2 and len(error_lines(err)) == 1 and message in err and "Traceback" not in err, err
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("vip ")


def test_a_missing_option_or_argument_says_what_to_give_it(cli):
    """click's "Missing option '--data'." named what was left out but not what it takes, which a first run needs."""
    for args, line in ((["train"], "error: Missing option '--data': folder of class subfolders (optionally under "
                                   "train/ val/ test/) (see 'vip train -h')"),
                       (["predict", "x.png"], "error: Missing option '--model': run directory written by `vip train` "
                                              "(see 'vip predict -h')"),
                       (["predict", "--model", "run"], "error: Missing argument 'PATHS': image files or folders of "
                                                       "images (see 'vip predict -h')"),
                       (["symptoms", "show"], "error: Missing argument 'NAME': pack name or alias (e.g. melanoma, "
                                              "bcc), a pack .yaml file, a symptoms file of {class: [symptoms]} or a "
                                              "run directory (each class shown as a pack) (see 'vip symptoms show -h')")):
        code, _, err = cli(*args)
        assert code == 2 and error_lines(err) == [line], err


def test_a_path_given_without_its_option_is_named_with_the_option_to_give_it(cli, trained, isic_small, tmp_path):
    """`vip train isic` and `vip predict RUN scan.png`, as a first try reads: the error said that --data (or
    --model) was missing, not that the folder typed beside it was what it wanted."""
    run, _ = trained
    image = next((isic_small / "test" / "nevus").iterdir())
    spaced = tmp_path / "my data"
    spaced.mkdir()
    for args, line in (
            (["train", isic_small, "--backbone", "toy"],
             f"error: Missing option '--data': folder of class subfolders (optionally under train/ val/ test/); "
             f"{isic_small} is given without it (pass --data {isic_small}) (see 'vip train -h')"),
            (["predict", run, image],
             f"error: Missing option '--model': run directory written by `vip train`; {run} is given without it "
             f"(pass --model {run}) (see 'vip predict -h')"),
            (["benchmark", "--out", isic_small, spaced],  # --out's value is no stray path; a spaced one is quoted
             f"error: Missing option '--data': folder of class subfolders (optionally under train/ val/ test/); "
             f"{spaced} is given without it (pass --data '{spaced}') (see 'vip benchmark -h')"),
            (["predict", isic_small / "test"],  # a folder of images is no run directory: nothing to suggest
             "error: Missing option '--model': run directory written by `vip train` (see 'vip predict -h')")):
        code, _, err = cli(*args)
        assert code == 2 and error_lines(err) == [line], err


def test_a_command_group_without_a_command_shows_its_help_and_no_empty_error(cli):
    for args, usage in (([], "Usage: vip [OPTIONS] COMMAND"), (["methods"], "Usage: vip methods"),
                        (["symptoms"], "Usage: vip symptoms"), (["cache"], "Usage: vip cache")):
        code, out, err = cli(*args)
        assert code in (0, 2) and usage in out and "error:" not in err, (args, err)  # 2 from click 8.2 on

def test_number_options_given_text_name_the_option_and_the_value(cli, tmp_path):
    for args, line in ((["predict", "x.png", "--model", "run", "--coverage", "abc"],
                        "error: --coverage must be a number, got 'abc' (see 'vip predict -h')"),
                       (["train", "--data", "x", "--views", "2.5"],
                        "error: --views must be a whole number, got '2.5' (see 'vip train -h')")):
        code, _, err = cli(*args)
        assert code == 2 and error_lines(err) == [line], err


def test_an_option_without_its_value_says_where_to_read_the_usage(cli):
    """`vip train --data` said only "Option '--data' requires an argument.": every other usage error's line
    ends with the command's `-h`."""
    for args, line in ((["train", "--data"], "error: Option '--data' requires an argument. (see 'vip train -h')"),
                       (["predict", "x.png", "--model"],
                        "error: Option '--model' requires an argument. (see 'vip predict -h')"),
                       (["train", "--force=yes"], "error: Option '--force' does not take a value. (see 'vip train -h')"),
                       (["symptoms", "generate", "-d"],
                        "error: Option '-d' requires an argument. (see 'vip symptoms generate -h')")):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and error_lines(err) == [line], err


def test_dash_o_given_a_folder_says_it_is_a_method_setting_and_names_out(cli, tmp_path):
    """`vip train --data x -o runs/a` (-o for the output, as in many tools) said only "--method-option runs/a:
    expected KEY=VALUE", naming an option the user never typed."""
    said = "error: --method-option runs/a: expected KEY=VALUE (a method setting such as -o n-ctx=8, listed by " \
           "`vip methods show ID`{})"
    for command in (["train", "--data", tmp_path], ["benchmark", "--data", tmp_path]):
        code, _, err = cli(*command, "-o", "runs/a")
        assert code == 2 and error_lines(err) == [said.format("; the output folder is given with --out")], err
    code, _, err = cli("methods", "check", "vip", "-o", "runs/a")  # no --out there
    assert code == 2 and error_lines(err) == [said.format("")], err


def test_method_option_errors_spell_the_setting_as_typed(cli, isic_small, tmp_path):
    code, _, err = cli("train", "--data", isic_small, "-o", "n-ctx=abc", "--out", tmp_path / "x")
    assert code == 2 and error_lines(err) == [
        "error: --method-option n-ctx: expected int, got 'abc' (pass a whole number, such as --method-option n-ctx=4)"]
    code, _, err = cli("train", "--data", isic_small, "-o", "class-specific-context=maybe", "--out", tmp_path / "x")
    assert code == 2 and error_lines(err) == [
        "error: --method-option class-specific-context: expected true or false, got 'maybe' "
        "(pass --method-option class-specific-context=true or false)"]


@pytest.mark.parametrize("mask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_run_folder_and_cache_follow_the_users_umask(cli, isic_small, tiny_clip, tmp_path, monkeypatch, mask,
                                                      folder_mode, file_mode):
    import os
    import stat

    cache = tmp_path / "cache"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    previous = os.umask(mask)
    try:
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    finally:
        os.umask(previous)
    assert code == 0, err
    run = tmp_path / "run"
    assert stat.S_IMODE(run.stat().st_mode) == folder_mode
    for file in ("model.safetensors", "run.yaml", "split.json", "metrics.json"):
        assert stat.S_IMODE((run / file).stat().st_mode) == file_mode, file
    entries = list((cache / "features").rglob("*.safetensors"))
    assert entries and all(stat.S_IMODE(e.stat().st_mode) == file_mode for e in entries)


def test_a_zero_shot_method_runs_on_val_and_test_without_train(cli, isic_small, tiny_clip, tmp_path):
    """A zero-shot evaluation needs no labelled training images: `{val,test}/<class>/*` is enough, and
    gives the same figures as the same folder with its train/ beside it. A method that learns still
    needs train/, and without val/ there is nothing to calibrate on: each is one line."""
    import shutil

    bare = tmp_path / "bare"
    for split in ("val", "test"):
        shutil.copytree(isic_small / split, bare / split, symlinks=True)
    results = {}
    for name, data in (("with", isic_small), ("without", bare)):
        out = tmp_path / name
        code, _, err = cli(*tiny_train_args(data, tiny_clip, out, "--method", "symptom-zeroshot"))
        assert code == 0, err
        metrics = json.loads((out / "metrics.json").read_text())
        results[name] = {split: metrics[split] for split in ("val", "test")}
    assert results["without"] == results["with"]
    split = json.loads((tmp_path / "without" / "split.json").read_text())
    assert split["train"] == [] and split["train_subset"] == [] and split["origin"]["train"].startswith("none")
    code, stdout, err = cli("predict", bare / "test" / "melanoma", "--model", tmp_path / "without", "--json",
                            "--coverage", "0.5")
    assert code == 0, err and len(json.loads(stdout)["predictions"]) == 4
    code, _, err = cli(*tiny_train_args(bare, tiny_clip, tmp_path / "vip", "--method", "vip"))
    assert code == 1 and f"{bare} has val, test folders but no train/" in err
    shutil.rmtree(bare / "val")
    code, _, err = cli(*tiny_train_args(bare, tiny_clip, tmp_path / "zs", "--method", "zeroshot"))
    assert code == 1 and err.count("error:") == 1 and "needs val/ (calibration) and test/" in err, err


@pytest.mark.parametrize("command, shots", [("train", "0"), ("benchmark", "1,0,4"), ("train", "sixteen")])
def test_shots_that_are_no_count_say_what_to_give(cli, tmp_path, command, shots):
    """`--shots 0` said only "expected a positive number or 'all'", with no example of what to pass."""
    code, _, err = cli(command, "--data", tmp_path, "--backbone", "toy", "--shots", shots)
    assert code == 2 and error_lines(err) == [
        f"error: --shots {shots.split(',')[1] if ',' in shots else shots}: expected a positive number or 'all' (give "
        "the labelled images per class, e.g. --shots 16, or --shots all for every training image)"]
