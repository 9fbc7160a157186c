"""Pure domain pieces: secrets, money, windows, plans."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llm_platform.domain.billing import add_months
from llm_platform.domain.credentials import API_KEY_PREFIX, MANAGEMENT_KEY_PREFIX, bearer_token, issue_secret, new_id
from llm_platform.domain.errors import BadRequest
from llm_platform.domain.money import format_usd, usd_to_micros
from llm_platform.domain.plans import catalog
from llm_platform.domain.windows import budget_window, minute_window


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer mk_abc", "mk_abc"),
        ("  bearer   sk_live_x  ", "sk_live_x"),
        ("BEARER t", "t"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic dXNlcjpwdw==", None),
        ("mk_abc", None),
    ],
)
def test_one_bearer_parser_reads_the_token_or_nothing(header, token) -> None:
    # The management API and the proxy both read the header through this parser
    assert bearer_token(header) == token


@pytest.mark.parametrize("prefix", [API_KEY_PREFIX, MANAGEMENT_KEY_PREFIX])
def test_issued_secret_has_256_random_bits_and_stores_only_hash_and_prefix(prefix: str) -> None:
    # When a secret is issued
    secret = issue_secret(prefix)
    # Then it carries the type prefix and 43 url-safe chars (32 bytes from `secrets`)
    assert secret.plaintext.startswith(prefix)
    assert len(secret.plaintext) - len(prefix) == 43
    assert secret.key_hash == hashlib.sha256(secret.plaintext.encode()).hexdigest()
    assert secret.plaintext.startswith(secret.display_prefix)
    assert len(secret.display_prefix) == len(prefix) + 6
    # And its repr never shows the plaintext
    assert secret.plaintext not in repr(secret)


def test_secrets_and_ids_do_not_repeat() -> None:
    assert len({issue_secret(API_KEY_PREFIX).plaintext for _ in range(500)}) == 500
    ids = {new_id("key") for _ in range(500)}
    assert len(ids) == 500
    assert all(i.startswith("key_") and len(i) == 4 + 32 for i in ids)


@pytest.mark.parametrize(
    ("amount", "micros"),
    [(Decimal("25"), 25_000_000), ("0.14", 140_000), (Decimal("0.000001"), 1), (10, 10_000_000)],
)
def test_usd_to_micros_is_exact(amount, micros: int) -> None:
    assert usd_to_micros(amount) == micros


def test_usd_to_micros_refuses_sub_micro_amounts() -> None:
    with pytest.raises(ValueError, match="6 decimal places"):
        usd_to_micros(Decimal("0.0000001"))


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (25_000_000, "25.00"),
        (0, "0.00"),
        (140_000, "0.14"),
        (123, "0.000123"),
        (24_999_874, "24.999874"),
        (-5_000_000, "-5.00"),
    ],
)
def test_format_usd_shows_cents_and_keeps_sub_cent_precision(micros: int, text: str) -> None:
    assert format_usd(micros) == text


def test_budget_windows_are_consecutive_five_hour_periods_anchored_at_start() -> None:
    # Given a subscription that started at 10:17
    anchor = "2026-03-05T10:17:00.000Z"
    start = datetime(2026, 3, 5, 10, 17, tzinfo=UTC)
    # When we are 4h59m in, the first window is current; at exactly 5h the second begins
    first = budget_window(anchor, start + timedelta(hours=4, minutes=59), hours=5)
    second = budget_window(anchor, start + timedelta(hours=5), hours=5)
    assert (first.index, first.start, first.end) == (0, start, start + timedelta(hours=5))
    assert (second.index, second.start) == (1, start + timedelta(hours=5))
    # And a day later the window is the fifth boundary's
    assert budget_window(anchor, start + timedelta(hours=24, minutes=1), hours=5).index == 4


def test_minute_window_aligns_to_the_clock_minute() -> None:
    window = minute_window(datetime(2026, 3, 5, 10, 17, 42, 500, tzinfo=UTC))
    assert window.start == datetime(2026, 3, 5, 10, 17, tzinfo=UTC)
    assert window.end - window.start == timedelta(minutes=1)


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 12, 15, tzinfo=UTC), 1) == datetime(2027, 1, 15, tzinfo=UTC)


def test_plans_are_data_with_the_spec_limits() -> None:
    standard, pro = catalog().plan("standard"), catalog().plan("pro")
    assert (standard.rpm, standard.tpm, standard.price_micros, standard.budget_per_window_micros) == (
        60,
        3333,
        20_000_000,
        140_000,
    )
    assert (pro.rpm, pro.tpm, pro.price_micros, pro.budget_per_window_micros) == (200, 13333, 60_000_000, 420_000)
    with pytest.raises(BadRequest) as refused:
        catalog().plan("enterprise")
    assert refused.value.code == "unknown_plan"
