"""Render a :class:`reports.tables.Table` as Markdown, LaTeX (booktabs) or CSV.

* Markdown: a caption paragraph (dataset in bold), then a pipe table whose columns are padded to equal
  width (method left-aligned, numbers right-aligned); best in ``**bold**``, second in ``<ins>underline</ins>``.
* LaTeX: cells are ``mean\\,{\\scriptsize$\\pm$std}`` with the marks as math superscripts; the floats, heads
  and splitting that make a table fit the page are :mod:`reports.latex`'s. Text is escaped
  (``_ & % # $ { } ~ ^ \\``) and the few non-ASCII symbols mibench writes (± † ‡ – ≥ ...) become LaTeX commands.
* CSV: one tidy row per (method, column, metric) with the numbers unrounded and unformatted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.tables import NOT_COMPUTABLE, Column, Slot, Table

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": r"$\pm$", "†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$", "–": "--", "—": "---",
                  "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "·": r"$\cdot$", "→": r"$\rightarrow$",
                  "↑": r"$\uparrow$", "↓": r"$\downarrow$",
                  "<": r"$<$", ">": r"$>$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the non-ASCII symbols mibench writes to LaTeX commands."""
    out = "".join(_LATEX_SPECIAL.get(ch, _LATEX_UNICODE.get(ch, ch)) for ch in text)
    if any(ord(ch) > 127 for ch in out):
        raise ValueError(f"no LaTeX form for the character(s) {sorted({c for c in out if ord(c) > 127})} in {text!r}")
    return out


@dataclass(frozen=True)
class _Style:
    bold: Callable[[str], str]
    underline: Callable[[str], str]
    pm: str
    marks: dict[str, str]
    text: Callable[[str], str]


MARKDOWN = _Style(lambda s: f"**{s}**", lambda s: f"<ins>{s}</ins>", " ± ",
                  {"†": "†", "‡": "‡", NOT_COMPUTABLE: " (n/c)"}, lambda s: s)
LATEX = _Style(lambda s: rf"\textbf{{{s}}}", lambda s: rf"\underline{{{s}}}", r"\,{\scriptsize$\pm$",
               {"†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$", NOT_COMPUTABLE: r"\textsuperscript{n/c}"}, latex_escape)


def _number(table: Table, method: str, slot: Slot, style: _Style, compact: bool) -> str:
    row = table.cell(method, slot)
    if row is None or not np.isfinite(row["mean"]):
        return "–" if style is MARKDOWN else "--"
    text = slot.display(row["mean"])
    text = style.bold(text) if row["rank"] == 1 else style.underline(text) if row["rank"] == 2 else text
    if np.isfinite(row["std"]):
        std = slot.display(row["std"])
        text += style.pm + std + "}" if style is LATEX else (style.pm.strip() if compact else style.pm) + std
    return text + style.marks.get(str(row["mark"]), "")


def _reported(table: Table, method: str, slot: Slot, style: _Style) -> str:
    value = table.reported.get((method, slot.column, slot.metric))
    return slot.display(value) if value is not None else ("–" if style is MARKDOWN else "--")


def cell_text(table: Table, method: str, column: Column, style: _Style = MARKDOWN) -> str:
    """One cell: ``mean ± std`` + mark per slot, slots joined by `` / `` (composite cells drop the spaces
    around ±); reported columns show the paper's value only."""
    compact = len(column.slots) > 1
    parts = [_reported(table, method, s, style) if column.reported else _number(table, method, s, style, compact)
             for s in column.slots]
    return " / ".join(parts)


def pipe_table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table with every column padded to one width (first column left-, the rest right-aligned)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i else (":" + "-" * (w + 1)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def to_markdown(table: Table, caption: bool = True) -> str:
    header = ["method", *(c.label for c in table.columns)]
    rows = [[m, *(cell_text(table, m, c) for c in table.columns)] for m in table.methods]
    body = pipe_table(header, rows)
    return f"**{table.dataset}**, {table.caption}\n\n{body}" if caption else body


def latex_label(key: str) -> str:
    return "tab:" + re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")


def to_latex(table: Table, layout: str = "single") -> str:
    """Paper-table LaTeX that fits the page (:mod:`reports.latex`); needs only ``\\usepackage{booktabs}``."""
    from reports.latex import table_latex  # the layout engine builds on this module's cell texts

    return table_latex(table, layout)


NUMBER_COLUMNS = ["mean", "std", "n", "ci_low", "ci_high", "ci_method", "p_value", "p_adjusted", "mark", "rank"]
POWER_COLUMNS = ["diff", "diff_sd", "mde", "seeds_needed"]  # vs the reference, in stored units (harness.power)
CSV_COLUMNS = ["dataset", "table", "method", "column", "column_key", "metric", *NUMBER_COLUMNS, "reported",
               *POWER_COLUMNS]


def to_frame(table: Table) -> pd.DataFrame:
    """The table's numbers, tidy: one row per (method, column, metric); reported columns are folded into
    the ``reported`` field of the matching row."""
    rows = []
    for column in (c for c in table.columns if not c.reported):
        for slot in column.slots:
            for method in table.methods:
                row = table.cell(method, slot)
                numbers = row.to_dict() if row is not None else {}
                rows.append({"dataset": table.dataset, "table": table.key, "method": method, "column": column.label,
                             "column_key": slot.column, "metric": slot.metric,
                             **{k: numbers.get(k, np.nan) for k in NUMBER_COLUMNS},
                             "reported": table.reported.get((method, slot.column, slot.metric), np.nan),
                             **{k: numbers.get(k, np.nan) for k in POWER_COLUMNS}})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def to_csv(table: Table) -> str:
    return to_frame(table).to_csv(index=False)


RENDERERS: dict[str, tuple[str, Callable[[Table], str]]] = {
    "md": (".md", lambda t: to_markdown(t) + "\n"), "latex": (".tex", to_latex), "csv": (".csv", to_csv),
}
