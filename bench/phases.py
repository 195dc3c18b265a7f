"""The phases of one bench run, each a figure of docs/performance.md: throughput, catch-up from a backlog,
latency, the bare-consumer baseline, the naive baseline; and `run_system`, which runs them on one system."""

from __future__ import annotations

import functools
import json
import math
import os
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench import log
from bench.api_load import EXPORTS, exports_during, slowdown
from bench.generator import rfc3339
from bench.progress import Progress, digest, wait_applied
from bench.sampling import ResourceSampler
from bench.shop import Message, last_ids, shop_batches, shop_producer, with_partitions
from bench.system import SystemUnderTest
from devstack.embedded import EmbeddedPostgres, create_database
from devstack.runner import wait_until
from shared.settings import Settings


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def warm_up(sut: SystemUnderTest, progress: Progress, *, tag: str) -> None:
    """One event through the whole system, so that both consumer groups are joined before the clock starts."""
    producer = shop_producer(sut.bootstrap, linger_ms=0)
    event = {
        "event_id": f"warmup-{tag}",
        "type": "complaint",
        "customer_id": f"warmup-{tag}",
        "occurred_at": rfc3339(datetime.now(UTC)),
        "severity": "low",
    }
    before = progress.counts()[0]
    producer.send(sut.settings.topic_complaints, json.dumps(event).encode())
    producer.flush(30)
    producer.close(5)
    wait_until(
        lambda: progress.counts()[0] > before, timeout_s=120, interval_s=0.2, what=f"warm-up event through {sut.name}"
    )
    if sut.instances > 1:
        time.sleep(3.0)  # let the last instance's join and the rebalance settle


def measure_throughput(
    sut: SystemUnderTest,
    messages: list[Message],
    expect: dict[str, int],
    *,
    progress: Progress,
    sampler: ResourceSampler | None,
    timeout_s: float,
    profile_dir: Path | None = None,
    shop: str = "batches",
) -> dict[str, Any]:
    recordings = []
    if profile_dir is not None:
        from bench import profile

        pids = {
            role: p.pid
            for role, p in sut.processes().items()
            if role == "ingest" or role.startswith(("scoring", "relay"))
        }
        recordings = profile.start(pids, profile_dir)
        time.sleep(1.0)  # py-spy attaches
    load_before = os.getloadavg()[0]
    batches_before = sut.scoring_batches()
    base = progress.counts()
    producer = shop_producer(sut.bootstrap) if shop == "kafka-python" else shop_batches(sut.bootstrap)
    routed = with_partitions(producer, messages)
    tail = last_ids(messages)
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
    done, samples = wait_applied(progress, base=base, expect=expect, tail=tail, started=started, timeout_s=timeout_s)
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
        "events": len(messages),
        "done": done,
        "seconds": round(elapsed, 3),
        "send_seconds": round(sent_s, 3),
        "shop_producer": shop,
        "events_per_s": round(len(messages) / elapsed, 1),
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_us_per_event": {k: round(v * 1e6 / len(messages)) for k, v in cpu.items()},
        "cpu_us_per_event_total": round(sum(cpu.values()) * 1e6 / len(messages)),
        "cpu_busy_share_of_wall": {k: round(v / elapsed, 2) for k, v in cpu.items()},
        "run_queue_wait_seconds": {k: round(wait_after[k] - wait_before.get(k, 0.0), 2) for k in wait_after},
        "profile": profiles,
        "scoring_transactions": {
            "count": int(transactions),
            "facts_each": round(facts / transactions, 1) if transactions else None,
            "ms_each": round(tx_seconds * 1000 / transactions, 1) if transactions else None,
        },
        "applied_primary": final[0] - base[0],
        "expected_primary": expect["distinct_events"],
        "conversions": final[2] - base[2],
        "cpu_seconds": cpu,
        "progress": samples[:: max(1, len(samples) // 60)],
    }
    log(
        f"{sut.name}: {'done' if done else 'NOT DONE'} in {elapsed:.2f}s: {result['events_per_s']:.0f} events/s; "
        f"cpu seconds {cpu}; waiting for a CPU {result['run_queue_wait_seconds']}"
    )
    return result


def measure_catch_up(
    sut: SystemUnderTest,
    messages: list[Message],
    expect: dict[str, int],
    *,
    progress: Progress,
    sampler: ResourceSampler,
    timeout_s: float,
) -> dict[str, Any]:
    """The pipeline alone draining a backlog: ingest is paused while the shop writes N new events, then resumed.

    The shop's producer is done before the clock starts, so its CPU is not on the machine while the clock
    runs: this is the rate at which the system catches up after an outage, on the same 2 cores. Ingest is
    SIGSTOPped for the few seconds of writing (less than the 6 s session timeout, so the group stays as it is).
    """
    ingest = sut.processes()["ingest"]
    base = progress.counts()
    producer = shop_producer(sut.bootstrap)
    routed = with_partitions(producer, messages)
    tail = last_ids(messages)
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
    done, _ = wait_applied(progress, base=base, expect=expect, tail=tail, started=started, timeout_s=timeout_s)
    elapsed = time.perf_counter() - started
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in sampler.cpu_seconds().items() if not k.startswith("bench")}
    result = {
        "events": len(messages),
        "done": done,
        "paused_s": round(paused_s, 2),
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(messages) / elapsed, 1),
        "cpu_us_per_event": {k: round(v * 1e6 / len(messages)) for k, v in cpu.items()},
        "cpu_us_per_event_total": round(sum(cpu.values()) * 1e6 / len(messages)),
    }
    log(
        f"{sut.name}: backlog {'drained' if done else 'NOT drained'} in {elapsed:.2f}s: "
        f"{result['events_per_s']:.0f} events/s; cpu {result['cpu_us_per_event']}"
    )
    return result


