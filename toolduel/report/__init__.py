"""The weakness report: one self-contained HTML file (opens offline) plus the same figures as PNG.

    load.py      read a run folder or an eval folder; every missing or corrupt file is one problem line
    measure.py   the numbers shown: series per round, error kinds, phrasing, rejections, examples
    traits.py    measured traits of a query; valid queries that fooled the FC model vs. not
    ablation.py  the figures and tables of an ablation's JSON (benchmarks/ablation.py)
    game.py      the same for a game benchmark's JSON (benchmarks/game.py): accuracy per round, paired
    figures.py   matplotlib figures (Agg), returned so tests can read the plotted values
    page.py      HTML: inline CSS, base64 images, escaped data, no script, no external link
    build.py     the sections, in order; ``build_report``

This module stays light (the CLI imports ``report_command`` at start-up); matplotlib loads
when a report is drawn.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from toolduel.report.traits import TRAITS, compare_traits, query_traits

__all__ = ["FIGURES", "HTML_FILE", "Report", "ReportError", "RunData", "TRAITS", "build_report", "compare_traits",
           "load_folder", "query_traits", "report_command"]

_LAZY = {"build_report": "toolduel.report.build", "FIGURES": "toolduel.report.build",
         "HTML_FILE": "toolduel.report.build", "load_folder": "toolduel.report.load",
         "RunData": "toolduel.report.load"}


class ReportError(ValueError):
    """No report can be made (the folder does not exist)."""


@dataclass
class Report:
    html: Path
    figures: dict[str, Path] = field(default_factory=dict)  # figure name -> PNG file, in the page's order
    problems: list[str] = field(default_factory=list)  # one line each: the file and what is wrong


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def report_command(run_dir: Path, out: Path | None = None) -> Report:
    """Write the weakness report of a run folder or a `toolduel eval` folder: one HTML file
    that opens offline, plus its figures as PNG (default: RUN_DIR/report/). Given the JSON of an
    ablation (benchmarks/ablation.py), draw its arms and attack yield; given that of a game
    benchmark (benchmarks/game.py), its arms round by round (default: <name>-report/)."""
    from rich.markup import escape

    from toolduel.progress import console
    from toolduel.report.build import build_report

    try:
        report = build_report(run_dir, out)
    except ReportError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True, markup=True)
        raise SystemExit(2) from None
    for problem in report.problems:
        console.print(f"[yellow]problem:[/yellow] {escape(problem)}", soft_wrap=True, highlight=False, markup=True)
    console.print(f"report: {report.html} ({len(report.figures)} figures as PNG beside it)", soft_wrap=True)
    return report
