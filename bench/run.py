"""`make bench`: throughput and latency of the whole system against two baselines, in one run.

    .venv/bin/python -m bench.run [--events 60000] [--customers 12000] [--seed 7] [--latency-seconds 20]
                                  [--latency-rate 100] [--skip-scaleout] [--skip-naive] [--keep]

What it does (docs/performance.md explains each figure):

1. Starts one PostgreSQL (embedded, as `make run` starts it) and, per system under test, the system exactly as
   `make run` does (`python -m devstack.launcher` in its own process group, its own STATE_DIR, broker port and
   HTTP ports, DATABASE_URL pointing at a fresh database on that server).
2. THROUGHPUT: sends N generated shop events as fast as a batching lz4 producer can, while the system runs;
   events/s = N / (first send -> every event applied: all primary and referred facts in processed_events,
   every referral conversion fed back and applied, the outbox empty).
3. BASELINE 1: a bare kafka-python consumer reads and json-decodes the same N messages (msgs/s).
4. LATENCY: first purchases of new customers at a fixed rate; each yields a visitor->first_purchase stage
   change, read from loyalty.stage-changes and matched by cause_event_id: p50/p99/max of send -> receive.
5. PEAK RSS and CPU seconds of every process of the system, sampled during the run.
6. BASELINE 2: the naive path (bench/naive.py: one transaction per event) over a sample, on a fresh database.
7. SCALE-OUT: the same input into a second system with TOPIC_PARTITIONS=12 and SCORING_INSTANCES=2; its
   throughput, and a digest of every customer's state and rung set, which must equal the first run's.

Prints one table and writes bench/results/<timestamp>.json and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.generator import generate, rfc3339, summary
from devstack.embedded import EmbeddedPostgres, create_database, free_port, start_postgres
from shared.adapters.batches import RecordBatchProducer
from shared.adapters.kafka import partition_for
from shared.runtime import die_with_parent
from shared.settings import Settings, libpq_url
from tests.support import tail_of, wait_until

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")

TARGET_EVENTS_PER_S = 8000.0
TARGET_P99_S = 1.0
TARGET_NAIVE_RATIO = 8.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


# ---------------------------------------------------------------------------------------------------------
# the system under test


class SystemUnderTest:
    """`python -m devstack.launcher` (what `make run` starts) in its own process group, on a given database."""

    def __init__(self, *, name: str, workdir: Path, database_url: str, partitions: int, instances: int,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.database_url = database_url
        self.instances = instances
        self.broker_port = free_port()
        self.ingest_port = free_port()
        self.scoring_port = _port_with_spare(instances)
        self.settings = Settings()  # topic names and group ids: the defaults, as `make run` uses them
        self.env = {
            **os.environ,
            "STATE_DIR": str(workdir / "state"),
            "DATABASE_URL": database_url,
            "EMBEDDED_BROKER_PORT": str(self.broker_port),
            "INGEST_PORT": str(self.ingest_port),
            "SCORING_PORT": str(self.scoring_port),
            "TOPIC_PARTITIONS": str(partitions),
            "SCORING_INSTANCES": str(instances),
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the launcher starts its own broker
        self.log_path = workdir / "system.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._processes: dict[str, psutil.Process] = {}
        self._processes_until = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def start(self, *, timeout_s: float = 120.0) -> SystemUnderTest:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "devstack.launcher"], cwd=ROOT, env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)
        out.close()
        try:
            ports = [self.ingest_port] + [self.scoring_port + 10 * i for i in range(self.instances)]
            wait_until(lambda: all(self._ready(p) for p in ports), timeout_s=timeout_s, interval_s=0.25,
                       what=f"{self.name} ready (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise
        return self

    def scoring_batches(self) -> tuple[float, float, float]:
        """Over every scoring instance so far: (transactions, facts, seconds), from their /metrics."""
        totals = [0.0, 0.0, 0.0]
        wanted = {"loyalty_batch_size_messages_count": 0, "loyalty_batch_size_messages_sum": 1,
                  "loyalty_batch_duration_seconds_sum": 2}
        for i in range(self.instances):
            body = httpx.get(f"http://127.0.0.1:{self.scoring_port + 10 * i}/metrics", timeout=5).text
            for line in body.splitlines():
                name, _, rest = line.partition("{")
                if name in wanted and 'service="scoring"' in rest:
                    totals[wanted[name]] += float(rest.rsplit(" ", 1)[1])
        return totals[0], totals[1], totals[2]

    def _ready(self, port: int) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"launcher exited with {self.proc.returncode}; log: {self.log_tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        return tail_of(self.log_path, lines)

    def processes(self) -> dict[str, psutil.Process]:
        """The launcher's processes by role: launcher, broker, ingest, scoring-0, relay-0, scoring-1, relay-1, ...

        Looked up again every 5 s or when one of them has exited: finding a process's children reads every
        process of the machine, which the sampler did twice a second on the CPU it measures.
        """
        known = self._processes
        if known and time.monotonic() < self._processes_until and all(p.is_running() for p in known.values()):
            return known
        self._processes = self._find_processes()
        self._processes_until = time.monotonic() + 5.0
        return self._processes

    def _find_processes(self) -> dict[str, psutil.Process]:
        if self.proc is None:
            return {}
        try:
            launcher = psutil.Process(self.proc.pid)
            children = launcher.children(recursive=True)
        except psutil.NoSuchProcess:
            return {}
        out: dict[str, psutil.Process] = {"launcher": launcher}
        scoring = relays = 0
        for child in sorted(children, key=lambda p: p.pid):
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "services.ingest" in cmd:
                out["ingest"] = child
            elif "services.scoring.migrate" in cmd:
                continue
            elif "services.scoring.relay_process" in cmd:  # each scoring process's child
                out[f"relay-{relays}"] = child
                relays += 1
            elif "services.scoring" in cmd:
                out[f"scoring-{scoring}"] = child
                scoring += 1
            elif "broker" in cmd and "--listener-url" in cmd:
                out["broker"] = child
        return out

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM the launcher, wait, then make sure nothing of its process group is left."""
        if self.proc is None:
            return {}
        pgid = self.proc.pid
        report: dict[str, Any] = {"clean": True}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                report["clean"] = False
                log(f"{self.name}: launcher did not stop within {timeout_s}s; killing its group")
                os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(10)
        report["exit_code"] = self.proc.returncode
        deadline = time.monotonic() + 10
        left: list[int] = []
        while time.monotonic() < deadline:
            left = _group_members(pgid)
            if not left:
                break
            time.sleep(0.2)
        if left:
            report["clean"] = False
            report["left_over"] = left
            log(f"{self.name}: processes left in the group after stop: {left}; killing them")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return report


