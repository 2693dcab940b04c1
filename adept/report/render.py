"""The blocks of a report rendered as Markdown, as one self-contained HTML page, and the scores as
CSV."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence

from adept.report.analysis import Analysis
from adept.report.document import Block, Heading, Items, Table, Text


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [block.text, ""]
        elif isinstance(block, Items):
            lines += [*(f"- {item}" for item in block.items), ""]
        elif isinstance(block, Table):
            cells = [[_md_cell(c) for c in row] for row in block.rows]
            for i, j in block.bold:
                cells[i][j] = f"**{cells[i][j]}**"
            lines.append("| " + " | ".join(map(_md_cell, block.header)) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(row) + " |" for row in cells]
            lines.append("")
        else:
            lines += [f"![{block.caption}]({block.name})", ""]
    return "\n".join(lines)


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em;
       color: #1d1d1f; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d5; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
.wide { overflow-x: auto; }
th { background: #f2f2f5; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #e0e0e5; }
figcaption { color: #555; font-size: 0.92em; }
#render-check { font-size: 0.9em; padding: 0.3em 0.6em; display: inline-block; }
#render-check.ok { background: #e6f4ea; color: #1e6b34; }
#render-check.bad { background: #fde8e8; color: #9b1c1c; font-weight: bold; }
"""

RENDER_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  var out = document.getElementById("render-check");
  if (broken.length) {
    out.textContent = broken.length + " of " + images.length + " figures failed to render: " +
      broken.map(function (img) { return img.alt; }).join(", ");
    out.className = "bad";
  } else {
    out.textContent = "all " + images.length + " figures rendered";
    out.className = "ok";
  }
});
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained page: figures as data URIs, inline style, and a script that checks on
    load that every figure decoded (a broken figure is then visible, and testable)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
    ]
    for n, block in enumerate(blocks):
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
            if n == 0:
                parts.append('<p id="render-check">figures not checked (script did not run)</p>')
        elif isinstance(block, Text):
            parts.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Items):
            parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in block.header)
            body = []
            for i, row in enumerate(block.rows):
                cells = []
                for j, text in enumerate(row):
                    content = f"<strong>{e(text)}</strong>" if (i, j) in block.bold else e(text)
                    cells.append(f"<td>{content}</td>")
                body.append("<tr>" + "".join(cells) + "</tr>")
            parts.append(
                f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table></div>"
            )
        else:
            data = base64.b64encode(block.png).decode()
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{e(block.name)}">'
                f"<figcaption>{e(block.caption)}</figcaption></figure>"
            )
    parts.append(f"<script>{RENDER_CHECK}</script></body></html>")
    return "\n".join(parts) + "\n"


CSV_COLUMNS = (
    "dataset",
    "variant",
    "method",
    "agent",
    "label",
    "seeds",
    "seeds_planned",
    "last_mean",
    "last_ci_low",
    "last_ci_high",
    "best_mean",
    "best_ci_low",
    "best_ci_high",
    "auc_mean",
    "auc_ci_low",
    "auc_ci_high",
    "budget",
)


def to_csv(analysis: Analysis, budget: str) -> str:
    """One row per dataset × variant × agent; empty fields where nothing finished or where a
    single seed leaves no CI."""

    def number(x: float | None) -> str:
        return "" if x is None else f"{x:.4f}"

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in analysis.rows:
        scores = []
        for e in (r.last, r.best, r.auc):
            scores += (
                [number(None), number(None), number(None)]
                if e is None
                else [number(e.value), number(e.low), number(e.high)]
            )
        writer.writerow(
            [
                r.dataset,
                r.variant,
                r.method,
                r.agent,
                r.label,
                len(r.seeds),
                r.planned,
                *scores,
                budget,
            ]
        )
    return text.getvalue()
