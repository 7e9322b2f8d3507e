"""Every LaTeX table a full-size report generates fits the page: compiled by a real engine in a plain article
(booktabs and graphicx only), in all three layouts; the log must show no overfull box and no float too large for
the page, and every caption must take at most three lines (measured by TeX itself, via \\prevgraf)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_run import write_fake_run
from test_report_tables import check_latex_structure

from harness.registry import PROTOCOLS
from reports.latex import LAYOUTS, fit_caption, text_pt
from reports.load import load_results
from reports.methods import to_latex as method_latex
from reports.render import to_latex
from reports.report import ReportOptions, build_tables, method_tables
from reports.tables import StatsOptions

LATEX_ENGINES = ("pdflatex", "lualatex", "xelatex", "tectonic")
LATEX = next((engine for engine in LATEX_ENGINES if shutil.which(engine)), None)
# The longest registered names and every test protocol: the widest tables mibench can make of the built-ins.
METHODS = ("vanilla_fusion", "modality_dropout", "mmin", "modal_immune", "modal_immune-no_curvature_gate")
DOCUMENT = {"single": r"\documentclass{article}", "span": r"\documentclass[twocolumn]{article}",
            "column": r"\documentclass[twocolumn]{article}"}
# Each caption's line count, as TeX breaks it: the caption paragraph set once more in a box of \linewidth.
CAPTION_PROBE = r"""\makeatletter
\let\probe@makecaption\@makecaption
\long\def\@makecaption#1#2{\setbox\@tempboxa\vbox{\hsize\linewidth\noindent#1: #2\par
  \xdef\probe@lines{\the\prevgraf}}\typeout{CAPTION-LINES=\probe@lines}\probe@makecaption{#1}{#2}}
\makeatother
"""


@pytest.fixture(scope="module")
def fragments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Per layout, the LaTeX of every table of a report over the built-in methods and test protocols."""
    protocols = [name for name, p in PROTOCOLS.entries() if not p.held_out]
    root = write_fake_run(tmp_path_factory.mktemp("latex") / "run", METHODS, protocols, reference="vanilla_fusion")
    results = load_results([root])
    tables = build_tables(results, ReportOptions(stats=StatsOptions(reference="vanilla_fusion"), figures="none"))
    methods = method_tables(results)
    assert len(tables) > 100 and methods
    return {layout: [method_latex(m, layout) for m in methods] + [to_latex(t, layout) for t in tables]
            for layout in LAYOUTS}


def _command(engine: str, doc: Path) -> list[str]:
    if engine == "tectonic":  # stops at the first error by itself; keeps doc.log for the failure message
        return ["tectonic", "--keep-logs", "--chatter", "minimal", doc.name]
    return [engine, "-interaction=nonstopmode", "-halt-on-error", doc.name]


def compile_tables(tex: list[str], preamble: str, tmp_path: Path) -> str:
    """Compile ``tex`` (one float group per page) with ``preamble``; return the log, asserting success."""
    assert LATEX is not None
    body = "".join(f"{fragment}\\clearpage\n" for fragment in tex)
    doc = tmp_path / "doc.tex"
    doc.write_text(f"{preamble}\n\\usepackage{{booktabs}}\n\\usepackage{{graphicx}}\n{CAPTION_PROBE}"
                   f"\\begin{{document}}\n{body}\\end{{document}}\n")
    res = subprocess.run(_command(LATEX, doc), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = (tmp_path / "doc.log").read_text(errors="replace") if (tmp_path / "doc.log").is_file() else ""
    assert res.returncode == 0, f"{LATEX} failed:\n{(log or res.stdout + res.stderr)[-3000:]}"
    return log


def test_fragments_are_well_formed(fragments: dict[str, list[str]]) -> None:
    for tex in (t for group in fragments.values() for t in group):
        check_latex_structure(tex)
    single = fragments["single"]
    assert any(t.count(r"\begin{tabular}") > 1 for t in single), "the widest tables must be split"
    assert any(r"\multicolumn" in t and r"\cmidrule" in t for t in single), "shared parts move into a spanning head"
    assert all("table*" in t for t in fragments["span"]) and not any("table*" in t for t in single)


@pytest.mark.slow
@pytest.mark.skipif(LATEX is None, reason="no LaTeX engine (pdflatex/lualatex/xelatex/tectonic) on PATH")
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_table_fits_the_page(fragments: dict[str, list[str]], layout: str, tmp_path: Path) -> None:
    log = compile_tables(fragments[layout], DOCUMENT[layout], tmp_path)
    overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)
    assert not overfull, f"{len(overfull)} overfull boxes, up to {max(map(float, overfull))} pt ({layout})"
    assert "Float too large" not in log
    lines = [int(n) for n in re.findall(r"CAPTION-LINES=(\d+)", log)]
    floats = sum(t.count(r"\caption{") for t in fragments[layout])
    assert len(lines) == floats and max(lines) <= 3, f"caption lines {sorted(set(lines))} ({layout})"


def test_caption_keeps_required_parts_and_drops_what_does_not_fit() -> None:
    parts = [("A" * 40, True, "A."), ("b " * 200, False, ""), ("MDE 12.2 points.", True, "MDE 12.2."),
             ("short.", False, "")]
    assert fit_caption(parts, 345.0) == f"{'A' * 40} MDE 12.2 points. short."
    assert fit_caption(parts, 60.0) == "A. MDE 12.2."  # the compact forms where the required parts do not fit
    assert text_pt("0000") == pytest.approx(4 * 0.5 * 9 * 1.028) and text_pt("00", bold=True) > text_pt("00")
