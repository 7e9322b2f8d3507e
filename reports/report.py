"""Build a whole report: tables per dataset (overview, each protocol's conditions, robustness summary) in the
chosen formats, figures, and ``report.md``, an index that embeds them with relative paths.

Layout of ``OUT``::

    report.md                          the index (Markdown tables inline, figures embedded)
    tables/<dataset>__<table>.{md,tex,csv}
    tables/<dataset>__pairwise.csv     all-pairs comparisons (with ``all_pairs``)
    figures/<dataset>__<kind>__<metric>.{png,pdf}

A pure function of the result files: nothing is trained or predicted, and figures and tables come from the
same records through the same statistics.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from harness.comparisons import compare_all_pairs
from harness.registry import METRICS
from harness.robustness import FIXED_PATTERN
from reports import methods as method_render
from reports.captions import brief, describe
from reports.degenerate import data_notes
from reports.latex import LAYOUTS as LATEX_LAYOUTS
from reports.load import Results
from reports.methods import MethodTable, cell_frame, method_table, selection_text
from reports.persample import bootstrap_intervals, persample_pvalues
from reports.render import RENDERERS, to_latex, to_markdown
from reports.scope import DEFAULT_METRICS, HEADLINE, check_reference, metric_choice, resolve_reference
from reports.staging import staged_dir
from reports.tables import PER_SAMPLE_TESTS, StatsOptions, Table, build_table
from reports.views import (
    View,
    collapse_draws,
    condition_view,
    metric_view,
    protocol_parts,
    robustness_values,
    short_curve,
    summary_view,
    with_reported,
)

FORMATS = tuple(RENDERERS)
__all__ = ["DEFAULT_METRICS", "FORMATS", "HEADLINE", "ReportOptions", "build_tables", "headline_tables",
           "markdown_tables", "method_tables", "metric_notes", "metrics_by_dataset", "resolve_reference",
           "write_report"]


@dataclass(frozen=True)
class ReportOptions:
    """What to report. ``metrics`` empty = :data:`DEFAULT_METRICS` of each dataset's task (a requested metric
    that does not apply to a dataset is noted, see :func:`metric_notes`); ``formats``: table files, by default
    every format; ``figures``: for each dataset's first metric only (the headline), for every metric, or none."""

    metrics: tuple[str, ...] = ()
    formats: tuple[str, ...] = FORMATS
    stats: StatsOptions = field(default_factory=StatsOptions)
    composite: bool = False
    reported: bool = False
    ci: Literal["t", "bootstrap"] = "t"
    n_resamples: int = 1000
    rng_seed: int = 0
    all_pairs: bool = False
    figures: Literal["first", "all", "none"] = "first"
    latex: Literal["single", "span", "column"] = "single"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown or not self.formats:
            raise ValueError(f"unknown format(s) {unknown or self.formats}; valid: {', '.join(FORMATS)}")
        if self.ci not in ("t", "bootstrap"):
            raise ValueError(f"unknown interval {self.ci!r}; valid: t, bootstrap")
        if self.all_pairs and self.stats.test in PER_SAMPLE_TESTS:
            raise ValueError("--all-pairs tests over seeds: use it with --test ttest or wilcoxon")
        if self.latex not in LATEX_LAYOUTS:
            raise ValueError(f"unknown LaTeX layout {self.latex!r}; valid: {', '.join(LATEX_LAYOUTS)}")
        if self.figures not in ("first", "all", "none"):
            raise ValueError(f"unknown figures option {self.figures!r}; valid: first, all, none")
        for metric in self.metrics:
            METRICS.get(metric)  # unknown name: error with suggestions


def metrics_by_dataset(results: Results, options: ReportOptions) -> dict[str, list[str]]:
    """The metrics to report per dataset (:func:`reports.scope.metric_choice`)."""
    return metric_choice(results, options.metrics)[0]


def metric_notes(results: Results, options: ReportOptions) -> dict[str, list[str]]:
    """Per dataset, a note for each requested metric that does not apply to it (for report.md and the console)."""
    return metric_choice(results, options.metrics)[1]


def _slug(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9_.+=-]", "_", p) for p in parts if p)


def _summaries(rec: pd.DataFrame, dataset: str, metrics: list[str], reference: str | None,
               notes: list[str]) -> tuple[pd.DataFrame, bool]:
    """Robustness summaries of a dataset, and whether they cover the curves. A protocol whose curves the
    summaries cannot use (e.g. two conditions at one severity) costs the summary table, not the report."""
    try:
        return robustness_values(rec, dataset, metrics, reference), True
    except ValueError as exc:
        notes.append(f"no robustness summary for {dataset}: {exc}")
        return robustness_values(rec[rec["protocol"] == FIXED_PATTERN], dataset, metrics, None), False


