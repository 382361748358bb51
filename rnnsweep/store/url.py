"""Storage URLs: resolve, mask, and check them before anything is written.

Order of precedence: ``--storage`` flag, ``RNNSWEEP_STORAGE``, ``sqlite:///rnnsweep.db``.
A bare path (``runs/study.db``) means a SQLite file. Every message shows the URL
with its password masked (``***``); a password never reaches output or logs.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from rnnsweep.errors import StorageError
from rnnsweep.store.sqlite import file_kind, ro_connect

__all__ = [
    "DEFAULT_STORAGE",
    "ENV_VAR",
    "check_storage",
    "mask_url",
    "resolve_url",
    "scrub",
    "sqlite_file",
]

DEFAULT_STORAGE = "sqlite:///rnnsweep.db"
ENV_VAR = "RNNSWEEP_STORAGE"
SUPPORTED = ("sqlite", "postgresql")
_SQLITE_MAGIC = b"SQLite format 3\x00"
OPTUNA_TABLES = {"studies", "version_info", "trials"}
RNNSWEEP_TABLES = {"rnnsweep_studies", "rnnsweep_trials", "rnnsweep_curves"}


def resolve_url(storage: str | None) -> str:
    """The storage URL to use: the flag, else the environment, else the default file."""
    url = storage or os.environ.get(ENV_VAR) or DEFAULT_STORAGE
    url = url.strip()
    if "://" not in url:  # a bare path
        url = f"sqlite:///{url}"
    return url


def mask_url(url: str | URL) -> str:
    """The URL with any password replaced by ``***``; unparsable URLs are scrubbed by regex."""
    try:
        u = make_url(url) if isinstance(url, str) else url
        return u.render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that cannot parse must still not leak
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def scrub(text: str, url: str) -> str:
    """Remove the URL's password from an arbitrary message (e.g. a driver's error)."""
    try:
        pw = make_url(url).password
    except Exception:  # noqa: BLE001
        pw = None
    out = text.replace(url, mask_url(url))
    if pw:
        out = out.replace(str(pw), "***")
    return out


def _parse(url: str) -> URL:
    try:
        u = make_url(url)
        u.port  # noqa: B018 - a non-numeric port raises here, not at connect time
    except (ArgumentError, ValueError):
        raise StorageError(
            f"unsupported storage URL {mask_url(url)!r}: expected sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST/DB"
        ) from None
    if u.get_backend_name() == "sqlite" and (u.username or u.password or u.host or u.port):
        raise StorageError(
            f"unsupported storage URL {mask_url(url)!r}: a SQLite URL names a file only "
            "(sqlite:///relative/path.db or sqlite:////absolute/path.db), no user or host"
        )
    if u.get_backend_name() not in SUPPORTED:
        raise StorageError(
            f"unsupported storage URL {mask_url(url)!r}: backend {u.get_backend_name()!r} "
            f"is not one of {', '.join(SUPPORTED)}"
        )
    try:
        dialect = u.get_dialect()
    except NoSuchModuleError:
        raise StorageError(
            f"unsupported storage URL {mask_url(url)!r}: no SQLAlchemy driver {u.drivername!r}"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise StorageError(
            f"storage URL {mask_url(url)!r} needs the Python package {exc.name!r}: "
            "pip install 'rnnsweep[postgres]'"
        ) from None
    return u


def _sqlite_path(u: URL, url: str) -> Path:
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:"):
        raise StorageError(
            f"unsupported storage URL {mask_url(url)!r}: give a SQLite file path, "
            "e.g. sqlite:///rnnsweep.db"
        )
    return Path(db)


def sqlite_file(url: str) -> Path:
    """The file a ``sqlite:///PATH`` URL names."""
    return _sqlite_path(_parse(url), url)


