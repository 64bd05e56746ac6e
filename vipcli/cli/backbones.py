"""`vip backbones ...`: the installed backbone plugins, and the contract check of one."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Optional

import typer

from vipcli import console
from vipcli.cli import completion, options
from vipcli.cli.help import App
from vipcli.errors import VipError
from vipcli.plugins import is_own_distribution  # vip's own backbones: listed without importing them (and torch)
from vipcli.registry import list_backbones

app = App(help="Backbone plugins (entry-point group vip.backbones).", no_args_is_help=True)


def _problem(info) -> str:
    """Why the backbone `info` cannot be used ("" when it can): registered twice, or its entry point
    does not resolve (a failed import, a missing class). Imports a third-party plugin's module."""
    from vipcli.registry import backbone_class

    if info.conflict:
        return f"{info.conflict}; '{info.id}' is disabled until one is uninstalled"
    if info.shadowed:  # never imported: the built-in of that id is the one used
        return ""
    if is_own_distribution(info.distribution):
        return ""
    try:
        backbone_class(info.id)
    except VipError as error:
        return f"{error}; '{info.id}' is unavailable"  # the message and its fix
    return ""


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List installed backbones: built-in and third-party plugins (a plugin that cannot load is marked)."""
    from rich.markup import escape

    from vipcli.registry import BACKBONES

    infos = list_backbones()
    problems = [_problem(info) for info in infos]
    for info, problem in zip(infos, problems):
        if problem:
            console.warn(escape(problem))
        if info.shadowed:
            BACKBONES.warn_shadowed(info.id)  # once per process, as when the id is used
    if as_json:
        print(json.dumps([{**asdict(info), "problem": problem} for info, problem in zip(infos, problems)], indent=2))
        return
    from rich.table import Table

    table = Table("id", "provided by")
    table.add_column("loads", overflow="fold")  # a plugin's long module path folds rather than being cut
    for info, problem in zip(infos, problems):
        mark = (" (disabled: registered twice)" if info.conflict else " (unavailable)" if problem else
                f" (shadowed by the built-in; rename the id in {info.distribution}'s pyproject.toml)" if info.shadowed else "")
        table.add_row(escape(info.id + mark), escape(f"{info.distribution} {info.version}".strip()),
                      escape(info.target))
    console.stdout().print(table)


@app.command("check")
def check_command(
    backbone_id: str = typer.Argument(..., metavar="ID", help="Backbone id (see `vip backbones list`).",
                                    autocompletion=completion.backbones),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture, as for `vip train`."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="Weights, as for `vip train`."),
    device: str = options.device("cpu"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Load a backbone twice and check it against the plugin contract; exit code 1 on any failure."""
    from vipcli.backbone_contract import as_json as checks_json
    from vipcli.backbone_contract import check_cuda_graphs, check_reload, run_checks
    from vipcli.devices import resolve_device
    from vipcli.registry import load_backbone

    target = resolve_device(device)
    started = time.perf_counter()
    try:
        backbone = load_backbone(backbone_id, arch, pretrained, target, check=False)
    except VipError:
        from vipcli.registry import forget_contract_passes

        forget_contract_passes(backbone_id)  # it does not even build: forget any earlier pass
        raise
    loaded = time.perf_counter() - started
    checks = run_checks(backbone, images=2)
    checks.append(check_reload(backbone, lambda: load_backbone(backbone_id, arch, pretrained, target, check=False,
                                                               warn_random=False)))
    checks.append(check_cuda_graphs(backbone))
    failed = [c for c in checks if c.ok is False]
    if as_json:
        print(checks_json(checks))
    else:
        _print_table(backbone_id, checks, loaded)
    if failed:
        from vipcli.registry import forget_contract_passes

        forget_contract_passes(backbone_id)  # no later load may trust an earlier pass of this backbone
        raise VipError(f"backbone '{backbone_id}' fails {len(failed)} of {len(checks)} contract checks "
                       f"(first: {failed[0].name}: {failed[0].detail})",
                       ("see `checks` in the JSON on stdout" if as_json else "see the table above")
                       + "; README 'Writing a backbone plugin' lists the contract")


def _print_table(backbone_id: str, checks, loaded_s: float) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = escape(f"backbone '{backbone_id}': loaded in {loaded_s:.1f} s")
    table = Table("check", "result", "detail", title=title)
    marks = {True: "[green]ok[/green]", False: "[red]FAIL[/red]", None: "[yellow]skipped[/yellow]"}
    for check in checks:  # the details quote the plugin's own text (exceptions, describe()): never markup
        table.add_row(escape(check.name), marks[check.ok], escape(console.printable(check.detail)))
    console.stdout().print(table)
