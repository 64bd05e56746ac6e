"""Reports as a reader meets them without the README: when a page was written, and what calibration,
prediction sets and merge weights mean, said on the page in plain words."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import test_report
from browser import render

lesion_run, benchmark_dir = test_report.lesion_run, test_report.benchmark_dir  # the fixtures, shared


def test_the_footer_says_when_the_page_was_written_in_utc():
    from vipcli import __version__
    from vipcli.report.html import written_by

    moment = datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc)
    assert written_by("/runs/a", moment) == f"written by vip {__version__} on 2026-03-01 23:30 UTC from /runs/a"
    assert written_by(None, moment) == f"written by vip {__version__} on 2026-03-01 23:30 UTC"


@test_report.needs_browser
def test_a_rendered_benchmark_report_says_when_it_was_written_and_when_its_rows_ran(benchmark_dir, tmp_path):
    """A printed report said which vip wrote it, never when: two printouts of one folder could not be told
    apart, nor could a reader see how old its figures were."""
    from vipcli.report.benchmark import benchmark_report, read_results

    page = tmp_path / "bench.html"
    page.write_text(benchmark_report(benchmark_dir), encoding="utf-8")
    shown = render(page, tmp_path / "shot")["text"]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert re.search(rf"written by vip \S+ on {today} \d\d:\d\d UTC from ", shown), shown[-300:]
    first = min(r["finished_at"] for r in read_results(benchmark_dir)["rows"])[:10]
    assert re.search(rf"rows\s+\d+, finished {first} \d\d:\d\d to [\d: -]+ UTC", shown)
