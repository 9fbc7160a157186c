"""When an instance starts leasing a key (proxy/leases.py): only a sustained rate above the policy's
threshold makes a key hot; quiet keys and bursts keep the direct path."""

from __future__ import annotations

from llm_platform.proxy.leases import KeyRate, LeasePolicy

POLICY = LeasePolicy()  # 2 admissions/s, sustained 5 s


def _hot_after(times: list[float]) -> list[bool]:
    rates = KeyRate()
    return [POLICY.hot(*rates.observe("key", moment, POLICY.min_rate)) for moment in times]


def test_a_quiet_key_is_never_leased() -> None:
    # Given one request a second for five minutes, then it is never hot
    assert not any(_hot_after([float(second) for second in range(300)]))


def test_a_burst_is_not_a_hot_key() -> None:
    # Given 50 requests within half a second (a burst of a small account), then none of them is leased
    assert not any(_hot_after([index / 100 for index in range(50)]))


def test_a_sustained_rate_above_the_threshold_is_leased_after_the_warm_up() -> None:
    # Given 5 requests a second, then the key becomes hot once it has been warm for 5 s, and stays hot
    hot = _hot_after([index / 5 for index in range(60)])
    first = hot.index(True)
    assert 5 * 5 <= first <= 7 * 5 and all(hot[first:])


def test_a_key_that_cooled_down_must_warm_up_again() -> None:
    rates = KeyRate()
    for index in range(60):
        rates.observe("key", index / 5, POLICY.min_rate)
    # After a minute of silence, a new burst is not hot at once
    assert not POLICY.hot(*rates.observe("key", 72.0, POLICY.min_rate))


def test_a_key_that_was_busy_below_the_threshold_still_warms_up_above_it() -> None:
    # Given a minute at one request a second (seen long ago, never above the threshold)
    steady = [float(second) for second in range(60)]
    # When it rises to five a second, then it is hot only after 5 s above the threshold, not at once
    rising = [60 + index / 5 for index in range(50)]
    hot = _hot_after(steady + rising)
    first = hot.index(True)
    assert not any(hot[:60]) and rising[first - 60] - 60 >= POLICY.warmup_seconds


def test_leases_can_be_turned_off() -> None:
    assert not LeasePolicy(enabled=False).hot(1_000.0, 3_600.0)
