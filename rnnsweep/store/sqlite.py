"""SQLite files opened without side effects: read-only, and no ``-wal``/``-shm`` left behind.

A database in WAL mode makes every connection, even a ``mode=ro`` one, create
``FILE-wal`` and ``FILE-shm`` beside it, and only a connection that may write
removes them again on close. A read-only open (report, export, studies, and the
checks before a run) therefore connects in one of two ways:

- when ``FILE-wal`` or ``FILE-journal`` exists, a writer is at work (or crashed):
  ``mode=ro`` joins its WAL under SQLite's locks and creates no file of its own;
- otherwise every committed transaction is in the main file: ``immutable=1``
  reads it with no locks and no side files. A writer that starts meanwhile writes
  to its own new ``-wal``, which the next read-only connection sees and joins.
  (Only a checkpoint, which rewrites the main file, could race such a read: it
  happens when a writer closes or after 1000 pages of WAL, and a read-only store
  opens a new connection for every query, so the window is one query long.)
"""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse
from pathlib import Path

__all__ = ["file_kind", "ro_connect"]


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what the path is (a FIFO blocks the opener forever)."""
    if stat.S_ISREG(mode):
        return None
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def ro_connect(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing SQLite file that creates no file."""
    p = Path(os.path.abspath(path))
    uri = f"file:{urllib.parse.quote(str(p))}?mode=ro"
    if not any(Path(f"{p}{s}").exists() for s in ("-wal", "-journal")):
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)
