"""A real PostgreSQL server for the tests: Debian's binaries, `initdb` in a temporary directory,
listening on a free port of 127.0.0.1 only. scripts/test.sh installs the `postgresql` package when
it is missing; a server that cannot start fails the test with the reason, it never skips.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "tieout"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _bindir() -> Path:
    for candidate in (shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)):
        if candidate:
            return Path(candidate).resolve().parent
    pytest.fail("PostgreSQL server binaries not found (pg_ctl): scripts/test.sh installs Debian's `postgresql`; "
                "run it, or `apt-get install postgresql`", pytrace=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package creates the `postgres` account.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        if log is not None and log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        pytest.fail(f"PostgreSQL test server: {what} failed (exit {done.returncode}): {detail}", pytrace=False)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="tieout-pg-"))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    port = _free_port()
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
              "--no-locale", "--no-sync"], "initdb")
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
             "pg_ctl start", log)
        yield PostgresServer("127.0.0.1", port, SUPERUSER)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
