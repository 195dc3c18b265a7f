"""The outbox relay in a process of its own, started and supervised by each scoring process.

As a thread of the scoring process, the relay's Python (building record batches, reading the claimed rows) held
the GIL for about a seventh of the process's time, and the thread switches cost the scoring transaction more
than that. As a child process it runs on the other core. Nothing else changes: it is still one relay per
scoring instance, one publishing at a time (the advisory lock in `relay.publish_once`).

Two pipes join the processes. Down the wake pipe scoring writes a byte after each committed batch (the relay
starts a pass at once instead of after its idle wait); up the report pipe the relay writes one line per pass it
published (`published <topic> <count>`) and per backlog count (`backlog <count>`), which scoring turns into its
own `/metrics`, so dashboards and alerts see one scoring service as before.

Life cycle: the relay exits when scoring stops it (SIGTERM: after the pass in hand), when the wake pipe closes
(scoring is gone, even by kill -9), or on an error it does not retry. Scoring starts a new one when it exits on
its own, with a growing delay. A `relay.after_publish` fault kills both processes, as it did when they were one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from types import FrameType

from services.scoring.relay import Relay
from shared.adapters.db import make_engine
from shared.adapters.kafka import make_batch_producer
from shared.adapters.metrics import Metrics
from shared.faults import Faults
from shared.logging import setup_logging
from shared.runtime import die_with_parent, tune_gc
from shared.settings import Settings

log = logging.getLogger(__name__)

_MAX_RESTART_DELAY_S = 30.0


class RelayProcess:
    """Scoring's side: starts the relay process, wakes it, turns its reports into metrics, restarts it if it dies."""

    def __init__(self, *, metrics: Metrics, env: dict[str, str] | None = None) -> None:
        self.metrics = metrics
        self.env = env
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._wake_fd: int | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a start and a stop never cross: stop() sees every process started
        self._supervisor = threading.Thread(target=self._supervise, name="relay-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        """The running relay process's pid, if one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the relay process and the thread that reads its reports."""
        self._supervisor.start()

    def wake(self) -> None:
        """Tell the relay a batch just committed; never blocks."""
        fd = self._wake_fd
        if fd is None:
            return
        try:
            os.write(fd, b"!")
        except BlockingIOError:
            return  # the pipe is full of wake-ups the relay has not read yet: one more adds nothing
        except OSError as exc:
            # the relay is gone and the supervisor is starting another one, which begins with a pass anyway
            log.debug("relay wake-up not delivered: %s", exc)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the relay (it finishes its pass), wait for it, and stop supervising."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("relay did not stop in %.0fs; killing it", timeout_s)
                proc.kill()
                proc.wait(5)
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)

    def _supervise(self) -> None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                report_fd = self._spawn()
            with os.fdopen(report_fd, "rb") as reports:
                for line in reports:  # until the relay process exits and its end of the pipe closes
                    self._apply(line)
            assert self._proc is not None
            code = self._proc.wait()
            self._close_wake()
            if self._stopping.is_set():
                return
            self.restarts += 1
            delay = min(_MAX_RESTART_DELAY_S, 0.5 * 2 ** min(self.restarts, 6))
            log.error("relay process exited with %s; starting another in %.1fs", code, delay)
            self._stopping.wait(delay)

    def _spawn(self) -> int:
        wake_read, wake_write = os.pipe()
        report_read, report_write = os.pipe()
        os.set_blocking(wake_write, False)
        argv = [
            sys.executable,
            "-m",
            "services.scoring.relay_process",
            "--wake-fd",
            str(wake_read),
            "--report-fd",
            str(report_write),
            "--parent-pid",
            str(os.getpid()),
        ]
        try:
            self._proc = subprocess.Popen(
                argv, pass_fds=(wake_read, report_write), env=self.env, stdin=subprocess.DEVNULL
            )
        finally:
            os.close(wake_read)
            os.close(report_write)
        self._wake_fd = wake_write
        log.info("relay process started (pid %d)", self._proc.pid)
        return report_read

    def _close_wake(self) -> None:
        fd, self._wake_fd = self._wake_fd, None
        if fd is not None:
            os.close(fd)

    def _apply(self, line: bytes) -> None:
        kind, _, rest = line.decode().strip().partition(" ")
        if kind == "published":
            topic, _, count = rest.rpartition(" ")
            self.metrics.relay_published.labels(topic=topic).inc(int(count))
        elif kind == "backlog":
            self.metrics.outbox_backlog.set(int(rest))
        else:
            log.warning("unexpected report from the relay process: %r", line[:200])


def main(argv: list[str] | None = None) -> None:
    """The relay process: `python -m services.scoring.relay_process`, started by scoring (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m services.scoring.relay_process")
    parser.add_argument("--wake-fd", type=int, required=True)
    parser.add_argument("--report-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    if os.getppid() != args.parent_pid:
        raise SystemExit("the scoring process that started this relay is already gone")
    settings = Settings()
    setup_logging(service="relay", level=settings.log_level, fmt=settings.log_format)
    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set")
    reports = os.fdopen(args.report_fd, "w", buffering=1)  # a line per write: scoring reads them as they come
    engine = make_engine(settings.database_url)
    producer = make_batch_producer(settings)

    def published(counts: Counter[str]) -> None:
        reports.write("".join(f"published {topic} {n}\n" for topic, n in counts.items()))

    def backlog(rows: int) -> None:
        reports.write(f"backlog {rows}\n")

    relay = Relay(
        engine=engine,
        producer=producer,
        batch_size=settings.relay_batch_size,
        idle_s=settings.relay_idle_poll_ms / 1000,
        dedupe_retention_days=settings.dedupe_retention_days,
        housekeeping_interval_s=settings.housekeeping_interval_s,
        facts_topic=settings.topic_scoring_input,
        record_bytes=settings.producer_batch_size,
        on_published=published,
        on_backlog=backlog,
        faults=Faults(settings.fault_injection, also_kill=args.parent_pid),
    )

    def wake_ups() -> None:
        with os.fdopen(args.wake_fd, "rb", buffering=0) as pipe:
            while pipe.read(4096):
                relay.wake()
        log.info("scoring closed the wake-up pipe: stopping")
        relay.stop()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the pass in hand and stopping", signal.Signals(signum).name)
        relay.stop()

    signal.signal(signal.SIGTERM, _stop)
    # Ctrl-C reaches the whole process group: scoring stops this process itself once its batch is done
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=wake_ups, name="wake-ups", daemon=True).start()
    tune_gc(gen0_threshold=settings.gc_gen0_threshold)
    log.info("relay started", extra={"scoring_pid": args.parent_pid})
    try:
        relay.run()
    finally:
        producer.close()
        engine.dispose()
        with contextlib.suppress(BrokenPipeError):  # scoring is gone: nobody is left to read the last lines
            reports.close()
        log.info("relay stopped")


if __name__ == "__main__":
    main()
