"""The store: Optuna's RDB storage plus rnnsweep's result tables, in one database."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

from rnnsweep import __version__
from rnnsweep.errors import SpecMismatchError, StorageError, StudyNotFoundError
from rnnsweep.store.failures import environment_failure, innermost_reason, retry_race
from rnnsweep.store.guard import check_optuna_schema, check_ownership
from rnnsweep.store.queue import held_by
from rnnsweep.store.sqlite import ro_connect
from rnnsweep.store.tables import ADDED, curves, metadata, slots, studies, trials
from rnnsweep.store.url import check_storage, mask_url, scrub, sqlite_file

if TYPE_CHECKING:
    import optuna
    import pandas as pd  # imported where a frame is built: a quarter second of every `run`

__all__ = ["Store", "diff_keys", "finite_or_none"]


def finite_or_none(x: float | None) -> float | None:
    """NaN means "no value" in the tables; infinities are kept."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(x)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def diff_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two nested specs."""
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def _sqlite_pragmas(dbapi_con, _record) -> None:
    # WAL lets readers (report, dashboard) run beside a writer; the busy timeout
    # makes concurrent writers wait instead of failing with "database is locked".
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    # In WAL mode NORMAL syncs at checkpoints, not every commit: a power cut may
    # lose the last commits but never corrupts the file (SQLite docs, "WAL").
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Store:
    """One database holding Optuna's tables and rnnsweep's result tables.

    ``create=False`` (worker, report, export, studies) never creates anything;
    with ``readonly=True`` as well (report, export, studies) it never writes, and a
    SQLite file is opened read-only with no ``-wal``/``-shm`` side files (see
    :mod:`rnnsweep.store.sqlite`). ``create=True`` (run, create) creates the tables,
    but only at the first write (:meth:`register_study`), after the checks of
    :meth:`check_before_write` have passed.
    """

    def __init__(self, url: str, *, create: bool, readonly: bool = False) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.create = create
        self.readonly = readonly and not create
        self.existed = check_storage(url, create=create)
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["connect_args"] = {"connect_timeout": 10}
            kwargs["pool_pre_ping"] = True
        self._engine_kwargs = kwargs
        self._path = sqlite_file(url) if self.is_sqlite else None
        # Checks read through `reader`: for SQLite a read-only, side-file free engine,
        # so that refusing a database changes nothing in it (not even its journal mode).
        self.reader: sa.Engine | None = None
        if self.is_sqlite and (self.readonly or self.existed):
            self.reader = sa.create_engine(
                "sqlite://",
                creator=functools.partial(ro_connect, self._path),
                poolclass=sa.pool.NullPool,
            )
        if self.is_sqlite and self.readonly:
            self.engine = self.reader
        else:
            self.engine = sa.create_engine(url, **kwargs)
            if self.is_sqlite and create:
                event.listen(self.engine, "connect", _sqlite_pragmas)
            if not self.is_sqlite:
                self.reader = self.engine
        self._tables_ready = False
        self._check_schema()

    def _retrying(self, what: str, fn):
        """``fn()`` through :func:`~rnnsweep.store.failures.retry_race` (another process
        creating the same database is waited for); any other failure becomes one line:
        an EnvironmentFailure (disk full...) or a StorageError."""
        try:
            return retry_race(fn)
        except Exception as exc:  # noqa: BLE001 - sorted below; anything else re-raised
            failure = environment_failure(exc, repr(self.masked_url))
            if failure is not None:
                raise failure from None
            if not _from_database(exc):
                raise
            reason = scrub(innermost_reason(exc), self.url)
            raise StorageError(f"cannot {what} in {self.masked_url!r}: {reason}") from None

    def _ensure_tables(self) -> None:
        if self._tables_ready:
            return
        if not self.create:
            raise StorageError(f"storage {self.masked_url!r} was opened without create")
        self._retrying("create tables", lambda: metadata.create_all(self.engine))
        for name, columns in self._absent.items():
            table = metadata.tables[name]
            self._retrying("add columns", lambda t=table, c=columns: self._add_columns(t, c))
        self._absent = {}
        self._tables_ready = True

    def check_before_write(
        self,
        study: str,
        cells: Mapping[str, tuple[str, int]],
        schema: tuple[list[str], str],
    ) -> None:
        """Everything that must hold before ``study`` writes a row, read only.

        The Optuna schema is the installed Optuna's (``schema``: its revisions, oldest
        first, and its release), and every Optuna study in ``cells`` (name -> (arch,
        depth)) that already exists is this study's. Raises ForeignStudyError (one
        line, nothing written) otherwise.
        """
        if self.reader is None:  # a SQLite file that does not exist yet
            return
        where = f"storage {self.masked_url!r}"
        try:
            with self.reader.connect() as con:
                check_optuna_schema(con, where, *schema)
                registered = False
                if sa.inspect(con).has_table(studies.name):
                    registered = (
                        con.execute(sa.select(studies.c.id).where(studies.c.name == study)).first()
                        is not None
                    )
                check_ownership(con, study, registered, cells, where)
        except sa.exc.SQLAlchemyError as exc:
            reason = scrub(innermost_reason(exc), self.url)
            raise StorageError(f"cannot read {where}: {reason}") from None

    def _check_schema(self) -> None:
        """Refuse rnnsweep tables written by another schema (a clear line, not a SQL error).

        Columns added since (``tables.ADDED``, all nullable) may be missing: the first write
        adds them (:meth:`_ensure_tables`), a reader selects around them
        (:meth:`_trial_columns`).
        """
        self._absent: dict[str, list[str]] = {}
        if self.reader is None:
            return
        try:
            insp = sa.inspect(self.reader)
            for table in (studies, trials, curves):
                if not insp.has_table(table.name):
                    continue
                have = {c["name"] for c in insp.get_columns(table.name)}
                added = set(ADDED.get(table.name, ()))
                missing = sorted({c.name for c in table.columns} - have - added)
                if missing:
                    raise StorageError(
                        f"storage {self.masked_url!r} holds rnnsweep tables from another "
                        f"version ({table.name} lacks {', '.join(missing)}); use a new storage"
                    )
                if added - have:
                    self._absent[table.name] = sorted(added - have)
        except sa.exc.SQLAlchemyError as exc:
            reason = scrub(innermost_reason(exc), self.url)
            raise StorageError(f"cannot read storage {self.masked_url!r}: {reason}") from None

    def _add_columns(self, table: sa.Table, names: list[str]) -> None:
        """Add nullable columns of ``tables.ADDED`` to an older table (one transaction;
        a concurrent writer that added them first is fine)."""
        with self.engine.begin() as con:
            for name in names:
                col = table.c[name]
                ddl = f"ALTER TABLE {table.name} ADD COLUMN {name} "
                ddl += col.type.compile(dialect=self.engine.dialect)
                try:
                    with con.begin_nested():
                        con.execute(sa.text(ddl))
                except sa.exc.SQLAlchemyError:
                    have = {c["name"] for c in sa.inspect(con).get_columns(table.name)}
                    if name not in have:
                        raise

    def _trial_columns(self) -> list[sa.Column]:
        """The trial table's columns this database has (older ones lack ``tables.ADDED``)."""
        absent = set(self._absent.get(trials.name, ()))
        return [c for c in trials.columns if c.name not in absent]

    # ---- Optuna ------------------------------------------------------------------

    @cached_property
    def optuna_storage(self) -> optuna.storages.RDBStorage:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.create:  # every study-level check passed before the first write
            self._ensure_tables()

        def connect() -> optuna.storages.RDBStorage:
            # Optuna creates its tables and version rows here: the first use of a new
            # database, which concurrent runs race for (see _retrying).
            storage = optuna.storages.RDBStorage(
                self.url,
                engine_kwargs=dict(self._engine_kwargs),
                skip_table_creation=not self.create,
            )
            if self.is_sqlite and self.create:
                event.listen(storage.engine, "connect", _sqlite_pragmas)
            return storage

        return self._retrying("set up Optuna's tables", connect)

    # ---- studies -------------------------------------------------------------------

    def _has_tables(self) -> bool:
        names = set(sa.inspect(self.engine).get_table_names())
        return {"rnnsweep_studies", "rnnsweep_trials", "rnnsweep_curves"} <= names

    def register_study(
        self, spec_json: Mapping[str, Any], identity: Mapping[str, Any], spec_hash: str
    ) -> bool:
        """Record a new study, or check a resumed one; returns True when it already existed.

        Raises SpecMismatchError naming the differing keys when the stored spec
        differs in anything but the name, trial budget and device.
        """
        self._ensure_tables()
        return self._retrying(
            "register the study", lambda: self._register(spec_json, identity, spec_hash)
        )

    def _register(
        self, spec_json: Mapping[str, Any], identity: Mapping[str, Any], spec_hash: str
    ) -> bool:
        now = dt.datetime.now(dt.UTC)
        name = spec_json["name"]
        with self.engine.begin() as con:
            row = con.execute(sa.select(studies).where(studies.c.name == name)).mappings().first()
            if row is None:
                con.execute(
                    studies.insert().values(
                        name=name,
                        task=spec_json["task"],
                        sampler=spec_json["sampler"],
                        trials_per_cell=spec_json["trials"],
                        spec_hash=spec_hash,
                        spec_json=json.dumps(spec_json, sort_keys=True),
                        rnnsweep_version=__version__,
                        created_at=now,
                        updated_at=now,
                    )
                )
                return False
            if row["spec_hash"] != spec_hash:
                stored = json.loads(row["spec_json"])
                for k in ("name", "trials", "device"):
                    stored.pop(k, None)
                keys = diff_keys(stored, identity)
                raise SpecMismatchError(
                    f"study {name!r} exists with a different spec (differs in: "
                    f"{', '.join(keys) or 'hash'}); use another --study name or the same settings"
                )
            if row["trials_per_cell"] != spec_json["trials"]:
                stored = json.loads(row["spec_json"])
                stored["trials"] = spec_json["trials"]
                con.execute(
                    studies.update()
                    .where(studies.c.name == name)
                    .values(
                        trials_per_cell=spec_json["trials"],
                        updated_at=now,
                        spec_json=json.dumps(stored, sort_keys=True),
                    )
                )
            return True

    def study_spec(self, name: str) -> dict[str, Any]:
        if not self._has_tables():
            raise StudyNotFoundError(f"no rnnsweep studies in {self.masked_url!r}")
        with self.engine.connect() as con:
            row = con.execute(sa.select(studies.c.spec_json).where(studies.c.name == name)).first()
        if row is None:
            known = [s["study"] for s in self.list_studies()]
            hint = f"; known studies: {', '.join(known)}" if known else ""
            raise StudyNotFoundError(f"no study named {name!r} in {self.masked_url!r}{hint}")
        return json.loads(row[0])

    def latest_study(self) -> str:
        """The most recently created or resumed study's name."""
        if not self._has_tables():
            raise StudyNotFoundError(f"no rnnsweep studies in {self.masked_url!r}")
        with self.engine.connect() as con:
            row = con.execute(
                sa.select(studies.c.name).order_by(studies.c.updated_at.desc(), studies.c.id.desc())
            ).first()
        if row is None:
            raise StudyNotFoundError(f"no rnnsweep studies in {self.masked_url!r}")
        return row[0]

    def touch_study(self, name: str) -> None:
        with self.engine.begin() as con:
            con.execute(
                studies.update()
                .where(studies.c.name == name)
                .values(updated_at=dt.datetime.now(dt.UTC))
            )

    def list_studies(self) -> list[dict[str, Any]]:
        """Every study with its cell and trial counts.

        Cells and the requested total are counted from the study's slots (one per cell
        and trial, made after ``exclude``), the queue's own record, not re-derived from
        the stored spec.
        """
        if not self._has_tables():
            return []
        with self.engine.connect() as con:
            rows = con.execute(sa.select(studies).order_by(studies.c.id)).mappings().all()
            counts = (
                con.execute(
                    sa.select(
                        trials.c.study,
                        sa.func.count().label("trials"),
                        sa.func.sum(sa.case((trials.c.diverged, 0), else_=1)).label("feasible"),
                    )
                    .where(trials.c.state == "complete")
                    .group_by(trials.c.study)
                )
                .mappings()
                .all()
            )
            queue = (
                con.execute(
                    sa.select(
                        slots.c.study,
                        sa.func.count(sa.distinct(slots.c.cell)).label("cells"),
                        sa.func.count().label("requested"),
                    ).group_by(slots.c.study)
                )
                .mappings()
                .all()
            )
        by_study = {c["study"]: c for c in counts}
        by_queue = {q["study"]: q for q in queue}
        out = []
        for r in rows:
            spec = json.loads(r["spec_json"])
            c = by_study.get(r["name"], {"trials": 0, "feasible": 0})
            q = by_queue.get(r["name"], {"cells": 0, "requested": 0})
            out.append(
                {
                    "study": r["name"],
                    "task": r["task"],
                    "sampler": r["sampler"],
                    "archs": ",".join(spec["archs"]),
                    "depths": ",".join(str(d) for d in spec["depths"]),
                    "cells": int(q["cells"]),
                    "requested": int(q["requested"]),
                    "complete": int(c["trials"] or 0),
                    "feasible": int(c["feasible"] or 0),
                    "updated": r["updated_at"].strftime("%Y-%m-%d %H:%M")
                    if r["updated_at"]
                    else "",
                }
            )
        return out

    # ---- trials ------------------------------------------------------------------

    def commit_trial(
        self,
        row: Mapping[str, Any],
        curve: Iterable[Mapping[str, float]],
        slot_id: int,
        worker: str,
    ) -> int | None:
        """Insert a finished trial's row and curve and close its slot, atomically.

        The slot update is conditional on this worker still holding the claim; if
        it does not (its heartbeat went stale and another worker took the slot),
        nothing is written and None is returned. This transaction is what makes
        totals exact: a result counts if and only if its slot is done.
        """
        values = dict(row)
        values.setdefault("state", "complete")
        values.setdefault("created_at", dt.datetime.now(dt.UTC))
        for k in ("initial_loss", "final_loss", "best_loss", "metric"):
            values[k] = finite_or_none(values.get(k))
        with self.engine.begin() as con:
            res = con.execute(slots.update().where(held_by([slot_id], worker)).values(state="done"))
            if res.rowcount != 1:
                return None
            row_id = con.execute(trials.insert().values(**values)).inserted_primary_key[0]
            pts = [
                {
                    "trial_row": row_id,
                    "step": int(p["step"]),
                    "train_loss": finite_or_none(p.get("train_loss")),
                    "eval_loss": finite_or_none(p.get("eval_loss")),
                    "eval_metric": finite_or_none(p.get("eval_metric")),
                }
                for p in curve
            ]
            if pts:
                con.execute(curves.insert(), pts)
        return int(row_id)

    def result_counts(self, study: str) -> tuple[int, int]:
        """(counted trials, feasible among them) of a study."""
        with self.engine.connect() as con:
            row = con.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.sum(sa.case((trials.c.diverged, 0), else_=1)),
                ).where(trials.c.study == study, trials.c.state == "complete")
            ).first()
        return int(row[0] or 0), int(row[1] or 0)

    def cell_counts(self, optuna_study: str) -> tuple[int, int, float | None]:
        """(counted trials, feasible among them, worst feasible final loss) of one cell,
        by its Optuna study's name (what Optuna is told: optuna_bridge)."""
        study = optuna_study.rsplit(".", 2)[0]  # STUDY.ARCH.dDEPTH: the indexed column
        feasible = sa.case((trials.c.diverged, 0), else_=1)
        with self.engine.connect() as con:
            row = con.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.sum(feasible),
                    sa.func.max(sa.case((trials.c.diverged, None), else_=trials.c.final_loss)),
                ).where(
                    trials.c.study == study,
                    trials.c.optuna_study == optuna_study,
                    trials.c.state == "complete",
                )
            ).first()
        worst = float(row[2]) if row[2] is not None else None
        return int(row[0] or 0), int(row[1] or 0), worst

    def trial_curve(self, row_id: int) -> list[dict[str, Any]]:
        """The learning curve of one trial row, by step."""
        q = sa.select(curves).where(curves.c.trial_row == row_id).order_by(curves.c.step)
        with self.engine.connect() as con:
            return [dict(r) for r in con.execute(q).mappings()]

    def claimed_slots(self, study: str) -> list[tuple[int, str]]:
        with self.engine.connect() as con:
            return [
                (r[0], r[1])
                for r in con.execute(
                    sa.select(slots.c.id, slots.c.worker).where(
                        slots.c.study == study, slots.c.state == "claimed"
                    )
                )
            ]

    def trial_rows(self, optuna_trial_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Counted rows of the given Optuna trials."""
        ids = list(optuna_trial_ids)
        if not ids:
            return []
        with self.engine.connect() as con:
            return [
                dict(r)
                for r in con.execute(
                    sa.select(*self._trial_columns()).where(
                        trials.c.optuna_trial_id.in_(ids), trials.c.state == "complete"
                    )
                ).mappings()
            ]

    def trials_frame(self, study: str, *, states: tuple[str, ...] = ("complete",)) -> pd.DataFrame:
        """The study's trial rows (counted ones by default) as a DataFrame."""
        import pandas as pd

        cols = self._trial_columns()
        q = sa.select(*cols).where(trials.c.study == study, trials.c.state.in_(states))
        with self.engine.connect() as con:
            df = pd.read_sql(q.order_by(trials.c.id), con)
        for name in self._absent.get(trials.name, ()):  # an older table: the column, unknown
            df[name] = None
        return df

    def curves_frame(self, study: str, *, states: tuple[str, ...] = ("complete",)) -> pd.DataFrame:
        """Learning curves of the study's trials, tidy: one row per (trial, step)."""
        q = (
            sa.select(
                trials.c.study,
                trials.c.arch,
                trials.c.depth,
                trials.c.trial_number,
                trials.c.optuna_trial_id,
                curves.c.step,
                curves.c.train_loss,
                curves.c.eval_loss,
                curves.c.eval_metric,
            )
            .join(curves, curves.c.trial_row == trials.c.id)
            .where(trials.c.study == study, trials.c.state.in_(states))
            .order_by(trials.c.id, curves.c.step)
        )
        import pandas as pd

        with self.engine.connect() as con:
            return pd.read_sql(q, con)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.reader is not None:
            self.reader.dispose()
        if "optuna_storage" in self.__dict__:
            self.optuna_storage.engine.dispose()


def _from_database(exc: BaseException) -> bool:
    """Whether an error came out of the database layers (SQLAlchemy, a driver, Optuna's
    storage), not out of rnnsweep's own code (a bug: let it surface)."""
    import optuna

    return isinstance(exc, sa.exc.SQLAlchemyError | optuna.exceptions.StorageInternalError)
