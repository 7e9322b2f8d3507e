"""Significance tables: each method against a reference, or all pairs, over seeds in every cell.

Pure functions of tidy records (see :mod:`harness.stats` for the record columns and test conventions).

Conventions
-----------
* A *cell* defaults to (dataset, protocol, condition, metric); within a cell, methods are paired on seed.
  Unmatched seeds are dropped and counted in ``note``; each (cell, method, seed) must occur once.
* Multiple-comparison family: every row of the returned table sharing (dataset, metric) - i.e. all
  methods, protocols and conditions of one metric on one dataset. Rows whose p-value is NaN (n < 2, or a
  t-test on differences with zero variance) stay NaN and are not counted in the family size.
* ``significant`` is ``p_adjusted < alpha``; a NaN p-value is never significant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

from harness.stats import (
    SEED_TESTS,
    SeedTest,
    benjamini_hochberg,
    check_test,
    holm,
    power_warning,
    require_columns,
    require_unique,
)

Correction = Literal["holm", "bh", "none"]
DEFAULT_CELL: tuple[str, ...] = ("dataset", "protocol", "condition", "metric")
DEFAULT_FAMILY: tuple[str, ...] = ("dataset", "metric")

_CORRECTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "holm": holm,
    "bh": benjamini_hochberg,
    "none": lambda p: np.asarray(p, dtype=float),
}


def _wide_cells(records: pd.DataFrame, cell: Sequence[str]) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """Yield (cell key, seed x method table of values) for every cell."""
    require_columns(records, [*cell, "method", "seed", "value"])
    require_unique(records, [*cell, "method", "seed"])
    for key, group in records.groupby(list(cell), dropna=False, sort=True):
        yield key, group.pivot(index="seed", columns="method", values="value")


def _direction(mean_diff: float, higher_is_better: bool) -> str | None:
    if not np.isfinite(mean_diff):
        return None
    if mean_diff == 0.0:
        return "tie"
    return "better" if (mean_diff > 0.0) == higher_is_better else "worse"


def _column(wide: pd.DataFrame, method: str) -> pd.Series:
    return wide[method] if method in wide.columns else pd.Series(dtype=float)


def _compare_rows(
    records: pd.DataFrame,
    pairs: Callable[[list[str]], list[tuple[str, str]]],
    names: tuple[str, str],
    higher_is_better: Mapping[str, bool],
    test: SeedTest,
    alpha: float,
    cell: Sequence[str],
) -> list[dict[str, object]]:
    """One dict per (cell, pair): the seed-level test of ``first`` against ``second``."""
    rows: list[dict[str, object]] = []
    for key, wide in _wide_cells(records, cell):
        info = dict(zip(cell, key, strict=True))
        for first, second in pairs(sorted(wide.columns)):
            res = SEED_TESTS[test](_column(wide, first), _column(wide, second))
            warning = power_warning(test, res.n, alpha) if res.n >= 2 else None
            rows.append({**info, names[0]: first, names[1]: second, "test": test, "n": res.n,
                         "statistic": res.statistic, "p_value": res.p_value, "mean_diff": res.mean_diff,
                         "direction": _direction(res.mean_diff, higher_is_better[str(info["metric"])]),
                         "note": "; ".join(s for s in (res.note, warning) if s)})
    return rows


def _compare(
    records: pd.DataFrame,
    pairs: Callable[[list[str]], list[tuple[str, str]]],
    names: tuple[str, str],
    higher_is_better: Mapping[str, bool],
    test: SeedTest,
    correction: Correction,
    alpha: float,
    cell: Sequence[str],
) -> pd.DataFrame:
    check_test(test)
    if correction not in _CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; known: {sorted(_CORRECTIONS)}")
    if not set(DEFAULT_FAMILY) <= set(cell):
        raise ValueError(f"cell {list(cell)} must include the family columns {list(DEFAULT_FAMILY)}")
    require_columns(records, [*cell, "method", "seed", "value"])
    unknown = sorted(set(records["metric"]) - set(higher_is_better))
    if unknown:
        raise ValueError(f"higher_is_better lacks metric(s) {unknown}")
    rows = _compare_rows(records, pairs, names, higher_is_better, test, alpha, cell)
    columns = [*cell, *names, "test", "n", "statistic", "p_value", "mean_diff", "direction", "note"]
    out = pd.DataFrame(rows, columns=columns)
    out["n"] = out["n"].astype(np.int64)
    p_value = out["p_value"].to_numpy(dtype=float)
    adjusted = np.full(len(out), np.nan)
    for positions in out.groupby(list(DEFAULT_FAMILY), dropna=False).indices.values():
        adjusted[positions] = _CORRECTIONS[correction](p_value[positions])
    out["p_adjusted"] = adjusted
    out["correction"] = correction
    out["significant"] = out["p_adjusted"] < alpha  # NaN compares False
    return out


def compare_to_reference(
    records: pd.DataFrame,
    reference: str,
    *,
    higher_is_better: Mapping[str, bool],
    test: SeedTest = "ttest",
    correction: Correction = "holm",
    alpha: float = 0.05,
    cell: Sequence[str] = DEFAULT_CELL,
) -> pd.DataFrame:
    """Paired seed-level test of every method against ``reference`` in every cell.

    One row per (cell, method != reference) with columns ``method, reference, test, n, statistic,
    p_value, mean_diff (method - reference), direction ('better'/'worse'/'tie' by higher_is_better),
    note, p_adjusted, correction, significant (p_adjusted < alpha)``. Correction family: all rows sharing
    (dataset, metric). Rows with n < 2 keep NaN p-values, note "not computable (n<2)", and are outside
    the family; so are t-tests whose per-seed differences are all equal but not zero (note
    :data:`harness.stats.ZERO_VARIANCE`). ``cell`` must contain dataset and metric; pass e.g.
    ("dataset", "metric", "summary", "curve") to compare robustness summaries.
    """
    if reference not in set(records["method"]):
        raise ValueError(f"reference {reference!r} not in records; methods: {sorted(set(records['method']))}")

    def pairs(methods: list[str]) -> list[tuple[str, str]]:
        return [(m, reference) for m in methods if m != reference]

    return _compare(records, pairs, ("method", "reference"), higher_is_better, test, correction, alpha, cell)


def compare_all_pairs(
    records: pd.DataFrame,
    *,
    higher_is_better: Mapping[str, bool],
    test: SeedTest = "ttest",
    correction: Correction = "holm",
    alpha: float = 0.05,
    cell: Sequence[str] = DEFAULT_CELL,
) -> pd.DataFrame:
    """Like :func:`compare_to_reference` for every unordered pair (method_a < method_b by name).

    ``mean_diff`` is method_a - method_b and ``direction`` says whether method_a is better. Same family.
    """
    def pairs(methods: list[str]) -> list[tuple[str, str]]:
        return list(combinations(methods, 2))

    return _compare(records, pairs, ("method_a", "method_b"), higher_is_better, test, correction, alpha, cell)
