"""The `vip` entry point and its single error boundary."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer

from vipcli import __version__, stop_signals
from vipcli.cli import backbones, benchmark, cache, data, demo, methods, options, predict, report, symptoms, train
from vipcli.cli.help import HELP_ASKED, App
from vipcli.errors import VipError

def _click_variants() -> list:
    """click itself, and the copy of click that newer typer versions vendor as `typer._click`.

    typer >= 0.20 no longer depends on click, so click may not be installed at all.
    """
    variants = []
    try:
        import click

        variants.append(click)
    except ImportError:
        pass
    try:
        from typer import _click as vendored  # typer >= 0.20 ships its own click

        variants.append(vendored)
    except ImportError:
        pass
    return variants


def _exceptions(name: str) -> set:
    return {getattr(m.exceptions, name) for m in _click_variants() if hasattr(m.exceptions, name)}


CLICK_EXIT = tuple(_exceptions("Exit") | {typer.Exit})
CLICK_ERROR = tuple(_exceptions("ClickException"))
CLICK_ABORT = tuple(_exceptions("Abort") | {KeyboardInterrupt})

def _hide_flag_types() -> None:
    """Show no `<bool>` type beside flags in help (they take no value); a no-op on other typer versions."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_vip_flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    display_type_rich._vip_flags_hidden = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()

app = App(
    name="vip",
    help="ViP: adapt vision-language models to medical images with LLM-described visual symptoms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"vip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    quiet: bool = options.QUIET,
) -> None:
    """ViP: adapt vision-language models to medical images with LLM-described visual symptoms."""
    from vipcli.env_flags import check_environment

    if not ctx.meta.get(HELP_ASKED):  # `vip train --help` is shown whatever the environment holds, as `vip --help`
        check_environment()  # VIP_QUIET=maybe: one line before the command does anything (--version still works)


app.add_typer(data.app, name="data")
app.add_typer(backbones.app, name="backbones")
app.add_typer(methods.app, name="methods")
app.add_typer(symptoms.app, name="symptoms")
app.add_typer(cache.app, name="cache")
app.command("train")(train.train_command)
app.command("predict")(predict.predict_command)
app.command("benchmark")(benchmark.benchmark_command)
app.command("demo")(demo.demo_command)
app.command("report")(report.report_command)


def _print_error(message: str, hint: str | None = None, own_process: bool = False, shared: bool = False,
                 failed_wait: tuple[str, tuple[int, ...]] | None = None) -> None:
    """`error: MESSAGE (HINT)` on stderr, once per failure under torchrun (`error_for_this_process`); the line of a
    `failed_wait` (VipError.failed_wait), once per node (`node_ranks.say_once_per_node`)."""
    from vipcli.distributed import error_for_this_process, give_the_first_process_time

    from vipcli.node_ranks import SAID_MARK, leave_mark, say_once_per_node

    message = error_for_this_process(message, own_process, shared)
    if message is None:
        if not shared:  # a failure every process of the node shares: its first process says it, given time
            give_the_first_process_time()
        leave_mark(SAID_MARK)  # said, by the node's first process: the others do not take this one for lost
        return
    line = f"error: {message}"
    if hint:
        line += f" ({hint})"
    if failed_wait is None:
        _say(line)
    else:
        say_once_per_node(lambda: _say(line), *failed_wait)
    leave_mark(SAID_MARK)  # under torchrun, for the ranks that outlive this one (`vipcli.node_ranks`)


def _say(line: str) -> None:
    """Print one `error:` line on stderr, whatever file names it quotes."""
    from vipcli.console import printable

    print(printable(line), file=sys.stderr)
    sys.stderr.flush()


NUMBER_KINDS = {"float_parsing": "a number", "int_parsing": "a whole number", "int_from_float": "a whole number"}


