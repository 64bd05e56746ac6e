"""`--help` at any terminal width: every option name whole; typer's rich layout wherever it fits."""

from __future__ import annotations

import re

import pytest
import typer

from vipcli.cli.help import HelpCommand, HelpGroup, wrap
from vipcli.cli.main import app


def _commands(command=None, path=()):
    """(argv prefix, click command) for `vip` and every group and command under it."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())


def _shown(command) -> list[str]:
    """The option names and metavars `--help` must show whole."""
    import click

    names = []
    for param in command.params + [command.get_help_option(click.Context(command))]:
        if param is None or getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            names.append(param.metavar or param.name)
        else:
            names += [*param.opts, *param.secondary_opts]
        metavar = param.display_type_rich(ctx=None)
        names += [metavar] if metavar else []
    return names


def _whole(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def _help(cli, monkeypatch, columns: int, *path: str) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = cli(*path, "--help")
    assert code == 0 and err == "", err
    return out


def test_every_command_and_group_is_declared_with_the_narrow_help_classes():
    """A command declared on a plain typer.Typer would cut its names again at 60 columns."""
    for path, command in COMMANDS:
        assert isinstance(command, HelpGroup if hasattr(command, "commands") else HelpCommand), path


@pytest.mark.parametrize("columns", [60, 80])
def test_every_option_name_and_metavar_is_whole_at_narrow_widths(cli, monkeypatch, columns):
    cut = []
    for path, command in COMMANDS:
        out = _help(cli, monkeypatch, columns, *path)
        cut += [f"vip {' '.join(path)}: {name}" for name in _shown(command) if not _whole(name, out)]
        assert max(len(line) for line in out.splitlines()) <= columns, path
        assert "\\[" not in out and "[/" not in out, path  # no rich markup shown as typed
    assert cut == []


def test_the_plain_layout_has_usage_description_defaults_and_required(cli, monkeypatch):
    """`vip benchmark --help` at 80 columns: rich would cut --class-specific-context, click's layout does not."""
    out = _help(cli, monkeypatch, 80, "benchmark")
    text = " ".join(out.split())
    assert "╭" not in out and out.startswith("Usage: vip benchmark [OPTIONS]\n")
    assert "Compare methods on the same seeded few-shot subsets of your data" in text
    assert "--data <path> Folder of class subfolders (optionally under train/ val/ test/). [required]" in text
    assert "--shots <str> Comma-separated shots per class ('all': every image). [default: 1,2,4,8,16]" in text
    assert "{class: [symptoms]} YAML file" in text  # rich's escape turned into the bracket rich shows
    assert "\n  --class-specific-context        One learned context per class.\n" in out
    assert "\n  -o, --method-option <key=value>\n" in out  # too wide for the name column: help below it
    assert "--batch / --no-batch" in out


def test_a_group_in_the_plain_layout_lists_its_commands_whole(cli, monkeypatch):
    """`vip --help` at 40 columns: rich would cut --install-completion."""
    out = _help(cli, monkeypatch, 40)
    assert "╭" not in out and "\n  --install-completion\n" in out and "\nCommands:\n" in out
    text = " ".join(out.split())
    for path, _ in COMMANDS:
        if len(path) == 1:
            assert re.search(rf"\n  {path[0]} ", out), path
    assert "symptoms Visual symptom packs: list, show, generate them with an LLM, and rank them on your images." \
        in text


@pytest.mark.parametrize("columns", [100, 120])
def test_the_rich_layout_is_kept_where_it_fits(cli, monkeypatch, columns):
    for path, _ in COMMANDS:
        out = _help(cli, monkeypatch, columns, *path)
        assert "╭─ Options ─" in out, path


def test_a_command_whose_names_fit_keeps_the_rich_layout_at_60_columns(cli, monkeypatch):
    assert "╭─ Options ─" in _help(cli, monkeypatch, 60, "cache", "clear")
    assert "╭─ Options ─" in _help(cli, monkeypatch, 80, "train")  # train's names fit at 80


def test_wrap_keeps_names_and_a_closing_note_whole():
    lines = wrap("Seed of the split, see --class-specific-context. [default: 1]", 24)
    assert "--class-specific-context." in lines and lines[-1] == "[default: 1]"
    assert wrap("first paragraph\n\nsecond", 40) == ["first paragraph", "", "second"]


def test_rich_markup_and_help_panels_in_the_plain_layout():
    """A panel (rich_help_panel) becomes a section of its own; markup is shown as rich shows it, not typed."""
    from typer.testing import CliRunner

    from vipcli.cli.help import App

    demo = App()

    @demo.command()
    def run(
        size: int = typer.Option(1, "--size", help="The [bold]size[/bold] \\[px]."),
        scale: float = typer.Option(1.0, "--a-rather-long-option-name-indeed", help="Scale.",
                                    rich_help_panel="Advanced"),
    ) -> None:
        """Run it, [italic]quickly[/italic]."""

    out = CliRunner().invoke(demo, ["--help"], env={"COLUMNS": "40"}).output
    assert "╭" not in out and "[bold]" not in out and "[italic]" not in out
    assert "Run it, quickly." in out and "--size <int> The size [px]. [default: 1]" in " ".join(out.split())
    assert out.index("\nOptions:\n") < out.index("\nAdvanced:\n  --a-rather-long-option-name-indeed <float>\n")


