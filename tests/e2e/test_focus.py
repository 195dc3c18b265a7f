"""Contract section 16 end to end: the focus of customers fed through Kafka, read over HTTP and off the
stage-change topic; the `develop=` filter, `sort=index` paging (also while customers arrive), CSV, the per-rung
breakdown of /v1/stages, the policy's focus, and bad parameters."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest

from tests.support import Shop, System, TopicReader, complaint, purchase, referral, uid, wait_until

STAGES = ["potential", "visitor", "first_purchase", "regular", "advocate"]
KINDS = ["financial", "procedural", "contact", "evaluative", "consultative"]
FIRST_KINDS = ["contact", "evaluative", "consultative"]
PREFIX = "fx-"
CSV_HEADER = ["customer_id", "stage", "tier", "sales", "costs", "profit", "stability", *KINDS]


def rules(loyalty: dict[str, float], stage: str, weights: dict[str, float], actions: dict[str, str]) -> dict[str, Any]:
    """The contract's rules read literally, in exact fractions."""
    s = {k: Fraction(str(loyalty[k])) for k in KINDS}
    w = {k: Fraction(str(weights[k])) for k in KINDS}
    encourage = min(KINDS, key=lambda k: (-s[k], KINDS.index(k)))
    if stage in ("potential", "visitor", "first_purchase"):
        develop = min(FIRST_KINDS, key=lambda k: (s[k], KINDS.index(k)))
    else:
        develop = min(KINDS, key=lambda k: (-(w[k] * (1 - s[k])), KINDS.index(k)))
    mean = sum((w[k] * s[k] for k in KINDS), Fraction(0)) / sum(w.values())
    index = (Decimal(mean.numerator) / Decimal(mean.denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return {"encourage": encourage, "develop": develop, "action": actions[develop], "index": float(index)}


def _three_orders(c: str, *, discount: str = "0", amount: str = "60.00") -> list[dict[str, Any]]:
    return [
        purchase(c, at=at, amount=amount, discount=discount)
        for at in ("2026-09-05T10:00:00Z", "2026-09-20T10:00:00Z", "2026-10-05T10:00:00Z")
    ]


@pytest.fixture(scope="module")
def people(system: System, shop: Shop) -> dict[str, str]:
    """Customers on every rung with different profiles; each's id by role."""
    p = {
        role: uid(f"{PREFIX}{role}-")
        for role in ("complainer", "referrer", "buyer", "twin-a", "twin-b", "regular", "grumbling-regular", "advocate")
    }
    p["friend"] = uid(f"{PREFIX}friend-")
    events = [
        complaint(p["complainer"], at="2026-10-01T10:00:00Z"),
        referral(p["referrer"], p["friend"], at="2026-10-02T10:00:00Z"),
        purchase(p["buyer"], at="2026-10-03T10:00:00Z", amount="120.00"),
        # twins: the same history, so the same index (a tie, broken by customer_id)
        purchase(p["twin-a"], at="2026-10-04T10:00:00Z", amount="80.00"),
        purchase(p["twin-b"], at="2026-10-04T10:00:00Z", amount="80.00"),
        *_three_orders(p["regular"], discount="1.00"),
        *_three_orders(p["grumbling-regular"], discount="1.00"),
        complaint(p["grumbling-regular"], at="2026-10-06T10:00:00Z"),
        complaint(p["grumbling-regular"], at="2026-10-07T10:00:00Z"),
        *_three_orders(p["advocate"], amount="200.00"),
        referral(p["advocate"], uid(f"{PREFIX}pal-"), at="2026-10-06T10:00:00Z"),
    ]
    shop.send_all(events)
    expected_stage = {
        "complainer": "visitor",
        "referrer": "visitor",
        "friend": "visitor",
        "buyer": "first_purchase",
        "twin-a": "first_purchase",
        "twin-b": "first_purchase",
        "regular": "regular",
        "grumbling-regular": "regular",
        "advocate": "advocate",
    }
    for role, stage in expected_stage.items():
        system.wait_customer(p[role], lambda c, s=stage: c["stage"] == s)
    system.wait_customer(p["grumbling-regular"], lambda c: c["counts"]["complaints"] == 2)
    system.wait_customer(p["advocate"], lambda c: c["counts"]["referrals_made"] == 1)
    return p


@pytest.fixture(scope="module")
def policy(system: System) -> dict[str, Any]:
    r = system.get("/v1/policy")
    assert r.status_code == 200, r.text
    return r.json()["focus"]  # type: ignore[no-any-return]


def walk(system: System, *, limit: int, **params: str) -> list[dict[str, Any]]:
    """Every item of a list, following `next` to the end."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query: dict[str, Any] = {**params, "limit": limit}
        if after is not None:
            query["after"] = after
        r = system.get("/v1/customers", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        after = body["next"]
        if after is None:
            return items


def ours(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if i["customer_id"].startswith(PREFIX)]


# ---- the policy and one customer ---------------------------------------------------------------------------


def test_the_policy_shows_the_default_focus(policy: dict[str, Any]) -> None:
    assert policy["weights"] == dict.fromkeys(KINDS, 1.0)
    assert set(policy["actions"]) == set(KINDS)
    assert policy["actions"]["contact"] == (
        "call after the order with the quality questions; a small gift for the answers"
    )
    assert all(0 < len(a) <= 500 for a in policy["actions"].values())


def test_each_customer_has_the_focus_the_rules_give(
    system: System, people: dict[str, str], policy: dict[str, Any]
) -> None:
    seen_develop = set()
    for role, c in people.items():
        body = system.customer(c)
        assert body is not None
        assert set(body["focus"]) == {"encourage", "develop", "action", "index"}
        assert body["focus"] == rules(body["loyalty"], body["stage"], policy["weights"], policy["actions"]), role
        seen_develop.add(body["focus"]["develop"])
    assert len(seen_develop) >= 3


@pytest.mark.parametrize(
    "role, encourage, develop",
    [
        ("complainer", "evaluative", "consultative"),  # they gave feedback: encourage it; nobody recommended yet
        ("referrer", "consultative", "evaluative"),
        ("friend", "financial", "contact"),  # nothing shown yet: every score 0, the first kinds in order
        ("buyer", "procedural", "evaluative"),
        ("grumbling-regular", "evaluative", "consultative"),
    ],
)
def test_the_seeds_advice_for_typical_customers(
    system: System, people: dict[str, str], role: str, encourage: str, develop: str
) -> None:
    body = system.customer(people[role])
    assert body is not None
    assert (body["focus"]["encourage"], body["focus"]["develop"]) == (encourage, develop)


def test_a_new_customer_with_no_activity_has_index_0(system: System, people: dict[str, str]) -> None:
    body = system.customer(people["friend"])
    assert body is not None and body["focus"]["index"] == 0.0


def test_the_stage_change_message_carries_the_focus_the_list_stores(
    system: System, people: dict[str, str], stage_changes: TopicReader
) -> None:
    # each of these has one event, which made its stage changes: the stored focus is the one measured then
    single = [people[r] for r in ("complainer", "buyer", "twin-a")]

    def messages() -> dict[str, dict[str, Any]] | None:
        last = {m["customer_id"]: m for m in stage_changes.json_values() if m["customer_id"] in single}
        return last if len(last) == len(single) else None

    found = wait_until(messages, what="stage changes of the single-event customers")
    listed = {i["customer_id"]: i for i in walk(system, limit=1000)}
    for c in single:
        message = found[c]
        assert set(message["focus"]) == {"encourage", "develop", "action", "index"}
        assert listed[c]["focus"] == {"develop": message["focus"]["develop"], "index": message["focus"]["index"]}


# ---- lists: develop= and sort=index ----------------------------------------------------------------------------


def test_every_customer_is_listed_under_exactly_one_kind_to_develop(system: System, people: dict[str, str]) -> None:
    everyone = {i["customer_id"]: i for i in ours(walk(system, limit=1000))}
    assert set(people.values()) <= set(everyone)
    by_kind: dict[str, list[str]] = {}
    for kind in KINDS:
        items = ours(walk(system, limit=3, develop=kind))
        assert all(i["focus"]["develop"] == kind for i in items)
        by_kind[kind] = [i["customer_id"] for i in items]
    listed = [c for ids in by_kind.values() for c in ids]
    assert sorted(listed) == sorted(everyone)  # each once, under the kind its item says
    assert len([k for k, ids in by_kind.items() if ids]) >= 3


@pytest.mark.parametrize(
    "params",
    [
        {"stage": "regular"},
        {"stage": "first_purchase", "tier": "profitable"},
        {"tier": "middling"},
        {"stage": "visitor"},
    ],
)
def test_develop_combines_with_stage_and_tier(system: System, people: dict[str, str], params: dict[str, str]) -> None:
    whole = ours(walk(system, limit=1000, **params))
    for kind in KINDS:
        got = ours(walk(system, limit=2, develop=kind, **params))
        assert got == [i for i in whole if i["focus"]["develop"] == kind]


def test_sort_index_lists_highest_first_ties_by_customer_id(system: System, people: dict[str, str]) -> None:
    items = walk(system, limit=1000, sort="index")
    keys = [(-i["focus"]["index"], i["customer_id"]) for i in items]
    assert keys == sorted(keys)
    assert len({i["customer_id"] for i in items}) == len(items)
    twins = [i for i in items if i["customer_id"] in (people["twin-a"], people["twin-b"])]
    assert twins[0]["focus"]["index"] == twins[1]["focus"]["index"]
    assert [t["customer_id"] for t in twins] == sorted([people["twin-a"], people["twin-b"]])
    assert items[0]["focus"]["index"] > items[-1]["focus"]["index"]
    for limit in (1, 4):
        assert walk(system, limit=limit, sort="index") == items


def test_sort_index_combines_with_the_filters(system: System, people: dict[str, str]) -> None:
    whole = walk(system, limit=1000, sort="index")
    for params in (
        {"develop": "evaluative"},
        {"stage": "first_purchase"},
        {"stage": "regular", "develop": "consultative"},
        {"tier": "middling", "develop": "contact"},
    ):
        got = walk(system, limit=2, sort="index", **params)
        want = [
            i
            for i in whole
            if all(
                (
                    i["focus"]["develop"]
                    if k == "develop"
                    else i["stage"]
                    if k == "stage"
                    else i["profitability"]["tier"]
                )
                == v
                for k, v in params.items()
            )
        ]
        assert got == want, params


def test_the_csv_takes_develop_and_sort_and_keeps_its_header(system: System, people: dict[str, str]) -> None:
    for params in ({"develop": "evaluative"}, {"sort": "index"}, {"sort": "index", "stage": "first_purchase"}):
        r = system.get("/v1/customers", params=params, headers={"Accept": "text/csv"})
        assert r.status_code == 200, r.text
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0] == CSV_HEADER
        assert [row[0] for row in rows[1:]] == [i["customer_id"] for i in walk(system, limit=1000, **params)]
    r = system.get("/v1/customers", params={"develop": "contact", "sort": "index"}, headers={"Accept": "text/csv"})
    assert 'filename="customers-contact-by-index.csv"' in r.headers["content-disposition"]


class Writer(threading.Thread):
    """Sends events for new customers (about 50 a second) until stopped: their index is anywhere in the order."""

    def __init__(self, shop: Shop) -> None:
        super().__init__(daemon=True)
        self.shop, self.stop, self.sent = shop, threading.Event(), 0

    def run(self) -> None:
        while not self.stop.is_set() and self.sent < 1000:
            for n in range(10):
                c = uid("live-")
                self.shop.send(
                    purchase(c, at="2026-11-01T10:00:00Z", amount=f"{10 + 37 * n}.00")
                    if n % 2
                    else complaint(c, at="2026-11-02T10:00:00Z")
                )
            self.shop.flush()
            self.sent += 10
            self.stop.wait(0.2)


@pytest.fixture
def writer(shop: Shop) -> Iterator[Writer]:
    w = Writer(shop)
    yield w
    w.stop.set()
    w.join(10)


def test_index_pages_neither_repeat_nor_skip_while_customers_arrive(
    system: System, shop: Shop, people: dict[str, str], writer: Writer
) -> None:
    base = [
        purchase(uid("base-"), at=f"2026-10-{1 + n % 28:02d}T10:00:00Z", amount=f"{5 + 11 * n}.00") for n in range(120)
    ]
    shop.send_all(base)
    wait_until(lambda: all(system.customer(e["customer_id"]) for e in base), what="base customers")
    before = {i["customer_id"] for i in walk(system, limit=1000, sort="index")}
    total_before = system.get("/v1/stages").json()["customers"]

    writer.start()
    wait_until(lambda: system.get("/v1/stages").json()["customers"] > total_before, what="writes under way")
    pages: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"sort": "index", "limit": 7}
        if after:
            params["after"] = after
        body = system.get("/v1/customers", params=params).json()
        pages.extend(i["customer_id"] for i in body["items"])
        after = body["next"]
        if after is None:
            break
    writer.stop.set()
    writer.join(10)

    assert len(pages) == len(set(pages)), "a customer appeared on two pages"
    assert not before - set(pages), "customers that existed before paging (and got no event) were skipped"
    assert system.get("/v1/stages").json()["customers"] > total_before + 20, "writes went on during paging"


# ---- the ladder: customers to develop per rung -------------------------------------------------------------


def test_stages_count_each_rungs_customers_by_the_kind_to_develop(system: System, people: dict[str, str]) -> None:
    def consistent() -> dict[str, Any] | None:
        body = system.get("/v1/stages").json()
        listed = walk(system, limit=1000)
        counts = {s: dict.fromkeys(KINDS, 0) for s in STAGES}
        for i in listed:
            counts[i["stage"]][i["focus"]["develop"]] += 1
        same = all(body["stages"][s]["develop"] == counts[s] for s in STAGES) and body["customers"] == len(listed)
        return body if same else None

    body = wait_until(consistent, what="/v1/stages and the list to agree")
    for stage in STAGES:
        rung = body["stages"][stage]
        assert set(rung["develop"]) == set(KINDS)
        assert sum(rung["develop"].values()) == rung["customers"]  # every customer here has a stored focus
        assert sum(rung["tiers"].values()) == rung["customers"]
    # new customers develop contact, evaluative or consultative only
    for stage in ("visitor", "first_purchase"):
        assert body["stages"][stage]["develop"]["financial"] == body["stages"][stage]["develop"]["procedural"] == 0


# ---- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, status, error",
    [
        ({"develop": "unknown"}, 422, "invalid_request"),
        ({"develop": "Contact"}, 422, "invalid_request"),
        ({"sort": "loyalty"}, 422, "invalid_request"),
        ({"sort": "index", "after": "%%%"}, 400, "invalid_cursor"),
        ({"sort": "index", "after": "10001.YzE"}, 400, "invalid_cursor"),
    ],
)
def test_bad_focus_parameters_are_json_errors(system: System, params: dict[str, str], status: int, error: str) -> None:
    r = system.get("/v1/customers", params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    # contract section 15: the v1 shape, and a 422 may add "problems"
    assert {"error", "detail"} <= set(r.json()) <= {"error", "detail", "problems"}
    assert r.json()["error"] == error and r.json()["detail"]


def test_a_cursor_of_one_order_is_refused_by_the_other(system: System, people: dict[str, str]) -> None:
    by_id = system.get("/v1/customers", params={"limit": 1}).json()["next"]
    by_index = system.get("/v1/customers", params={"limit": 1, "sort": "index"}).json()["next"]
    assert by_id and by_index
    r = system.get("/v1/customers", params={"sort": "index", "after": by_id})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor")
    r = system.get("/v1/customers", params={"after": by_index})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor")
