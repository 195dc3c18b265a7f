"""Contract section 12 end to end: prospect and touch events through Kafka, the import and the funnel over HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import Shop, System, TopicReader, purchase, uid, wait_until


def prospect(customer_id: str, *, at: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": uid("p-"), "type": "prospect", "customer_id": customer_id, "occurred_at": at, **fields}


def touch(
    customer_id: str, *, at: str, channel: str = "email", direction: str = "outbound", **fields: Any
) -> dict[str, Any]:
    return {
        "event_id": uid("t-"),
        "type": "touch",
        "customer_id": customer_id,
        "occurred_at": at,
        "channel": channel,
        "direction": direction,
        **fields,
    }


def test_a_prospect_stays_on_potential_and_a_touch_makes_a_visitor(
    system: System, shop: Shop, stage_changes: TopicReader
) -> None:
    lead, touched, buyer = uid("lead-"), uid("touched-"), uid("buyer-")
    listed = prospect(touched, at="2026-05-01T09:00:00Z", source="fair-2026")
    first_touch = touch(touched, at="2026-05-03T09:00:00Z", channel="web", direction="inbound")
    shop.send_all(
        [
            prospect(lead, at="2026-05-01T09:00:00Z"),
            listed,
            first_touch,
            listed,  # a duplicate
            prospect(buyer, at="2026-05-02T09:00:00Z"),
            purchase(buyer, at="2026-05-04T10:00:00Z"),
        ]
    )
    assert system.wait_customer(lead)["stage"] == "potential"
    got = system.wait_customer(touched, lambda c: c["stage"] == "visitor")
    assert got["history"][0]["reason"] == "first touch: web"
    assert got["loyalty"]["contact"] > 0  # an inbound touch is a contact
    system.wait_customer(buyer, lambda c: c["stage"] == "first_purchase")

    def mine() -> list[dict[str, Any]] | None:
        values = [
            json.loads(r.value)
            for r in stage_changes.poll()
            if r.key in (lead.encode(), touched.encode(), buyer.encode())
        ]
        return values if len(values) >= 3 else None

    changes = wait_until(mine, what="the stage changes of the three")
    assert sorted((c["customer_id"], c["from_stage"], c["to_stage"], c["reason"]) for c in changes) == sorted(
        [
            (touched, "potential", "visitor", "first touch: web"),
            (buyer, "potential", "visitor", "first event: knows us"),
            (buyer, "visitor", "first_purchase", "1 order"),
        ]
    )  # and nothing for the lead: nobody enters potential


def test_an_outbound_touch_is_no_contact(system: System, shop: Shop) -> None:
    c = uid("out-")
    shop.send_all([touch(c, at="2026-05-03T09:00:00Z", channel="ad")])
    got = system.wait_customer(c, lambda x: x["stage"] == "visitor")
    assert got["loyalty"]["contact"] == 0


def test_bad_prospects_and_touches_are_dead_lettered(system: System, shop: Shop, dead_letters: TopicReader) -> None:
    bad = {
        "invalid_field": touch(uid("bad-"), at="2026-05-03T09:00:00Z", channel="fax"),
        "missing_field": {k: v for k, v in touch(uid("bad-"), at="2026-05-03T09:00:00Z").items() if k != "direction"},
        "invalid_characters": prospect(uid("bad-"), at="2026-05-03T09:00:00Z", source="a\nb"),
        "invalid_timestamp": prospect(uid("bad-"), at="2026-05-03T09:00:00"),
    }
    shop.send_all(bad.values())

    def letters() -> dict[str, str] | None:
        found = {}
        for r in dead_letters.poll():
            value = json.loads(r.value)
            for code, event in bad.items():
                if value.get("event_id") == event["event_id"]:
                    found[code] = dict(r.headers)["error.code"].decode()
        return found if len(found) == len(bad) else None

    assert wait_until(letters, what="four dead letters") == {code: code for code in bad}
    for event in bad.values():
        assert system.customer(event["customer_id"]) is None


def test_an_import_and_the_funnel(system: System) -> None:
    ids = [uid("imp-") for _ in range(3)]
    body = "customer_id,occurred_at\n" + "\n".join(f"{c},2026-04-0{i + 1}T00:00:00Z" for i, c in enumerate(ids))
    r = httpx.post(
        system.url("scoring", "/v1/prospects"), content=body.encode(), headers={"content-type": "text/csv"}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 3, "existing": 0, "rejected": [], "rejected_total": 0}
    assert all(system.customer(c)["stage"] == "potential" for c in ids)
    april = next(
        row
        for row in system.get("/v1/funnel", params={"cohort": "month"}).json()["rows"]
        if row["start"] == "2026-04-01"
    )
    assert april["customers"] >= 3
