"""A single-value option given twice is one usage error in every command (`vipcli.cli.once`): click kept
the last value, so `vip train --seed 1 --seed 2` trained seed 2 alone without a word."""

from __future__ import annotations

import pytest
import typer

from vipcli.cli.main import app, main


def _commands(command=None, path=()):
    """(path, click command) of every vip command and group, the root's first."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _single_value_options(command):
    """The options of `command` that take one value each time and keep only the last (not `multiple`)."""
    return [param for param in command.params if param.param_type_name == "option" and not param.multiple
            and not param.is_flag and not getattr(param, "count", False) and param.nargs == 1]


def test_every_single_value_option_of_every_command_given_twice_is_one_usage_error(cli):
    checked = []
    for path, command in _commands():
        for param in _single_value_options(command):
            name = max(param.opts, key=len)
            code, out, err = cli(*path, name, "1", min(param.opts, key=len), "2")
            assert code == 2 and out == "", (path, name, err)
            shown = " ".join(("vip", *path))
            assert err == (f"error: {name} is given twice ('1', then '2'): give it once, with the value you mean "
                           f"(see '{shown} -h')\n"), (path, name)
            checked.append(f"{shown} {name}")
    # the options the review named, and one of each kind of command and group
    for expected in ("vip train --seed", "vip train --shots", "vip train --out", "vip train --backbone",
                     "vip benchmark --seeds", "vip predict --model", "vip symptoms generate --model",
                     "vip demo --out", "vip report --out", "vip data sort --seed"):
        assert expected in checked
    assert len(checked) > 80  # 92 in 0.2.0


def test_a_repeat_is_refused_before_any_work_and_before_other_usage_errors(cli, monkeypatch, tmp_path):
    import vipcli.train

    def refuse(*args, **kwargs):
        raise AssertionError("train ran")

    monkeypatch.setattr(vipcli.train, "train", refuse)
    out = tmp_path / "run"
    code, _, err = cli("train", "--out", out, "--seed", "1", "--seed", "2")  # --data missing too
    assert code == 2 and err.startswith("error: --seed is given twice ('1', then '2')") and not out.exists()
    code, _, err = cli("train", "--data", tmp_path, "--shots=4", "--shots", "abc")  # the second one is no number
    assert code == 2 and err.startswith("error: --shots is given twice ('4', then 'abc')")
    code, _, err = cli("train", "--data", tmp_path, "--out", out, "--out", out)  # the same value: still a slip
    assert code == 2 and f"--out is given twice ('{out}', then '{out}')" in err


def test_a_flag_given_both_ways_is_refused_and_one_given_twice_is_not(cli, capsys):
    code, _, err = cli("benchmark", "--data", "d", "--no-batch", "--batch")
    assert err == "error: --no-batch and --batch are both given: give one of them (see 'vip benchmark -h')\n"
    assert code == 2
    assert main(["-q", "-q", "--version"]) == 0 and capsys.readouterr().out.startswith("vip ")


@pytest.mark.parametrize("args, meant", [
    (["train", "--data", "nowhere", "--symptoms", "melanoma", "--symptoms", "nevus", "-o", "n-ctx=2",
      "-o", "alpha=1"], "nowhere"),
    (["symptoms", "generate", "--disease", "a", "--disease", "b", "--model", "m", "--base-url", "ftp://x"],
     "--base-url"),
])
def test_options_given_once_per_value_still_take_several(cli, args, meant):
    """`--symptoms`, `-o` and `--disease` are repeatable: the command runs, and fails on what is really wrong."""
    code, _, err = cli(*args)
    assert code in (1, 2) and "given twice" not in err and meant in err and err.count("\n") == 1, err


def test_the_help_is_shown_whatever_else_the_command_line_holds(cli):
    code, out, err = cli("train", "--seed", "1", "--seed", "2", "-h")
    assert code == 0 and "--seed" in out and err == ""
    code, _, err = cli("train", "--data", "d", "--out", "-h", "--out", "b")  # -h is the folder here, not the help
    assert code == 2 and err.startswith("error: --out is given twice ('-h', then 'b')")


@pytest.mark.parametrize("command", [["train"], ["benchmark"], ["methods", "check", "coop"]])
def test_a_method_setting_given_twice_is_refused_as_an_option_given_twice_is(cli, command, tmp_path):
    """`-o n-ctx=2 -o n_ctx=4` trained with 4, and `--n-ctx 8 -o n-ctx=4` with 8, without a word."""
    data = () if command[0] == "methods" else ("--data", tmp_path, "--out", tmp_path / "out")
    code, _, err = cli(*command, *data, "-o", "n-ctx=2", "-o", "alpha=1", "-o", "n_ctx=4")
    assert code == 2 and err.startswith("error: --method-option n_ctx=4: the setting n_ctx is given twice (first as "
                                        "--method-option n-ctx=2) (give each setting once, with the value you mean)")
    if command[0] != "methods":  # its shortcuts too
        code, _, err = cli(*command, *data, "--n-ctx", "8", "-o", "n-ctx=4")
        assert code == 2 and "error: --n-ctx 8: the setting n-ctx is given twice (first as --method-option n-ctx=4)" in err
    assert not (tmp_path / "out").exists()
