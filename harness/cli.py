"""The ``mibench`` command line: thin typer commands that build a config and call the library."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import builtins
from harness.config import build_run_config, parse_set
from harness.registry import CORRUPTIONS, DATASETS, METHODS, METRICS, PROTOCOLS, UnknownNameError
from harness.store import RunExistsError, RunStore

app = typer.Typer(help="Robustness benchmarking for multimodal learning under missing and corrupted modalities.",
                  no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


class RichProgress:
    """Progress bar over cells with the current cell and its epoch."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.task = progress.add_task("cells", total=0)

    def start(self, total: int, done: int) -> None:
        self.p.update(self.task, total=total, completed=done)

    def cell(self, cell) -> None:
        self.current = f"{cell.dataset} · {cell.method} · seed {cell.seed}"
        self.p.update(self.task, description=self.current)

    def epoch(self, epoch: int, total: int) -> None:
        self.p.update(self.task, description=f"{self.current} · epoch {epoch}/{total}")

    def finished(self, cell, status: str) -> None:
        self.p.advance(self.task)


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
) -> None:
    """Train every method on every dataset for every seed and evaluate under every protocol. Re-running the
    same command on the same --out resumes: finished cells are skipped."""
    from harness import runner

    try:
        cfg = build_run_config(
            config, methods=methods, datasets=datasets, seeds=seeds, protocols=protocols, preset=preset,
            out=str(out) if out else None, device=device, data_dir=str(data_dir) if data_dir else None,
            plugins=tuple(plugin) if plugin else None, method_options=parse_set(set_ or []),
        )
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=False) as bar:
            summary = runner.run(cfg, RichProgress(bar), overwrite=overwrite)
    except (ValueError, UnknownNameError, RunExistsError, FileNotFoundError, ImportError) as exc:
        raise fail(str(exc)) from None
    _print_tables(summary.out, metric)
    console.print(f"Results: {summary.out}  ({len(summary.done)} trained, {len(summary.skipped)} resumed)")
    if summary.failed:
        err.print(f"[bold red]{len(summary.failed)} cell(s) failed:[/]")
        for cell, reason in summary.failed.items():
            err.print(f"  {cell}: {reason}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)


def _print_tables(run_dir: Path, metric: str | None) -> None:
    from reports.tables import pattern_table_md

    builtins.load()
    store = RunStore.read(run_dir)
    records = store.records()
    for dataset in records.dataset.unique():
        task = store.meta["datasets"][dataset]["spec"]["task"]
        name = metric or ("acc2_non0" if task == "regression" else "ua")
        has_patterns = (records[records.dataset == dataset].protocol == "fixed_pattern").any()
        if METRICS.get(name).task != task or not has_patterns:  # the table shows fixed_pattern conditions
            continue
        console.print(pattern_table_md(records, dataset, name), soft_wrap=True, highlight=False, markup=False)
        console.print()


@app.command("list")
def list_(
    kind: Annotated[str, typer.Argument(help="methods, datasets, metrics, protocols or corruptions")],
    validation: Annotated[bool, typer.Option(help="Also list the held-out validation family.")] = False,
    conditions: Annotated[bool, typer.Option(help="List every protocol condition (on synth-mosi, tiny).")] = False,
) -> None:
    """List what is registered."""
    builtins.load()
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
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'mibench run'.")],
    metric: Annotated[str, typer.Option(help="Metric to tabulate.")] = "acc2_non0",
    format: Annotated[str, typer.Option(help="md")] = "md",
) -> None:
    """Print result tables from a run directory (never retrains)."""
    from reports.tables import pattern_table_md

    builtins.load()
    try:
        METRICS.get(metric)
        if format != "md":
            raise ValueError(f"Unknown format {format!r}; valid: md")
        records = RunStore.read(run_dir).records()
        if records.empty:
            raise ValueError(f"{run_dir} holds no records yet")
        datasets = [d for d in records.dataset.unique() if metric in set(records[records.dataset == d].metric)]
        if not datasets:
            raise ValueError(f"No records for metric {metric!r}; available: {sorted(records.metric.unique())}")
        for d in datasets:
            console.print(pattern_table_md(records, d, metric), soft_wrap=True, highlight=False, markup=False)
            console.print()
    except (ValueError, UnknownNameError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Show each cell's status in a run directory."""
    try:
        meta = RunStore.read(run_dir).meta
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    table = Table("cell", "status", "detail", box=None)
    for cell, entry in meta["cells"].items():
        table.add_row(cell, entry["status"], entry.get("error", ""))
    console.print(table)


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """With no command, runs the embedded default: every method on the synthetic datasets (small preset)."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)
