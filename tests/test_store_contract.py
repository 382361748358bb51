"""The store's contract, one test class run against every backend (SQLite and PostgreSQL).

In the manner of Optuna's storage tests (``StorageTestCase`` parametrised over storages):
the same statements must give the same answers on a real SQLite file and on the real
PostgreSQL server the suite starts (tests/pgserver.py). Covers creating a study, the
slot queue (ensure, claim, heartbeat, staleness), the commit transaction (result and
slot together), counts, and ``list_studies`` with ``exclude``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rnnsweep.store import Store
from rnnsweep.store.queue import SlotQueue
from rnnsweep.study import create_study, resolve, spec_from_dict

STALE = 0.5  # seconds of silence after which a claim is stale, in these tests


def tiny(name: str, **more: Any) -> dict[str, Any]:
    d = {
        "name": name,
        "task": "parens",
        "task_options": {"seq_len": 8},
        "arch": ["gru"],
        "depth": [1],
        "trials": 2,
        "model": {"params": "1k"},
    }
    d.update(more)
    return d


def row(study: str, cell_arch: str, trial_id: int, *, diverged: bool = False) -> dict[str, Any]:
    """A minimal trial row: every NOT NULL column of rnnsweep_trials."""
    return {
        "study": study,
        "optuna_study": f"{study}.{cell_arch}.d1",
        "optuna_trial_id": trial_id,
        "trial_number": trial_id,
        "task": "parens",
        "arch": cell_arch,
        "depth": 1,
        "hidden": 4,
        "params": 100,
        "sampler": "random",
        "seed": 1,
        "lr": 0.01,
        "init_scale": 1.0,
        "b_fg": 0.0,
        "clip": 1.0,
        "nonlinearity": "tanh",
        "optimizer": "adam",
        "init": "gaussian",
        "sigma_b": 0.0,
        "diverged": diverged,
        "solved": False,
        "final_loss": 0.5,
        "metric_name": "accuracy",
        "steps_run": 3,
        "wall_time": 0.1,
        "pack_size": 1,
        "device": "cpu",
        "extra_json": "{}",
        "config_json": "{}",
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'contract.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url, create=True)
    # A store creates its tables at its first write (a registration); the queue's own
    # tests below write slots before any study is registered.
    s._ensure_tables()
    yield s
    s.dispose()


class TestStoreContract:
    """One class, every backend: the ``store`` fixture is parametrised over them."""

    def make(self, store: Store, **spec: Any):
        resolved = resolve(spec_from_dict(tiny("s", **spec)))
        return resolved, create_study(resolved, store)

    def test_create_study_registers_and_resumes(self, store):
        resolved, (resumed, requested, done) = self.make(store)
        assert (resumed, requested, done) == (False, 2, 0)
        assert store.study_spec("s")["name"] == "s"
        assert store.latest_study() == "s"
        _, again = self.make(store)
        assert again == (True, 2, 0)
        assert SlotQueue(store.engine, "s").counts(60).total == 2

    def test_ensure_is_idempotent_and_raising_trials_adds_slots(self, store):
        self.make(store)  # the store creates its tables at its first write (a registration)
        q = SlotQueue(store.engine, "q")
        assert q.ensure(["gru/d1", "rnn/d1"], 2) == 4
        assert q.ensure(["gru/d1", "rnn/d1"], 2) == 0
        assert q.ensure(["gru/d1", "rnn/d1"], 3) == 2
        assert q.counts(60) == q.counts(60).__class__(pending=6, claimed=0, stale=0, done=0)
        # the same through create_study: a resume with more trials adds the missing slots
        _, (resumed, requested, _) = self.make(store, trials=5)
        assert resumed and requested == 5
        assert SlotQueue(store.engine, "s").counts(60).pending == 5

    def test_claims_are_exclusive_between_workers(self, store):
        q = SlotQueue(store.engine, "q")
        q.ensure(["gru/d1"], 3)
        a = q.claim("A", 2, stale_after=60)
        b = q.claim("B", 2, stale_after=60)
        assert [s.slot for s in a] == [0, 1]
        assert [s.slot for s in b] == [2]
        assert not {s.id for s in a} & {s.id for s in b}
        assert q.claim("C", 5, stale_after=60) == []
        assert q.counts(60).claimed == 3
        assert all(s.attempts == 1 for s in a + b)

    def test_heartbeat_keeps_a_claim_alive_and_staleness_frees_it(self, store):
        # STALE must outlast the few statements between a heartbeat and the checks after it
        q = SlotQueue(store.engine, "q")
        q.ensure(["gru/d1"], 2)
        a = q.claim("A", 2, stale_after=60)
        time.sleep(STALE + 0.1)
        assert q.counts(stale_after=STALE).stale == 2  # A went silent: its claims are stale
        q.heartbeat([s.id for s in a], "A")
        assert q.counts(stale_after=STALE).claimed == 2  # its heartbeat made them live again
        assert q.claim("B", 2, stale_after=STALE) == []
        time.sleep(STALE + 0.1)
        counts = q.counts(stale_after=STALE)
        assert (counts.claimed, counts.stale) == (0, 2)
        b = q.claim("B", 2, stale_after=STALE)
        assert sorted(s.id for s in b) == sorted(s.id for s in a)
        assert all(s.attempts == 2 for s in b)
        # A's heartbeat no longer touches the slots B holds
        q.heartbeat([s.id for s in a], "A")
        assert store.claimed_slots("q") == [(s.id, "B") for s in sorted(b, key=lambda s: s.id)]

    def test_commit_writes_result_and_slot_together(self, store):
        self.make(store)
        q = SlotQueue(store.engine, "s")
        (a,) = q.claim("A", 1, stale_after=60)
        row_id = store.commit_trial(row("s", "gru", 1), [{"step": 0, "train_loss": 1.0}], a.id, "A")
        assert isinstance(row_id, int)
        assert q.counts(60).done == 1
        assert store.result_counts("s") == (1, 1)
        assert len(store.curves_frame("s")) == 1
        # committing the same slot again (no longer claimed) writes nothing
        assert store.commit_trial(row("s", "gru", 2), [], a.id, "A") is None
        assert store.result_counts("s") == (1, 1)

    def test_commit_by_a_worker_that_lost_its_claim_writes_nothing(self, store):
        self.make(store)
        q = SlotQueue(store.engine, "s")
        (a,) = q.claim("A", 1, stale_after=60)
        time.sleep(0.3)
        (b,) = q.claim("B", 1, stale_after=0.2)  # A went silent; B takes its slot
        assert b.id == a.id
        assert store.commit_trial(row("s", "gru", 1), [{"step": 0}], a.id, "A") is None
        assert store.result_counts("s") == (0, 0)
        assert store.trials_frame("s").empty and store.curves_frame("s").empty
        assert q.counts(60).claimed == 1 and q.counts(60).done == 0
        assert store.commit_trial(row("s", "gru", 2, diverged=True), [], b.id, "B") is not None
        assert store.result_counts("s") == (1, 0)

    def test_counts(self, store):
        self.make(store)
        q = SlotQueue(store.engine, "s")
        s0, s1 = q.claim("A", 2, stale_after=60)
        store.commit_trial(row("s", "gru", 1), [], s0.id, "A")
        assert q.counts(60) == q.counts(60).__class__(pending=0, claimed=1, stale=0, done=1)
        q.release([s1.id], "A")
        assert q.counts(60).pending == 1
        (again,) = q.claim("B", 1, stale_after=60)
        assert again.id == s1.id
        store.commit_trial(row("s", "gru", 2, diverged=True), [], again.id, "B")
        assert q.counts(60).done == 2 and q.counts(60).total == 2
        assert store.result_counts("s") == (2, 1)
        (listed,) = store.list_studies()
        assert (listed["complete"], listed["feasible"]) == (2, 1)

    def test_list_studies_counts_cells_after_exclude(self, store):
        self.make(store, arch=["gru", "plusrnn"], depth=[1, 2], exclude=["plusrnn/d1"])
        (s,) = store.list_studies()
        assert s["study"] == "s"
        assert s["archs"] == "gru,plusrnn" and s["depths"] == "1,2"
        assert (s["cells"], s["requested"]) == (3, 6)
        assert (s["complete"], s["feasible"]) == (0, 0)
