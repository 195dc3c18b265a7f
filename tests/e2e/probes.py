"""What the containment and fuzz tests observe from outside: where each record they sent landed, the dead letters
by the source record they name, and whether a service process was restarted meanwhile."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from kafka import KafkaProducer

from tests.support import System, TopicReader, wait_until

SERVICES = ("ingest", "scoring")
_START = re.compile(r"^process_start_time_seconds\s+(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Placed:
    """A record as sent, and where the broker put it (the coordinates a dead letter names in its headers)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @property
    def coords(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


class Sender:
    """A kafka-python producer that tells where each record landed (acks=all, so the offset is final)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024
        )

    def send_all(self, records: Iterable[tuple[str, bytes | None, bytes, int | None]]) -> list[Placed]:
        """Send (topic, key, value, partition or None) in order with one flush; their placements, in order."""
        pending = [
            (self.producer.send(topic, key=key, value=value, partition=partition), key, value)
            for topic, key, value, partition in records
        ]
        self.producer.flush(30)
        out = []
        for future, key, value in pending:
            meta = future.get(timeout=0)
            out.append(Placed(meta.topic, meta.partition, meta.offset, key, value))
        return out

    def close(self) -> None:
        self.producer.close(5)


def headers_of(record: Any) -> dict[str, bytes]:
    return {name: value for name, value in (record.headers or [])}


class DeadLetters:
    """The dead-letter topic read from its beginning, indexed by the source record each letter names."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.reader = TopicReader(bootstrap, topic)

    def by_source(self) -> dict[tuple[str, int, int], list[Any]]:
        index: dict[tuple[str, int, int], list[Any]] = defaultdict(list)
        for rec in self.reader.poll():
            h = headers_of(rec)
            try:
                coords = (h["source.topic"].decode(), int(h["source.partition"]), int(h["source.offset"]))
            except (KeyError, ValueError, UnicodeDecodeError):
                coords = ("<no source headers>", -1, len(index))
            index[coords].append(rec)
        return index

    def of(self, placed: Placed | tuple[str, int, int], *, timeout_s: float = 20.0) -> Any:
        """The one dead letter of `placed`, once it is on the topic."""
        coords = placed.coords if isinstance(placed, Placed) else placed

        def probe() -> list[Any] | None:
            return self.by_source().get(coords)

        found = wait_until(probe, timeout_s=timeout_s, what=f"the dead letter of {coords}")
        assert len(found) == 1, f"{len(found)} dead letters for {coords}, expected one"
        return found[0]

    def close(self) -> None:
        self.reader.close()


def start_times(system: System) -> dict[str, float | None]:
    """`process_start_time_seconds` of each service (None where /metrics does not show it)."""
    out: dict[str, float | None] = {}
    for service in SERVICES:

        def metrics(service: str = service) -> str | None:
            try:
                r = system.get("/metrics", service=service)
            except httpx.HTTPError:
                return None  # restarting: the launcher brings it back after a back-off
            return r.text if r.status_code == 200 else None

        text = wait_until(metrics, timeout_s=30, what=f"{service} /metrics")
        found = _START.search(text)
        out[service] = float(found.group(1)) if found else None
    return out


def assert_no_restart(system: System, before: Mapping[str, float | None]) -> None:
    """Neither service was restarted since `before` was read: the same process answers, by its start time."""
    after = start_times(system)
    missing = [s for s in SERVICES if before[s] is None or after[s] is None]
    assert not missing, (
        f"/metrics of {missing} has no process_start_time_seconds (prometheus_client's process "
        "collector), so a restart cannot be ruled out"
    )
    assert after == before, f"a service restarted: process start times {dict(before)} -> {after}"


def customer_url(customer_id: str) -> str:
    """The path of GET /v1/customers/{id}, with the id percent-encoded (ids may hold '/', '?', '#', spaces); dots
    too, or the client would resolve an id of "." or ".." as a path segment before sending."""
    return "/v1/customers/" + quote(customer_id, safe="").replace(".", "%2E")


def customer(system: System, customer_id: str) -> dict[str, Any] | None:
    """GET /v1/customers/{id}: the body, or None on 404 and while the service does not answer (a restart is
    caught by `assert_no_restart`; a wait on it should end in its own timeout, not a connection error)."""
    try:
        r = system.get(customer_url(customer_id))
    except httpx.TransportError:
        return None
    if r.status_code == 404:
        return None
    assert r.status_code == 200, (customer_id, r.status_code, r.text[:300])
    return r.json()  # type: ignore[no-any-return]


def wait_customer(
    system: System,
    customer_id: str,
    check: Callable[[dict[str, Any]], bool] = lambda c: True,
    *,
    timeout_s: float = 20.0,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        got = customer(system, customer_id)
        return got if got is not None and check(got) else None

    return wait_until(probe, timeout_s=timeout_s, what=f"customer {customer_id!r}")
