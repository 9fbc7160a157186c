"""A request's reservation outlives the request by a few minutes at most (SPEC 11), over real HTTP on DynamoDB
Local: a running request pushes its deadline out every heartbeat, so the reconciler leaves it alone however
long it streams; a request that died stops beating, so its reservation is the reconciler's once a deadline
(minutes, not the 15 a request may run) has passed; and the reconciler decides on the record itself, never on
its index alone, which may not show the latest heartbeat yet.

Here a heartbeat is 0.2 s and a deadline 0.5 s (the reconciler's grace 0), and a story streams for ~2 s."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from llm_platform.config import get_settings
from llm_platform.core.clock import from_iso, to_iso, utc_now
from llm_platform.data.dynamo import WriteRefused, client, from_item
from llm_platform.domain import accounts, api_keys, reservations
from llm_platform.domain.accounts import Caller
from llm_platform.proxy.keys import KeyCache
from llm_platform.proxy.metering import Admission, Meter, Outcome, Pending, reservation_deadline
from local_stack.upstream import UpstreamServer
from tests.support.proxies import catalog_model, proxy_on_catalog

HEARTBEAT, DEADLINE = 0.2, 0.5


@pytest.fixture
def quick_deadlines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RESERVATION_HEARTBEAT_SECONDS", str(HEARTBEAT))
    monkeypatch.setenv("RESERVATION_DEADLINE_SECONDS", str(DEADLINE))
    monkeypatch.setenv("RECONCILE_GRACE_SECONDS", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def proxy_url(local_stack, quick_deadlines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    slow = UpstreamServer(name="slow", chunk_delay=0.03).start()  # 64 words of story: ~2 s
    catalog = {"models": [catalog_model("test/story", "test/story", [(slow.url, 0.5)], max_out=512)]}
    try:
        with proxy_on_catalog(catalog, tmp_path_factory.mktemp("heartbeat")) as (url, _):
            yield url
    finally:
        slow.stop()


def credit_key() -> tuple[str, str]:
    created = accounts.create_account("heartbeat")
    accounts.grant_credit(created.account_id, 1_000_000, "test")
    caller = Caller(created.account_id, created.management_key_id)
    _, plaintext = api_keys.create_credit_key(caller, "k", None, 1000, 100_000)
    return plaintext, created.account_id


def open_reservation(request_id: str) -> dict | None:
    item = client().get_item(
        TableName=get_settings().reservations_table, Key={"requestId": {"S": request_id}}, ConsistentRead=True
    )
    return from_item(item["Item"]) if "Item" in item else None


def test_a_streaming_request_keeps_its_reservation_past_many_deadlines(proxy_url) -> None:
    # Given a story streaming for ~2 s, four deadlines long
    key, account_id = credit_key()
    body = {
        "model": "test/story",
        "messages": [{"role": "user", "content": "a long one"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,  # 64 words, one a chunk
    }
    seen: list[str] = []
    runs: list[reservations.ReconcileReport] = []
    usage = None
    with httpx.stream(
        "POST", f"{proxy_url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        # When the reconciler runs again and again while it streams (every 8th chunk, until the proxy, which
        # runs ahead of this reader, has settled it)
        chunks = 0
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[len("data: ") :])
            usage = chunk.get("usage") or usage
            chunks += 1
            if chunks % 8 == 0 and (record := open_reservation(request_id)) is not None:
                seen.append(record["deadline"])
                runs.append(reservations.reconcile(utc_now()))
    # Then the deadline kept moving ahead of the runs, seconds past the first deadline
    assert len(seen) >= 3 and seen == sorted(seen) and len(set(seen)) == len(seen)
    assert from_iso(seen[-1]) - from_iso(seen[0]) > timedelta(seconds=DEADLINE)
    assert open_reservation(request_id) is None
    # And no run settled it: the request did, at its end, billed for what it generated (a reconciled request
    # would be logged 504 with its prompt's cost only)
    from llm_platform.data import request_log

    record = request_log.get(request_id)
    assert record["status"] == 200 and usage is not None
    assert record["completionTokens"] == usage["completion_tokens"] > 0
    assert all(run.failed == [] for run in runs)
    assert accounts.get_account(account_id).credit_balance_micros == 1_000_000 - record["costMicros"]


def _admitted() -> tuple[Meter, Admission, str]:
    """A request admitted straight through a meter (no HTTP, no bill: nothing settles it or beats for it),
    reserving $0.002 with a $0.000005 prompt; with its account."""
    key, account_id = credit_key()
    meter = Meter(KeyCache())
    pending = Pending(model="test/story", stream=True, prompt_tokens=5, prompt_cost_micros=5)
    admission = meter.admit(meter.keys.lookup(key), 2_000, 600, str(uuid.uuid4()), utc_now(), pending)
    return meter, admission, account_id


def test_a_request_that_died_is_reconciled_once_its_deadline_passes(local_stack, quick_deadlines) -> None:
    # Given a request admitted, and its instance gone: nothing settles it, nothing beats for it
    _, admission, account_id = _admitted()
    request_id, admitted = admission.request_id, admission.admitted_at
    deadline = from_iso(open_reservation(request_id)["deadline"])
    assert to_iso(deadline) == to_iso(reservation_deadline(admitted, admitted))
    assert to_iso(deadline) == to_iso(admitted + timedelta(seconds=DEADLINE))
    # When the reconciler runs just before its deadline, then just after it
    reservations.reconcile(deadline - timedelta(milliseconds=10))
    still_open = open_reservation(request_id) is not None
    reservations.reconcile(deadline + timedelta(milliseconds=10))
    # Then the first left it and the second settled it: the prompt charged, the rest released
    assert still_open and open_reservation(request_id) is None
    assert accounts.get_account(account_id).credit_balance_micros == 1_000_000 - 5


def test_the_reconciler_decides_on_the_record_not_on_a_stale_index(local_stack, quick_deadlines) -> None:
    # Given a reservation the reconciler read when its deadline had passed
    meter, admission, _ = _admitted()
    request_id, admitted = admission.request_id, admission.admitted_at
    as_read = open_reservation(request_id)
    later = admitted + timedelta(seconds=DEADLINE + 0.1)
    # When its request's heartbeat lands first (the index the reconciler queried did not show it yet)
    assert meter.extend_reservation(admission, later)
    assert open_reservation(request_id)["deadline"] == to_iso(later + timedelta(seconds=DEADLINE))
    # Then the reconciler's settle of what it read is refused, and the reservation stays the request's
    with pytest.raises(WriteRefused):
        reservations._settle_abandoned(as_read, later, {}, to_iso(later))
    assert open_reservation(request_id) is not None
    # And once the request settles, a heartbeat has nothing left to extend
    outcome = Outcome("test/story", "p0", 200, False)
    meter.settle(admission, input_tokens=5, output_tokens=1, cost_micros=7, counted=True, now=later, outcome=outcome)
    assert open_reservation(request_id) is None and not meter.extend_reservation(admission, later)
