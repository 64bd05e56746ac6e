"""`vip cache info|clear`: what the feature and LLM-answer cache holds, and removing it."""

from __future__ import annotations

import json
from typing import Optional

import typer

from vipcli import console, stop_signals
from vipcli.cli import completion
from vipcli.cli.help import App

app = App(help="The on-disk cache of image features and LLM answers: info, clear.", no_args_is_help=True)


@app.command("info")
def info_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Where the cache is, and its entries and size per backbone."""
    from vipcli.cache_admin import checked_root, human_size, summarize
    
    root = checked_root()
    _warn_if_refused(root)
    summary = summarize(root)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out = console.stdout()
    state = "" if summary["exists"] else " (empty: not created yet)"
    out.print(f"cache: {console.printable(summary['root'])}{state}  (set VIP_CACHE_DIR to move it)", markup=False)
    rows = [[console.printable(cell) for cell in (
        record["backbone"] or "(older vip version)",
        record["arch"] + ("" if record["image_fit"] == "crop" else f" ({record['image_fit']})"),
        str(record["entries"]), human_size(record["bytes"]), record["folder"].rsplit("/", 1)[-1],
        "stale" if record["stale"] else "current")] for record in summary["backbones"]]
    rows.append(["LLM answers", "", str(summary["llm_answers"]), human_size(summary["llm_bytes"]), "llm", ""])
    if summary["version_logs"]:  # the image versions `vip predict --out` recorded, so that a resume reads fewer
        rows.append(["predict --out logs", "", str(summary["version_logs"]), human_size(summary["version_log_bytes"]),
                     "digests", ""])
    rows.append(["total", "", "", human_size(summary["bytes"]), "", ""])
    out.print(_cache_table(["backbone", "arch", "entries", "size", "folder", "state"], rows, out.width))
    stale = [record for record in summary["backbones"] if record["stale"]]
    for record in stale:
        out.print(f"stale: {console.printable(record['folder'].rsplit('/', 1)[-1])} "
                  f"({console.printable('; '.join(record['stale']))}): never read again here", markup=False)
    if stale:
        out.print(f"`vip cache clear --stale` removes the {len(stale)} stale {console.plural(len(stale), 'folder')} "
                  f"({human_size(sum(record['bytes'] for record in stale))})", markup=False)
    orphans = summary["orphaned_logs"]
    if orphans:
        out.print(f"`vip cache clear --stale` removes the {orphans} predict --out {console.plural(orphans, 'log')} "
                  f"of files that are gone ({human_size(summary['orphaned_log_bytes'])}): never read again",
                  markup=False)


def _cache_table(headers: list[str], rows: list[list[str]], width: int, arch: int = 1, least: int = 12):
    """The table of `vip cache info`: where every cell but the arch fits on one line beside an arch at least `least`
    characters wide, a plain table that keeps each backbone id and folder name whole (what a user copies); on a
    narrower console a boxed one whose ids, arch and folder names fold onto more lines rather than being cut."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table

    widths = [max(cell_len(cell) for cell in [header, *(row[index] for row in rows)])
              for index, header in enumerate(headers)]
    plain = sum(widths) - widths[arch] + min(widths[arch], least) + 2 * (len(headers) - 1) <= width
    if plain:  # no rules: two spaces between columns
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
        for index, header in enumerate(headers):
            table.add_column(header, width=None if index == arch else widths[index], overflow="fold")
    else:
        table = Table(*headers)
        for index in (0, arch, headers.index("folder")):
            table.columns[index].overflow = "fold"  # rather than being cut with "…"
    for row in rows:
        table.add_row(*row)
    return table


def _warn_if_refused(root) -> None:
    """One warning when the commands that read the cache back refuse `root` (a folder every user can write), which
    `vip cache info` itself may show: a cache that looks fine here would otherwise fail the next `vip train`."""
    from rich.markup import escape

    from vipcli.cache_trust import check_cache_root
    from vipcli.errors import VipError

    try:
        check_cache_root(root)
    except VipError as refused:
        console.warn(escape(f"{refused.message}; vip train, predict, benchmark and symptoms refuse to use it "
                            f"({refused.hint})"))


@app.command("clear")
def clear_command(
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Remove only this backbone's features "
                                           "(see `vip cache info`); default: everything.",
                                           autocompletion=completion.backbones),
    stale: bool = typer.Option(False, "--stale", help="Remove only the feature folders this installation never "
                               "reads again (`vip cache info` marks them: written by another vip, library "
                               "or backbone code version), and the logs of `vip predict --out` files deleted "
                               "since. Judged by this installation: another vip version "
                               "sharing the cache re-encodes what it loses."),
) -> None:
    """Remove cached features (of one backbone, the stale ones, or all) and, clearing all, cached LLM answers.

    Clearing all (no --backbone, no --stale) also removes the remembered backbone checks and weights digests.
    """
    from vipcli.cache_admin import backbone_folders, checked_root, clear, human_size
    
    root = checked_root()
    if backbone is not None and not any(r["backbone"] == backbone for r in backbone_folders(root)):
        cached = sorted({r["backbone"] for r in backbone_folders(root) if r["backbone"]})
        console.stdout().print(f"nothing to remove: no cached features of backbone {backbone!r} in {root} "
                               f"(cached: {', '.join(cached) or 'none'})", markup=False)
        return
    if stale:
        removed = clear(root, backbone, stale_only=True)
        stop_signals.work_done()  # a Ctrl-C from here on interrupts only the message: it says so
        which = f" of backbone {backbone!r}" if backbone else ""
        logs = (f", and {removed['logs']} predict --out {console.plural(removed['logs'], 'log')} of files that are "
                "gone" if removed["logs"] else "")
        console.stdout().print(f"removed {len(removed['removed'])} stale feature "
                               f"{console.plural(len(removed['removed']), 'folder')}{which}: {removed['entries']} "
                               f"entries{logs} ({human_size(removed['bytes'])}) from {root}", markup=False)
        _warn_kept(root, removed["kept"])
        return
    removed = clear(root, backbone)
    stop_signals.work_done()
    what = f"backbone {backbone!r}" if backbone else "all backbones and the LLM answers"
    console.stdout().print(f"removed {removed['entries']} feature entries of {what} ({human_size(removed['bytes'])}) "
                           f"from {root}", markup=False)
    _warn_kept(root, removed["kept"])


def _warn_kept(root, kept: list[str]) -> None:
    """One warning naming the files `vip cache clear` left because vip did not write them."""
    if kept:
        console.warn(f"kept {len(kept)} file(s) in {root} that vip did not write: {console.first_few(kept, 3)} "
                     "(remove them yourself if they are not needed)")
