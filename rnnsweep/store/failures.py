"""What a database driver's exception means: a race to retry, or the machine failing.

Drivers report a full disk, a read-only file or a lost server as generic errors
wrapped several times (Optuna wraps SQLAlchemy, which wraps sqlite3 or psycopg).
These helpers walk the chain of causes and read the innermost one.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from rnnsweep.errors import EnvironmentFailure

_T = TypeVar("_T")

# How long a process waits for another one that is creating the same new database.
RACE_DEADLINE_S = 60.0

__all__ = ["environment_failure", "innermost_reason", "is_race"]

_DISK_FULL = (
    "database or disk is full",
    "no space left on device",
    "could not extend file",
    "disk quota exceeded",
    "file too large",
)
_IO = ("disk i/o error",)
_READONLY = ("attempt to write a readonly database", "readonly database")
_GONE = (
    "server closed the connection",
    "connection refused",
    "terminating connection",
    "could not connect to server",
    "connection to server",
    "no such file or directory",
)
# Two processes creating the same tables or rows at the same moment: the loser's
# statement fails, and running it again finds the winner's work.
_RACE = (
    "already exists",
    "duplicate key",
    "unique constraint",
    "database is locked",
    "deadlock detected",
    "could not serialize",
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]


def innermost_reason(exc: BaseException) -> str:
    """The driver's own message (first line, no SQL), e.g. "database or disk is full"."""
    reason = ""
    for e in _chain(exc):
        text = str(e).strip()
        if text:
            reason = text
    first = reason.splitlines()[0] if reason else type(exc).__name__
    return first.split("[SQL:")[0].strip()


def _texts(exc: BaseException) -> list[str]:
    return [str(e).lower() for e in _chain(exc)]


def is_race(exc: BaseException) -> bool:
    """Whether the error is a concurrent creator's doing (try again), not a real failure."""
    if any(type(e).__name__ in ("IntegrityError", "UniqueViolation") for e in _chain(exc)):
        return True
    return any(any(k in t for k in _RACE) for t in _texts(exc))


def retry_race(fn: Callable[[], _T], deadline_s: float = RACE_DEADLINE_S) -> _T:
    """``fn()``, run again while a concurrent creator is in the way (:func:`is_race`).

    Two processes that create the same new database at once (tables, Optuna's version
    rows, the study row, the slots) collide on "already exists" or a unique key; the
    loser waits a moment (jittered, doubling up to a second) and runs again, then finds
    the winner's work. Anything else, or a race past ``deadline_s``, is raised as it is.
    """
    deadline = time.monotonic() + deadline_s
    delay = 0.02
    while True:
        try:
            return fn()
        except Exception as exc:
            if time.monotonic() >= deadline or not is_race(exc):
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(1.0, delay * 2)


def environment_failure(exc: BaseException, where: str) -> EnvironmentFailure | None:
    """An EnvironmentFailure naming what happened to ``where``, or None for anything else."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return EnvironmentFailure(
                f"disk full while writing {where} ({e.strerror}); the results committed so "
                "far are kept: free some space and run the same command again"
            )
    texts = _texts(exc)
    if any(any(k in t for k in _DISK_FULL) for t in texts) or any(
        type(e).__name__ == "DiskFull" for e in _chain(exc)
    ):
        return EnvironmentFailure(
            f"disk full while writing {where}; the results committed so far are kept: "
            "free some space and run the same command again"
        )
    if any(any(k in t for k in _IO) for t in texts):
        return EnvironmentFailure(
            f"I/O error on {where} ({innermost_reason(exc)}); the results committed so far "
            "are kept: check the disk and run the same command again"
        )
    if any(any(k in t for k in _READONLY) for t in texts):
        return EnvironmentFailure(
            f"cannot write {where} any more: it became read-only; the results committed so "
            "far are kept: make it writable and run the same command again"
        )
    if any(type(e).__name__ == "OperationalError" for e in _chain(exc)) and any(
        any(k in t for k in _GONE) for t in texts
    ):
        return EnvironmentFailure(
            f"lost the database {where} ({innermost_reason(exc)}); the results committed so "
            "far are kept: run the same command again when it is back"
        )
    return None
