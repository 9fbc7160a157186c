"""The customer dashboard: a static site (built by ``make dashboard`` into the function's ``site/``) served by
a function on the API's own origin, so the dashboard's requests to ``/api`` are same-origin and its session
cookie never leaves that origin.

Every file is text (HTML, JS, CSS, SVG, the API's OpenAPI JSON), so API Gateway needs no binary media
types. Each file has a fixed template route (``/``, ``/assets/app.js``, …): no greedy path, and the local
gateway serves exactly the same routes. ``index.html`` names its assets with ``?v=<content hash>``: a
request carrying the current hash may be cached for a year, anything else must be revalidated.

The dashboard routes by the URL fragment (``#/keys``), so the one HTML document is always ``/``. The stage
(``/prod``) or a custom domain's base path is in front of it on AWS: the document's ``<base href>`` is set
from the path the request came in on, so relative asset and API URLs resolve under it.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INDEX = "index.html"
BASE_PLACEHOLDER = '<base href="/">'
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# The dashboard loads only its own files and talks only to its own API. Stripe Checkout is a navigation
# (location.assign), which the policy does not restrict.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class StaticFile:
    body: str
    content_type: str
    version: str  # the first 16 hex digits of the SHA-256 of the body


class Site:
    """The files of one built site, read on first use (no import-time I/O) and then kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, StaticFile] | None = None
        self._lock = threading.Lock()

    def files(self) -> dict[str, StaticFile]:
        """Route path (``/`` for index.html, ``/assets/app.js``) -> file; empty when the site is not built."""
        with self._lock:
            if self._files is None:
                self._files = _read_site(self.root)
            return self._files

    def respond(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The Lambda proxy response for an API Gateway (REST, v1) event on one of the site's routes."""
        files = self.files()
        if not files:
            return _error(503, "dashboard_not_built", "The dashboard is not built: run `make dashboard`.")
        route = str(event.get("resource") or event.get("path") or "/")
        found = files.get(route)
        if found is None:
            return _error(404, "route_not_found", "No such route.")
        headers = {"Content-Type": found.content_type, **SECURITY_HEADERS}
        if route == "/":
            headers |= {"Cache-Control": REVALIDATE, "Content-Security-Policy": CONTENT_SECURITY_POLICY}
            body = found.body.replace(BASE_PLACEHOLDER, f'<base href="{html.escape(base_path(event))}">', 1)
        else:
            query = event.get("queryStringParameters") or {}
            headers["Cache-Control"] = IMMUTABLE if query.get("v") == found.version else REVALIDATE
            body = found.body
        return {"statusCode": 200, "headers": headers, "body": body, "isBase64Encoded": False}


def base_path(event: Mapping[str, Any]) -> str:
    """The path the document was requested at, ending in "/": ``/`` locally, ``/prod/`` on execute-api
    (requestContext.path carries the stage), a custom domain's base path there."""
    path = str((event.get("requestContext") or {}).get("path") or "/")
    if not path.startswith("/") or "//" in path:
        path = "/"
    return path if path.endswith("/") else path + "/"


def _read_site(root: Path) -> dict[str, StaticFile]:
    if not (root / INDEX).is_file():
        return {}
    found: dict[str, StaticFile] = {}
    for file in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(file.suffix)
        if not file.is_file() or content_type is None:
            continue
        body = file.read_text(encoding="utf-8")
        relative = file.relative_to(root).as_posix()
        route = "/" if relative == INDEX else "/" + relative
        version = hashlib.sha256(body.encode()).hexdigest()[:16]
        found[route] = StaticFile(body=body, content_type=content_type, version=version)
    return found


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **SECURITY_HEADERS},
        "body": json.dumps({"error": {"code": code, "message": message}}),
        "isBase64Encoded": False,
    }
