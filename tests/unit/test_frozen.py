"""`shared.frozen.quick_init` builds the same frozen instances as the dataclass's own __init__."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.scoring.domain.ladder import ReferralConverted, StageChanged
from services.scoring.domain.measures import Loyalty
from services.scoring.domain.state import CustomerState, MonthActivity, PendingReferral
from shared.frozen import quick_init
from shared.wire.messages import Fact

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


@quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    name: str
    count: int = 3
    tags: list[str] = dataclasses.field(default_factory=list)


def _by_dataclass(cls: type[Any], *args: Any, **kwargs: Any) -> Any:
    obj = object.__new__(cls)
    cls.__dataclass_init__(obj, *args, **kwargs)
    return obj


def _slots(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


EXAMPLES: list[tuple[type[Any], dict[str, Any]]] = [
    (
        Fact,
        {
            "kind": "order_placed",
            "event_id": "e1",
            "role": "primary",
            "customer_id": "c1",
            "occurred_at": AT,
            "amount": Decimal("19.99"),
            "order_id": "o1",
        },
    ),
    (
        Fact,
        {
            "kind": "complaint_filed",
            "event_id": "e2",
            "role": "primary",
            "customer_id": "c1",
            "occurred_at": AT,
            "severity": "high",
            "resolved": True,
            "source": {"topic": "t"},
        },
    ),
    (
        CustomerState,
        {
            "customer_id": "c1",
            "stage": "visitor",
            "stage_entered_at": AT,
            "first_seen_at": AT,
            "last_event_at": AT,
            "orders": 2,
            "sales": Decimal("5"),
            "order_months": frozenset({1}),
        },
    ),
    (MonthActivity, {"orders": 1, "order_value": Decimal("2.50")}),
    (PendingReferral, {"referral_event_id": "r1", "referrer_id": "c2", "occurred_at": AT}),
    (
        StageChanged,
        {
            "customer_id": "c1",
            "from_stage": "potential",
            "to_stage": "visitor",
            "occurred_at": AT,
            "cause_event_id": "e1",
            "reason": "first event: knows us",
        },
    ),
    (
        ReferralConverted,
        {"referrer_id": "c2", "referred_customer_id": "c1", "referral_event_id": "r1", "occurred_at": AT},
    ),
    (Loyalty, {"financial": 0.1, "procedural": 0.2, "contact": 0.3, "evaluative": 0.0, "consultative": 1.0}),
]


@pytest.mark.parametrize(("cls", "kwargs"), EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_the_hot_classes_build_what_their_dataclass_init_builds(cls: type[Any], kwargs: dict[str, Any]) -> None:
    quick, reference = cls(**kwargs), _by_dataclass(cls, **kwargs)
    assert _slots(quick) == _slots(reference)
    assert quick == reference and repr(quick) == repr(reference)
    if cls.__hash__ is not None and all(f.name != "source" for f in dataclasses.fields(cls)):
        assert hash(quick) == hash(reference)  # a fact holds its source dict, so it has no hash either way
    positional = cls(*(_slots(reference)[f.name] for f in dataclasses.fields(cls)))
    assert _slots(positional) == _slots(reference)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(quick, dataclasses.fields(cls)[0].name, None)


@pytest.mark.parametrize(("cls", "kwargs"), EXAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_the_signature_keeps_names_order_and_plain_defaults(cls: type[Any], kwargs: dict[str, Any]) -> None:
    quick = inspect.signature(cls.__init__).parameters
    reference = inspect.signature(cls.__dataclass_init__).parameters
    assert list(quick) == list(reference)
    for name, param in reference.items():
        if param.default is not inspect.Parameter.empty and repr(param.default) != "<factory>":
            assert quick[name].default == param.default


def test_defaults_and_fresh_factories() -> None:
    a, b = Sample("a"), Sample(name="b", count=5)
    assert (a.count, a.tags, b.count) == (3, [], 5)
    assert a.tags is not Sample("c").tags  # a factory runs once per instance
    given: list[str] = ["x"]
    assert Sample("d", 1, given).tags is given


def test_missing_and_unknown_arguments_still_raise() -> None:
    with pytest.raises(TypeError):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample("a", nope=1)  # type: ignore[call-arg]


def test_only_frozen_slotted_dataclasses_without_post_init_are_accepted() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        x: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        x: int

        def __post_init__(self) -> None:
            pass

    for cls in (NoSlots, NotFrozen, PostInit):
        with pytest.raises(TypeError):
            quick_init(cls)
