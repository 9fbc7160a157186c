"""The hot-account simulation's core invariants (bench/hot_account_sim.py): its limiter is exact, its
conflicts are real overlaps, its partitions throttle, and a seed fixes every figure."""

from __future__ import annotations

from collections import defaultdict

import pytest

from bench import hot_account_sim as sim

TUNED = sim.VARIANTS["lease (tuned)"]
BUILT = sim.VARIANTS["lease (as built)"]
DESIGNS = [{"design": "direct"}, BUILT, TUNED]


def run(**settings) -> sim.Simulation:
    return sim.Simulation(sim.Config(**{"seconds": 3.0, "warmup": 1.0, **settings})).run()


def test_a_seed_fixes_every_figure() -> None:
    first, again = run(rate=300, seed=7, **TUNED).figures(), run(rate=300, seed=7, **TUNED).figures()
    other = run(rate=300, seed=8, **TUNED).figures()
    assert first == again
    assert first != other


@pytest.mark.parametrize("design", DESIGNS, ids=["direct", "built", "tuned"])
def test_the_limiter_never_admits_over_rpm(design) -> None:
    # Given an RPM of 1.5 s of traffic in a 3 s run, when requests keep coming, then no minute admits more than
    # the RPM, requests are refused, and the central minute counter never passes the RPM either.
    simulation = run(rate=300, rpm=450, **design)
    assert max(simulation.admitted_per_minute.values()) <= 450
    assert max(simulation.minute_counter.values()) <= 450
    assert simulation.counts["refused"] > 0


@pytest.mark.parametrize("design", DESIGNS, ids=["direct", "built", "tuned"])
def test_spend_stays_within_the_balance_and_every_micro_dollar_is_accounted(design) -> None:
    # Given a balance of 1 s of reservations, when it runs out, then spend never passes it (by more than one
    # request's reservation) and, once every request is settled and every lease returned, balance + spend =
    # the budget exactly: nothing stays in a lease, nothing is counted twice.
    budget = 300 * 1_500
    simulation = run(rate=300, balance_micros=budget, **design)
    assert simulation.counts["refused"] > 0
    assert simulation.spend <= budget + simulation.c.reserve_micros
    assert simulation.balance >= 0
    assert simulation.balance + simulation.spend == budget
    assert all(lease.returned and lease.money_left == 0 for lease in simulation.leases)


def test_conflicts_happen_only_on_overlapping_transactions() -> None:
    # Given enough load on one key that transactions collide, then every TransactionConflict met a transaction
    # holding that item at that moment, and no two committed transactions ever held one item at once.
    simulation = run(rate=400, design="direct", trace=True)
    assert simulation.conflict_log
    for _, arrival, held_from, held_until in simulation.conflict_log:
        assert held_from <= arrival < held_until
    holds = defaultdict(list)
    for item, held_from, held_until in simulation.hold_log:
        holds[item].append((held_from, held_until))
    for spans in holds.values():
        spans.sort()
        assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))


def test_conflicts_grow_with_load_on_one_item() -> None:
    # Two requests a second leave the key's items idle ~98% of the time: few conflicts; 400 a second keep them
    # busy: several conflicts per request (they come from overlaps alone).
    quiet, busy = run(rate=2, design="direct", seconds=30.0), run(rate=400, design="direct")
    assert quiet.counts["conflicts"] / len(quiet.requests) < 0.1
    assert busy.counts["conflicts"] / len(busy.requests) > 10 * quiet.counts["conflicts"] / len(quiet.requests)


def test_a_partition_never_serves_more_than_its_limit() -> None:
    # Given leases whose settles all write one daily counter partition and unsharded log indexes (2 WCU and
    # 1 WCU per request) at 1,500 req/s, then they throttle, and what a partition commits stays within
    # 1,000 WCU/s plus the one second of burst its bucket holds.
    simulation = run(rate=1500, **{**TUNED, "daily_in_return": False, "index_shards": 1})
    figures = simulation.figures()
    window = simulation.c.seconds - simulation.c.warmup
    assert simulation.counts["throttles"] > 0
    assert figures["hottest partition WCU/s"] <= sim.PARTITION_WCU * (1 + 1 / window)
    assert all(tokens >= 0 for tokens, _ in simulation.buckets.values())