def bare_consumer(bootstrap: str, settings: Settings, expected: int, *, timeout_s: float = 120) -> dict[str, Any]:
    """Baseline 1: read and json-decode the shop topics' messages with a plain consumer."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_bytes=32 << 20,
        max_partition_fetch_bytes=4 << 20,
    )
    tps: list[TopicPartition] = []
    for topic in settings.shop_topics:
        parts: set[int] = wait_until(
            functools.partial(consumer.partitions_for_topic, topic), timeout_s=30, what=f"metadata {topic}"
        )
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
    reader = KafkaConsumer(
        bootstrap_servers=sut.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10, max_poll_records=5000
    )
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
        event = {
            "event_id": event_id,
            "type": "purchase",
            "customer_id": customer_id,
            "occurred_at": rfc3339(datetime.now(UTC)),
            "amount": "42.00",
            "cost": "20.00",
            "currency": "EUR",
            "refund": False,
        }
        value = json.dumps(event).encode()
        sent[event_id] = time.time()
        producer.send(sut.settings.topic_purchases, key=customer_id.encode(), value=value)
    producer.flush(30)
    actual_rate = total / (time.perf_counter() - started)
    try:
        # the stage topic may hold a tail of earlier messages (Tansu's ListOffsets(latest) can point before
        # the true log end), so count only the changes this phase caused
        wait_until(
            lambda: sum(1 for k in list(received) if k in sent) >= total or None,
            timeout_s=60,
            interval_s=0.2,
            what="all stage changes",
        )
    except AssertionError:  # wait_until's time-out: report what arrived
        log(f"latency: only {len(received)} of {total} stage changes arrived")
    stop.set()
    thread.join(5)
    reader.close()
    producer.close(5)
    lat = [received[k] - sent[k] for k in sent if k in received]
    foreign = [k for k in received if k not in sent]
    return {
        "events": total,
        "rate_per_s": round(actual_rate, 1),
        "matched": len(lat),
        "unmatched_stage_changes": len(foreign),
        "unmatched_sample": foreign[:5],
        "p50_s": round(percentile(lat, 0.50), 4),
        "p90_s": round(percentile(lat, 0.90), 4),
        "p99_s": round(percentile(lat, 0.99), 4),
        "max_s": round(max(lat), 4) if lat else None,
        "mean_s": round(statistics.fmean(lat), 4) if lat else None,
    }


def run_naive_baseline(pg: EmbeddedPostgres, messages: list[Message], sample: int) -> dict[str, Any]:
    from bench.naive import run_naive
    from services.scoring.__main__ import load_policy
    from services.scoring.migrate import upgrade

    url = create_database(pg.url, "bench_naive")
    upgrade(database_url=url)
    log(f"naive: one transaction per event over {min(sample, len(messages))} events")
    return run_naive(url, [m[2] for m in messages[:sample]], policy=load_policy(settings=Settings()))


def run_system(
    *,
    name: str,
    root: Path,
    pg: EmbeddedPostgres,
    template_url: str | None,
    partitions: int,
    instances: int,
    messages: list[Message],
    expect: dict[str, int],
    seed: int,
    latency_s: float,
    latency_rate: float,
    with_baseline: bool,
    timeout_s: float,
    profile_dir: Path | None = None,
    backlog: list[Message] | None = None,
    backlog_expect: dict[str, int] | None = None,
    shop: str = "batches",
    api_load: list[Message] | None = None,
    api_expect: dict[str, int] | None = None,
) -> dict[str, Any]:
    database_url = create_database(pg.url, f"bench_{name.replace('-', '_')}")
    sut = SystemUnderTest(
        name=name, workdir=root / name, database_url=database_url, partitions=partitions, instances=instances
    )
    log(f"{name}: starting the system (partitions={partitions}, scoring instances={instances})")
    t0 = time.perf_counter()
    sut.start()
    log(f"{name}: system ready in {time.perf_counter() - t0:.1f}s")
    out: dict[str, Any] = {"partitions": partitions, "scoring_instances": instances}
    progress = Progress(database_url)
    sampler = ResourceSampler(sut, pg).start()
    try:
        warm_up(sut, progress, tag=name)
        out["throughput"] = measure_throughput(
            sut,
            messages,
            expect,
            progress=progress,
            sampler=sampler,
            timeout_s=timeout_s,
            profile_dir=profile_dir,
            shop=shop,
        )
        # before the backlog: draining it fills the consumers' fetch buffers (up to fetch_max_bytes)
        out["peak_rss_mib"] = sampler.peaks()
        if api_load is not None and api_expect is not None:
            # the same phase over fresh events while 8 clients export the whole list as CSV again and again
            log(f"{name}: throughput under {EXPORTS} concurrent CSV exports")
            loaded = exports_during(
                scoring_url=f"http://127.0.0.1:{sut.stack.scoring_ports[0]}",
                run=lambda: measure_throughput(
                    sut, api_load, api_expect, progress=progress, sampler=sampler, timeout_s=timeout_s, shop=shop
                ),
            )
            out["api_load"] = {
                **{k: v for k, v in loaded.items() if k != "phase"},
                **slowdown(out["throughput"]["events_per_s"], loaded["phase"]["events_per_s"]),
            }
        if backlog is not None and backlog_expect is not None:
            out["catch_up"] = measure_catch_up(
                sut, backlog, backlog_expect, progress=progress, sampler=sampler, timeout_s=timeout_s
            )
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
