"""A run's Kafka traffic: the shop's `Feeder` writing the workload, and `TopicDump` reading an output topic to its
end for the oracle."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from devstack.runner import wait_until
from tests.chaos.oracle import Record, Sent


class Feeder(threading.Thread):
    """Sends the workload from a thread, paced at `rate` messages per second; `hold` pauses it."""

    def __init__(self, bootstrap: str, messages: Sequence[Sent], *, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.messages, self.rate = messages, rate
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=5,
            acks="all",
            retries=20,
            retry_backoff_ms=300,
            request_timeout_ms=30000,
            max_request_size=4 * 1024 * 1024,
            max_block_ms=120000,
        )
        self.sent = 0
        self.error: BaseException | None = None
        self.hold = threading.Event()  # set: wait before sending more
        self.holding = threading.Event()  # set by the feeder while it waits on `hold`
        self.done = threading.Event()
        self._abort = threading.Event()

    @property
    def progress(self) -> float:
        return self.sent / max(1, len(self.messages))

    def run(self) -> None:
        try:
            started = time.monotonic()
            chunk = max(1, int(self.rate / 20))
            for i in range(0, len(self.messages), chunk):
                while self.hold.is_set() and not self._abort.is_set():
                    self.holding.set()
                    self._abort.wait(0.05)
                self.holding.clear()
                if self._abort.is_set():
                    return
                futures = [self.producer.send(m.topic, key=m.key, value=m.value) for m in self.messages[i : i + chunk]]
                self.producer.flush(120)
                for f in futures:
                    f.get(timeout=0)
                self.sent = min(len(self.messages), i + chunk)
                ahead = self.sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    self._abort.wait(ahead)  # pacing of the load, not a wait for the system
        except BaseException as exc:  # noqa: BLE001 - reported by the harness
            self.error = exc
        finally:
            self.done.set()

    def close(self) -> None:
        self._abort.set()
        self.join(30)
        self.producer.close(5)


class TopicDump:
    """Reads a whole topic (all partitions, from the beginning) up to its current end, with headers."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024
        )
        parts = wait_until(lambda: self.consumer.partitions_for_topic(topic), timeout_s=30, what=f"{topic} metadata")
        self.tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.records: list[Record] = []

    def read_to_end(self, timeout_s: float = 120) -> list[Record]:
        ends = self.consumer.end_offsets(self.tps)

        def done() -> bool:
            for batch in self.consumer.poll(timeout_ms=200, max_records=20000).values():
                self.records.extend(
                    Record(key=r.key, value=r.value, headers=dict(r.headers), partition=r.partition, offset=r.offset)
                    for r in batch
                )
            return all(self.consumer.position(tp) >= ends[tp] for tp in self.tps)

        wait_until(done, timeout_s=timeout_s, interval_s=0, what=f"reading {self.topic} to its end")
        return self.records

    def close(self) -> None:
        self.consumer.close()
