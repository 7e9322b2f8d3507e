"""A result table for a terminal: ``rich`` tables with best in bold and second underlined as text styles (the
Markdown files keep ``**...**`` and ``<ins>...</ins>``), split by columns so that no row wraps at the terminal's
width, and the caption wrapped beneath."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

from reports.render import MARKDOWN, cell_text
from reports.tables import NOT_COMPUTABLE, Column, Table


def _cell(table: Table, method: str, column: Column) -> Text:
    """``mean ± std`` + mark per slot, the mean styled by its rank (1 bold, 2 underlined)."""
    out = Text()
    for i, slot in enumerate(column.slots):
        if i:
            out.append(" / ")
        row = None if column.reported else table.cell(method, slot)
        if row is None or row["mean"] != row["mean"]:
            out.append(cell_text(table, method, Column(column.label, (slot,), column.reported), MARKDOWN))
            continue
        style = "bold" if row["rank"] == 1 else "underline" if row["rank"] == 2 else ""
        out.append(slot.display(row["mean"]), style=style)
        if row["std"] == row["std"]:
            out.append(f" ± {slot.display(row['std'])}", style="dim")
        mark = str(row["mark"])
        out.append(" (n/c)" if mark == NOT_COMPUTABLE else mark)
    return out


def _chunks(widths: list[int], fixed: int, width: int) -> list[list[int]]:
    """Column indices in groups whose rows fit ``width`` characters (3 per column of padding and border)."""
    chunks: list[list[int]] = [[]]
    used = fixed
    for i, w in enumerate(widths):
        if chunks[-1] and used + w + 3 > width:
            chunks.append([])
            used = fixed
        chunks[-1].append(i)
        used += w + 3
    return chunks


def rich_table(table: Table, width: int = 80) -> RenderableType:
    """The table as rich renderables for a ``width``-column terminal: the dataset in bold, the columns split
    into as many tables as needed (each repeating the method column), then the caption."""
    methods = table.methods
    cells = [[_cell(table, m, c) for m in methods] for c in table.columns]
    widths = [max(len(c.label), *(len(t.plain) for t in col)) for c, col in zip(table.columns, cells, strict=True)]
    fixed = max(len("method"), *map(len, methods)) + 4
    parts: list[RenderableType] = [Text(table.dataset, style="bold")]
    for chunk in _chunks(widths, fixed, width):
        out = RichTable(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        out.add_column("method", no_wrap=True)
        for i in chunk:
            out.add_column(table.columns[i].label, justify="right", no_wrap=True)
        for r, method in enumerate(methods):
            out.add_row(method, *(cells[i][r] for i in chunk))
        parts.append(out)
    parts.append(Text(table.caption, style="dim"))
    return Group(*parts)