def _views(records: pd.DataFrame, dataset: str, metrics: list[str], options: ReportOptions,
           notes: list[str]) -> list[tuple[str, View]]:
    """(table key, view) for the overview, each protocol's plain conditions and each of its curves, the
    pattern summary and each protocol's curve summary. ``records``: collapsed draws (views.collapse_draws)."""
    rec = records[records["dataset"] == dataset]
    protocols = sorted(rec["protocol"].unique(), key=lambda p: (p != FIXED_PATTERN, p))
    groups = [metrics] if options.composite else [[m] for m in metrics]
    ref = options.stats.reference
    summaries, complete = _summaries(rec, dataset, metrics, ref, notes)
    out: list[tuple[str, View]] = []
    if ((rec["protocol"] == FIXED_PATTERN) & (rec["condition"] == "full")).any():
        out.append((_slug(dataset, "overview"), metric_view(rec, dataset, metrics)))
    for protocol in protocols:
        for curve in protocol_parts(rec, protocol):
            part = short_curve(protocol, curve) if curve else ""
            for group in groups:
                key = _slug(dataset, protocol, part, "composite" if len(group) > 1 else group[0])
                out.append((key, condition_view(rec, dataset, protocol, group, summaries, curve=curve)))
    curved = [p for p in protocols if rec.loc[rec["protocol"] == p, "curve"].notna().any()] if complete else []
    for protocol in [None, *curved]:
        for group in groups:
            try:
                view = summary_view(rec, dataset, group, ref, summaries, protocol=protocol)
            except ValueError:  # nothing to summarise (e.g. no full condition recorded)
                continue
            out.append((_slug(dataset, "robustness", protocol or "", view.metrics[0] if len(group) == 1
                              else "composite"), view))
    return out


def _reasons(results: Results) -> list[str]:
    return list(dict.fromkeys(r for run in results.runs for r in run.reasons))


