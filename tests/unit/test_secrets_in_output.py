"""Secrets never printed: DATABASE_URL passwords in settings and start-up errors, ids escaped in text logs."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import ValidationError

from shared.logging import TextFormatter, escaped
from shared.settings import Settings, redacted_url

URL = "postgresql://loyalty:s3cr3t-pw@db.example:5432/loyalty?sslmode=verify-full"


def test_the_settings_repr_shows_no_password_or_token() -> None:
    settings = Settings(database_url=URL, api_tokens="ops=0123456789abcdef-token:admin", kafka_sasl_password="kpw")
    for text in (repr(settings), str(settings)):
        assert "s3cr3t-pw" not in text and "0123456789abcdef" not in text and "kpw" not in text


@pytest.mark.parametrize(
    "env, value",
    [
        ("database_url", "mysql://loyalty:s3cr3t-pw@db.example/loyalty"),
        ("scoring_port", "s3cr3t-pw"),
    ],
)
def test_a_refused_setting_is_named_without_its_value(env: str, value: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(**{env: value})
    assert env in str(err.value) and "s3cr3t-pw" not in str(err.value)


def test_a_url_is_logged_without_its_password() -> None:
    assert redacted_url(URL) == "postgresql://loyalty:***@db.example:5432/loyalty?sslmode=verify-full"
    assert redacted_url("postgresql://loyalty@db/x") == "postgresql://loyalty@db/x"
    assert redacted_url("postgresql:///loyalty?host=/run/pg") == "postgresql:///loyalty?host=/run/pg"


def test_an_id_cannot_forge_or_hide_a_text_log_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.escape")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        forged = "c-1\nINFO customer c-2 erased\u2028\u202eevil"
        logger.warning("customer %s refused", forged)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == ["WARNING customer c-1\\nINFO customer c-2 erased\\u2028\\u202eevil refused"]
    assert escaped("é-ü-客户 plain") == "é-ü-客户 plain"
