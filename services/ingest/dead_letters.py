"""Dead letters as replay sees them: one read from a consumed record, which ones qualify, and the header that
marks a re-published copy. Pure (no I/O), so the selection rules are unit-testable without a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

REPLAY_HEADER: Final = "replay.of"


class DeadLetterRecord(Protocol):
    """The fields of a consumed record that replay uses (kafka-python's ConsumerRecord has them)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter: where it sits on the dead-letter topic, its original bytes, and its headers."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    error_code: str | None
    error_message: str | None
    source_topic: str | None
    source_partition: str | None
    source_offset: str | None


@dataclass(frozen=True, slots=True)
class Criteria:
    """Which dead letters to replay; an empty set or None means "no restriction"."""

    error_codes: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    since: datetime | None = None  # inclusive, against the record timestamp
    until: datetime | None = None  # exclusive
    partitions: frozenset[int] = frozenset()
    from_offsets: Mapping[int, int] = field(default_factory=dict)  # inclusive, per partition
    to_offsets: Mapping[int, int] = field(default_factory=dict)  # inclusive, per partition


def _header(headers: Sequence[tuple[str, bytes | None]], *, name: str) -> str | None:
    """The last value of header `name` as text, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name and value is not None:
            found = value.decode("utf-8", errors="replace")
    return found


def to_letter(record: DeadLetterRecord) -> Letter:
    """The dead letter a consumed record of the dead-letter topic holds."""
    headers = record.headers or []
    return Letter(
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        error_code=_header(headers, name="error.code"),
        error_message=_header(headers, name="error.message"),
        source_topic=_header(headers, name="source.topic"),
        source_partition=_header(headers, name="source.partition"),
        source_offset=_header(headers, name="source.offset"),
    )


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def matches(letter: Letter, *, criteria: Criteria) -> bool:
    """Whether one dead letter meets every criterion."""
    c = criteria
    if c.partitions and letter.partition not in c.partitions:
        return False
    low = c.from_offsets.get(letter.partition)
    if low is not None and letter.offset < low:
        return False
    high = c.to_offsets.get(letter.partition)
    if high is not None and letter.offset > high:
        return False
    if c.error_codes and letter.error_code not in c.error_codes:
        return False
    if c.source_topics and letter.source_topic not in c.source_topics:
        return False
    if c.since is not None or c.until is not None:
        if letter.timestamp_ms is None or letter.timestamp_ms < 0:
            return False  # no timestamp: cannot be inside any time range
        if c.since is not None and letter.timestamp_ms < _epoch_ms(c.since):
            return False
        if c.until is not None and letter.timestamp_ms >= _epoch_ms(c.until):
            return False
    return True


def select(records: Iterable[DeadLetterRecord], *, criteria: Criteria) -> Iterator[Letter]:
    """The dead letters among `records` that meet `criteria`, in order (pure: no I/O)."""
    for record in records:
        letter = to_letter(record)
        if matches(letter, criteria=criteria):
            yield letter


def replay_headers(letter: Letter, *, dead_letter_topic: str) -> list[tuple[str, bytes]]:
    """The headers of a re-published letter: `replay.of` = "<dlq topic>:<partition>:<offset>"."""
    return [(REPLAY_HEADER, f"{dead_letter_topic}:{letter.partition}:{letter.offset}".encode())]
