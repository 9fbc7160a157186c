"""Dashboard sessions: a random token in an HttpOnly cookie, stored server-side only as its SHA-256 hash,
ending at sign-out or ``SESSION_TTL_SECONDS`` after sign-in. And the origin rule that keeps the cookie
from working for other websites (CSRF):

- a request authenticated by the cookie must come from the dashboard's own origin: an ``Origin`` header
  naming another origin is refused (403 ``origin_not_allowed``);
- a state-changing one (any method but GET/HEAD/OPTIONS) must carry ``Origin`` at all (403
  ``origin_required``): browsers send it on every such request, so only a non-browser client omits it,
  and that client can send its management key instead;
- a read without ``Origin`` is refused when the browser says it comes from another site
  (``Sec-Fetch-Site: cross-site``/``same-site``);
- the sign-in routes, which have no session yet, refuse a foreign ``Origin`` too (no other site can
  make a visitor's browser request codes or sign in), and serve clients that send none (curl).

Requests with ``Authorization: Bearer mk_…`` are not subject to any of this: a browser never adds that
header by itself."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from llm_platform.config import get_settings
from llm_platform.core import clock
from llm_platform.data import auth as auth_table
from llm_platform.domain.credentials import hash_secret
from llm_platform.domain.errors import Forbidden, Unauthenticated

SESSION_COOKIE = "llm_session"
SECURE_SESSION_COOKIE = "__Host-llm_session"  # the __Host- prefix: Secure, Path=/, no Domain, or browsers drop it
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_MAX_TOKEN_LENGTH = 128


def cookie_name() -> str:
    return SECURE_SESSION_COOKIE if get_settings().session_cookie_secure else SESSION_COOKIE


@dataclass(frozen=True, slots=True)
class BrowserRequest:
    """What a request says about where it comes from, and the session cookie it carries."""

    method: str
    origin: str | None  # the Origin header
    fetch_site: str | None  # the Sec-Fetch-Site header
    dashboard_origins: tuple[str, ...]  # where the dashboard is served (lower case, no trailing slash)
    session_token: str | None = None


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # plaintext, for the cookie only
    max_age_seconds: int

    def __repr__(self) -> str:  # never let the token reach a log line by accident
        return f"NewSession(max_age_seconds={self.max_age_seconds})"


def issue() -> tuple[NewSession, str, int]:
    """A new session token, its hash, and when it expires (epoch seconds)."""
    ttl = get_settings().session_ttl_seconds
    token = secrets.token_urlsafe(32)
    return NewSession(token, ttl), hash_secret(token), int(clock.utc_now().timestamp()) + ttl


def _foreign(origin: str, request: BrowserRequest) -> bool:
    return origin.strip().rstrip("/").lower() not in request.dashboard_origins


def refuse_foreign_origin(request: BrowserRequest) -> None:
    """The sign-in routes: a browser request from another website is refused; no Origin (curl) is fine."""
    if request.origin is not None and _foreign(request.origin, request):
        raise Forbidden("Requests from other websites are not allowed.", code="origin_not_allowed")


def require_own_origin(request: BrowserRequest) -> None:
    """A request authenticated by the session cookie: from the dashboard's origin only (see the module)."""
    if request.origin is not None:
        refuse_foreign_origin(request)
    elif request.method.upper() not in _SAFE_METHODS:
        raise Forbidden(
            "A request signed in by cookie must carry an Origin header (browsers send it); "
            "other clients send 'Authorization: Bearer mk_…'.",
            code="origin_required",
        )
    elif (request.fetch_site or "").lower() in {"cross-site", "same-site"}:
        raise Forbidden("Requests from other websites are not allowed.", code="origin_not_allowed")


def account_for(request: BrowserRequest) -> str:
    """The account of the request's session, after the origin rule; 401 ``invalid_session`` when the session
    is unknown, ended or expired."""
    require_own_origin(request)
    token = request.session_token or ""
    session = auth_table.get_session(hash_secret(token)) if 0 < len(token) <= _MAX_TOKEN_LENGTH else None
    if session is None or session["expiresAt"] <= clock.utc_now().timestamp():
        raise Unauthenticated("Your session has ended: sign in again.", code="invalid_session")
    return session["accountId"]


def end(token: str | None) -> None:
    """Sign-out: the session is deleted server-side, so its cookie stops working at once, wherever it is."""
    if token and len(token) <= _MAX_TOKEN_LENGTH:
        auth_table.delete_session(hash_secret(token))