def _group_members(pgid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


def _port_with_spare(instances: int) -> int:
    """A free port p with p + 10*i free too (the launcher gives scoring instance i port p + 10*i)."""
    import socket

    for _ in range(200):
        port = free_port()
        ok = True
        for i in range(1, instances):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10 * i))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no free port block")


# ---------------------------------------------------------------------------------------------------------
# sampling: RSS and CPU of every process


@dataclass
class ResourceSampler:
    """Samples peak RSS (VmHWM every 0.5 s, PostgreSQL's PSS every 2 s) and CPU seconds of each role.

    VmHWM is the kernel's own peak, so sampling it often only matters for a process that is replaced. PSS needs
    /proc/<pid>/smaps (~3 ms a backend), which at every 0.5 s cost the bench ~5 % of a core during a run.
    """

    system: SystemUnderTest
    pg: EmbeddedPostgres
    interval_s: float = 0.5
    pss_every: int = 4
    peak_rss: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ResourceSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return self.peaks()

    def peaks(self) -> dict[str, float]:
        """Peak RSS so far of each role, MiB."""
        self.sample()
        return {role: round(n / 2**20, 1) for role, n in sorted(self.peak_rss.items())}

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            n += 1
            self.sample(pss=n % self.pss_every == 0)

    def _pg_processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pg.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self, *, pss: bool = True) -> None:
        for role, proc in self.system.processes().items():
            hwm = _vm_hwm(proc.pid)
            if hwm:
                self.peak_rss[role] = max(self.peak_rss.get(role, 0), hwm)
        if pss:
            self._sample_pss()

    def _sample_pss(self) -> None:
        pss = 0
        for proc in self._pg_processes():
            try:
                pss += proc.memory_full_info().pss
            except psutil.Error:
                continue
        self.peak_rss["postgres (PSS, all backends)"] = max(self.peak_rss.get("postgres (PSS, all backends)", 0), pss)

    def run_queue_seconds(self) -> dict[str, float]:
        """Seconds each role's threads sat runnable but waiting for a CPU (schedstat): the cost of a noisy box."""
        out: dict[str, float] = {}
        for role, proc in self.system.processes().items():
            out[role] = _run_delay(proc.pid)
        out["postgres"] = sum(_run_delay(p.pid) for p in self._pg_processes())
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user+system) so far of each role; PostgreSQL summed over its processes."""
        out: dict[str, float] = {}
        for role, proc in self.system.processes().items():
            try:
                t = proc.cpu_times()
                out[role] = t.user + t.system
            except psutil.Error:
                continue
        total = 0.0
        for proc in self._pg_processes():
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        out["postgres"] = total
        me = psutil.Process().cpu_times()
        out["bench (producer, polling)"] = me.user + me.system
        return out


def _run_delay(pid: int) -> float:
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                    total += int(fh.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return 0.0
    return total / 1e9


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------------------------------
# the phases


Message = tuple[str, bytes, bytes]  # topic, key, value


def to_messages(stream: list[dict[str, Any]], settings: Settings) -> list[Message]:
    topics = {"purchase": settings.topic_purchases, "referral": settings.topic_referrals,
              "complaint": settings.topic_complaints}
    return [(topics[e["type"]], e["customer_id"].encode(), json.dumps(e, separators=(",", ":")).encode())
            for e in stream]


def shop_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 20, "batch_size": 1 << 20,
        "compression_type": "lz4", "max_request_size": 8 << 20, "metrics_enabled": False,
    }
    opts.update(overrides)
    return KafkaProducer(**opts)


def shop_batches(bootstrap: str) -> RecordBatchProducer:
    """The shop's records as whole lz4 record batches (shared/adapters/batches.py): ~10 µs a record, not 40-55."""
    return RecordBatchProducer(client_config={"bootstrap_servers": bootstrap.split(",")}, compression="lz4",
                               batch_bytes=1 << 20, timeout_ms=30_000, client_id="bench-shop")


