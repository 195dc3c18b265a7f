"""Runs the services as real processes and does bad things to them while a shop feeds events.

- `Harness`: the processes of one run, its own topic names and group ids, a `Feeder` thread sending the workload,
  readers of the output topics, the settle wait and the oracle check.
- `Service` (tests/chaos/service.py): one `python -m services.ingest` / `python -m services.scoring` process, with
  its own log file; kill -9, SIGSTOP/SIGCONT, SIGTERM; restarted by `Harness.tick()` after it died.
- `Monkey`, `Script` (tests/chaos/faults.py): when to do harm, while the feeder runs.
- `TcpProxy` (tests/chaos/proxy.py): the broker seen through a proxy that can be cut (every connection closed, new
  ones refused).

Every child process is started from the test's main thread (`tick()` runs there): a child gets SIGTERM when the
thread that started it ends (`die_with_parent`), so a helper thread must never start one. Waits are on conditions
with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, create_engine, text

from devstack.embedded import free_port
from devstack.runner import ROOT, wait_until
from services.scoring.__main__ import DEFAULT_POLICY
from services.scoring.domain.policy import Policy, parse_policy
from shared.adapters.kafka import ensure_topics
from shared.settings import Settings, normalize_database_url
from tests.chaos import oracle
from tests.chaos.oracle import Expected, Report, Sent
from tests.chaos.service import Service
from tests.chaos.topics import Feeder, TopicDump
from tests.chaos.workload import Topics, generate

ARTIFACTS = ROOT / "test-artifacts"
POLICY: Policy = parse_policy(DEFAULT_POLICY.read_text(encoding="utf-8"))


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

    def __init__(
        self, *, bootstrap: str, database_url: str, name: str, partitions: int = 3, env: dict[str, str] | None = None
    ) -> None:
        self.bootstrap, self.database_url, self.name = bootstrap, database_url, name
        self.suffix = uuid.uuid4().hex[:8]
        self.log_dir = ARTIFACTS / "chaos-logs" / f"{name}-{self.suffix}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        s = self.suffix
        self.topics = Topics(
            purchase=f"shop.purchases.{s}", referral=f"shop.referrals.{s}", complaint=f"shop.complaints.{s}"
        )
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
        self.engine: Engine = create_engine(
            normalize_database_url(database_url), pool_pre_ping=True, connect_args={"connect_timeout": 3}
        )
        self.services: list[Service] = []
        self.feeder: Feeder | None = None
        self.sent: list[Sent] = []
        self.now = datetime.now(UTC)
        self.extra_faults = 0  # faults that are not a process death (restart of PostgreSQL, broker cut, pause)
        self.started = time.monotonic()
        self._http = httpx.Client(timeout=15)
        self._admin: KafkaAdminClient | None = None
        self._meta: KafkaConsumer | None = None

    # -- processes ---------------------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        *,
        faults: str = "",
        fault_budget: int = 0,
        restart: bool = True,
        env: dict[str, str] | None = None,
        start: bool = True,
    ) -> Service:
        """A new ingest or scoring process (`kind`), with its own HTTP port."""
        port = free_port()
        module = "services.ingest" if kind == "ingest" else "services.scoring"
        port_var = "INGEST_PORT" if kind == "ingest" else "SCORING_PORT"
        n = sum(1 for s in self.services if s.name.startswith(kind))
        svc = Service(
            f"{kind}-{n}",
            module,
            {**self.env, port_var: str(port), **(env or {})},
            self.log_dir,
            port=port,
            faults=faults,
            fault_budget=fault_budget,
            restart=restart,
        )
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
        return [
            f"{s.name} exited by itself with {codes} (log {s.log_path})"
            for s in self.services
            if (codes := s.other_deaths)
        ]

    def wait_ready(self, svc: Service, timeout_s: float = 90) -> None:
        def ready() -> bool:
            self.tick()
            got = svc.readyz()
            return got is not None and got[0] == 200

        wait_until(ready, timeout_s=timeout_s, interval_s=0.2, what=f"{svc.name} ready ({svc.log_path})")

    # -- the shop ----------------------------------------------------------------------------------------

    def workload(self, *, events: int, seed: int, **kw: Any) -> list[Sent]:
        return generate(
            events=events,
            seed=seed,
            prefix=f"{self.name[:12]}{self.suffix[:4]}",
            topics=self.topics,
            now=self.now,
            **kw,
        )

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
        return oracle.expected(
            self.sent,
            now=self.now,
            policy=POLICY,
            base_currency=s.base_currency,
            max_bytes=s.max_message_bytes,
            max_future_skew_hours=s.max_future_skew_hours,
        )

    def settle(
        self,
        exp: Expected | None,
        *,
        timeout_s: float = 240,
        ingest_groups: Sequence[str] = (),
        scoring_groups: Sequence[str] = (),
    ) -> str | None:
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
                state["scoring_lag"] = sum(
                    self.lag(g, [self.env["TOPIC_SCORING_INPUT"]])
                    for g in [self.env["SCORING_GROUP_ID"], *scoring_groups]
                )
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

    def check(
        self,
        exp: Expected,
        *,
        faults: bool = True,
        settle_note: str | None = None,
        republish_allowed: bool | None = None,
    ) -> Report:
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
        report = oracle.check(
            exp,
            customer=views.get,
            stages_total=total,
            stage_changes=stage_records,
            dead_letters=dead_records,
            processed_keys=keys,
            faults=faults,
        )
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

    def finish(
        self,
        fault: str,
        *,
        faults: bool = True,
        timeout_s: float = 240,
        ingest_groups: Sequence[str] = (),
        scoring_groups: Sequence[str] = (),
        notes: Sequence[str] = (),
        republish_allowed: bool | None = None,
    ) -> Outcome:
        """Settle, check, and package the run for the table; logs of every process on failure."""
        exp = self.expected()
        note = self.settle(exp, timeout_s=timeout_s, ingest_groups=ingest_groups, scoring_groups=scoring_groups)
        report = self.check(exp, faults=faults, settle_note=note, republish_allowed=republish_allowed)
        outcome = Outcome(
            fault=fault,
            events=len(self.sent),
            faults_injected=self.kills + self.extra_faults,
            report=report,
            seconds=time.monotonic() - self.started,
            notes=[
                *notes,
                f"{exp.customers} customers, {exp.accepted_events} distinct events, "
                f"{exp.duplicate_messages} duplicate copies, {len(exp.rejected)} poison, "
                f"{exp.conversions} conversions, {report.republished} re-published, "
                f"{report.dead_letter_copies} extra dead letters",
            ],
        )
        (self.log_dir / "report.txt").write_text(f"{fault}\n{report.summary()}\n" + "\n".join(outcome.notes) + "\n")
        if not report.ok:
            outcome.logs = "\n".join(
                f"--- {svc.name} (log {svc.log_path}):\n{svc.log_tail(15)}" for svc in self.services
            )
        return outcome

    def close(self) -> None:
        if self.feeder is not None:
            self.feeder.close()
        for svc in self.services:
            svc.stop(timeout_s=20)
        self._http.close()
        self._drop_clients()
        self.engine.dispose()
