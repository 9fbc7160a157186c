"""Waiting for a child service (DynamoDB Local, the hardhat node) to become ready."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until_ready(
    probe: Callable[[], T],
    process: subprocess.Popen,
    *,
    what: str,
    timeout: float,
    log_path: Path | None,
    not_ready: tuple[type[BaseException], ...] = (Exception,),
    poll_seconds: float = 0.1,
) -> T:
    """Call ``probe`` until it returns (its value is returned), failing after ``timeout`` seconds or at
    once when ``process`` exits: waiting on the process is the poll interval, so a crash shows at once."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            return probe()
        except not_ready as exc:  # not ready yet
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s ({last_error}); see {log_path}")
        try:
            code = process.wait(timeout=poll_seconds)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"{what} exited with code {code} during startup; see {log_path}")
