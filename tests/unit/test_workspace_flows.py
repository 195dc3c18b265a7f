"""Flow buckets of the workspace: UTC days, Monday weeks, months, and the gaps between them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.read.flows import (
    MAX_BUCKETS,
    InvalidRange,
    as_utc,
    bucket_count,
    bucket_of,
    bucket_starts,
    check_range,
    earliest_since,
    flow_series,
    next_bucket,
)


@pytest.mark.parametrize(
    "moment, bucket, start",
    [
        (datetime(2019, 1, 6, 23, 30, tzinfo=UTC), "day", date(2019, 1, 6)),
        (datetime(2019, 1, 6, 23, 30, tzinfo=UTC), "week", date(2018, 12, 31)),
        (datetime(2019, 1, 7, 0, 0, tzinfo=UTC), "week", date(2019, 1, 7)),
        (datetime(2019, 1, 7, 0, 30, tzinfo=timezone(timedelta(hours=2))), "day", date(2019, 1, 6)),
        (datetime(2019, 1, 7, 0, 30, tzinfo=timezone(timedelta(hours=2))), "week", date(2018, 12, 31)),
        (datetime(2019, 12, 31, 23, 59, tzinfo=UTC), "month", date(2019, 12, 1)),
    ],
)
def test_a_moment_falls_in_its_utc_bucket(moment: datetime, bucket: str, start: date) -> None:
    assert bucket_of(moment, bucket) == start


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["day", "week", "month"]),
)
def test_a_bucket_holds_its_moment_and_the_next_one_starts_after(moment: datetime, bucket: str) -> None:
    start = bucket_of(moment, bucket)
    assert start <= moment.date() < next_bucket(start, bucket)
    if bucket == "week":
        assert start.weekday() == 0
    if bucket == "month":
        assert start.day == 1 and next_bucket(start, bucket).day == 1


def test_bucket_starts_cover_the_range_and_wrap_the_year() -> None:
    assert bucket_starts(date(2025, 11, 1), date(2026, 2, 1), "month") == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert bucket_starts(date(2026, 1, 5), date(2026, 1, 19), "week") == [
        date(2026, 1, 5),
        date(2026, 1, 12),
        date(2026, 1, 19),
    ]
    assert bucket_starts(date(2026, 1, 5), date(2026, 1, 4), "day") == []


def test_too_many_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="buckets"):
        bucket_starts(date(1990, 1, 1), date(1990, 1, 1) + timedelta(days=MAX_BUCKETS), "day")


def test_the_series_fills_empty_buckets_with_zeros() -> None:
    counts = {(date(2026, 6, 1), "visitor"): 3, (date(2026, 6, 15), "regular"): 1}
    series = flow_series(counts, bucket="week", since=None, until=None)
    assert [b["start"] for b in series] == ["2026-06-01", "2026-06-08", "2026-06-15"]
    assert series[0]["entered"] == {"potential": 0, "visitor": 3, "first_purchase": 0, "regular": 0, "advocate": 0}
    assert series[1]["entered"] == {"potential": 0, "visitor": 0, "first_purchase": 0, "regular": 0, "advocate": 0}


def test_the_series_spans_since_to_until_even_without_data() -> None:
    since, until = datetime(2026, 6, 3, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    assert [b["start"] for b in flow_series({}, bucket="month", since=since, until=until)] == ["2026-06-01"]
    assert flow_series({}, bucket="day", since=None, until=None) == []


def test_a_moment_without_offset_is_utc() -> None:
    assert as_utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert as_utc(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))) == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert as_utc(None) is None


@given(
    st.dates(min_value=date(1, 1, 1), max_value=date(9990, 1, 1)),
    st.integers(0, 400),
    st.sampled_from(["day", "week", "month"]),
)
def test_bucket_count_is_the_number_of_bucket_starts(first: date, span: int, bucket: str) -> None:
    start = bucket_of(datetime(first.year, first.month, first.day, tzinfo=UTC), bucket)
    last = start + timedelta(days=span)
    assert bucket_count(start, last, bucket) == len(bucket_starts(start, last, bucket))


def test_ten_years_count_in_calendar_years() -> None:
    until = datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert earliest_since(until) == datetime(2018, 2, 28, 12, tzinfo=UTC)
    check_range(datetime(2018, 2, 28, 12, tzinfo=UTC), until, "month")
    with pytest.raises(InvalidRange, match="10 years"):
        check_range(datetime(2018, 2, 28, 11, 59, tzinfo=UTC), until, "month")
    assert earliest_since(datetime(9, 6, 1, tzinfo=UTC)) == datetime.min.replace(tzinfo=UTC)


def test_the_bucket_bound_applies_to_the_buckets_a_range_touches() -> None:
    with pytest.raises(InvalidRange, match="since must be before until"):
        check_range(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "day")
    check_range(datetime(2016, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "day")  # 3,653 days


def test_a_moment_outside_the_utc_calendar_is_an_invalid_range() -> None:
    with pytest.raises(InvalidRange, match="outside the years"):
        as_utc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))
    with pytest.raises(InvalidRange, match="outside the years"):
        as_utc(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))))


def test_the_last_bucket_may_start_in_year_9999() -> None:
    assert bucket_starts(date(9999, 11, 1), date(9999, 12, 1), "month") == [date(9999, 11, 1), date(9999, 12, 1)]
