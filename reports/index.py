"""``report.md``: the index of a report directory. It names the runs and their provenance, states the
statistical conventions once, then per dataset embeds every Markdown table (with links to its LaTeX and CSV
files) and every figure (PNG inline, PDF linked), all by relative paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from harness import __version__
from reports.captions import test_description
from reports.figures import FigureFile
from reports.load import Results
from reports.methods import MethodTable
from reports.methods import to_markdown as method_markdown
from reports.render import pipe_table, to_markdown
from reports.tables import PER_SAMPLE_TESTS, TEST_NAMES, Table

_FORMAT_NAMES = {".md": "Markdown", ".tex": "LaTeX", ".csv": "CSV"}
_CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg (FDR)", "none": "no"}


def _runs(results: Results) -> list[str]:
    rows = []
    for run in results.runs:
        git = run.meta.get("git", {})
        commit = (git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")
        status = "yes" if not run.reasons else "**no** (see below)"
        rows.append([f"`{run.path}`", commit, str(run.meta.get("versions", {}).get("mibench", "?")),
                     str(run.meta.get("finished_at", "not finished")), status])
    lines = ["## Runs", "", pipe_table(["run", "commit", "mibench", "finished", "reportable"], rows), ""]
    if results.partial:
        lines += ["> **Partial results.** Not reportable; every caption says so. Do not put these numbers in a "
                  "paper. Reasons:", ">"]
        lines += [f"> - `{run.path.name}`: {reason}" for run in results.runs for reason in run.reasons]
        lines.append("")
    lines += [f"- {note}" for note in results.notes]
    return lines


def _conventions(options) -> list[str]:  # options: reports.report.ReportOptions (no import cycle)
    s = options.stats
    ci = ("percentile bootstrap over test samples of the seed mean (condition tables, columns averaging "
          "several draws included: the same resampled rows for every seed and draw; "
          f"{options.n_resamples} resamples, generator seed {options.rng_seed}); Student-t interval over seeds "
          "for derived columns, robustness summaries and figures"
          if options.ci == "bootstrap" else "Student-t interval over seeds")
    untested = (" Derived columns (mean over patterns, robustness summaries) have no per-sample predictions and "
                "are not tested" + (", nor are columns averaging several draws." if s.test == "randomization"
                                    else ".")) if s.test in PER_SAMPLE_TESTS else ""
    significance = (f"- Significance: two-sided {TEST_NAMES[s.test]} {test_description(s)}; "
                    f"{_CORRECTIONS[s.correction]} correction over the comparisons of one table that share a metric; "
                    f"† p < {s.alpha:g}, ‡ p < {s.strong:g} after correction; n/c = not computable (fewer than 2 "
                    "paired seeds, or a t-test on per-seed differences that are all equal). Marks flag differences "
                    f"in either direction.{untested}") if s.reference else "- Significance: no reference, no marks."
    return [
        "## Statistics", "",
        "- Cells: mean ± sample standard deviation (ddof = 1) over training seeds; n is in every caption. "
        "Checkpoints were selected on the validation split; all scores are on the test split.",
        f"- Intervals (CSV files): 95% {ci}. Figure bands: 95% Student-t over seeds, clipped to the metric's "
        "range.",
        significance,
        "- Bold = best, underlined = second best per column, by the metric's direction (lower is better for "
        "mae and for drops), on the means as displayed: means equal at the displayed precision tie and share "
        "the mark.",
        "- Derived columns (mean over incomplete patterns, drop, AUC over the real severities, AUC relative to "
        "clean, drop at the largest severity, effective robustness) are computed per seed, then aggregated like "
        "any other value; the reference's own effective robustness is 0 by definition, shown as – and not ranked.",
        "",
    ]


def _heading(table: Table) -> str:
    metrics = list(dict.fromkeys(s.metric for c in table.columns if not c.reported for s in c.slots))
    return f"### {table.title}" + ("" if table.key.endswith("overview") else f" — {' / '.join(metrics)}")


def _table(table: Table, files: Sequence[Path], out: Path) -> list[str]:
    lines = [_heading(table), "", to_markdown(table), ""]
    lines += [f"*Note: {n}.*" for n in table.notes]
    return lines + _links(files, out)


def _figures(figures: Sequence[FigureFile], out: Path) -> list[str]:
    lines = ["### Figures", ""] if figures else []
    for fig in figures:
        png, *rest = fig.paths
        extra = " ".join(f"([{p.suffix[1:].upper()}]({p.relative_to(out).as_posix()}))" for p in rest)
        lines += [f"![{fig.caption}]({png.relative_to(out).as_posix()})", "", f"*{fig.caption}* {extra}", ""]
    return lines


def _pairs(frame: pd.DataFrame, path: Path, out: Path, alpha: float) -> list[str]:
    sig = frame[frame["significant"]]
    link = path.relative_to(out).as_posix()
    lines = ["### All pairs", "", f"Every pair of methods in every condition: [CSV]({link}) ({len(frame)} "
             f"comparisons, {len(sig)} significant after correction at {alpha:g}).", ""]
    if len(sig):
        rows = [[str(r.protocol), str(r.condition), str(r.metric), str(r.method_a), str(r.method_b),
                 f"{r.mean_diff:+.4g}", f"{r.p_adjusted:.3g}"] for r in sig.itertuples()]
        lines += [pipe_table(["protocol", "condition", "metric", "method a", "method b", "a - b", "p (adj.)"],
                             rows), ""]
    return lines


def _links(files: Sequence[Path], out: Path) -> list[str]:
    links = " · ".join(f"[{_FORMAT_NAMES[p.suffix]}]({p.relative_to(out).as_posix()})" for p in files)
    return [f"Files: {links}", ""] if links else []


def _methods(table: MethodTable, files: Sequence[Path], out: Path) -> list[str]:
    return ["### Methods: parameters, backbone, budget, epochs run, training time", "", method_markdown(table), "",
            *_links(files, out)]


def index_markdown(results: Results, options, tables: Sequence[Table], files: Mapping[str, Sequence[Path]],
                   figures: Sequence[FigureFile], pairs: Mapping[str, tuple[pd.DataFrame, Path]], out: Path, *,
                   methods: Sequence[MethodTable] = (), notes: Mapping[str, Sequence[str]] | None = None) -> str:
    lines = ["# mibench report", "",
             f"Generated by mibench {__version__} from stored result files only (`records.jsonl`, and "
             "`predictions/*.npz` for bootstrap intervals): nothing was trained or predicted for this report.", ""]
    lines += _runs(results) + [""] + _conventions(options)
    for dataset in dict.fromkeys(t.dataset for t in tables):
        lines += [f"## {dataset}", ""]
        lines += [f"> **Note:** {note}." for note in (notes or {}).get(dataset, [])]
        lines += [""] if (notes or {}).get(dataset) else []
        for mt in (m for m in methods if m.dataset == dataset):
            lines += _methods(mt, files.get(mt.key, []), out)
        for table in (t for t in tables if t.dataset == dataset):
            lines += _table(table, files.get(table.key, []), out)
        lines += _figures([f for f in figures if f.dataset == dataset], out)
        if dataset in pairs:
            lines += _pairs(*pairs[dataset], out, options.stats.alpha)
    return "\n".join(lines).rstrip() + "\n"
