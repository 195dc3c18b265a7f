"""Access to the /v1 API (contract sections 10 and 14): named bearer tokens with a scope, parsed once at start-up.

    API_TOKENS="marketing=<token>:read,ops=<token>:admin"     named (section 14)
    API_TOKENS="<token>:read"                                 the v1 form; its name is token-<8 hex of SHA-256>

A token has at least MIN_TOKEN_LENGTH characters (a short one stops the service at start-up); a name is a
letter or digit and then up to 63 letters, digits, `_`, `.` or `-`. The name, never the token, is what a log
line may show of who asked.

Authentication (who are you?) happens once per request in `BearerAuth`, an ASGI middleware in front of every
`/v1/*` path, so that no route, not even an unknown one, answers without a valid token (401). Authorization
(may you do this?) is a per-route dependency, `Access.require(scope)`, that answers 403. `admin` includes
`read`. Without API_TOKENS both let everything through (the launcher warns that the API is open).

Tokens are never logged and never kept in plain form: only their SHA-256 digests are held, and a presented
token is compared with every known digest in constant time, so neither timing nor an early exit tells how
much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPES = ("read", "admin")
# what each scope may do; a future admin-only endpoint requires "admin", every read requires "read"
GRANTS: dict[str, frozenset[str]] = {"read": frozenset({"read"}), "admin": frozenset({"read", "admin"})}
_STATE_KEY = "access_scope"
NAME_STATE_KEY = "access_name"
# 16 characters of a random token are ~96 bits (base64) at least; shorter ones are passwords people chose
MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CHALLENGE = 'Bearer realm="loyalty-ladder"'


class AccessDenied(Exception):
    """A request without the right token: 401 (no or unknown token) or 403 (the token lacks the scope)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": CHALLENGE}
        return {"WWW-Authenticate": f'{CHALLENGE}, error="insufficient_scope"'}

    def response(self) -> JSONResponse:
        """The JSON error response for this denial."""
        return JSONResponse({"error": self.error, "detail": self.detail}, status_code=self.status, headers=self.headers)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Token(NamedTuple):
    """One entry of API_TOKENS: the token's SHA-256 digest (the token itself is not kept), scope and name."""

    digest: bytes
    scope: str
    name: str


def split_name(credential: str) -> tuple[str | None, str]:
    """(name, token) of `name=token`, or (None, credential) for the v1 form.

    A token may hold `=` itself (base64 padding): only a valid name before the first `=`, followed by a token
    that does not start with `=`, makes a named entry.
    """
    name, sep, token = credential.partition("=")
    if sep and _NAME.fullmatch(name) and token and not token.startswith("="):
        return name, token
    return None, credential


def parse_tokens(raw: str) -> tuple[Token, ...]:
    """The tokens of an API_TOKENS value; raises ValueError naming the entry, never the token."""
    entries: list[Token] = []
    for position, item in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not item:
            continue
        # the scope is after the last colon, so a token may itself contain colons
        credential, sep, scope = item.rpartition(":")
        if not sep or not credential:
            raise ValueError(f"API_TOKENS entry {position} is not [name=]token:scope")
        if scope not in SCOPES:
            raise ValueError(f"API_TOKENS entry {position} has scope {scope!r}; use one of {SCOPES}")
        name, token = split_name(credential)
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"API_TOKENS entry {position}: the token is shorter than {MIN_TOKEN_LENGTH} characters")
        digest = _digest(token)
        entries.append(Token(digest, scope, name or f"token-{digest.hex()[:8]}"))
    return tuple(entries)


@dataclass(frozen=True)
class Access:
    """The known tokens and their scopes; empty = the API is open."""

    tokens: tuple[Token, ...]

    @classmethod
    def from_setting(cls, raw: str) -> Access:
        """Access for an API_TOKENS value (empty or unset: open)."""
        return cls(tokens=parse_tokens(raw))

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def identify(self, authorization: str | None) -> Token | None:
        """The known token of an Authorization header, or None when it is missing or unknown."""
        if not authorization:
            return None
        kind, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            return None
        presented = _digest(token)
        found: Token | None = None
        for known in self.tokens:
            # no early exit: every digest is compared, whichever one matches
            if hmac.compare_digest(presented, known.digest):
                found = known
        return found

    def scope_of(self, authorization: str | None) -> str | None:
        """The scope of the bearer token in an Authorization header, or None when it is missing or unknown."""
        found = self.identify(authorization)
        return None if found is None else found.scope

    def authenticate(self, headers: Headers) -> Token:
        """The request's known token; raises AccessDenied(401) when there is none."""
        authorization = headers.get("authorization")
        found = self.identify(authorization)
        if found is None:
            detail = "missing bearer token" if not authorization else "unknown or malformed bearer token"
            raise AccessDenied(401, "unauthorized", detail)
        return found

    def require(self, needed: str) -> Callable[[Request], None]:
        """A route dependency that lets a request through only if its token grants `needed` (403 otherwise)."""
        if needed not in SCOPES:
            raise ValueError(f"unknown scope {needed!r}")

        def dependency(request: Request) -> None:
            if not self.enabled:
                return
            granted = request.scope.get("state", {}).get(_STATE_KEY)
            if granted is None:  # a route outside the middleware's prefix: authenticate here
                granted = self.authenticate(request.headers).scope
            if needed not in GRANTS[granted]:
                raise AccessDenied(403, "forbidden", f"this token's scope is {granted!r}; {needed!r} is needed")

        return dependency


class BearerAuth:
    """ASGI middleware: every request under `prefix` needs a known bearer token, or it gets a 401 JSON error."""

    def __init__(self, app: ASGIApp, *, access: Access, prefix: str = "/v1") -> None:
        self.app, self.access, self.prefix = app, access, prefix

    def _guarded(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.access.enabled and self._guarded(scope["path"]):
            try:
                token = self.access.authenticate(Headers(scope=scope))
            except AccessDenied as denied:
                await denied.response()(scope, receive, send)
                return
            # request.state reads this dict: the route's scope check finds the already-verified scope here,
            # and a log line the token's name (never the token)
            state = scope.setdefault("state", {})
            state[_STATE_KEY], state[NAME_STATE_KEY] = token.scope, token.name
        await self.app(scope, receive, send)
