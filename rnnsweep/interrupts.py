"""Stopping cleanly on SIGINT and SIGTERM.

A signal handler raises at once (KeyboardInterrupt, or :class:`Terminated` for
SIGTERM) *and* records the request. The record matters: Python swallows an
exception raised while a finalizer or weakref callback runs ("Exception ignored
in ..."), so a run could otherwise carry on after Ctrl-C. Long loops call
:func:`check` (the trainer once per step, the worker once per pack), which raises
again if a stop was requested.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

__all__ = ["Terminated", "check", "clear", "install"]


class Terminated(BaseException):
    """SIGTERM, as an exception, so that in-flight trials are handed back."""


_requested: int | None = None


def _raise(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt


def _handler(signum: int, frame: object) -> None:
    global _requested
    _requested = signum
    _raise(signum)


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
