"""`vip methods ...`: the installed few-shot methods (entry-point group vip.methods)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import List, Optional

import typer

from vipcli import console
from vipcli.cli import completion, options
from vipcli.cli.help import App

app = App(help="Few-shot methods (entry-point group vip.methods).", no_args_is_help=True)


def _yes_no(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List installed methods and what each needs (their settings: vip methods show ID)."""
    from rich.markup import escape

    from vipcli.methods import METHODS, list_methods

    infos = list_methods()
    for info in infos:
        if info.problem:
            console.warn(escape(f"{info.problem}; '{info.id}' is unavailable"))  # plugin text, never markup
        if info.shadowed:
            METHODS.warn_shadowed(info.id)  # once per process, as when the id is used
    if as_json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return
    from rich.table import Table

    table = Table("id", "trains", "shots", "symptoms", "provided by", title="methods (settings: vip methods show ID)")
    table.columns[0].overflow = "fold"  # the id is what --method takes: folded in a narrow terminal, never cut
    for info in infos:
        name = escape(info.id) + (" (unavailable)" if info.problem else _shadowed_mark(info.distribution)
                                  if info.shadowed else "")
        table.add_row(name, _yes_no(info.trains), _yes_no(info.uses_shots),
                      _symptoms_word(info.needs_symptoms, info.uses_symptoms), escape(f"{info.distribution} {info.version}".strip()))
    console.stdout().print(table)


def _symptoms_word(needed: bool | None, used: bool | None) -> str:
    """What a method does with the class symptoms, in the words of `vip methods list` and `show`: "needed", "used"
    (when given: `uses_symptoms`, the default), or "-" (declared unused: `uses_symptoms = False`)."""
    return "needed" if needed else "used" if used else "-"


def _shadowed_mark(distribution: str) -> str:
    """What the row of a plugin's entry under a built-in id says after the id: shadowed, and the fix."""
    from rich.markup import escape

    return escape(f" (shadowed by the built-in; rename the id in {distribution}'s pyproject.toml)")


@app.command("show")
def show_command(method: str = typer.Argument(..., metavar="ID", help="A method id (see `vip methods list`).",
                                                 autocompletion=completion.methods),
                 as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show one method: what it does and needs, and its settings with their defaults."""
    import dataclasses
    import typing

    from vipcli.methods import method_class, method_summary, symptoms_matter
    from vipcli.methods.base import SETTINGS_FIX, setting_default, setting_type_name
    from vipcli.methods.contract import method_code

    cls = method_class(method)
    hints = typing.get_type_hints(cls.Settings)
    with method_code(method, "Settings", SETTINGS_FIX):  # a default_factory runs the plugin's code
        settings = [{"name": f.name.replace("_", "-"), "type": setting_type_name(hints[f.name]),
                     "default": setting_default(f)} for f in dataclasses.fields(cls.Settings)]
    summary = method_summary(cls)
    document = {"id": method, "summary": summary, "trains": cls.trains, "uses_shots": cls.uses_shots,
                "needs_symptoms": cls.needs_symptoms, "uses_symptoms": symptoms_matter(cls),
                "uses_schedule": cls.uses_schedule, "settings": settings,
                "doc": (cls.__doc__ or "").strip()}
    if as_json:
        print(json.dumps(document, indent=2, default=repr))  # a plugin's default of another type: as written
        return
    out = console.stdout()
    out.print(f"{method}: {summary}" if summary else method, markup=False)
    out.print(f"trains: {_yes_no(cls.trains)}; uses the labelled shots: {_yes_no(cls.uses_shots)}; "
              f"needs symptoms: {_yes_no(cls.needs_symptoms)}; "
              f"{'' if cls.needs_symptoms else f'uses symptoms given: {_yes_no(symptoms_matter(cls))}; '}"
              f"{'uses the run schedule (--schedule/--epochs/--batch-size/--lr)' if cls.uses_schedule else 'has its own fitting'}",
              markup=False)
    if not settings:
        out.print("settings: none")
        return
    out.print("settings (--method-option KEY=VALUE):")
    for entry in settings:
        out.print(f"  {entry['name']} = {entry['default']!r}  ({entry['type']})", markup=False)


@app.command("check")
def check_command(method: str = typer.Argument(..., metavar="ID", help="A method id (see `vip methods list`).",
                                                  autocompletion=completion.methods),
                  method_option: Optional[List[str]] = options.METHOD_OPTION) -> None:
    """Run a method through vip train and vip predict on a small synthetic data set, in seconds.

    It trains on a 2-class lesion world with the toy backbone (2 shots, 2 epochs), saves the run,
    reloads it and predicts the test images, in a temporary folder: every check a real run makes
    on a method runs on the way, so a plugin's mistake is found before a long run.
    """
    from vipcli.methods import METHODS
    from vipcli.methods.check import CHECK_EPOCHS, check_method

    METHODS.warn_shadowed(method)  # the check's own run is quiet: a plugin shadowed by this built-in id is said here
    checked = check_method(method, options.method_options(method_option, None, False, has_out=False))
    console.stdout().print(f"method '{checked.method}' passes: trained on a synthetic lesion world "
                           f"({', '.join(checked.classes)}; {checked.shots} shots per class, {CHECK_EPOCHS} epochs "
                           f"of the run schedule) with the toy backbone, saved, reloaded and used to predict "
                           f"{checked.predicted} images", markup=False)
