"""`python -m services.ingest.replay`: re-publish chosen dead letters to the shop topic they came from.

The dead-letter topic is read without a consumer group (every partition assigned, from the beginning or
from `--from-offset`, up to the end offsets seen at start, so the command always terminates and commits
nothing). `services.ingest.dead_letters.select()` decides which letters qualify; it is pure, so the rules
are unit-testable. Each selected letter's original value bytes and key go back to its `source.topic` header
(or `--to-topic`) with a `replay.of` header naming the dead letter, and every send is flushed and checked.
Only the shop topics of the settings (TOPIC_PURCHASES, TOPIC_REFERRALS, TOPIC_COMPLAINTS) are ever written:
a header is data anyone who can write the dead-letter topic controls, so a `source.topic` naming any other
topic (the stage changes, the internal facts) is reported and skipped, and `--to-topic` must name a shop topic.

Running it twice is safe within the dedupe window: scoring counts each event's `event_id` once for
DEDUPE_RETENTION_DAYS after it was processed, so a re-published event that was already counted in that window
(or arrives twice) has no further effect; one first processed longer ago than that counts again. A message
that is still invalid is simply dead-lettered again, with new `source.*` headers that point at the replayed
copy (which carries `replay.of`).

Exit codes: 0 success, 1 a read or send failed (or a selected letter could not be re-published), 2 bad
arguments or settings.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import TopicPartition
from pydantic import ValidationError

from services.ingest.dead_letters import Criteria, Letter, replay_headers, select
from services.ingest.replay_cli import UsageError, build_parser, criteria_from
from shared.adapters.kafka import make_producer, make_reader
from shared.logging import setup_logging
from shared.settings import Settings
from shared.wire.text import printable

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
FLUSH_TIMEOUT_S: Final = 30.0
STALL_TIMEOUT_S: Final = 30.0
POLL_MS: Final = 500
NO_SOURCE: Final = "(no source.topic header)"
MISSING_TOPIC: Final = "(target topic does not exist)"
NOT_SHOP: Final = "(source.topic is not a shop topic)"


# ---------------------------------------------------------------------------------------------------------
# the summary


@dataclass
class Summary:
    """What a run read, selected and re-published, for the table printed at the end."""

    dead_letter_topic: str
    dry_run: bool
    to_topic: str | None = None
    read: int = 0
    selected: Counter[tuple[str, str]] = field(default_factory=Counter)
    published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failure: str | None = None

    def render(self) -> str:
        """The summary table: selected letters per error code and source topic, then the outcome."""
        total = sum(self.selected.values())
        rows = [("error code", "source topic", "count")]
        rows += [(code, topic, str(n)) for (code, topic), n in sorted(self.selected.items())]
        rows.append(("total", "", str(total)))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"dead-letter topic {self.dead_letter_topic}: read {self.read}, selected {total}"]
        for i, (code, topic, count) in enumerate(rows):
            lines.append(f"  {code:<{widths[0]}}  {topic:<{widths[1]}}  {count:>{widths[2]}}")
            if i == 0 or i == len(rows) - 2:
                lines.append("  " + "  ".join("-" * w for w in widths))
        target = f"--to-topic {self.to_topic}" if self.to_topic else "each letter's source.topic"
        if self.dry_run:
            lines.append(
                f"dry run: nothing published (would re-publish {total - sum(self.skipped.values())} to {target})"
            )
        else:
            lines.append(f"re-published {self.published} of {total} to {target}")
        for reason, n in sorted(self.skipped.items()):
            lines.append(f"not re-publishable: {n} {reason}")
        if self.failure:
            lines.append(f"FAILED: {self.failure}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# I/O


@dataclass(slots=True)
class Span:
    """What to read of one partition: from `first` up to `end` (exclusive), never past `last` (inclusive)."""

    first: int
    end: int
    last: int | None = None
    end_confirmed: bool = False

    @property
    def stop(self) -> int:
        """The first offset not to read."""
        return self.end if self.last is None else min(self.end, self.last + 1)


def plan_reads(*, consumer: KafkaConsumer, topic: str, criteria: Criteria) -> dict[TopicPartition, Span]:
    """Per partition to read, its span: up to the end offset seen now, so that reading terminates."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise LookupError(f"dead-letter topic {topic!r} does not exist (or has no partitions)")
    wanted = set(criteria.partitions or parts)
    named = wanted | set(criteria.from_offsets) | set(criteria.to_offsets)
    unknown = sorted(named - set(parts))
    if unknown:
        raise UsageError(f"topic {topic} has partitions {sorted(parts)}; no partition {unknown}")
    tps = [TopicPartition(topic, p) for p in sorted(wanted)]
    starts = consumer.beginning_offsets(tps)
    ends = consumer.end_offsets(tps)
    plan: dict[TopicPartition, Span] = {}
    for tp in tps:
        first = max(starts[tp], criteria.from_offsets.get(tp.partition, starts[tp]))
        # kept even when it looks empty: the end offset is only confirmed by the first fetch (see read_batches)
        plan[tp] = Span(first=first, end=ends[tp], last=criteria.to_offsets.get(tp.partition))
    return plan


