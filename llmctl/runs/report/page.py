"""The HTML of the report: one page, no network (inline CSS, images as data: URIs).

Every value that comes from a run (text, labels, paths, recipe) passes through `esc`, so a
validation sentence holding `<script>` shows as text.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from string import Template

from llmctl.metrics.display import show

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #1d2330; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #d0d5dd; padding-bottom: .2em; margin-top: 1.8em; }
.sub { color: #5a6272; }
table { border-collapse: collapse; margin: .5em 0; } th, td { border: 1px solid #d0d5dd; padding: .25em .6em;
        text-align: left; vertical-align: top; } th { background: #f2f4f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; border: 1px solid #e3e6ea; }
.missing { color: #8a5a00; background: #fff7e0; padding: .4em .7em; border-left: 3px solid #e0a800; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #5a6272; }
nav a { margin-right: 1em; } .wide { overflow-x: auto; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="sub">$subtitle</p>
<nav>$nav</nav>
$sections
</body>
</html>
""")


def esc(value) -> str:
    return escape(str(value), quote=True)


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """`sections`: (anchor id, heading, inner HTML) in order."""
    nav = "".join(f'<a href="#{esc(anchor)}">{esc(heading)}</a>' for anchor, heading, _ in sections)
    body = "\n".join(f'<section id="{esc(anchor)}"><h2>{esc(heading)}</h2>\n{inner}</section>'
                     for anchor, heading, inner in sections)
    return PAGE.substitute(title=esc(title), subtitle=esc(subtitle), nav=nav, sections=body)


def table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """Every number shown by its kind (llmctl.metrics.display): a column's kind is its header, or,
    in a key / value table, the row's key."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i in numeric else ""}>'
                                    f"{esc(show(v, _name(headers, row, i)))}</td>"
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _name(headers: list[str], row: list, i: int) -> str | None:
    header = headers[i] if i < len(headers) else ""
    if header in ("", "value") and i > 0 and isinstance(row[0], str):
        return row[0]
    return header


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def para(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def missing(text: str) -> str:
    return f'<p class="missing">{esc(text)}</p>'


def figure(name: str, content: bytes) -> str:
    """A picture's bytes (read by the caller, which decides what may be read) inline as a data: URI."""
    data = base64.b64encode(content).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(Path(name).stem)}">'
            f"<figcaption>{esc(name)}</figcaption></figure>")
