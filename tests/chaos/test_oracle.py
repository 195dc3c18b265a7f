"""The oracle judged on its own (pure, fast, part of `make test`): it passes a faithful system and names each kind
of discrepancy a faulty one would show — a lost event, a doubled event, a missing or wrong dead letter, a rung
announced twice with different ids, a re-publish where none is allowed."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.scoring.domain.measures import profitability
from services.scoring.domain.state import RANK, STAGES
from services.scoring.outgoing import stage_change_id
from tests.chaos import oracle
from tests.chaos.harness import POLICY
from tests.chaos.oracle import Expected, Record, Sent
from tests.chaos.workload import Topics, generate

NOW = datetime(2026, 11, 1, tzinfo=UTC)
TOPICS = Topics("p", "r", "c")


@pytest.fixture(scope="module")
def sent() -> list[Sent]:
    return generate(events=1500, seed=5, prefix="o", topics=TOPICS, now=NOW)


@pytest.fixture(scope="module")
def exp(sent: list[Sent]) -> Expected:
    return oracle.expected(sent, now=NOW, policy=POLICY)


def _faithful(exp: Expected) -> dict[str, Any]:
    """What a correct system shows for `exp`."""
    views = {}
    for cid, state in exp.states.items():
        views[cid] = {
            "stage": state.stage,
            "counts": {n: getattr(state, n) for n in oracle.COUNT_NAMES},
            "profitability": profitability(state, policy=POLICY),
        }
    stages = [
        Record(
            key=cid.encode(),
            value=json.dumps(
                {
                    "event_id": stage_change_id(cid, rung),
                    "customer_id": cid,
                    "to_stage": rung,
                    "from_stage": STAGES[RANK[rung] - 1],
                }
            ).encode(),
        )
        for cid, rungs in exp.rungs.items()
        for rung in rungs
    ]
    dead = [
        Record(
            key=r.key,
            value=r.value,
            headers={
                "error.code": r.code.encode(),
                "error.message": b"m",
                "source.topic": b"t",
                "source.partition": b"0",
                "source.offset": b"1",
            },
        )
        for r in exp.rejected
    ]
    return {"views": views, "stages": stages, "dead": dead, "keys": set(exp.keys)}


def _check(exp: Expected, sys: dict[str, Any], *, faults: bool = False) -> oracle.Report:
    return oracle.check(
        exp,
        customer=sys["views"].get,
        stages_total=len(sys["views"]),
        stage_changes=sys["stages"],
        dead_letters=sys["dead"],
        processed_keys=sys["keys"],
        faults=faults,
    )


def test_the_workload_has_every_ingredient(sent: list[Sent], exp: Expected) -> None:
    codes = {r.code for r in exp.rejected}
    assert {
        "invalid_json",
        "invalid_encoding",
        "not_an_object",
        "too_large",
        "missing_field",
        "invalid_field",
        "unknown_type",
        "invalid_amount",
        "wrong_currency",
        "self_referral",
        "invalid_timestamp",
        "future_timestamp",
    } <= codes
    assert exp.duplicate_messages > 0 and exp.conversions > 0
    assert {s.stage for s in exp.states.values()} == {"visitor", "first_purchase", "regular", "advocate"}
    assert any(s.refunds for s in exp.states.values()) and any(s.complaints for s in exp.states.values())


def test_the_expectation_does_not_depend_on_send_order(sent: list[Sent], exp: Expected) -> None:
    valid_only = [m for m in sent if m.value is not None]
    backwards = oracle.expected(list(reversed(valid_only)), now=NOW, policy=POLICY)
    assert {c: (s.stage, s.orders, s.sales, s.costs, s.referrals_converted) for c, s in backwards.states.items()} == {
        c: (s.stage, s.orders, s.sales, s.costs, s.referrals_converted) for c, s in exp.states.items()
    }
    assert backwards.rungs == exp.rungs


def test_a_faithful_system_passes(exp: Expected) -> None:
    report = _check(exp, _faithful(exp))
    assert report.ok, report.summary()


def test_a_lost_event_is_named(exp: Expected) -> None:
    sys = _faithful(exp)
    cid = next(c for c, s in exp.states.items() if s.orders >= 2)
    view = sys["views"][cid]
    view["counts"]["orders"] -= 1
    lost = next(k for k in exp.keys if k[1] == "primary")
    sys["keys"].discard(lost)
    report = _check(exp, sys)
    text = report.summary()
    assert f"{cid}: orders" in text and "lost" in text and lost[0] in text


def test_a_doubled_effect_is_named(exp: Expected) -> None:
    sys = _faithful(exp)
    cid = next(iter(exp.states))
    sys["views"][cid]["profitability"] = {**sys["views"][cid]["profitability"], "sales": "999999.99"}
    assert f"{cid}: sales 999999.99" in _check(exp, sys).summary()


def test_missing_and_wrong_dead_letters_are_named(exp: Expected) -> None:
    sys = _faithful(exp)
    dropped = sys["dead"].pop()
    sys["dead"][0] = replace(sys["dead"][0], headers={**sys["dead"][0].headers, "error.code": b"nonsense"})
    sys["dead"].append(Record(key=None, value=b'{"a valid event": "dead-lettered"}', headers={}))
    text = _check(exp, sys).summary()
    assert "missing from the dead-letter topic" in text and oracle._show(dropped.value) in text
    assert "'nonsense'" in text
    assert "not rejected input" in text


def test_stage_change_faults_are_named(exp: Expected) -> None:
    sys = _faithful(exp)
    first = sys["stages"][0]
    body = json.loads(first.value)
    sys["stages"].append(Record(key=first.key, value=json.dumps({**body, "event_id": "another-id"}).encode()))
    sys["stages"].pop(1)
    text = _check(exp, sys, faults=True).summary()
    assert "more than one event_id" in text and "missing from the topic" in text


def test_republished_copies_count_under_faults_and_fail_without(exp: Expected) -> None:
    sys = _faithful(exp)
    sys["stages"] = sys["stages"] + sys["stages"][:10]
    under_faults = _check(exp, sys, faults=True)
    assert under_faults.ok and under_faults.republished == 10
    assert not _check(exp, sys, faults=False).ok


def test_an_unexpected_customer_is_named(exp: Expected) -> None:
    sys = _faithful(exp)
    report = oracle.check(
        exp,
        customer=sys["views"].get,
        stages_total=len(sys["views"]) + 1,
        stage_changes=sys["stages"],
        dead_letters=sys["dead"],
        processed_keys=sys["keys"],
    )
    assert "GET /v1/stages total" in report.summary()
