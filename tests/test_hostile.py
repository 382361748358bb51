"""Hostile but realistic input (issue 13): never take over, never half-write, one line.

In-process through the ``cli`` fixture; the cases that need other processes, other
users or a full disk are in test_hostile_processes.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import optuna
import pytest
from conftest import FAST, snapshot


def one_line_error(r, *needles: str, code: int = 2) -> str:
    assert r.code == code, (r.code, r.err)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("Error: "), r.err
    assert "Traceback" not in r.err and "internal error" not in r.err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def digest(path: Path) -> tuple[str, list[str]]:
    """The file's bytes hash and the names of every file beside it."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(os.listdir(path.parent))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _optuna_db(path: Path, name: str, n_trials: int) -> None:
    """A database another tool made with Optuna: one study, some finished trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(study_name=name, storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials)
    storage.engine.dispose()


# ---- never touch what is not rnnsweep's -------------------------------------------------


def test_foreign_optuna_study_is_not_taken_over(cli, workdir):
    db = workdir / "that.db"
    _optuna_db(db, "mine.rnn.d1", 2)
    before = digest(db)
    r = cli("run", "--arch", "rnn", "--study", "mine", "--storage", str(db), *FAST)
    line = one_line_error(r, "'mine.rnn.d1'", "another tool", "wrote nothing")
    assert "--study" in line
    assert digest(db) == before  # not one byte, not even the journal mode
    study = optuna.load_study(study_name="mine.rnn.d1", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
    # create refuses the same way; another name for the rnnsweep study works beside it.
    one_line_error(cli("create", "--arch", "rnn", "--study", "mine", "--storage", str(db)))
    ok = cli("create", "--arch", "rnn", "--study", "ours", "--trials", "2", "--storage", str(db))
    assert ok.code == 0, ok.err


def test_another_rnnsweep_studys_cell_is_not_taken_over(cli, workdir):
    """An Optuna study made by rnnsweep study A is not B's, even under B's cell name."""
    db = workdir / "s.db"
    assert cli("create", "--arch", "rnn", "--study", "a", "--storage", str(db)).code == 0
    con = sqlite3.connect(db)
    con.execute("UPDATE studies SET study_name = 'b.rnn.d1' WHERE study_name = 'a.rnn.d1'")
    con.commit()
    con.close()
    r = cli("create", "--arch", "rnn", "--study", "b", "--storage", str(db))
    one_line_error(r, "'b.rnn.d1'", "rnnsweep study 'a'")


@pytest.mark.parametrize("revision,age", [("v3.0.0.d", "older than"), ("v9.9.9.z", "unknown to")])
def test_optuna_schema_of_another_version_is_refused_before_writing(cli, workdir, revision, age):
    db = workdir / "old.db"
    _optuna_db(db, "someone", 1)
    from alembic.script import ScriptDirectory

    here = Path(optuna.storages.__file__).parent / "_rdb" / "alembic"
    assert revision != ScriptDirectory(str(here)).get_current_head()
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    con.commit()
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    before = digest(db)
    r = cli("run", "--arch", "rnn", "--study", "new", "--storage", str(db), *FAST)
    one_line_error(r, revision, age, "wrote nothing")
    assert digest(db) == before  # no study row, no rnnsweep tables


# ---- validate everything before the first write ------------------------------------------

HUGE = {
    "trials flag": ([], ["--trials", "99999999999"], "trials must be <= 100,000"),
    "trials file": (
        "trials = 99999999999999999999\n",
        [],
        "trials must be <= 100,000",
    ),
    "grid": ("sampler = 'grid'\n[space]\ngrid_points = 100000\n", [], "grid_points must be <="),
    "grid product": (
        "sampler = 'grid'\n[space]\ngrid_points = 1000\n",
        [],
        "points, over the limit of 100,000",
    ),
    "study size": ("trials = 100000\n", ["--arch", "rnn,gru,lstm"], "over the limit of 250,000"),
    "params file": ("[model]\nparams = 1e300\n", [], "params must be <= 100,000,000"),
    "hidden": ("[model]\nhidden = 1000000000000\n", [], "hidden must be <="),
    "wide": ("[model]\nhidden = 60000\n", [], "parameters per trial"),
    "steps": ([], ["--steps", "1" + "0" * 30], "steps must be <="),
    "eval size": ("[train]\neval_size = 1" + "0" * 30 + "\n", [], "eval-size must be <="),
    "depth": ([], ["--depth", "100000"], "depth must be <= 64"),
    "seq_len": ("[task_options]\nseq_len = 1" + "0" * 25 + "\n", [], "task_options.seq_len"),
    "seed": ("seed = 1" + "0" * 40 + "\n", [], "seed must be <="),
}


@pytest.mark.parametrize("case", sorted(HUGE))
@pytest.mark.parametrize("command", ["run", "create"])
def test_huge_counts_are_refused_before_anything_is_written(cli, workdir, case, command):
    toml, flags, needle = HUGE[case]
    args = ["--steps", "12", "--batch-size", "8", *flags]  # no --params: files set it
    if toml:
        (workdir / "s.toml").write_text(toml)
        args = ["s.toml", *args]
    before = snapshot(workdir)
    r = cli(command, *args)
    one_line_error(r, needle)
    assert snapshot(workdir) == before


WRONG_TYPES = {
    "model string": ('model = "big"\n', "model must be a table"),
    "train array": ("train = [1, 2]\n", "train must be a table"),
    "space string": ('space = "wide"\n', "space must be a table"),
    "task_options number": ("task_options = 3\n", "task_options must be a table"),
    "task option table": ("[task_options]\nseq_len = {a = 1}\n", "task_options.seq_len"),
    "float too large": ("[space]\nlr = 1" + "0" * 400 + "\n", "too large for a number"),
    "int too large for float": ("[train]\nmomentum = 1" + "0" * 400 + "\n", "too large"),
    "inf": ("[train]\ndivergence_factor = inf\n", "must be finite"),
    "nan range": ("[space]\nclip = [nan, 1.0]\n", "must be finite"),
    "log not a bool": ("[space.lr]\nlow = 0.1\nhigh = 1.0\nlog = 'no'\n", "true or false"),
    "hidden bool": ("[model]\nhidden = false\n", "hidden must be an integer"),
    "trials float": ("trials = 2.5\n", "trials must be an integer"),
    "task option nan": ("[task_options]\np_noise = nan\n", "task_options.p_noise"),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_wrong_typed_values_give_one_line(cli, workdir, case):
    toml, needle = WRONG_TYPES[case]
    (workdir / "s.toml").write_text(toml)
    before = snapshot(workdir)
    one_line_error(cli("run", "s.toml", "-q"), needle)  # flags would replace [model]/[train]
    assert snapshot(workdir) == before


FLAGS = {
    "theory T": (["theory", "--T", "-5"], "--T"),
    "theory overflow": (["theory", "--sigma-w", "1e300"], "--sigma-w"),
    "theory nan mu_b": (["theory", "--arch", "minimalrnn", "--mu-b", "nan"], "--mu-b"),
    "heartbeat nan": (["run", *FAST, "--heartbeat", "nan"], "--heartbeat"),
    "heartbeat inf": (["run", *FAST, "--heartbeat", "inf"], "--heartbeat"),
    "grace below heartbeat": (
        ["worker", "--study", "x", "--grace", "0.01", "--heartbeat", "5"],
        "--grace",
    ),
    "pg port": (["studies", "--storage", "postgresql://u:p@localhost:abc/db"], "unsupported"),
    "sqlite user": (["studies", "--storage", "sqlite://user:pw@host/x.db"], "no user or host"),
}


@pytest.mark.parametrize("case", sorted(FLAGS))
def test_bad_flags_give_one_line(cli, workdir, case):
    args, needle = FLAGS[case]
    before = snapshot(workdir)
    one_line_error(cli(*args), needle)
    assert snapshot(workdir) == before


# ---- storage files -----------------------------------------------------------------------


@pytest.fixture
def alarm():
    """Fail, rather than hang, when a command blocks (a FIFO opened for reading)."""

    def ring(*_):
        raise TimeoutError("the command blocked")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("command", ["run", "report", "studies", "create"])
def test_fifo_or_device_as_storage_is_refused_at_once(cli, workdir, alarm, command):
    os.mkfifo(workdir / "pipe.db")
    args = [command] + ([*FAST] if command == "run" else [])
    one_line_error(cli(*args, "--storage", "pipe.db"), "FIFO", "not a database file")
    one_line_error(cli(*args, "--storage", "/dev/null"), "character device")


def test_not_a_database_and_damaged_files_are_named_so_and_left_alone(cli, workdir):
    (workdir / "text.db").write_text("hello, not a database\n" * 10)
    one_line_error(cli("report", "--storage", "text.db"), "is not a SQLite database")
    # A SQLite header over garbage (a damaged file): no -wal/-shm appear beside it.
    (workdir / "bad.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64)
    for command in (["report"], ["studies"], ["run", *FAST]):
        before = snapshot(workdir)
        r = cli(*command, "--storage", "bad.db")
        one_line_error(r, "bad.db")
        assert snapshot(workdir) == before, command


def test_read_only_commands_leave_no_side_files(cli, workdir):
    assert cli("run", "--arch", "rnn", "--trials", "2", *FAST).code == 0
    db = workdir / "rnnsweep.db"
    before = digest(db)
    assert before[1] == ["rnnsweep.db"]
    for args in (["report"], ["studies"], ["export", "--out", "x", "-f", "csv"]):
        r = cli(*args)
        assert r.code == 0, r.err
        assert digest(db)[0] == before[0], args
        assert not [p for p in os.listdir(workdir) if p.startswith("rnnsweep.db-")], args
    # ... also beside a writer that holds the database open (WAL mode): they join it.
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("UPDATE rnnsweep_studies SET task = task")
    writer.commit()
    sides = sorted(p for p in os.listdir(workdir) if p.startswith("rnnsweep.db-"))
    assert cli("report").code == 0
    assert sorted(p for p in os.listdir(workdir) if p.startswith("rnnsweep.db-")) == sides
    writer.close()
    assert cli("run", "--arch", "rnn", "--trials", "3", *FAST).code == 0


# ---- plots ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["theory", "--grid", "--plot", "."],
        ["theory", "--grid", "--plot", "/proc/phase.png"],
        ["report", "--plot", "/proc/plots"],
        ["report", "--plot", "/proc/self"],
    ],
    ids=["theory-dir", "theory-unwritable", "report-unwritable", "report-unwritable-dir"],
)
def test_unwritable_plot_paths_give_one_line(cli, workdir, args):
    if args[0] == "report":
        assert cli("run", "--arch", "rnn", "--trials", "1", *FAST).code == 0
    before = snapshot(workdir)
    one_line_error(cli(*args), "--plot")
    assert snapshot(workdir) == before


def test_export_and_worker_errors_are_one_line(cli, workdir):
    assert cli("run", "--arch", "rnn", "--trials", "1", *FAST).code == 0
    (workdir / "afile").write_text("x")
    one_line_error(cli("export", "--out", "afile"), "not a directory")
    one_line_error(cli("worker", "--study", "nope", "-q"), "no study named 'nope'")
    one_line_error(cli("worker", "--study", "nope"), "no study named 'nope'")


def test_counts_are_reread_from_the_store(cli, workdir):
    """The final line counts what the store holds, not this process's own arithmetic."""
    assert cli("run", "--arch", "rnn", "--trials", "2", *FAST).code == 0
    r = cli("run", "--arch", "rnn", "--trials", "2", *FAST)
    assert "2/2 complete" in r.err, r.err
    payload = json.loads(cli("studies", "-f", "json").out)
    assert payload[0]["complete"] == 2
