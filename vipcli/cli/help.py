"""`--help` that never cuts an option name: typer's rich layout where it fits, click's plain one below.

typer's rich help puts each option in a table row (name, metavar, help) and lets every column shrink:
in a narrow terminal (60-80 columns) long names come out as `--class-speci…`, or the help text is
left 6-8 characters wide. So before rich draws a command's help, `rich_cuts_names` draws it once
off screen at the terminal's width: if an option name or metavar would not appear whole, the help
is written in click's plain layout instead (a long option's help goes on the next line), wrapped to
the same width, with rich markup turned into the text rich would show and never a word broken at
a hyphen. Where rich fits, nothing changes.

The seam is typer's own `cls=`: every command is a `HelpCommand` and every group a `HelpGroup`,
which `App` (a `typer.Typer`) passes for each command and group declared on it.
"""

from __future__ import annotations

import inspect
import io
import re
import textwrap

import typer
from typer.core import TyperCommand, TyperGroup

from vipcli.cli.once import OnceEach

WIDE = 400  # columns at which rich's option table cuts no name: the baseline of `rich_cuts_names`
NAME_COLUMN = 30  # the widest name column of the plain layout (click's); longer names put their help below
NAME_SHARE = 0.4  # ... and at most this share of the width, so that help text keeps 30 columns at 60
UNBROKEN = "\0"  # a space that `wrap` does not break a line at
ARGUMENTS, OPTIONS, COMMANDS = "Arguments", "Options", "Commands"


def terminal_width() -> int:
    """The width typer's rich help is drawn at (TERMINAL_WIDTH, COLUMNS or the terminal's)."""
    from typer import rich_utils

    return rich_utils._get_rich_console().width


def rich_cuts_names(command, ctx, width: int) -> bool:
    """Whether typer's rich help of `command` at `width` columns would cut an option name or metavar.

    The help is drawn off screen at `width` and at `WIDE`; a name or metavar that appears fewer times
    whole at `width` has been cut (`--class-speci…`) or broken across lines somewhere.
    """
    if width >= WIDE:
        return False
    narrow, wide = _rich_text(command, ctx, width), _rich_text(command, ctx, WIDE)
    return any(_count(name, narrow) < _count(name, wide) for name in _shown_names(command, ctx))


def _rich_text(command, ctx, width: int) -> str:
    """typer's rich help of `command` as plain text `width` columns wide (drawn off screen)."""
    from rich.console import Console
    from typer import rich_utils

    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    screen = rich_utils._get_rich_console
    rich_utils._get_rich_console = lambda stderr=False: console  # rich_format_help draws on this console
    try:
        rich_utils.rich_format_help(obj=command, ctx=ctx, markup_mode=command.rich_markup_mode)
    finally:
        rich_utils._get_rich_console = screen
    return console.file.getvalue()


def _shown_names(command, ctx) -> set[str]:
    """The option names, argument names and type metavars (`<path>`) rich shows in `command`'s tables."""
    names = set()
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":  # shown by its metavar (`ID`) or name (`paths...`)
            names.add(param.metavar or param.name)
        else:
            names.update(param.opts, param.secondary_opts)
        metavar = param.display_type_rich(ctx=ctx) if hasattr(param, "display_type_rich") else None
        if metavar:
            names.add(metavar)
    return names


def _count(name: str, text: str) -> int:
    """How many times `name` appears whole in `text` (not as part of a longer name)."""
    return len(re.findall(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text))


def plain(text: str, markup_mode) -> str:
    """`text` as rich would show it, without its markup: `{class: \\[symptoms]}` -> `{class: [symptoms]}`."""
    if markup_mode != "rich":
        return text
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(text).plain
    except MarkupError:  # not markup after all: rich would fail on it too; show it as written
        return text


def wrap(text: str, width: int) -> list[str]:
    """The lines of `text` at `width` columns: paragraphs (split at blank lines) rewrapped as rich does,
    never breaking a word, nor a name like `--class-specific-context` at its hyphens; a closing note
    such as `[default: 1]` is kept on one line where it fits (as rich keeps it)."""
    lines: list[str] = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if lines:
            lines.append("")
        paragraph = " ".join(paragraph.split())  # single line breaks joined, as rich joins them
        paragraph = re.sub(r"\[[^\[\]]*\]$", lambda note: _unbroken(note.group(0), width), paragraph)
        lines += [line.replace(UNBROKEN, " ") for line in textwrap.wrap(
            paragraph, width, break_long_words=False, break_on_hyphens=False)] or [""]
    return lines


