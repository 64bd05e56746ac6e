"""`vipcli.api`: vip from Python gives what the commands give, for files and for images in memory."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lesion_runs import make_lesions

import vipcli.api as vip

TOY = dict(backbone="toy", shots=4, epochs=3, views=2, workers=0, device="cpu", seed=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small lesion world, a run trained through the API, and the same run trained by `vip train`."""
    from vipcli.cli.main import main

    root = tmp_path_factory.mktemp("api")
    data = make_lesions(root / "lesions", {"train": 6, "val": 6, "test": 5})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        result = vip.train(data, out=root / "run-api", **TOY)
        code = main(["train", "--data", str(data), "--backbone", "toy", "--shots", "4", "--epochs", "3", "--views",
                     "2", "--workers", "0", "--device", "cpu", "--seed", "1", "--out", str(root / "run-cli")])
    assert code == 0
    return data, result, root


def test_train_writes_the_run_vip_train_writes(world):
    data, result, root = world
    assert result.run_dir == root / "run-api" and result.class_names == ["melanoma", "nevus"]
    written = json.loads((root / "run-api" / "metrics.json").read_text())
    by_command = json.loads((root / "run-cli" / "metrics.json").read_text())
    for split in ("val", "test"):
        assert written[split] == by_command[split] == result.metrics[split]
    assert written["calibration"] == by_command["calibration"]


def test_a_file_and_the_same_image_in_memory_get_the_prediction_of_vip_predict(world, cli):
    data, result, _ = world
    image = sorted((data / "test" / "melanoma").glob("*.png"))[0]
    code, stdout, stderr = cli("predict", image, "--model", result.run_dir, "--json", "--device", "cpu",
                               "--coverage", "0.9")
    assert code == 0, stderr
    record = json.loads(stdout)["predictions"][0]
    model = vip.load(result.run_dir, device="cpu")
    assert model.classes == ["melanoma", "nevus"] and model.method == "vip" and model.calibrated
    from_file = model.predict(image, coverage=0.9)
    with Image.open(image) as opened:
        in_memory = model.predict(opened, coverage=0.9)
    assert from_file.record(explain=False) == {**record, "explanation": None}
    assert from_file.path == str(image) and in_memory.path == ""
    assert in_memory.probabilities == from_file.probabilities  # the same pixels, the same decoding rules
    assert in_memory.prediction_set == from_file.prediction_set == record["prediction_set"]
    explained = model.predict(image, explain=True)
    assert [group["class"] for group in explained.explanation] == model.classes
    assert explained.explanation[0]["symptoms"][0]["symptom"]


def test_predict_many_keeps_the_input_order_of_files_folders_and_images(world, tmp_path):
    data, result, _ = world
    model = vip.load(result.run_dir, device="cpu")
    nevi = sorted((data / "test" / "nevus").glob("*.png"))
    folder = tmp_path / "scans"
    (folder / "deeper").mkdir(parents=True)
    shutil.copyfile(nevi[1], folder / "b.png")
    shutil.copyfile(nevi[2], folder / "deeper" / "a.png")
    (folder / "notes.txt").write_text("not an image")
    with Image.open(nevi[3]) as opened:
        made = model.predict_many([nevi[0], folder, opened.copy(), str(nevi[4])])
    assert [p.path for p in made] == [str(nevi[0]), str(folder / "b.png"), str(folder / "deeper" / "a.png"), "",
                                      str(nevi[4])]
    # a copy is the same image (encoded in a batch of another size: equal up to float rounding)
    assert made[1].probabilities == pytest.approx(model.predict(nevi[1]).probabilities, abs=1e-5)
    assert made[3].probabilities == pytest.approx(model.predict(nevi[3]).probabilities, abs=1e-5)
    assert made[0].probabilities != made[4].probabilities


def test_unreadable_files_raise_unless_skipped_and_wrong_values_are_refused(world, tmp_path, capsys):
    data, result, _ = world
    model = vip.load(result.run_dir, device="cpu")
    good = sorted((data / "test" / "nevus").glob("*.png"))[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(vip.ImageError) as raised:
        model.predict_many([good, broken])
    assert raised.value.path == str(broken) and "skip_unreadable=True" in str(raised.value)
    capsys.readouterr()
    made = model.predict_many([broken, good], skip_unreadable=True)
    assert [p.path for p in made] == [str(good)]
    assert f"skipped {broken}" in capsys.readouterr().err
    with Image.open(good) as closed_after:
        pass
    refused = {
        "Image.open(path).copy()": lambda: model.predict(closed_after),  # a lazily opened image whose file closed
        "no such file": lambda: model.predict(tmp_path / "missing.png"),
        "Image.fromarray": lambda: model.predict(__import__("numpy").zeros((4, 4), dtype="uint8")),
        "cannot classify a torch.Tensor (pass torchvision.transforms.functional.to_pil_image(tensor)":
            lambda: model.predict(__import__("torch").zeros(3, 4, 4)),
        "predict_many([folder])": lambda: model.predict(data / "test"),
        "use model.predict(image)": lambda: model.predict_many(str(good)),
        "coverage=1.5": lambda: model.predict(good, coverage=1.5),
        "shots=0": lambda: vip.train(data, shots=0, backbone="toy"),
        "is a data folder (2 classes: melanoma, nevus), not a run directory": lambda: vip.load(data),
    }
    for words, call in refused.items():
        with pytest.raises(vip.VipError, match=__import__("re").escape(words)):
            call()


def test_predict_many_names_the_files_it_left_out_in_its_result(world, tmp_path):
    """`skip_unreadable=True` named the files it left out only in warnings on stderr: a program had to parse stderr
    (or compare paths) to learn which scans got no prediction. The returned list now carries them."""
    data, result, _ = world
    model = vip.load(result.run_dir, device="cpu")
    good = sorted((data / "test" / "nevus").glob("*.png"))[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with contextlib.redirect_stderr(io.StringIO()):
        made = model.predict_many([broken, good], skip_unreadable=True, workers=0)
        clean = model.predict_many([good], workers=0)
    assert made.failures == {str(broken): "not an image Pillow can read"} and clean.failures == {}
    assert isinstance(made, list) and made == [made[0]] and made[:1] == [made[0]]  # still a list in every other way
    again = pickle.loads(pickle.dumps(made))
    assert again.failures == made.failures and [p.path for p in again] == [str(good)]
    assert "failures=" in repr(made) and "failures=" not in repr(clean)


def test_symptoms_given_as_a_dict_train_with_those_symptoms_as_a_file_of_them_does(world, tmp_path, capsys):
    """A dict was read as a list of its keys, taken for shipped pack names: the run used the shipped
    packs and the caller's symptoms were never read."""
    import yaml

    data, _, root = world
    mine = {"melanoma": ["a dark irregular spot", "several colours in one spot"], "nevus": ["a round even spot"]}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(mine))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        from_dict = vip.train(data, symptoms=mine, out=tmp_path / "from-dict", **TOY)
        assert "symptoms: melanoma <- the symptoms dict; nevus <- the symptoms dict" in capsys.readouterr().err
        from_file = vip.train(data, symptoms=tmp_path / "mine.yaml", out=tmp_path / "from-file", **TOY)
    for run in (from_dict, from_file):
        assert vip.load(run.run_dir, device="cpu")._predictor.metadata["symptoms"] == mine
    assert from_dict.metrics["test"] == from_file.metrics["test"]
    with pytest.raises(vip.VipError, match="the symptoms dict: its pack 'keratosis' matches no class"):
        vip.train(data, symptoms={"keratosis": ["a waxy stuck-on spot"]}, out=tmp_path / "typo", **TOY)
    with pytest.raises(vip.VipError, match="the symptoms dict"):
        vip.train(data, symptoms={"melanoma": [5]}, out=tmp_path / "not-a-list", **TOY)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "not-a-list").exists()