class Progress:
    """Read-only counts in the system's database: how far it has applied what was sent."""

    _SQL = """
        SELECT count(*) FILTER (WHERE role = 'primary'), count(*) FILTER (WHERE role = 'referred'),
               count(*) FILTER (WHERE role = 'converted'), (SELECT (min(id) IS NOT NULL)::int FROM outbox)
        FROM processed_events
    """

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(libpq_url(database_url), autocommit=True)

    def applied(self, event_ids: list[str]) -> int:
        """How many of `event_ids` scoring has applied: index lookups only, cheap enough to poll often."""
        row = self.conn.execute("SELECT count(*) FROM processed_events WHERE role = 'primary' "
                                "AND event_id = ANY(%(ids)s)", {"ids": event_ids}).fetchone()
        assert row is not None
        return int(row[0])

    def unpublished(self) -> bool:
        """Whether any outbox row still waits to be published.

        From the primary key, never a count: the relay deletes what it published, and until autovacuum runs the
        heap is mostly dead rows, which `count(*)` every 20 ms scanned (one catch-up phase spent 105 s of
        PostgreSQL CPU on it).
        """
        row = self.conn.execute("SELECT min(id) IS NOT NULL FROM outbox").fetchone()
        assert row is not None
        return bool(row[0])

    def counts(self) -> tuple[int, int, int, int]:
        """(primary facts, referred facts, conversions applied, 1 if the outbox holds any row else 0)."""
        row = self.conn.execute(self._SQL).fetchone()
        assert row is not None
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def close(self) -> None:
        self.conn.close()


def warm_up(sut: SystemUnderTest, progress: Progress, *, tag: str) -> None:
    """One event through the whole system, so that both consumer groups are joined before the clock starts."""
    producer = shop_producer(sut.bootstrap, linger_ms=0)
    event = {"event_id": f"warmup-{tag}", "type": "complaint", "customer_id": f"warmup-{tag}",
             "occurred_at": rfc3339(datetime.now(UTC)), "severity": "low"}
    before = progress.counts()[0]
    producer.send(sut.settings.topic_complaints, json.dumps(event).encode())
    producer.flush(30)
    producer.close(5)
    wait_until(lambda: progress.counts()[0] > before, timeout_s=120, interval_s=0.2,
               what=f"warm-up event through {sut.name}")
    if sut.instances > 1:
        time.sleep(3.0)  # let the last instance's join and the rebalance settle


