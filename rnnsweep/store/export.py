"""Exports: a tidy trials table and a tidy curves table, as Parquet (or CSV)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from rnnsweep.errors import SpecError
from rnnsweep.store.db import Store

__all__ = ["EXPORT_FORMATS", "export_study", "tidy_trials"]

EXPORT_FORMATS = ("parquet", "csv")


def tidy_trials(df: pd.DataFrame) -> pd.DataFrame:
    """One row per counted trial; ``extra_json`` expanded into columns (e.g. bits_per_param)."""
    out = df.drop(columns=["extra_json"]).copy()
    extras = pd.DataFrame([json.loads(x) for x in df["extra_json"]], index=df.index)
    for col in extras.columns:
        out[col] = extras[col]
    return out


def export_study(store: Store, study: str, out_dir: str | Path, fmt: str = "parquet") -> list[Path]:
    """Write ``trials.<fmt>`` and ``curves.<fmt>`` into ``out_dir``; returns the paths.

    Files are written to a temporary directory beside ``out_dir`` and moved in at
    the end, so a failure leaves nothing half-written.
    """
    if fmt not in EXPORT_FORMATS:
        raise SpecError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {str(out)!r} exists and is not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise SpecError(f"--out parent directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise SpecError(f"--out {str(out)!r} is not writable")
    store.study_spec(study)  # raises StudyNotFoundError
    trials = tidy_trials(store.trials_frame(study))
    curves = store.curves_frame(study)
    tmp = Path(tempfile.mkdtemp(prefix=".rnnsweep-export-", dir=parent))
    try:
        names = []
        for name, frame in (("trials", trials), ("curves", curves)):
            path = tmp / f"{name}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            names.append(path.name)
        out.mkdir(exist_ok=True)
        final = []
        for n in names:
            shutil.move(str(tmp / n), str(out / n))
            final.append(out / n)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
