"""The progress bar of a study: trials done of total, feasible so far, elapsed and ETA.

One bar per study, whatever the packs do (split, freeze members): the worker reports
whole packs (``advance``) and, after every training step, the fraction of the pack in
training (``partial``), so the ETA holds from the first steps on. The ETA is Rich's:
the remaining trials over the speed of the last 30 seconds. ``rnnsweep bench --eta``
measures how right it is at the end of each pack (docs/PERFORMANCE.md).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["StudyBar"]


class StudyBar:
    """A Rich progress bar for one study (the worker's ``Progress``); ``enabled=False``
    draws nothing but still keeps the counts and the ETA."""

    def __init__(self, study: str, *, enabled: bool, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("feasible {task.fields[feasible]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.study = study
        self.task: TaskID | None = None
        self.feasible = 0
        self.done = 0

    def start(self, total: int, done: int, feasible: int) -> None:
        self.feasible, self.done = feasible, done
        self.progress.start()
        self.task = self.progress.add_task(
            self.study, total=total, completed=done, feasible=feasible
        )

    def _update(self, **fields: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, **fields)  # type: ignore[arg-type]

    def advance(self, done: int, feasible: int) -> None:
        self.feasible += feasible
        self.done += done
        self._update(completed=self.done, feasible=self.feasible)

    def partial(self, trials: float) -> None:
        """The pack in training, ``trials`` of it done (fractional): the ETA from step 1."""
        self._update(completed=self.done + trials)

    def set(self, done: int, feasible: int) -> None:
        self.feasible, self.done = feasible, done
        self._update(completed=done, feasible=feasible)

    def eta(self) -> float | None:
        """Seconds the bar shows as ETA now (None before it can tell)."""
        if self.task is None:
            return None
        task = next(t for t in self.progress.tasks if t.id == self.task)
        return task.time_remaining

    def stop(self) -> None:
        if self.task is not None:  # a bar that never started prints nothing
            self.progress.stop()
