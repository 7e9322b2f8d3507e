"""The ``mibench`` command line: thin typer commands that build a config and call the library."""

from __future__ import annotations

import dataclasses
import errno
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import builtins
from harness.cli_data import data_app
from harness.config import RunConfig, build_run_config, parse_set
from harness.lock import RunLockedError
from harness.progress import LogProgress, RichProgress
from harness.registry import CORRUPTIONS, DATASETS, METHODS, METRICS, PROTOCOLS, UnknownNameError
from harness.store import RunExistsError, RunStore

app = typer.Typer(help="Robustness benchmarking for multimodal learning under missing and corrupted modalities.",
                  no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)  # plain click errors: one line "Error: ..." (a rich box wraps it)
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


_RUN = RunConfig()  # the defaults --help shows


def os_error(exc: OSError, doing: str) -> str:
    """One line for a failed file operation: the file, what went wrong, and what is kept."""
    where = exc.filename or "?"
    what = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
            errno.EROFS: "the filesystem is read-only", errno.EACCES: "no permission to write there",
            errno.EPERM: "no permission to write there"}.get(exc.errno or 0, "")
    return (f"{where}: {what} while {doing}" + (f" ({hint})" if hint and hint not in what.lower() else "")
            + "; everything stored before is kept, and the same command resumes")


def _flag(name: str) -> str:
    return name if getattr(_RUN, name) else f"no-{name}"


def _progress() -> RichProgress | LogProgress:
    """A live display on a terminal; otherwise log lines (one per finished cell, a heartbeat every minute)."""
    if err.is_terminal:
        return RichProgress(err)
    logging.getLogger("harness.progress").setLevel(logging.INFO)
    return LogProgress()


