"""Launcher settings: the [launcher.*] table, flags on top, never part of the study's hash;
bad settings are one line and exit 2."""

from __future__ import annotations

import pytest
from conftest import FAST

from rnnsweep.errors import LaunchError
from rnnsweep.launch import ResourceSettings, WorkerArgs, launcher_table
from rnnsweep.launch.slurm import job_script


def test_table_then_flags():
    file = {"launcher": {"slurm": {"partition": "a", "mem": "2G", "sbatch": "--qos=x"}}}
    s = launcher_table(file, "slurm", {"partition": "b", "mem": None, "sbatch": ()})
    assert (s.partition, s.mem, s.sbatch_lines) == ("b", "2G", ("--qos=x",))
    assert launcher_table({}, "ray", {"address": "h:1"}).address == "h:1"
    # the slurm table is checked, but does not leak into the ray settings
    assert launcher_table(file, "ray", {}).partition is None


@pytest.mark.parametrize(
    "file, words",
    [
        ({"launcher": {"slurm": {"partitio": "a"}}}, "unknown key 'partitio'"),
        ({"launcher": {"sge": {}}}, "unknown table [launcher.sge]"),
        ({"launcher": {"slurm": {"cpus_per_worker": "4"}}}, "must be an integer"),
        ({"launcher": {"slurm": {"gpus_per_worker": -1}}}, "must be >= 0"),
        ({"launcher": {"slurm": {"sbatch": ["ok", "a\nb"]}}}, "one non-empty line"),
    ],
)
def test_bad_tables(file, words):
    with pytest.raises(LaunchError) as exc:
        launcher_table(file, "slurm", {})
    assert words in str(exc.value)


def test_sbatch_lines_must_be_options():
    with pytest.raises(LaunchError, match="an option"):
        job_script(1, WorkerArgs("s"), ResourceSettings(sbatch_lines=("rm -rf /",)))
    script = job_script(2, WorkerArgs("s"), ResourceSettings(sbatch_lines=("#SBATCH --qos=x",)))
    assert "#SBATCH --qos=x" in script.splitlines() and "#SBATCH --array=0-1" in script


def test_launcher_table_is_not_hashed(tmp_path, cli, fast_toml):
    """The same study with and without a [launcher.slurm] table: one study, no mismatch."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    common = ("--arch", "rnn", "--depth", "1", "--trials", "1", *FAST[:-1], "--study", "h")
    assert cli("create", str(fast_toml), *common, "--storage", url).code == 0
    with_table = tmp_path / "with.toml"
    with_table.write_text(fast_toml.read_text() + '\n[launcher.slurm]\npartition = "gpu"\n')
    r = cli("run", str(with_table), *common, "-q", "--storage", url)
    assert r.code == 0, r.err
    assert "(resumed)" in r.err


def test_bad_launcher_settings_are_one_line(tmp_path, cli, fast_toml):
    bad = tmp_path / "bad.toml"
    bad.write_text(fast_toml.read_text() + "\n[launcher.slurm]\ngpus = 1\n")
    for args in (
        ("run", str(bad), "--arch", "rnn", "--depth", "1"),
        ("run", "--arch", "rnn", "--launcher", "sge"),
        ("launch", "slurm", "--dry-run"),
        ("launch", "slurm", "--study", "x", "--workers", "0", "--dry-run"),
    ):
        r = cli(*args)
        assert r.code == 2, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1 and r.err.startswith("Error: "), r.err
