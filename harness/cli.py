"""The ``mibench`` command line: thin typer commands that build a config and call the library."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import builtins
from harness.cli_data import data_app
from harness.config import build_run_config, parse_set
from harness.lock import RunLockedError
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


def os_error(exc: OSError, doing: str) -> str:
    """One line for a failed file operation: the file, what went wrong, and what is kept."""
    where = exc.filename or "?"
    what = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
            errno.EROFS: "the filesystem is read-only", errno.EACCES: "no permission to write there",
            errno.EPERM: "no permission to write there"}.get(exc.errno or 0, "")
    return (f"{where}: {what} while {doing}" + (f" ({hint})" if hint and hint not in what.lower() else "")
            + "; everything stored before is kept, and the same command resumes")


class RichProgress:
    """Progress bar over cells naming the cells that are executing and, for each, its epoch. The bar appears
    only once the run starts, so an error found while checking the inputs is the only thing printed."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.task = progress.add_task("cells", total=0)
        self.running: dict[str, str] = {}
        self.started_bar = False

    def start(self, total: int, done: int) -> None:
        self.p.update(self.task, total=total, completed=done)
        self.p.start()
        self.started_bar = True

    def stop(self) -> None:
        if self.started_bar:
            self.p.update(self.task, description="cells")
            self.p.stop()

    def _show(self) -> None:
        names = list(self.running.values())
        shown = "; ".join(names[:2]) + (f" (+{len(names) - 2})" if len(names) > 2 else "")
        self.p.update(self.task, description=shown or "waiting for workers")

    def started(self, cell) -> None:
        self.running[cell.id] = cell.label
        self._show()

    def epoch(self, cell, epoch: int, total: int) -> None:
        self.running[cell.id] = f"{cell.label} · epoch {epoch}/{total}"
        self._show()

    def finished(self, cell, status: str, seconds: float) -> None:
        self.running.pop(cell.id, None)
        self.p.advance(self.task)
        self._show()


@app.command()
def run(
    methods: Annotated[str | None, typer.Option(help="Comma list, 'all', or globs like 'modal_immune*'.")] = None,
    datasets: Annotated[str | None, typer.Option(help="Comma list of NAME or NAME=PATH.")] = None,
    seeds: Annotated[str | None, typer.Option(help="A count (3 -> 0,1,2) or a comma list.")] = None,
    protocols: Annotated[str | None, typer.Option(
        help="Comma list of protocols, globs, or 'all' (every test protocol). Default: the standard set "
             "fixed_pattern,random_missing,noise.")] = None,
    preset: Annotated[str | None, typer.Option(help="Synthetic data size: tiny, small or full.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: $MIBENCH_HOME/runs/<hash>).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder searched for real datasets.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file; command-line options win.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Method option KEY=VALUE or METHOD.KEY=VALUE")] = None,
    plugin: Annotated[list[str] | None, typer.Option(help="Module to import first (registers methods...).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing run in --out with a different config.")] = False,
    metric: Annotated[str | None, typer.Option(help="Metric of the final table (default per task).")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch intra-op CPU threads (default 1: tiny models).")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel cell processes (default 0: one per CPU core).")] = None,
    executor: Annotated[str | None, typer.Option(
        help="How units of work run: auto, sequential, process or ray (default auto).")] = None,
    address: Annotated[str | None, typer.Option(
        help="--executor ray: the cluster, auto or HOST:PORT (default: start a local instance).")] = None,
    gpus_per_task: Annotated[float | None, typer.Option(
        help="--executor ray: GPUs each worker reserves; 0.5 shares a GPU between two (default 0).")] = None,
    max_retries: Annotated[int | None, typer.Option(
        help="--executor ray: reruns of a unit whose worker died (default 3).")] = None,
    ray_data: Annotated[str | None, typer.Option(
        help="--executor ray: store (the driver ships the data) or path (workers load it) (default store).")] = None,
    load_limit: Annotated[str | None, typer.Option(
        help="Memory a data file may make the loader allocate, e.g. 64G (default: relative to its size).")] = None,
    nan_value: Annotated[float | None, typer.Option(help="Value replacing NaN/inf features (default 0).")] = None,
    pool: Annotated[bool | None, typer.Option("--pool/--no-pool", help="Mean-pool sequences over time.")] = None,
    standardize: Annotated[bool | None, typer.Option(
        "--standardize/--no-standardize", help="Z-score features with training-split statistics.")] = None,
    iemocap_classes: Annotated[str | None, typer.Option(
        help="IEMOCAP labels: 4, 6 or binary:<neutral|happy|sad|angry> (default 4).")] = None,
) -> None:
    """Train every method on every dataset for every seed and evaluate under every protocol. Re-running the
    same command on the same --out resumes: finished cells are skipped."""
    from harness import runner

    try:
        cfg = build_run_config(
            config, methods=methods, datasets=datasets, seeds=seeds, protocols=protocols, preset=preset,
            out=str(out) if out else None, device=device, data_dir=str(data_dir) if data_dir else None,
            plugins=tuple(plugin) if plugin else None, method_options=parse_set(set_ or []), threads=threads,
            workers=workers, executor=executor, ray_address=address, gpus_per_task=gpus_per_task,
            max_retries=max_retries, ray_data=ray_data, load_limit=load_limit,
            nan_value=nan_value, pool=pool, standardize=standardize, iemocap_classes=iemocap_classes,
        )
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=err, transient=False, auto_refresh=True)
        progress = RichProgress(bar)
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


