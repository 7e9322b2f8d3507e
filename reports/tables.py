"""Result tables: pure functions of the stored records (a tidy DataFrame), never of a model.

The pattern table has rows = methods and columns = the full condition, then each fixed missing-modality
pattern, then the mean over the incomplete patterns. The mean column is computed per seed first and then
aggregated over seeds, so its ± is a spread over seeds like every other cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.metrics import MetricSpec
from harness.registry import METRICS

MEAN_INCOMPLETE = "mean (incomplete)"


def pattern_frame(records: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """Per-seed values: index (method, seed), columns = conditions of ``fixed_pattern`` + the incomplete mean."""
    sel = records[(records.dataset == dataset) & (records.metric == metric) & (records.protocol == "fixed_pattern")]
    if sel.empty:
        raise ValueError(f"No fixed_pattern records for dataset {dataset!r} and metric {metric!r}")
    order = list(dict.fromkeys(sel.condition))
    wide = sel.pivot_table(index=["method", "seed"], columns="condition", values="value", aggfunc="first")
    wide = wide[order]
    incomplete = [c for c in order if c != "full"]
    if incomplete:
        wide[MEAN_INCOMPLETE] = wide[incomplete].mean(axis=1)
    return wide


def summarize(wide: pd.DataFrame, methods: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Mean, sample std (ddof=1, NaN for n < 2) and n over seeds for every (method, column)."""
    g = wide.groupby(level="method", sort=False)
    out = {"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}
    if methods:
        out = {k: v.reindex([m for m in methods if m in v.index]) for k, v in out.items()}
    return out


def cell_text(mean: float, std: float, spec: MetricSpec) -> str:
    if np.isnan(mean):
        return "–"
    text = spec.display(mean)
    return text if np.isnan(std) else f"{text} ± {spec.display(std)}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table with columns padded to equal width (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i else (":" + "-" * (w + 1)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def pattern_table_md(records: pd.DataFrame, dataset: str, metric: str) -> str:
    """Markdown: methods x (full, each pattern, mean over incomplete patterns), ``mean ± std`` over seeds."""
    spec: MetricSpec = METRICS.get(metric)
    stats = summarize(pattern_frame(records, dataset, metric))
    cols = list(stats["mean"].columns)
    rows = [[m] + [cell_text(stats["mean"].at[m, c], stats["std"].at[m, c], spec) for c in cols]
            for m in stats["mean"].index]
    ns = sorted({int(v) for v in stats["n"].to_numpy().ravel() if v > 0})
    unit = " (%)" if spec.scale == 100 else ""
    arrow = "higher is better" if spec.higher_is_better else "lower is better"
    proto = records[records.protocol == "fixed_pattern"][["protocol_version", "protocol_hash"]].iloc[0]
    seeds = "seed" if ns == [1] else "seeds"
    caption = (f"**{dataset}**, {metric}{unit}, {arrow}. Mean ± sample std (ddof=1) over n = "
               f"{'/'.join(map(str, ns))} {seeds}; protocol fixed_pattern v{proto.protocol_version} "
               f"({proto.protocol_hash}); test split; checkpoints selected on the validation split.")
    return caption + "\n\n" + markdown_table(["method", *cols], rows)
