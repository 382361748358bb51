"""Shared fixtures: run the CLI in-process as a user would, and small fast specs."""

from __future__ import annotations

import os

# Triton's interpreter runs the Triton loop's kernels on the CPU (tests/test_triton.py).
# It must be on before anything imports triton: torch._dynamo does, and triton then
# keeps compiled-mode state that the interpreter cannot run ("Cannot call @triton.jit'd
# outside of the scope of a kernel"). On the CPU nothing else here uses Triton.
os.environ.setdefault("TRITON_INTERPRET", "1")
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from rnnsweep.cli import main


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 15 server for the whole session (see tests/pgserver.py)."""
    import pgserver

    try:
        server = pgserver.start()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI must test against PostgreSQL (.ci/run installs it)")
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database on the session's PostgreSQL server."""
    return pg_server.new_database()


# Small matrices: one thread is fastest and avoids OpenMP thrashing on a shared machine.
torch.set_num_threads(1)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Call ``rnnsweep ARGS`` in-process; returns exit code, stdout and stderr."""
    monkeypatch.delenv("RNNSWEEP_STORAGE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")

    def call(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


# Flags that make a study train in well under a second per trial.
FAST = ["--steps", "12", "--batch-size", "8", "--params", "1k", "-q"]
FAST_TOML = """
[task_options]
seq_len = 8
[train]
eval_every = 6
eval_size = 16
"""


@pytest.fixture
def fast_toml(tmp_path: Path) -> Path:
    p = tmp_path / "fast.toml"
    p.write_text(FAST_TOML)
    return p


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of every file under ``directory``."""
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            st = (Path(root) / f).stat()
            out[str(Path(root) / f)] = (st.st_size, st.st_mtime_ns)
    return out
