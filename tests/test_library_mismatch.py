"""Installed library versions that cannot work together are one line, before any work."""

from __future__ import annotations

import numpy
import pytest
import torch

from conftest import error_lines, tiny_train_args


@pytest.fixture
def torch_without_numpy(monkeypatch):
    """torch as it behaves when built for NumPy 1 beside NumPy 2: every conversion from NumPy fails."""
    from vipcli import compat

    def refuse(array):
        raise RuntimeError("Numpy is not available")

    monkeypatch.setattr(torch, "from_numpy", refuse)
    compat.torch_numpy_error.cache_clear()
    yield
    compat.torch_numpy_error.cache_clear()


def expected_line() -> str:
    return f"error: torch {torch.__version__} cannot use the installed NumPy {numpy.__version__}"


def test_torch_that_cannot_use_numpy_is_named_before_any_work(cli, monkeypatch, isic_small, tiny_clip, tmp_path,
                                                               torch_without_numpy):
    import vipcli.features
    import vipcli.registry

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the libraries were checked")

    monkeypatch.setattr(vipcli.registry, "load_backbone", refuse)
    monkeypatch.setattr(vipcli.features, "load_image", refuse)
    out = tmp_path / "run"
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out))
    assert code == 1 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith(expected_line()), err
    assert "pip install 'numpy<2'" in err and "bug in vip" not in err
    assert not out.exists()


def test_the_error_boundary_names_the_mismatch_wherever_it_is_met_first(cli, monkeypatch, torch_without_numpy):
    """A command that converts from NumPy before choosing a device still gets the line, not 'a bug in vip'."""
    import vipcli.cli.main as main

    def command(**kwargs):  # stands in for the typer app: a command that converts an array first
        torch.from_numpy(numpy.zeros(2))

    monkeypatch.setattr(main, "app", command)
    code, _, err = cli("train")
    assert code == 1 and error_lines(err)[0].startswith(expected_line()), err


def test_an_unexpected_error_with_working_libraries_is_still_reported_as_a_bug(cli, monkeypatch):
    import vipcli.cli.main as main

    def command(**kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(main, "app", command)
    code, _, err = cli("train")
    assert code == 1 and "unexpected RuntimeError: something else" in err and "bug in vip" in err


def test_vip_starts_without_click_installed():
    """typer >= 0.20 vendors click and no longer installs it: vip must not need the separate package."""
    import subprocess
    import sys

    typer = pytest.importorskip("typer")
    if not hasattr(typer, "_click"):
        pytest.skip("this typer still depends on click")
    code = ("import sys; sys.modules['click'] = None  # as if click were not installed\n"
            "from vipcli.cli.main import main\n"
            "sys.exit(main(['train', '--shots', '0', '--data', '.']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr
    assert "click" not in result.stderr