def unwritable(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (the OS's reason), or None when one
    can: a probe file is created and removed, since os.access says yes to root even on
    /sys."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".rnnsweep-probe-", dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(probe)
    return None


def _probe_writable(parent: Path, path: Path) -> None:
    if (why := unwritable(parent)) is not None:
        raise StorageError(
            f"cannot create storage {str(path)!r}: directory {str(parent)!r} is not writable "
            f"({why})"
        )


def _check_sqlite_writable(path: Path) -> None:
    """ "Cannot write here": the file, its side files, or (for new side files) its directory.

    Says the data is fine: a read-only file or directory is no reason to delete it.
    """
    fine = "the database itself is untouched and report/export/studies can read it"
    if not os.access(path, os.W_OK):
        raise StorageError(f"cannot write storage file {str(path)!r}: it is read-only; {fine}")
    sides = [Path(f"{path}{s}") for s in ("-wal", "-shm")]
    for side in sides:
        if side.exists() and not os.access(side, os.W_OK):
            raise StorageError(
                f"cannot write storage file {str(path)!r}: {str(side)!r} beside it is read-only "
                f"(left by another user's or tool's read-only open); {fine}. If no process uses "
                "the database, deleting that side file lets writers in again"
            )
    if not all(side.exists() for side in sides):
        parent = path.parent if str(path.parent) else Path(".")
        if (why := unwritable(parent)) is not None:
            raise StorageError(
                f"cannot write storage file {str(path)!r}: its directory {str(parent)!r} is not "
                f"writable ({why}) and SQLite keeps its -wal and -shm files there; {fine}"
            )


def _classify(tables: set[str], where: str) -> None:
    if tables and not (tables & OPTUNA_TABLES or tables & RNNSWEEP_TABLES):
        shown = ", ".join(sorted(tables)[:5])
        raise StorageError(
            f"{where} is not an rnnsweep/Optuna database (it holds other tables: {shown})"
        )


def check_storage(url: str, *, create: bool) -> bool:
    """Check a storage before use; never creates or changes anything.

    Returns whether the storage already exists (a database with tables, or an
    existing SQLite file). With ``create=False`` a missing storage is an error.
    Raises StorageError for an unsupported, unreachable, unwritable or foreign one.
    """
    u = _parse(url)
    if u.get_backend_name() == "sqlite":
        path = _sqlite_path(u, url)
        try:  # stat, never open, before knowing what it is: opening a FIFO blocks forever
            kind = file_kind(path.stat().st_mode)
        except FileNotFoundError:
            kind = None
        except OSError as exc:
            raise StorageError(f"cannot read storage path {str(path)!r}: {exc.strerror}") from None
        if kind is not None:
            raise StorageError(f"storage path {str(path)!r} is {kind}, not a database file")
        if not path.exists():
            if not create:
                raise StorageError(f"no storage at {str(path)!r}: run a study first")
            parent = path.parent if str(path.parent) else Path(".")
            if not parent.is_dir():
                raise StorageError(
                    f"cannot create storage {str(path)!r}: directory {str(parent)!r} does not exist"
                )
            _probe_writable(parent, path)
            return False
        if not os.access(path, os.R_OK):
            raise StorageError(f"cannot read storage file {str(path)!r}: permission denied")
        with path.open("rb") as fh:
            head = fh.read(16)
        if head and head != _SQLITE_MAGIC:
            raise StorageError(f"storage file {str(path)!r} is not a SQLite database")
        if create:
            _check_sqlite_writable(path)
        try:
            con = ro_connect(path)  # creates no -wal/-shm, even for a damaged file
            try:
                rows = con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StorageError(
                    f"storage file {str(path)!r} is not a SQLite database, or is damaged: {exc}"
                ) from None
            raise StorageError(f"cannot read storage file {str(path)!r}: {exc}") from None
        _classify({r[0] for r in rows}, f"storage file {str(path)!r}")
        return True

    # A server database: connect once with a short timeout.
    connect_args = {"connect_timeout": 5} if u.get_backend_name() == "postgresql" else {}
    engine = sa.create_engine(u, connect_args=connect_args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as con:
            tables = set(sa.inspect(con).get_table_names())
    except Exception as exc:  # noqa: BLE001 - any driver error means "cannot use it"
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
        first = reason[0] if reason else type(exc).__name__
        raise StorageError(
            f"cannot connect to storage {mask_url(url)!r}: {scrub(first, url)}"
        ) from None
    finally:
        engine.dispose()
    _classify(tables, f"storage {mask_url(url)!r}")
    if not tables and not create:
        raise StorageError(f"storage {mask_url(url)!r} holds no studies: run a study first")
    return bool(tables)
