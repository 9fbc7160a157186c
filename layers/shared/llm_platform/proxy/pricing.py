"""Costs in integer micro-dollars. Prices are held as micro-dollars per 1M tokens, so a request's
cost is ``ceil(tokens * price / 1e6)``: rounding always goes to the platform, never below a micro."""

from __future__ import annotations

from decimal import Decimal

MILLION = 1_000_000


def per_million_micros(usd_per_million_tokens: Decimal) -> int:
    micros = usd_per_million_tokens * MILLION
    if micros != micros.to_integral_value() or micros < 0:
        raise ValueError(f"price {usd_per_million_tokens} must be non-negative with at most 6 decimals")
    return int(micros)


def cost_micros(input_tokens: int, output_tokens: int, input_price: int, output_price: int) -> int:
    total = input_tokens * input_price + output_tokens * output_price
    return -(-total // MILLION)  # ceiling division


def input_token_estimate(content_bytes: int, message_count: int) -> int:
    """Prompt tokens to reserve for: one per 3 UTF-8 bytes of message text (English averages ~4 bytes a
    token, CJK ~3) plus chat framing. Reserved, then replaced by the upstream's real count at settle."""
    return -(-content_bytes // 3) + 4 * message_count + 8


def estimate_tokens(text: str) -> int:
    """Local count for streams that end without upstream usage (~4 characters a token, at least 1)."""
    return max(1, -(-len(text) // 4)) if text else 0
