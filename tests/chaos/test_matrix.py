"""The fault matrix (`make chaos`): every fault while events flow, each run ending with the oracle check.

Every run feeds a realistic shop stream (tests/chaos/workload.py: purchases over months, refunds, referrals in both
orders, complaints, exact duplicates, every kind of poison), does its harm, waits until the system settles and
compares what it shows (HTTP API, stage-change and dead-letter topics, the dedupe table) with the oracle
(tests/chaos/oracle.py). Zero discrepancies is a pass. The table of runs is printed at the end of the session and
written to test-artifacts/chaos-table.md; docs/reliability.md explains what each run proves.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from devstack.embedded import (
    EmbeddedPostgres,
    broker_binary,
    create_database,
    free_port,
    start_postgres,
    wait_for_port,
)
from services.scoring.migrate import upgrade
from services.scoring.relay import prune
from shared.runtime import die_with_parent
from tests.chaos.faults import Monkey, Script
from tests.chaos.harness import Harness, Outcome
from tests.chaos.oracle import Sent
from tests.chaos.proxy import TcpProxy
from tests.chaos.service import Service
from tests.chaos.workload import PILL_ID_FIELDS, POISON_PILLS, batch_with_pill
from tests.support import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

MakeHarness = Callable[..., Harness]


def record(table: list[Outcome], outcome: Outcome) -> None:
    """Add the run to the table, then fail the test on any discrepancy."""
    table.append(outcome)
    assert outcome.report.ok, outcome.failure()


def start(
    h: Harness,
    *,
    scoring: int = 1,
    ingest_faults: str = "",
    scoring_faults: str = "",
    budget: int = 0,
    scoring_env: dict[str, str] | None = None,
) -> None:
    svcs = [h.add("ingest", faults=ingest_faults, fault_budget=budget if ingest_faults else 0)]
    svcs += [
        h.add("scoring", faults=scoring_faults, fault_budget=budget if scoring_faults else 0, env=scoring_env)
        for _ in range(scoring)
    ]
    for svc in svcs:
        h.wait_ready(svc)


def until(check: Callable[[], Any]) -> Iterator[None]:
    """In a Script: wait (tick by tick) until `check()` holds."""
    while not check():
        yield


def readyz(svc: Service) -> tuple[int, list[str]]:
    got = svc.readyz()
    if got is None:
        return 0, []
    return got[0], list(got[1].get("unreachable", []))


# ---------------------------------------------------------------------------------------------------------
# kill -9 at random moments


@pytest.mark.parametrize("kind", ["ingest", "scoring"])
def test_kill_9_at_random_moments(make_harness: MakeHarness, chaos_table: list[Outcome], kind: str) -> None:
    """kill -9 of the `kind` process three times at random moments while events flow; restarted each time."""
    h = make_harness()
    start(h)
    h.feed(h.workload(events=2500, seed=21 if kind == "ingest" else 22), rate=90)
    h.run_feed(during=Monkey(h, kind, kills=3, rng=random.Random(kind), uptime=(2.0, 6.0)))
    record(chaos_table, h.finish(f"kill -9 {kind} at random moments"))
    assert h.kills == 3


# ---------------------------------------------------------------------------------------------------------
# FAULT_INJECTION: SIGKILL at the named crash points


@pytest.mark.parametrize(
    ("kind", "point"),
    [
        ("ingest", "ingest.after_flush"),
        ("scoring", "scoring.after_db_commit"),
        ("scoring", "relay.after_publish"),
    ],
)
def test_fault_injection_points(make_harness: MakeHarness, chaos_table: list[Outcome], kind: str, point: str) -> None:
    """The process SIGKILLs itself at `point` (p=0.2 per pass, three times, restarted each time)."""
    h = make_harness()
    spec = f"{point}=0.2"
    if kind == "ingest":
        start(h, ingest_faults=spec, budget=3)
    else:
        start(h, scoring_faults=spec, budget=3)
    h.feed(h.workload(events=2500, seed=len(point) * 7 + len(kind)), rate=80)
    h.run_feed()
    record(chaos_table, h.finish(f"FAULT_INJECTION {point}"))
    assert h.kills >= 2, f"{point} fired only {h.kills} times"


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL restart mid-stream


@pytest.fixture
def own_postgres(state_dir: Path) -> Iterator[list[EmbeddedPostgres]]:
    """A PostgreSQL server of this test alone (it gets stopped and started); a list so the test can swap it."""
    data = state_dir / f"pg-restart-{time.time_ns()}" / "data"
    servers = [start_postgres(data, port=free_port())]
    yield servers
    servers[-1].stop()


def test_postgres_restart_mid_stream(
    make_harness: MakeHarness, chaos_table: list[Outcome], own_postgres: list[EmbeddedPostgres]
) -> None:
    """Stop PostgreSQL mid-stream for ~12 s and start it again on the same data and port: scoring's /readyz is
    503 naming the database meanwhile, its committed offsets do not move, and it resumes by itself."""
    pg = own_postgres[0]
    url = create_database(pg.url, "loyalty")
    upgrade(database_url=url)
    h = make_harness(url=url)
    start(h)
    scoring, ingest = h.of("scoring")[0], h.of("ingest")[0]
    group, input_topic = h.env["SCORING_GROUP_ID"], h.env["TOPIC_SCORING_INPUT"]
    seen: dict[str, Any] = {}

    def scenario() -> Iterator[None]:
        yield from until(lambda: h.feeder.progress >= 0.35)  # type: ignore[union-attr]
        pg.stop()
        down_at = time.monotonic()
        yield from until(lambda: readyz(scoring) == (503, ["database"]))
        seen["ingest_ready_while_down"] = readyz(ingest)[0]
        yield from until(lambda: time.monotonic() - down_at >= 2)
        seen["offsets_at_start"] = h.committed(group, [input_topic])
        yield from until(lambda: time.monotonic() - down_at >= 12)
        seen["readyz_end"] = readyz(scoring)
        seen["offsets_at_end"] = h.committed(group, [input_topic])
        seen["input_end"] = h.end_offsets([input_topic])
        own_postgres.append(start_postgres(pg.data_dir, port=pg.port))
        h.extra_faults += 1
        yield from until(lambda: readyz(scoring)[0] == 200)

    h.feed(h.workload(events=2500, seed=31), rate=100)
    h.run_feed(during=Script(scenario))
    outcome = h.finish("PostgreSQL restart mid-stream", notes=[f"scoring /readyz while down: {seen['readyz_end']}"])
    assert seen["readyz_end"] == (503, ["database"])
    assert seen["ingest_ready_while_down"] == 200  # ingest has no database
    assert seen["offsets_at_end"] == seen["offsets_at_start"], "scoring committed offsets while the database was down"
    pending = sum(end - seen["offsets_at_end"].get(tp, 0) for tp, end in seen["input_end"].items())
    assert pending > 0, "no work was waiting while the database was down: the test proved nothing"
    record(chaos_table, outcome)


# ---------------------------------------------------------------------------------------------------------
# duplicates and replays


def test_duplicates_and_replay_from_the_beginning(make_harness: MakeHarness, chaos_table: list[Outcome]) -> None:
    """20 % exact duplicates; then a second ingest with a new group id re-reads the shop topics from the beginning
    and a second scoring group re-reads the whole scoring input: no effect doubles, no stage change is
    published twice (the replayed poison is dead-lettered again, which is allowed)."""
    h = make_harness()
    start(h)
    h.feed(h.workload(events=2500, seed=41, duplicate_rate=0.2), rate=400)
    h.run_feed()
    first = h.finish("duplicates (exact copies)", faults=False)
    assert first.report.ok, first.failure()
    ingest_group, scoring_group = f"ingest-replay-{h.suffix}", f"scoring-replay-{h.suffix}"
    h.add("ingest", env={"INGEST_GROUP_ID": ingest_group})
    h.add("scoring", env={"SCORING_GROUP_ID": scoring_group})
    outcome = h.finish(
        "duplicates + replay of every input topic",
        ingest_groups=[ingest_group],
        scoring_groups=[scoring_group],
        republish_allowed=False,
    )
    outcome.faults_injected = 2  # two replays
    record(chaos_table, outcome)


# ---------------------------------------------------------------------------------------------------------
# several scoring instances


def test_two_and_three_scoring_instances_with_rebalances(make_harness: MakeHarness, chaos_table: list[Outcome]) -> None:
    """Scoring instances join and leave while events flow (1 -> 2 -> 3, one stopped, one killed, one more
    joins): the same results as one instance.

    An instance leaves only once the group has settled after the previous change (work done since, and more than
    the broker's join delay plus a session timeout): the embedded broker (Tansu 0.6) keeps a group leader that
    sends LeaveGroup while its JoinGroup is pending as the leader of every later generation, and the group then
    never completes a rebalance (docs/reliability.md, "Findings"). Joins may land mid-rebalance.
    """
    h = make_harness(partitions=6)
    start(h)
    changed = [time.monotonic(), 0]

    def at(p: float) -> Iterator[None]:
        yield from until(lambda: h.feeder.progress >= p)  # type: ignore[union-attr]

    def membership_change() -> None:
        changed[:] = [time.monotonic(), h.processed()]
        h.extra_faults += 1

    def stable() -> Iterator[None]:
        yield from until(lambda: time.monotonic() - changed[0] >= 10 and h.processed() > changed[1])

    def scenario() -> Iterator[None]:
        yield from at(0.15)
        h.add("scoring")
        membership_change()
        yield from at(0.3)
        h.add("scoring")
        membership_change()
        yield from at(0.45)
        yield from stable()
        h.of("scoring")[0].stop()  # graceful: finishes its batch, leaves the group
        membership_change()
        yield from at(0.6)
        yield from stable()
        h.of("scoring")[1].restart = False
        h.of("scoring")[1].kill()  # kill -9: the group waits for its session to expire
        membership_change()
        h.extra_faults -= 1  # counted as a kill
        yield from at(0.75)
        h.add("scoring")
        membership_change()

    h.feed(h.workload(events=3000, seed=51), rate=70)
    h.run_feed(during=Script(scenario))
    record(chaos_table, h.finish("2-3 scoring instances, rebalances under load"))


def test_paused_consumer_past_max_poll_interval(make_harness: MakeHarness, chaos_table: list[Outcome]) -> None:
    """SIGSTOP one of two scoring instances past its max poll interval (8 s; session 6 s) while the other takes
    over its partitions, then SIGCONT: its late batch must not apply twice. Done to each instance in turn."""
    h = make_harness()
    start(h, scoring=2, scoring_env={"CONSUMER_MAX_POLL_INTERVAL_MS": "8000", "CONSUMER_SESSION_TIMEOUT_MS": "6000"})
    taken_over: list[int] = []

    def pause(svc: Service) -> Iterator[None]:
        before = h.processed()
        svc.pause()
        paused_at = time.monotonic()
        h.extra_faults += 1
        # past the max poll interval, and the other instance has done work meanwhile
        yield from until(lambda: time.monotonic() - paused_at >= 10 and h.processed() > before)
        taken_over.append(h.processed() - before)
        svc.cont()

    def scenario() -> Iterator[None]:
        yield from until(lambda: h.feeder.progress >= 0.2)  # type: ignore[union-attr]
        yield from pause(h.of("scoring")[0])
        yield from until(lambda: h.feeder.progress >= 0.6)  # type: ignore[union-attr]
        yield from pause(h.of("scoring")[1])

    h.feed(h.workload(events=2500, seed=61), rate=80)
    h.run_feed(during=Script(scenario))
    record(
        chaos_table,
        h.finish(
            "SIGSTOP scoring past max.poll.interval, then SIGCONT",
            notes=[f"facts processed by the other instance while paused: {taken_over}"],
        ),
    )


# ---------------------------------------------------------------------------------------------------------
# poison


def test_every_poison_input_mixed_in(make_harness: MakeHarness, chaos_table: list[Outcome]) -> None:
    """A quarter of the stream is bad input of every kind of contract section 3: each is dead-lettered with its
    original bytes, key, code and headers; the valid events around it are processed as usual."""
    h = make_harness()
    start(h)
    h.feed(h.workload(events=2400, seed=71, poison_sets=20), rate=600)
    h.run_feed()
    record(chaos_table, h.finish("every poison input mixed in", faults=False))


def test_poison_pill_in_every_position_of_a_batch(make_harness: MakeHarness, chaos_table: list[Outcome]) -> None:
    """One bad record (NUL or lone surrogate in an id, invalid JSON, year 0001) at the first, second, middle,
    second-to-last and last position of a batch of 50 sent in one flush to one partition: ingest reads the batch
    in one poll, sets the pill aside, and hands on every other event of the batch, before and after it. 20
    batches; the oracle expects the pill dead-lettered with its code and everything else applied, no process
    dying. The weekly flows still answer (one year-0001 event once broke every flows query)."""
    h = make_harness()
    start(h)
    n = 50
    positions = (0, 1, n // 2, n - 2, n - 1)
    producer = KafkaProducer(bootstrap_servers=h.bootstrap, acks="all", linger_ms=100, batch_size=1024 * 1024)
    try:
        for i, (kind, position) in enumerate(itertools.product(POISON_PILLS, positions)):
            batch = batch_with_pill(
                size=n,
                position=position,
                kind=kind,
                seed=1000 + i,
                now=h.now,
                prefix=f"{h.name[:10]}{h.suffix[:4]}-{i}",
                topic=h.topics.purchase,
                id_field=PILL_ID_FIELDS[i % len(PILL_ID_FIELDS)],
            )
            h.sent.extend(batch)  # counted by the oracle
            # one flush, lingering: the batch goes out as one produce request, so ingest polls it whole
            futures = [producer.send(m.topic, key=m.key, value=m.value) for m in batch]
            producer.flush(60)
            assert len({f.get(timeout=0).partition for f in futures}) == 1
    finally:
        producer.close(5)
    outcome = h.finish("poison pill at every position of a batch", faults=False)
    scoring = h.of("scoring")[0]
    flows = [
        f"GET /v1/flows?bucket={b}: {r.status_code} {r.text[:200]}"
        for b in ("week", "day", "month")
        if (r := h.get(scoring.url(f"/v1/flows?bucket={b}"))).status_code != 200
    ]
    outcome.report.add("flows queries that fail", flows)
    record(chaos_table, outcome)


# ---------------------------------------------------------------------------------------------------------
# broker unreachable


@pytest.fixture
def proxied_broker(state_dir: Path) -> Iterator[tuple[str, TcpProxy]]:
    """A Tansu broker of this test alone, which every client (metadata included) reaches through a proxy."""
    listen, advertised = free_port(), free_port()
    log = open(state_dir / f"broker-proxied-{listen}.log", "ab")
    proc = subprocess.Popen(
        [
            broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{listen}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{advertised}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    log.close()
    proxy = TcpProxy(advertised, listen)
    try:
        wait_for_port(listen, timeout_s=20, proc=proc)
        proxy.start()
        yield f"127.0.0.1:{advertised}", proxy
    finally:
        proxy.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_broker_unreachable_for_a_while(
    make_harness: MakeHarness, chaos_table: list[Outcome], proxied_broker: tuple[str, TcpProxy]
) -> None:
    """Every connection to the broker is cut (and new ones refused) for ~15 s mid-stream: both services' /readyz
    say 503 naming the broker meanwhile; afterwards nothing is lost."""
    bootstrap, proxy = proxied_broker
    h = make_harness(bootstrap=bootstrap)
    start(h)
    scoring, ingest = h.of("scoring")[0], h.of("ingest")[0]
    seen: dict[str, Any] = {}

    def scenario() -> Iterator[None]:
        feeder = h.feeder
        assert feeder is not None
        yield from until(lambda: feeder.progress >= 0.4)
        feeder.hold.set()  # the shop cannot reach the broker either: it waits
        yield from until(feeder.holding.is_set)
        proxy.cut()
        cut_at = time.monotonic()
        h.extra_faults += 1
        yield from until(lambda: readyz(scoring) == (503, ["broker"]) and readyz(ingest) == (503, ["broker"]))
        seen["ready_after_s"] = round(time.monotonic() - cut_at, 1)
        yield from until(lambda: time.monotonic() - cut_at >= 15)
        seen["scoring"], seen["ingest"] = readyz(scoring), readyz(ingest)
        proxy.restore()
        feeder.hold.clear()
        yield from until(lambda: readyz(scoring)[0] == 200 and readyz(ingest)[0] == 200)
        seen["back_after_s"] = round(time.monotonic() - cut_at, 1)

    h.feed(h.workload(events=2000, seed=81), rate=150)
    h.run_feed(during=Script(scenario))
    outcome = h.finish("broker unreachable ~15 s", notes=[f"readiness: {seen}"])
    assert seen["scoring"] == (503, ["broker"]) and seen["ingest"] == (503, ["broker"]), seen
    record(chaos_table, outcome)


# ---------------------------------------------------------------------------------------------------------
# bounded growth


def test_retention_prunes_dedupe_and_the_outbox_keeps_nothing_published(
    make_harness: MakeHarness, chaos_table: list[Outcome]
) -> None:
    """`relay.prune` deletes dedupe records past their retention, and nothing else; the relay has deleted every row
    it published; a very late duplicate of a pruned event id is then counted again (documented), one of a kept id
    is not."""
    h = make_harness()
    start(h)
    h.feed(h.workload(events=1500, seed=91), rate=800)
    h.run_feed()
    outcome = h.finish("retention: prune + very late duplicate", faults=False)
    problems: list[str] = []

    # the relay deletes what it published: a settled system has an empty outbox
    if h.sql("SELECT count(*) FROM outbox")[0][0] != 0:
        problems.append("published rows remain in the outbox")
    # age every customer's dedupe records but one's past 30 days
    purchases = [
        (m, f)
        for m in h.sent
        if m.value and b'"purchase"' in m.value
        for f in [_fact(m)]
        if f is not None and f["refund"] is False
    ]
    old_msg, old = purchases[0]
    kept_msg, kept = next((m, f) for m, f in purchases if f["customer_id"] != old["customer_id"])
    with h.engine.begin() as conn:
        aged = conn.execute(
            text("UPDATE processed_events SET processed_at = now() - interval '31 days' WHERE customer_id <> :kept"),
            {"kept": kept["customer_id"]},
        ).rowcount
        kept_rows = conn.execute(
            text("SELECT count(*) FROM processed_events WHERE customer_id = :kept"), {"kept": kept["customer_id"]}
        ).scalar()
    removed = prune(engine=h.engine, dedupe_retention_days=30)
    if removed != aged:
        problems.append(f"prune removed {removed} dedupe records, expected {aged}")
    left = h.sql("SELECT count(*) FROM processed_events")[0][0]
    if left != kept_rows:
        problems.append(f"{left} dedupe rows left, expected the {kept_rows} not past retention")

    # very late duplicates: of a pruned id (counts again) and of a kept id (does not)
    before_old = _customer(h, old["customer_id"])
    before_kept = _customer(h, kept["customer_id"])
    h.send_now([Sent(old_msg.topic, old_msg.key, old_msg.value), Sent(kept_msg.topic, kept_msg.key, kept_msg.value)])
    wait_until(
        lambda: _customer(h, old["customer_id"])["counts"]["orders"] == before_old["counts"]["orders"] + 1,
        timeout_s=60,
        tick=h.tick,
        what="the late duplicate of a pruned id to count again",
    )
    settle = h.settle(None, timeout_s=60)  # everything read (lag 0) before looking at the kept customer
    if settle:
        problems.append(settle)
    after_kept = _customer(h, kept["customer_id"])
    if after_kept["counts"] != before_kept["counts"] or after_kept["profitability"] != before_kept["profitability"]:
        problems.append(f"a late duplicate of a kept id changed {kept['customer_id']}: {before_kept} -> {after_kept}")
    outcome.report.add("retention", problems)
    outcome.notes.append(f"pruned {removed} dedupe records; kept {kept_rows}")
    outcome.faults_injected = 2  # the two very late duplicates
    record(chaos_table, outcome)


def _fact(msg: Sent) -> dict[str, Any] | None:
    import json

    try:
        body = json.loads(msg.value or b"")
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("type") != "purchase" or "-bad" in str(body.get("event_id")):
        return None
    return {"customer_id": body["customer_id"], "refund": body.get("refund", False)}


def _customer(h: Harness, cid: str) -> dict[str, Any]:
    scoring = next(s for s in h.of("scoring") if s.alive())
    r = httpx.get(scoring.url(f"/v1/customers/{cid}"), timeout=10)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]
