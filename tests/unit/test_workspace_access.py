"""API_TOKENS parsing and token checks (contract section 10), without a server."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from services.scoring.auth import Access, AccessDenied, parse_tokens


def test_tokens_are_parsed_once_and_kept_only_as_digests() -> None:
    access = Access.from_setting(" alpha:read ,beta:gamma:admin,, ")
    assert access.enabled
    assert [scope for _, scope in access.tokens] == ["read", "admin"]
    assert all(len(digest) == 32 and b"alpha" not in digest for digest, _ in access.tokens)
    assert access.scope_of("Bearer alpha") == "read"
    assert access.scope_of("Bearer beta:gamma") == "admin"  # the scope is after the last colon
    assert access.scope_of("bearer   alpha ") == "read"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer beta", "Basic alpha", "alpha", "Bearer alpha:read",
                                    "Bearer ALPHA"])
def test_unknown_or_malformed_credentials_have_no_scope(header: str | None) -> None:
    assert Access.from_setting("alpha:read,beta:gamma:admin").scope_of(header) is None


@pytest.mark.parametrize("raw, message", [
    ("alpha", "entry 1 is not token:scope"),
    ("alpha:read,:admin", "entry 2 is not token:scope"),
    ("alpha:write", "entry 1 has scope 'write'"),
])
def test_a_bad_setting_is_refused_without_echoing_the_token(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_tokens(raw)
    assert "alpha" not in str(err.value)


def test_without_the_setting_the_api_is_open() -> None:
    assert not Access.from_setting("").enabled
    assert Access.from_setting("").scope_of("Bearer anything") is None


def test_authenticate_explains_a_401_and_challenges() -> None:
    access = Access.from_setting("alpha:read")
    with pytest.raises(AccessDenied) as missing:
        access.authenticate(Headers({}))
    assert (missing.value.status, missing.value.detail) == (401, "missing bearer token")
    assert missing.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(AccessDenied) as unknown:
        access.authenticate(Headers({"authorization": "Bearer nope"}))
    assert unknown.value.detail == "unknown or malformed bearer token"
    assert access.authenticate(Headers({"authorization": "Bearer alpha"})) == "read"


def test_a_scope_nobody_has_cannot_be_required() -> None:
    with pytest.raises(ValueError):
        Access.from_setting("alpha:read").require("write")
