"""Runs the services as real processes and does bad things to them while a shop feeds events.

- `Service`: one `python -m services.ingest` / `python -m services.scoring` process, with its own log file; kill -9,
  SIGSTOP/SIGCONT, SIGTERM; restarted by `Harness.tick()` after it died (FAULT_INJECTION self-kills included) until
  its fault budget is spent, after which it runs without FAULT_INJECTION so the run can complete.
- `Harness`: the processes of one run, its own topic names and group ids, a `Feeder` thread sending the workload,
  readers of the output topics, the settle wait and the oracle check.
- `TcpProxy`: the broker seen through a proxy that can be cut (every connection closed, new ones refused).

Every child process is started from the test's main thread (`tick()` runs there): a child gets SIGTERM when the
thread that started it ends (`die_with_parent`), so a helper thread must never start one. Waits are on conditions
with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, create_engine, text

from devstack.embedded import free_port
from devstack.runner import ROOT, Process, python_module, readyz, tail_of, wait_until
from services.scoring.__main__ import DEFAULT_POLICY
from services.scoring.domain.policy import Policy, parse_policy
from shared.adapters.kafka import ensure_topics
from shared.settings import Settings, normalize_database_url
from tests.chaos import oracle
from tests.chaos.oracle import Expected, Record, Report, Sent
from tests.chaos.workload import Topics, generate

ARTIFACTS = ROOT / "test-artifacts"
POLICY: Policy = parse_policy(DEFAULT_POLICY.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# processes


class Service:
    """One service process; `restart` = the harness starts it again whenever it dies."""

    def __init__(self, name: str, module: str, env: dict[str, str], log_dir: Path, *, port: int,
                 faults: str = "", fault_budget: int = 0, restart: bool = True) -> None:
        self.name, self.module, self.env, self.port = name, module, env, port
        self.log_path = log_dir / f"{name}.log"
        self.faults, self.fault_budget, self.restart = faults, fault_budget, restart
        self.proc: Process | None = None
        self.starts = 0
        self.kills = 0            # deaths by SIGKILL (ours or FAULT_INJECTION's)
        self.other_deaths: list[int] = []  # exits we did not cause: a crash
        self.stopped = False      # stopped on purpose: not restarted
        self._counted: Process | None = None

    @property
    def uptime(self) -> float:
        return self.proc.uptime if self.proc is not None else 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def paused(self) -> bool:
        return self.proc is not None and self.proc.paused

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def start(self) -> None:
        env = dict(self.env)
        if self.faults and self.kills < self.fault_budget:
            env["FAULT_INJECTION"] = self.faults
        else:
            env.pop("FAULT_INJECTION", None)
        banner = (f"start #{self.starts + 1} (FAULT_INJECTION={env.get('FAULT_INJECTION', '')}) "
                  f"at {datetime.now(UTC).isoformat()}")
        self.proc = Process(python_module(self.module), env=env, log_path=self.log_path, name=self.name)
        self.proc.start(banner=banner)
        self.starts += 1
        self.stopped = False

    def reap(self) -> bool:
        """Account for a death; True when the process is dead and should be started again."""
        if self.proc is None or (code := self.proc.exit_code) is None:
            return False
        if self._counted is not self.proc:  # count each death once
            self._counted = self.proc
            if code == -signal.SIGKILL:
                self.kills += 1
            elif not self.stopped:
                self.other_deaths.append(code)
        return self.restart and not self.stopped

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None:
            self.proc.kill()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.pause()

    def cont(self) -> None:
        assert self.proc is not None
        self.proc.cont()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (graceful: the batch in hand is finished) and wait; kill -9 if it does not stop."""
        self.stopped = True
        if self.proc is not None:
            self.proc.stop(timeout_s)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def readyz(self) -> tuple[int, dict[str, Any]] | None:
        return readyz(self.port, timeout_s=8)

    def log_tail(self, lines: int = 30) -> str:
        return tail_of(self.log_path, lines)


