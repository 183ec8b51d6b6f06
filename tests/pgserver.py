"""A throwaway PostgreSQL server: ``initdb`` in a temporary folder, ``pg_ctl`` on a free
loopback port, stopped and deleted afterwards. Used by the storage tests (the
session fixture ``postgres_server``) and ``bench/sweep_scale.py``.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user
(made by Debian's ``postgresql`` package, which ``.ci/run`` installs when missing).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def pg_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (PATH, then Debian's versioned folders)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if
                    p.split("/")[-2].isdigit() else 0, reverse=True):
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


def unavailable() -> str | None:
    """Why no server can be started here (None: it can)."""
    if pg_bindir() is None:
        return "no PostgreSQL binaries (initdb/pg_ctl); install Debian's postgresql package"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'mnas-surrogate[postgres]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_database_at(url: str, name: str | None = None) -> str:
    """Create database ``name`` (random by default) on the server of SQLAlchemy ``url``; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    name = name or f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username,
                         password=u.password, dbname=u.database or "postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)


class PgServer:
    """A running server; :meth:`new_database` gives a fresh database's SQLAlchemy URL."""

    def __init__(self, *, durable: bool = False):
        why = unavailable()
        if why:
            raise RuntimeError(why)
        self.bindir = pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="mnas-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._as = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-instructions")
        opts = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.root}",
                "-c max_connections=200"]
        if not durable:  # a test server: nothing to keep across a crash of the machine
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", " ".join(opts), "start")

    def _run(self, tool: str, *args: str) -> None:
        p = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True, text=True,
                           cwd=self.root)
        if p.returncode != 0:
            raise RuntimeError(f"{tool} failed: {(p.stderr or p.stdout).strip()[-500:]}")

    def url(self, db: str = "postgres") -> str:
        """The SQLAlchemy URL of database ``db``."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{db}"

    def new_database(self, name: str | None = None) -> str:
        """Create a database (a fresh random name by default); its URL."""
        return new_database_at(self.url(), name)

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


try:
    import pytest
except ImportError:  # pragma: no cover - used from bench without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def postgres_server():
        """A PostgreSQL server for the session (skips, saying why, when none can start)."""
        why = unavailable()
        if why:
            pytest.skip(why)
        server = PgServer()
        try:
            yield server
        finally:
            server.stop()
