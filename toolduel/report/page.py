"""One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no script, no
link that leaves the file, every piece of run data escaped."""

from __future__ import annotations

import base64
import html
from typing import Iterable

MAX_CELL_CHARS = 700  # a cell holding a huge model output is cut, and says so

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1b1b1b; background: #fff; max-width: 1180px; margin: 24px auto; padding: 0 20px; }
h1 { font-size: 26px; margin-bottom: 4px; }
h2 { font-size: 20px; margin-top: 36px; border-bottom: 2px solid #e3e3e3; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
p.meta { color: #555; margin-top: 0; }
p.note { color: #444; font-size: 14px; }
figure { margin: 12px 0 6px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 10px 0 4px; font-size: 13.5px; }
th, td { border: 1px solid #d6d6d6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.examples { table-layout: fixed; width: 100%; font-size: 12.5px; }
table.examples td { overflow-wrap: anywhere; }
.code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; white-space: pre-wrap;
        font-size: 12px; }
.bad { color: #b42318; }
.good { color: #067647; }
section.problems { background: #fff4e5; border: 1px solid #f5c17a; padding: 4px 16px; border-radius: 4px; }
section.problems li { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
details pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 12.5px; }
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def clip(text: object, limit: int = MAX_CELL_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} more characters]"


class Cell:
    """A table cell with a CSS class (``num``, ``code``, ``bad``, ``good``); its text is escaped."""

    def __init__(self, text: object, css: str = ""):
        self.text, self.css = text, css


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(table_id: str, headers: list[str], rows: Iterable[list], css: str = "",
          widths: list[int] | None = None) -> str:
    """An HTML table; a cell is plain text, a number (right-aligned) or a :class:`Cell`;
    ``widths``: column widths in percent."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    columns = "".join(f'<col style="width: {int(w)}%">' for w in widths) if widths else ""
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if not isinstance(cell, Cell):
                cell = Cell(cell, "num" if isinstance(cell, (int, float)) else "")
            css_class = f' class="{escape(cell.css)}"' if cell.css else ""
            cells.append(f"<td{css_class}>{escape(clip(cell.text))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    css_class = f' class="{escape(css)}"' if css else ""
    return (f'<table id="{escape(table_id)}"{css_class}>{columns}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="figure-{escape(name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{escape(caption)}"><figcaption>{escape(caption)} (also {escape(name)}.png)</figcaption></figure>')


def section(title: str, *parts: str, section_id: str = "") -> str:
    anchor = f' id="{escape(section_id)}"' if section_id else ""
    return f"<section{anchor}><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def paragraph(text: str, css: str = "note") -> str:
    return f'<p class="{css}">{escape(text)}</p>'


def heading(text: str) -> str:
    return f"<h3>{escape(text)}</h3>"


def problems_section(problems: list[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{escape(problem)}</li>" for problem in problems)
    return (f'<section class="problems" id="problems"><h2>Problems reading the folder</h2>'
            f"<p>The report shows what could be read; these parts were left out:</p><ul>{items}</ul></section>")


def page(title: str, meta: str, body: list[str], config_text: str | None = None) -> str:
    config = ""
    if config_text:
        config = section("Settings", f"<details><summary>config.yaml</summary><pre>{escape(config_text)}</pre>"
                                     "</details>", section_id="settings")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1><p class=\"meta\">{escape(meta)}</p>"
            + "".join(body) + config + "</body></html>\n")