def test_no_help_text_loses_words_to_rich_markup():
    """Brackets in a help text that rich would read as a markup tag (`[default: 1]`, `[symptoms]`) vanish
    from `--help`; they must be escaped (`\\[`) or written another way."""
    from vipcli.cli.help import plain

    lost = []
    for path, command in COMMANDS:
        texts = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
        lost += [f"vip {' '.join(path)}: {text!r}" for text in texts
                 if plain(text, "rich") != text.replace("\\[", "[")]
    assert lost == []


def test_every_argument_is_named_in_capitals_in_usage_and_in_its_missing_error(cli):
    """`vip predict -h` showed `{paths}...` and a bare `vip predict` said "Missing argument 'paths'", while
    `vip data sort` said LABELS and README writes PATHS, TARGET, NAME, ID: every argument has a capital metavar."""
    for path, command in COMMANDS:
        for param in command.params:
            if param.param_type_name != "argument":
                continue
            assert param.metavar and param.metavar == param.metavar.upper(), (path, param.name)
    for path, name in ((("predict",), "PATHS"), (("report",), "TARGET"), (("symptoms", "show"), "NAME"),
                       (("methods", "show"), "ID"), (("methods", "check"), "ID")):
        code, _, err = cli(*path)
        assert code == 2 and f"Missing argument '{name}'" in err, (path, err)


def test_symptoms_help_names_every_source_it_accepts_alike_in_train_benchmark_and_rank():
    """`vip symptoms rank --symptoms` had its own help, and none said that a run directory is accepted
    (README: `--symptoms RUN` trains, benchmarks or ranks on that run's symptoms)."""
    helps = {path: param.help for path, command in COMMANDS for param in command.params
             if path in (("train",), ("benchmark",), ("symptoms", "rank")) and "--symptoms" in param.opts}
    assert len(helps) == 3 and len(set(helps.values())) == 1, helps
    assert all(word in helps[("train",)] for word in ("Pack file", "folder of packs", "shipped pack", "run directory"))


def test_every_device_option_names_the_same_devices_and_an_unknown_one_says_cuda_n(cli):
    """`vip symptoms rank -h` and `vip backbones check -h` said "auto, cpu, cuda or mps", and `--device tpu` said
    "choose one of auto, cpu, cuda, mps", while every command takes cuda:N too (train, predict and report said so)."""
    helps = {path: param.help for path, command in COMMANDS for param in command.params if "--device" in param.opts}
    assert {("train",), ("predict",), ("benchmark",), ("report",), ("symptoms", "rank"), ("backbones", "check")} \
        <= set(helps)
    assert all(text.startswith("auto, cpu, cuda, cuda:N or mps") for text in helps.values()), helps
    code, out, err = cli("backbones", "check", "toy", "--device", "tpu")
    assert code == 2 and out == ""
    assert err == "error: unknown device 'tpu' (choose one of auto, cpu, cuda, cuda:N (N the GPU's number) or mps)\n"


def test_no_option_shows_a_python_type_as_what_it_takes(cli, monkeypatch):
    """`--symptoms <list[str]>`, `-o, --method-option <list[str]>`, `--images <list[Path]>`: a repeatable option
    showed the Python type of its values, which reads as if one wrote a list (`--symptoms [a.yaml,b.yaml]`)."""
    shown = []
    for path, command in COMMANDS:
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden and not getattr(param, "is_flag", False):
                shown.append((path, max(param.opts, key=len), param.display_type_rich(ctx=None)))
    assert [entry for entry in shown if "[" in entry[2]] == []
    assert (("train",), "--method-option", "<key=value>") in shown and (("train",), "--symptoms", "<source>") in shown
    assert "--disease          -d      <name>" in _help(cli, monkeypatch, 120, "symptoms", "generate")


def test_image_fit_and_quiet_say_what_they_do_where_they_are(cli, monkeypatch):
    """A benchmark has no run for predict to use: its --image-fit says where the fit is recorded instead."""
    def text(*path):  # the help's words, without rich's box
        return " ".join(re.sub("[│╭╮╰╯─]", " ", _help(cli, monkeypatch, 120, *path)).split())

    train, bench = text("train"), text("benchmark")
    assert "Recorded in the run; predict uses it." in train
    assert "predict uses it" not in bench
    assert "Recorded in results.json; resuming the sweep with another fit is refused." in bench
    for words in (train, bench):
        assert "(warnings and errors are still printed); VIP_QUIET=1 does the same." in words


def test_encode_batch_says_it_counts_views_as_each_encoder_call_does(cli, monkeypatch):
    """`--encode-batch` said "Images per image-encoder call" after every call came to take at most that many
    views (an image's --views split to fit), which README's fix for a GPU out of memory counts on."""
    for command in ("train", "benchmark"):
        words = " ".join(re.sub("[│╭╮╰╯─]", " ", _help(cli, monkeypatch, 120, command)).split())
        assert "--encode-batch <int> Image views per image-encoder call (an image's --views are split to fit)" \
            in words, command