def _number_message(error) -> str | None:
    """"--coverage must be a number, got 'abc'" for text given to a number option, else None.

    typer validates option types with pydantic, whose message ("Input should be a valid number,
    unable to parse string as a number") names neither the option nor the value.
    """
    param, errors = getattr(error, "param", None), getattr(error.__cause__, "errors", None)
    if param is None or not callable(errors):
        return None
    try:
        first = errors()[0]
    except Exception:  # noqa: BLE001 - not pydantic's error list: keep the library's message
        return None
    kind = NUMBER_KINDS.get(first.get("type"))
    if kind is None:
        return None
    name = max(getattr(param, "opts", None) or [param.name], key=len)
    return f"{name} must be {kind}, got {str(first.get('input'))!r}"


# options people reach for by what they mean, where click's spelling-based suggestion cannot find ours
OPTION_SYNONYMS = {
    "--run": "--model", "--run-dir": "--model", "--checkpoint": "--model", "--ckpt": "--model",
    "--weights": "--pretrained", "--architecture": "--arch", "--gpu": "--device",
}
OTHER_MEANING = {("vip symptoms generate", "--model")}  # its --model is the LLM's name, not a run directory


def _synonym_message(error) -> str | None:
    """"No such option: --run (did you mean --model?)" for an option named by what it means, when the
    command has the option it means; else None (click's own message, with its spelling suggestions)."""
    name, context = getattr(error, "option_name", None), getattr(error, "ctx", None)
    meant = OPTION_SYNONYMS.get(name or "")
    if meant is None or context is None or (context.command_path, meant) in OTHER_MEANING:
        return None
    if not any(meant in getattr(param, "opts", ()) for param in context.command.params):
        return None
    return f"No such option: {name} (did you mean {meant}?)"


def _missing_message(error) -> str | None:
    """"Missing option '--model': run directory written by `vip train`" for a required option or argument left
    out, from the first clause of its help; None for other errors (and a parameter without help).

    click's own message names what is missing but not what to give it, which a first run needs.
    """
    param = getattr(error, "param", None)
    if type(error).__name__ != "MissingParameter" or param is None:
        return None
    help_text = (getattr(param, "help", None) or "").replace("\\[", "[").strip()  # rich's escaped [ shown as [
    what = re.split(r"(?<!e\.g)(?<!i\.e)\. |; ", help_text)[0].rstrip(".")  # its first clause
    if not what:
        return None
    message = f"{error.format_message().rstrip('.')}: {what[0].lower()}{what[1:]}"
    stray = _stray_path_for(param, getattr(error, "given_args", []), getattr(error, "ctx", None))
    if stray is not None:
        from vipcli import shell

        option = max(param.opts, key=len)
        message += f"; {stray} is given without it (pass --{option.lstrip('-')} {shell.quote(stray)})"
    return message


def _stray_path_for(param, given: list[str], context) -> str | None:
    """The one word of the command line that is a path of the kind the missing option `param` takes, given
    without the option (`vip train isic`, `vip predict vip-demo/run x.png`): a run directory for `--model`, a
    folder for another option; None when there is no such word, or more than one."""
    if context is None or not getattr(param, "opts", None) or not any(o.startswith("--") for o in param.opts):
        return None
    takes_value = {opt for p in context.command.params if not getattr(p, "is_flag", True)
                   for opt in getattr(p, "opts", ())}
    words, after_option = [], False
    for word in given:
        if not after_option and not word.startswith("-"):
            words.append(word)
        after_option = word in takes_value  # (`--out=run` is one word)
    run_dir = "--model" in param.opts
    fits = [word for word in words
            if Path(word, "model.safetensors").is_file() or (not run_dir and Path(word).is_dir())]
    return fits[0] if len(fits) == 1 else None


def _help_was_shown(error) -> bool:
    """Whether `error` is a command group run without a command (`vip`, `vip methods`).

    Its help has already been printed, and the error carries no message of its own: an `error:`
    line after the help would be empty.
    """
    return type(error).__name__ == "NoArgsIsHelpError" or not error.format_message().strip()


def _stopped(terminated: bool | None = None, done: bool | None = None) -> tuple[str, int]:
    """The message and exit code of an interrupt: SIGTERM (143) or Ctrl-C (130); `done`: it came after the
    command's work was done (default: as `stop_signals` recorded both)."""
    terminated = stop_signals.terminated() if terminated is None else terminated
    done = stop_signals.work_was_done() if done is None else done
    what, code = ("terminated (SIGTERM)", 143) if terminated else ("interrupted", 130)
    if done:
        return f"{what} after the command had finished; its work is complete", code
    lost = _silently_lost() if terminated else ""
    if lost:
        return lost, code
    return f"{what}; nothing half-written was left behind{_torchrun_stop_hint() if terminated else ''}", code


