"""A single-value option given twice is a usage error, in every vip command and group.

click keeps the last value of an option given twice: `vip train --seed 1 --seed 2` trained seed 2 alone
and `--out a --out b` wrote to b, without a word. `OnceEach.make_parser` watches each option of the
command's parser as it takes a value: a second value of an option that takes one (click's `store`
action) is refused, whether or not it equals the first, as is a flag given both ways (`--batch
--no-batch`). Options that take a value each time they are given (`--symptoms`, `--method-option`,
`--disease`: click's `append`) and a flag repeated as it is (`-q -q`) are left alone. The error comes
as the second value is read, before a missing option or a bad value is looked for and before any work,
unless the command line asks for help (`vip train --seed 1 --seed 2 -h` shows the help, as click's eager
`--help` does for any other usage error); shell completion (`resilient_parsing`) is never refused.
"""

from __future__ import annotations

REPEATED = "_vip_repeated_option"  # the context's attribute: the line for the first option given twice
HELP_ASKED = "_vip_help_asked"  # ... and whether the command line asks for help (the line waits until it is shown)


class OnceEach:
    """A mixin for click commands and groups: each single-value option given at most once."""

    def make_parser(self, ctx):
        """click's parser for the command, each of its options refusing a second value (`refuse_repeats`)."""
        parser = super().make_parser(ctx)
        if not ctx.resilient_parsing:
            refuse_repeats(parser, ctx)
        return parser

    def parse_args(self, ctx, args):
        """click's parsing, a usage error (exit code 2) for the first option given twice; with `-h` on the
        command line, that error once the help was not shown after all (`--out -h` is a folder's name)."""
        options_part = args[:args.index("--")] if "--" in args else args
        setattr(ctx, HELP_ASKED, any(arg in ctx.help_option_names for arg in options_part))
        rest = super().parse_args(ctx, args)
        message = getattr(ctx, REPEATED, None)
        if message is not None:
            ctx.fail(message)
        return rest


def refuse_repeats(parser, ctx) -> None:
    """Make each option of click's `parser` fail `ctx` when given a second value (note it on `ctx`, for
    `OnceEach.parse_args` to refuse, if the help is asked for); a parser without the option tables of
    click 8 is left as it is."""
    tables = (getattr(parser, "_long_opt", None), getattr(parser, "_short_opt", None))
    if not all(isinstance(table, dict) for table in tables):
        return
    given: dict = {}  # each option's dest -> (the command-line word, the value) it was first given as
    options = {id(option): option for table in tables for option in table.values()}
    for option in options.values():
        if option.action in ("store", "store_const"):
            option.process = _once(option, option.process, given, ctx)


def _once(option, process, given: dict, ctx):
    """`process` of click's parser `option`, failing `ctx` when its parameter already has a value (for a
    flag: the other value); `given` is shared by the parser's options (`--batch` and `--no-batch`
    are two options of one parameter)."""
    def process_once(value, state):
        shown = value if option.action == "store" else option.const
        first = given.get(option.dest)
        if first is not None and (option.action == "store" or first[1] != shown):
            message = repeat_message(option, first, shown)
            if not getattr(ctx, HELP_ASKED, False):
                ctx.fail(message)
            if getattr(ctx, REPEATED, None) is None:
                setattr(ctx, REPEATED, message)
        given.setdefault(option.dest, (_spelling(option), shown))
        return process(value, state)

    return process_once


def repeat_message(option, first: tuple, value) -> str:
    """The line for `option` given a second time: both values, and the fix."""
    if option.action == "store_const":
        return f"{first[0]} and {_spelling(option)} are both given: give one of them"
    return (f"{first[0]} is given twice ({_shown(first[1])}, then {_shown(value)}): give it once, with the value "
            "you mean")


def _spelling(option) -> str:
    """The option's longest name (`--seed`; `--no-batch` for the off half of `--batch/--no-batch`)."""
    names = [*option._long_opts, *option._short_opts] if hasattr(option, "_long_opts") else []
    return max(names, key=len) if names else str(option.dest)


def _shown(value) -> str:
    """A value as the error line quotes it: `'1'`; a value of several words each quoted."""
    if isinstance(value, (tuple, list)):
        return " ".join(repr(item) for item in value)
    return repr(value)
