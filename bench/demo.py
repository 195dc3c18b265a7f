"""`make demo`: a synthetic shop feeding a running system, and the ladder printed as it fills.

Start the system first (`make run` in another terminal), then `make demo`. It sends a generated stream
(bench/generator.py) to the shop topics at a modest rate, and every couple of seconds prints the customers on
each rung, by tier, from `GET /v1/stages` of the scoring service.

    .venv/bin/python -m bench.demo [--customers 2000] [--events 20000] [--rate 300] [--every 2] [--seed N]

Settings from the environment, as the services read them: KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:9092),
SCORING_PORT (8002), the topic names, and API_TOKENS (the first token is used when the API needs one).
The seed defaults to the current time, so every demo adds new customers rather than re-sending old events.

The stream also holds the bottom of the ladder (contract section 12): a prospect event for a share of the
shoppers before their first event, touches (outbound and inbound, on every channel) for some of them, and
leads of their own that are only listed (they stay on `potential`) or only touched (they become visitors).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import httpx
from kafka import KafkaProducer

from bench.generator import generate
from services.scoring.auth import split_name
from shared.settings import Settings

STAGES = ("potential", "visitor", "first_purchase", "regular", "advocate")
TIERS = ("profitable", "middling", "unprofitable")


CHANNELS = ("email", "web", "store", "ad", "call", "other")


def with_prospects(stream: list[dict[str, Any]], *, seed: int, leads: int) -> list[dict[str, Any]]:
    """`stream` with prospect and touch events woven in, in time order, and `leads` customers of their own."""
    rng = random.Random(seed)
    first: dict[str, str] = {}
    for event in stream:
        at = event["occurred_at"]
        if event["customer_id"] not in first or at < first[event["customer_id"]]:
            first[event["customer_id"]] = at
    extra: list[dict[str, Any]] = []

    def add(kind: str, customer: str, at: str, **fields: str) -> None:
        extra.append(
            {
                "event_id": f"demo-{seed}-{len(extra)}",
                "type": kind,
                "customer_id": customer,
                "occurred_at": at,
                **fields,
            }
        )

    # shoppers who were leads first: listed, sometimes touched, then they bought (their first event's moment
    # minus a little: ISO strings of one format sort as the moments do)
    for customer, at in first.items():
        if rng.random() < 0.4:
            add("prospect", customer, at[:10] + "T00:00:00Z", source=rng.choice(("fair", "newsletter", "partner")))
        if rng.random() < 0.3:
            add("touch", customer, at, channel=rng.choice(CHANNELS), direction=rng.choice(("outbound", "inbound")))
    moments = sorted(first.values()) or ["2026-01-01T00:00:00Z"]
    for i in range(leads):
        lead = f"lead-{seed}-{i}"
        at = rng.choice(moments)
        add("prospect", lead, at, source=rng.choice(("fair", "newsletter", "partner")))
        if rng.random() < 0.35:  # some notice us, and climb to visitor without buying
            add("touch", lead, at, channel=rng.choice(CHANNELS), direction=rng.choice(("outbound", "inbound")))
    return sorted([*stream, *extra], key=lambda e: e["occurred_at"])


def render(stages: dict[str, Any], *, sent: int, total: int, elapsed: float) -> str:
    """The ladder as a text table, top rung first, with a bar per rung."""
    customers = int(stages.get("customers", 0))
    rungs = stages.get("stages", {})
    widest = max([1, *(int(rungs.get(s, {}).get("customers", 0)) for s in STAGES)])
    lines = [
        f"t={elapsed:6.1f}s  sent {sent:,}/{total:,} events  customers {customers:,}",
        f"{'rung':<15}{'customers':>10}{'profitable':>12}{'middling':>10}{'unprofitable':>14}  ",
    ]
    for stage in reversed(STAGES):
        row = rungs.get(stage, {"customers": 0, "tiers": {}})
        n = int(row.get("customers", 0))
        tiers = row.get("tiers", {})
        bar = "#" * round(30 * n / widest)
        lines.append(
            f"{stage:<15}{n:>10,}"
            + "".join(f"{int(tiers.get(t, 0)):>{w},}" for t, w in zip(TIERS, (12, 10, 14), strict=True))
            + f"  {bar}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description="feed a running system and watch the ladder")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=300.0, help="events per second")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between two tables")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--leads", type=int, default=None, help="prospects who are not (yet) shoppers; default a quarter of --customers"
    )
    parser.add_argument("--scoring-url", default=None, help="default http://127.0.0.1:$SCORING_PORT")
    args = parser.parse_args(argv)
    settings = Settings()
    seed = args.seed if args.seed is not None else int(time.time())
    base = args.scoring_url or f"http://127.0.0.1:{settings.scoring_port}"
    headers = {}
    if settings.api_tokens:
        token = split_name(settings.api_tokens.split(",")[0].strip().rpartition(":")[0])[1]
        headers["Authorization"] = f"Bearer {token}"
    # prospects and touches may go to any shop topic (their `type` says what they are)
    topics = {
        "purchase": settings.topic_purchases,
        "referral": settings.topic_referrals,
        "complaint": settings.topic_complaints,
        "prospect": settings.topic_purchases,
        "touch": settings.topic_complaints,
    }

    stream = with_prospects(
        generate(customers=args.customers, events=args.events, seed=seed, duplicates=0.005),
        seed=seed,
        leads=args.leads if args.leads is not None else args.customers // 4,
    )
    print(
        f"synthetic shop: {len(stream):,} events over {args.customers:,} customers (seed {seed}), "
        f"{args.rate:.0f}/s to {settings.kafka_bootstrap_servers}; ladder from {base}/v1/stages",
        flush=True,
    )
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
            linger_ms=20,
            compression_type="lz4",
            acks="all",
        )
    except Exception as exc:  # noqa: BLE001 - tell the user what to do rather than a traceback
        print(
            f"cannot reach the broker at {settings.kafka_bootstrap_servers}: {exc}\n"
            "start the system first (make run), or set KAFKA_BOOTSTRAP_SERVERS",
            file=sys.stderr,
        )
        return 1
    client = httpx.Client(base_url=base, headers=headers, timeout=5)
    started = time.monotonic()
    next_print = started
    sent = 0
    last: dict[str, Any] | None = None
    finished_at = 0.0
    try:
        while True:
            now = time.monotonic()
            due = min(len(stream), int((now - started) * args.rate) + 1)
            for event in stream[sent:due]:
                producer.send(
                    topics[event["type"]],
                    key=event["customer_id"].encode(),
                    value=json.dumps(event, separators=(",", ":")).encode(),
                )
            sent = due
            if now >= next_print:
                producer.flush(10)
                body: dict[str, Any] | None = None
                try:
                    resp = client.get("/v1/stages")
                    resp.raise_for_status()
                    body = resp.json()
                    text = render(body, sent=sent, total=len(stream), elapsed=now - started)
                except httpx.HTTPError as exc:
                    text = f"t={now - started:6.1f}s  sent {sent:,}  (scoring API not answering: {exc})"
                print(text + "\n", flush=True)
                next_print = now + args.every
                if sent >= len(stream):
                    # everything is sent: stop once the ladder has settled (or after 30 s)
                    if body == last or (finished_at and now - finished_at > 30):
                        break
                    finished_at = finished_at or now
                last = body
            time.sleep(0.02)
    except KeyboardInterrupt:
        print(f"stopped after {sent:,} events", flush=True)
    finally:
        producer.flush(10)
        producer.close(5)
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