def _say_stopped(terminated: bool | None = None, done: bool | None = None) -> int:
    """Print the line of an interrupt (`_stopped`) once per node, and return its exit code. Under torchrun the line
    claims the node's one mark of a failed wait (`node_ranks.say_once_per_node`): a SIGTERM that reaches a rank after
    a rank of its node said why a wait failed is torchrun stopping the job for that failure, and the rank exits with
    its code in silence (its `terminated` line was a second line for one failure: a rank resumed with kill -CONT, or
    slower to see the wait fail); and where the two come at the same moment (rank 0 killed: the others' SIGTERM and
    their barrier's lost connection), whichever is first is the node's one line."""
    message, code = _stopped(terminated, done)
    _print_error(message, shared=True, failed_wait=("stopped", ()))
    return code


def _silently_lost() -> str:
    """Under torchrun, where ranks of this node ended without an error line before their work was done (killed by a
    signal: `node_ranks.silently_lost_ranks`), the line that names them, as the SIGTERM torchrun then sent this rank
    was their doing; else ""."""
    from vipcli.distributed import world_from_env
    from vipcli.errors import VipError
    from vipcli.node_ranks import silently_lost_ranks

    try:
        world = world_from_env()
    except VipError:
        return ""
    lost = silently_lost_ranks(world.rank, world.local_rank) if world.distributed else []
    if not lost:
        return ""
    ranks = (f"rank {lost[0]}" if len(lost) == 1
             else f"ranks {', '.join(map(str, lost[:-1]))} and {lost[-1]}")
    was = "was" if len(lost) == 1 else "were"
    return (f"{ranks} of {world.size} {was} killed by a signal (kill -9, the out-of-memory killer, a crash) and "
            "printed no line, so torchrun stopped the other ranks with SIGTERM; nothing half-written was left "
            "behind (torchrun's report gives the signal under 'Root Cause'; if memory ran out, start fewer processes "
            "per node; then run the same command again: what is finished is kept)")


