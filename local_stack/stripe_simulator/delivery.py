"""Webhook deliveries as Stripe makes them: the event's JSON body POSTed to the endpoint, signed with
``Stripe-Signature: t=…,v1=…`` (HMAC-SHA256 of "{t}.{body}" keyed by the endpoint secret). One background
worker delivers every event, in the order they were queued: the caller is often a handler inside the
local gateway holding its one-at-a-time lock, which a synchronous delivery to the gateway would deadlock."""

from __future__ import annotations

import hashlib
import hmac
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
WEBHOOK_TIMEOUT_SECONDS = 30.0


def sign_payload(body: str, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` header value for a webhook body."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass
class EventRecord:
    event: dict[str, Any]
    body: str  # the exact JSON text delivered (and re-delivered by resend)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.event["id"])

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.event["type"], "deliveries": list(self.deliveries), "event": self.event}


@dataclass
class Job:
    record: EventRecord
    done: threading.Event = field(default_factory=threading.Event)
    delivery: dict[str, Any] | None = None


def delivery_summary(job: Job) -> dict[str, Any]:
    delivery = job.delivery or {}
    return {
        "id": job.record.id,
        "type": job.record.event["type"],
        "status": delivery.get("status"),
        "error": delivery.get("error"),
    }


def wait_for_deliveries(jobs: list[Job]) -> list[dict[str, Any]]:
    """Blocks until each job is delivered (or failed); their summaries."""
    for job in jobs:
        job.done.wait()
    return [delivery_summary(job) for job in jobs]


class WebhookDeliveries:
    """The delivery worker and its queue. ``endpoint()`` names the webhook URL (None: record, do not send)
    and the signing secret at each delivery, so both may change after start; ``lock`` guards the records'
    delivery lists, which the simulator's queries read."""

    def __init__(self, endpoint: Callable[[], tuple[str | None, str]], lock: threading.RLock) -> None:
        self._endpoint, self._lock = endpoint, lock
        # _pending counts queued and running deliveries.
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._worker = threading.Thread(target=self._deliver_forever, name="stripe-simulator-webhooks", daemon=True)
        self._worker.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stops the worker (after the deliveries already queued)."""
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout)

    def drain(self, timeout: float = 10.0) -> bool:
        """Blocks until every queued delivery is done; False if that takes longer than `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def enqueue(self, record: EventRecord) -> Job:
        job = Job(record)
        with self._idle:
            self._pending += 1
        self._queue.put(job)
        return job

    def _deliver_forever(self) -> None:
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            while (job := self._queue.get()) is not None:
                try:
                    job.delivery = self._deliver(client, job.record)
                except Exception as exc:  # noqa: BLE001 - a delivery failure must never stop the worker
                    job.delivery = {"status": None, "error": f"{type(exc).__name__}: {exc}"}
                finally:
                    job.done.set()
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _deliver(self, client: httpx.Client, record: EventRecord) -> dict[str, Any]:
        url, secret = self._endpoint()
        timestamp = int(time.time())
        delivery: dict[str, Any] = {
            "attempt": len(record.deliveries) + 1,
            "url": url,
            "timestamp": timestamp,
            "status": None,
            "error": None,
            "response": None,
        }
        if not url:
            delivery["error"] = "not delivered: no webhook_url"
        else:
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": WEBHOOK_USER_AGENT,
                "Accept": "*/*; q=0.5, application/xml",
                "Cache-Control": "no-cache",
                "Stripe-Signature": sign_payload(record.body, secret, timestamp),
            }
            try:
                response = client.post(url, content=record.body.encode("utf-8"), headers=headers)
                delivery["status"], delivery["response"] = response.status_code, response.text[:1000]
            except httpx.HTTPError as exc:
                delivery["error"] = f"{type(exc).__name__}: {exc}"
        with self._lock:
            record.deliveries.append(delivery)
        return delivery
