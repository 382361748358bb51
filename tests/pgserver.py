"""A real PostgreSQL server for the tests, started in a temporary directory.

Found through PATH or /usr/lib/postgresql/*/bin; started on a free loopback
port with password (scram) authentication, as the ``postgres`` user when the
tests run as root (PostgreSQL refuses to run as root). In CI (``CI`` set) a
missing server is a failure, not a skip: ``.ci/run`` installs it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

USER = "rnn"
PASSWORD = "pg-s3cret-word"


def find_bindir() -> Path | None:
    exe = shutil.which("pg_ctl")
    if exe and shutil.which("initdb"):
        real = Path(os.path.realpath(exe)).parent
        if (real / "postgres").exists():
            return real
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "postgres").exists() and Path(d, "initdb").exists():
            return Path(d)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    bindir: Path
    base: Path
    port: int
    as_pg: list[str]

    def url(self, db: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=PASSWORD,
            dbname="postgres",
            autocommit=True,
        ) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_pg,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.base / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def start() -> PgServer:
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    base = Path(tempfile.mkdtemp(prefix="rnnsweep-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_pg:
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        [
            *as_pg,
            str(bindir / "initdb"),
            "-D",
            str(base / "data"),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    opts = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c max_connections=100"
    )
    subprocess.run(
        [
            *as_pg,
            str(bindir / "pg_ctl"),
            "-D",
            str(base / "data"),
            "-l",
            str(base / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = PgServer(bindir, base, port, as_pg)
    deadline = time.time() + 30
    while True:
        try:
            server.new_database()
            break
        except Exception:  # noqa: BLE001 - not accepting connections yet
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    return server
