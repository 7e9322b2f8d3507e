"""Find a dataset's file: an explicit path, else the conventional names under the search folders.

Search order, first match wins: ``--data-dir`` (``DataOptions.data_dir``), then ``$MIBENCH_DATA``, then the
user cache folder ``$MIBENCH_HOME/data`` (default ``~/.cache/mibench/data``, honouring ``$XDG_CACHE_HOME``).
In each folder the names of :data:`CANDIDATES` are tried in order: mibench's own ``.npz`` first, then the
MMSA release (unaligned, aligned), then the CMU-MultimodalSDK/MulT pickles (aligned, unaligned), then the
IEMOCAP conversation release. The file's *contents* decide how it is read, never its name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

CANDIDATES: dict[str, tuple[str, ...]] = {
    "mosi": ("mosi.npz", "MOSI/Processed/unaligned_50.pkl", "MOSI/Processed/aligned_50.pkl",
             "mosi_data.pkl", "mosi_data_noalign.pkl"),
    "mosei": ("mosei.npz", "MOSEI/Processed/unaligned_50.pkl", "MOSEI/Processed/aligned_50.pkl",
              "mosei_senti_data.pkl", "mosei_senti_data_noalign.pkl"),
    "iemocap": ("iemocap.npz", "iemocap_data.pkl", "iemocap_data_noalign.pkl", "IEMOCAP_features.pkl",
                "IEMOCAP_features_raw.pkl"),
}

SOURCES: dict[str, str] = {
    "mosi": "the MMSA release of CMU-MOSI (thuiar/MMSA: MOSI/Processed/unaligned_50.pkl or aligned_50.pkl) or the "
            "CMU-MultimodalSDK processed pickles distributed with MulT (mosi_data.pkl)",
    "mosei": "the MMSA release of CMU-MOSEI (thuiar/MMSA: MOSEI/Processed/unaligned_50.pkl or aligned_50.pkl) or "
             "the CMU-MultimodalSDK processed pickles distributed with MulT (mosei_senti_data.pkl)",
    "iemocap": "the CMU-MultimodalSDK IEMOCAP pickle distributed with MulT (iemocap_data.pkl) or the DialogueRNN/"
               "MMGCN conversation features (IEMOCAP_features_raw.pkl, IEMOCAP_features.pkl)",
}


def cache_dir() -> Path:
    """``$MIBENCH_HOME/data``; ``$MIBENCH_HOME`` defaults to ``$XDG_CACHE_HOME/mibench`` (``~/.cache/mibench``)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("MIBENCH_HOME") or cache / "mibench") / "data"


def search_dirs(data_dir: Path | None) -> list[tuple[str, Path | None]]:
    """(label, folder) in search order; folder is None where the option or variable is not set."""
    env = os.environ.get("MIBENCH_DATA")
    return [("--data-dir", Path(data_dir).expanduser() if data_dir else None),
            ("$MIBENCH_DATA", Path(env).expanduser() if env else None),
            ("cache", cache_dir())]


def locate(name: str, path: Path | None, data_dir: Path | None) -> Path:
    """The file to read for dataset ``name``: ``path`` itself (a file, or a folder to search), else a search.

    Raises ``FileNotFoundError`` naming every place searched, what to download and how to pass a path.
    """
    names = CANDIDATES.get(name, (f"{name}.npz",))
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        if not path.exists():
            raise FileNotFoundError(f"{name}={path}: no such file")
        dirs = [(f"{name}=", path)]
    else:
        dirs = search_dirs(data_dir)
    for _, folder in dirs:
        for candidate in names:
            if folder is not None and (folder / candidate).is_file():
                log.info("%s: using %s", name, folder / candidate)
                return folder / candidate
    raise FileNotFoundError(_not_found(name, names, dirs))


def _not_found(name: str, names: tuple[str, ...], dirs: list[tuple[str, Path | None]]) -> str:
    where = "; ".join(f"{label} {folder}" if folder else f"{label} (not set)" for label, folder in dirs)
    source = SOURCES.get(name, "a file in mibench's .npz layout (docs/datasets.md)")
    return (f"No data file for {name!r}: looked for {', '.join(names)} in: {where}. "
            f"Download {source}, then pass it with --datasets {name}=/path/to/file (or put it in one of those "
            f"folders, or set MIBENCH_DATA). The corpora cannot be shipped with mibench; see docs/datasets.md.")
