"""What each method was given and used, from ``run.json``'s cells: the per-method table (parameters, backbone,
budget, epochs run, training time) and the selection policy that captions state.

Per cell ``run.json`` records ``selection: {policy, metric}``, ``backbone: {...}`` (keys vary by method),
``budget: {epochs, patience, batch_size, epochs_run}``, ``n_parameters``, ``train_time_s`` and ``fit`` (with
``epochs_run``, ``best_epoch``, ``select_metric``). Runs made before a key existed still load: what they lack is
shown as missing (``–``), never guessed, except that the epoch budget falls back to the method config the run
recorded (``method_configs``) and the selection metric to ``fit.select_metric``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.load import Results
from reports.names import metric_label

POLICY_TEXT = {"complete": "complete inputs", "incomplete": "the mean over incomplete modality patterns",
               "all": "the mean over all modality patterns"}
CELL_COLUMNS = ["dataset", "method", "seed", "policy", "select_metric", "backbone", "n_parameters", "epochs_budget",
                "patience", "batch_size", "epochs_run", "best_epoch", "train_time_s"]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def _cell_row(meta: dict[str, Any], cell: str, dataset: str, method: str, seed: int) -> dict[str, Any]:
    entry = meta.get("cells", {}).get(cell, {})
    fit, budget = entry.get("fit") or {}, entry.get("budget") or {}
    selection = entry.get("selection") or {}
    config = (meta.get("method_configs") or {}).get(method, {})
    return {"dataset": dataset, "method": method, "seed": seed, "policy": selection.get("policy"),
            "select_metric": selection.get("metric") or fit.get("select_metric"),
            "backbone": entry.get("backbone") if isinstance(entry.get("backbone"), dict) else None,
            "n_parameters": _number(entry.get("n_parameters")),
            "epochs_budget": _number(budget.get("epochs", config.get("epochs"))),
            "patience": _number(budget.get("patience", config.get("patience"))),
            "batch_size": _number(budget.get("batch_size", config.get("batch_size"))),
            "epochs_run": _number(budget.get("epochs_run", fit.get("epochs_run"))),
            "best_epoch": _number(fit.get("best_epoch")), "train_time_s": _number(entry.get("train_time_s"))}


def cell_frame(results: Results) -> pd.DataFrame:
    """One row per reported cell (a cell whose records the report uses), columns :data:`CELL_COLUMNS`."""
    cells = results.records.drop_duplicates(["run", "cell"])[["run", "cell", "dataset", "method", "seed"]]
    rows = [_cell_row(results.runs[int(r.run)].meta, str(r.cell), str(r.dataset), str(r.method), int(r.seed))
            for r in cells.itertuples(index=False)]
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def _selection_phrase(policy: str | None, metric: str | None) -> str:
    what = f"validation {metric_label(metric)}" if metric else "the validation split"
    return f"{what}, {POLICY_TEXT.get(policy, policy)}" if policy else what


def selection_text(cells: pd.DataFrame, dataset: str) -> str:
    """How checkpoints were selected on ``dataset`` (e.g. ``validation MAE, complete inputs``), stated per
    method when the methods differ; ``the validation split`` when the runs did not record it."""
    sel = cells[cells["dataset"] == dataset]
    phrases = {m: _selection_phrase(p, s) for m, p, s in
               sel[["method", "policy", "select_metric"]].drop_duplicates().itertuples(index=False)}
    distinct = list(dict.fromkeys(phrases.values()))
    if len(distinct) <= 1:
        return distinct[0] if distinct else "the validation split"
    return "the validation split, by method: " + "; ".join(f"{m}: {p}" for m, p in phrases.items())


def _backbone_text(items: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in items.items()) or "–"


@dataclass
class MethodTable:
    """The per-method table of one dataset: ``frame`` has one row per method (means over seeds) and the
    backbone settings that differ between methods; ``common`` the settings every method shares."""

    key: str
    dataset: str
    frame: pd.DataFrame
    common: dict[str, Any]
    caption: str = ""
    notes: list[str] = field(default_factory=list)


def method_table(cells: pd.DataFrame, dataset: str, key: str) -> MethodTable:
    """Per method on ``dataset``: parameters, epoch budget and patience, mean epochs run and best epoch, mean
    training time, and its backbone settings where they differ from the other methods'."""
    sel = cells[cells["dataset"] == dataset]
    methods = list(dict.fromkeys(sel["method"]))
    numeric = ["n_parameters", "epochs_budget", "patience", "batch_size", "epochs_run", "best_epoch", "train_time_s"]
    agg = sel.groupby("method", sort=False)[numeric].mean().reindex(methods)
    agg.insert(0, "seeds", sel.groupby("method", sort=False)["seed"].nunique().reindex(methods))
    backbones = {m: next((b for b in sel.loc[sel["method"] == m, "backbone"] if b), {}) for m in methods}
    keys = list(dict.fromkeys(k for b in backbones.values() for k in b))
    common = {k: backbones[methods[0]].get(k) for k in keys
              if all(k in b and b[k] == backbones[methods[0]][k] for b in backbones.values())}
    differ = {m: {k: v for k, v in b.items() if k not in common} for m, b in backbones.items()}
    agg["backbone"] = [_backbone_text(differ[m]) if backbones[m] else "–" for m in methods]
    table = MethodTable(key, dataset, agg.reset_index(), common)
    recorded = any(backbones.values())
    shared = f"Backbone settings shared by every method: {_backbone_text(common)}." if common else ""
    table.caption = ("methods: parameters, training budget and what each method used (means over seeds); "
                     "checkpoints selected on " + selection_text(cells, dataset) + ". "
                     + (shared if recorded else "The runs did not record backbones.")).strip()
    return table


LABELS = {"method": "method", "seeds": "seeds", "n_parameters": "parameters", "epochs_budget": "epochs (budget)",
          "patience": "patience", "batch_size": "batch", "epochs_run": "epochs run", "best_epoch": "best epoch",
          "train_time_s": "train time (s)", "backbone": "backbone (where methods differ)"}


def display_rows(table: MethodTable) -> tuple[list[str], list[list[str]]]:
    """Header and rows as text (numbers rounded for reading; the CSV keeps them unrounded)."""
    def fmt(col: str, v: Any) -> str:
        if isinstance(v, str):
            return v
        if not np.isfinite(v):
            return "–"
        return f"{v:,.0f}" if col == "n_parameters" else f"{v:.1f}" if col in ("epochs_run", "best_epoch",
                                                                                "train_time_s") else f"{v:g}"
    cols = [c for c in LABELS if c in table.frame.columns]
    rows = [[fmt(c, r[c]) for c in cols] for _, r in table.frame.iterrows()]
    return [LABELS[c] for c in cols], rows


def to_markdown(table: MethodTable) -> str:
    from reports.render import pipe_table

    header, rows = display_rows(table)
    return f"**{table.dataset}**, {table.caption}\n\n{pipe_table(header, rows)}"


def to_csv(table: MethodTable) -> str:
    frame = table.frame.assign(dataset=table.dataset, table=table.key)
    return frame[["dataset", "table", *[c for c in table.frame.columns]]].to_csv(index=False)


def to_latex(table: MethodTable, layout: str = "single") -> str:
    from reports.latex import method_latex  # late: reports.latex reads this module's display rows

    return method_latex(table, layout)
