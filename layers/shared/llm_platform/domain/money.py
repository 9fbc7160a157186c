"""Money is integer micro-dollars (1 USD = 1_000_000); decimals only at the edges, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MICROS_PER_USD = 1_000_000
_MICRO = Decimal("0.000001")


def usd_to_micros(amount: Decimal | str | int) -> int:
    """Exact conversion; callers validate that ``amount`` has at most 6 decimal places."""
    value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    micros = value * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount} has more than 6 decimal places")
    return int(micros)


def format_usd(micros: int) -> str:
    """``25000000`` → ``"25.00"``; keeps sub-cent precision when there is some (``"0.000123"``)."""
    value = (Decimal(micros) / MICROS_PER_USD).quantize(_MICRO, rounding=ROUND_HALF_EVEN)
    text = f"{value:.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"
