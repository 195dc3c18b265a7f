"""The dead-letter record: the original bytes, the five headers of contract section 3, and the bound on size.

Both services write dead letters: ingest for shop events it refuses or cannot handle, scoring for internal
facts it cannot decode and for the original event of a fact whose transaction fails for a data reason. One
function builds every letter, so the headers are the same wherever the letter comes from.

Containment headers beyond the contract's five (consumers that do not know them ignore them):

- `error.exception`: the class of the exception that made the record unprocessable (`processing_failed`).
- `error.truncated`: the original value's size in bytes, when the value was cut to `DEAD_LETTER_MAX_BYTES`
  because the topic would refuse it whole. A letter that cannot be written must not stop the pipeline: a
  batch whose letter the broker keeps refusing would be retried for ever.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.wire.text import printable

# what the cut keeps room for: headers and the record's own framing, far below any topic's limit
_TRUNCATED_FLOOR = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record for the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _text(value: str) -> bytes:
    # a header is bytes; an exception's message may quote what the shop sent, lone surrogates included
    return printable(value).encode("utf-8", "backslashreplace")


def dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    code: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int,
    exception: str | None = None,
) -> DeadLetter:
    """The letter for a record of `topic`/`partition`/`offset`, its value cut to `max_bytes` if need be."""
    headers = [
        ("error.code", code.encode("ascii")),
        ("error.message", _text(message[:1000])),
        ("source.topic", topic.encode("utf-8")),
        ("source.partition", str(partition).encode("ascii")),
        ("source.offset", str(offset).encode("ascii")),
    ]
    if exception is not None:
        headers.append(("error.exception", exception.encode("ascii", "backslashreplace")))
    if key is None and value is None:
        # Kafka allows a record with neither key nor value, but a producer cannot send one: such a letter
        # gets an empty key (its value stays null)
        key = b""
    if value is not None and len(value) + len(key or b"") > max_bytes:
        keep = max(0, max_bytes - len(key or b""))
        headers.append(("error.truncated", str(len(value)).encode("ascii")))
        value = value[:keep]
    return DeadLetter(key=key, value=value, headers=headers)


def shrunk(letter: DeadLetter) -> DeadLetter | None:
    """The letter cut to 1 KiB after the broker refused it as too large; None when it is that small already."""
    size = len(letter.value or b"") + len(letter.key or b"")
    if size <= _TRUNCATED_FLOOR:
        return None
    headers = list(letter.headers)
    if not any(name == "error.truncated" for name, _ in headers):
        headers.append(("error.truncated", str(len(letter.value or b"")).encode("ascii")))
    key = (letter.key or b"")[: _TRUNCATED_FLOOR // 2] if letter.key is not None else None
    value = (letter.value or b"")[: _TRUNCATED_FLOOR - len(key or b"")] if letter.value is not None else None
    return DeadLetter(key=key, value=value, headers=headers)
