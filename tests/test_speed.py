"""`vip benchmark --speed`: speed.json has every figure, positive and consistent (timings are never asserted)."""

from __future__ import annotations

import json


def test_speed_writes_every_figure(cli, capsys, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "speed"
    code, stdout, stderr = cli("benchmark", "--speed", "--data", isic_small, "--arch", tiny_clip, "--pretrained",
                               "none", "--speed-epochs", "2", "--views", "2", "--out", out, "--device", "cpu",
                               "--workers", "0", "--json")
    assert code == 0, stderr
    # the backbone and the data are loaded once per timed run; each warning is read once
    assert stderr.count("has random weights") == 1, stderr
    report = json.loads((out / "speed.json").read_text())
    assert json.loads(stdout) == {**report, "path": str(out / "speed.json")}
    n_test, n_all = 8, 12 + 8 + 8
    assert report["data"] == {"path": str(isic_small.resolve()), "train": 12, "val": 8, "test": 8}
    assert report["feature_extraction"]["images"] == n_all and report["feature_extraction"]["images_per_s"] > 0
    for run in ("train_cached", "train_cached_warm", "train_reference"):
        assert report[run]["seconds"] > 0 and report[run]["epochs"] == 2
        assert 0 <= report[run]["test_accuracy"] <= 100 and 0 <= report[run]["val_accuracy"] <= 100
        assert report[run]["steps"] == 2 and report[run]["steps_per_s"] > 0  # 12 images in batches of 32: 1 step an epoch
    # the cached run encoded each train image's views once; the warm rerun encoded nothing
    assert report["train_cached"]["timings"]["encoded_views"] == 12 * 2 + 16  # 2 views per train image, no center view
    assert report["train_cached_warm"]["timings"]["encoded_views"] == 0
    assert report["speedup"] > 0 and report["speedup_warm"] > 0
    assert report["reference_text_tower"] == "plain"  # the authors' way (since 0.2.0)
    assert report["predict"]["images"] == n_test and report["predict"]["images_per_s"] > 0
    assert report["memory"]["peak_rss_mib"] > 0 and report["memory"]["cuda_peak_allocated_mib"] is None
    machine = report["machine"]
    assert machine["cpu"] and machine["usable_cores"] >= 1 and machine["torch_threads"] >= 1
    assert machine["device"] == "cpu" and machine["torch"] and machine["open_clip_torch"]
    assert report["schedule"]["name"] == "paper" and report["schedule"]["epochs"] == 2

    from vipcli.cli.benchmark import print_speed

    capsys.readouterr()
    print_speed({**report, "path": str(out / "speed.json")}, as_json=False)
    text = capsys.readouterr().out
    assert "speed-up cached vs reference" in text and f"{report['speedup']:.2f}x" in text and "speed.json" in text
    assert "reference (authors' way)" in text


def _speed(cli, data, config, out, *extra):
    return cli("benchmark", "--speed", "--data", data, "--arch", config, "--pretrained", "none", "--speed-epochs", "1",
               "--views", "1", "--out", out, "--device", "cpu", "--workers", "0", *extra)


def test_speed_refuses_options_it_would_ignore_and_speed_epochs_alone(cli, isic_small, tiny_clip, tmp_path):
    code, _, err = cli("benchmark", "--data", isic_small, "--speed-epochs", "3", "--out", tmp_path / "b")
    assert code == 2 and "error: --speed-epochs goes with --speed" in err
    code, _, err = _speed(cli, isic_small, tiny_clip, tmp_path / "s", "--shots", "4")
    assert code == 2 and "--shots does not apply" in err
    code, _, err = _speed(cli, isic_small, tiny_clip, tmp_path / "s", "--lr", "0.1", "--no-batch")
    assert code == 2 and "--lr, --no-batch do not apply" in err
    code, _, err = _speed(cli, isic_small, tiny_clip, tmp_path / "s", "--epochs", "3")
    assert code == 2 and "(use --speed-epochs N)" in err
    code, _, err = _speed(cli, isic_small, tiny_clip, tmp_path / "s", "--seeds", "4,5")
    assert code == 2 and "error: --speed times one seed (pass a single --seeds value)" in err
    code, _, err = cli("benchmark", "--speed", "--data", isic_small, "--speed-epochs", "0", "--out", tmp_path / "s")
    assert code == 2 and "error: --speed-epochs must be positive, got 0" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "s").exists()


def test_speed_writes_only_into_an_empty_folder_or_a_benchmark_of_the_same_data(cli, isic_small, tiny_clip, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, _, err = _speed(cli, isic_small, tiny_clip, mine)
    assert code == 1 and "holds files of something else (notes.txt)" in err and not (mine / "speed.json").exists()
    other = tmp_path / "other-bench"
    other.mkdir()
    (other / "results.json").write_text(json.dumps({"format": "vip-benchmark", "config": {"data": "/elsewhere"},
                                                    "rows": []}))
    code, _, err = _speed(cli, isic_small, tiny_clip, other)
    assert code == 1 and "holds a benchmark of other data (/elsewhere)" in err and not (other / "speed.json").exists()


def test_a_runs_machine_names_the_gpu_it_ran_on(monkeypatch):
    """metrics.json, results.json rows and speed.json name a CUDA device's GPU; a device that cannot be asked
    (or the CPU) gives the machine alone."""
    import torch

    from vipcli.devices import gpu_name, where_run

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"NVIDIA H200 ({device})")
    assert gpu_name("cuda:0") == "NVIDIA H200 (cuda:0)" and gpu_name("cpu") is None
    assert where_run("cuda:0")["machine"].endswith(", NVIDIA H200 (cuda:0)") and where_run("cuda:0")["device"] == "cuda:0"
    assert ", " not in where_run("cpu")["machine"]

    def unavailable(device):
        raise RuntimeError("no CUDA GPUs are available")

    monkeypatch.setattr(torch.cuda, "get_device_name", unavailable)
    assert gpu_name("cuda") is None and where_run("cuda")["machine"] == where_run("cpu")["machine"]


def test_peak_memory_on_a_system_without_getrusage_is_left_out_not_the_whole_report(monkeypatch):
    """Windows has no `resource` module: `vip benchmark --speed` timed every run, then ended with `unexpected
    ModuleNotFoundError ... this is a bug in vip` and wrote no speed.json."""
    import sys

    import torch

    from vipcli.cli.benchmark import peak_memory_text
    from vipcli.speed import peak_memory

    assert peak_memory(torch.device("cpu"))["peak_rss_mib"] > 0
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` fails, as on Windows
    memory = peak_memory(torch.device("cpu"))
    assert memory == {"peak_rss_mib": None, "children_peak_rss_mib": None, "cuda_peak_allocated_mib": None}
    assert peak_memory_text(memory) == "RSS not measured on this system"
    assert peak_memory_text({"peak_rss_mib": 812.4, "cuda_peak_allocated_mib": 530.0}) == "812 MiB RSS, 530 MiB CUDA"
