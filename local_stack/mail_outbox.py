"""The local stack's outbox: where mail goes instead of Amazon SES (the functions' MAIL_OUTBOX_URL).

``POST /messages`` ``{to, subject, text}`` keeps a message (what ``llm_platform.data.mail`` sends);
``GET /messages`` lists every one kept, newest first: ``[{"to", "subject", "text", "sentAt"}]``
(``?to=ADDRESS`` for one recipient's). Held in memory: gone when the stack stops."""

from __future__ import annotations

import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llm_platform.core.clock import to_iso, utc_now


class Outbox:
    def __init__(self) -> None:
        self._messages: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def keep(self, to: str, subject: str, text: str) -> dict[str, str]:
        message = {"to": to, "subject": subject, "text": text, "sentAt": to_iso(utc_now())}
        with self._lock:
            self._messages.append(message)
        return message

    def messages(self, to: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            kept = list(reversed(self._messages))
        return [m for m in kept if to is None or m["to"] == to.strip().lower()]


def outbox_app(outbox: Outbox) -> Starlette:
    async def post(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
            message = outbox.keep(str(body["to"]), str(body["subject"]), str(body["text"]))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": {"code": "invalid_message", "message": "Send {to, subject, text}."}}, 400)
        return JSONResponse(message, 201)

    async def get(request: Request) -> JSONResponse:
        return JSONResponse(outbox.messages(request.query_params.get("to")))

    return Starlette(routes=[Route("/messages", post, methods=["POST"]), Route("/messages", get, methods=["GET"])])