def _unbroken(note: str, width: int) -> str:
    """`note` with its spaces held together (`UNBROKEN`) if it fits in `width` columns, else as it is."""
    return note.replace(" ", UNBROKEN) if len(note) <= width else note


def write_text(formatter, text: str) -> None:
    """Write `text` into click's `formatter` at its indentation, wrapped to its width."""
    indent = " " * formatter.current_indent
    for line in wrap(text, max(formatter.width - formatter.current_indent, 10)):
        formatter.write(f"{indent}{line}".rstrip() + "\n")


def write_rows(formatter, rows: list[tuple[str, str]]) -> None:
    """click's definition list (`write_dl`): each name whole, its help beside it or, when the name is
    wider than the name column (`NAME_COLUMN`, `NAME_SHARE`), on the next line; help wrapped without
    breaking words at hyphens."""
    indent = formatter.current_indent
    widest = min(NAME_COLUMN, int((formatter.width - indent) * NAME_SHARE))
    column = min(max(len(name) for name, _ in rows), widest) + 2
    text_width = max(formatter.width - indent - column, 10)
    for name, help_text in rows:
        lines = wrap(help_text, text_width) if help_text.strip() else []
        if not lines:
            formatter.write(f"{'':>{indent}}{name}\n")
            continue
        if len(name) <= column - 2:
            formatter.write(f"{'':>{indent}}{name:<{column}}{lines[0]}\n")
            lines = lines[1:]
        else:
            formatter.write(f"{'':>{indent}}{name}\n")
        for line in lines:
            formatter.write(f"{'':>{indent + column}}{line}".rstrip() + "\n")