def test_method_options_are_checked_by_type_and_errors_name_them_as_python_does(world, tmp_path):
    data, _, _ = world
    refused = {  # method_options -> what the error says (never the command's --method-option)
        "nctx": ({"nctx": 8}, "method 'vip' has no setting 'nctx' (its settings: n_ctx, class_specific_context)"),
        "float": ({"n_ctx": 2.5}, "method_options['n_ctx']: expected int, got '2.5' (pass a whole number, such as "
                  "method_options['n_ctx']=4)"),  # was a TypeError from torch
        "None": ({"n_ctx": None}, "method_options['n_ctx']: expected int, got 'None'"),  # was blamed on the method
        "text": ({"n_ctx": "eight"}, "method_options['n_ctx']: expected int, got 'eight'"),
        "range": ({"n_ctx": 0}, "method_options['n_ctx'] must be at least 1"),
        "list": ({"n_ctx": [1]}, "method_options['n_ctx']=[1]: expected a number, True/False, None or text"),
        "pairs": ([("n_ctx", 2)], "method_options=[('n_ctx', 2)]: expected a dict"),
    }
    for name, (options, words) in refused.items():
        with pytest.raises(vip.VipError) as raised:
            vip.train(data, method_options=options, out=tmp_path / name, **TOY)
        assert words in str(raised.value) and "--" not in str(raised.value), name
    result = vip.train(data, method_options={"n-ctx": 2, "class_specific_context": 1}, out=tmp_path / "typed",
                       **{**TOY, "epochs": 1})
    run = __import__("yaml").safe_load((result.run_dir / "run.yaml").read_text())
    assert run["method_settings"] == {"n_ctx": 2, "class_specific_context": True}


def test_coverage_and_device_errors_name_the_keyword_arguments(world, tmp_path):
    import torch
    from lesion_runs import strip_calibration

    data, result, _ = world
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    model = vip.load(result.run_dir, device=torch.device("cpu"))  # a torch.device, as a notebook has one
    assert str(model.device) == "cpu"
    with pytest.raises(vip.VipError, match=r"ask for coverage=0\.\d+ or less") as raised:
        model.predict(image, coverage=0.999)
    assert "--" not in str(raised.value)
    uncalibrated = strip_calibration(Path(shutil.copytree(result.run_dir, tmp_path / "uncalibrated")))
    model = vip.load(uncalibrated, device="cpu")
    assert not model.calibrated and model.predict(image).prediction_set is None
    with pytest.raises(vip.VipError, match=r"prediction sets \(retrain it with this vip, or drop coverage\)"):
        model.predict(image, coverage=0.9)
    if not torch.cuda.is_available():
        with pytest.raises(vip.VipError, match=r"^device='cuda:1': no CUDA GPU is visible to torch \(use device='cpu' "
                           r"or device='auto'\)$"):  # "or auto", the command's words
            vip.load(result.run_dir, device="cuda:1")
    for device in (0, 1):  # a GPU's number: 0 read as "auto", 1 was an AttributeError
        with pytest.raises(vip.VipError, match=rf"^device={device}: expected a device's name .*device='cuda:0'"):
            vip.load(result.run_dir, device=device)
        with pytest.raises(vip.VipError, match=rf"^device={device}: "):
            vip.train(data, **{**TOY, "device": device, "out": tmp_path / "run"})
    for missing, words in ((tmp_path / "none", "(pass a run directory written by `vip train`)"),
                           (result.run_dir / "run.yaml", f"(pass {str(result.run_dir)!r}, the run's folder)")):
        with pytest.raises(vip.VipError) as raised:  # these named `vip predict`'s --model
            vip.load(missing)
        assert str(raised.value).endswith(words)


def test_predict_many_refuses_impossible_arguments_before_any_work(world):
    data, result, _ = world
    model = vip.load(result.run_dir, device="cpu")
    image = Image.new("RGB", (32, 32), (120, 80, 60))
    refused = {  # each was a traceback (ValueError, IndexError) or silently classified the current folder
        "batch_size=0: expected a whole number of 1 or more": lambda: model.predict_many([image], batch_size=0),
        "batch_size=-1": lambda: model.predict_many([image], batch_size=-1),
        "batch_size=2.5": lambda: model.predict_many([image], batch_size=2.5),
        "workers=-1: expected a whole number of 0 or more": lambda: model.predict_many([image], workers=-1),
        "image 2 of the input is an empty path": lambda: model.predict_many([image, ""]),
        "image 1 of the input is an empty path": lambda: model.predict(""),
        "image 1 of the input (in memory): an image of no pixels (0x0)":
            lambda: model.predict(Image.new("RGB", (0, 0))),
        "explain='no': expected True or False": lambda: model.predict(image, explain="no"),
        "skip_unreadable='no'": lambda: model.predict_many([image], skip_unreadable="no"),
        "use_cache=0": lambda: model.predict(image, use_cache=0),
        "progress='no'": lambda: model.predict_many([image], progress="no"),
    }
    for words, call in refused.items():
        with pytest.raises(vip.VipError, match=__import__("re").escape(words)):
            call()
    assert len(model.predict_many([image, image], batch_size=1, workers=0)) == 2


