"""Figures for `vip benchmark` (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path


def _series(rows: list[dict]) -> dict[str, dict]:
    """Per method: {shots text: [test accuracies over seeds]}; methods that learn nothing under "0"."""
    series: dict[str, dict] = {}
    for row in rows:
        if row.get("test_accuracy") is None:
            continue
        series.setdefault(row["method"], {}).setdefault(str(row["shots"]), []).append(row["test_accuracy"])
    return series


def _mean_std(values: list[float]) -> tuple[float, float]:
    import statistics

    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot_shots(rows: list[dict], path: Path, shots_order: list | None = None) -> Path:
    """Test accuracy against shots, one line per method, mean over seeds with a +-std band.

    Methods that learn nothing (rows at shots 0) are drawn as dashed horizontal lines.

    Args:
        rows: benchmark rows (method, shots, seed, test_accuracy, ...).
        path: the PNG to write (atomically).
        shots_order: x-axis shots values in order (default: those in `rows`, numbers first, then "all").
    Returns:
        path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(rows)
    if shots_order is None:
        found = {str(r["shots"]) for r in rows} - {"0"}
        shots_order = sorted((s for s in found if s != "all"), key=int) + (["all"] if "all" in found else [])
    labels = [str(s) for s in shots_order]
    x = list(range(len(labels)))
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    palette = plt.get_cmap("tab10")
    for n, (method, by_shots) in enumerate(series.items()):
        color = palette(n % 10)
        if set(by_shots) == {"0"}:
            mean, std = _mean_std(by_shots["0"])
            axes.axhline(mean, color=color, linestyle="--", linewidth=1.2, label=f"{method} (no training)")
            axes.axhspan(mean - std, mean + std, color=color, alpha=0.12)
            continue
        points = [(i, *_mean_std(by_shots[s])) for i, s in zip(x, labels) if s in by_shots]
        if not points:
            continue
        xs, means, stds = zip(*points)
        axes.plot(xs, means, color=color, marker="o", linewidth=1.6, label=method)
        axes.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                          color=color, alpha=0.18)
    axes.set_xticks(x, labels)
    axes.set_xlabel("labelled training images per class (shots)")
    axes.set_ylabel("test accuracy % (mean ± std over seeds)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return _save(figure, Path(path))


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from vipcli.atomic import atomic_path

    try:
        with atomic_path(path, suffix=".png") as temp:
            figure.savefig(temp, format="png")
    finally:
        plt.close(figure)
    return path
