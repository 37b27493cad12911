"""A throwaway PostgreSQL server for tests, CI and benchmarks.

    from pg_server import launch, PgUnavailable
    with launch() as pg:                      # PostgreSQL started in a temp dir (or PERF_ALERTS_TEST_PG)
        url = pg.create_database("my_test")   # postgresql://postgres@127.0.0.1:PORT/my_test_…
        ...
        pg.restart()                          # connections dropped, same port and data

`python tests/pg_server.py` starts one for a manual shell: it prints the URL and waits for Ctrl-C.

The server is the machine's PostgreSQL binaries (PATH, then the newest /usr/lib/postgresql/*/bin),
`initdb`'d into a fresh temp dir (trust authentication, C locale, UTF-8, `--no-sync`) and started
by `pg_ctl` on a free 127.0.0.1 port with durability off (fsync, synchronous_commit,
full_page_writes), its unix socket in the temp dir. As root, initdb/pg_ctl run as the `postgres`
OS user (`runuser`), which owns the temp dir. A small watchdog process stops the server and removes
the temp dir when the process that started it ends without cleaning up (killed, Ctrl-C).

`PERF_ALERTS_TEST_PG=postgresql://user@host:port/db` uses that server instead: databases are only
created (and dropped) on it; stop/start/restart are refused (`PgUnsupported`).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ENV_URL = "PERF_ALERTS_TEST_PG"
SUPERUSER = "postgres"  # the bootstrap role initdb creates (whatever the OS user)
OS_USER = "postgres"  # the OS user initdb/pg_ctl run as when this process is root
TEMPLATE = "perf_alerts_template"  # an empty database every test database is copied from

SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "128MB",
    "max_wal_size": "1GB",  # no checkpoint storms while test databases are created
    "log_min_messages": "warning",
    "log_connections": "off",
    "log_disconnections": "off",
    "timezone": "UTC",
}


class PgUnavailable(RuntimeError):
    """No PostgreSQL server can be had here (no binaries, no psycopg, initdb or start failed)."""


class PgUnsupported(RuntimeError):
    """The operation needs a server this process started (not one given by PERF_ALERTS_TEST_PG)."""


# --------------------------------------------------------------------------- binaries
def _version_key(bindir: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([\d.]+)/bin", bindir)
    return tuple(int(p) for p in m.group(1).split(".") if p) if m else (0,)


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: PATH first (symlinks followed, as
    /usr/local/bin/initdb → /usr/lib/postgresql/15/bin/initdb), then the newest
    /usr/lib/postgresql/*/bin (Debian's package does not put them on PATH)."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    candidates += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for d in candidates:
        if all(os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise PgUnavailable(f"psycopg is not installed ({e}); install perf-alerts[postgres]") from None
    return psycopg


_NAME_RE = re.compile(r"[^a-z0-9_]+")


def _db_name(hint: str | None) -> str:
    """A fresh, valid database name (≤ 63 bytes) that says which test made it."""
    base = _NAME_RE.sub("_", (hint or "db").lower()).strip("_")[:40] or "db"
    return f"t_{base}_{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- servers
class PgServer:
    """A PostgreSQL server to create test databases on: `url` is its admin database."""

    url: str
    owned = False  # True when this process started the server (restart/stop/start allowed)

    def __init__(self, url: str) -> None:
        self.url = url
        self.server_version = 0  # e.g. 150018, known after the first statement
        self._admin: Any = None
        self._lock = threading.Lock()
        self._created: set[str] = set()

    # -- databases -----------------------------------------------------------------------
    def url_for(self, dbname: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))

    def _execute(self, sql: str) -> None:
        """One statement on the admin connection (autocommit; reconnected after a restart)."""
        psycopg = _import_psycopg()
        with self._lock:
            for attempt in (1, 2):
                if self._admin is None or self._admin.closed:
                    self._admin = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                    self.server_version = int(self._admin.info.server_version)
                try:
                    self._admin.execute(sql)
                    return
                except psycopg.OperationalError:
                    self._admin.close()
                    self._admin = None
                    if attempt == 2:
                        raise

    def _template(self) -> str:
        return "template0"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (UTF-8, C collation) named after `name` plus a unique suffix;
        its URL. Copied from an empty template: a few milliseconds."""
        dbname = _db_name(name)
        if not self.server_version:
            self._execute("SELECT 1")  # connect: the server's version decides the statement
        # FILE_COPY (PostgreSQL 15+; the only way before) copies the template's files: with fsync off
        # faster than 15's default WAL_LOG for an empty database
        strategy = " STRATEGY FILE_COPY" if self.server_version >= 150000 else ""
        self._execute(f'CREATE DATABASE "{dbname}" TEMPLATE "{self._template()}"{strategy}')
        self._created.add(dbname)
        return self.url_for(dbname)

    def drop_database(self, name_or_url: str) -> None:
        """Drop a database made by create_database, disconnecting whoever is still on it."""
        dbname = urlsplit(name_or_url).path.lstrip("/") if "://" in name_or_url else name_or_url
        if self.server_version >= 130000:
            self._execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        else:  # no FORCE before 13: end the sessions first
            self._execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}'")
            self._execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        self._created.discard(dbname)

    # -- life cycle ----------------------------------------------------------------------
    def stop(self, mode: str = "fast") -> None:
        raise PgUnsupported(f"{ENV_URL} names a server this process did not start: it cannot be stopped")

    def start(self) -> None:
        raise PgUnsupported(f"{ENV_URL} names a server this process did not start: it cannot be started")

    def restart(self, mode: str = "fast") -> None:
        raise PgUnsupported(f"{ENV_URL} names a server this process did not start: it cannot be restarted")

    def _close_admin(self) -> None:
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None

    def cleanup(self) -> None:
        """Drop the databases this object created and close its connection."""
        for dbname in sorted(self._created):
            try:
                self.drop_database(dbname)
            except Exception:
                pass
        self._close_admin()

    close = cleanup

    def __enter__(self) -> "PgServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class ExternalPgServer(PgServer):
    """A server given by PERF_ALERTS_TEST_PG: databases are created and dropped on it, nothing else."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise PgUnavailable(f"{ENV_URL} must be a postgresql:// URL")
        super().__init__(url)
        try:
            self._execute("SELECT 1")
        except Exception as e:
            parts = urlsplit(url)
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if parts.password:
                detail = detail.replace(parts.password, "***")
            raise PgUnavailable(f"{ENV_URL}: cannot connect to {parts.hostname}:{parts.port or 5432}: {detail}") from None


class LocalPgServer(PgServer):
    """A PostgreSQL server initdb'd into a temp dir and run by pg_ctl; removed by cleanup()."""

    owned = True

    def __init__(self, bindir: Path | None = None, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        super().__init__("")  # the URL once the server listens
        _import_psycopg()
        found = bindir or find_bindir()
        if found is None:
            raise PgUnavailable(
                "no PostgreSQL binaries (initdb, pg_ctl, postgres on PATH or in /usr/lib/postgresql/*/bin); "
                "install them (Debian: apt-get install postgresql) or set " + ENV_URL)
        self.bindir = found
        self._as_other = os.geteuid() == 0
        if self._as_other:
            if shutil.which("runuser") is None:
                raise PgUnavailable("running as root and runuser is missing: cannot run initdb as another user")
            try:
                import pwd

                pw = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PgUnavailable(f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL as") from None
        self.dir = Path(tempfile.mkdtemp(prefix="perf-alerts-pg-"))
        self.datadir = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self.settings = {**SERVER_SETTINGS, "unix_socket_directories": str(self.dir), **(settings or {})}
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.running = False
        try:
            if self._as_other:
                os.chmod(self.dir, 0o700)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            t0 = time.perf_counter()
            self._run("initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust", "--no-sync",
                      "--encoding=UTF8", "--locale=C", "--no-instructions")
            self.initdb_seconds = time.perf_counter() - t0
            self._start_watchdog()
            # a port found free can be taken before the server binds it: try a few
            for attempt in range(5):
                self.port = port or _free_port()
                try:
                    t0 = time.perf_counter()
                    self.start()
                    self.start_seconds = time.perf_counter() - t0
                    break
                except PgUnavailable:
                    if port is not None or attempt == 4 or "already in use" not in self.log_tail():
                        raise
            self.url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
            self._execute(f'CREATE DATABASE "{TEMPLATE}" TEMPLATE template0')
            self._execute(f"ALTER DATABASE \"{TEMPLATE}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
        except BaseException:
            self.cleanup()
            raise

    def _template(self) -> str:
        return TEMPLATE

    # -- processes -----------------------------------------------------------------------
    def _cmd(self, exe: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / exe), *args]
        return ["runuser", "-u", OS_USER, "--", *cmd] if self._as_other else cmd

    def _run(self, exe: str, *args: str, timeout: float = 120) -> str:
        # cwd: the temp dir (the postgres user may not be allowed into this process's cwd)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        try:
            p = subprocess.run(self._cmd(exe, *args), cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PgUnavailable(f"{exe} failed: {e}") from None
        if p.returncode != 0:
            detail = (p.stderr or p.stdout).strip().splitlines()[-5:]
            tail = self.log_tail() if exe == "pg_ctl" else ""
            raise PgUnavailable(f"{exe} {args[0] if args else ''} exited {p.returncode}: " + " | ".join(detail)
                                + (f"\nserver log:\n{tail}" if tail else ""))
        return p.stdout

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _start_watchdog(self) -> None:
        """A process of its own session that waits for this one to end (EOF on its stdin, which
        only this process holds) and then stops the server and removes the temp dir — for a
        pytest run killed or interrupted before its cleanup ran."""
        stop = self._cmd("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "30")
        code = ("import shutil, subprocess, sys\n"
                "sys.stdin.buffer.read()\n"
                f"subprocess.run({stop!r}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd={str(self.dir)!r})\n"
                f"shutil.rmtree({str(self.dir)!r}, ignore_errors=True)\n")
        self._watchdog = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)

    def start(self) -> None:
        """Start the (stopped) server on its port; returns when it accepts connections."""
        opts = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items())
        self._run("pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                  "-s", "-o", f"-p {self.port} {opts}")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: "fast" disconnects clients and shuts down cleanly, "immediate" is a crash."""
        self._close_admin()
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "-s")
            self.running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop and start on the same port: every open connection is lost, the data stays."""
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its temp dir (idempotent)."""
        self._close_admin()
        self._created.clear()  # the whole server goes: no need to drop its databases one by one
        if getattr(self, "running", False):
            try:
                self.stop("immediate")
            except PgUnavailable:
                pass
        if self._watchdog is not None:
            assert self._watchdog.stdin is not None
            self._watchdog.stdin.close()  # the watchdog runs its stop (a no-op now) and removes the dir
            try:
                self._watchdog.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None
        shutil.rmtree(self.dir, ignore_errors=True)

    close = cleanup


# --------------------------------------------------------------------------- entry points
def launch() -> PgServer:
    """The server tests use: PERF_ALERTS_TEST_PG when set, else a new local one.
    Raises PgUnavailable with the reason when neither can be had."""
    url = os.environ.get(ENV_URL)
    return ExternalPgServer(url) if url else LocalPgServer()


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def main() -> int:
    try:
        t0 = time.perf_counter()
        server = launch()
        started = time.perf_counter() - t0
    except PgUnavailable as e:
        print(f"pg_server: {e}", file=sys.stderr)
        return 2
    with server:
        t0 = time.perf_counter()
        url = server.create_database("manual")
        created = time.perf_counter() - t0
        print(f"PostgreSQL ready in {started:.2f} s: {server.url}")
        print(f"a fresh database ({created * 1000:.0f} ms): {url}")
        print(f"  psql '{url}'   or   PERF_ALERTS_DB='{url}' perf-alerts …")
        if isinstance(server, LocalPgServer):
            print(f"data dir {server.datadir}, log {server.logfile}")
        print("Ctrl-C stops it and removes everything", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
