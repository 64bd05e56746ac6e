"""`vip methods ...`: the installed few-shot methods (entry-point group vip.methods)."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from vipcli import console

app = typer.Typer(help="Few-shot methods (entry-point group vip.methods).", no_args_is_help=True)


def _yes_no(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List installed methods: what each needs, and its settings (for --method-option KEY=VALUE)."""
    from vipcli.methods import list_methods

    infos = list_methods()
    for info in infos:
        if info.problem:
            console.warn(f"{info.problem}; '{info.id}' is unavailable")
    if as_json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return
    from rich.table import Table

    table = Table("id", "provided by", "trains", "uses shots", "needs symptoms", "settings")
    for info in infos:
        name = info.id if not info.problem else f"{info.id} (unavailable)"
        table.add_row(name, f"{info.distribution} {info.version}".strip(), _yes_no(info.trains),
                      _yes_no(info.uses_shots), _yes_no(info.needs_symptoms), ", ".join(info.settings) or "-")
    console.stdout().print(table)
