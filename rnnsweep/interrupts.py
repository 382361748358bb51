"""Stopping cleanly on SIGINT and SIGTERM.

The handler records the request. Outside training it also raises at once
(KeyboardInterrupt, or :class:`Terminated` for SIGTERM). Inside training
(:func:`deferred`) it only records, and the loops call :func:`check` (the trainer
after every step, the worker between packs and while waiting), which raises there.
The reason: an exception raised by a signal handler while a finalizer or weakref
callback runs is swallowed and printed as "Exception ignored in ..." with a
traceback, and torch runs many such callbacks; deferring puts the interrupt at a
known point, within one training step.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "check", "clear", "deferred", "install"]


class Terminated(BaseException):
    """SIGTERM, as an exception, so that in-flight trials are handed back."""


_requested: int | None = None
_deferred = 0


def _raise(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt


def _handler(signum: int, frame: object) -> None:
    global _requested
    _requested = signum
    if not _deferred:
        _raise(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Within this block a signal only records the request; call :func:`check` often."""
    global _deferred
    _deferred += 1
    try:
        yield
        check()
    finally:
        _deferred -= 1


def check() -> None:
    """Raise if SIGINT or SIGTERM arrived (even if its first exception was swallowed)."""
    if _requested is not None:
        _raise(_requested)


def clear() -> None:
    global _requested
    _requested = None


def install() -> Callable[[], None]:
    """Handle SIGINT and SIGTERM (even when inherited as ignored); returns a restorer."""
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)
        clear()

    return restore