@app.command()
def run(
    methods: Annotated[str | None, typer.Option(help="Comma list, 'all', or globs like 'modal_immune*'.",
                                                metavar="LIST", show_default=",".join(_RUN.methods))] = None,
    datasets: Annotated[str | None, typer.Option(help="Comma list of NAME or NAME=PATH.", metavar="LIST",
                                                 show_default=",".join(_RUN.datasets))] = None,
    seeds: Annotated[str | None, typer.Option(help="A count (3 -> 0,1,2) or a comma list.", metavar="N|LIST",
                                              show_default=str(len(_RUN.seeds)))] = None,
    protocols: Annotated[str | None, typer.Option(
        help="Comma list of protocols, globs, or 'all' (every test protocol).", metavar="LIST",
        show_default=",".join(_RUN.protocols))] = None,
    preset: Annotated[str | None, typer.Option(help="Synthetic data size: tiny, small or full.", metavar="NAME",
                                               show_default=_RUN.preset)] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory.", metavar="DIR",
                                             show_default="$MIBENCH_HOME/runs/<config hash>")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.", metavar="NAME",
                                               show_default=_RUN.device)] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder searched for real datasets.", metavar="DIR",
                                                  show_default="$MIBENCH_DATA, then $MIBENCH_HOME/data")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file; command-line options win.", metavar="FILE",
                                                show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Method option KEY=VALUE or METHOD.KEY=VALUE; "
                                                   "backbone.KEY=VALUE sets the shared backbone (repeatable).",
                                                   metavar="KEY=VALUE", show_default=False)] = None,
    plugin: Annotated[list[str] | None, typer.Option(help="Module to import first (registers methods...); "
                                                     "repeatable.", metavar="MODULE", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing run in --out with a different config.",
                                            metavar="")] = False,
    metric: Annotated[str | None, typer.Option(help="Metric of the final table.", metavar="NAME",
                                               show_default="per task: acc2_non0 or ua")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch intra-op CPU threads (tiny models: 1).", metavar="N",
                                                show_default=str(_RUN.threads))] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel cell processes (0: one per CPU core).", metavar="N",
                                                show_default=str(_RUN.workers))] = None,
    executor: Annotated[str | None, typer.Option(
        help="How units of work run: auto (stacked seed groups on a GPU, worker processes on a CPU), sequential, "
             "process, stacked or ray.", metavar="NAME", show_default=_RUN.executor)] = None,
    stack: Annotated[int | None, typer.Option(
        help="Seeds per stacked group for methods that stack (0: all seeds when stacking, else 1).", metavar="K",
        show_default=str(_RUN.stack))] = None,
    compile: Annotated[bool | None, typer.Option(
        "--compile/--no-compile", help="torch.compile the stacked step (on a CPU it only costs compile time).",
        metavar="", show_default=_flag("compile"))] = None,
    select: Annotated[str | None, typer.Option(
        help="Model selection for every method, on validation: complete (all modalities), incomplete (mean over "
             "the incomplete patterns, MMIN's protocol) or all (mean over every pattern).", metavar="POLICY",
        show_default=_RUN.select)] = None,
    select_metric: Annotated[str | None, typer.Option(
        help="Validation metric of the selection (auto: mae for regression, ua for classification).",
        metavar="NAME", show_default=_RUN.select_metric)] = None,
    backbone: Annotated[str | None, typer.Option(
        help="shared (every method uses the run's backbone and budget; --set backbone.KEY=VALUE changes it) or "
             "paper (every method its paper's own settings; one method: --set METHOD.backbone=paper).",
        metavar="MODE", show_default=_RUN.backbone)] = None,
    reference: Annotated[str | None, typer.Option(
        help="Method the others are tested against in the report: auto (the declared reference), a name, or none.",
        metavar="NAME", show_default=_RUN.reference)] = None,
    address: Annotated[str | None, typer.Option(
        help="--executor ray: the cluster, auto or HOST:PORT.", metavar="ADDR",
        show_default="a local instance")] = None,
    gpus_per_task: Annotated[float | None, typer.Option(
        help="--executor ray: GPUs each worker reserves; 0.5 shares a GPU between two.", metavar="F",
        show_default=f"{_RUN.gpus_per_task:g}")] = None,
    max_retries: Annotated[int | None, typer.Option(
        help="--executor ray: reruns of a unit whose worker died.", metavar="N",
        show_default=str(_RUN.max_retries))] = None,
    ray_data: Annotated[str | None, typer.Option(
        help="--executor ray: store (the driver ships the data) or path (workers load it).", metavar="HOW",
        show_default=_RUN.ray_data)] = None,
    load_limit: Annotated[str | None, typer.Option(
        help="Memory a data file may make the loader allocate, e.g. 64G.", metavar="SIZE",
        show_default="relative to the file's size")] = None,
    nan_value: Annotated[float | None, typer.Option(help="Value replacing NaN/inf features.", metavar="X",
                                                    show_default=f"{_RUN.nan_value:g}")] = None,
    pool: Annotated[bool | None, typer.Option("--pool/--no-pool", help="Mean-pool sequences over time.",
                                              metavar="", show_default=_flag("pool"))] = None,
    standardize: Annotated[bool | None, typer.Option(
        "--standardize/--no-standardize", help="Z-score features with training-split statistics.", metavar="",
        show_default=_flag("standardize"))] = None,
    iemocap_classes: Annotated[str | None, typer.Option(
        help="IEMOCAP labels: 4, 6 or binary:<neutral|happy|sad|angry>.", metavar="VIEW",
        show_default=_RUN.iemocap_classes)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (cells, protocols, condition counts, "
                                                             "estimated time) and train nothing.", metavar="")] = False,
) -> None:
    """Train every method on every dataset for every seed and evaluate under every protocol. Re-running the
    same command on the same --out resumes: finished cells are skipped."""
    from harness import runner

    try:
        cfg = build_run_config(
            config, methods=methods, datasets=datasets, seeds=seeds, protocols=protocols, preset=preset,
            out=str(out) if out else None, device=device, data_dir=str(data_dir) if data_dir else None,
            plugins=tuple(plugin) if plugin else None, method_options=parse_set(set_ or []), threads=threads,
            workers=workers, executor=executor, stack=stack, compile=compile, select=select,
            select_metric=select_metric, backbone=backbone, reference=reference, ray_address=address,
            gpus_per_task=gpus_per_task, max_retries=max_retries, ray_data=ray_data, load_limit=load_limit,
            nan_value=nan_value, pool=pool, standardize=standardize, iemocap_classes=iemocap_classes,
        )
        if dry_run:
            return _print_plan(cfg)
        progress = _progress()
        try:
            summary = runner.run(cfg, progress, overwrite=overwrite, table_metric=metric)
        finally:
            progress.stop()
    except (ValueError, UnknownNameError, RunExistsError, RunLockedError, FileNotFoundError, ImportError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(os_error(exc, "writing the run")) from None
    _finish_report(summary.out, metric)
    console.print(f"Results: {summary.out}  ({len(summary.done)} trained, {len(summary.skipped)} resumed)")
    if summary.failed:
        err.print(f"[bold red]{len(summary.failed)} cell(s) failed:[/]")
        for cell, reason in summary.failed.items():
            err.print(f"  {cell}: {reason}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)


def _print_plan(cfg) -> None:
    """``run --dry-run``: what the run would do (:mod:`harness.preview`); nothing is trained or written."""
    from harness.preview import preview
    from harness.progress import clock

    p = preview(cfg)
    plan = p.plan
    console.print("Dry run: nothing is trained or written.", highlight=False)
    where = f"holds a run with {len(p.done)} of {len(plan.cells)} cells done: the same config resumes it" \
        if (plan.out / "run.json").is_file() else "new"
    console.print(f"Run directory: {plan.out} ({where})", highlight=False, soft_wrap=True)
    console.print(f"Cells: {len(plan.cells)} ({len(plan.datasets)} datasets x {len(plan.methods)} methods x "
                  f"{len(plan.config.seeds)} seeds), {len(p.todo)} to train on {plan.device}, {p.workers} at a time",
                  highlight=False)
    table = Table("protocol", *plan.datasets, box=None, title="Conditions per dataset", title_justify="left")
    for name in dict.fromkeys(q.protocol for q in p.protocols):
        row = {q.dataset: ("skipped" if q.skipped else str(q.conditions)) for q in p.protocols if q.protocol == name}
        version = next(q.version for q in p.protocols if q.protocol == name)
        table.add_row(f"{name} v{version}", *(row.get(d, "–") for d in plan.datasets))
    console.print(table)
    for q in (q for q in p.protocols if q.skipped):
        console.print(f"  skipped {q.protocol} on {q.dataset}: {q.skipped}", highlight=False, markup=False)
    methods = Table("method", "cells to train", "stored timing (s per cell)", box=None)
    for method in plan.methods:
        cells = [c for c in p.todo if c.method == method]
        seen = [s for d in plan.datasets for s in p.timings.get((d, method), [])]
        methods.add_row(method, str(len(cells)), f"{sum(seen) / len(seen):.1f} (from {len(seen)} cells)" if seen
                        else "none stored")
    console.print(methods)
    seconds, unknown = p.estimate()
    known = len(p.todo) - unknown
    if not p.todo:
        console.print("Estimated time: nothing to train (every cell is done).")
    elif known:
        rest = f"; {unknown} cell(s) have no stored timing and are not counted" if unknown else ""
        console.print(f"Estimated time: {clock(seconds)} of cell time for {known} cell(s), about "
                      f"{clock(seconds / max(1, min(p.workers, known)))} at {p.workers} at a time{rest}.",
                      highlight=False)
    else:
        console.print("Estimated time: unknown (no stored timings of these cells under this config).")


def _print_tables(tables: list) -> None:
    """Result tables on stdout: rich tables (bold/underline as styles, split to the width) on a terminal,
    Markdown otherwise (a file, a pipe), exactly as in the .md files."""
    from reports.report import markdown_tables
    from reports.terminal import rich_table

    if console.is_terminal:
        for table in tables:
            console.print(rich_table(table, console.width))
            console.print()
    else:
        console.print(markdown_tables(tables), soft_wrap=True, highlight=False, markup=False)
        console.print()


def _notes(notes: list[str]) -> None:
    for note in notes:
        console.print(f"Note: {note}.", highlight=False, markup=False)


def _finish_report(run_dir: Path, metric: str | None) -> None:
    """After ``run``: print each dataset's pattern table, then write the default report into RUN_DIR/report
    (every format; tested against the reference the run declares)."""
    from reports.load import load_results
    from reports.report import ReportOptions, headline_tables, resolve_reference, write_report
    from reports.tables import StatsOptions

    try:
        results = load_results([run_dir], allow_partial=True)
        reference, note = resolve_reference(results, "auto")
        options = ReportOptions(stats=StatsOptions(reference=reference))
        tables, notes = headline_tables(results, metric, options)
        _print_tables(tables)
        _notes([*notes, *([note] if note else [])])
        _, index = write_report(results, options, run_dir / "report")
    except (ValueError, UnknownNameError) as exc:
        err.print(f"report not written: {exc}", highlight=False, soft_wrap=True, markup=False)
        return
    except OSError as exc:
        err.print(f"report not written: {exc.filename}: {exc.strerror or exc} (the results are stored; "
                  f"'mibench report {run_dir} --out DIR' writes it elsewhere)", highlight=False, soft_wrap=True,
                  markup=False)
        return
    console.print(f"Report: {index}" + (" (partial run: not reportable)" if results.partial else ""),
                  highlight=False, soft_wrap=True)


@app.command("list")
def list_(
    kind: Annotated[str, typer.Argument(help="methods, datasets, metrics, protocols or corruptions",
                                        metavar="KIND")],
    validation: Annotated[bool, typer.Option(help="Also list the held-out validation family.", metavar="")] = False,
    conditions: Annotated[bool, typer.Option(help="List every protocol condition (on synth-mosi, tiny).",
                                             metavar="")] = False,
) -> None:
    """List what is registered."""
    try:
        builtins.load()
    except ImportError as exc:
        raise fail(str(exc)) from None
    table = Table(box=None)
    if kind == "methods":
        table.add_column("method"), table.add_column("paper")
        for name, cls in METHODS.entries():
            table.add_row(name + (" (ablation)" if METHODS.is_hidden(name) else ""), cls.card.paper)
    elif kind == "datasets":
        table.add_column("dataset"), table.add_column("description")
        for name, fn in DATASETS.entries():
            table.add_row(name, (fn.__doc__ or "").strip().splitlines()[0])
    elif kind == "metrics":
        for col in ("metric", "task", "better", "description"):
            table.add_column(col)
        for name, spec in METRICS.entries():
            table.add_row(name, spec.task, "higher" if spec.higher_is_better else "lower", spec.description)
    elif kind == "protocols":
        table = _protocol_table(validation, conditions)
    elif kind == "corruptions":
        table.add_column("corruption", no_wrap=True)
        for col in ("family", "kind", "parameters (valid range)", "identity at"):
            table.add_column(col)
        for name, c in CORRUPTIONS.entries():
            if c.family == "validation" and not validation:
                continue
            params = ", ".join(f"{k} {r}" for k, r in c.params.items()) or "modalities"
            zero = ", ".join(f"{k}={v}" for k, v in c.zero.items()) if c.zero is not None else "none"
            table.add_row(name, c.family, c.kind, params, zero)
    else:
        raise fail(f"Unknown kind {kind!r}; valid: methods, datasets, metrics, protocols, corruptions")
    console.print(table)
    if kind in ("protocols", "corruptions") and not validation:
        console.print("The held-out validation family is not shown; add --validation.", highlight=False)


def _protocol_table(validation: bool, conditions: bool) -> Table:
    """Protocols with family, version, hash and their conditions on a representative spec (synth-mosi, tiny)."""
    from corruptions.spec import FeatureStats
    from harness.data import DataOptions

    data = DATASETS.get("synth-mosi")(DataOptions(preset="tiny"))
    stats = FeatureStats.from_batch(data.train)
    table = Table(box=None)
    table.add_column("protocol", no_wrap=True)
    summary = ("family", "version", "hash", "conditions (synth-mosi)")
    for col in ("condition", "severity", "curve") if conditions else summary:
        table.add_column(col, overflow="fold")
    for name, p in PROTOCOLS.entries():
        hidden = PROTOCOLS.is_hidden(name)
        if hidden and not validation:
            continue
        try:
            conds = p.conditions(data.spec, stats)
        except ValueError as exc:
            conds, why = [], str(exc)
        if conditions:
            for c in conds:
                table.add_row(name, c.name, "" if c.severity is None else f"{c.severity:g}", c.curve or "")
            continue
        summary = f"{len(conds)}: {conds[0].name} … {conds[-1].name}" if conds else f"n/a: {why}"
        table.add_row(name + (" (hidden)" if hidden else ""), p.family, str(p.version), p.digest(), summary)
    return table


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run directories (several are merged).",
                                                   metavar="RUN_DIR...")],
    format: Annotated[str, typer.Option(help="Comma list of table formats: md, latex, csv.",
                                        metavar="LIST")] = "md,latex,csv",
    metric: Annotated[str | None, typer.Option(
        help="Comma list of metrics (default per task: acc2_non0,f1_non0,acc7,mae,corr; ua,wa,f1_weighted). A "
             "metric that does not apply to a dataset is noted, and the dataset keeps its defaults.",
        metavar="LIST", show_default=False)] = None,
    reference: Annotated[str, typer.Option(
        help="Method the others are tested against: auto (the one the run declares), a method name, or none.",
        metavar="NAME")] = "auto",
    test: Annotated[str, typer.Option(help="ttest or wilcoxon (over seeds), or randomization or bootstrap (over "
                                           "test samples, from the stored predictions).", metavar="NAME")] = "ttest",
    correction: Annotated[str, typer.Option(help="holm (headline tables), bh (large grids) or none.",
                                            metavar="NAME")] = "holm",
    out: Annotated[Path | None, typer.Option(help="Report directory.", metavar="DIR",
                                             show_default="RUN_DIR/report")] = None,
    allow_partial: Annotated[bool, typer.Option(help="Report non-reportable runs (captions say partial).",
                                                metavar="")] = False,
    composite: Annotated[bool, typer.Option(help="Paper-style cells: all metrics in one cell (a / b / c).",
                                            metavar="")] = False,
    reported: Annotated[bool, typer.Option(help="Add the papers' reported values (method cards) beside ours.",
                                           metavar="")] = False,
    ci: Annotated[str, typer.Option(help="Intervals: t (over seeds) or bootstrap (over test samples, condition "
                                         "tables).", metavar="NAME")] = "t",
    all_pairs: Annotated[bool, typer.Option(help="Also test every pair of methods (CSV + index).",
                                            metavar="")] = False,
    figures: Annotated[str, typer.Option(help="Figures for the first metric, all metrics, or none.",
                                         metavar="NAME")] = "first",
    latex: Annotated[str, typer.Option(
        help="LaTeX layout: single (a one-column article's text width), span (table* across a two-column page) "
             "or column (one column of a two-column page).", metavar="NAME")] = "single",
    plugin: Annotated[list[str] | None, typer.Option(help="Module to import first (method cards, metrics).",
                                                     metavar="MODULE", show_default=False)] = None,
) -> None:
    """Write tables (Markdown, LaTeX, CSV), figures and report.md from run directories; print the tables.

    Never trains or predicts: everything comes from the stored results."""
    from harness.config import split_list
    from harness.registry import import_plugin
    from reports.load import load_results
    from reports.report import ReportOptions, metric_notes, resolve_reference, write_report
    from reports.tables import StatsOptions

    try:
        builtins.load()
        for module in plugin or []:
            import_plugin(module)
        stats = StatsOptions(test=test, correction=correction)  # options are checked before any file is read
        options = ReportOptions(metrics=split_list(metric or ""), formats=split_list(format), stats=stats,
                                composite=composite, reported=reported, ci=ci, all_pairs=all_pairs, figures=figures,
                                latex=latex)
        if out is None and len(run_dirs) > 1:
            raise ValueError("several run directories are merged into one report: pass --out DIR")
        results = load_results(run_dirs, allow_partial=allow_partial)
        ref, ref_note = resolve_reference(results, reference)
        options = dataclasses.replace(options, stats=dataclasses.replace(stats, reference=ref))
        tables, index = write_report(results, options, out or run_dirs[0] / "report")
        notes = [n for ns in metric_notes(results, options).values() for n in ns]
    except (ValueError, UnknownNameError, FileNotFoundError, ImportError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror or exc} while writing the report (nothing of the run changed; "
                   f"--out DIR writes it elsewhere)") from None
    _print_tables(tables)
    _notes([*notes, *([ref_note] if ref_note else [])])
    console.print(f"Report: {index}", highlight=False, soft_wrap=True)


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory (printed when its run starts).",
                                                   metavar="RUN_DIR")]) -> None:
    """A run's state: cells per status, each cell's timing, an ETA while it goes on."""
    from harness import runs

    try:
        store = RunStore.read(run_dir)
        problems = store.integrity_problems()
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror or exc}") from None
    for line in runs.status_lines(store.meta, run_dir):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    rows = runs.cell_table(store.meta)
    table = Table(box=None)
    for name in ("cell", "status", "started", "train s", "eval s"):
        table.add_column(name, no_wrap=True, justify="right" if name.endswith(" s") else "left")
    if any(row["detail"] for row in rows):
        table.add_column("detail", overflow="fold")
    for row in rows:
        times = [f"{row[k]:.1f}" if row[k] is not None else "–" for k in ("train_s", "eval_s")]
        detail = [escape(row["detail"])] if len(table.columns) > 5 else []
        table.add_row(row["cell"], row["status"], runs.short_time(row["started_at"], year=False), *times, *detail)
    console.print(table)
    for line in problems:  # integrity (harness.store.RunStore.integrity_problems)
        err.print(f"integrity: {line}", highlight=False, soft_wrap=True, markup=False)


