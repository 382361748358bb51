"""The shared renderer: every format parses back to the values it was given."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from rich.console import Console

from rnnsweep.errors import SpecError
from rnnsweep.render import FORMATS, Column, render, render_to_string

ROWS = [
    {"arch": "gru", "depth": 1, "feasible": 0.123456789, "loss": 0.5, "note": "ok"},
    {"arch": "lstm", "depth": 2, "feasible": float("nan"), "loss": None, "note": "a|b"},
    {"arch": "vanilla", "depth": 8, "feasible": 1.0, "loss": float("inf"), "extra": "x"},
]
COLUMNS = [
    Column("arch", "Arch"),
    Column("depth", "Depth"),
    Column("feasible", "Feasible", ".3f"),
    Column("loss", "Loss", lambda v: f"{v:.1e}"),
]
ALL_KEYS = ["arch", "depth", "feasible", "loss", "note", "extra"]


def test_formats_constant() -> None:
    assert FORMATS == ("table", "json", "csv", "markdown")


def test_json_round_trips_raw_values_of_all_keys() -> None:
    data = json.loads(render_to_string(ROWS, "json", columns=COLUMNS, title="ignored"))
    assert isinstance(data, list) and len(data) == 3
    assert [list(row) for row in data] == [ALL_KEYS] * 3
    assert data[0]["feasible"] == 0.123456789  # not rounded to the column's .3f
    assert data[0]["depth"] == 1 and data[0]["arch"] == "gru"
    assert data[1]["feasible"] is None  # NaN -> null
    assert data[2]["loss"] is None  # inf -> null
    assert data[1]["loss"] is None
    assert data[0]["extra"] is None and data[2]["extra"] == "x"
    assert data[1]["note"] == "a|b"


def test_json_of_numpy_values() -> None:
    np = pytest.importorskip("numpy")
    rows = [{"a": np.float32(0.5), "b": np.int64(3), "c": np.float64("nan"), "d": np.arange(2)}]
    assert json.loads(render_to_string(rows, "json")) == [
        {"a": 0.5, "b": 3, "c": None, "d": [0, 1]}
    ]


def test_empty_rows() -> None:
    assert json.loads(render_to_string([], "json")) == []
    assert render_to_string([], "csv") == ""
    md = render_to_string([], "markdown", columns=COLUMNS)
    assert md.splitlines() == [
        "| Arch | Depth | Feasible | Loss |",
        "| :--- | :--- | :--- | :--- |",
    ]


def test_csv_round_trips_raw_values_of_all_keys() -> None:
    out = render_to_string(ROWS, "csv", columns=COLUMNS)
    records = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0] == ",".join(ALL_KEYS)
    assert len(records) == 3
    assert float(records[0]["feasible"]) == 0.123456789
    assert int(records[2]["depth"]) == 8
    assert math.isnan(float(records[1]["feasible"]))
    assert math.isinf(float(records[2]["loss"]))
    assert records[1]["loss"] == ""  # None -> empty field
    assert records[1]["note"] == "a|b"
    assert records[0]["extra"] == "" and records[2]["extra"] == "x"


def test_csv_quotes_delimiters() -> None:
    rows = [{"name": 'a,"b"', "n": 1}]
    assert list(csv.DictReader(io.StringIO(render_to_string(rows, "csv")))) == [
        {"name": 'a,"b"', "n": "1"}
    ]


def test_markdown_is_a_pipe_table_of_formatted_columns() -> None:
    out = render_to_string(ROWS, "markdown", columns=COLUMNS, title="Feasible fractions")
    lines = out.splitlines()
    assert lines[0] == "**Feasible fractions**"
    assert lines[1] == ""
    assert lines[2] == "| Arch | Depth | Feasible | Loss |"
    assert lines[3] == "| :--- | ---: | ---: | ---: |"
    assert lines[4] == "| gru | 1 | 0.123 | 5.0e-01 |"
    assert lines[5] == "| lstm | 2 | - | - |"
    assert lines[6] == "| vanilla | 8 | 1.000 | inf |"
    assert len(lines) == 7


def test_markdown_escapes_pipes_and_shows_all_keys_without_columns() -> None:
    lines = render_to_string(ROWS, "markdown").splitlines()
    assert lines[0] == "| " + " | ".join(ALL_KEYS) + " |"
    assert "a\\|b" in lines[3]


def test_table_has_title_and_formatted_numbers() -> None:
    out = render_to_string(ROWS, "table", columns=COLUMNS, title="Feasible fractions")
    assert "Feasible fractions" in out
    for text in ("Arch", "Feasible", "gru", "vanilla", "0.123", "1.000", "5.0e-01"):
        assert text in out
    assert "0.123456789" not in out  # formatted, not raw
    assert "nan" not in out.lower()
    lstm_line = next(line for line in out.splitlines() if "lstm" in line)
    assert lstm_line.count(" - ") == 2  # NaN feasible and None loss both show as "-"
    assert "note" not in out  # only the displayed columns


def test_table_prints_values_literally_not_as_markup() -> None:
    out = render_to_string([{"s": "[bold]x[/bold]"}], "table", title="[red]t[/red]")
    assert "[bold]x[/bold]" in out
    assert "[red]t[/red]" in out


def test_default_float_format() -> None:
    out = render_to_string([{"v": 0.123456789}], "table")
    assert "0.1235" in out


def test_stray_string_in_formatted_column_is_shown() -> None:
    out = render_to_string([{"v": "timeout"}], "markdown", columns=[Column("v", fmt=".3f")])
    assert "| timeout |" in out


def test_render_writes_to_given_console_and_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    render(ROWS, "json", console=Console(file=buffer))
    assert json.loads(buffer.getvalue())[0]["arch"] == "gru"
    render(ROWS, "csv")
    assert capsys.readouterr().out.splitlines()[0] == ",".join(ALL_KEYS)


def test_tabs_survive_in_machine_formats() -> None:
    rows = [{"s": "a\tb"}]
    assert json.loads(render_to_string(rows, "json"))[0]["s"] == "a\tb"
    assert "a\tb" in render_to_string(rows, "csv")


@pytest.mark.parametrize("fmt", ["xml", "TABLE", ""])
def test_unknown_format_raises_spec_error(fmt: str) -> None:
    with pytest.raises(SpecError) as info:
        render_to_string(ROWS, fmt)
    assert str(info.value) == (f"unknown format {fmt!r}; choose one of table, json, csv, markdown")
