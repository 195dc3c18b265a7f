"""The command line of `python -m services.ingest.replay`: its options and the criteria they make."""

from __future__ import annotations

import argparse
from datetime import datetime

from services.ingest.dead_letters import Criteria
from shared.wire.events import ErrorCode


class UsageError(Exception):
    """A bad argument or setting: the command exits with code 2."""


def _instant(text: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset (Z or +hh:mm), as an aware datetime."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +hh:mm (e.g. 2026-06-01T00:00:00Z)")
    return moment


def _partition_offset(text: str) -> tuple[int, int]:
    """`partition:offset`, both non-negative integers."""
    part, sep, off = text.partition(":")
    if not sep or not part.isdigit() or not off.isdigit():
        raise argparse.ArgumentTypeError(f"expected PARTITION:OFFSET (e.g. 0:1500), got {text!r}")
    return int(part), int(off)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the command."""
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest.replay",
        description="Re-publish chosen dead letters (original value bytes and key) to the shop topic they came "
        "from (their source.topic header), with a replay.of=<dlq topic>:<partition>:<offset> "
        "header. Only the shop topics of the settings (TOPIC_PURCHASES, TOPIC_REFERRALS, "
        "TOPIC_COMPLAINTS) are written; a letter naming any other source.topic is reported and "
        "skipped. Reads the dead-letter topic (TOPIC_DEAD_LETTER) without a consumer group, up "
        "to its end at start, so it always terminates. Criteria combine with AND; a repeated "
        "option matches any of its values. Settings come from the environment "
        "(KAFKA_BOOTSTRAP_SERVERS, ...).",
        epilog="Safe to run twice within the dedupe window: scoring remembers each event_id for "
        "DEDUPE_RETENTION_DAYS (default 30) after processing it, so an event replayed twice (or that "
        "meanwhile arrived another way) counts once; an event first processed longer ago than that "
        "is counted again. One still invalid is dead-lettered again. Always run with --dry-run "
        "first. Exit codes: 0 done, 1 a read or send failed or a selected letter could not be "
        "re-published, 2 bad arguments.",
    )
    sel = parser.add_argument_group("selection")
    sel.add_argument(
        "--error-code",
        action="append",
        default=[],
        choices=[c.value for c in ErrorCode],
        metavar="CODE",
        help="only letters with this error.code (repeatable); one of: " + ", ".join(c.value for c in ErrorCode),
    )
    sel.add_argument(
        "--source-topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="only letters whose source.topic header is TOPIC (repeatable)",
    )
    sel.add_argument(
        "--since",
        type=_instant,
        metavar="ISO_TIME",
        help="only letters dead-lettered at or after this instant (record timestamp), e.g. 2026-06-01T00:00:00Z",
    )
    sel.add_argument(
        "--until", type=_instant, metavar="ISO_TIME", help="only letters dead-lettered before this instant (exclusive)"
    )
    sel.add_argument(
        "--partition",
        type=_non_negative,
        action="append",
        default=[],
        metavar="N",
        help="only this partition of the dead-letter topic (repeatable)",
    )
    sel.add_argument(
        "--from-offset",
        type=_partition_offset,
        action="append",
        default=[],
        metavar="PARTITION:OFFSET",
        help="start this partition at OFFSET (inclusive; repeatable)",
    )
    sel.add_argument(
        "--to-offset",
        type=_partition_offset,
        action="append",
        default=[],
        metavar="PARTITION:OFFSET",
        help="stop this partition after OFFSET (inclusive; repeatable)",
    )
    sel.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="select at most N letters (in read order), e.g. to try a replay on a few first",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--dry-run", action="store_true", help="read and select, print the summary, publish nothing")
    out.add_argument(
        "--to-topic",
        metavar="TOPIC",
        help="publish every selected letter to TOPIC instead of its source.topic (one of the shop topics)",
    )
    out.add_argument(
        "--list",
        action="store_true",
        dest="list_letters",
        help="also print one line per selected letter (dead-letter position, time, code, target)",
    )
    return parser


def criteria_from(args: argparse.Namespace) -> Criteria:
    """The selection criteria of parsed arguments; raises UsageError when they contradict each other."""
    from_offsets = dict(args.from_offset)
    to_offsets = dict(args.to_offset)
    if len(from_offsets) != len(args.from_offset) or len(to_offsets) != len(args.to_offset):
        raise UsageError("--from-offset/--to-offset: give each partition at most once")
    partitions = frozenset(args.partition)
    if partitions:
        outside = sorted((set(from_offsets) | set(to_offsets)) - partitions)
        if outside:
            raise UsageError(f"--from-offset/--to-offset name partition(s) {outside} not chosen by --partition")
    for p, low in from_offsets.items():
        if p in to_offsets and to_offsets[p] < low:
            raise UsageError(f"partition {p}: --to-offset {to_offsets[p]} is before --from-offset {low}")
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise UsageError("--until must be later than --since")
    return Criteria(
        error_codes=frozenset(args.error_code),
        source_topics=frozenset(args.source_topic),
        since=args.since,
        until=args.until,
        partitions=partitions,
        from_offsets=from_offsets,
        to_offsets=to_offsets,
    )
