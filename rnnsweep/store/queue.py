"""The work queue: slots that workers claim atomically, heartbeat, and finish.

Exact totals come from here, not from Optuna: a study of N trials per cell owns
N slot rows per cell, and every state change is one conditional UPDATE whose
row count says who won. The same statements work on SQLite (writers are
serialised; the busy timeout makes them wait) and PostgreSQL (row locks; the
loser's UPDATE re-checks ``state`` and matches nothing).

Time is the database's clock, so workers on machines with skewed clocks agree
on what is stale.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rnnsweep.store.failures import retry_race
from rnnsweep.store.tables import slots

__all__ = ["Slot", "SlotCounts", "SlotQueue", "held_by"]


def held_by(slot_ids: Sequence[int], worker: str) -> sa.ColumnElement[bool]:
    """Rows among ``slot_ids`` that ``worker`` still holds: every write to a claimed slot
    is conditional on it, so a worker whose claim went stale cannot touch the slot."""
    return sa.and_(slots.c.id.in_(slot_ids), slots.c.worker == worker, slots.c.state == "claimed")


@dataclass(frozen=True)
class Slot:
    id: int
    cell: str
    slot: int
    attempts: int
    params: dict[str, Any] | None  # set once the first attempt sampled them
    seed: int | None
    optuna_trial_id: int | None  # the previous attempt's trial, if any


@dataclass(frozen=True)
class SlotCounts:
    pending: int
    claimed: int  # claimed with a live heartbeat
    stale: int  # claimed, heartbeat older than the grace period
    done: int

    @property
    def total(self) -> int:
        return self.pending + self.claimed + self.stale + self.done


class SlotQueue:
    """Slots of one study in one database."""

    def __init__(self, engine: sa.Engine, study: str) -> None:
        self.engine = engine
        self.study = study
        self.sqlite = engine.dialect.name == "sqlite"

    def _now(self) -> sa.ColumnElement[float]:
        """The database clock in epoch seconds (float)."""
        if self.sqlite:
            return (sa.func.julianday("now") - 2440587.5) * 86400.0
        return sa.func.extract("epoch", sa.func.clock_timestamp())

    # ---- creation --------------------------------------------------------------

    def ensure(self, cells: Sequence[str], per_cell: int) -> int:
        """Make sure every cell has slots 0 .. per_cell-1; returns how many were added.

        One transaction, rows inserted in chunks (a study's size is bounded, see
        ``study.spec.LIMITS``, but need not sit in memory at once). Another process
        ensuring the same slots at the same moment makes this one's insert collide on
        the unique key: it then runs again and finds the other's rows.
        """
        return retry_race(lambda: self._ensure_once(cells, per_cell))

    def _ensure_once(self, cells: Sequence[str], per_cell: int) -> int:
        added = 0
        with self.engine.begin() as con:
            existing = {
                (r[0], r[1])
                for r in con.execute(
                    sa.select(slots.c.cell, slots.c.slot).where(slots.c.study == self.study)
                )
            }
            missing = (
                {
                    "study": self.study,
                    "cell": cell,
                    "cell_order": order,
                    "slot": i,
                    "state": "pending",
                    "attempts": 0,
                }
                for order, cell in enumerate(cells)
                for i in range(per_cell)
                if (cell, i) not in existing
            )
            while chunk := list(itertools.islice(missing, 10_000)):
                con.execute(slots.insert(), chunk)
                added += len(chunk)
        return added

    # ---- claiming ----------------------------------------------------------------

    def claim(self, worker: str, k: int, stale_after: float) -> list[Slot]:
        """Claim up to k slots of one cell: pending ones first, then stale claims.

        The cell is the one holding the lowest-numbered open slot (ties by cell
        order), so cells progress evenly. Returns [] when nothing is claimable.
        """
        for _ in range(20):  # lost every race: another worker took our candidates
            got, found = self._claim_once(worker, k, stale_after)
            if got or not found:
                return got
        return []

    def _claim_once(self, worker: str, k: int, stale_after: float) -> tuple[list[Slot], bool]:
        token = uuid.uuid4().hex
        now = self._now()
        claimable = sa.or_(
            slots.c.state == "pending",
            sa.and_(slots.c.state == "claimed", slots.c.heartbeat_at < now - stale_after),
        )
        with self.engine.begin() as con:
            first = con.execute(
                sa.select(slots.c.cell)
                .where(slots.c.study == self.study, claimable)
                .order_by(slots.c.slot, slots.c.cell_order)
                .limit(1)
            ).first()
            if first is None:
                return [], False
            pick = (
                sa.select(slots.c.id)
                .where(slots.c.study == self.study, slots.c.cell == first[0], claimable)
                .order_by(slots.c.slot)
                .limit(k)
            )
            if not self.sqlite:
                pick = pick.with_for_update(skip_locked=True)
            ids = [r[0] for r in con.execute(pick)]
            if not ids:
                return [], True
            # The state test is repeated here: under PostgreSQL a concurrent claim
            # of the same row makes this UPDATE skip it rather than take it twice.
            con.execute(
                slots.update()
                .where(slots.c.id.in_(ids), claimable)
                .values(
                    state="claimed",
                    worker=worker,
                    claim_token=token,
                    heartbeat_at=now,
                    attempts=slots.c.attempts + 1,
                )
            )
            rows = (
                con.execute(
                    sa.select(slots).where(slots.c.claim_token == token).order_by(slots.c.slot)
                )
                .mappings()
                .all()
            )
        got = [
            Slot(
                id=r["id"],
                cell=r["cell"],
                slot=r["slot"],
                attempts=r["attempts"],
                params=json.loads(r["params_json"]) if r["params_json"] else None,
                seed=r["seed"],
                optuna_trial_id=r["optuna_trial_id"],
            )
            for r in rows
        ]
        return got, True

    def record_attempt(
        self, slot_id: int, params: dict[str, Any], seed: int, optuna_trial_id: int
    ) -> None:
        """Fix a slot's parameters and seed (first attempt) and its current trial."""
        with self.engine.begin() as con:
            con.execute(
                slots.update()
                .where(slots.c.id == slot_id)
                .values(
                    params_json=json.dumps(params, sort_keys=True),
                    seed=seed,
                    optuna_trial_id=optuna_trial_id,
                )
            )

    def heartbeat(self, slot_ids: Iterable[int], worker: str) -> None:
        self._update_held(slot_ids, worker, heartbeat_at=self._now())

    def release(self, slot_ids: Iterable[int], worker: str) -> None:
        """Hand claimed slots back (interrupt): pending again, parameters kept."""
        self._update_held(
            slot_ids, worker, state="pending", worker=None, claim_token=None, heartbeat_at=None
        )

    def _update_held(self, slot_ids: Iterable[int], holder: str, **values: Any) -> None:
        ids = list(slot_ids)
        if ids:
            with self.engine.begin() as con:
                con.execute(slots.update().where(held_by(ids, holder)).values(**values))

    def counts(self, stale_after: float) -> SlotCounts:
        now = self._now()
        stale = sa.and_(slots.c.state == "claimed", slots.c.heartbeat_at < now - stale_after)
        q = sa.select(
            sa.func.sum(sa.case((slots.c.state == "pending", 1), else_=0)),
            sa.func.sum(sa.case((sa.and_(slots.c.state == "claimed", sa.not_(stale)), 1), else_=0)),
            sa.func.sum(sa.case((stale, 1), else_=0)),
            sa.func.sum(sa.case((slots.c.state == "done", 1), else_=0)),
        ).where(slots.c.study == self.study)
        with self.engine.connect() as con:
            row = con.execute(q).first()
        return SlotCounts(*(int(v or 0) for v in row))
