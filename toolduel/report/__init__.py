"""The weakness report: one self-contained HTML file (opens offline) plus the same figures as PNG.

    load.py      read a run folder or an eval folder; every missing or corrupt file is one problem line
    measure.py   the numbers shown: series per round, error kinds, phrasing, rejections, examples
    traits.py    measured traits of a query; attacks that worked vs. failed
    figures.py   matplotlib figures (Agg), returned so tests can read the plotted values
    page.py      HTML: inline CSS, base64 images, escaped data, no script, no external link
    build.py     the sections, in order; ``build_report``
"""

from __future__ import annotations

from pathlib import Path

from toolduel.report.build import HTML_FILE, Report, ReportError, build_report
from toolduel.report.load import RunData, load_folder
from toolduel.report.traits import TRAITS, compare_traits, query_traits

__all__ = ["HTML_FILE", "Report", "ReportError", "RunData", "TRAITS", "build_report", "compare_traits",
           "load_folder", "query_traits", "report_command"]


def report_command(run_dir: Path, out: Path | None = None) -> Report:
    """Write the weakness report of a run folder or a `toolduel eval` folder: one HTML file
    that opens offline, plus its figures as PNG (default: RUN_DIR/report/)."""
    from toolduel.progress import console

    try:
        report = build_report(run_dir, out)
    except ReportError as error:
        console.print(f"[red]error:[/red] {error}")
        raise SystemExit(2) from None
    for problem in report.problems:
        console.print(f"[yellow]problem:[/yellow] {problem}", markup=True, highlight=False)
    console.print(f"report: {report.html} ({len(report.figures)} figures as PNG beside it)")
    return report
