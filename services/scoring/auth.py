"""Access to the /v1 API (contract section 10): bearer tokens with a scope, parsed once at start-up.

    API_TOKENS="t0k3n-a:read,t0k3n-b:admin"

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
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPES = ("read", "admin")
# what each scope may do; a future admin-only endpoint requires "admin", every read requires "read"
GRANTS: dict[str, frozenset[str]] = {"read": frozenset({"read"}), "admin": frozenset({"read", "admin"})}
_STATE_KEY = "access_scope"
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
        return JSONResponse({"error": self.error, "detail": self.detail}, status_code=self.status,
                            headers=self.headers)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(raw: str) -> tuple[tuple[bytes, str], ...]:
    """(token digest, scope) pairs of an API_TOKENS value; raises ValueError naming the entry, never the token."""
    entries: list[tuple[bytes, str]] = []
    for position, item in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not item:
            continue
        # the scope is after the last colon, so a token may itself contain colons
        token, sep, scope = item.rpartition(":")
        if not sep or not token:
            raise ValueError(f"API_TOKENS entry {position} is not token:scope")
        if scope not in SCOPES:
            raise ValueError(f"API_TOKENS entry {position} has scope {scope!r}; use one of {SCOPES}")
        entries.append((_digest(token), scope))
    return tuple(entries)


@dataclass(frozen=True)
class Access:
    """The known tokens and their scopes; empty = the API is open."""

    tokens: tuple[tuple[bytes, str], ...]

    @classmethod
    def from_setting(cls, raw: str) -> Access:
        """Access for an API_TOKENS value (empty or unset: open)."""
        return cls(tokens=parse_tokens(raw))

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def scope_of(self, authorization: str | None) -> str | None:
        """The scope of the bearer token in an Authorization header, or None when it is missing or unknown."""
        if not authorization:
            return None
        kind, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            return None
        presented = _digest(token)
        found: str | None = None
        for digest, scope in self.tokens:
            # no early exit: every digest is compared, whichever one matches
            if hmac.compare_digest(presented, digest):
                found = scope
        return found

    def authenticate(self, headers: Headers) -> str:
        """The scope the request's token grants; raises AccessDenied(401) when there is none."""
        authorization = headers.get("authorization")
        scope = self.scope_of(authorization)
        if scope is None:
            detail = "missing bearer token" if not authorization else "unknown or malformed bearer token"
            raise AccessDenied(401, "unauthorized", detail)
        return scope

    def require(self, needed: str) -> Callable[[Request], None]:
        """A route dependency that lets a request through only if its token grants `needed` (403 otherwise)."""
        if needed not in SCOPES:
            raise ValueError(f"unknown scope {needed!r}")

        def dependency(request: Request) -> None:
            if not self.enabled:
                return
            granted = request.scope.get("state", {}).get(_STATE_KEY)
            if granted is None:  # a route outside the middleware's prefix: authenticate here
                granted = self.authenticate(request.headers)
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
                granted = self.access.authenticate(Headers(scope=scope))
            except AccessDenied as denied:
                await denied.response()(scope, receive, send)
                return
            # request.state reads this dict: the route's scope check finds the already-verified scope here
            scope.setdefault("state", {})[_STATE_KEY] = granted
        await self.app(scope, receive, send)
