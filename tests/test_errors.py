"""Every bad input: one line on stderr naming the problem, exit 2, nothing written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, snapshot

SECRET = "s3cr3t-pw"


def _one_line_error(r, *needles: str) -> None:
    assert r.code == 2, (r.code, r.err)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in r.err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert SECRET not in r.err + r.out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


RUN_CASES = {
    "unknown arch": (["--arch", "lstn"], ["unknown arch 'lstn'", "did you mean 'lstm'"]),
    "unknown task": (["--task", "paren"], ["unknown task 'paren'", "did you mean 'parens'"]),
    "depth 0": (["--depth", "0"], ["depth must be >= 1, got 0"]),
    "negative depth": (["--depth", "1,-2"], ["depth must be >= 1, got -2"]),
    "plusrnn depth 1": (
        ["--arch", "+rnn", "--depth", "1"],
        ["plusrnn needs depth >= 2", "Collins"],
    ),
    "inverted range": (["--lr", "0.1:0.001"], ["lr range is inverted"]),
    "empty choice": (["--optimizer", ","], ["optimizer choices are empty"]),
    "unknown choice": (["--optimizer", "adamw"], ["unknown optimizer 'adamw'"]),
    "log range at zero": (["--init-scale", "0:2"], ["init_scale", "low > 0"]),
    "bad number": (["--lr", "fast"], ["lr low must be a number"]),
    "unknown sampler": (["--sampler", "sobol"], ["unknown sampler 'sobol'"]),
    "bad params": (["--params", "lots"], ["params must be a count"]),
    "tiny budget": (["--params", "10"], ["parameter budget 10 is too small"]),
    "zero trials": (["--trials", "0"], ["trials must be >= 1"]),
    "zero steps": (["--steps", "0"], ["steps must be >= 1"]),
    "no such option": (["--bogus"], ["No such option: --bogus"]),
    "bad pack size": (["--pack-size", "0"], ["--pack-size"]),
    "bad gru reset": (["--gru-reset", "middle"], ["gru_reset"]),
    "bad device": (["--device", "tpu"], ["device must be auto, cpu, cuda or cuda:N"]),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_bad_run_flags(cli, workdir, case):
    args, needles = RUN_CASES[case]
    before = snapshot(workdir)
    r = cli("run", *FAST, *args)
    _one_line_error(r, *needles)
    assert snapshot(workdir) == before
    assert not (workdir / "rnnsweep.db").exists()


TOML_CASES = {
    "malformed": ("name = 'x'\narch = [\n", ["not valid TOML"]),
    "unknown top key": ("archs = ['gru']\n", ["unknown key 'archs'", "did you mean 'arch'"]),
    "unknown train key": (
        "[train]\nstep = 3\n",
        ["unknown key 'step' in [train]", "did you mean 'steps'"],
    ),
    "unknown space key": ("[space]\nlearning_rate = [0.1, 1]\n", ["unknown key 'learning_rate'"]),
    "unknown task option": ("[task_options]\nmax_dept = 3\n", ["max_dept", "max_depth"]),
    "empty arch list": ("arch = []\n", ["no architecture given"]),
    "inverted table range": (
        "[space]\nclip = {low = 5.0, high = 1.0}\n",
        ["clip range is inverted"],
    ),
}


@pytest.mark.parametrize("case", sorted(TOML_CASES))
def test_bad_study_file(cli, workdir, case):
    text, needles = TOML_CASES[case]
    f = workdir / "study.toml"
    f.write_text(text)
    before = snapshot(workdir)
    r = cli("run", str(f), *FAST)
    _one_line_error(r, *needles)
    assert snapshot(workdir) == before


def test_missing_study_file(cli, workdir):
    _one_line_error(cli("run", "nope.toml"), "study file 'nope.toml' does not exist")
    assert list(workdir.iterdir()) == []


def _pg_url(port: int) -> str:
    return f"postgresql://rnn:{SECRET}@127.0.0.1:{port}/rnnsweep"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _storage_cases(tmp: Path) -> dict[str, tuple[str, list[str]]]:
    text = tmp / "notes.txt"
    text.write_text("just some text, not a database\n")
    other = tmp / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    con.commit()
    con.close()
    (tmp / "adir").mkdir()
    unwritable = "/sys/rnnsweep-test.db" if os.geteuid() == 0 else str(tmp / "ro" / "x.db")
    if os.geteuid() != 0:
        (tmp / "ro").mkdir(mode=0o500)
    return {
        "unreachable host": (
            _pg_url(_free_port()),
            ["cannot connect to storage", "postgresql://rnn:***@127.0.0.1"],
        ),
        "unsupported scheme": ("mongodb://localhost/db", ["unsupported storage URL"]),
        "unsupported driver": (
            "postgresql+nosuchdriver://u:x@localhost/db",
            ["unsupported storage URL"],
        ),
        "in-memory sqlite": ("sqlite://", ["give a SQLite file path"]),
        "not a database": (f"sqlite:///{text}", ["is not a SQLite database"]),
        "foreign database": (f"sqlite:///{other}", ["not an rnnsweep/Optuna database", "invoices"]),
        "directory": (f"sqlite:///{tmp / 'adir'}", ["is a directory"]),
        "missing directory": (f"sqlite:///{tmp / 'no' / 'such' / 'x.db'}", ["does not exist"]),
        "unwritable": (f"sqlite:///{unwritable}", ["not writable"]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unreachable host",
        "unsupported scheme",
        "unsupported driver",
        "in-memory sqlite",
        "not a database",
        "foreign database",
        "directory",
        "missing directory",
        "unwritable",
    ],
)
def test_bad_storage_for_run(cli, workdir, case):
    url, needles = _storage_cases(workdir)[case]
    before = snapshot(workdir)
    r = cli("run", "--arch", "gru", "--depth", "1", "--trials", "1", *FAST, "--storage", url)
    _one_line_error(r, *needles)
    assert snapshot(workdir) == before


def test_env_storage_is_used_and_masked(cli, workdir, monkeypatch):
    monkeypatch.setenv("RNNSWEEP_STORAGE", _pg_url(_free_port()))
    r = cli("studies")
    _one_line_error(r, "cannot connect", "***")


@pytest.mark.parametrize("command", ["report", "studies", "export"])
def test_read_commands_never_create_a_database(cli, workdir, command):
    args = [command, "--storage", str(workdir / "missing.db")]
    if command == "export":
        args += ["--out", str(workdir / "out")]
    _one_line_error(cli(*args), "no storage at")
    assert list(workdir.iterdir()) == []


def test_report_unknown_study_and_bad_grouping(cli, workdir, fast_toml):
    url = f"sqlite:///{workdir / 's.db'}"
    assert (
        cli(
            "run",
            str(fast_toml),
            "--arch",
            "rnn",
            "--depth",
            "1",
            "--trials",
            "1",
            *FAST,
            "--storage",
            url,
            "--study",
            "one",
        ).code
        == 0
    )
    before = snapshot(workdir)
    _one_line_error(
        cli("report", "--storage", url, "--study", "two"),
        "no study named 'two'",
        "known studies: one",
    )
    _one_line_error(cli("report", "--storage", url, "--by", "colour"), "cannot group by 'colour'")
    _one_line_error(cli("report", "--storage", url, "--format", "xml"), "--format")
    _one_line_error(cli("export", "--storage", url, "--format", "xlsx", "--out", "o"), "--format")
    assert snapshot(workdir) == before


def test_cli_subprocess_has_no_traceback(tmp_path):
    """The installed entry point, in a real process: one line, exit 2."""
    exe = Path(sys.executable).with_name("rnnsweep")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "rnnsweep"]
    p = subprocess.run(
        [*cmd, "run", "--arch", "nope"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("Error: unknown arch")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("RNNSWEEP_NATIVE", "fast"), ("RNNSWEEP_COMPILE", "yes"), ("RNNSWEEP_GRAPHS", "2")],
)
def test_a_bad_switch_stops_any_command_in_one_line(cli, workdir, monkeypatch, name, value):
    """The implementation switches are input too: a value they do not take is an error,
    not a silent default, and it stops the command before it writes anything."""
    monkeypatch.setenv(name, value)
    before = snapshot(workdir)
    r = cli("run", *FAST)
    _one_line_error(r, f"{name} must be one of", f"got {value!r}")
    assert snapshot(workdir) == before


def test_switch_values_are_read_case_blind(monkeypatch):
    from rnnsweep.switches import switch

    monkeypatch.setenv("RNNSWEEP_NATIVE", " BLAS ")
    assert switch("RNNSWEEP_NATIVE") == "blas"
    monkeypatch.setenv("RNNSWEEP_GRAPHS", "")
    assert switch("RNNSWEEP_GRAPHS") == "0"  # empty: the default
