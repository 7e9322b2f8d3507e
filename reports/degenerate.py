"""What a report says about degenerate data instead of crashing on it: splits of one sample, conditions under
which no test sample could be scored, metrics undefined on the data (a correlation over one sample or constant
targets), test splits that hold a single class. Each finding is one note, attached to the dataset's tables."""

from __future__ import annotations

import pandas as pd

from reports.load import Results

_SHOWN = 4


def _listed(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def data_notes(results: Results, dataset: str) -> list[str]:
    """Notes on ``dataset``'s degenerate splits and undefined values (empty when there is nothing to say)."""
    notes: list[str] = []
    infos = [run.meta.get("datasets", {}).get(dataset, {}) for run in results.runs]
    info = next((i for i in infos if i), {})
    for split, n in (info.get("sizes") or {}).items():
        if isinstance(n, int) and n < 2:
            notes.append(f"the {split} split of {dataset} holds {n} sample(s): a spread or a correlation over it "
                         "is undefined, and one sample says little")
    for split, k in (info.get("classes_present") or {}).items():
        if k == 1 and (info.get("sizes") or {}).get(split, 2) >= 2:
            notes.append(f"the {split} split of {dataset} holds a single class: accuracy-type metrics there say "
                         "nothing about telling classes apart")
    rec = results.records[results.records["dataset"] == dataset]
    missing = rec[rec["value"].isna()]
    if missing.empty:
        return notes
    n = pd.to_numeric(missing.get("n", pd.Series(index=missing.index, dtype=float)), errors="coerce")
    unscored = missing[n == 0]
    for protocol, group in unscored.groupby("protocol", sort=True):
        conditions = sorted(group["condition"].unique())
        notes.append(f"{protocol}: no test sample could be scored under {_listed(conditions)} (none has the "
                     "modalities kept there), so those columns have no value")
    rest = missing[n != 0]
    for metric, group in rest.groupby("metric", sort=True):
        single = (pd.to_numeric(group.get("n"), errors="coerce") == 1).all() if "n" in group else False
        why = "it is undefined for a single scored sample" if single else \
            "it is undefined on these labels or predictions (e.g. constant targets, or no non-zero label)"
        notes.append(f"{metric} has no value for {len(group)} of {int((rec['metric'] == metric).sum())} "
                     f"(condition, seed) results of {dataset}: {why}")
    return notes
