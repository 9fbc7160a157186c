"""The capacity model (bench/capacity_model.py) reads today's writes from the proxy's own code; these tests
keep its assumptions, and the simulation's table of writes, true to that code."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bench import capacity_model as model
from bench import hot_account_sim as sim


@pytest.fixture
def proxy_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from llm_platform.config import get_settings

    for name, value in model.proxy_environment().items():
        monkeypatch.setenv(name, value)
    model.load_template_facts()
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_item_sizes_follow_dynamodbs_rules() -> None:
    # Given attributes of each type, when sized, then: strings by UTF-8 bytes, numbers 1 byte per two
    # significant digits plus 1, maps and lists 3 bytes plus 1 per element.
    assert model.value_size({"S": "héllo"}) == 6
    assert model.value_size({"N": "123"}) == 3
    assert model.value_size({"N": "1000"}) == 2
    assert model.value_size({"N": "-12.50"}) == 3
    assert model.value_size({"L": [{"S": "ab"}, {"N": "1"}]}) == 3 + (1 + 2) + (1 + 2)
    assert model.item_size({"pk": {"S": "key#1"}, "n": {"N": "42"}}) == 2 + 5 + 1 + 2
    assert model.transactional_wcu(1024) == 2 and model.transactional_wcu(1025) == 4
    assert model.standard_wcu(10) == 1


def test_update_expressions_are_applied_to_the_stored_item() -> None:
    update = {
        "Key": {"pk": {"S": "a"}},
        "UpdateExpression": "ADD requests :one, tokens :t SET expiresAt = :e, #m = :m",
        "ExpressionAttributeNames": {"#m": "model"},
        "ExpressionAttributeValues": {":one": {"N": "1"}, ":t": {"N": "9"}, ":e": {"N": "7"}, ":m": {"S": "x"}},
    }
    after = model.apply_update({"old": {"S": "kept"}}, update)
    assert set(after) == {"pk", "old", "requests", "tokens", "expiresAt", "model"}
    assert after["model"] == {"S": "x"}
    assert model.updated_names(update) == {"requests", "tokens", "expiresAt", "model"}


def test_todays_writes_are_the_proxys_own(proxy_environment) -> None:
    # Given the proxy's Meter with transact captured, when one credit request is admitted and settled,
    # then the two transactions write what data/metering.py writes, each item under 1 KB.
    scenario = model.direct_scenario("credit", "credit")
    tables = [(w.step, w.action, w.table) for w in scenario.writes]
    assert tables == [
        ("admit", "Update", "ApiKeysTable"),
        ("admit", "Update", "UsageCountersTable"),
        ("admit", "Update", "AccountsTable"),
        ("admit", "Put", "ReservationsTable"),
        ("settle", "Update", "ApiKeysTable"),
        ("settle", "Update", "UsageCountersTable"),
        ("settle", "Put", "RequestLogTable"),
        ("settle", "Update", "UsageCountersTable"),
        ("settle", "Update", "AccountsTable"),
        ("settle", "Put", "LedgerTable"),
        ("settle", "Delete", "ReservationsTable"),
    ]
    assert all(w.size < model.KB for w in scenario.writes)
    indexes = sorted(i.index for w in scenario.writes for i in w.indexes)
    assert indexes == [
        "ApiKeysTable.byAccount",
        "ApiKeysTable.byAccount",
        "RequestLogTable.byAccount",
        "RequestLogTable.byKey",
        "ReservationsTable.byDeadline",
        "ReservationsTable.byDeadline",
    ]


def test_the_monotonic_sort_keys_start_with_the_time(proxy_environment) -> None:
    # The split-for-heat caveat applies only if these sort keys really grow with time: check the values written.
    scenario = model.direct_scenario("credit", "credit")
    captured = model.captured_transactions(model.representative_records("credit"))
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
    checked = set()
    for _, items in captured:
        for entry in items:
            put = entry.get("Put")
            if put is None:
                continue
            for (table, _), attribute in model.MONOTONIC_SORT_KEYS.items():
                if put["TableName"] == table and attribute in put["Item"]:
                    assert iso.match(put["Item"][attribute]["S"]), (table, attribute)
                    checked.add((table, attribute))
    # The reservation's deadline, the log record's sortKey, the ledger entry's id.
    assert checked == {("ReservationsTable", "deadline"), ("RequestLogTable", "sortKey"), ("LedgerTable", "entryId")}
    assert any(i.monotonic for w in scenario.writes for i in w.indexes)


def test_todays_ceilings(proxy_environment) -> None:
    # Key item, minute counter and balance are each written twice per request at 2 WCU: 1,000 / 4 = 250 req/s.
    by_scope = model.print_ceilings(model.direct_scenario("credit", "credit"))
    assert by_scope["key"] == 250 and by_scope["account"] == 250


def test_the_simulation_writes_what_the_model_derives(proxy_environment) -> None:
    # Given the model's per-request writes for a credit key today, when the simulation builds its admission and
    # settle transactions, then they have as many items and as many WCU (table and GSI) per transaction.
    scenario = model.direct_scenario("credit", "credit")
    sent: list[sim.Tx] = []
    simulation = sim.Simulation(sim.Config(rate=1, design="direct"))
    simulation.send = sent.append
    request = sim.Request(0, 0.0, simulation.instances[0], 1.0, 700, minute=0)
    simulation.admit_direct(request)
    simulation.settle_direct(request)
    for step, tx in zip(("admit", "settle"), sent, strict=True):
        writes = [w for w in scenario.writes if w.step == step]
        assert len(tx.items) + len(tx.unique) == len(writes)
        assert len(tx.indexes) == sum(len(w.indexes) for w in writes)
        assert sim.tx_wcu(tx) == sum(w.wcu for w in writes) + sum(i.wcu for w in writes for i in w.indexes)


def test_the_simulated_key_shards_write_what_the_model_derives(proxy_environment) -> None:
    # Given the model's key-shard writes (shard design K4-K6), when the simulation builds a shard admission, a
    # refill (with a sync) and a shard settle, then they have as many items and WCU (table and GSI) per
    # transaction; the refill also carries the request's reservation, which the model counts in the admission.
    scenario = model.shard_scenario(model.direct_scenario("credit", "credit"), 79, 256)
    sent: list[sim.Tx] = []
    simulation = sim.Simulation(sim.Config(rate=1, **sim.SHARDS))
    simulation.send = sent.append
    request = sim.Request(0, 0.0, simulation.instances[0], 1.0, 700, minute=0)
    simulation.shard_admit(request, 3, None)
    simulation.refill_shard(request, 3, {"minute": 0, "spent": 5_000, "slice": 4, "requests_left": 0,
                                         "refilled_at": -1.0}, fresh=True, attempt=0)  # fmt: skip
    request.on_shard = 3
    simulation.settle_on_shard(request)
    reservation = [w for w in scenario.writes if w.step == "admit (shard)" and w.table == "ReservationsTable"]
    expected = {
        "admit (shard)": [w for w in scenario.writes if w.step == "admit (shard)"],
        "refill": [w for w in scenario.writes if w.step == "refill"] + reservation,
        "settle (shard)": [w for w in scenario.writes if w.step == "settle (shard)"],
    }
    for (step, writes), tx in zip(expected.items(), sent, strict=True):
        assert len(tx.items) + len(tx.unique) == len(writes), step
        assert len(tx.indexes) == sum(len(w.indexes) for w in writes), step
        assert sim.tx_wcu(tx) == sum(w.wcu for w in writes) + sum(i.wcu for w in writes for i in w.indexes), step


def test_key_shard_ceilings(proxy_environment) -> None:
    # S = 256 and 79 requests per refill: the key item, the balance and the minute counter are written once per
    # refill (2 / 79 WCU per request: ~39,500 req/s); the busiest partitions are the K9 log shards: the day's
    # counter (2 WCU / 16 partition keys: 8,000 req/s per account) and the log GSIs (1 WCU / 16: 16,000).
    by_scope = model.print_ceilings(model.shard_scenario(model.direct_scenario("credit", "credit"), 79, 256))
    assert by_scope["account"] == 8_000 and by_scope["key"] == 16_000
    assert by_scope["platform"] == 32_000  # 64 reservation shards, 2 GSI writes per request


def test_the_lease_registry_grows_the_minute_counter_alike_in_model_and_simulation(proxy_environment) -> None:
    # Given the built design's minute counter holding the ids of 400 live leases, then the model sizes its
    # writes as the simulation charges them (2 WCU per KB: ~14.5 KB, 30 WCU), not 2 WCU.
    built = model.lease_scenario(model.direct_scenario("credit", "credit"), 21)
    minute_writes = [w for w in built.writes if w.step == "take" and w.sort and w.sort.startswith("minute#")]
    assert [w.wcu for w in minute_writes] == [30]
    simulation = sim.Simulation(sim.Config(rate=1, design="lease"))
    simulation.registry[0] = {f"lease-{n}" for n in range(model.LIVE_LEASES)}
    assert simulation.units("minute#0") == minute_writes[0].wcu
    assert simulation.units("minute#1") == sim.TX_ITEM_WCU


def test_instances_follow_littles_law_and_the_built_leases_engage_only_where_an_instance_is_busy() -> None:
    # Little's law: 2,000 req/s of 5 s requests keep 10,000 in flight: 10,000 Lambda environments (one each) or
    # 157 processes of 64. The built policy's EWMA (tau 2 s) seen at back-to-back admissions every d seconds is
    # 0.5 / (1 - exp(-d / 2)): above 2/s only for d < 2 ln(4/3) = 0.575 s.
    assert model.instances_for(2000, 5.0, model.LAMBDA_IN_FLIGHT) == 10_000
    assert model.instances_for(2000, 5.0, model.HOST_IN_FLIGHT) == 157
    assert model.ewma_at_arrival(0.57) > 2 > model.ewma_at_arrival(0.58)
    chat, embeddings = model.WORKLOADS["chat"], model.WORKLOADS["embeddings"]
    assert not model.deployment_row(2000, chat, model.LAMBDA_IN_FLIGHT).engaged
    assert model.deployment_row(2000, chat, model.LAMBDA_IN_FLIGHT).central_writes_per_request == 2
    assert model.deployment_row(2000, embeddings, model.LAMBDA_IN_FLIGHT).engaged
    assert model.deployment_row(2000, chat, model.HOST_IN_FLIGHT).engaged
    # The simulation draws the same durations.
    assert {name: (w.median_seconds, w.sigma) for name, w in model.WORKLOADS.items()} == sim.WORKLOADS
