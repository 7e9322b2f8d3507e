"""Paper tables in LaTeX that fit the page, with a caption of at most three lines.

| layout (``--latex``) | float | width budget | for |
|---|---|---|---|
| ``single`` (default) | ``table`` | 345 pt | ``\\textwidth`` of a plain single-column ``article`` (10 pt) |
| ``span`` | ``table*`` | 452 pt | both columns of a two-column page (``[twocolumn]{article}`` on A4 or letter) |
| ``column`` | ``table`` | 219 pt | one column of a two-column page (ACL's 7.7 cm; IEEE's 252 pt column fits too) |

How a table is made to fit:

* compact: ``\\small``, ``\\tabcolsep`` 3 pt, no outer padding (``@{}``), cells ``mean\\,{\\scriptsize±std}``;
* heads: what every column shares moves into one spanning head (``snr`` over ``20dB``, ``10dB``; a curve's
  name over its ``AUC``, ``ER``), a head wider than its numbers takes two lines, methods and metrics show their
  registry labels;
* abbreviations with a legend in the note: modality names become initials (``T+A``) when the full names would
  split the table;
* splitting: columns go into stacked tabulars that repeat the method column, broken at group boundaries; what
  does not fit one page height continues in further floats with the same number, captioned "(continued)".

The caption is :attr:`reports.tables.Table.brief` cut to three lines (its required parts always stay: what the
table shows, n and the minimum detectable effect); the full statement (:func:`reports.captions.describe`) is a
ragged-right ``\\footnotesize`` note under the table. The fragments need ``booktabs`` only.

Widths are estimated from Computer Modern's advance widths (cmr10, per character, scaled for the optical size
and for bold) with a margin; ``tests/test_latex.py`` compiles every table and checks pdflatex's log for overfull
boxes, oversized floats and captions longer than three lines.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from corruptions.base import readable
from reports.methods import MethodTable, display_rows
from reports.names import method_labels
from reports.render import LATEX, cell_text, latex_escape, latex_label
from reports.tables import NOT_COMPUTABLE, Column, Table
from reports.texwidth import text_pt


@dataclass(frozen=True)
class Layout:
    float: str
    width: float  # pt available to a tabular
    height: float = 500.0  # pt a float may take (a 10 pt article's text height is ~550 pt)


LAYOUTS = {"single": Layout("table", 345.0), "span": Layout("table*", 452.0), "column": Layout("table", 219.0)}
SEP = 3.0  # \tabcolsep
MARGIN = 1.04  # estimated widths are multiplied by this before they are compared with the budget
ROW = 11.0  # \small baselineskip
NOTE_LINE = 9.5  # \footnotesize baselineskip


@dataclass
class Col:
    """One tabular column: its spanning group, head lines (plain text), cells (LaTeX) and content width."""

    group: str
    lines: list[str]
    cells: list[str]
    width: float
    align: str = "r"
    short: str = ""  # the group's compact form, where the readable one is too wide


def _number_pt(table: Table, method: str, column: Column) -> float:
    """Width of a cell as :func:`reports.render.cell_text` writes it in LaTeX."""
    total = 0.0
    for i, slot in enumerate(column.slots):
        total += text_pt(" / ") if i else 0.0
        if column.reported:
            value = table.reported.get((method, slot.column, slot.metric))
            total += text_pt(slot.display(value) if value is not None else "--")
            continue
        row = table.cell(method, slot)
        if row is None or not np.isfinite(row["mean"]):
            total += text_pt("--")
            continue
        total += text_pt(slot.display(row["mean"]), bold=row["rank"] == 1)
        if np.isfinite(row["std"]):
            total += 1.5 + 0.893 * 7 + text_pt(slot.display(row["std"]), 7)
        mark = str(row["mark"])
        total += 0.574 * 6 + 0.5 if mark in ("†", "‡") else text_pt("n/c", 6) + 0.5 if mark == NOT_COMPUTABLE else 0.0
    return total


def _two_lines(head: str, room: float) -> list[str]:
    """``head`` on one line, or on two (split at the space that balances them) when wider than ``room``."""
    words = head.split(" ")
    if len(words) < 2 or text_pt(head) <= room:
        return [head]
    splits = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
    return list(min(splits, key=lambda p: max(text_pt(p[0]), text_pt(p[1]))))


def _shared_parts(labels: Sequence[str]) -> tuple[list[str], str]:
    """Heads without the ``/``-parts every label shares, and a spanning group when all that is left is
    ``key=value`` with one key (``r=0.1``, ``r=0.3`` -> group ``r``, heads ``0.1``, ``0.3``)."""
    split = [lab.split("/") for lab in labels]
    if len(labels) < 2 or len({len(p) for p in split}) != 1:
        return list(labels), ""
    keep = [i for i in range(len(split[0])) if len({p[i] for p in split}) > 1]
    heads = ["/".join(p[i] for i in keep) for p in split] if keep else list(labels)
    keys = {h.partition("=")[0] for h in heads}
    if len(keys) == 1 and all("=" in h for h in heads):
        return [h.partition("=")[2] for h in heads], keys.pop()
    return heads, ""


def _initials(tokens: Sequence[str]) -> dict[str, str]:
    """Shortest unique capitalised prefixes: text, audio, vision -> T, A, V."""
    for n in range(1, max(map(len, tokens), default=1) + 1):
        short = {t: t[:n].capitalize() for t in tokens}
        if len(set(short.values())) == len(short):
            return short
    return {t: t for t in tokens}


def _abbreviate(heads: list[str]) -> tuple[list[str], str]:
    """Modality patterns as initials (``text+audio`` -> ``T+A``) and the legend; unchanged otherwise."""
    combos = [h for h in heads if "+" in h]
    tokens = list(dict.fromkeys(t for h in combos for t in h.split("+")))
    if not combos or any(not t.isidentifier() for t in tokens):
        return heads, ""
    short = _initials(tokens)
    out = ["+".join(short[t] for t in h.split("+")) if "+" in h or h in short else h for h in heads]
    return out, ", ".join(f"{v} = {k}" for k, v in short.items())


def _table_cols(table: Table, methods: Sequence[str], abbreviate: bool) -> tuple[list[Col], str]:
    plain = [c for c in table.columns if not c.group and not c.head]
    shared, key = _shared_parts([c.label for c in plain]) if len(plain) == len(table.columns) else ([], "")
    heads = shared or [c.head or c.label for c in table.columns]
    heads, legend = _abbreviate(heads) if abbreviate else (heads, "")
    cols = []
    for column, head in zip(table.columns, heads, strict=True):
        cells = [cell_text(table, m, column, LATEX) for m in methods]
        width = max(_number_pt(table, m, column) for m in methods)
        lines = _two_lines(head, max(width, 1.0))
        group = column.group or key
        cols.append(Col(readable(group) if column.group else group, lines, cells, max(width, *map(text_pt, lines)),
                        short=group))
    return cols, legend


def _tabular_pt(method: Col, cols: Sequence[Col]) -> float:
    """Estimated natural width of a tabular of ``method`` + ``cols`` (outer padding removed)."""
    widths = [method.width] + [c.width for c in cols]
    total = sum(widths) + 2 * SEP * (len(widths) - 1)
    for group in dict.fromkeys(c.group for c in cols if c.group):  # a spanning head wider than its columns
        members = [c for c in cols if c.group == group]
        span = sum(c.width for c in members) + 2 * SEP * (len(members) - 1)
        total += max(0.0, text_pt(group) - span)
    return total * MARGIN


def _chunks(method: Col, cols: list[Col], budget: float) -> list[list[Col]]:
    """Columns split into tabulars that fit ``budget``: whole groups where possible, balanced sizes; a wrapping
    ``p`` column (the per-method table's backbones) always gets a tabular of its own."""
    wrap = [[c] for c in cols if c.align.startswith("p")]
    cols = [c for c in cols if not c.align.startswith("p")]
    blocks: list[list[Col]] = []
    for col in cols:
        if blocks and col.group and blocks[-1][0].group == col.group:
            blocks[-1].append(col)
        else:
            blocks.append([col])
    chunks: list[list[Col]] = [[]]
    for block in blocks:
        if _tabular_pt(method, chunks[-1] + block) <= budget or not chunks[-1] and len(block) == 1:
            chunks[-1] += block
            continue
        if chunks[-1]:
            chunks.append([])
        for col in block:
            if chunks[-1] and _tabular_pt(method, chunks[-1] + [col]) > budget:
                chunks.append([])
            chunks[-1].append(col)
    if len(chunks) > 1 and not any(c.group for c in cols):  # balance: 4 + 4 rather than 7 + 1
        size = math.ceil(len(cols) / len(chunks))
        balanced = [cols[i:i + size] for i in range(0, len(cols), size)]
        if all(_tabular_pt(method, ch) <= budget for ch in balanced) and len(balanced) == len(chunks):
            chunks = balanced
    return [ch for ch in chunks if ch] + wrap


def _tabular(method: Col, cols: Sequence[Col]) -> str:
    spec = "@{}l" + "".join(c.align for c in cols) + "@{}"
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if any(c.group for c in cols):
        cells, rules, i = [""], [], 0
        while i < len(cols):
            j = i
            while j + 1 < len(cols) and cols[j + 1].group == cols[i].group:
                j += 1
            text = latex_escape(cols[i].group)
            cells.append(rf"\multicolumn{{{j - i + 1}}}{{c}}{{{text}}}" if cols[i].group else "")
            if cols[i].group:
                rules.append(rf"\cmidrule(lr){{{i + 2}-{j + 2}}}")
            i = j + 1
        lines += [" & ".join(cells) + r" \\", "".join(rules)]
    depth = max(len(c.lines) for c in [method, *cols])
    for k in range(depth):  # heads bottom-aligned: a one-line head sits on the last head row
        row = [(c.lines[k - depth + len(c.lines)] if k >= depth - len(c.lines) else "") for c in [method, *cols]]
        lines.append(" & ".join(latex_escape(x) for x in row) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join([m, *(c.cells[r] for c in cols)]) + r" \\" for r, m in enumerate(method.cells)]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"])


def _height(method: Col, cols: Sequence[Col]) -> float:
    """Estimated height in pt of a tabular: head rows, one row per method (more where a ``p`` cell wraps), rules."""
    heads = max(len(c.lines) for c in [method, *cols]) + (1 if any(c.group for c in cols) else 0)
    rows = sum(max([1] + [math.ceil(text_pt(c.cells[r]) / c.width) for c in cols if c.align.startswith("p")])
               for r in range(len(method.cells)))
    return (heads + rows) * ROW + 16.0


def _lines_of(text: str, width: float, size: int, prefix: str = "Table 999: ") -> int:
    """Lines ``text`` takes in ``width`` pt at ``size`` pt (after ``prefix``), allowing for ragged line ends."""
    return max(1, math.ceil(text_pt(prefix + text, size) / (0.86 * width)))


def fit_caption(parts: Sequence[tuple[str, bool, str | None]], width: float, lines: int = 3) -> str:
    """The required parts, then each optional part that still fits in ``lines`` lines of ``width`` pt. Where the
    required parts alone do not fit, every part is taken in its compact form (the third element; None: the same
    text, empty: left out)."""
    def fit(texts: list[tuple[str, bool]]) -> str:
        kept = [t for t, required in texts if required]
        for text, required in texts:
            if text and not required and _lines_of(" ".join([*kept, text]), width, 9) <= lines:
                kept.append(text)
        return " ".join(t for t, _ in texts if t in kept)

    full = fit([(t, r) for t, r, _ in parts])
    if _lines_of(full, width, 9) <= lines:
        return full
    return fit([(t if c is None else c, r) for t, r, c in parts])


@dataclass
class Fragment:
    """A table ready to write: method column, data columns, caption parts and the note."""

    key: str
    dataset: str
    title: str
    method: Col
    cols: list[Col]
    brief: list[tuple[str, bool, str | None]]
    note: str


def breakable(tex: str) -> str:
    """Let a caption line break after an underscore: TeX never hyphenates a long name such as noise_multibench."""
    return tex.replace(r"\_", r"\_\allowbreak{}")


def render(frag: Fragment, layout: Layout) -> str:
    """The fragment as one or more floats (see the module docstring)."""
    chunks = _chunks(frag.method, frag.cols, layout.width)
    caption = fit_caption(frag.brief, layout.width)
    head_h = _lines_of(caption, layout.width, 9) * ROW + 12.0
    note_h = _lines_of(frag.note, layout.width, 8, "") * NOTE_LINE + 6.0
    floats: list[list[list[Col]]] = [[]]
    used = head_h
    for chunk in chunks:
        h = _height(frag.method, chunk) + 6.0
        if floats[-1] and used + h > layout.height:
            floats.append([])
            used = 2 * ROW + 12.0  # the "(continued)" caption
        floats[-1].append(chunk)
        used += h
    if used + note_h > layout.height and len(floats[-1]) > 1:
        floats.append([floats[-1].pop()])
    out = []
    for i, group in enumerate(floats):
        body = "\n\\par\\medskip\n".join(_tabular(frag.method, ch) for ch in group)
        if i == 0:
            top = [rf"\caption{{{breakable(latex_escape(caption))}}}", rf"\label{{{latex_label(frag.key)}}}"]
        else:
            cont = latex_escape(f"{frag.dataset}: {frag.title} (continued).")
            top = [r"\addtocounter{table}{-1}", rf"\caption{{{cont}}}"]
        note = [r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize\raggedright " + latex_escape(frag.note),
                r"\end{minipage}"] if i == len(floats) - 1 else []
        out += [rf"\begin{{{layout.float}}}[tbp]", r"\centering", r"\small",
                rf"\setlength{{\tabcolsep}}{{{SEP:g}pt}}", *top, body, *note, rf"\end{{{layout.float}}}"]
    return "\n".join(out) + "\n"


def _method_col(methods: Sequence[str]) -> Col:
    labels = method_labels(methods)
    names = [labels[m] for m in methods]
    return Col("", ["method"], [latex_escape(n) for n in names], max(text_pt(n) for n in [*names, "method"]), "l")


def table_latex(table: Table, layout: str = "single") -> str:
    """A result table as LaTeX for ``layout`` (:data:`LAYOUTS`)."""
    lay = LAYOUTS[layout]
    method = _method_col(table.methods)
    cols, legend = _table_cols(table, table.methods, abbreviate=False)
    if any(_tabular_pt(method, ch) > lay.width for ch in _chunks(method, cols, lay.width)):
        cols = [dataclasses.replace(c, group=c.short) for c in cols]  # "gaussian/all" for "gaussian, all ..."
    if len(_chunks(method, cols, lay.width)) > 1:
        short, legend2 = _table_cols(table, table.methods, abbreviate=True)
        short = [dataclasses.replace(s, group=c.group) for s, c in zip(short, cols, strict=True)]
        if len(_chunks(method, short, lay.width)) < len(_chunks(method, cols, lay.width)):
            cols, legend = short, legend2
    extra = [f"Abbreviations: {legend}." if legend else "", *(f"Note: {n}." for n in table.notes)]
    note = " ".join([f"{table.dataset}, {table.caption}", *filter(None, extra)])
    brief = table.brief or [(f"{table.dataset}: {table.title}.", True, "")]
    return render(Fragment(table.key, table.dataset, table.title, method, cols, brief, note), lay)


def method_latex(table: MethodTable, layout: str = "single") -> str:
    """The per-method table: numbers in one tabular, backbones (where methods differ) in a second one whose
    text wraps in a ``p`` column."""
    lay = LAYOUTS[layout]
    header, rows = display_rows(table)
    methods = list(table.frame["method"])
    method = _method_col(methods)
    cols = []
    for j, head in enumerate(header[1:], start=1):
        cells = [r[j] for r in rows]
        if head.startswith("backbone"):
            if all(c == "–" for c in cells):
                continue
            width = max(80.0, lay.width / MARGIN - method.width - 2 * SEP)
            cols.append(Col("", [head], [latex_escape(c) for c in cells], width,
                            rf"p{{{width:.0f}pt}}"))
            continue
        lines = _two_lines(head, max(text_pt(c) for c in cells))
        cols.append(Col("", lines, [latex_escape(c) for c in cells], max([*map(text_pt, cells), *map(text_pt, lines)])))
    frag = Fragment(table.key, table.dataset, "methods", method, cols,
                    [(f"{table.dataset}: parameters, budget and training time per method (means over seeds).", True,
                      f"{table.dataset}: methods, budgets, training time.")],
                    f"{table.dataset}, {table.caption}")
    return render(frag, lay)


