"""API_TOKENS parsing and token checks (contract sections 10 and 14), without a server."""

from __future__ import annotations

import hashlib

import pytest
from starlette.datastructures import Headers

from services.scoring.auth import MIN_TOKEN_LENGTH, Access, AccessDenied, parse_tokens

ALPHA = "alpha-0123456789abcdef"
BETA = "beta:gamma-0123456789"  # a token may hold colons: the scope is after the last one


def test_tokens_are_parsed_once_and_kept_only_as_digests() -> None:
    access = Access.from_setting(f" {ALPHA}:read ,{BETA}:admin,, ")
    assert access.enabled
    assert [t.scope for t in access.tokens] == ["read", "admin"]
    assert all(len(t.digest) == 32 and b"alpha" not in t.digest for t in access.tokens)
    assert access.scope_of(f"Bearer {ALPHA}") == "read"
    assert access.scope_of(f"Bearer {BETA}") == "admin"
    assert access.scope_of(f"bearer   {ALPHA} ") == "read"


def test_a_token_has_a_name_and_the_v1_form_gets_one_from_its_digest() -> None:
    named, v1, padded = parse_tokens(f"marketing={ALPHA}:read,{BETA}:admin,dG9rZW4tdG9rZW4tdG9rZW4==:read")
    assert (named.name, named.scope) == ("marketing", "read")
    assert named.digest == hashlib.sha256(ALPHA.encode()).digest()  # the name is not part of the token
    assert v1.name == "token-" + hashlib.sha256(BETA.encode()).hexdigest()[:8]
    # base64 padding is part of the token, not a name separator
    assert padded.digest == hashlib.sha256(b"dG9rZW4tdG9rZW4tdG9rZW4==").digest()
    assert Access.from_setting(f"marketing={ALPHA}:read").scope_of(f"Bearer {ALPHA}") == "read"
    assert Access.from_setting(f"marketing={ALPHA}:read").scope_of(f"Bearer marketing={ALPHA}") is None


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer beta", "Basic " + ALPHA, ALPHA, f"Bearer {ALPHA}:read", f"Bearer {ALPHA.upper()}"],
)
def test_unknown_or_malformed_credentials_have_no_scope(header: str | None) -> None:
    assert Access.from_setting(f"{ALPHA}:read,{BETA}:admin").scope_of(header) is None


@pytest.mark.parametrize(
    "raw, message",
    [
        (ALPHA, "entry 1 is not [name=]token:scope"),
        (f"{ALPHA}:read,:admin", "entry 2 is not [name=]token:scope"),
        (f"{ALPHA}:write", "entry 1 has scope 'write'"),
        (f"{ALPHA}:read,alpha-short:admin", f"entry 2: the token is shorter than {MIN_TOKEN_LENGTH} characters"),
        ("ops=alpha-short:admin", f"entry 1: the token is shorter than {MIN_TOKEN_LENGTH} characters"),
    ],
)
def test_a_bad_setting_is_refused_without_echoing_the_token(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        parse_tokens(raw)
    assert "alpha" not in str(err.value)


def test_without_the_setting_the_api_is_open() -> None:
    assert not Access.from_setting("").enabled
    assert Access.from_setting("").scope_of("Bearer anything") is None


def test_authenticate_explains_a_401_and_challenges() -> None:
    access = Access.from_setting(f"ops={ALPHA}:read")
    with pytest.raises(AccessDenied) as missing:
        access.authenticate(Headers({}))
    assert (missing.value.status, missing.value.detail) == (401, "missing bearer token")
    assert missing.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(AccessDenied) as unknown:
        access.authenticate(Headers({"authorization": "Bearer nope"}))
    assert unknown.value.detail == "unknown or malformed bearer token"
    token = access.authenticate(Headers({"authorization": f"Bearer {ALPHA}"}))
    assert (token.scope, token.name) == ("read", "ops")


def test_a_scope_nobody_has_cannot_be_required() -> None:
    with pytest.raises(ValueError):
        Access.from_setting(f"{ALPHA}:read").require("write")
