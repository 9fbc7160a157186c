"""A hot key under load, on DynamoDB Local: many proxy "instances" (each its own ``Meter`` and ``KeyCache``,
as separate Lambda containers would be) admit and settle requests of one key of one account at once.

``DynamoCounter`` counts what DynamoDB sees, from botocore's own events on the shared client (so it
counts whatever the transport does): calls per operation, ``TransactionConflict`` cancellations (each
one a retry by ``data.dynamo.transact``), the items written by committed transactions and how often each
item was written, whose maximum per request is the hot-item figure that bounds one key's throughput."""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm_platform.proxy.errors import ProxyError
from llm_platform.proxy.keys import KeyCache
from llm_platform.proxy.metering import Meter, Outcome, Pending


def _item_name(entry: dict[str, Any]) -> str:
    ((action, body),) = entry.items()
    key = body.get("Key") or {}
    if action == "Put":
        item = body["Item"]
        key = {name: item[name] for name in ("requestId", "pk", "sk", "accountId", "keyHash") if name in item}
    table = body["TableName"]
    return f"{table.rsplit('-', 1)[-1]}:{json.dumps(key, sort_keys=True)}"


@dataclass
class DynamoCounter:
    """Counts DynamoDB calls made through ``client`` while active (thread-safe)."""

    client: Any
    calls: collections.Counter = field(default_factory=collections.Counter)
    conflicts: int = 0  # transactions cancelled by TransactionConflict (each retried)
    refused: int = 0  # transactions cancelled by a failed condition
    items_written: int = 0  # items in committed transactions (ConditionCheck counted: it costs as a write)
    per_item: collections.Counter = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _params(self, params: dict, context: dict, **_: Any) -> None:
        context["hot_load_params"] = params

    def _after(self, http_response: Any, parsed: dict, model: Any, context: dict, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1
            if model.name != "TransactWriteItems":
                return
            if http_response.status_code >= 300:
                reasons = [r.get("Code") for r in parsed.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in reasons:
                    self.refused += 1
                elif "TransactionConflict" in reasons:
                    self.conflicts += 1
                return
            items = context.get("hot_load_params", {}).get("TransactItems", [])
            self.items_written += len(items)
            for entry in items:
                self.per_item[_item_name(entry)] += 1

    def __enter__(self) -> DynamoCounter:
        self.client.meta.events.register("provide-client-params.dynamodb", self._params)
        self.client.meta.events.register("after-call.dynamodb", self._after)
        return self

    def __exit__(self, *_: Any) -> None:
        self.client.meta.events.unregister("provide-client-params.dynamodb", self._params)
        self.client.meta.events.unregister("after-call.dynamodb", self._after)

    def hottest(self, excluding: tuple[str, ...] = ()) -> tuple[str, int]:
        for name, count in self.per_item.most_common():
            if not any(part in name for part in excluding):
                return name, count
        return "", 0


@dataclass
class Served:
    request_id: str
    instance: int
    admitted_at: float  # time.time()
    minute: int  # the clock minute its admission counted in
    reserve: int
    cost: int


@dataclass
class LoadResult:
    served: list[Served]
    refusals: collections.Counter  # (status, code) -> count
    seconds: float
    meters: list[Meter]
    abandoned: list[Served] = field(default_factory=list)  # admitted, never settled

    @property
    def admitted(self) -> int:
        return len(self.served)


def echo_pending(cost_micros: int) -> Pending:
    """What the reconciler would charge for the loads' one request shape (test/echo, 3 prompt tokens)."""
    return Pending(model="test/echo", stream=False, prompt_tokens=3, prompt_cost_micros=cost_micros)


def settle_echo(meter: Meter, admission: Any, cost_micros: int) -> None:
    """Settles an admitted test/echo request as the proxy would after a 200: 3 tokens in, 2 out."""
    meter.settle(
        admission,
        input_tokens=3,
        output_tokens=2,
        cost_micros=cost_micros,
        counted=True,
        now=_utc(),
        outcome=Outcome("test/echo", "local", 200, False),
    )


def run_load(
    api_key: str,
    *,
    instances: int,
    threads_per_instance: int,
    requests_per_thread: int,
    reserve_micros: int,
    cost_micros: int,
    meter_factory: Callable[[KeyCache], Meter] = Meter,
    reserve_tokens: int = 10,
    milestone: tuple[int, threading.Event] | None = None,
    settle: Callable[[int], bool] = lambda request_number: True,
) -> LoadResult:
    """Every thread of every instance sends ``requests_per_thread`` requests, one after another, each
    admitted (or refused) and then settled at ``cost_micros``. Nothing else runs on the request path, so
    the figures are the metering's own. ``milestone`` (count, event): the event is set once that many
    requests were admitted. ``settle(n)`` False: the n-th request of a thread is left unsettled (its
    instance "dies" with it in flight)."""
    meters = [meter_factory(KeyCache()) for _ in range(instances)]
    served: list[Served] = []
    abandoned: list[Served] = []
    admitted = [0]
    refusals: collections.Counter = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(instances * threads_per_instance)

    def worker(index: int, meter: Meter) -> None:
        start.wait()
        for number in range(requests_per_thread):
            key = meter.keys.lookup(api_key)
            request_id = str(uuid.uuid4())
            now = _utc()
            if key is None:  # revoked, and this instance knows it
                with lock:
                    refusals[(401, "invalid_api_key")] += 1
                continue
            try:
                admission = meter.admit(
                    key,
                    reserve_micros,
                    reserve_tokens,
                    request_id,
                    now,
                    echo_pending(cost_micros),
                )
            except ProxyError as refused:
                with lock:
                    refusals[(refused.status, refused.code)] += 1
                continue
            with lock:
                admitted[0] += 1
                if milestone is not None and admitted[0] == milestone[0]:
                    milestone[1].set()
            if not settle(number):
                with lock:
                    abandoned.append(
                        Served(request_id, index, now.timestamp(), admission.minute.index, reserve_micros, 0)
                    )
                continue
            settle_echo(meter, admission, cost_micros)
            with lock:
                served.append(
                    Served(request_id, index, now.timestamp(), admission.minute.index, reserve_micros, cost_micros)
                )

    threads = [
        threading.Thread(target=worker, args=(index, meter))
        for index, meter in enumerate(meters)
        for _ in range(threads_per_instance)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(served, refusals, time.monotonic() - began, meters, abandoned)


def _utc():
    from llm_platform.core.clock import utc_now

    return utc_now()
