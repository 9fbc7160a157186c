"""Signing in as a person does: ask for a code, read it from the mail (the local stack's outbox, over HTTP),
send it back; the session cookie is what the API sets."""

from __future__ import annotations

import re

import httpx

COOKIE = "llm_session"  # the local stack's name (plain http: no Secure, so no __Host- prefix)
_CODE = re.compile(r"\b(\d{6})\b")


def latest_code(mail_url: str, email: str) -> str:
    """The code in the newest message to ``email`` in the outbox (GET {mailUrl}/messages, newest first)."""
    messages = httpx.get(f"{mail_url}/messages", timeout=10).json()
    mine = [m for m in messages if m["to"] == email.strip().lower()]
    assert mine, f"no message to {email} in the outbox"
    found = _CODE.search(mine[0]["text"])
    assert found, mine[0]
    return found.group(1)


def sign_in(api: httpx.Client, mail_url: str, email: str) -> tuple[str, dict]:
    """(the session token, the verify answer's data) for ``email``, through the two sign-in routes."""
    origin = {"Origin": str(api.base_url).rstrip("/")}
    started = api.post("/api/auth/email/start", json={"email": email}, headers=origin)
    assert started.status_code == 202, started.text
    verified = api.post(
        "/api/auth/email/verify", json={"email": email, "code": latest_code(mail_url, email)}, headers=origin
    )
    assert verified.status_code == 200, verified.text
    token = verified.cookies.get(COOKIE)
    assert token, verified.headers
    api.cookies.clear()  # the caller sends the cookie explicitly: a client's jar would send it everywhere
    return token, verified.json()["data"]


def session_headers(api_url: str, token: str) -> dict[str, str]:
    """What the dashboard's browser sends: the cookie, and its own origin."""
    return {"Cookie": f"{COOKIE}={token}", "Origin": api_url.rstrip("/")}
