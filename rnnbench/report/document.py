"""A tiny document model (headings, paragraphs, tables, figures, notes) written out twice: as
Markdown with the figures beside it, and as one self-contained HTML file with the figures
embedded as base64 PNG and the CSS inline, so that it opens anywhere with no network."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

from rnnbench.report.plots import Figure


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    text: str
    css: str = ""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    row_css: list[str] = field(default_factory=list)  # one class per row ("" for none)
    numeric: set[int] = field(default_factory=set)  # right-aligned columns
    caption: str = ""
    key_value: bool = False  # a two-column fact sheet: no header row, first column bold


@dataclass
class Details:
    """A collapsed key/value table (the full machine record)."""

    summary: str
    pairs: list[tuple[str, str]]


@dataclass
class FigureBlock:
    figure: Figure


@dataclass
class Notes:
    title: str
    items: list[str]


Block = Heading | Para | Table | Details | FigureBlock | Notes


# --- Markdown ------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], figure_dir: str) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(f"{b.text}\n")
        elif isinstance(b, Table) and b.key_value:
            out += [f"- **{_md_cell(k)}**: {_md_cell(v)}" for k, v in b.rows]
            out.append("")
        elif isinstance(b, Table):
            if b.caption:
                out.append(f"{b.caption}\n")
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            aligns = ["---:" if i in b.numeric else "---" for i in range(len(b.headers))]
            out.append("| " + " | ".join(aligns) + " |")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Details):
            out.append(f"<details><summary>{html.escape(b.summary)}</summary>\n")
            out.append("| field | value |\n| --- | --- |")
            out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in b.pairs]
            out.append("\n</details>\n")
        elif isinstance(b, FigureBlock):
            f = b.figure
            out.append(f"![{f.title}]({figure_dir}/{f.name}.png)\n")
            if f.caption:
                out.append(f"*{f.caption}*\n")
        elif isinstance(b, Notes):
            out.append(f"**{b.title}**\n")
            out += [f"- {item}" for item in b.items]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


# --- HTML ----------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1b1f24; background: #fff; line-height: 1.45; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.35em; margin-top: 2em; padding-bottom: 0.2em; border-bottom: 2px solid #d0d7de; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
h4 { font-size: 1em; margin: 1.4em 0 0.4em; color: #30363d; }
h5 { font-size: 0.95em; margin: 1.2em 0 0.3em; color: #30363d; }
p.meta { color: #57606a; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.86em; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
tr.bad td { background: #ffebe9; }
tr.warn td { background: #fff8c5; }
tr.skip td { background: #f3f4f6; color: #57606a; }
table.facts th { text-align: right; background: #fff; white-space: nowrap; }
table.facts td { max-width: 1000px; }
p.caption { color: #57606a; font-size: 0.9em; margin: 1em 0 0.2em; }
details { margin: 0.5em 0 1em; }
details summary { cursor: pointer; color: #0969da; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 0.85em; }
.figures { display: flex; flex-wrap: wrap; gap: 8px 24px; }
.figures figure { flex: 0 1 620px; }
.figures figure img { width: 100%; }
div.notes { background: #f6f8fa; border-left: 4px solid #bf8700; padding: 6px 14px;
            margin: 0.8em 0; font-size: 0.9em; }
div.notes ul { margin: 0.2em 0; padding-left: 1.2em; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head><body><main>",
    ]
    in_figures = False
    for b in blocks:
        if in_figures and not isinstance(b, FigureBlock):
            out.append("</div>")
            in_figures = False
        if isinstance(b, Heading):
            anchor = f' id="{esc(b.anchor)}"' if b.anchor else ""
            out.append(f"<h{b.level}{anchor}>{esc(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            css = f' class="{b.css}"' if b.css else ""
            out.append(f"<p{css}>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        elif isinstance(b, Details):
            rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in b.pairs)
            out.append(
                f"<details><summary>{esc(b.summary)}</summary><table>{rows}</table></details>"
            )
        elif isinstance(b, FigureBlock):
            if not in_figures:
                out.append('<div class="figures">')
                in_figures = True
            f = b.figure
            data = base64.b64encode(f.png).decode("ascii")
            out.append(
                f'<figure><img alt="{esc(f.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(f.caption)}</figcaption></figure>"
            )
        elif isinstance(b, Notes):
            items = "".join(f"<li>{_inline(i)}</li>" for i in b.items)
            out.append(f'<div class="notes"><strong>{esc(b.title)}</strong><ul>{items}</ul></div>')
    if in_figures:
        out.append("</div>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then turn Markdown's `code` spans into <code> (the only inline markup used)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_table(t: Table) -> str:
    esc = html.escape
    if t.key_value:
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in t.rows)
        return f'<table class="facts">{rows}</table>'
    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = []
    for i, row in enumerate(t.rows):
        css = t.row_css[i] if i < len(t.row_css) else ""
        cls = f' class="{css}"' if css else ""
        cells = "".join(
            f'<td class="num">{esc(c)}</td>' if j in t.numeric else f"<td>{esc(c)}</td>"
            for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    # a paragraph, not <caption>: a caption wraps to the width of a narrow table
    caption = f'<p class="caption">{esc(t.caption)}</p>' if t.caption else ""
    return f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
