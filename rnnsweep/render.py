"""The one renderer for every command's output: table | json | csv | markdown.

Every command builds a list of row mappings and hands it here with the format the user
chose, so ``--format`` means the same thing everywhere (sqlite-utils ``output_options``,
Optuna ``_format_output``).

The formats split in two kinds:

- **machine formats** (``json``, ``csv``) carry the *raw* values of *all* row keys, so
  nothing is lost to rounding or to the choice of displayed columns. JSON writes NaN and
  ±inf as ``null`` (strict JSON has no spelling for them); CSV writes ``None`` as an empty
  field and floats with ``repr`` precision.
- **human formats** (``table``, ``markdown``) show only the displayed columns, each value
  passed through its :class:`Column`'s format; ``None`` and NaN show as ``-``.

Example::

    render(rows, "table", columns=[Column("arch", "Arch"), Column("frac", "Feasible", ".3f")])
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rnnsweep.errors import SpecError

__all__ = ["FORMATS", "MISSING", "Column", "render", "render_to_string"]

FORMATS: tuple[str, ...] = ("table", "json", "csv", "markdown")
"""The output formats every command accepts, in the order help texts list them."""

MISSING = "-"
"""How ``table`` and ``markdown`` show a missing value (``None`` or NaN)."""

Justify = Literal["left", "center", "right"]


@dataclass(frozen=True)
class Column:
    """One displayed column of a ``table`` or ``markdown`` rendering.

    ``json`` and ``csv`` ignore the formatting here and write raw values of all keys.
    """

    # Key of the value in each row mapping.
    key: str
    # Column heading; ``None`` means use ``key``.
    header: str | None = None
    # A format spec for ``format(value, fmt)`` such as ``".3f"`` or ``".1%"``, or a
    # callable ``value -> str``. ``None``: floats as ``.4g``, everything else ``str``.
    # Never called on a missing value, which always shows as ``-``.
    fmt: str | Callable[[Any], str] | None = None
    # Cell alignment; ``None`` means right for numeric columns, left otherwise.
    justify: Justify | None = None

    @property
    def label(self) -> str:
        """The heading shown for this column."""
        return self.key if self.header is None else self.header

    def format(self, value: Any) -> str:
        """Format one cell value for a human format."""
        if _is_missing(value):
            return MISSING
        if callable(self.fmt):
            return self.fmt(value)
        if self.fmt is not None:
            try:
                return format(value, self.fmt)
            except (TypeError, ValueError):
                # A stray non-numeric value in a numeric column (say "timeout" where a
                # loss is expected) should show, not crash the whole report.
                return str(value)
        if isinstance(value, float):
            return format(value, ".4g")
        return str(value)


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    columns: Sequence[Column] | None = None,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Write ``rows`` in format ``fmt`` to ``console`` (a fresh stdout console by default).

    ``columns`` chooses, orders and formats what ``table`` and ``markdown`` show; when it
    is ``None`` every key is shown, in first-seen order. ``title`` heads a ``table`` and
    is a bold line above a ``markdown`` table; the machine formats omit it so their
    output stays parseable. Raises :class:`~rnnsweep.errors.SpecError` for an unknown
    ``fmt``.
    """
    _check_format(fmt)
    if console is None:
        # Piped or redirected output has no terminal width to fit; Rich would assume
        # 80 columns and truncate cells, so give it room (a terminal keeps its width).
        probe = Console()
        console = probe if probe.is_terminal else Console(width=160)
    if fmt == "table":
        console.print(_table(rows, _columns(rows, columns), title))
        return
    text = _machine_or_markdown(rows, fmt, columns, title)
    # Bypass Console.print for text formats: Rich would expand tabs and strip control
    # characters inside values, corrupting CSV/JSON that a script is meant to read.
    # Doubt: inside an open ``with console:`` buffer this write can overtake buffered output.
    console.file.write(text)
    console.file.flush()


def render_to_string(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    columns: Sequence[Column] | None = None,
    title: str | None = None,
    width: int = 120,
) -> str:
    """Return what :func:`render` would write, without colour, at terminal ``width``."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    render(rows, fmt, columns=columns, title=title, console=console)
    return buffer.getvalue()


# -- helpers -------------------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise SpecError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _is_missing(value: Any) -> bool:
    """``None`` or a NaN float (including NumPy floats, which register as ``Real``)."""
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return math.isnan(float(value))
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Union of all rows' keys in first-seen order (rows need not share one schema)."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column] | None) -> list[Column]:
    return list(columns) if columns is not None else [Column(key) for key in _keys(rows)]


def _justify(column: Column, rows: Sequence[Mapping[str, Any]]) -> Justify:
    if column.justify is not None:
        return column.justify
    values = [row.get(column.key) for row in rows]
    present = [v for v in values if not _is_missing(v)]
    return "right" if present and all(_is_number(v) for v in present) else "left"


def _table(rows: Sequence[Mapping[str, Any]], columns: list[Column], title: str | None) -> Table:
    # Text(...) everywhere: values are data, never Rich markup ("[x]" must print as is).
    table = Table(title=Text(title) if title else None)
    for column in columns:
        table.add_column(Text(column.label), justify=_justify(column, rows))
    for row in rows:
        table.add_row(*(Text(column.format(row.get(column.key))) for column in columns))
    return table


def _machine_or_markdown(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    columns: Sequence[Column] | None,
    title: str | None,
) -> str:
    if fmt == "json":
        return _json(rows)
    if fmt == "csv":
        return _csv(rows)
    return _markdown(rows, _columns(rows, columns), title)


def _jsonable(value: Any) -> Any:
    """A strict-JSON version of ``value``: NaN/inf -> None, NumPy/torch scalars unwrapped."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if hasattr(value, "tolist"):  # NumPy arrays/scalars, torch tensors
        return _jsonable(value.tolist())
    return str(value)


def _json(rows: Sequence[Mapping[str, Any]]) -> str:
    keys = _keys(rows)
    records = [{key: _jsonable(row.get(key)) for key in keys} for row in rows]
    # allow_nan=False: a NaN that slipped past _jsonable must fail loudly, not emit "NaN".
    return json.dumps(records, indent=2, allow_nan=False) + "\n"


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(_jsonable(value))
    return value


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    keys = _keys(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if keys:
        writer.writerow(keys)
    for row in rows:
        writer.writerow([_csv_value(row.get(key)) for key in keys])
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    # A pipe would end the cell and a newline the row (GitHub Flavored Markdown, tables).
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


_MD_RULE: dict[str, str] = {"left": ":---", "center": ":---:", "right": "---:"}


def _markdown(rows: Sequence[Mapping[str, Any]], columns: list[Column], title: str | None) -> str:
    lines: list[str] = []
    if title:
        lines += [f"**{_md_cell(title)}**", ""]
    if columns:
        lines.append("| " + " | ".join(_md_cell(c.label) for c in columns) + " |")
        lines.append("| " + " | ".join(_MD_RULE[_justify(c, rows)] for c in columns) + " |")
        for row in rows:
            cells = (_md_cell(c.format(row.get(c.key))) for c in columns)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if lines else ""
