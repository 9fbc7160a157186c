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


def input_token_bound(body_bytes: int, message_count: int, media_tokens: int) -> int:
    """An upper bound on prompt tokens, for reserving money: a byte-level BPE token covers at least one
    byte, and the whole body (messages, tools, schemas) is counted, plus chat framing and the declared
    token cost of each image or audio part. A request cannot cost more than it reserved."""
    return body_bytes + 4 * message_count + 8 + media_tokens


def input_token_estimate(text_bytes: int, message_count: int, media_tokens: int) -> int:
    """A realistic prompt size, for TPM: ~1 token per 3 UTF-8 bytes of text (English averages ~4, CJK
    ~3) plus framing and media. TPM is a pace, not money: settle corrects it to the real count."""
    return -(-text_bytes // 3) + 4 * message_count + 8 + media_tokens


def default_output_cap(model_default: int, tpm: int, prompt_tokens: int, n: int, prediction_tokens: int) -> int:
    """The output cap of a request that names none: the model's default, lowered to what the key's TPM
    leaves after the prompt's estimate (for each of the ``n`` choices), since a request reserving more
    tokens than the key's TPM is refused. So a key whose TPM is below a model's default (the standard
    plan's 3,333 against a 4,096 default) still answers requests sent without ``max_tokens``, each cut
    at the most that key could use in a minute. When not even one output token fits, the model's
    default stands and admission refuses the request as too large for the key."""
    room = (tpm - prompt_tokens) // n - prediction_tokens
    return min(model_default, room) if room >= 1 else model_default


def estimate_tokens(text: str) -> int:
    """Local count for streams that end without upstream usage (~4 characters a token, at least 1)."""
    return max(1, -(-len(text) // 4)) if text else 0
