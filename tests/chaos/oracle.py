"""The oracle of the fault tests: what the system must end with, computed from what the shop sent.

Input: every raw message the test put on the shop topics (bytes as sent, in send order, duplicates and poison
included). The expectation is computed with the pure domain only (`shared.wire.validation.validate`,
`services.scoring.domain.ladder.apply`), never with the services' code paths:

1. validate each message with a fixed `now`: facts, or a rejection with its error code;
2. dedupe facts by `Fact.dedupe_key`, first occurrence in send order wins (duplicates are sent as exact copies
   only, so which copy wins does not matter);
3. apply per customer, in a deterministic order (occurred_at, event_id, role);
4. feed each `ReferralConverted` back as a `referral_converted` fact for the referrer (event_id = the referral's,
   role "converted"), deduped like any fact, until nothing new comes out.

Every rung condition is a `count >= n` over counts that only grow, so the final stage, counts, sums and the set of
rungs entered do not depend on the order chosen in step 3, nor on the order the system saw the facts in.

`check()` compares that with what the system shows from outside (HTTP, the stage-change and dead-letter topics)
plus one look inside (the dedupe table, to name lost events) and returns readable discrepancies; empty = pass.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.scoring.domain.ladder import ReferralConverted, StageChanged, apply
from services.scoring.domain.measures import profitability
from services.scoring.domain.policy import Policy
from services.scoring.domain.state import RANK, STAGES, CustomerState
from shared.wire.events import Rejection
from shared.wire.messages import Fact
from shared.wire.validation import validate

COUNT_NAMES = ("orders", "refunds", "full_price_orders", "referrals_made", "referrals_converted", "complaints")
MAX_LISTED = 15  # discrepancies of one kind listed one by one; the rest summarised


@dataclass(frozen=True, slots=True)
class Sent:
    """One message as the shop sent it."""

    topic: str
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message the system must dead-letter, with the code it must carry."""

    key: bytes | None
    value: bytes | None
    code: str

    @property
    def ident(self) -> tuple[str, bytes | None]:
        """How a dead letter is matched to what was sent: its value bytes, or its key when it has no value."""
        return ("value", self.value) if self.value is not None else ("key", self.key)


@dataclass
class Expected:
    """The oracle's answer."""

    states: dict[str, CustomerState]
    rungs: dict[str, tuple[str, ...]]  # customer -> rungs entered, in ladder order (potential excluded)
    keys: set[tuple[str, str]]  # every (event_id, role) that must be processed once
    rejected: list[Rejected]  # one per rejected message sent (copies of poison included)
    messages: int  # shop messages sent
    accepted_events: int  # distinct valid shop events (by event_id)
    duplicate_messages: int  # valid messages that repeat an event already sent
    conversions: int
    policy: Policy

    @property
    def customers(self) -> int:
        return len(self.states)

    def customer_view(self, customer_id: str) -> dict[str, Any]:
        """The part of GET /v1/customers/{id} the oracle predicts."""
        state = self.states[customer_id]
        return {
            "stage": state.stage,
            "counts": {name: getattr(state, name) for name in COUNT_NAMES},
            "profitability": profitability(state, policy=self.policy),
        }


def expected(
    sent: Sequence[Sent],
    *,
    now: datetime,
    policy: Policy,
    base_currency: str = "EUR",
    max_bytes: int = 65536,
    max_future_skew_hours: int = 24,
) -> Expected:
    """What the system must end with after every message in `sent` was processed."""
    facts: dict[tuple[str, str], Fact] = {}
    rejected: list[Rejected] = []
    event_ids: set[str] = set()
    duplicates = 0
    for msg in sent:
        result = validate(
            msg.value,
            base_currency=base_currency,
            max_bytes=max_bytes,
            now=now,
            max_future_skew_hours=max_future_skew_hours,
        )
        if isinstance(result, Rejection):
            rejected.append(Rejected(key=msg.key, value=msg.value, code=result.code.value))
            continue
        if result[0].event_id in event_ids:
            duplicates += 1
        event_ids.add(result[0].event_id)
        for fact in result:
            facts.setdefault(fact.dedupe_key, fact)  # first occurrence in send order wins

    states: dict[str, CustomerState | None] = {}
    entered: dict[str, list[str]] = defaultdict(list)
    conversions = 0
    pending = list(facts.values())
    while pending:
        new: list[Fact] = []
        for fact in sorted(pending, key=lambda f: (f.customer_id, f.occurred_at, f.event_id, f.role)):
            state, changes = apply(states.get(fact.customer_id), fact, policy=policy)
            states[fact.customer_id] = state
            for change in changes:
                if isinstance(change, StageChanged):
                    entered[change.customer_id].append(change.to_stage)
                elif isinstance(change, ReferralConverted):
                    conv = Fact(
                        kind="referral_converted",
                        event_id=change.referral_event_id,
                        role="converted",
                        customer_id=change.referrer_id,
                        occurred_at=change.occurred_at,
                        other_customer_id=change.referred_customer_id,
                    )
                    if conv.dedupe_key not in facts:
                        facts[conv.dedupe_key] = conv
                        new.append(conv)
                        conversions += 1
        pending = new

    final = {cid: s for cid, s in states.items() if s is not None}
    rungs = {}
    for cid, state in final.items():
        got = tuple(entered[cid])
        # the domain announces each rung once, in ladder order, up to the stage it ends on
        assert got == STAGES[1 : RANK[state.stage] + 1], (cid, got, state.stage)
        rungs[cid] = got
    return Expected(
        states=final,
        rungs=rungs,
        keys=set(facts),
        rejected=rejected,
        messages=len(sent),
        accepted_events=len(event_ids),
        duplicate_messages=duplicates,
        conversions=conversions,
        policy=policy,
    )