@app.command("runs")
def runs_(home: Annotated[Path | None, typer.Argument(
        help="Folder holding run directories.", metavar="DIR", show_default="$MIBENCH_HOME/runs")] = None) -> None:
    """The runs under $MIBENCH_HOME/runs (or DIR): state, cells done, dates, config."""
    from harness import runs
    from harness.config import default_out_dir

    folder = home or default_out_dir("-").parent
    found, skipped = runs.list_runs(folder)
    if not found:
        console.print(f"No runs under {folder}.", highlight=False, soft_wrap=True)
    table = Table(box=None)
    for name in ("run", "state", "cells", "started", "updated"):
        table.add_column(name, no_wrap=True)
    table.add_column("config", overflow="fold")
    for r in found:
        table.add_row(r.path.name, r.state, f"{r.done}/{r.total}", r.started, r.updated, r.config)
    if found:
        console.print(f"Runs under {folder}:", highlight=False, soft_wrap=True)
        console.print(table)
    for line in skipped:
        err.print(f"skipped {line}", highlight=False, soft_wrap=True, markup=False)


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context, verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log progress details (INFO) from every part of mibench, e.g. skipped protocols, "
                                "selected epochs, executors.", metavar="")] = False) -> None:
    """With no command, runs the embedded default: every method on the synthetic datasets (small preset)."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)
