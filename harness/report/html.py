"""What every HTML page of the project shares: the style sheet, escaping, inlined images, tables.

Pages are single self-contained files (figures inlined as data URIs, inline CSS, no script),
so they can be mailed or opened offline. Every string that came from a model, a config or a
file goes through :func:`esc` before it reaches a page.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
.subtitle { color: #555; margin-top: 0; }
.banner { padding: 0.8em 1em; border-radius: 6px; margin: 1em 0; font-weight: 600; }
.banner.simulated { background: #fdecea; border: 2px solid #c0392b; color: #7b1d13; }
.banner.incomplete { background: #fff6dd; border: 2px solid #d39e00; color: #6b5000; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f4f5f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.dataframe td { text-align: right; font-variant-numeric: tabular-nums; }
table.dataframe td:first-child { text-align: left; }
td.text { white-space: pre-wrap; word-break: break-word; max-width: 30em;
          font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
tr.failed td { background: #fdecea; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto;
      font-size: 0.85em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.muted { color: #666; font-size: 0.9em; }
div.wide { overflow-x: auto; }
"""


def esc(value: object) -> str:
    """Escape text for HTML, quotes included (model replies are untrusted)."""
    return html.escape(str(value), quote=True)


def data_uri(path: Path) -> str:
    """A PNG file as a data URI, so the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def frame_table(frame: pd.DataFrame) -> str:
    """A pandas table with every cell escaped (labels and values may come from a model).

    Floats keep four significant digits (a horizon of 11.2 steps, an accuracy of 0.8733, a
    cost of 0.0001234); a wide table scrolls inside its box instead of widening the page.
    """
    table = frame.to_html(
        index=False, escape=True, border=0, na_rep="n/a", float_format=lambda x: f"{x:.4g}"
    )
    return f'<div class="wide">{table}</div>'
