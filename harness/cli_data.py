"""``mibench data info`` and ``mibench data convert``: inspect a dataset file, turn it into mibench's .npz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import builtins
from harness.data import DataOptions
from harness.registry import DATASETS, UnknownNameError

data_app = typer.Typer(help="Inspect dataset files and convert them to mibench's .npz layout.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
ERRORS = (ValueError, FileNotFoundError, UnknownNameError, ImportError)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _options(path: str | None, data_dir: Path | None, iemocap_classes: str, nan_value: float,
             trust_pickle: bool = False, load_limit: str | None = None) -> DataOptions:
    from harness.datasets.limits import parse_size

    return DataOptions(path=Path(path).expanduser() if path else None, data_dir=data_dir,
                       iemocap_classes=iemocap_classes, nan_value=nan_value, trust_pickle=trust_pickle,
                       load_limit=parse_size(load_limit) if load_limit else None)


DataDir = Annotated[Path | None, typer.Option(help="Folder searched for the dataset's conventional file names.",
                                              metavar="DIR", show_default=False)]
Classes = Annotated[str, typer.Option(help="IEMOCAP label view: 4, 6 or binary:<neutral|happy|sad|angry>.",
                                      metavar="VIEW")]
NanValue = Annotated[float, typer.Option(help="Value that replaces NaN and +-inf features.", metavar="X")]
LoadLimit = Annotated[str | None, typer.Option(
    help="Memory the file may make the loader allocate, e.g. 64G (default: relative to its size).", metavar="SIZE",
    show_default=False)]


@data_app.command()
def info(
    dataset: Annotated[str, typer.Argument(help="NAME or NAME=PATH, e.g. mosi=~/data/MOSI/Processed/aligned_50.pkl",
                                           metavar="DATASET")],
    data_dir: DataDir = None,
    iemocap_classes: Classes = "4",
    nan_value: NanValue = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.", metavar="")] = False,
    load_limit: LoadLimit = None,
) -> None:
    """Detected format, split sizes, dims and lengths, label statistics, NaN/inf replaced."""
    from harness.datasets.summary import describe

    name, _, path = dataset.partition("=")
    try:
        builtins.load()
        summary = describe(DATASETS.get(name)(_options(path, data_dir, iemocap_classes, nan_value,
                                                        load_limit=load_limit)))
    except ERRORS as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    console.print(f"[bold]{s['name']}[/]  format: {s['format']}  task: {s['task']}", highlight=False)
    console.print(f"file: {escape(str(s['file']))}", highlight=False, soft_wrap=True)
    table = Table("split", "n", "modality", "dim", "steps", "length min/mean/max", "present", box=None)
    for split, info in s["splits"].items():
        for k, (m, st) in enumerate(info["modalities"].items()):
            table.add_row(split if k == 0 else "", str(info["n"]) if k == 0 else "", m, str(st["dim"]),
                          str(st["steps"]), f"{st['length_min']}/{st['length_mean']:.1f}/{st['length_max']}",
                          f"{st['present_share']:.0%}")
    console.print(table)
    labels = Table("split", "labels", box=None)
    for split, info in s["splits"].items():
        lab = info["labels"]
        text = (", ".join(f"{c}: {n}" for c, n in lab["counts"].items()) if "counts" in lab else
                f"range [{lab['min']:.3g}, {lab['max']:.3g}], mean {lab['mean']:.3f}, "
                f"exact zeros {lab['zero_share']:.1%}")
        labels.add_row(split, text)
    console.print(labels)
    nf = s["nonfinite_replaced"]
    detail = "; ".join(f"{k}: " + ", ".join(f"{kind} {n}" for kind, n in c.items() if n)
                       for k, c in nf["counts"].items())
    console.print(f"NaN/inf values replaced with {nf['value']}: {nf['total']}" + (f" ({detail})" if detail else ""),
                  highlight=False)
    for key, title in (("padding_zeroed_steps", "non-zero padded steps zeroed"),
                       ("empty_sequences", "empty sequences (kept as one zero step)"),
                       ("absent_features_zeroed", "non-zero steps of absent modalities zeroed")):
        if s[key]:
            console.print(f"{title}: " + ", ".join(f"{k} {n}" for k, n in s[key].items()), highlight=False)
    if s["left_padding_moved"]:
        console.print("left padding moved to the right: " + ", ".join(s["left_padding_moved"]), highlight=False)
    for key, value in s["notes"].items():
        console.print(f"{key}: {escape(json.dumps(value))}", highlight=False, soft_wrap=True)


@data_app.command()
def convert(
    src: Annotated[str, typer.Argument(help="A supported file, or NAME=FILE.", metavar="SRC")],
    dst: Annotated[Path, typer.Argument(help="Output file, ending in .npz.", metavar="DST")],
    dataset: Annotated[str | None, typer.Option(help="mosi, mosei or iemocap (needed for sentiment files).",
                                                metavar="NAME", show_default=False)] = None,
    iemocap_classes: Classes = "4",
    nan_value: NanValue = 0.0,
    trust_pickle: Annotated[bool, typer.Option(help="Unpickle without restrictions (only for files you trust).",
                                               metavar="")
                            ] = False,
    force: Annotated[bool, typer.Option(help="Overwrite DST if it exists.", metavar="")] = False,
    load_limit: LoadLimit = None,
) -> None:
    """Convert any supported file to mibench's .npz layout (identical tensors, no pickle inside)."""
    from harness.datasets.real import convert as convert_file

    try:
        builtins.load()
    except ImportError as exc:
        raise _fail(str(exc)) from None
    prefix, sep, rest = src.partition("=")
    named = bool(sep) and prefix in DATASETS  # NAME=FILE; otherwise SRC is the file itself
    path = rest if named else src
    name = dataset or (prefix if named else None)
    try:
        if name is not None and name not in ("mosi", "mosei", "iemocap"):
            raise ValueError(f"--dataset must be mosi, mosei or iemocap, got {name!r}")
        if dst.suffix != ".npz":
            raise ValueError(f"{dst}: the output file name must end in .npz")
        if dst.exists() and not force:
            raise ValueError(f"{dst}: exists; pass --force to overwrite it")
        options = _options(None, None, iemocap_classes, nan_value, trust_pickle, load_limit)
        data = convert_file(Path(path).expanduser(), dst, name, options)
    except ERRORS as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{exc.filename or src}: {exc.strerror or exc}") from None
    sizes = ", ".join(f"{s} {len(data.split(s))}" for s in ("train", "valid", "test"))
    console.print(f"Wrote {escape(str(dst))}: {data.spec.name} ({data.provenance['format']} layout), {sizes}",
                  highlight=False, soft_wrap=True)