def read_batches(
    *, consumer: KafkaConsumer, plan: Mapping[TopicPartition, Span], stall_timeout_s: float = STALL_TIMEOUT_S
) -> Iterator[list[Any]]:
    """Batches of records from the planned spans, in offset order per partition, until every stop is reached."""
    if not plan:
        return
    consumer.assign(list(plan))
    for tp, span in plan.items():
        consumer.seek(tp, span.first)
    remaining = dict(plan)
    last_progress = time.monotonic()
    while remaining:
        polled = consumer.poll(timeout_ms=POLL_MS)
        batch: list[Any] = []
        for tp, span in list(remaining.items()):
            # Some Kafka-protocol brokers (Tansu) answer ListOffsets "latest" with the base offset of the last
            # record batch + 1, short of a batch's later records; the high watermark of a fetch is right. The
            # first one seen extends the end, once, so reading still terminates.
            highwater = consumer.highwater(tp)
            if not span.end_confirmed and highwater is not None:
                span.end = max(span.end, highwater)
                span.end_confirmed = True
            # the range check also drops what an offset reset (from-offset past the end) would re-read
            batch.extend(r for r in polled.get(tp, ()) if span.first <= r.offset < span.stop)
            # position() is the next offset to read; it also steps over gaps (compaction, transaction markers)
            if span.end_confirmed and consumer.position(tp) >= span.stop:
                del remaining[tp]
                consumer.pause(tp)
        if polled:
            last_progress = time.monotonic()
            if batch:
                yield batch
        elif time.monotonic() - last_progress > stall_timeout_s:
            left = ", ".join(f"{tp.partition}@{consumer.position(tp)}<{span.stop}" for tp, span in remaining.items())
            raise TimeoutError(f"no progress reading the dead-letter topic for {stall_timeout_s:.0f}s ({left})")


def _check_sends(futures: Sequence[tuple[Letter, FutureRecordMetadata]]) -> tuple[int, str | None]:
    """How many of the flushed sends succeeded, and what went wrong with the first that did not."""
    ok = 0
    for letter, future in futures:
        if future.succeeded():
            ok += 1
        else:
            reason = future.exception if future.is_done else "not acknowledged within the flush timeout"
            return ok, f"send of dead letter {letter.partition}:{letter.offset} failed: {reason!r}"
    return ok, None


def replay(
    *,
    settings: Settings,
    criteria: Criteria,
    dry_run: bool,
    to_topic: str | None = None,
    limit: int | None = None,
    listing: TextIO | None = None,
) -> Summary:
    """Read, select and (unless `dry_run`) re-publish; the summary says what happened."""
    topic = settings.topic_dead_letter
    summary = Summary(dead_letter_topic=topic, dry_run=dry_run, to_topic=to_topic)
    shop = set(settings.shop_topics)
    if to_topic is not None and to_topic not in shop:
        raise UsageError(f"--to-topic {to_topic!r} is not a shop topic; use one of {sorted(shop)}")
    consumer = make_reader(settings)
    producer: KafkaProducer | None = None
    try:
        existing = set(consumer.topics())
        if to_topic is not None and to_topic not in existing:
            raise UsageError(f"--to-topic {to_topic!r} does not exist")
        plan = plan_reads(consumer=consumer, topic=topic, criteria=criteria)
        if not dry_run:
            producer = make_producer(settings, ordered=True, max_block_ms=15000)
        chosen = 0
        for batch in read_batches(consumer=consumer, plan=plan):
            summary.read += len(batch)
            futures: list[tuple[Letter, FutureRecordMetadata]] = []
            for letter in select(batch, criteria=criteria):
                if limit is not None and chosen >= limit:
                    break
                chosen += 1
                summary.selected[(letter.error_code or "-", letter.source_topic or "-")] += 1
                target = to_topic or letter.source_topic
                if listing is not None:
                    when = datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC).isoformat()
                    print(
                        f"{topic}:{letter.partition}:{letter.offset}  {when}  {letter.error_code or '-'}  -> "
                        f"{target or NO_SOURCE}  {(letter.error_message or '')[:120]}",
                        file=listing,
                    )
                if target is None:
                    summary.skipped[NO_SOURCE] += 1
                    continue
                if target not in shop:
                    summary.skipped[f"{NOT_SHOP} {printable(target)}"] += 1
                    continue
                if target not in existing:
                    summary.skipped[f"{MISSING_TOPIC} {target}"] += 1
                    continue
                if producer is not None:
                    futures.append(
                        (
                            letter,
                            producer.send(
                                target,
                                value=letter.value,
                                key=letter.key,
                                headers=replay_headers(letter, dead_letter_topic=topic),
                            ),
                        )
                    )
            if producer is not None and futures:
                try:
                    producer.flush(timeout=FLUSH_TIMEOUT_S)
                except KafkaError as exc:
                    log.warning("flush failed: %s", exc)
                ok, failure = _check_sends(futures)
                summary.published += ok
                if failure is not None:
                    summary.failure = failure
                    return summary
            if limit is not None and chosen >= limit:
                break
        return summary
    except KafkaError as exc:
        summary.failure = f"{type(exc).__name__}: {exc}"
        return summary
    finally:
        if producer is not None:
            producer.close(timeout=FLUSH_TIMEOUT_S)
        consumer.close()


# ---------------------------------------------------------------------------------------------------------
# the command line


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, build the settings once, replay, print the summary; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with a usage message on a bad option
    try:
        criteria = criteria_from(args)
    except UsageError as exc:
        parser.error(str(exc))
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"replay: bad settings in the environment:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(service="replay", level=settings.log_level, fmt=settings.log_format)
    try:
        summary = replay(
            settings=settings,
            criteria=criteria,
            dry_run=args.dry_run,
            to_topic=args.to_topic,
            limit=args.limit,
            listing=sys.stdout if args.list_letters else None,
        )
    except UsageError as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LookupError, TimeoutError, KafkaError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(summary.render())
    if summary.failure is not None:
        print(
            "replay: some letters were not re-published; re-running is safe (event ids dedupe), or resume "
            "with --from-offset",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if summary.skipped and not args.dry_run:
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
