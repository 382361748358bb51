"""Docs match the code: every command has help and a README entry; README's TOML parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnnsweep.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_commands_are_the_documented_ones():
    assert {"run", "report", "export", "studies"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_has_help_and_readme_entry(cli, command):
    r = cli(command, "--help")
    assert r.code == 0
    cmd = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == command)
    assert cmd.callback.__doc__ and cmd.callback.__doc__.strip()
    assert f"`rnnsweep {command}" in README, f"README has no entry for rnnsweep {command}"


def test_every_run_flag_is_in_readme(cli):
    r = cli("run", "--help")
    flags = set(re.findall(r"(--[a-z][a-z-]+)", r.out)) - {"--help"}
    missing = sorted(f for f in flags if f not in README)
    assert not missing, f"run flags missing from README: {missing}"


def test_readme_study_file_example_is_valid():
    import tomllib

    from rnnsweep.study import spec_from_dict

    block = re.search(r"```toml\n(.*?)```", README, re.S).group(1)
    spec = spec_from_dict(tomllib.loads(block))
    assert spec.archs == ("gru", "lstm") and spec.depths == (1, 8)


def test_readme_names_both_make_targets():
    assert "make run" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
