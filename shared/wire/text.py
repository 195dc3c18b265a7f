"""What an id may hold: one rule for the shop's events, the internal topic and every header and log line."""

from __future__ import annotations

import re
from typing import Any, Final

MAX_ID: Final = 128

# Characters refused in ids: lone surrogates (valid JSON escapes, but no UTF-8 encoding exists for them, so
# the first `.encode()` raised), NUL (PostgreSQL text cannot hold it: the whole scoring transaction failed),
# and the other C0 and C1 controls and DEL (a newline or escape in an id forges log lines, breaks CSV rows and
# terminals, and no shop names a customer with one). Everything else in Unicode is an id's own business.
BAD_TEXT: Final = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")


def is_id(value: Any) -> bool:
    """A string of 1 to 128 characters, none of them refused."""
    return type(value) is str and 0 < len(value) <= MAX_ID and BAD_TEXT.search(value) is None


def printable(text: str) -> str:
    """`text` as it is when it holds no refused character, else with those escaped: safe for logs and headers."""
    if BAD_TEXT.search(text) is None:
        return text
    return BAD_TEXT.sub(lambda m: ascii(m.group())[1:-1], text)
