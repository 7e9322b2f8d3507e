"""What a report covers: the metrics of each dataset (with a note for a requested metric a dataset does not
have) and the reference method every other is tested against (the one the runs declare, never a name in
code)."""

from __future__ import annotations

from collections.abc import Sequence

from harness.registry import METRICS
from reports.load import Results

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("acc2_non0", "f1_non0", "acc7", "mae", "corr"),
    "classification": ("ua", "wa", "f1_weighted"),  # the headline (UA, MMIN's selection metric) first: figures use it
}
HEADLINE: dict[str, str] = {"regression": "acc2_non0", "classification": "ua"}


def metric_choice(results: Results, requested: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per dataset, the metrics to report and the notes saying which requested metrics it lacks and why.

    ``requested`` empty: each task's :data:`DEFAULT_METRICS`. A requested metric recorded for no dataset is an
    error; one that a dataset lacks (another task's) is noted, and a dataset with none of them keeps its
    defaults, so no dataset vanishes from a report."""
    rec = results.records
    recorded = {d: set(rec.loc[rec["dataset"] == d, "metric"]) for d in rec["dataset"].unique()}
    missing = [m for m in requested if not any(m in have for have in recorded.values())]
    if missing:
        available = ", ".join(f"{d}: {', '.join(sorted(h))}" for d, h in recorded.items())
        raise ValueError(f"no records for metric(s) {missing}; available: {available}")
    chosen: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    for dataset, have in recorded.items():
        task = results.tasks.get(dataset, "")
        default = [m for m in DEFAULT_METRICS.get(task, tuple(sorted(have))) if m in have]
        wanted = [m for m in (requested or default) if m in have]
        absent = [m for m in requested if m not in have]
        if absent:
            why = "; ".join(f"{m} is a {METRICS.get(m).task} metric" for m in absent)
            instead = "" if wanted else f"; its default metrics {', '.join(default)} are reported instead"
            notes[dataset] = [f"metric {', '.join(absent)} does not apply to {dataset}, a {task or 'unknown-task'} "
                              f"dataset ({why}){instead}"]
        chosen[dataset] = wanted or default
    return {d: ms for d, ms in chosen.items() if ms}, notes


def resolve_reference(results: Results, requested: str = "auto") -> tuple[str | None, str | None]:
    """The reference method and a note when there is none. ``auto``: the method the runs declare (``run.json``
    key ``reference``, set from the run or the method cards); ``none``: no reference; otherwise the name given.
    Runs declaring different references need an explicit name."""
    if requested == "none":
        return None, None
    if requested != "auto":
        return requested, None
    declared = sorted({str(r.meta["reference"]) for r in results.runs if r.meta.get("reference")})
    if len(declared) > 1:
        raise ValueError(f"the runs declare different reference methods ({', '.join(declared)}); pass "
                         "--reference NAME (or none)")
    if not declared:
        return None, ("no reference method is declared in run.json (key 'reference'), so there are no significance "
                      "marks; pass --reference NAME to test every method against one")
    if declared[0] not in set(results.records["method"]):
        return None, (f"the declared reference {declared[0]} has no results here, so there are no significance "
                      "marks; pass --reference NAME to test against another method")
    return declared[0], None


def check_reference(results: Results, reference: str | None) -> None:
    """``ValueError`` naming the methods when ``reference`` has no results in ``results``."""
    methods = sorted(results.records["method"].unique())
    if reference is not None and reference not in methods:
        raise ValueError(f"reference method {reference!r} is not in the results; methods: {', '.join(methods)} "
                         "(or --reference none for no significance marks)")