# ---------------------------------------------------------------------------------------------------------
# the comparison


@dataclass
class Record:
    """One message read back from an output topic."""

    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0


@dataclass
class Report:
    """The verdict: discrepancies (empty = pass) and what faults legitimately produced."""

    discrepancies: list[str] = field(default_factory=list)
    republished: int = 0  # stage-change copies beyond the first (allowed under faults)
    dead_letter_copies: int = 0  # dead letters beyond one per rejected message sent (allowed under faults)
    stage_changes: int = 0  # distinct (customer, rung) on the topic
    customers_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def add(self, what: str, items: Sequence[str]) -> None:
        if not items:
            return
        shown = "\n    ".join(items[:MAX_LISTED])
        more = f"\n    ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
        self.discrepancies.append(f"{what} ({len(items)}):\n    {shown}{more}")

    def summary(self) -> str:
        head = (
            f"{self.customers_checked} customers, {self.stage_changes} stage changes checked; "
            f"{self.republished} re-published stage-change copies, {self.dead_letter_copies} extra dead-letter "
            f"copies; {len(self.discrepancies)} discrepancies"
        )
        return "\n".join([head, *self.discrepancies])


def check(
    exp: Expected,
    *,
    customer: Callable[[str], dict[str, Any] | None],
    stages_total: int,
    stage_changes: Iterable[Record],
    dead_letters: Iterable[Record],
    processed_keys: set[tuple[str, str]] | None = None,
    faults: bool = True,
) -> Report:
    """Compare the system with the oracle; `faults` allows the at-least-once copies a crash leaves on topics."""
    report = Report()
    _check_customers(exp, customer, stages_total, report)
    _check_stage_changes(exp, list(stage_changes), report, faults=faults)
    _check_dead_letters(exp, list(dead_letters), report, faults=faults)
    if processed_keys is not None:
        lost = sorted(exp.keys - processed_keys)
        extra = sorted(processed_keys - exp.keys)
        report.add("accepted facts never processed (lost)", [f"{e} role={r}" for e, r in lost])
        report.add("facts processed that the oracle does not expect", [f"{e} role={r}" for e, r in extra])
    return report


def _check_customers(
    exp: Expected, customer: Callable[[str], dict[str, Any] | None], stages_total: int, report: Report
) -> None:
    missing: list[str] = []
    wrong: list[str] = []
    for cid in sorted(exp.states):
        got = customer(cid)
        report.customers_checked += 1
        if got is None:
            missing.append(f"{cid}: 404, expected {exp.states[cid].stage}")
            continue
        want = exp.customer_view(cid)
        diffs = []
        if got.get("stage") != want["stage"]:
            diffs.append(f"stage {got.get('stage')} != {want['stage']}")
        for name, value in want["counts"].items():
            if got.get("counts", {}).get(name) != value:
                diffs.append(f"{name} {got.get('counts', {}).get(name)} != {value}")
        for name, value in want["profitability"].items():
            if got.get("profitability", {}).get(name) != value:
                diffs.append(f"{name} {got.get('profitability', {}).get(name)} != {value}")
        if diffs:
            wrong.append(f"{cid}: " + ", ".join(diffs))
    report.add("customers missing from the API", missing)
    report.add("customers whose state differs from the oracle (got != expected)", wrong)
    if stages_total != exp.customers:
        report.add("GET /v1/stages total", [f"{stages_total} customers, expected {exp.customers}"])


