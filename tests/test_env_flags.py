"""VIP_QUIET, VIP_DEBUG and VIP_CUDA_GRAPHS: the usual on/off spellings, any case; anything else refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vipcli.graphs

REFUSED = "is neither on nor off (set it to 1, true, yes or on, or to 0, false, no or off, or unset it)"


def _sort(cli, tmp_path):
    """`vip data sort` of a 4-image table: it prints a `next:` hint, which VIP_QUIET drops (no backbone, quick)."""
    from PIL import Image

    images = tmp_path / "img"
    images.mkdir(exist_ok=True)
    for number in range(4):
        Image.new("RGB", (8, 8), (number * 60, 40, 90)).save(images / f"i{number}.png")
    (tmp_path / "gt.csv").write_text("image,label\n" + "".join(f"i{n},{'xy'[n % 2]}\n" for n in range(4)))
    return cli("data", "sort", tmp_path / "gt.csv", "--images", images, "--out", tmp_path / "s", "--force")


@pytest.mark.parametrize("value", ["1", "true", "True", "YES", " on ", "yes"])
def test_vip_quiet_takes_the_usual_spellings_of_on(cli, tmp_path, monkeypatch, value):
    monkeypatch.setenv("VIP_QUIET", value)
    code, out, err = _sort(cli, tmp_path)
    assert code == 0 and out and err == ""


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF", ""])
def test_vip_quiet_takes_the_usual_spellings_of_off(cli, tmp_path, monkeypatch, value):
    monkeypatch.setenv("VIP_QUIET", value)
    code, out, err = _sort(cli, tmp_path)
    assert code == 0 and "next: vip train --data " in err


@pytest.mark.parametrize("name", ["VIP_QUIET", "VIP_DEBUG", "VIP_CUDA_GRAPHS"])
def test_a_value_neither_on_nor_off_is_refused_before_the_command_runs(cli, tmp_path, monkeypatch, name):
    monkeypatch.setenv(name, "maybe")
    code, out, err = _sort(cli, tmp_path)
    assert (code, out, err) == (2, "", f"error: {name}='maybe' {REFUSED}\n")
    assert not (tmp_path / "s").exists()  # nothing written
    code, out, err = cli("--version")  # what the user needs to read about vip still works
    assert code == 0 and out.startswith("vip ")
    for command in (["train", "--help"], ["cache", "clear", "-h"], ["symptoms", "-q", "show", "--help"]):
        code, out, err = cli(*command)  # a command's help too, as `vip --help`
        assert code == 0 and "Usage: vip " in out and err == "", (command, err)
    code, out, err = cli("train", "--", "--help")  # after `--`, --help is no option
    assert code == 2 and err == f"error: {name}='maybe' {REFUSED}\n"


def test_vip_debug_yes_lets_the_error_through(cli, tmp_path, monkeypatch):
    from vipcli.errors import VipError

    monkeypatch.setenv("VIP_DEBUG", "yes")
    with pytest.raises(VipError, match="missing"):
        cli("train", "--backbone", "toy", "--data", tmp_path / "missing")
    monkeypatch.setenv("VIP_DEBUG", "false")
    code, _, err = cli("train", "--backbone", "toy", "--data", tmp_path / "missing")
    assert code == 1 and err.startswith("error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize("value, graphs", [("off", False), ("False", False), ("no", False), ("on", True), ("", True)])
def test_vip_cuda_graphs_takes_the_usual_spellings(monkeypatch, value, graphs):
    monkeypatch.setenv("VIP_CUDA_GRAPHS", value)
    assert (vipcli.graphs.graph_maker(torch.device("cuda")) is not None) == graphs


def test_the_library_refuses_a_value_neither_on_nor_off_before_any_work(tmp_path, monkeypatch):
    from vipcli import api
    from vipcli.errors import UsageError

    (tmp_path / "data" / "a").mkdir(parents=True)
    monkeypatch.setenv("VIP_QUIET", "ture")
    with pytest.raises(UsageError, match=f"VIP_QUIET='ture' {REFUSED[:20]}"):
        api.train(tmp_path / "data", backbone="toy", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match=f"VIP_QUIET='ture' {REFUSED[:20]}"):  # load too, before the backbone loads
        api.load(Path(__file__).parent / "fixtures" / "run-v0.1.0" / "vip", device="cpu")


@pytest.mark.parametrize("value", ["ten", "-1", "nan"])
def test_a_progress_interval_that_is_no_number_of_seconds_is_refused_before_the_command_runs(cli, tmp_path,
                                                                                           monkeypatch, value):
    """VIP_PROGRESS_SECONDS=ten stopped `vip demo` midway with "unexpected ValueError ... this is a bug in vip"."""
    monkeypatch.setenv("VIP_PROGRESS_SECONDS", value)
    code, out, err = _sort(cli, tmp_path)
    assert (code, out) == (2, "") and err.splitlines() == [
        f"error: VIP_PROGRESS_SECONDS={value!r} is not a number of seconds (set it to 0 or more, such as 30, or unset "
        "it (the default is 10))"]
    assert not (tmp_path / "s").exists()