def measure_throughput(sut: SystemUnderTest, messages: list[Message], expect: dict[str, int], *,
                       progress: Progress, sampler: ResourceSampler | None, timeout_s: float,
                       profile_dir: Path | None = None, shop: str = "batches") -> dict[str, Any]:
    recordings = []
    if profile_dir is not None:
        from bench import profile

        pids = {role: p.pid for role, p in sut.processes().items()
                if role == "ingest" or role.startswith(("scoring", "relay"))}
        recordings = profile.start(pids, profile_dir)
        time.sleep(1.0)  # py-spy attaches
    load_before = os.getloadavg()[0]
    batches_before = sut.scoring_batches()
    base = progress.counts()
    producer = shop_producer(sut.bootstrap) if shop == "kafka-python" else shop_batches(sut.bootstrap)
    routed = _routed(producer, messages)
    tail = _last_ids(messages)
    # CPU counted from here: the preparation above is the bench's, before the clock
    cpu_before = sampler.cpu_seconds() if sampler else {}
    wait_before = sampler.run_queue_seconds() if sampler else {}
    log(f"{sut.name}: sending {len(messages)} events ({shop} producer)")
    started = time.perf_counter()
    send = producer.send
    for topic, key, value, partition in routed:
        send(topic, key=key, value=value, partition=partition)
    producer.flush(120)
    sent_s = time.perf_counter() - started
    log(f"{sut.name}: all sent in {sent_s:.2f}s ({len(messages) / sent_s:.0f} msgs/s); waiting for the effects")
    done, samples = _wait_applied(progress, base=base, expect=expect, tail=tail, started=started,
                                  timeout_s=timeout_s)
    elapsed = time.perf_counter() - started
    cpu_after = sampler.cpu_seconds() if sampler else {}
    wait_after = sampler.run_queue_seconds() if sampler else {}
    profiles = {}
    if recordings:
        from bench import profile

        profiles = profile.stop(recordings)
    producer.close(10)
    transactions, facts, tx_seconds = (a - b for a, b in zip(sut.scoring_batches(), batches_before, strict=True))
    cpu = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after}
    final = progress.counts()
    result = {
        "events": len(messages), "done": done, "seconds": round(elapsed, 3), "send_seconds": round(sent_s, 3),
        "shop_producer": shop,
        "events_per_s": round(len(messages) / elapsed, 1),
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_us_per_event": {k: round(v * 1e6 / len(messages)) for k, v in cpu.items()},
        "cpu_us_per_event_total": round(sum(cpu.values()) * 1e6 / len(messages)),
        "cpu_busy_share_of_wall": {k: round(v / elapsed, 2) for k, v in cpu.items()},
        "run_queue_wait_seconds": {k: round(wait_after[k] - wait_before.get(k, 0.0), 2) for k in wait_after},
        "profile": profiles,
        "scoring_transactions": {"count": int(transactions),
                                 "facts_each": round(facts / transactions, 1) if transactions else None,
                                 "ms_each": round(tx_seconds * 1000 / transactions, 1) if transactions else None},
        "applied_primary": final[0] - base[0], "expected_primary": expect["distinct_events"],
        "conversions": final[2] - base[2], "cpu_seconds": cpu,
        "progress": samples[:: max(1, len(samples) // 60)],
    }
    log(f"{sut.name}: {'done' if done else 'NOT DONE'} in {elapsed:.2f}s: {result['events_per_s']:.0f} events/s; "
        f"cpu seconds {cpu}; waiting for a CPU {result['run_queue_wait_seconds']}")
    return result


def _routed(producer: KafkaProducer | RecordBatchProducer,
            messages: list[Message]) -> list[tuple[str, bytes, bytes, int]]:
    """Each message with the partition the shop's partitioner would pick: the shop's cost, paid before a clock."""
    counts = {t: len(producer.partitions_for(t)) for t in {m[0] for m in messages}}
    return [(topic, key, value, partition_for(key, counts[topic])) for topic, key, value in messages]


def _wait_applied(progress: Progress, *, base: tuple[int, int, int, int], expect: dict[str, int],
                  tail: list[str], started: float, timeout_s: float) -> tuple[bool, list[tuple[float, int]]]:
    """Wait until every effect of `expect` beyond `base` is visible; (done, [(seconds, applied), ...])."""
    target_primary = base[0] + expect["distinct_events"]
    target_referred = base[1] + expect["referrals"]
    target_converted = base[2] + expect["conversions"]
    deadline = started + timeout_s
    while time.perf_counter() < deadline and progress.applied(tail) < len(tail):
        # the full count scans processed_events and the outbox: a cheap probe first, so that the bench's own
        # polling does not load the database it measures (it only decides when the exact counts begin)
        time.sleep(0.1)
    samples: list[tuple[float, int]] = []
    while time.perf_counter() < deadline:
        if progress.unpublished():
            # stage changes still on their way out: an index-only look, every 20 ms, until the outbox is empty
            time.sleep(0.02)
            continue
        c = progress.counts()
        now = time.perf_counter() - started
        samples.append((round(now, 3), c[0] - base[0]))
        if c[0] >= target_primary and c[1] >= target_referred and c[2] >= target_converted and c[3] == 0:
            return True, samples
        # a count over processed_events costs the database a few ms: poll often only near the end
        rate = samples[-1][1] / now if now > 0 and samples[-1][1] > 0 else 0.0
        remaining = target_primary - c[0]
        time.sleep(min(0.5, max(0.05, remaining / rate / 3)) if rate else 0.2)
    return False, samples


def _last_ids(messages: list[Message], n: int = 500) -> list[str]:
    """The event ids of the last `n` distinct events sent: when they are applied, the end is near."""
    tail: list[str] = []
    for _, _, value in reversed(messages[-4 * n:]):
        event_id = json.loads(value)["event_id"]
        if event_id not in tail:
            tail.append(event_id)
    return tail[:n]


def measure_catch_up(sut: SystemUnderTest, messages: list[Message], expect: dict[str, int], *,
                     progress: Progress, sampler: ResourceSampler, timeout_s: float) -> dict[str, Any]:
    """The pipeline alone draining a backlog: ingest is paused while the shop writes N new events, then resumed.

    The shop's producer is done before the clock starts, so its CPU is not on the machine while the clock
    runs: this is the rate at which the system catches up after an outage, on the same 2 cores. Ingest is
    SIGSTOPped for the few seconds of writing (less than the 6 s session timeout, so the group stays as it is).
    """
    ingest = sut.processes()["ingest"]
    base = progress.counts()
    producer = shop_producer(sut.bootstrap)
    routed = _routed(producer, messages)
    tail = _last_ids(messages)
    log(f"{sut.name}: ingest paused; writing a backlog of {len(messages)} new events")
    paused = time.perf_counter()
    ingest.suspend()
    try:
        for topic, key, value, partition in routed:
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush(120)
    finally:
        cpu_before = sampler.cpu_seconds()
        started = time.perf_counter()
        ingest.resume()
    paused_s = started - paused
    if paused_s > 5.0:
        log(f"{sut.name}: ingest was paused {paused_s:.1f}s, near the session timeout: a rebalance may be timed too")
    producer.close(10)
    done, _ = _wait_applied(progress, base=base, expect=expect, tail=tail, started=started, timeout_s=timeout_s)
    elapsed = time.perf_counter() - started
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in sampler.cpu_seconds().items() if not k.startswith("bench")}
    result = {"events": len(messages), "done": done, "paused_s": round(paused_s, 2), "seconds": round(elapsed, 3),
              "events_per_s": round(len(messages) / elapsed, 1),
              "cpu_us_per_event": {k: round(v * 1e6 / len(messages)) for k, v in cpu.items()},
              "cpu_us_per_event_total": round(sum(cpu.values()) * 1e6 / len(messages))}
    log(f"{sut.name}: backlog {'drained' if done else 'NOT drained'} in {elapsed:.2f}s: "
        f"{result['events_per_s']:.0f} events/s; cpu {result['cpu_us_per_event']}")
    return result


def bare_consumer(bootstrap: str, settings: Settings, expected: int, *, timeout_s: float = 120) -> dict[str, Any]:
    """Baseline 1: read and json-decode the shop topics' messages with a plain consumer."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000,
                             fetch_max_bytes=32 << 20, max_partition_fetch_bytes=4 << 20)
    tps: list[TopicPartition] = []
    for topic in settings.shop_topics:
        parts: set[int] = wait_until(functools.partial(consumer.partitions_for_topic, topic), timeout_s=30,
                                     what=f"metadata {topic}")
        tps.extend(TopicPartition(topic, p) for p in sorted(parts))
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    for tp in tps:
        consumer.position(tp)
    read = 0
    started = time.perf_counter()
    while read < expected and time.perf_counter() - started < timeout_s:
        for records in consumer.poll(timeout_ms=200, max_records=5000).values():
            for rec in records:
                json.loads(rec.value)
            read += len(records)
    elapsed = time.perf_counter() - started
    consumer.close()
    return {"messages": read, "seconds": round(elapsed, 3), "msgs_per_s": round(read / elapsed, 1)}


def measure_latency(sut: SystemUnderTest, *, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    """First purchases of new customers at `rate`/s; send -> visitor->first_purchase on the stage topic."""
    topic = sut.settings.topic_stage_changes
    reader = KafkaConsumer(bootstrap_servers=sut.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10,
                           max_poll_records=5000)
    parts = wait_until(lambda: reader.partitions_for_topic(topic), timeout_s=30, what=f"metadata {topic}")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    reader.assign(tps)
    reader.seek_to_end(*tps)
    for tp in tps:
        reader.position(tp)
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for records in reader.poll(timeout_ms=50).values():
                now = time.time()
                for rec in records:
                    body = json.loads(rec.value)
                    if body.get("to_stage") == "first_purchase":
                        received.setdefault(body["cause_event_id"], now)

    thread = threading.Thread(target=read, name="stage-reader", daemon=True)
    thread.start()
    producer = shop_producer(sut.bootstrap, linger_ms=0)
    total = int(rate * seconds)
    log(f"{sut.name}: latency: {total} first purchases at {rate:.0f}/s")
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        event_id, customer_id = f"lat{seed}-{i:06d}", f"lat{seed}-c{i:06d}"
        event = {"event_id": event_id, "type": "purchase", "customer_id": customer_id,
                 "occurred_at": rfc3339(datetime.now(UTC)), "amount": "42.00", "cost": "20.00",
                 "currency": "EUR", "refund": False}
        value = json.dumps(event).encode()
        sent[event_id] = time.time()
        producer.send(sut.settings.topic_purchases, key=customer_id.encode(), value=value)
    producer.flush(30)
    actual_rate = total / (time.perf_counter() - started)
    try:
        # the stage topic may hold a tail of earlier messages (Tansu's ListOffsets(latest) can point before
        # the true log end), so count only the changes this phase caused
        wait_until(lambda: sum(1 for k in list(received) if k in sent) >= total or None, timeout_s=60,
                   interval_s=0.2, what="all stage changes")
    except TimeoutError:
        log(f"latency: only {len(received)} of {total} stage changes arrived")
    stop.set()
    thread.join(5)
    reader.close()
    producer.close(5)
    lat = [received[k] - sent[k] for k in sent if k in received]
    foreign = [k for k in received if k not in sent]
    return {
        "events": total, "rate_per_s": round(actual_rate, 1), "matched": len(lat),
        "unmatched_stage_changes": len(foreign), "unmatched_sample": foreign[:5],
        "p50_s": round(percentile(lat, 0.50), 4), "p90_s": round(percentile(lat, 0.90), 4),
        "p99_s": round(percentile(lat, 0.99), 4), "max_s": round(max(lat), 4) if lat else None,
        "mean_s": round(statistics.fmean(lat), 4) if lat else None,
    }


def digest(database_url: str, *, customer_prefix: str) -> dict[str, Any]:
    """A fingerprint of every customer's order-independent state and of the set of rungs entered."""
    like = customer_prefix + "%"
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        customers = conn.execute("""
            SELECT count(*), md5(coalesce(string_agg(
                customer_id || '|' || stage || '|' || sales::text || '|' || costs::text || '|' ||
                (state::jsonb - 'stage_entered_at')::text, E'\n' ORDER BY customer_id), ''))
            FROM customers WHERE customer_id LIKE %s""", (like,)).fetchone()
        history = conn.execute("""
            SELECT count(*), md5(coalesce(string_agg(customer_id || '|' || to_stage, E'\n'
                                                     ORDER BY customer_id, to_stage), ''))
            FROM stage_history WHERE customer_id LIKE %s""", (like,)).fetchone()
        stages = {r[0]: int(r[1]) for r in conn.execute(
            "SELECT stage, count(*) FROM customers WHERE customer_id LIKE %s GROUP BY stage", (like,))}
        tiers = {r[0]: int(r[1]) for r in conn.execute(
            "SELECT tier, count(*) FROM customers WHERE customer_id LIKE %s GROUP BY tier", (like,))}
    assert customers is not None and history is not None
    return {"customers": int(customers[0]), "customers_md5": customers[1], "stage_history_rows": int(history[0]),
            "stage_history_md5": history[1], "stages": stages, "tiers": tiers}


# ---------------------------------------------------------------------------------------------------------
# one system run


def run_system(*, name: str, root: Path, pg: EmbeddedPostgres, template_url: str | None, partitions: int,
               instances: int, messages: list[Message], expect: dict[str, int], seed: int, latency_s: float,
               latency_rate: float, with_baseline: bool, timeout_s: float,
               profile_dir: Path | None = None, backlog: list[Message] | None = None,
               backlog_expect: dict[str, int] | None = None, shop: str = "batches") -> dict[str, Any]:
    database_url = create_database(pg.url, f"bench_{name.replace('-', '_')}")
    sut = SystemUnderTest(name=name, workdir=root / name, database_url=database_url, partitions=partitions,
                          instances=instances)
    log(f"{name}: starting the system (partitions={partitions}, scoring instances={instances})")
    t0 = time.perf_counter()
    sut.start()
    log(f"{name}: system ready in {time.perf_counter() - t0:.1f}s")
    out: dict[str, Any] = {"partitions": partitions, "scoring_instances": instances}
    progress = Progress(database_url)
    sampler = ResourceSampler(sut, pg).start()
    try:
        warm_up(sut, progress, tag=name)
        out["throughput"] = measure_throughput(sut, messages, expect, progress=progress, sampler=sampler,
                                               timeout_s=timeout_s, profile_dir=profile_dir, shop=shop)
        # before the backlog: draining it fills the consumers' fetch buffers (up to fetch_max_bytes)
        out["peak_rss_mib"] = sampler.peaks()
        if backlog is not None and backlog_expect is not None:
            out["catch_up"] = measure_catch_up(sut, backlog, backlog_expect, progress=progress, sampler=sampler,
                                               timeout_s=timeout_s)
        if with_baseline:
            log(f"{name}: baseline 1: bare consumer over {len(messages)} messages")
            out["bare_consumer"] = bare_consumer(sut.bootstrap, sut.settings, len(messages))
        if latency_s > 0:
            out["latency"] = measure_latency(sut, rate=latency_rate, seconds=latency_s, seed=seed)
        out["peak_rss_mib_whole_run"] = sampler.stop()
    finally:
        sampler.stop()
        progress.close()
        out["stop"] = sut.stop()
        log(f"{name}: stopped ({out['stop']})")
    out["digest"] = digest(database_url, customer_prefix=f"c{seed}-")
    out["log"] = str(sut.log_path)
    return out


def settle(pg: EmbeddedPostgres, *, drop: list[str]) -> None:
    """Between phases: drop the finished phases' databases and checkpoint.

    Otherwise the autovacuum of one phase's tables, and a checkpoint its WAL brings on, land in the next
    phase's clock (one scale-out run spent 11.7 s of PostgreSQL CPU, 2.7x its usual, that way).
    """
    with psycopg.connect(libpq_url(pg.url), autocommit=True) as conn:
        for name in drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute("CHECKPOINT")


def run_naive_baseline(pg: EmbeddedPostgres, messages: list[Message], sample: int) -> dict[str, Any]:
    from bench.naive import run_naive
    from services.scoring.__main__ import load_policy
    from services.scoring.migrate import upgrade

    url = create_database(pg.url, "bench_naive")
    upgrade(database_url=url)
    log(f"naive: one transaction per event over {min(sample, len(messages))} events")
    return run_naive(url, [m[2] for m in messages[:sample]], policy=load_policy(settings=Settings()))


# ---------------------------------------------------------------------------------------------------------
# report


def machine() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _transactions_row(throughput: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    tx = throughput.get("scoring_transactions") or {}
    if not tx.get("count"):
        return []
    return [("  scoring transactions: facts each (mean)", f"{tx['facts_each']:,.0f}",
             f"{tx['count']:,} transactions, {tx['ms_each']:.1f} ms each", "")]


def table(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    single = result["single"]
    tp = single["throughput"]
    naive = result.get("naive")
    bare = single.get("bare_consumer")
    rows.append(("end-to-end throughput, events/s (6 partitions, 1 scoring)", f"{tp['events_per_s']:,.0f}",
                 f"{naive['events_per_s']:,.0f} (naive: 1 tx/event)" if naive else "-",
                 _ratio(tp["events_per_s"], naive["events_per_s"] if naive else None)))
    rows.append(("  same vs. a bare consumer (read + json only), msgs/s", f"{tp['events_per_s']:,.0f}",
                 f"{bare['msgs_per_s']:,.0f} (bare consumer)" if bare else "-",
                 _ratio(tp["events_per_s"], bare["msgs_per_s"] if bare else None)))
    rows.append(("  time: first send -> all applied, outbox empty, s", f"{tp['seconds']:.2f}",
                 f"{naive['seconds']:.2f} for {naive['events']} (naive)" if naive else "-", ""))
    rows.extend(_transactions_row(tp))
    scale = result.get("scaleout")
    if scale:
        stp = scale["throughput"]
        rows.append(("scale-out throughput, events/s (12 partitions, 2 scoring)", f"{stp['events_per_s']:,.0f}",
                     f"{tp['events_per_s']:,.0f} (1 scoring)", _ratio(stp["events_per_s"], tp["events_per_s"])))
        if naive:
            rows.append(("  same vs. the naive path", f"{stp['events_per_s']:,.0f}",
                         f"{naive['events_per_s']:,.0f} (naive: 1 tx/event)",
                         _ratio(stp["events_per_s"], naive["events_per_s"])))
        rows.extend(_transactions_row(stp))
        if stp.get("cpu_us_per_event_total"):
            rows.append(("  CPU per event (all processes), us", f"{stp['cpu_us_per_event_total']:,}",
                         f"system only (without the shop's producer): {_system_us(stp):,}", ""))
        rows.append(("  results identical to 1 instance (state md5, rung set md5)",
                     "yes" if result["identical"] else "NO",
                     f"{single['digest']['customers']} customers, {single['digest']['stage_history_rows']} rungs",
                     ""))
    for run_name in ("single", "scaleout"):
        run = (result.get(run_name) or {}).get("catch_up")
        if not run:
            continue
        label = ("6 partitions, 1 scoring" if run_name == "single" else "12 partitions, 2 scoring")
        rows.append((f"catch-up from a backlog, events/s ({label})", f"{run['events_per_s']:,.0f}",
                     f"{naive['events_per_s']:,.0f} (naive: 1 tx/event)" if naive else "-",
                     _ratio(run["events_per_s"], naive["events_per_s"] if naive else None)))
        rows.append(("  CPU per event, system only (no shop producer running), us",
                     f"{run['cpu_us_per_event_total']:,}", f"ingest paused {run['paused_s']:.1f}s while written",
                     ""))
    per_event = tp.get("cpu_us_per_event", {})
    if per_event:
        rows.append(("CPU per event (all processes), us", f"{tp['cpu_us_per_event_total']:,}",
                     f"{1e6 * (os.cpu_count() or 1) / TARGET_EVENTS_PER_S:,.0f} = budget for 8,000/s on "
                     f"{os.cpu_count()} cores", ""))
        rows.append(("  system only (without the shop's producer), us", f"{_system_us(tp):,}", "", ""))
        busy = tp.get("cpu_busy_share_of_wall", {})
        waits = tp.get("run_queue_wait_seconds", {})
        for role, us in sorted(per_event.items(), key=lambda kv: -kv[1]):
            if us >= 1:
                note = f"busy {busy.get(role, 0):.0%} of the run"
                if role in waits:
                    note += f", {waits[role]:.1f}s waiting for a CPU"
                rows.append((f"  CPU per event, {role}, us", f"{us:,}", note, ""))
    lat = single.get("latency")
    if lat:
        rows.append((f"event -> stage change at {lat['rate_per_s']:.0f} ev/s, p50 s", f"{lat['p50_s']:.3f}",
                     f"target p99 <= {TARGET_P99_S:.1f}", ""))
        rows.append(("  p99 s", f"{lat['p99_s']:.3f}", "", ""))
        rows.append(("  max s", f"{lat['max_s']:.3f}" if lat["max_s"] is not None else "-",
                     f"{lat['matched']}/{lat['events']} matched", ""))
    whole = single.get("peak_rss_mib_whole_run", {})
    for role, mib in single.get("peak_rss_mib", {}).items():
        rows.append((f"peak RSS {role}, MiB (throughput phase)", f"{mib:,.0f}",
                     f"{whole[role]:,.0f} over the whole run (catch-up, latency)" if role in whole else "", ""))
    widths = [max(len(r[i]) for r in [("metric", "ours", "baseline", "ratio"), *rows]) for i in range(4)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(("metric", "ours", "baseline", "ratio"), widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _system_us(throughput: dict[str, Any]) -> int:
    """CPU per event of the system's own processes: the bench's producer stands in for the shop."""
    return sum(us for role, us in throughput.get("cpu_us_per_event", {}).items() if not role.startswith("bench"))


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target for each configuration that ran: 1 scoring over 6 partitions, and 2 over 12."""
    out: dict[str, Any] = {}
    configs = [("1 scoring", result["single"]["throughput"]["events_per_s"])]
    if result.get("scaleout"):
        configs.append(("2 scoring", result["scaleout"]["throughput"]["events_per_s"]))
    for label, eps in configs:
        out[f"throughput >= 8000 events/s ({label})"] = {"value": eps, "met": eps >= TARGET_EVENTS_PER_S}
        if result.get("naive"):
            ratio = eps / result["naive"]["events_per_s"]
            out[f">= 8x the naive path ({label})"] = {"value": round(ratio, 2), "met": ratio >= TARGET_NAIVE_RATIO}
    single = result["single"]
    if single.get("latency"):
        p99 = single["latency"]["p99_s"]
        out["p99 <= 1 s at 100 events/s"] = {"value": p99, "met": p99 <= TARGET_P99_S}
    if "identical" in result:
        out["scale-out identical"] = {"value": result["identical"], "met": bool(result["identical"])}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description="throughput and latency against baselines")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--customers", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duplicates", type=float, default=0.01, help="share of exact re-sends (default 0.01)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--latency-rate", type=float, default=100.0)
    parser.add_argument("--naive-sample", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=900.0, help="max seconds for one throughput phase")
    parser.add_argument("--skip-scaleout", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-catchup", action="store_true",
                        help="skip draining a backlog written while ingest is paused")
    parser.add_argument("--shop-producer", choices=("batches", "kafka-python"), default="batches",
                        help="how the bench writes the shop's events in the throughput runs: record batches "
                             "built in the clock (shared/adapters/batches.py, default) or kafka-python's KafkaProducer")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases, logs)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the services during the single-instance throughput phase")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                              "args": vars(args), "command": " ".join([Path(sys.executable).name, "-m", "bench.run",
                                                                       *(argv if argv is not None else sys.argv[1:])])}
    log(f"generating {args.events} events over {args.customers} customers (seed {args.seed})")
    # `now` floored to the day: runs of one day get the same stream, so their digests compare
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    stream = generate(customers=args.customers, events=args.events, seed=args.seed, duplicates=args.duplicates,
                      now=day)
    expect = summary(stream)
    result["input"] = expect
    messages = to_messages(stream, Settings())
    backlog: list[Message] | None = None
    backlog_expect: dict[str, int] | None = None
    if not args.skip_catchup:
        # other customers and event ids (another seed), so that nothing of it was applied before
        other = generate(customers=args.customers, events=args.events, seed=args.seed + 1,
                         duplicates=args.duplicates, now=day)
        backlog, backlog_expect = to_messages(other, Settings()), summary(other)
    root = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    log(f"work folder {root}")
    pg = start_postgres(root / "pg" / "data")
    failed = False
    try:
        common = {"root": root, "pg": pg, "template_url": None, "messages": messages, "expect": expect,
                  "seed": args.seed, "latency_rate": args.latency_rate, "timeout_s": args.timeout,
                  "backlog": backlog, "backlog_expect": backlog_expect, "shop": args.shop_producer}
        profile_dir = RESULTS / f"profile-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}" if args.profile else None
        result["single"] = run_system(name="single", partitions=6, instances=1, latency_s=args.latency_seconds,
                                      with_baseline=True, profile_dir=profile_dir, **common)
        if profile_dir is not None:
            from bench import profile

            print(profile.render(result["single"]["throughput"]["profile"]), file=sys.stderr)
        finished = [] if args.keep else ["bench_single"]
        if not args.skip_naive:
            settle(pg, drop=finished)
            result["naive"] = run_naive_baseline(pg, messages, args.naive_sample)
            log(f"naive: {result['naive']}")
            finished += [] if args.keep else ["bench_naive"]
        if not args.skip_scaleout:
            settle(pg, drop=finished)
            result["scaleout"] = run_system(name="scaleout", partitions=12, instances=2, latency_s=0,
                                            with_baseline=False, **common)
            a, b = result["single"]["digest"], result["scaleout"]["digest"]
            result["identical"] = (a["customers_md5"] == b["customers_md5"]
                                   and a["stage_history_md5"] == b["stage_history_md5"]
                                   and a["customers"] == b["customers"] > 0)
    except BaseException:
        failed = True
        raise
    finally:
        pg.stop()
        if args.keep or failed:
            log(f"kept the work folder {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["targets"] = targets(result)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = table(result)
    print()
    print(text)
    print()
    for name, t in result["targets"].items():
        print(f"  {'MET ' if t['met'] else 'MISSED'}  {name}: {t['value']}")
    result["table"] = text
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nresults: {RESULTS / f'{stamp}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
