"""The resolved study: a spec with every fact derived from it worked out once.

:func:`resolve` turns a validated :class:`~rnnsweep.study.spec.StudySpec` into a frozen
:class:`ResolvedStudy`; :func:`resolve_stored` does the same from the JSON stored with
a study. The store, the report, the workers and the CLI read a study's facts (its
cells after ``exclude``, widths, the task and its sizes, T, the input moment R, the
stored JSON and hash) from this object, never from the JSON's layout, so that one
fact cannot be derived two ways and drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rnnsweep.study.spec import CellPlan, StudySpec, spec_from_json

if TYPE_CHECKING:
    from rnnsweep.tasks.base import Task

__all__ = ["ResolvedStudy", "resolve", "resolve_stored"]


@dataclass(frozen=True, eq=False)
class ResolvedStudy:
    """One study, resolved: the spec plus its task instance, cells and stored form."""

    spec: StudySpec
    task: Task
    plans: tuple[CellPlan, ...]  # every (arch, depth) cell after ``exclude``, with its width
    stored: Mapping[str, Any]  # the JSON stored with the study (StudySpec.to_json)
    spec_hash: str  # guards resumes: everything but name, trial budget and device
    _tasks: dict[int, Task] = field(default_factory=dict, repr=False)  # b -> task (task_for)

    def task_for(self, b: int | None) -> Task:
        """The task a trial trains on: the study's, or with ``b`` tuned (``space.b``) the
        study's task at that b, built once per b (a capacity task draws its b patterns
        when built), so that trials sharing a b share one."""
        if b is None:
            return self.task
        if b not in self._tasks:
            from rnnsweep.tasks import make_task

            self._tasks[b] = make_task(self.spec.task, {**self.spec.task_options, "b": b})
        return self._tasks[b]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def T(self) -> int:
        """The task's sequence length."""
        return self.task.T

    @property
    def R(self) -> float:
        """The task's input moment E[x^2] per unit (one per study; see Task.R)."""
        return self.task.R

    @property
    def n_in(self) -> int:
        return self.task.n_in

    @property
    def n_out(self) -> int:
        return self.task.n_out

    @property
    def requested(self) -> int:
        """Trials the study asks for in all: trials per cell times its cells."""
        return self.spec.trials * len(self.plans)

    def plan(self, key: str) -> CellPlan:
        """The cell ``ARCH/dDEPTH``; KeyError for one the study does not have."""
        for p in self.plans:
            if p.key == key:
                return p
        raise KeyError(key)


def resolve(spec: StudySpec) -> ResolvedStudy:
    """Work out every derived fact of ``spec`` once (its task is built once per spec)."""
    stored = spec.to_json()
    return ResolvedStudy(
        spec=spec,
        task=spec.make_task(),
        plans=tuple(spec.cells()),
        stored=stored,
        spec_hash=spec.spec_hash(),
    )


def resolve_stored(stored: Mapping[str, Any]) -> ResolvedStudy:
    """The resolved study of a spec stored as JSON (:meth:`StudySpec.to_json`)."""
    return resolve(spec_from_json(stored))
