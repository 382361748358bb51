"""Synthetic sequence tasks, by name: ``make_task("parens", {"max_depth": 5})``.

Each task is one module (see ``docs/TASKS.md`` for encodings and thresholds);
this package keeps the registry that the study spec resolves names against.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from rnnsweep.errors import closest
from rnnsweep.tasks.adding import AddingTask
from rnnsweep.tasks.arith import ArithTask
from rnnsweep.tasks.base import Batch, ClassificationTask, RegressionTask, Task, TaskOptionError
from rnnsweep.tasks.capacity import CapacityTask, stored_bits
from rnnsweep.tasks.charlm import CharLMTask
from rnnsweep.tasks.digits import DigitsTask
from rnnsweep.tasks.memory import MemoryTask
from rnnsweep.tasks.order import OrderTask
from rnnsweep.tasks.parens import ParensTask
from rnnsweep.tasks.sine import SineTask

__all__ = [
    "TASKS",
    "AddingTask",
    "ArithTask",
    "Batch",
    "CapacityTask",
    "CharLMTask",
    "ClassificationTask",
    "DigitsTask",
    "MemoryTask",
    "OrderTask",
    "ParensTask",
    "RegressionTask",
    "SineTask",
    "Task",
    "TaskOptionError",
    "make_task",
    "stored_bits",
    "task_option_names",
]

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        ParensTask,
        MemoryTask,
        CapacityTask,
        AddingTask,
        ArithTask,
        SineTask,
        OrderTask,
        DigitsTask,
        CharLMTask,
    )
}


def _did_you_mean(word: str, choices: list[str]) -> str:
    """``" did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    close = closest(word, choices)
    return f" did you mean {close!r}?" if close else ""


def _task_class(name: str) -> type[Task]:
    """The registered class for ``name``, else TaskOptionError with a suggestion."""
    if name not in TASKS:
        names = sorted(TASKS)
        raise TaskOptionError(
            f"unknown task {name!r};{_did_you_mean(name, names)} valid tasks: {', '.join(names)}"
        )
    return TASKS[name]


def task_option_names(name: str) -> list[str]:
    """The option names task ``name`` accepts, in the order its ``__init__`` declares them."""
    params = inspect.signature(_task_class(name).__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def make_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """Build task ``name`` with ``options`` (unset ones take their documented defaults).

    Raises TaskOptionError for an unknown task or option name (with the closest
    valid name, if any, and the list of valid ones) and for out-of-range values.
    """
    cls = _task_class(name)
    options = dict(options or {})
    valid = task_option_names(name)
    for key in options:
        if key not in valid:
            raise TaskOptionError(
                f"unknown option {key!r} for task {name!r};{_did_you_mean(key, valid)}"
                f" valid options: {', '.join(valid)}"
            )
    return cls(**options)
