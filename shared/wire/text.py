"""What an id may hold: one rule for the shop's events, the internal topic and every header and log line."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

MAX_ID: Final = 128

# Characters refused in ids: lone surrogates (valid JSON escapes, but no UTF-8 encoding exists for them, so
# the first `.encode()` raised), NUL (PostgreSQL text cannot hold it: the whole scoring transaction failed),
# and the other C0 and C1 controls and DEL (a newline or escape in an id forges log lines, breaks CSV rows and
# terminals, and no shop names a customer with one). Everything else in Unicode is an id's own business.
BAD_TEXT: Final = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")


def uuid5_text(namespace: bytes, name: str) -> str:
    """`str(uuid.uuid5(UUID(bytes=namespace), name))` without building UUID objects: every stable message id
    (one per rung entered, one per health change) is made this way, on the event path."""
    digest = bytearray(hashlib.sha1(namespace + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_id(value: Any) -> bool:
    """A string of 1 to 128 characters, none of them refused."""
    return type(value) is str and 0 < len(value) <= MAX_ID and BAD_TEXT.search(value) is None


def printable(text: str) -> str:
    """`text` as it is when it holds no refused character, else with those escaped: safe for logs and headers."""
    if BAD_TEXT.search(text) is None:
        return text
    return BAD_TEXT.sub(lambda m: ascii(m.group())[1:-1], text)
