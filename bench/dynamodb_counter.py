"""A counting forwarder in front of DynamoDB Local: what a proxy asks of DynamoDB, seen on the wire.

Counting on the wire instead of inside the proxy (botocore's events) works whatever client the proxy
uses. The bench points a proxy process at it only to count (it adds a hop); the timed proxies talk to
DynamoDB Local directly. `GET /__bench/calls` answers {"calls": n} for the load generator, which reads
it at a streamed answer's first byte.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send


@dataclass
class Call:
    operation: str  # from X-Amz-Target, e.g. "TransactWriteItems"
    milliseconds: float  # DynamoDB Local's answer time, as the forwarder sees it
    body: dict[str, Any]
    status: int


@dataclass
class DynamoDBCounter:
    """ASGI app forwarding every request to `endpoint` and recording it."""

    endpoint: str
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _http: httpx.AsyncClient | None = None

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/__bench/calls":
            body = json.dumps({"calls": len(self.calls)}).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = [(name.decode(), value.decode()) for name, value in scope["headers"] if name != b"host"]
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.endpoint, timeout=30)
        started = time.perf_counter()
        response = await self._http.post(scope["path"] or "/", content=raw, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        operation = dict(headers).get("x-amz-target", dict(headers).get("X-Amz-Target", "")).rpartition(".")[2]
        with self._lock:
            self.calls.append(Call(operation, elapsed, json.loads(raw or b"{}"), response.status_code))
        out_headers = [
            (name.encode(), value.encode())
            for name, value in response.headers.items()
            if name.lower() not in ("content-length", "transfer-encoding", "connection")
        ]
        out_headers.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
        await send({"type": "http.response.body", "body": response.content})


@dataclass
class DynamoDBUse:
    calls: float  # per request
    milliseconds: float  # per request, DynamoDB Local's answer time as the forwarder sees it (no client CPU)
    items: float  # transaction items per request
    write_units: float  # per request: 2 per transaction item per KB, plus index copies (request log, reservations)
    calls_before_first_byte: float  # round trips the client waits for before its first byte


def write_units(calls: list[Call], log_table: str, reservations_table: str) -> tuple[int, int]:
    """(transaction items, write units) of these calls: transactional writes cost 2 units per KB of
    item; the request log's two GSIs (all attributes) 1 unit per KB each; a reservation enters the
    reconciler's byDeadline GSI and then leaves it, 1 unit per KB for each."""
    items = units = 0
    for call in calls:
        for item in call.body.get("TransactItems", []):
            items += 1
            kilobytes = math.ceil(len(json.dumps(item)) / 1024)
            units += 2 * kilobytes
            put = item.get("Put", {})
            if put.get("TableName") == log_table:
                units += 2 * kilobytes
            if (put or item.get("Delete", {})).get("TableName") == reservations_table:
                units += kilobytes
    return items, units