def test_explain_on_a_method_that_explains_nothing_says_so_once_on_stderr(world, tmp_path, capsys):
    data, _, _ = world
    probe = vip.train(data, method="linear-probe", out=tmp_path / "probe", **TOY)
    model = vip.load(probe.run_dir, device="cpu")
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    capsys.readouterr()
    made = [model.predict(image, explain=True), model.predict(image, explain=True)]
    assert [p.explanation for p in made] == [None, None]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("method 'linear-probe' gives no per-symptom explanation") == 1


def test_help_of_the_result_classes_describes_every_field():
    import dataclasses

    for kind in (vip.Prediction, vip.TrainResult, vip.BenchmarkResult):
        described = [field.name for field in dataclasses.fields(kind) if f"\n        {field.name}: " in kind.__doc__]
        assert described == [field.name for field in dataclasses.fields(kind)], kind.__name__


def test_errors_about_the_training_arguments_name_them_as_python_does(world, tmp_path):
    """They named the command's options: "--epochs must be a positive number", "choose another --out or pass
    --force", which a Python caller cannot pass."""
    data, result, _ = world
    refused = {  # (numbers of the wrong range are refused before these checks: see the next test)
        "out": ({"out": result.run_dir}, "(choose another out or pass force=True)"),
        "symptoms": ({"symptoms": "no-such-pack"}, "no-such-pack: no such file, folder or shipped pack"),
        "data": ({"data": data.parent / "no-such-folder"}, "(pass data='FOLDER' with one subfolder per class)"),
    }
    for name, (arguments, words) in refused.items():
        with pytest.raises(vip.VipError) as raised:
            vip.train(**{"data": data, **TOY, "out": tmp_path / name, **arguments})
        assert words in str(raised.value) and "--" not in str(raised.value), name


def test_a_command_to_run_and_the_run_to_load_are_named_as_a_python_caller_gives_them(world, tmp_path):
    """The fix of a class without symptoms read "write packs with `vip symptoms generate data DATA`": the
    command's own option reworded inside a command to run in a shell; `vip.load` of a folder holding a run said
    "pass --model FOLDER/run", an option `load` does not take."""
    data, result, _ = world
    shutil.copytree(data, tmp_path / "data")
    shutil.copytree(data / "train" / "nevus", tmp_path / "data" / "train" / "lichen_planus")
    with pytest.raises(vip.VipError) as raised:
        vip.train(tmp_path / "data", **TOY, out=tmp_path / "run")
    assert f"`vip symptoms generate --data {tmp_path / 'data'}`" in str(raised.value)
    assert "pass symptoms='FILE' (YAML" in str(raised.value)
    with pytest.raises(vip.VipError, match="^the symptoms dict: its pack 'melanomma' matches no class of the data"):
        vip.train(data, **TOY, symptoms={"melanomma": ["Dark spots", "Blurry edges"]}, out=tmp_path / "run")
    holder = tmp_path / "holder"
    shutil.copytree(result.run_dir, holder / "run")
    with pytest.raises(vip.VipError) as raised:
        vip.load(holder)
    assert str(raised.value).endswith(f"(it holds the run {holder / 'run'}: pass run_dir='{holder / 'run'}')")
    shutil.copytree(result.run_dir, holder / "second")
    with pytest.raises(vip.VipError, match="pass one of them as run_dir"):
        vip.load(holder)


def test_a_data_folder_to_pass_is_named_as_the_data_keyword_argument(world, tmp_path):
    """`vip.train` of a folder one level above its classes said "pass data nested/images", and of a labels table
    "then pass data='FOLDER'", naming the images' folder where the sorted one was meant."""
    data, _, _ = world
    shutil.copytree(data / "train", tmp_path / "nested" / "images")
    with pytest.raises(vip.VipError) as raised:
        vip.train(tmp_path / "nested", **TOY, out=tmp_path / "run")
    assert str(raised.value).endswith(f"(its class folders seem to be in {tmp_path / 'nested' / 'images'}: pass "
                                      f"data='{tmp_path / 'nested' / 'images'}')")
    table = tmp_path / "labels.csv"
    table.write_text("image,label\n")
    with pytest.raises(vip.VipError) as raised:
        vip.train(table, **TOY, out=tmp_path / "run")
    assert (f"`vip data sort {table} --images IMAGES --out SORTED` (IMAGES: the folder holding them), then pass "
            "data='SORTED'; or pass data='FOLDER' with one subfolder per class") in str(raised.value)


def test_train_arguments_of_the_wrong_type_or_range_are_refused_by_name_before_any_work(world, tmp_path):
    """A str seed, a float epochs or a str lr failed deep inside as Python errors naming neither; a
    negative seed, which `vip train --seed -1` refuses, trained; force="no" was true and replaced the run."""
    data, result, _ = world
    refused = {"seed": ["a", -1, 2**32], "split_seed": ["2", -1], "views": ["8", 0], "epochs": [2.5, 0], "batch_size": [0], "workers": [-1],
               "lr": ["x", 0, True, float("inf")], "encode_batch": [0, "64"]}
    for name, values in refused.items():
        for value in values:
            with pytest.raises(vip.VipError, match=f"^{name}="):
                vip.train(data, **{**TOY, name: value, "out": tmp_path / "run"})
    with pytest.raises(vip.VipError, match="^data=5: expected the path"):
        vip.train(5, **TOY)
    assert not (tmp_path / "run").exists()
    kept = (result.run_dir / "metrics.json").read_bytes()
    for name, value in (("force", "no"), ("use_cache", "no"), ("progress", "no"), ("progress", 1)):
        with pytest.raises(vip.VipError, match=f"^{name}={value!r}: expected True or False"):  # "no" was true
            vip.train(data, **{**TOY, name: value, "out": result.run_dir})
    assert (result.run_dir / "metrics.json").read_bytes() == kept  # force="no" replaced the run


