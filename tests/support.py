"""Helpers for tests that drive the system from outside: Kafka in, Kafka and HTTP out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from devstack.embedded import free_port
from shared.runtime import die_with_parent

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def wait_until(check: Callable[[], T | None], *, timeout_s: float = 20.0, interval_s: float = 0.1,
               what: str = "condition", tick: Callable[[], None] | None = None) -> T:
    """Poll `check` (calling `tick` before each poll) until it returns something truthy, or fail after
    `timeout_s` (never a fixed sleep). The one polling helper of the tests, the fault harness and the bench."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


def tail_of(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file, or "" when there is none yet."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class Shop:
    """The shop's backend: sends events to the shop topics."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
        self.topics = topics

    def send(self, event: dict[str, Any] | bytes, *, topic: str | None = None, key: bytes | None = None) -> None:
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        kind = None if isinstance(event, bytes) else event.get("type")
        if key is None and not isinstance(event, bytes):
            # as a shop would: keyed by customer, so one customer's events keep their order on the topic
            key = str(event.get("customer_id", "")).encode()
        self.producer.send(topic or self.topics.get(str(kind), self.topics["purchase"]), key=key, value=value)

    def send_all(self, events: Iterable[dict[str, Any]]) -> None:
        for e in events:
            self.send(e)
        self.flush()

    def flush(self) -> None:
        self.producer.flush(10)

    def close(self) -> None:
        self.producer.close(5)


class TopicReader:
    """Reads a whole topic from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      consumer_timeout_ms=200)
        parts = wait_until(lambda: self.consumer.partitions_for_topic(topic), what=f"metadata of {topic}")
        self.tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.records: list[Any] = []

    def poll(self) -> list[Any]:
        """Everything read so far (reads what is new first)."""
        for batch in self.consumer.poll(timeout_ms=200, max_records=10000).values():
            self.records.extend(batch)
        return self.records

    def json_values(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.poll()]

    def close(self) -> None:
        self.consumer.close()


class System:
    """The system started as `make run` starts it (`python -m devstack.launcher`), in a subprocess."""

    def __init__(self, *, env: dict[str, str], state_dir: Path, unset: tuple[str, ...] = ()) -> None:
        self.ingest_port = free_port()
        self.scoring_port = free_port()
        self.env = {**os.environ, **env, "INGEST_PORT": str(self.ingest_port),
                    "SCORING_PORT": str(self.scoring_port), "STATE_DIR": str(state_dir),
                    "LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"}
        for name in unset:
            self.env.pop(name, None)
        self.log_path = state_dir / "system.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 60.0) -> System:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "devstack.launcher"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)
        log.close()
        try:
            wait_until(lambda: self.ready("ingest") and self.ready("scoring"), timeout_s=timeout_s,
                       interval_s=0.2, what=f"system ready (log: {self.log_path})")
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the launcher's whole process group (a test that failed to start must leave nothing)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def url(self, service: str, path: str) -> str:
        port = self.ingest_port if service == "ingest" else self.scoring_port
        return f"http://127.0.0.1:{port}{path}"

    def get(self, path: str, *, service: str = "scoring", **kw: Any) -> httpx.Response:
        return httpx.get(self.url(service, path), timeout=10, **kw)

    def ready(self, service: str) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"launcher exited with {self.proc.returncode}; log: {self.log_tail()}")
        try:
            return self.get("/readyz", service=service).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        return tail_of(self.log_path, lines)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, *, timeout_s: float = 30.0) -> int:
        """SIGTERM the launcher and wait for it; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                raise AssertionError(f"launcher did not stop within {timeout_s}s: {self.log_tail()}") from None
        return self.proc.returncode

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        r = self.get(f"/v1/customers/{customer_id}")
        return r.json() if r.status_code == 200 else None

    def wait_customer(self, customer_id: str, check: Callable[[dict[str, Any]], bool] = lambda c: True,
                      *, timeout_s: float = 20.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            c = self.customer(customer_id)
            return c if c is not None and check(c) else None

        return wait_until(probe, timeout_s=timeout_s, what=f"customer {customer_id}")


def purchase(customer_id: str, *, at: str = "2026-06-01T10:00:00Z", amount: str = "100.00", cost: str = "0",
             discount: str = "0", refund: bool = False, event_id: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id or uid("p-"), "type": "purchase", "customer_id": customer_id, "occurred_at": at,
            "amount": amount, "cost": cost, "discount": discount, "currency": "EUR", "refund": refund}


def referral(customer_id: str, referred: str, *, at: str = "2026-06-01T10:00:00Z", reward_cost: str = "0",
             event_id: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id or uid("r-"), "type": "referral", "customer_id": customer_id,
            "referred_customer_id": referred, "occurred_at": at, "reward_cost": reward_cost}


def complaint(customer_id: str, *, at: str = "2026-06-01T10:00:00Z", handling_cost: str = "0",
              severity: str = "medium", event_id: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id or uid("c-"), "type": "complaint", "customer_id": customer_id, "occurred_at": at,
            "severity": severity, "handling_cost": handling_cost}
