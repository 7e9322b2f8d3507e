"""How wide text comes out in LaTeX, estimated without running TeX: Computer Modern's advance widths.

The widths are cmr10's (in em, per character, from its TFM file), grouped; characters LaTeX draws from other
fonts (math symbols, escapes) use those fonts' widths. Smaller optical sizes of Computer Modern are relatively
wider (cmr7's digits are 0.569 em, cmr10's 0.5), and bold (cmbx) about 16 % wider. :mod:`reports.latex` lays
tables out with these estimates; ``tests/test_latex.py`` checks them against pdflatex (no overfull box).
"""

from __future__ import annotations

# cmr10 advance widths in em, grouped; characters LaTeX draws from other fonts (math, escapes) use theirs.
_WIDTHS = {" !',.:;[]`il": 0.278, "fj": 0.306, "-": 0.333, "I": 0.361, "()t": 0.389, "rs": 0.395,
           "cez": 0.444, "?": 0.472, "\"$*/0123456789\\^ago{}~_": 0.5, "J": 0.514, "kqvxy": 0.528,
           "bdhnpuS": 0.556, "Z": 0.611, "L": 0.625, "F": 0.653, "EP": 0.681, "B": 0.708, "CTw": 0.722,
           "R": 0.736, "AHNUVXY": 0.75, "D": 0.764, "&+=@KOQ<>±×≥≤": 0.778, "G": 0.785, "#%m": 0.833,
           "M": 0.917, "|→—": 1.0, "W": 1.028, "†‡": 0.444, "–↑↓": 0.5, "·": 0.278}
_EM = {ch: w for chars, w in _WIDTHS.items() for ch in chars}
# Computer Modern's smaller optical sizes are relatively wider (cmr7's digits are 0.569 em, cmr10's 0.5).
_OPTICAL = {10: 1.0, 9: 1.028, 8: 1.063, 7: 1.139, 6: 1.222, 5: 1.362}
_BOLD = 1.16


def text_pt(text: str, size: int = 9, bold: bool = False) -> float:
    """Estimated width in pt of plain ``text`` set at ``size`` pt (Computer Modern)."""
    return sum(_EM.get(ch, 0.6) for ch in text) * size * _OPTICAL.get(size, 1.0) * (_BOLD if bold else 1.0)
