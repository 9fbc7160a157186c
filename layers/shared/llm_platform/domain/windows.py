"""Time windows of the limits: per-key minutes (RPM/TPM) and a subscription's 5-hour budget windows,
consecutive and anchored at the subscription's start (spend resets at each boundary)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from llm_platform.catalog import load
from llm_platform.domain.clock import from_iso


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