def _finish_report(run_dir: Path, metric: str | None) -> None:
    """After ``run``: print each dataset's pattern table, then write the default report into RUN_DIR/report."""
    from reports.load import load_results
    from reports.render import to_markdown
    from reports.report import ReportOptions, headline_tables, write_report
    from reports.tables import StatsOptions

    try:
        results = load_results([run_dir], allow_partial=True)
        reference = "vanilla_fusion" if "vanilla_fusion" in set(results.records["method"]) else None
        options = ReportOptions(formats=("md", "latex", "csv"), stats=StatsOptions(reference=reference))
        for table in headline_tables(results, metric, options):
            console.print(to_markdown(table), soft_wrap=True, highlight=False, markup=False)
            console.print()
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
    kind: Annotated[str, typer.Argument(help="methods, datasets, metrics, protocols or corruptions")],
    validation: Annotated[bool, typer.Option(help="Also list the held-out validation family.")] = False,
    conditions: Annotated[bool, typer.Option(help="List every protocol condition (on synth-mosi, tiny).")] = False,
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
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run directories (several are merged).")],
    format: Annotated[str, typer.Option(help="Comma list of md, latex, csv.")] = "md",
    metric: Annotated[str | None, typer.Option(help="Comma list of metrics (default per task: acc2_non0,f1_non0,"
                                                    "acc7,mae,corr; ua,wa,f1_weighted).")] = None,
    reference: Annotated[str, typer.Option(help="Method the others are tested against, or 'none'.")] = "vanilla_fusion",
    test: Annotated[str, typer.Option(help="ttest or wilcoxon (over seeds), or randomization or bootstrap (over "
                                           "test samples, from the stored predictions).")] = "ttest",
    correction: Annotated[str, typer.Option(help="holm (headline tables), bh (large grids) or none.")] = "holm",
    out: Annotated[Path | None, typer.Option(help="Report directory (default: RUN_DIR/report).")] = None,
    allow_partial: Annotated[bool, typer.Option(help="Report non-reportable runs (captions say partial).")] = False,
    composite: Annotated[bool, typer.Option(help="Paper-style cells: all metrics in one cell (a / b / c).")] = False,
    reported: Annotated[bool, typer.Option(help="Add the papers' reported values (method cards) beside ours.")] = False,
    ci: Annotated[str, typer.Option(help="Intervals: t (over seeds) or bootstrap (over test samples, condition "
                                         "tables).")] = "t",
    all_pairs: Annotated[bool, typer.Option(help="Also test every pair of methods (CSV + index).")] = False,
    figures: Annotated[str, typer.Option(help="Figures for the first metric, all metrics, or none.")] = "first",
    plugin: Annotated[list[str] | None, typer.Option(help="Module to import first (method cards, metrics).")] = None,
) -> None:
    """Write tables (Markdown/LaTeX/CSV), figures and report.md from run directories, and print the Markdown
    tables. Never trains or predicts: everything comes from the stored results."""
    from harness.config import split_list
    from harness.registry import import_plugin
    from reports.load import load_results
    from reports.report import ReportOptions, markdown_tables, write_report
    from reports.tables import StatsOptions

    try:
        builtins.load()
        for module in plugin or []:
            import_plugin(module)
        stats = StatsOptions(reference=None if reference == "none" else reference, test=test, correction=correction)
        options = ReportOptions(metrics=split_list(metric or ""), formats=split_list(format), stats=stats,
                                composite=composite, reported=reported, ci=ci, all_pairs=all_pairs, figures=figures)
        if out is None and len(run_dirs) > 1:
            raise ValueError("several run directories are merged into one report: pass --out DIR")
        results = load_results(run_dirs, allow_partial=allow_partial)
        tables, index = write_report(results, options, out or run_dirs[0] / "report")
    except (ValueError, UnknownNameError, FileNotFoundError, ImportError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror or exc} while writing the report (nothing of the run changed; "
                   f"--out DIR writes it elsewhere)") from None
    console.print(markdown_tables(tables), soft_wrap=True, highlight=False, markup=False)
    console.print(f"\nReport: {index}", highlight=False, soft_wrap=True)


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Show each cell's status in a run directory."""
    try:
        store = RunStore.read(run_dir)
        problems = store.integrity_problems()
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror or exc}") from None
    meta = store.meta
    table = Table("cell", "status", "detail", box=None)
    for cell, entry in meta["cells"].items():
        table.add_row(cell, entry["status"], entry.get("error", ""))
    console.print(table)
    for line in problems:  # integrity (harness.store.RunStore.integrity_problems)
        err.print(f"integrity: {line}", highlight=False, soft_wrap=True, markup=False)


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """With no command, runs the embedded default: every method on the synthetic datasets (small preset)."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)
