"""`vip report`: one self-contained HTML file for a run directory or a benchmark folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vipcli import console
from vipcli.cli import options as opt


def report_command(
    target: Path = typer.Argument(..., metavar="TARGET", help="A run directory (vip train) or a benchmark folder (vip benchmark)."),
    out: Optional[Path] = typer.Option(None, "--out", help="The HTML file to write, named .html "
                                       "(default TARGET/report.html)."),
    coverage: Optional[float] = typer.Option(None, "--coverage", help="Coverage of the prediction sets shown in a "
                                             "run's gallery of test images (default 0.9)."),
    gallery: Optional[int] = typer.Option(None, "--gallery", help="Test images in a run's gallery, errors first "
                                          "(default 48)."),
    device: str = opt.device(note="a run's report encodes its test images"),
    workers: Optional[int] = opt.WORKERS,
) -> None:
    """Write an HTML report (images embedded; opens offline) of a run or a benchmark."""
    from vipcli.conformal import check_coverage
    from vipcli.devices import resolve_device
    from vipcli.errors import UsageError
    from vipcli.report import DEFAULT_COVERAGE, DEFAULT_GALLERY, write_report

    check_run_only_options(target, {"--coverage": coverage is not None, "--gallery": gallery is not None})
    coverage = DEFAULT_COVERAGE if coverage is None else coverage
    gallery = DEFAULT_GALLERY if gallery is None else gallery
    workers = opt.worker_count(workers)
    check_coverage(coverage)
    if gallery < 0:
        raise UsageError(f"--gallery {gallery} is negative", "pass 0 or more")
    with console.progress_bar() as progress:
        path = write_report(target, out, coverage, gallery, resolve_device(device), workers, progress)
    console.stdout().print(f"report written to {path}; open it in a browser ({path.resolve().as_uri()})", markup=False)


def check_run_only_options(target: Path, given: dict[str, bool]) -> None:
    """--coverage and --gallery shape what a run's report shows (its gallery); a benchmark folder's report has
    none, so giving them for one is refused rather than silently left unused. --device and --workers only say
    how a run's test images are encoded, and a script may pass them for both kinds: they are accepted."""
    from vipcli.errors import UsageError
    from vipcli.report import report_kind

    named = [option for option, was_given in given.items() if was_given]
    if named and report_kind(target) == "benchmark":
        applies = "applies" if len(named) == 1 else "apply"
        raise UsageError(f"{', '.join(named)} {applies} to a run's report; {target} is a benchmark folder",
                         f"drop {', '.join(named)}")