class _PlainWhenNarrow:
    """The shared half of `HelpCommand` and `HelpGroup`: the choice of layout, and the plain one."""

    def format_help(self, ctx, formatter) -> None:
        """typer's rich help, or click's plain layout where rich would cut an option name."""
        if self.rich_markup_mode is None:
            return super().format_help(ctx, formatter)
        try:
            width = terminal_width()
            cut = rich_cuts_names(self, ctx, width)
        except (AttributeError, TypeError):  # a typer whose rich help is drawn another way: keep it as it is
            cut = False
        if not cut:
            return super().format_help(ctx, formatter)
        formatter.width = max(width - 2, 20)  # as click: a margin of two columns
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_options(ctx, formatter)
        self.format_epilog(ctx, formatter)

    def format_help_text(self, ctx, formatter) -> None:
        """The command's description, its markup shown as rich would show it."""
        text = inspect.cleandoc(self.help or "").partition("\f")[0]
        if self.deprecated:
            text = f"(deprecated) {text}"
        if text.strip():
            formatter.write_paragraph()
            with formatter.indentation():
                write_text(formatter, plain(text, self.rich_markup_mode))

    def format_options(self, ctx, formatter) -> None:
        """The arguments, then the options, each rich help panel as a section of its own; then a group's commands."""
        sections: dict[tuple[bool, bool, str], list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            is_option = param.param_type_name != "argument"
            title = getattr(param, "rich_help_panel", None) or (OPTIONS if is_option else ARGUMENTS)
            key = (is_option, title not in (ARGUMENTS, OPTIONS), title)
            sections.setdefault(key, []).append((record[0], self._plain_help(param, record[1])))
        for key in sorted(sections, key=lambda k: (k[0], k[1])):  # stable: panels in declaration order
            with formatter.section(key[2]):
                write_rows(formatter, sections[key])
        if isinstance(self, TyperGroup):
            self.format_commands(ctx, formatter)

    def _plain_help(self, param, help_text: str) -> str:
        """`help_text` (the option's help and its `[default: ...]`) with the help's markup turned into text."""
        own = getattr(param, "help", None)
        if own and help_text.startswith(own):
            return plain(own, self.rich_markup_mode) + help_text[len(own):]
        return help_text

    def format_epilog(self, ctx, formatter) -> None:
        """The epilog, if any, as plain text."""
        if self.epilog:
            formatter.write_paragraph()
            with formatter.indentation():
                write_text(formatter, plain(inspect.cleandoc(self.epilog), self.rich_markup_mode))


class HelpCommand(OnceEach, _PlainWhenNarrow, TyperCommand):
    """A typer command whose `--help` keeps every option name whole at any terminal width, that takes
    `-q/--quiet` (`options.QUIET`) as every vip command does, and refuses a single-value option given twice
    (`once.OnceEach`)."""

    def __init__(self, *args, **settings) -> None:
        super().__init__(*args, **settings)
        from vipcli.cli.options import quiet_option

        self.params.append(quiet_option())

    def parse_args(self, ctx, args):
        """click's parsing; a usage error its parser raises without the command's context (`Option '--data'
        requires an argument.`, `Option '--force' does not take a value.`) is given it, so that its line
        says where to read the usage (`see 'vip train -h'`) as every other usage error's does."""
        given = list(args)  # (click consumes `args`)
        try:
            return super().parse_args(ctx, args)
        except Exception as error:
            if hasattr(error, "ctx") and error.ctx is None and hasattr(error, "format_message"):
                error.ctx = ctx
            if type(error).__name__ == "MissingParameter":
                error.given_args = given  # the words of the command line (`main._missing_message` reads them)
            raise

    def invoke(self, ctx):
        """Run the command (quietly with `-q` here or before it: `console.quiet`), unless it is one that does
        not share its work and this is torchrun (`distributed.refuse_unshared_command`); once it returns, its
        work is done (`stop_signals.work_done`): a Ctrl-C while click unwinds says so instead of "nothing
        half-written was left behind"."""
        from vipcli import console, stop_signals
        from vipcli.distributed import refuse_unshared_command

        top = ctx
        while top.parent is not None and top.parent.parent is not None:  # `cache` of `vip cache clear`
            top = top.parent
        refuse_unshared_command(top.info_name or "")
        quiet = (ctx.params.pop("quiet", False) or ctx.find_root().params.get("quiet", False)  # `vip -q train`
                 or ctx.meta.get(QUIET_GROUP, False))  # `vip cache -q clear`
        with console.quiet(quiet):
            result = super().invoke(ctx)
        stop_signals.work_done()
        return result


QUIET_GROUP = "vip.quiet"  # ctx.meta's key: a group's own -q (`vip cache -q clear`), for its command to read
HELP_ASKED = "vip.help_asked"  # ctx.meta's key: the command line asks a command for its help (`vip train -h`)


def asks_for_help(args: list[str]) -> bool:
    """Whether the arguments a group has yet to hand to its command (`['train', '--help']`) ask for a help
    page: `-h` or `--help` before any `--`."""
    options_part = args[:args.index("--")] if "--" in args else args
    return any(arg in ("-h", "--help") for arg in options_part)


class HelpGroup(OnceEach, _PlainWhenNarrow, TyperGroup):
    """A typer command group whose `--help` keeps every option name whole at any terminal width, that
    takes `-q/--quiet` too where its callback does not (`vip cache -q clear`, as `vip -q cache clear`), and
    refuses a single-value option given twice (`once.OnceEach`)."""

    def __init__(self, *args, **settings) -> None:
        super().__init__(*args, **settings)
        from vipcli.cli.options import quiet_option

        self._own_quiet = not any(param.name == "quiet" for param in self.params)  # the root's callback has it
        if self._own_quiet:
            self.params.append(quiet_option())

    def invoke(self, ctx):
        """Run the group; its own `-q` is kept in `ctx.meta` for the command, not passed to its callback."""
        if self._own_quiet and ctx.params.pop("quiet", False):
            ctx.meta[QUIET_GROUP] = True
        ctx.meta[HELP_ASKED] = ctx.meta.get(HELP_ASKED) or asks_for_help(ctx.args)  # read before click hands them on
        return super().invoke(ctx)

    def format_commands(self, ctx, formatter) -> None:
        """The commands, each with the first paragraph of its help, whole (rich's text, not click's cut)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            text = inspect.cleandoc(command.short_help or command.help or "").partition("\f")[0].split("\n\n")[0]
            rows.append((name, plain(text, self.rich_markup_mode)))
        if rows:
            with formatter.section(COMMANDS):
                write_rows(formatter, rows)


class App(typer.Typer):
    """A `typer.Typer` whose groups are `HelpGroup`s and commands `HelpCommand`s (typer's `cls=`)."""

    def __init__(self, **settings) -> None:
        settings.setdefault("cls", HelpGroup)
        super().__init__(**settings)

    def command(self, *args, **settings):
        """`typer.Typer.command`, declaring a `HelpCommand` unless another `cls` is given."""
        if settings.get("cls") is None:
            settings["cls"] = HelpCommand
        return super().command(*args, **settings)
