"""`vip backbones ...`: the installed backbone plugins."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from vipcli import console
from vipcli.registry import list_backbones

app = typer.Typer(help="Backbone plugins (entry-point group vip.backbones).", no_args_is_help=True)


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List installed backbones: built-in and third-party plugins."""
    infos = list_backbones()
    for info in infos:
        if info.conflict:
            console.warn(f"{info.conflict}; '{info.id}' is disabled until one is uninstalled")
    if as_json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
        return
    from rich.table import Table

    table = Table("id", "provided by", "loads")
    for info in infos:
        table.add_row(info.id + (" (disabled: registered twice)" if info.conflict else ""),
                      f"{info.distribution} {info.version}".strip(), info.target)
    console.stdout().print(table)