def test_benchmark_gives_the_rows_vip_benchmark_gives_and_resumes_them(world, tmp_path, cli):
    data, _, root = world
    sweep = dict(methods=["zeroshot", "vip"], shots=[1, 2], seeds=[1], backbone="toy", epochs=2, views=2, workers=0,
                 device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        result = vip.benchmark(data, out=tmp_path / "api", **sweep)
        again = vip.benchmark(data, out=tmp_path / "api", **sweep)
        code, _, stderr = cli("benchmark", "--data", data, "--methods", "zeroshot,vip", "--shots", "1,2", "--seeds",
                              "1", "--backbone", "toy", "--epochs", "2", "--views", "2", "--workers", "0", "--device",
                              "cpu", "--out", tmp_path / "cli")
    assert code == 0, stderr
    by_command = json.loads((tmp_path / "cli" / "results.json").read_text())["rows"]
    figures = ("method", "shots", "seed", "test_accuracy", "test_macro_f1", "val_accuracy")
    assert [{k: r[k] for k in figures} for r in result.rows] == [{k: r[k] for k in figures} for r in by_command]
    assert result.trained == 3 and again.trained == 0 and again.skipped == 3 and result.out == tmp_path / "api"
    assert [(r["method"], str(r["shots"]), r["seeds"]) for r in result.summary] == [
        (r["method"], str(r["shots"]), [1]) for r in result.rows]  # one seed: one summary line per row
    with pytest.raises(vip.VipError, match="^seeds: None: expected a whole number"):  # None is one value, not a list
        vip.benchmark(data, seeds=None, **{k: v for k, v in sweep.items() if k != "seeds"})
    with pytest.raises(vip.VipError, match=r"^seeds=\[\]"):
        vip.benchmark(data, seeds=[], **{k: v for k, v in sweep.items() if k != "seeds"})
    with pytest.raises(vip.VipError, match="cocoop"):
        vip.benchmark(data, out=tmp_path / "x", **{**sweep, "methods": ["cocoop"]})


def test_benchmark_rows_are_the_same_batched_or_not_and_with_any_encode_batch(world, tmp_path):
    """`batched` and `encode_batch` are `vip benchmark --no-batch` and `--encode-batch`: how the work is
    grouped, never what it gives."""
    data, _, root = world
    sweep = dict(methods=["vip"], shots=[1, 2], seeds=[1, 2], backbone="toy", epochs=2, views=2, workers=0,
                 device="cpu", use_cache=False)
    figures = ("method", "shots", "seed", "test_accuracy", "test_macro_f1", "val_accuracy")
    batched = vip.benchmark(data, out=tmp_path / "batched", **sweep)
    alone = vip.benchmark(data, out=tmp_path / "alone", batched=False, encode_batch=3, **sweep)
    assert [{k: r[k] for k in figures} for r in batched.rows] == [{k: r[k] for k in figures} for r in alone.rows]
    assert [r["best_epoch"] for r in batched.rows] == [r["best_epoch"] for r in alone.rows]
    assert [r["test_auroc"] for r in batched.rows] == pytest.approx([r["test_auroc"] for r in alone.rows], abs=1e-6)
    assert alone.encoded_views == batched.encoded_views > 0
    for wrong in ("no", None, 0):
        with pytest.raises(vip.VipError, match=f"^batched={wrong!r}: expected True or False"):
            vip.benchmark(data, out=tmp_path / "x", batched=wrong, **sweep)
    with pytest.raises(vip.VipError, match="^encode_batch=0: expected a whole number of 1 or more"):
        vip.benchmark(data, out=tmp_path / "x", encode_batch=0, **sweep)
    assert not (tmp_path / "x").exists()


def test_warnings_name_the_keyword_arguments_on_stderr_and_in_the_result(world, tmp_path, capsys):
    """A shot cap said `--shots 50: ...; capped to 6`, an option a Python caller never wrote."""
    data, _, root = world
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        sweep = vip.benchmark(data, methods="vip", shots=[50], seeds=[1], backbone="toy", workers=0, views=2, epochs=1,
                              device="cpu", out=tmp_path / "b")
        swept = capsys.readouterr().err
        run = vip.train(data, **{**TOY, "shots": 50, "out": tmp_path / "run"})
    trained = capsys.readouterr().err
    assert sweep.warnings == [f"shots=50: class '{name}' has only 6 training images; capped to 6 "
                              "(see shots_used in results)" for name in ("melanoma", "nevus")]
    assert "shots=50: class 'melanoma' has only 6 training images; all 6 are used (pass shots=6 or fewer" in trained
    assert "--" not in trained
    # the result keeps each warning stderr printed, in its words, and no other
    for result, printed in ((sweep, swept), (run, trained)):
        assert result.warnings and [line for line in printed.splitlines() if line.startswith("warning: ")] == \
            [f"warning: {message}" for message in result.warnings]


def test_benchmark_names_a_bad_seed_by_the_keyword_argument_it_came_in(world, tmp_path):

    data, _, _ = world
    sweep = dict(methods=["zeroshot"], shots=[1], backbone="toy", workers=0, out=tmp_path / "b")
    refused = {r"^seeds: '1': expected a whole number of 0 or more \(such as seeds=\[1, 2, 3\]\)": dict(seeds=["1"]),
               r"^seeds: '1,2': expected a whole number": dict(seeds="1,2"),
               r"^seeds: -1: expected a whole number": dict(seeds=(s for s in [1, -1])),
               r"^split_seed='2': expected a whole number of 0 or more \(such as split_seed=1\)": dict(split_seed="2"),
               r"^split_seed=4294967296: expected at most": dict(split_seed=2**32)}
    for message, wrong in refused.items():
        with pytest.raises(vip.VipError, match=message):
            vip.benchmark(data, **{"seeds": [1], **sweep, **wrong})
    assert not (tmp_path / "b").exists()


def test_benchmark_refuses_a_value_listed_twice_as_the_command_does(world, tmp_path):
    """`vip benchmark --seeds 1,1,2` is refused (a typo for 1,2,3 more often than a wish), but `vip.benchmark(seeds=
    [1, 1, 2])` ran two seeds and gave their mean and spread as the sweep's; so for shots and methods."""
    data, _, _ = world
    sweep = dict(methods=["zeroshot"], shots=[1], seeds=[1], backbone="toy", workers=0, out=tmp_path / "b")
    refused = {"seeds=[1, 1, 2]: 1 is listed more than once (list each value once, such as seeds=[1, 2])":
               dict(seeds=[1, 1, 2]),
               "shots=['all', None]: 'all' is listed more than once (list each value once, such as shots=['all'])":
               dict(shots=["all", None]),
               "methods=['zeroshot', 'zeroshot']: 'zeroshot' is listed more than once (list each value once, such as "
               "methods=['zeroshot'])": dict(methods=(m for m in ["zeroshot", "zeroshot"]))}
    for message, wrong in refused.items():
        with pytest.raises(vip.VipError) as refusal:
            vip.benchmark(data, **{**sweep, **wrong})
        assert str(refusal.value) == message
    assert not (tmp_path / "b").exists()


def test_benchmark_refuses_a_method_that_is_not_one_id_by_name(world, tmp_path):
    data, _, _ = world
    sweep = dict(shots=[1], seeds=[1], backbone="toy", workers=0, out=tmp_path / "b")
    refused = {r"^methods: None: expected a method id .*such as methods=\['zeroshot', 'vip'\]": ["vip", None],
               r"^methods: 'zeroshot,vip': .*such as methods=\['zeroshot', 'vip'\], or methods='all'": "zeroshot,vip"}
    for message, methods in refused.items():
        with pytest.raises(vip.VipError, match=message):
            vip.benchmark(data, methods=methods, **sweep)
    assert not (tmp_path / "b").exists()


def test_benchmark_names_a_setting_no_method_has_as_method_options(world, tmp_path):
    data, _, _ = world
    with pytest.raises(vip.VipError, match=r"^method_options\['n_ctx'\]: no benchmarked method has this setting"):
        vip.benchmark(data, methods="zeroshot", shots=[1], seeds=[1], backbone="toy", workers=0,
                      method_options={"n_ctx": 8}, out=tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_benchmark_result_help_names_what_summary_holds(world, tmp_path):
    data, _, root = world
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        sweep = vip.benchmark(data, methods="zeroshot", shots=[1], seeds=[1], backbone="toy", workers=0,
                              out=tmp_path / "b")
    for key in set(sweep.summary[0]) - {"method", "shots", "seeds"}:
        assert key in vip.BenchmarkResult.__doc__ and key in vip.benchmark.__doc__, key
    assert "seeds" in vip.BenchmarkResult.__doc__.split("summary:")[1].split("config:")[0]


def test_importing_the_interface_loads_no_torch_until_something_runs():
    """`import vipcli.api` took 1.5 s (torch, through the result classes' modules) before any call."""
    import subprocess
    import sys

    code = ("import sys, vipcli.api as vip; before = 'torch' in sys.modules; "
            "from vipcli.api import *; import vipcli.train; "
            "print(before, TrainResult is vipcli.train.TrainResult, 'Prediction' in dir(vip))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["False", "True", "True"]
    with pytest.raises(AttributeError, match="has no attribute 'Predictor'"):
        vip.Predictor


def test_tools_that_read_the_annotations_resolve_them_and_torch_loads_only_then():
    """`typing.get_type_hints(vip.train)` was NameError: name 'TrainResult' (and 'torch') is not defined, as IDEs,
    pydantic, typer wrappers and sphinx-autodoc-typehints call it; the names were imported only for type checkers."""
    import subprocess
    import sys

    code = ("import sys, typing, inspect, vipcli.api as vip; before = 'torch' in sys.modules; "
            "hints = {f.__qualname__: typing.get_type_hints(f) for f in (vip.train, vip.benchmark, vip.load, "
            "vip.Model.predict, vip.Model.predict_many, vip.Model.device.fget, vip.TrainResult)}; "
            "inspect.signature(vip.Model.predict, eval_str=True); import torch, PIL.Image; "
            "print(before, hints['train']['return'] is vip.TrainResult, hints['benchmark']['return'] is "
            "vip.BenchmarkResult, hints['load']['device'] == str | torch.device, hints['load']['return'] is vip.Model, "
            "hints['Model.predict']['image'] == str | vip.os.PathLike | PIL.Image.Image, "
            "hints['Model.predict_many']['return'] is vip.Predictions, hints['Model.device']['return'] is torch.device, "
            "hints['TrainResult']['run_dir'] is vip.Path)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["False"] + ["True"] * 8


def test_json_of_vip_train_and_vip_benchmark_lists_the_warnings_stderr_printed(world, tmp_path, cli):
    """`--json` is for tools that read no stderr: a short class's warning is in the document too."""
    data, _, root = world
    common = ("--data", data, "--backbone", "toy", "--shots", "50", "--epochs", "1", "--views", "2", "--workers", "0",
              "--device", "cpu", "--json")
    for command, extra in (("train", ("--out", tmp_path / "run")),
                           ("benchmark", ("--methods", "vip", "--seeds", "1", "--out", tmp_path / "sweep"))):
        code, out, err = cli(command, *common, *extra)
        assert code == 0, err
        printed = [line.removeprefix("warning: ") for line in err.splitlines() if line.startswith("warning: ")]
        assert any(line.startswith("--shots 50: class 'melanoma' has only 6") for line in printed)
        assert json.loads(out)["warnings"] == printed


def test_in_a_jupyter_notebook_warnings_go_to_stderr_where_redirect_stderr_silences_them(world, tmp_path, monkeypatch):
    """rich sent every line to the notebook's display (past sys.stderr) when it saw a Jupyter kernel."""
    import builtins
    import sys
    import types

    data, result, _ = world
    displayed = []
    ipython, display = types.ModuleType("IPython"), types.ModuleType("IPython.display")
    display.display, display.Markdown = lambda *shown, **options: displayed.append(shown), object
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    monkeypatch.setattr(builtins, "get_ipython", lambda: type("ZMQInteractiveShell", (), {})(), raising=False)
    model = vip.load(result.run_dir, device="cpu")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = sorted((data / "test" / "nevus").glob("*.png"))[0]
    with contextlib.redirect_stderr(io.StringIO()) as err:
        made = model.predict_many([broken, good], skip_unreadable=True, workers=0)
    assert [p.path for p in made] == [str(good)]
    assert err.getvalue() == f"warning: skipped {broken}: not an image Pillow can read\n" and displayed == []


def test_the_callers_pil_pixel_limit_is_left_as_it_was(world, monkeypatch):
    """Reading a file set PIL's global `Image.MAX_IMAGE_PIXELS` to vip's 200 MP and left it there: a notebook that
    had lifted it (None, for slides) could no longer open its own large images."""
    data, result, _ = world
    model = vip.load(result.run_dir, device="cpu")
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    for limit in (None, 1_000_000):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        assert model.predict(image).label in model.classes
        assert Image.MAX_IMAGE_PIXELS == limit


def test_training_loading_and_predicting_leave_the_callers_random_numbers_as_they_were(world, tmp_path):
    """`vip.train` seeded torch's global generator with its own seed: the notebook's next torch.rand() was the
    run's, not the one the caller's own seed gave; and rich, imported by a first call, drew from `random`.
    A fresh process, so that every module the calls import loads inside them."""
    import subprocess
    import sys

    data, _, root = world
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    code = f"""
import random, numpy, torch
import vipcli.api as vip
def draws():
    return torch.rand(3).tolist(), random.random(), numpy.random.rand()
def seed_all(seed):
    torch.manual_seed(seed), random.seed(seed), numpy.random.seed(seed)
seed_all(5)
expected = draws()
seed_all(5)
vip.train({str(data)!r}, out={str(tmp_path / "run")!r}, **{TOY!r})
vip.load({str(tmp_path / "run")!r}, device="cpu").predict({str(image)!r})
vip.benchmark({str(data)!r}, methods="vip", shots=[1], seeds=[2], backbone="toy", epochs=1, views=2, workers=0,
              device="cpu", out={str(tmp_path / "sweep")!r})
print(draws() == expected)
"""
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "VIP_CACHE_DIR": str(root / "cache")})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["True"]


def test_an_apple_gpus_random_numbers_are_put_back_too(monkeypatch):
    """On a Mac, a run on "mps" seeds the Apple GPU's generator (torch.manual_seed seeds every device), and only
    the CPU's and CUDA's were put back. Here a stand-in for torch.mps keeps the state the block leaves."""
    import torch

    from vipcli.api import _callers_random_state

    held = {"state": torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: held["state"].clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: held.update(state=state))

    @_callers_random_state()
    def seeds_the_device():
        held["state"] = torch.tensor([9, 9, 9], dtype=torch.uint8)

    seeds_the_device()
    assert held["state"].tolist() == [1, 2, 3]


def test_results_show_as_one_short_line_in_a_notebook(world, tmp_path):
    """A notebook cell ending in `result` printed the whole of metrics.json (the epoch history: 5 kB), and a sweep
    every row and its configuration."""
    data, result, root = world
    shown = repr(result)
    assert shown.startswith(f"<TrainResult {str(result.run_dir)!r}: melanoma, nevus; val accuracy "
                            f"{result.metrics['val']['accuracy']}%, test accuracy {result.metrics['test']['accuracy']}%; ")
    assert shown.endswith(" unreadable files>") and len(shown) < len(str(result.run_dir)) + 120
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        sweep = vip.benchmark(data, methods=["zeroshot", "symptom-zeroshot"], shots=[1], seeds=[1, 2], backbone="toy",
                              workers=0, views=2, device="cpu", out=tmp_path / "b")
    assert repr(sweep).startswith(f"<BenchmarkResult {str(tmp_path / 'b')!r}: 4 rows (4 run now, 0 resumed); "
                                  "methods zeroshot, symptom-zeroshot; shots 0; seeds 1, 2; ")
    assert repr(sweep).endswith(" unreadable files>") and len(repr(sweep)) < len(str(sweep.out)) + 160


def test_every_argument_of_the_interface_is_annotated_as_help_shows_it():
    """help(vip.train) showed `symptoms: "'Iterable[str] | ...'"` (an annotation quoted twice) and `predict(image)`
    said nothing of what an image may be."""
    import inspect

    for function in (vip.train, vip.benchmark, vip.load, vip.Model.predict, vip.Model.predict_many):
        signature = inspect.signature(function)
        for name, parameter in signature.parameters.items():
            if name != "self":
                assert parameter.annotation is not inspect.Parameter.empty, (function.__name__, name)
                assert not parameter.annotation.startswith(("'", '"')), (function.__name__, name)
        assert signature.return_annotation is not inspect.Signature.empty and '"' not in signature.return_annotation
    assert inspect.signature(vip.Model.predict).parameters["image"].annotation == "str | os.PathLike | Image.Image"


def test_a_symptoms_source_given_twice_is_refused_as_the_command_refuses_it(world, tmp_path, cli):
    """`--symptoms melanoma --symptoms melanoma` was refused since the twenty-sixth review, while
    `symptoms=["melanoma", "melanoma"]` trained on the pack as if given once."""
    data, _, _ = world
    code, _, err = cli("train", "--data", data, "--symptoms", "melanoma", "--symptoms", "./melanoma",
                       "--out", tmp_path / "cli")
    assert code == 2 and err.startswith("error: --symptoms './melanoma' is given twice (as 'melanoma') (give each")
    for function in (vip.train, vip.benchmark):
        for twice, words in ((["melanoma", "nevus", "melanoma"], "symptoms 'melanoma' is given twice"),
                             ([Path("a.yaml"), "./a.yaml"], "symptoms './a.yaml' is given twice (as 'a.yaml')")):
            with pytest.raises(vip.VipError) as raised:
                function(data, symptoms=twice, backbone="toy", device="cpu", out=tmp_path / "api")
            assert (raised.value.message, raised.value.hint, raised.value.exit_code) == (words, "give each source once", 2)
    assert not (tmp_path / "cli").exists() and not (tmp_path / "api").exists()


def test_the_warnings_kept_are_every_warning_printed_unreadable_files_included(world, tmp_path, cli, capsys):
    """`TrainResult.warnings` (and `vip train --json`'s "warnings") lacked the `skipped FILE: reason` lines
    stderr printed after the run: only `vip benchmark` kept them."""
    data, _, root = world
    copy = tmp_path / "lesions"
    shutil.copytree(data, copy)
    (copy / "test" / "nevus" / "broken.png").write_bytes(b"not a png")
    skipped = f"skipped test/nevus/broken.png in {copy}: not an image Pillow can read"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIP_CACHE_DIR", str(root / "cache"))
        capsys.readouterr()
        run = vip.train(copy, **{**TOY, "out": tmp_path / "run"})
        trained = capsys.readouterr().err
        sweep = vip.benchmark(copy, methods="linear-probe", shots=[2], seeds=[1], backbone="toy", workers=0, views=2,
                              device="cpu", out=tmp_path / "sweep")
        swept = capsys.readouterr().err
        code, out, err = cli("train", "--data", copy, "--backbone", "toy", "--shots", "4", "--epochs", "1", "--views",
                             "2", "--workers", "0", "--device", "cpu", "--out", tmp_path / "cli", "--json")
    assert code == 0, err
    for warnings, printed in ((run.warnings, trained), (sweep.warnings, swept), (json.loads(out)["warnings"], err)):
        assert skipped in warnings
        assert [f"warning: {line}" for line in warnings] == [line for line in printed.splitlines()
                                                             if line.startswith("warning: ")]


def test_an_unreadable_file_given_to_predict_is_answered_with_a_fix_predict_takes(world, tmp_path):
    """`predict` has no `skip_unreadable`: its error named that keyword argument as the fix, and following it was a
    TypeError. Its fix now names what to do with the file, and where skipping is offered."""
    import inspect

    _, result, _ = world
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    model = vip.load(result.run_dir, device="cpu")
    with pytest.raises(vip.ImageError) as raised:
        model.predict(broken)
    assert raised.value.path == str(broken) and "fix or replace it" in str(raised.value)
    assert "skip_unreadable" not in inspect.signature(vip.Model.predict).parameters
    assert "or pass skip_unreadable=True" not in raised.value.hint
    assert "model.predict_many(files, skip_unreadable=True)" in raised.value.hint
    with pytest.raises(vip.VipError, match=r"^cannot classify an int \(pass image files"):  # not "a int"
        model.predict(3)


def test_results_turn_into_the_json_documents_the_commands_print(world, tmp_path, cli):
    """`dataclasses.asdict(result)` held Paths, which `json.dumps` refuses; `to_dict()` is the `--json` document."""
    data, result, root = world
    document = result.to_dict()
    assert json.loads(json.dumps(document)) == document and document["run_dir"] == str(result.run_dir)
    assert document["test"] == json.loads((result.run_dir / "metrics.json").read_text())["test"]
    code, out, err = cli("train", "--data", data, "--backbone", "toy", "--shots", "4", "--epochs", "1", "--views", "2",
                         "--workers", "0", "--device", "cpu", "--out", tmp_path / "run", "--json")
    assert code == 0, err
    assert list(document) == list(json.loads(out))

    sweep_args = dict(methods=["zeroshot"], seeds=[1], backbone="toy", views=2, workers=0, device="cpu")
    code, out, err = cli("benchmark", "--data", data, "--methods", "zeroshot", "--seeds", "1", "--backbone", "toy",
                         "--views", "2", "--workers", "0", "--device", "cpu", "--out", tmp_path / "sweep", "--json")
    assert code == 0, err
    printed = json.loads(out)
    sweep = vip.benchmark(data, out=tmp_path / "sweep", **sweep_args)  # resumed: the rows the command ran
    document = sweep.to_dict()
    assert json.loads(json.dumps(document)) == document and list(document) == list(printed)
    assert document["out"] == printed["out"] and document["rows"] == printed["rows"]
    assert document["summary"] == printed["summary"] and document["skipped"] == printed["trained"] == 1


def test_quiet_drops_the_plan_and_progress_lines_and_keeps_the_warnings(world, tmp_path, capsys):
    """A notebook or a pipeline that wants only the warnings passes quiet=True, as `vip -q` does."""
    data, _, _ = world
    capsys.readouterr()
    result = vip.train(data, out=tmp_path / "run", quiet=True, progress=True, **{**TOY, "shots": 50, "epochs": 1})
    err = capsys.readouterr().err
    assert result.warnings and err.splitlines() == [f"warning: {line}" for line in result.warnings]
    sweep = vip.benchmark(data, methods=["zeroshot"], seeds=[1], out=tmp_path / "sweep", quiet=True,
                          **{key: TOY[key] for key in ("backbone", "views", "workers", "device")})
    err = capsys.readouterr().err
    assert "benchmark of" not in err and err.splitlines() == [f"warning: {line}" for line in sweep.warnings]
    vip.train(data, out=tmp_path / "loud", **{**TOY, "epochs": 1})
    assert "vip on 2 classes" in capsys.readouterr().err
    with pytest.raises(vip.VipError, match=r"quiet='yes': expected True or False"):
        vip.train(data, out=tmp_path / "never", quiet="yes", **TOY)


def test_a_model_pickles_as_its_run_folder_and_loads_again_with_the_same_predictions(world):
    """Pickling a Model (multiprocessing, joblib) failed in the backbone (`Can't pickle <function ...tokenize>`)."""
    import pickle

    import torch

    data, result, _ = world
    image = sorted((data / "test" / "melanoma").glob("*.png"))[0]
    model = vip.load(result.run_dir, device=torch.device("cpu"), use_cache=False)
    again = pickle.loads(pickle.dumps(model))
    assert repr(again) == repr(model) and again.run_dir == model.run_dir
    assert again.predict(image, use_cache=False) == model.predict(image, use_cache=False)


def test_a_gpu_out_of_memory_is_a_vip_error_naming_the_argument_to_lower(world, tmp_path, monkeypatch):
    """`vip train` says what to lower when the GPU runs out of memory; from Python, torch's OutOfMemoryError came
    through as it was, with the allocator's figures and no fix. Each call names its own argument: `encode_batch`
    for train, `batch_size` for predict_many."""
    import torch

    from vipcli import features

    data, result, _ = world
    model = vip.load(result.run_dir, device="cpu")

    def full(*_, **__):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                                     "79.19 GiB")

    monkeypatch.setattr(features, "_encode_batch", full)
    fix = "(pass a smaller {} (images per encoder call, 64 by default), or free the GPU"
    with pytest.raises(vip.VipError) as raised:
        vip.train(data, out=tmp_path / "run", **TOY)
    assert str(raised.value).startswith("the GPU ran out of memory (CUDA out of memory) " + fix.format("encode_batch"))
    assert not (tmp_path / "run").exists()
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    for given in (image, Image.open(image)):  # a file, and an image in memory
        with pytest.raises(vip.VipError) as raised:
            model.predict_many([given], use_cache=False)
        assert str(raised.value).startswith("the GPU ran out of memory (CUDA out of memory) " +
                                            fix.format("batch_size"))
    monkeypatch.setenv("VIP_DEBUG", "1")  # torch's own error, for a bug report
    with pytest.raises(torch.OutOfMemoryError):
        model.predict_many([image], use_cache=False)


def test_numpy_numbers_are_taken_as_the_numbers_they_are(world, tmp_path):
    """A notebook's numbers are often NumPy's (`np.arange`, an array's items): `shots=np.int64(4)` was refused as
    `expected a positive number of images per class`, and `seeds=np.int64(1)` raised a bare TypeError."""
    import numpy as np

    data, result, _ = world
    numbers = dict(shots=np.int64(4), epochs=np.int64(3), views=np.int32(2), workers=np.int64(0), seed=np.int64(1),
                   lr=np.float64(0.002))
    again = vip.train(data, out=tmp_path / "run", **{**TOY, **numbers})
    assert again.metrics["test"] == result.metrics["test"]
    sweep = vip.benchmark(data, methods="zeroshot", seeds=np.int64(1), shots=np.array([1]), out=tmp_path / "sweep",
                          **{key: TOY[key] for key in ("backbone", "views", "workers", "device")})
    assert [row["seed"] for row in sweep.rows] == [1] and json.dumps(sweep.to_dict())
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    prediction = vip.load(result.run_dir, device="cpu").predict(image, coverage=np.float32(0.9))
    assert prediction.prediction_set
    with pytest.raises(vip.VipError, match=r"shots=np.int64\(0\): expected a positive number"):
        vip.train(data, out=tmp_path / "never", **{**TOY, "shots": np.int64(0)})


def test_quiet_on_predict_and_predict_many_drops_the_note_and_progress_and_nothing_reaches_stdout(world, tmp_path,
                                                                                                  capsys):
    """`quiet` was on `train` and `benchmark` only: `predict` and `predict_many` printed their note (a method that
    explains nothing) whatever the caller asked, and took no `quiet`. Nothing of vip goes to stdout either way."""
    data, _, _ = world
    probe = vip.train(data, method="linear-probe", out=tmp_path / "probe", quiet=True, **TOY)
    vip.benchmark(data, methods=["zeroshot"], seeds=[1], out=tmp_path / "sweep", quiet=True,
                  **{key: TOY[key] for key in ("backbone", "views", "workers", "device")})
    model = vip.load(probe.run_dir, device="cpu")
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert capsys.readouterr().out == ""
    assert model.predict(image, explain=True, quiet=True).explanation is None
    made = model.predict_many([data / "test" / "nevus", broken], explain=True, skip_unreadable=True, progress=True,
                              quiet=True)
    assert [p.path for p in made] == [str(path) for path in sorted((data / "test" / "nevus").glob("*.png"))]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [f"warning: skipped {broken}: not an image Pillow can "
                                                                "read"]  # the warning stays, as with `vip -q`
    model.predict(image, explain=True)  # the note a quiet call left unsaid is said by the next call that is not
    captured = capsys.readouterr()
    assert captured.out == "" and "method 'linear-probe' gives no per-symptom explanation" in captured.err
    for call in (lambda: model.predict(image, quiet="yes"), lambda: model.predict_many([image], quiet=1)):
        with pytest.raises(vip.VipError, match=r"^quiet=('yes'|1): expected True or False"):
            call()


class _Fspath:
    """A path-like that is neither a str nor a pathlib path: an object with `__fspath__`, as py.path.local is."""

    def __init__(self, path):
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


def test_every_path_argument_takes_any_path_like_and_refuses_anything_else_by_name(world, tmp_path):
    """A path given as an `os.PathLike` other than pathlib.Path (py.path.local, a class with `__fspath__`, a
    PurePosixPath) was refused as data (`expected the path of a folder`), as an image (`cannot classify a ...`)
    and as a symptoms file (read as `<... object at 0x...>`); `load(5)` raised a bare TypeError."""
    from pathlib import PurePosixPath

    import yaml

    data, result, _ = world
    mine = {"melanoma": ["a dark irregular spot"], "nevus": ["a round even spot"]}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(mine))
    run = vip.train(_Fspath(data), symptoms=[_Fspath(tmp_path / "mine.yaml")], out=PurePosixPath(tmp_path / "run"),
                    **TOY)
    assert run.run_dir == tmp_path / "run"
    model = vip.load(_Fspath(run.run_dir), device="cpu")
    assert model._predictor.metadata["symptoms"] == mine
    image = sorted((data / "test" / "nevus").glob("*.png"))[0]
    assert model.predict(_Fspath(image)).path == str(image)
    folder = data / "test" / "nevus"
    by_path = model.predict_many([folder])
    mixed = model.predict_many([PurePosixPath(folder), str(image)])
    expected = [*by_path, by_path[0]]
    assert [(p.path, p.label) for p in mixed] == [(p.path, p.label) for p in expected]
    for got, wanted in zip(mixed, expected):  # a batch of 6, not 5: on some CPUs the kernels round otherwise
        assert got.probabilities == pytest.approx(wanted.probabilities, abs=1e-5)
    refused = {
        "data=5: expected the path of a folder of class subfolders (a str or os.PathLike)":
            lambda: vip.train(5, **TOY),
        "data=b'lesions': expected the path": lambda: vip.benchmark(b"lesions", backbone="toy"),
        "out=3: expected the path of the folder to write (a str or os.PathLike)":
            lambda: vip.train(data, **{**TOY, "out": 3}),
        "run_dir=5: expected the path of a run folder": lambda: vip.load(5),
        "run_dir='': expected the path of a run folder": lambda: vip.load(""),
        "symptoms=5: expected a symptom pack's name, or the path of a symptoms file or folder":
            lambda: vip.train(data, symptoms=["melanoma", 5], **TOY),
        "cannot classify an int (pass image files or folders (a str or os.PathLike) or PIL images)":
            lambda: model.predict_many([image, 5]),
        "cannot classify None (pass image files": lambda: model.predict(None),  # not "a NoneType"
    }
    for words, call in refused.items():
        with pytest.raises(vip.VipError) as raised:
            call()
        assert str(raised.value).startswith(words), str(raised.value)


def _not_plain(value, where: str = "") -> list[str]:
    """Where `value` holds anything but Python's str, int, float, bool, None, lists and dicts (a NumPy number)."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _not_plain(item, f"{where}[{key!r}]")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _not_plain(item, f"{where}[{index}]")]
    return [] if value is None or type(value) in (str, int, float, bool) else [f"{where}: {type(value).__name__}"]


def test_the_metrics_a_run_and_a_sweep_return_are_plain_python_values(world, tmp_path):
    """`result.metrics["test"]["vs_chance"]` held NumPy floats (`np.float64(0.0123)` in a notebook, not the plain
    number metrics.json holds), and so did each benchmark row's `test_vs_chance`."""
    data, result, _ = world
    assert result.metrics["test"]["vs_chance"] and _not_plain(result.metrics) == []
    sweep = vip.benchmark(data, methods=["zeroshot"], seeds=[1], out=tmp_path / "sweep", quiet=True,
                          **{key: TOY[key] for key in ("backbone", "views", "workers", "device")})
    assert sweep.rows[0]["test_vs_chance"] and _not_plain(sweep.to_dict()) == []