class Monkey:
    """kill -9 of a random live `kind` process, `kills` times, each once the victim has been up a random while.

    Used as `Harness.run_feed(during=...)`; it is done when all its kills are made.
    """

    def __init__(self, harness: Harness, kind: str, *, kills: int, rng: random.Random,
                 uptime: tuple[float, float] = (2.0, 6.0), after: float = 0.05) -> None:
        self.h, self.kind, self.kills, self.rng, self.uptime, self.after = harness, kind, kills, rng, uptime, after
        self.done = 0
        self.next_uptime = rng.uniform(*uptime)

    def __call__(self, progress: float) -> bool:
        if self.done >= self.kills:
            return True
        if progress < self.after:
            return False
        live = [s for s in self.h.of(self.kind) if s.alive() and not s.stopped and not s.paused]
        ripe = [s for s in live if s.uptime >= self.next_uptime]
        if ripe:
            self.rng.choice(ripe).kill()
            self.done += 1
            self.next_uptime = self.rng.uniform(*self.uptime)
        return self.done >= self.kills


class Script:
    """A fault scenario written as a generator, advanced one step per tick: `progress = yield` waits a tick.

    Used as `Harness.run_feed(during=...)`; it is done when the generator returns. Its steps must not block:
    they wait by yielding until their condition holds.
    """

    def __init__(self, scenario: Callable[[], Any]) -> None:
        self.gen = scenario()
        self.finished = False
        next(self.gen)

    def __call__(self, progress: float) -> bool:
        if not self.finished:
            try:
                self.gen.send(progress)
            except StopIteration:
                self.finished = True
        return self.finished


# ---------------------------------------------------------------------------------------------------------
# the shop


class Feeder(threading.Thread):
    """Sends the workload from a thread, paced at `rate` messages per second; `hold` pauses it."""

    def __init__(self, bootstrap: str, messages: Sequence[Sent], *, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.messages, self.rate = messages, rate
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", retries=20,
                                      retry_backoff_ms=300, request_timeout_ms=30000,
                                      max_request_size=4 * 1024 * 1024, max_block_ms=120000)
        self.sent = 0
        self.error: BaseException | None = None
        self.hold = threading.Event()   # set: wait before sending more
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
                futures = [self.producer.send(m.topic, key=m.key, value=m.value)
                           for m in self.messages[i:i + chunk]]
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
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      max_partition_fetch_bytes=8 * 1024 * 1024)
        parts = wait_until(lambda: self.consumer.partitions_for_topic(topic), timeout_s=30, what=f"{topic} metadata")
        self.tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.records: list[Record] = []

    def read_to_end(self, timeout_s: float = 120) -> list[Record]:
        ends = self.consumer.end_offsets(self.tps)

        def done() -> bool:
            for batch in self.consumer.poll(timeout_ms=200, max_records=20000).values():
                self.records.extend(Record(key=r.key, value=r.value, headers=dict(r.headers), partition=r.partition,
                                           offset=r.offset) for r in batch)
            return all(self.consumer.position(tp) >= ends[tp] for tp in self.tps)

        wait_until(done, timeout_s=timeout_s, interval_s=0, what=f"reading {self.topic} to its end")
        return self.records

    def close(self) -> None:
        self.consumer.close()


# ---------------------------------------------------------------------------------------------------------
# the run


@dataclass
class Outcome:
    """What one run did, for the chaos table."""

    fault: str
    events: int
    faults_injected: int
    report: Report
    seconds: float
    notes: list[str] = field(default_factory=list)
    logs: str = ""  # tails of every process's log when the run failed

    def failure(self) -> str:
        return f"{self.fault}: {self.report.summary()}\n{self.logs}"


