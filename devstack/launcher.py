"""`make run`: the whole system in the foreground.

Starts PostgreSQL (unless DATABASE_URL is set) and the Tansu broker (unless KAFKA_BOOTSTRAP_SERVERS is set),
creates the topics, migrates, then runs ingest and scoring as child processes and restarts one that dies.
Every child stays in this process group, so Ctrl-C in the terminal reaches them all; SIGTERM to this
process is forwarded. Each child also gets SIGTERM should this process die without cleaning up (Linux).
The services are started by module name, never imported: `shared` depends on no service.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from devstack.embedded import (
    EMBEDDED_FETCH_MAX_WAIT_MS,
    EmbeddedBroker,
    EmbeddedPostgres,
    free_port,
    start_broker,
    start_postgres,
)
from shared.adapters.kafka import ensure_topics
from shared.logging import setup_logging
from shared.runtime import die_with_parent
from shared.settings import Settings, redacted_url

log = logging.getLogger("launcher")

# scoring instance i listens on SCORING_PORT + SCORING_PORT_STEP * i (devstack.runner waits on the same ports)
SCORING_PORT_STEP = 10


class Child:
    """One service process, restarted with back-off when it exits on its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.next_start = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, preexec_fn=die_with_parent)
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def poll(self) -> None:
        if self.proc is None or self.proc.poll() is None:
            return
        if self.next_start == 0.0:
            self.restarts += 1
            delay = min(30.0, 0.5 * 2 ** min(self.restarts, 6))
            log.warning("%s exited with %s; restarting in %.1fs", self.name, self.proc.returncode, delay)
            self.next_start = time.monotonic() + delay
        elif time.monotonic() >= self.next_start:
            self.next_start = 0.0
            self.start()

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout_s)
            self.proc.kill()
            self.proc.wait(5)


def _database(state_dir: Path, pg_port: int | None) -> tuple[str, EmbeddedPostgres]:
    import psycopg

    pg = start_postgres(state_dir / "pg" / "data", port=pg_port)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'loyalty'").fetchone() is None:
            conn.execute("CREATE DATABASE loyalty")
    return pg.url.rsplit("/", 1)[0] + "/loyalty", pg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("STATE_DIR", ".state")),
        help="where the embedded database keeps its data (default .state/)",
    )
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("EMBEDDED_PG_PORT", "0")) or None)
    parser.add_argument("--broker-port", type=int, default=int(os.environ.get("EMBEDDED_BROKER_PORT", "9092")))
    parser.add_argument("--scoring-instances", type=int, default=int(os.environ.get("SCORING_INSTANCES", "1")))
    args = parser.parse_args(argv)
    base = Settings()
    setup_logging(service="launcher", level=base.log_level, fmt=base.log_format)

    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s received: stopping everything", signal.Signals(signum).name)
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    started = time.monotonic()
    pg: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    children: list[Child] = []
    env = dict(os.environ)
    try:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        if base.database_url:
            database_url = base.database_url
            log.info("using the database at DATABASE_URL")
        else:
            database_url, pg = _database(args.state_dir, args.pg_port)
            log.info("embedded PostgreSQL: %s (data in %s)", redacted_url(database_url), pg.data_dir)
        if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
            bootstrap = base.kafka_bootstrap_servers
            log.info("using the broker at KAFKA_BOOTSTRAP_SERVERS=%s", bootstrap)
        else:
            broker = start_broker(port=_port_or_free(args.broker_port), log_path=args.state_dir / "broker.log")
            bootstrap = broker.bootstrap
            env.setdefault("CONSUMER_FETCH_MAX_WAIT_MS", str(EMBEDDED_FETCH_MAX_WAIT_MS))
            log.info("embedded broker (Tansu, in-memory): %s", bootstrap)
        env.update(DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
        settings = Settings(database_url=database_url, kafka_bootstrap_servers=bootstrap)
        ensure_topics(settings)
        subprocess.run(
            [sys.executable, "-m", "services.scoring.migrate"], env=env, check=True, preexec_fn=die_with_parent
        )
        if not settings.api_tokens:
            log.warning("API_TOKENS is not set: the /v1 API is open to anyone who can reach it")
        children.append(Child("ingest", [sys.executable, "-m", "services.ingest"], env))
        for i in range(args.scoring_instances):
            # extra instances share the group; each needs its own HTTP port
            port = settings.scoring_port + SCORING_PORT_STEP * i
            child_env = env if i == 0 else {**env, "SCORING_PORT": str(port)}
            children.append(Child(f"scoring-{i}", [sys.executable, "-m", "services.scoring"], child_env))
        for child in children:
            child.start()
        log.info(
            "system up in %.1fs: ingest on :%d, scoring on :%d; Ctrl-C stops it",
            time.monotonic() - started,
            settings.ingest_port,
            settings.scoring_port,
        )
        while not stopping:
            for child in children:
                child.poll()
            time.sleep(0.2)
        return 0
    except subprocess.CalledProcessError as exc:
        log.error("start-up step failed: %s", exc)
        return 1
    finally:
        for child in children:
            child.stop()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()
        log.info("stopped")


def _port_or_free(port: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            log.warning("port %d is taken; the embedded broker takes a free one", port)
            return free_port()


if __name__ == "__main__":
    raise SystemExit(main())
