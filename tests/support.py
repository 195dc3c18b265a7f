"""Helpers for tests that drive the system from outside: Kafka in, Kafka and HTTP out.

`wait_until` and `tail_of` live in devstack.runner, with the processes they wait on; they are imported from here
too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from devstack.runner import ROOT, Stack, tail_of, wait_until

__all__ = ["ROOT", "Shop", "System", "TopicReader", "complaint", "purchase", "referral", "tail_of", "uid", "wait_until"]


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
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=200)
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
        self.stack = Stack(env=env, state_dir=state_dir, unset=unset)
        self.ingest_port, self.scoring_port = self.stack.ingest_port, self.stack.scoring_port
        self.env = self.stack.env
        self.log_path = self.stack.log_path

    @property
    def pid(self) -> int:
        return self.stack.pid

    def start(self, *, timeout_s: float = 60.0) -> System:
        self.stack.start(timeout_s=timeout_s)
        return self

    def kill(self) -> None:
        """SIGKILL the launcher's whole process group."""
        self.stack.kill()

    def url(self, service: str, path: str) -> str:
        port = self.ingest_port if service == "ingest" else self.scoring_port
        return f"http://127.0.0.1:{port}{path}"

    def get(self, path: str, *, service: str = "scoring", **kw: Any) -> httpx.Response:
        return httpx.get(self.url(service, path), timeout=10, **kw)

    def log_tail(self, lines: int = 40) -> str:
        return self.stack.log_tail(lines)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, *, timeout_s: float = 30.0) -> int:
        """SIGTERM the launcher and wait for it; returns its exit code."""
        if not self.stack.stop(timeout_s):
            raise AssertionError(f"launcher did not stop within {timeout_s}s: {self.log_tail()}")
        code = self.stack.process.exit_code
        assert code is not None
        return code

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        r = self.get(f"/v1/customers/{customer_id}")
        return r.json() if r.status_code == 200 else None

    def wait_customer(
        self, customer_id: str, check: Callable[[dict[str, Any]], bool] = lambda c: True, *, timeout_s: float = 20.0
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            c = self.customer(customer_id)
            return c if c is not None and check(c) else None

        return wait_until(probe, timeout_s=timeout_s, what=f"customer {customer_id}")


def purchase(
    customer_id: str,
    *,
    at: str = "2026-06-01T10:00:00Z",
    amount: str = "100.00",
    cost: str = "0",
    discount: str = "0",
    refund: bool = False,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or uid("p-"),
        "type": "purchase",
        "customer_id": customer_id,
        "occurred_at": at,
        "amount": amount,
        "cost": cost,
        "discount": discount,
        "currency": "EUR",
        "refund": refund,
    }


def referral(
    customer_id: str,
    referred: str,
    *,
    at: str = "2026-06-01T10:00:00Z",
    reward_cost: str = "0",
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or uid("r-"),
        "type": "referral",
        "customer_id": customer_id,
        "referred_customer_id": referred,
        "occurred_at": at,
        "reward_cost": reward_cost,
    }


def complaint(
    customer_id: str,
    *,
    at: str = "2026-06-01T10:00:00Z",
    handling_cost: str = "0",
    severity: str = "medium",
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or uid("c-"),
        "type": "complaint",
        "customer_id": customer_id,
        "occurred_at": at,
        "severity": severity,
        "handling_cost": handling_cost,
    }