def _torchrun_stop_hint() -> str:
    """Under torchrun, where the SIGTERM most often came from torchrun itself, stopping this rank because another
    one failed, what to read next (" (...)"); "" outside torchrun. A rank killed by a signal (kill -9, the
    out-of-memory killer) prints no line of its own, and the survivors' "terminated" was all vip said."""
    from vipcli.distributed import world_from_env
    from vipcli.errors import VipError

    try:
        if not world_from_env().distributed:
            return ""
    except VipError:
        return ""
    return (" (torchrun stops every rank this way once one fails: unless you or the job's time limit stopped it, "
            "the rank that failed first printed its own error line, or, killed by a signal such as kill -9 or the "
            "out-of-memory killer, is named under 'Root Cause' in torchrun's report)")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit code; known errors become one line.

    Exit codes: 0 success, 1 runtime error, 2 usage error, 130 interrupted (Ctrl-C), 143 terminated
    (SIGTERM). Set VIP_DEBUG=1 to see tracebacks.
    """
    from vipcli.console import escape_unencodable_output

    escape_unencodable_output()
    with stop_signals.stop_signals_raise():
        code = _main(argv)
        if code == 0 and stop_signals.received() is not None:  # swallowed by Python after the last checkpoint
            code = _say_stopped()
        return code


def _main(argv: list[str] | None) -> int:
    from vipcli.env_flags import env_flag
    from vipcli.plugins import scans_held

    debug = env_flag("VIP_DEBUG")  # an unknown spelling is refused by `_root`, before any command runs
    try:
        from vipcli.node_ranks import STARTED_MARK, leave_mark

        leave_mark(STARTED_MARK)  # under torchrun: from here on this rank says a line when stopped (`node_ranks`)
        with scans_held():  # one command reads the installed plugins once per group, not at every lookup
            result = app(args=argv, prog_name="vip", standalone_mode=False)
        if result == 130:  # typer turns Ctrl-C into exit code 130
            result = _say_stopped()
        return result if isinstance(result, int) else 0
    except CLICK_EXIT as done:
        return done.exit_code
    except CLICK_ERROR as error:  # bad command line: one line, and where to read the usage
        if _help_was_shown(error):
            return error.exit_code
        context = getattr(error, "ctx", None)
        message = (_number_message(error) or _synonym_message(error) or _missing_message(error)
                   or error.format_message())
        _print_error(message, f"see '{context.command_path} -h'" if context else None)
        return error.exit_code
    except CLICK_ABORT:
        if debug:
            raise
        return _say_stopped()
    except VipError as error:
        if debug:
            raise
        _print_error(error.message, error.hint, getattr(error, "own_process", False),
                     getattr(error, "whole_job", False), getattr(error, "failed_wait", None))
        return error.exit_code
    except Exception as error:  # an unknown error is a bug: say so, in one line
        if debug:
            raise
        from vipcli.compat import explain_library_failure
        from vipcli.devices import out_of_memory

        memory = out_of_memory(error)  # not a bug: a GPU too small for the batch
        if memory is not None:
            _print_error(memory.message, memory.hint)
            return memory.exit_code
        mismatch = explain_library_failure(error)  # unless two installed libraries cannot work together
        if mismatch is not None:
            _print_error(mismatch.message, mismatch.hint)
            return mismatch.exit_code
        from vipcli.plugins import known_secrets
        from vipcli.symptoms.llm import redact

        _print_error(
            f"unexpected {type(error).__name__}: {redact(str(error), known_secrets())}",
            "this is a bug in vip; rerun with VIP_DEBUG=1 and report the traceback",
        )
        return 1


def run() -> None:
    """Console-script entry point."""
    from vipcli.openmp import prefer_short_spins

    prefer_short_spins()  # before torch loads: two vip processes on one machine do not starve each other
    from vipcli import lean_imports, registry

    registry.freeze_after_loads = True  # a backbone load's objects live as long as this process
    lean_imports.enabled = True  # open_clip without transformers where the model does not need it
    try:
        code = main()
    except Exception as error:  # only VIP_DEBUG=1 lets one through: its traceback, masked, and exit code 1
        print_masked_traceback(error)
        code = 1
    try:
        # SIGTERM raises there as Ctrl-C does (it killed the process without a line); a Ctrl-C inside a
        # finalizer there is not printed either
        with stop_signals.stop_signals_raise(), stop_signals.quiet_interrupts():
            _skip_shutdown_collections()
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM after the command's work was done: no traceback
        if code == 0:
            code = _say_stopped(isinstance(stop, stop_signals.Terminated), done=True)
    sys.exit(code)


def print_masked_traceback(error: BaseException) -> None:
    """The traceback of `error` as Python prints it, with every secret vip knows of (`known_secrets`: the
    Hugging Face credentials, and the environment's API keys, tokens and proxy passwords) masked: the
    library exceptions chained under VIP_DEBUG=1 name HF_ENDPOINT's user:password in their URLs, and a
    mirror, a proxy or an LLM server may echo what it was sent. (Not an excepthook: typer replaces that one.)"""
    import traceback

    from vipcli.plugins import known_secrets
    from vipcli.symptoms.llm import redact

    sys.stderr.write(redact("".join(traceback.format_exception(type(error), error, error.__traceback__)),
                            known_secrets()))


def _skip_shutdown_collections() -> None:
    """Spare the interpreter's shutdown from re-scanning every object torch and open_clip created.

    At exit Python runs several full garbage collections while it tears modules down; after torch,
    torchvision, open_clip and transformers are imported each one walks about 480,000 objects (1.2 s
    of every such `vip` process on a 2-core CPU; 0.25 s remain). The run's own garbage is collected here, once, so
    its finalizers run as they would have; then everything left is frozen out of later collections
    (`gc.freeze`). Memory is returned to the system at exit either way.
    """
    import gc

    if "torch" not in sys.modules:  # `vip --help` and usage errors: nothing big to spare
        return
    gc.collect()
    gc.freeze()