def _persample(results: Results, view: View, options: ReportOptions,
               rng: np.random.Generator) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Bootstrap intervals and per-sample p-values for a condition table, when the options ask for them.
    Derived columns (the mean over incomplete patterns) have no predictions and keep the seed statistics."""
    if view.kind != "conditions":
        return None, None
    protocol = next(iter(view.condition_of.values()))[0]
    columns = list(view.condition_of)  # table columns; a column may average several draws
    s = options.stats
    intervals = bootstrap_intervals(results, view.dataset, protocol, view.metrics, rng=rng, conditions=columns,
                                    curve=view.curve, n_resamples=options.n_resamples, confidence=s.confidence) \
        if options.ci == "bootstrap" else None
    pvalues = persample_pvalues(results, view.dataset, protocol, view.metrics, s.reference, test=s.test, rng=rng,
                                conditions=columns, curve=view.curve, count=s.n_permutations) \
        if s.test in PER_SAMPLE_TESTS and s.reference in set(view.values["method"]) else None
    return intervals, pvalues


def build_tables(results: Results, options: ReportOptions) -> list[Table]:
    """Every table of the report, numbers and captions included, in report order."""
    check_reference(results, options.stats.reference)
    rng = np.random.default_rng(options.rng_seed)
    reasons = _reasons(results)
    records = collapse_draws(results.records)
    cells = cell_frame(results)
    tables = []
    for dataset, metrics in metrics_by_dataset(results, options).items():
        selection = selection_text(cells, dataset)
        notes: list[str] = data_notes(results, dataset)  # degenerate data said, never crashed on
        for key, view in _views(records, dataset, metrics, options, notes):
            reported: dict = {}
            if options.reported and view.kind != "robustness":
                view, reported = with_reported(view, sorted(view.values["method"].unique()))
            intervals, pvalues = _persample(results, view, options, rng)
            table = build_table(key, dataset, view.title, view.values, view.columns, options.stats,
                                intervals=intervals, reported=reported, legend=view.legend, pvalues=pvalues)
            table.caption = describe(table, options.stats, view.protocols, reasons, selection)
            table.brief = brief(table, options.stats, bool(reasons))
            if options.reported and not reported and view.kind == "metrics":
                table.notes.append(f"no method card reports a value for dataset {dataset}")
            tables.append(table)
        if notes and tables:
            tables[-1].notes.extend(notes)
    return tables


def headline_tables(results: Results, metric: str | None, options: ReportOptions) -> tuple[list[Table], list[str]]:
    """Per dataset, the fixed_pattern table of ``metric`` (default: the task's headline, ua for classification,
    acc2_non0 for regression), and a note for each dataset ``metric`` does not apply to (it shows its
    headline instead); datasets without fixed_pattern records are skipped."""
    check_reference(results, options.stats.reference)
    tables, notes = [], []
    cells = cell_frame(results)
    for dataset in results.records["dataset"].unique():
        rec = results.records[results.records["dataset"] == dataset]
        task = results.tasks.get(dataset, "")
        name = metric or HEADLINE.get(task, "")
        if metric and name not in set(rec["metric"]):
            name = HEADLINE.get(task, "")
            notes.append(f"metric {metric} does not apply to {dataset}, a {task or 'unknown-task'} dataset; its table "
                         f"shows {name or 'nothing'}")
        if name not in set(rec["metric"]) or not (rec["protocol"] == FIXED_PATTERN).any():
            continue
        view = condition_view(rec, dataset, FIXED_PATTERN, [name])
        intervals, pvalues = _persample(results, view, options, np.random.default_rng(options.rng_seed))
        table = build_table(_slug(dataset, FIXED_PATTERN, name), dataset, view.title, view.values, view.columns,
                            options.stats, legend=view.legend, intervals=intervals, pvalues=pvalues)
        table.caption = describe(table, options.stats, view.protocols, _reasons(results),
                                 selection_text(cells, dataset))
        table.brief = brief(table, options.stats, bool(_reasons(results)))
        tables.append(table)
    return tables, notes


def method_tables(results: Results) -> list[MethodTable]:
    """The per-method table (parameters, backbone, budget, epochs run, training time) of every dataset."""
    cells = cell_frame(results)
    return [method_table(cells, str(d), _slug(str(d), "methods")) for d in results.records["dataset"].unique()]


def pairwise(results: Results, dataset: str, metrics: Sequence[str], options: ReportOptions) -> pd.DataFrame:
    """All-pairs seed-level comparisons over every condition of every protocol of one dataset."""
    rec = collapse_draws(results.records)
    rec = rec[(rec["dataset"] == dataset) & rec["metric"].isin(list(metrics))]
    higher = {m: METRICS.get(m).higher_is_better for m in metrics}
    s = options.stats
    return compare_all_pairs(rec, higher_is_better=higher, test=s.test, correction=s.correction, alpha=s.alpha)


def render_file(table: Table | MethodTable, fmt: str, options: ReportOptions) -> str:
    """The text of one table file in format ``fmt`` (md, latex or csv)."""
    if isinstance(table, MethodTable):
        if fmt == "latex":
            return method_render.to_latex(table, options.latex)
        return method_render.to_markdown(table) + "\n" if fmt == "md" else method_render.to_csv(table)
    return to_latex(table, options.latex) if fmt == "latex" else RENDERERS[fmt][1](table)


def _write_tables(tables: Sequence[Table | MethodTable], options: ReportOptions, out: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for table in tables:
        for fmt in options.formats:
            path = out / "tables" / f"{table.key}{RENDERERS[fmt][0]}"
            path.write_text(render_file(table, fmt, options), encoding="utf-8")
            files.setdefault(table.key, []).append(path)
    return files


def is_report_dir(out: Path) -> bool:
    """Whether ``out`` may be replaced by a new report: empty, a report (``report.md``), or what a killed
    report write of an older mibench left (only ``tables/`` and ``figures/``). Anything else is the user's."""
    names = {p.name for p in out.iterdir()}
    return (out / "report.md").is_file() or names <= {"tables", "figures", "report.md"}


def write_report(results: Results, options: ReportOptions, out: Path) -> tuple[list[Table], Path]:
    """Write tables, figures and ``report.md`` under ``out``; return the tables and the index path."""
    final = Path(out)
    tables = build_tables(results, options)  # every error is raised before anything is written
    with staged_dir(final, is_report_dir) as out:  # built aside, swapped in whole (reports/staging.py)
        index = _write_all(results, options, tables, out)
    return tables, final / index.name


def _write_all(results: Results, options: ReportOptions, tables: list[Table], out: Path) -> Path:
    from reports.figures import make_figures  # late: matplotlib is only needed when writing
    from reports.index import index_markdown

    methods = method_tables(results)
    files = _write_tables([*methods, *tables], options, out)
    metrics = metrics_by_dataset(results, options)
    drawn = {d: ms[:1] if options.figures == "first" else ms for d, ms in metrics.items()}
    figures = make_figures(collapse_draws(results.records), drawn, out / "figures") \
        if options.figures != "none" else []
    pairs = {}
    if options.all_pairs and results.records["method"].nunique() > 1:
        for dataset, names in metrics.items():
            frame = pairwise(results, dataset, names, options)
            path = out / "tables" / f"{_slug(dataset, 'pairwise')}.csv"
            frame.to_csv(path, index=False)
            pairs[dataset] = (frame, path)
    index = out / "report.md"
    index.write_text(index_markdown(results, options, tables, files, figures, pairs, out, methods=methods,
                                    notes=metric_notes(results, options)), encoding="utf-8")
    return index


def markdown_tables(tables: Sequence[Table]) -> str:
    """All tables as Markdown, one after another (what ``mibench report`` prints)."""
    return "\n\n".join(to_markdown(t) for t in tables)