def _check_stage_changes(exp: Expected, records: list[Record], report: Report, *, faults: bool) -> None:
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    copies: Counter[tuple[str, str]] = Counter()
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    first_order: dict[str, list[str]] = defaultdict(list)
    bad: list[str] = []
    for rec in records:
        try:
            body = json.loads(rec.value or b"")
            pair = (body["customer_id"], body["to_stage"])
            event_id = body["event_id"]
        except (ValueError, KeyError, TypeError) as exc:
            bad.append(f"p{rec.partition}@{rec.offset}: unreadable stage change ({exc}): {rec.value!r:.120}")
            continue
        if rec.key != pair[0].encode():
            bad.append(f"p{rec.partition}@{rec.offset}: key {rec.key!r} is not the customer id {pair[0]!r}")
        if pair[1] in RANK and body.get("from_stage") != STAGES[RANK[pair[1]] - 1]:
            bad.append(f"{pair}: from_stage {body.get('from_stage')!r}")
        ids[pair].add(event_id)
        owners[event_id].add(pair)
        if copies[pair] == 0:
            first_order[pair[0]].append(pair[1])
        copies[pair] += 1
    report.add("malformed stage-change messages", bad)
    want = {(cid, rung) for cid, rungs in exp.rungs.items() for rung in rungs}
    report.stage_changes = len(ids)
    report.add("stage changes missing from the topic", [f"{cid} -> {rung}" for cid, rung in sorted(want - set(ids))])
    report.add(
        "stage changes the oracle does not expect",
        [f"{cid} -> {rung} ({sorted(ids[(cid, rung)])})" for cid, rung in sorted(set(ids) - want)],
    )
    report.add(
        "customer and rung announced with more than one event_id",
        [f"{pair}: {sorted(v)}" for pair, v in sorted(ids.items()) if len(v) > 1],
    )
    report.add(
        "one event_id used for several customers or rungs",
        [f"{eid}: {sorted(v)}" for eid, v in sorted(owners.items()) if len(v) > 1],
    )
    report.add(
        "stage changes of a customer not in ladder order (first appearance)",
        [
            f"{cid}: {order}"
            for cid, order in sorted(first_order.items())
            if order != sorted(order, key=lambda r: RANK.get(r, 99))
        ],
    )
    report.republished = sum(n - 1 for n in copies.values())
    if report.republished and not faults:
        report.add(
            "stage changes published more than once without any fault",
            [f"{pair} x{n}" for pair, n in sorted(copies.items()) if n > 1],
        )


def _check_dead_letters(exp: Expected, records: list[Record], report: Report, *, faults: bool) -> None:
    sent: Counter[tuple[str, bytes | None]] = Counter(r.ident for r in exp.rejected)
    code_of = {r.ident: r.code for r in exp.rejected}
    got: Counter[tuple[str, bytes | None]] = Counter()
    wrong: list[str] = []
    unexpected: list[str] = []
    for rec in records:
        ident = ("value", rec.value) if rec.value is not None else ("key", rec.key)
        if ident not in sent:
            code = rec.headers.get("error.code", b"?").decode(errors="replace")
            unexpected.append(f"p{rec.partition}@{rec.offset} code={code}: {_show(rec.value)}")
            continue
        got[ident] += 1
        code = rec.headers.get("error.code", b"").decode(errors="replace")
        if code != code_of[ident]:
            wrong.append(f"{_show(ident[1])}: error.code {code!r}, expected {code_of[ident]!r}")
        absent = [
            h for h in ("error.message", "source.topic", "source.partition", "source.offset") if h not in rec.headers
        ]
        if absent:
            wrong.append(f"{_show(ident[1])}: headers missing {absent}")
    report.add(
        "rejected messages missing from the dead-letter topic",
        [f"{_show(i[1])} ({code_of[i]}) x{n - got[i]}" for i, n in sent.items() if got[i] < n],
    )
    report.add("dead letters with wrong error code or headers", wrong)
    report.add("dead letters that are not rejected input (a valid event dead-lettered?)", unexpected)
    report.dead_letter_copies = sum(max(0, got[i] - n) for i, n in sent.items())
    if report.dead_letter_copies and not faults:
        report.add(
            "dead letters written more than once without any fault",
            [f"{_show(i[1])} x{got[i]}" for i, n in sent.items() if got[i] > n],
        )


def _show(value: bytes | None) -> str:
    if value is None:
        return "<null value>"
    text = repr(value[:80])
    return text + (f"...({len(value)} bytes)" if len(value) > 80 else "")
