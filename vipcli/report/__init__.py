"""HTML reports a person can open: of a run, of a benchmark, of the images just predicted (#11)."""

from __future__ import annotations

from pathlib import Path

from vipcli.errors import VipError


DEFAULT_COVERAGE = 0.9  # of the prediction sets in a run's gallery
DEFAULT_GALLERY = 48  # test images in a run's gallery


def report_kind(target: Path) -> str:
    """'run' for a run directory, 'benchmark' for a benchmark folder; otherwise a clear error."""
    target = Path(target)
    if not target.exists():
        from vipcli.checkpoint import refuse_run_in_training

        refuse_run_in_training(target)
        raise VipError(f"no such folder: {target}", "pass a run directory or a benchmark folder")
    if target.is_file():  # one of the folder's files (run.yaml, results.json): its folder was meant
        folder = target.parent
        meant = (folder / "model.safetensors").is_file() or (folder / "results.json").is_file()
        raise VipError(f"{target} is a file, not a folder", f"pass {folder}, the folder it belongs to" if meant else
                       "pass a folder written by `vip train` or `vip benchmark`")
    if (target / "model.safetensors").is_file():
        return "run"
    if (target / "results.json").is_file():
        return "benchmark"
    from vipcli.checkpoint import refuse_data_folder

    refuse_data_folder(target, "`vip report RUN`", "a run directory or a benchmark folder")
    raise VipError(f"{target} is neither a run directory (model.safetensors) nor a benchmark folder (results.json)",
                   _reportable_inside_hint(target))


def _reportable_inside_hint(folder: Path) -> str:
    """The fix for `vip report FOLDER` one level above what it reports (`vip report vip-demo`): the runs and
    benchmark folders directly inside it, by name; else to pass a folder vip train or vip benchmark wrote."""
    from vipcli import shell
    from vipcli.console import first_few

    try:
        inside = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    except OSError:
        inside = []
    found = [(p, "the run" if (p / "model.safetensors").is_file() else "the benchmark") for p in inside
             if (p / "model.safetensors").is_file() or (p / "results.json").is_file()]
    if len(found) == 1:
        return f"it holds {found[0][1]} {found[0][0]}: `vip report {shell.quote(found[0][0])}`"
    if found:
        named = first_few([f"{kind} {path}" for path, kind in found], 3)
        return f"it holds {named}: pass one of them, e.g. `vip report {shell.quote(found[0][0])}`"
    return "pass a folder written by `vip train` or `vip benchmark`"


def write_report(target: Path, out: Path | None = None, coverage: float = DEFAULT_COVERAGE,
                 gallery: int = DEFAULT_GALLERY, device="cpu", workers: int = 2, progress=None) -> Path:
    """Write the report of a run directory or benchmark folder; return the HTML file's path.

    Args:
        target: a run directory (`vip train`) or a benchmark folder (`vip benchmark`).
        out: the HTML file (default: TARGET/report.html).
        coverage: the prediction sets shown in a run's gallery.
        gallery: how many test images a run's gallery shows (errors first).
    """
    from vipcli.report.html import check_writable, write_html

    target = Path(target)
    kind = report_kind(target)
    path = check_writable(Path(out) if out else target / "report.html")
    if kind == "run":
        from vipcli.report.run import run_report

        document = run_report(target, coverage, gallery, device, workers, progress)
    else:
        from vipcli.report.benchmark import benchmark_report

        document = benchmark_report(target)
    return write_html(path, document)