class Harness:
    """The services of one run against one database and one broker, with their own topics and groups."""

    def __init__(self, *, bootstrap: str, database_url: str, name: str, partitions: int = 3,
                 env: dict[str, str] | None = None) -> None:
        self.bootstrap, self.database_url, self.name = bootstrap, database_url, name
        self.suffix = uuid.uuid4().hex[:8]
        self.log_dir = ARTIFACTS / "chaos-logs" / f"{name}-{self.suffix}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        s = self.suffix
        self.topics = Topics(purchase=f"shop.purchases.{s}", referral=f"shop.referrals.{s}",
                             complaint=f"shop.complaints.{s}")
        self.env: dict[str, str] = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TOPIC_PURCHASES": self.topics.purchase,
            "TOPIC_REFERRALS": self.topics.referral,
            "TOPIC_COMPLAINTS": self.topics.complaint,
            "TOPIC_STAGE_CHANGES": f"loyalty.stage-changes.{s}",
            "TOPIC_DEAD_LETTER": f"loyalty.dead-letter.{s}",
            "TOPIC_SCORING_INPUT": f"loyalty.scoring-input.{s}",
            "INGEST_GROUP_ID": f"ingest-{s}",
            "SCORING_GROUP_ID": f"scoring-{s}",
            "TOPIC_PARTITIONS": str(partitions),
            "CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "CONSUMER_HEARTBEAT_INTERVAL_MS": "1000",
            "CONSUMER_POLL_TIMEOUT_MS": "100",
            "CONSUMER_MAX_POLL_RECORDS": "500",
            "RELAY_IDLE_POLL_MS": "50",
            "HOUSEKEEPING_INTERVAL_S": "100000",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("FAULT_INJECTION", None)
        fields: dict[str, Any] = {k.lower(): v for k, v in self.env.items() if k.lower() in Settings.model_fields}
        self.settings = Settings(**fields)
        ensure_topics(self.settings)
        self.engine: Engine = create_engine(normalize_database_url(database_url), pool_pre_ping=True,
                                            connect_args={"connect_timeout": 3})
        self.services: list[Service] = []
        self.feeder: Feeder | None = None
        self.sent: list[Sent] = []
        self.now = datetime.now(UTC)
        self.extra_faults = 0   # faults that are not a process death (restart of PostgreSQL, broker cut, pause)
        self.started = time.monotonic()
        self._http = httpx.Client(timeout=15)
        self._admin: KafkaAdminClient | None = None
        self._meta: KafkaConsumer | None = None

    # -- processes ---------------------------------------------------------------------------------------

    def add(self, kind: str, *, faults: str = "", fault_budget: int = 0, restart: bool = True,
            env: dict[str, str] | None = None, start: bool = True) -> Service:
        """A new ingest or scoring process (`kind`), with its own HTTP port."""
        port = free_port()
        module = "services.ingest" if kind == "ingest" else "services.scoring"
        port_var = "INGEST_PORT" if kind == "ingest" else "SCORING_PORT"
        n = sum(1 for s in self.services if s.name.startswith(kind))
        svc = Service(f"{kind}-{n}", module, {**self.env, port_var: str(port), **(env or {})}, self.log_dir,
                      port=port, faults=faults, fault_budget=fault_budget, restart=restart)
        self.services.append(svc)
        if start:
            svc.start()
        return svc

    def of(self, kind: str) -> list[Service]:
        return [s for s in self.services if s.name.startswith(kind)]

    def tick(self) -> None:
        """Restart what died (call often, from the main thread)."""
        for svc in self.services:
            if svc.reap():
                svc.start()

    @property
    def kills(self) -> int:
        return sum(s.kills for s in self.services)

    def crashes(self) -> list[str]:
        return [f"{s.name} exited by itself with {codes} (log {s.log_path})"
                for s in self.services if (codes := s.other_deaths)]

    def wait_ready(self, svc: Service, timeout_s: float = 90) -> None:
        def ready() -> bool:
            self.tick()
            got = svc.readyz()
            return got is not None and got[0] == 200

        wait_until(ready, timeout_s=timeout_s, interval_s=0.2, what=f"{svc.name} ready ({svc.log_path})")

    # -- the shop ----------------------------------------------------------------------------------------

    def workload(self, *, events: int, seed: int, **kw: Any) -> list[Sent]:
        return generate(events=events, seed=seed, prefix=f"{self.name[:12]}{self.suffix[:4]}", topics=self.topics,
                        now=self.now, **kw)

    def feed(self, messages: Sequence[Sent], *, rate: float = 1000) -> Feeder:
        """Start sending `messages` in the background; they count for the oracle."""
        self.sent.extend(messages)
        self.feeder = Feeder(self.bootstrap, messages, rate=rate)
        self.feeder.start()
        return self.feeder

    def send_now(self, messages: Sequence[Sent]) -> None:
        """Send `messages` synchronously (the oracle counts them)."""
        self.sent.extend(messages)
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
        try:
            futures = [producer.send(m.topic, key=m.key, value=m.value) for m in messages]
            producer.flush(60)
            for f in futures:
                f.get(timeout=0)
        finally:
            producer.close(5)

    def run_feed(self, *, during: Callable[[float], bool] | None = None, timeout_s: float = 600) -> None:
        """Tick until the feeder is done and `during(progress)` (called between ticks, to inject faults) has
        returned True (nothing left to do)."""
        assert self.feeder is not None
        idle = [during is None]

        def finished() -> bool:
            if not idle[0] and during is not None:
                idle[0] = during(self.feeder.progress)  # type: ignore[union-attr]
            return self.feeder.done.is_set() and idle[0]  # type: ignore[union-attr]

        wait_until(finished, timeout_s=timeout_s, tick=self.tick, interval_s=0.05, what="the feeder to send all")
        if self.feeder.error is not None:
            raise AssertionError(f"the shop could not send: {self.feeder.error!r}")

    # -- observing ---------------------------------------------------------------------------------------

    def sql(self, query: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(query), params).all()

    def processed(self) -> int:
        return int(self.sql("SELECT count(*) FROM processed_events")[0][0])

    def backlog(self) -> int:
        return int(self.sql("SELECT count(*) FROM outbox")[0][0])

    def committed(self, group: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """The committed offsets of `group` on `topics` (partitions without a commit are left out)."""
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
            got = self._admin.list_group_offsets({group: None})[group]
        except Exception:
            self._drop_clients()
            raise
        return {tp: meta.offset for tp, meta in got.items() if tp.topic in topics and meta.offset >= 0}

    def end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        try:
            if self._meta is None:
                self._meta = KafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
            tps = [TopicPartition(t, p) for t in topics for p in (self._meta.partitions_for_topic(t) or ())]
            return dict(self._meta.end_offsets(tps))
        except Exception:
            self._drop_clients()
            raise

    def _drop_clients(self) -> None:
        for client in (self._admin, self._meta):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._admin = self._meta = None

    def lag(self, group: str, topics: Sequence[str]) -> int:
        ends = self.end_offsets(topics)
        done = self.committed(group, topics)
        return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())

    # -- the verdict -------------------------------------------------------------------------------------

    def expected(self) -> Expected:
        s = self.settings
        return oracle.expected(self.sent, now=self.now, policy=POLICY, base_currency=s.base_currency,
                               max_bytes=s.max_message_bytes, max_future_skew_hours=s.max_future_skew_hours)

    def settle(self, exp: Expected | None, *, timeout_s: float = 240, ingest_groups: Sequence[str] = (),
               scoring_groups: Sequence[str] = ()) -> str | None:
        """Wait until every expected fact is processed (`exp` None: any number), the outbox is empty and every group
        caught up.

        None when settled, else a description of where it stuck (the check then names what is missing).
        """
        groups = [self.env["INGEST_GROUP_ID"], *ingest_groups]
        shop_topics = [self.topics.purchase, self.topics.referral, self.topics.complaint]
        state: dict[str, Any] = {}
        want = len(exp.keys) if exp is not None else 0

        def settled() -> bool:
            try:
                state["processed"] = self.processed()
                if state["processed"] < want:
                    return False
                state["backlog"] = self.backlog()
                if state["backlog"]:
                    return False
                state["ingest_lag"] = sum(self.lag(g, shop_topics) for g in groups)
                if state["ingest_lag"]:
                    return False
                state["scoring_lag"] = sum(self.lag(g, [self.env["TOPIC_SCORING_INPUT"]])
                                           for g in [self.env["SCORING_GROUP_ID"], *scoring_groups])
                if state["scoring_lag"]:
                    return False
                # the last batch may have left outbox rows (conversions) after the lag was read
                return self.backlog() == 0 and self.processed() >= want
            except Exception as exc:  # noqa: BLE001 - the database or broker may be mid-fault; keep waiting
                state["error"] = repr(exc)
                return False

        try:
            wait_until(settled, timeout_s=timeout_s, interval_s=0.25, tick=self.tick, what="the system to settle")
            return None
        except AssertionError:
            return f"did not settle in {timeout_s:.0f}s: {state} (expected {want} facts processed)"

    def get(self, url: str) -> httpx.Response:
        """GET with a retry on a dropped connection (uvicorn closes idle keep-alive connections after 5 s, and a
        request can race that close)."""
        for attempt in range(3):
            try:
                return self._http.get(url)
            except httpx.TransportError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def check(self, exp: Expected, *, faults: bool = True, settle_note: str | None = None,
              republish_allowed: bool | None = None) -> Report:
        """Compare everything the system shows with the oracle."""
        scoring = next((s for s in self.of("scoring") if s.alive()), None)
        report = Report()
        if scoring is None:
            report.discrepancies.append("no scoring instance alive to ask")
            return report

        def customer(cid: str) -> dict[str, Any] | None:
            r = self.get(scoring.url(f"/v1/customers/{cid}"))
            if r.status_code == 404:
                return None
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]

        ids = sorted(exp.states)
        with ThreadPoolExecutor(4) as pool:
            views = dict(zip(ids, pool.map(customer, ids), strict=True))
        total = self.get(scoring.url("/v1/stages")).json()["customers"]
        stage_dump = TopicDump(self.bootstrap, self.env["TOPIC_STAGE_CHANGES"])
        dead_dump = TopicDump(self.bootstrap, self.env["TOPIC_DEAD_LETTER"])
        try:
            stage_records = stage_dump.read_to_end()
            dead_records = dead_dump.read_to_end()
        finally:
            stage_dump.close()
            dead_dump.close()
        keys = {(r[0], r[1]) for r in self.sql("SELECT event_id, role FROM processed_events")}
        report = oracle.check(exp, customer=views.get, stages_total=total, stage_changes=stage_records,
                              dead_letters=dead_records, processed_keys=keys, faults=faults)
        if republish_allowed is False and report.republished:
            report.discrepancies.append(f"{report.republished} stage changes re-published where none may be")
        if settle_note:
            report.discrepancies.insert(0, settle_note)
        crashes = self.crashes()
        if crashes:
            report.add("processes that died without being killed", crashes)
        if self.feeder is not None and self.feeder.error is not None:
            report.discrepancies.append(f"the shop could not send: {self.feeder.error!r}")
        return report

    def finish(self, fault: str, *, faults: bool = True, timeout_s: float = 240, ingest_groups: Sequence[str] = (),
               scoring_groups: Sequence[str] = (), notes: Sequence[str] = (),
               republish_allowed: bool | None = None) -> Outcome:
        """Settle, check, and package the run for the table; logs of every process on failure."""
        exp = self.expected()
        note = self.settle(exp, timeout_s=timeout_s, ingest_groups=ingest_groups, scoring_groups=scoring_groups)
        report = self.check(exp, faults=faults, settle_note=note, republish_allowed=republish_allowed)
        outcome = Outcome(fault=fault, events=len(self.sent), faults_injected=self.kills + self.extra_faults,
                          report=report, seconds=time.monotonic() - self.started,
                          notes=[*notes, f"{exp.customers} customers, {exp.accepted_events} distinct events, "
                                 f"{exp.duplicate_messages} duplicate copies, {len(exp.rejected)} poison, "
                                 f"{exp.conversions} conversions, {report.republished} re-published, "
                                 f"{report.dead_letter_copies} extra dead letters"])
        (self.log_dir / "report.txt").write_text(f"{fault}\n{report.summary()}\n" + "\n".join(outcome.notes) + "\n")
        if not report.ok:
            outcome.logs = "\n".join(f"--- {svc.name} (log {svc.log_path}):\n{svc.log_tail(15)}"
                                     for svc in self.services)
        return outcome

    def close(self) -> None:
        if self.feeder is not None:
            self.feeder.close()
        for svc in self.services:
            svc.stop(timeout_s=20)
        self._http.close()
        self._drop_clients()
        self.engine.dispose()


# ---------------------------------------------------------------------------------------------------------
# the broker behind a proxy


class TcpProxy:
    """127.0.0.1:`port` -> 127.0.0.1:`target`; `cut()` closes every connection and refuses new ones."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def cut(self) -> None:
        """Close the listener (connects are refused) and every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = list(self._conns), set()
        if listener is not None:
            listener.close()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()
