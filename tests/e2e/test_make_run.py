"""`make run` as a new user runs it: embedded PostgreSQL and broker, migrations, ingest and scoring; a signal
stops every process it started; the database keeps its data across restarts."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from devstack.embedded import free_port
from tests.facts import decode_record
from tests.integration.test_ingest import BAD
from tests.support import Shop, System, TopicReader, purchase, uid, wait_until


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_make_run_embedded_stack_end_to_end(tmp_path: Path) -> None:
    broker_port = free_port()
    sut = System(
        env={"EMBEDDED_BROKER_PORT": str(broker_port)},
        state_dir=tmp_path / "state",
        unset=(
            "DATABASE_URL",
            "KAFKA_BOOTSTRAP_SERVERS",
            "API_TOKENS",
            "TOPIC_PURCHASES",
            "TOPIC_SCORING_INPUT",
            "TOPIC_DEAD_LETTER",
            "TOPIC_STAGE_CHANGES",
        ),
    )
    started = time.monotonic()
    sut.start(timeout_s=60)
    print(f"make run: ready in {time.monotonic() - started:.1f}s")  # reported by the closing note
    children = _descendants(sut.pid)
    names = " ".join(" ".join(p.cmdline()) for p in children)
    assert "tansu" in names and "postgres" in names
    assert "services.ingest" in names and "services.scoring" in names

    bootstrap = f"127.0.0.1:{broker_port}"
    shop = Shop(bootstrap, {"purchase": "shop.purchases"})
    handed_on = TopicReader(bootstrap, "loyalty.scoring-input")
    dead = TopicReader(bootstrap, "loyalty.dead-letter")
    try:
        c = uid("fresh-")
        good = purchase(c, amount="42.00")
        for name, value, _ in BAD:
            shop.producer.send("shop.purchases", key=name.encode(), value=value)
        shop.send(good)
        shop.flush()
        got = sut.wait_customer(c, timeout_s=30)
        assert got["stage"] == "first_purchase"
        assert got["profitability"]["sales"] == "42.00"
        facts = wait_until(
            lambda: [f for r in handed_on.poll() for f in decode_record(r.value) if f.customer_id == c],
            what="handed-on fact",
        )
        assert [f.event_id for f in facts] == [good["event_id"]]
        letters = wait_until(lambda: len(dead.poll()) >= len(BAD) and dead.poll(), what="every dead letter")
        by_key = {r.key: r for r in letters}
        for name, value, code in BAD:  # every bad input of contract section 3
            letter = by_key[name.encode()]
            assert letter.value == value, name
            headers = {k: v.decode() for k, v in letter.headers}
            assert headers["error.code"] == code, name
            assert headers["source.topic"] == "shop.purchases"
            assert headers["error.message"] and headers["source.partition"].isdigit()
            assert headers["source.offset"].isdigit()
    finally:
        shop.close()
        handed_on.close()
        dead.close()

    assert sut.stop() == 0
    assert wait_until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children),
        timeout_s=10,
        what="every child gone",
    )

    # the database lives in the state folder and survives a restart (the in-memory broker does not)
    again = System(
        env={"EMBEDDED_BROKER_PORT": str(free_port())},
        state_dir=tmp_path / "state",
        unset=("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    again.start(timeout_s=60)
    try:
        assert again.customer(c) is not None
    finally:
        assert again.stop() == 0
