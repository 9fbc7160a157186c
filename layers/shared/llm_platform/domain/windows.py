"""Time windows of the limits: per-key minutes (RPM/TPM) and a subscription's 5-hour budget windows,
consecutive and anchored at the subscription's start (spend resets at each boundary)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from llm_platform.catalog import load
from llm_platform.core.clock import from_iso


def budget_window_hours() -> int:
    return load("plans.json")["budgetWindowHours"]


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    start: datetime
    end: datetime


def minute_window(now: datetime) -> Window:
    index = int(now.timestamp()) // 60
    start = datetime.fromtimestamp(index * 60, tz=now.tzinfo)
    return Window(index, start, start + timedelta(minutes=1))


def budget_window(anchor_iso: str, now: datetime, hours: int) -> Window:
    anchor = from_iso(anchor_iso)
    length = timedelta(hours=hours)
    index = max(0, (now - anchor) // length)
    start = anchor + index * length
    return Window(index, start, start + length)


def budget_period(reset: str, now: datetime) -> Window:
    """The calendar period (UTC) a credit key's ``maxBudget`` spend is counted in: the day, the ISO
    week (from Monday) or the month that contains ``now``. ``index`` is the period's start as YYYYMMDD."""
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if reset == "daily":
        start, end = day, day + timedelta(days=1)
    elif reset == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif reset == "monthly":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    else:
        raise ValueError(f"unknown budget reset {reset!r}")
    return Window(int(start.strftime("%Y%m%d")), start, end)
