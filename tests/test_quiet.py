"""`-q/--quiet` and VIP_QUIET=1: no progress or informational lines on stderr; results, warnings and errors stay."""

from __future__ import annotations

from lesion_runs import make_lesions


def _train(lesions, out, *extra):
    return ["train", "--backbone", "toy", "--data", lesions, "--shots", "10", "--epochs", "1", "--views", "1",
            "--workers", "0", "--device", "cpu", "--out", out, *extra]


def test_quiet_drops_progress_and_info_but_keeps_results_and_warnings(cli, tmp_path, monkeypatch):
    lesions = make_lesions(tmp_path / "lesions", {"train": 6, "val": 4, "test": 4})
    monkeypatch.setenv("VIP_PROGRESS_SECONDS", "0")  # a progress line at every step
    quiet = [cli(*_train(lesions, tmp_path / "run"), "-q")]
    code, loud_out, loud_err = cli(*_train(lesions, tmp_path / "run", "--force"))  # -q did not outlive its command
    assert code == 0
    assert "encoding images: " in loud_err and "vip on 2 classes" in loud_err  # what -q has to drop
    warnings = [line for line in loud_err.splitlines() if line.startswith("warning:")]
    assert any(line.startswith("warning: --shots 10: class") for line in warnings)  # 6 training images a class
    for code, out, err in quiet:
        assert code == 0
        assert err.splitlines() == warnings
        assert out.splitlines()[:-1] == loud_out.splitlines()[:-1]  # the same results (the last line: timings)


def test_quiet_before_the_command_and_vip_quiet_drop_the_hints(cli, tmp_path, monkeypatch):
    """`vip -q COMMAND` and VIP_QUIET=1, on a command that needs no backbone (a train each took seconds)."""
    from PIL import Image

    images = tmp_path / "img"
    images.mkdir()
    for number in range(4):
        Image.new("RGB", (8, 8), (number * 60, 40, 90)).save(images / f"i{number}.png")
    (tmp_path / "gt.csv").write_text("image,label\n" + "".join(f"i{n},{'xy'[n % 2]}\n" for n in range(4)))

    def sort(*before, after_group=()):
        return cli(*before, "data", *after_group, "sort", tmp_path / "gt.csv", "--images", images,
                   "--out", tmp_path / "s", "--force")

    code, loud_out, loud_err = sort()
    assert code == 0 and "next: vip train --data " in loud_err  # what quiet has to drop
    quiet = [sort("-q"), sort("--quiet"), sort(after_group=["-q"])]  # the last: `vip data -q sort`
    monkeypatch.setenv("VIP_QUIET", "1")
    quiet.append(sort())
    assert quiet == [(0, loud_out, "")] * 4


def test_quiet_keeps_errors(cli, tmp_path):
    code, out, err = cli("train", "-q", "--backbone", "toy", "--data", tmp_path / "missing")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and len(err.splitlines()) == 1


def _draw_a_bar() -> None:
    from vipcli import console

    with console.progress_bar() as bar, console.task(bar, "encoding images", 3) as advance:
        for _ in range(3):
            advance()


def test_quiet_draws_no_progress_bar_on_a_terminal(capsys, monkeypatch):
    from vipcli import console

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich takes stderr for a terminal: the bar, not log lines
    _draw_a_bar()
    assert "encoding images" in capsys.readouterr().err
    with console.quiet():
        _draw_a_bar()
    assert capsys.readouterr().err == ""
