"""`python -m local_stack` as `make dev` runs it, in a process of its own, for the e2e tier."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_stack_process(state_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen, dict[str, Any]]]:
    """The running stack's process and its stack.json, on a free port, with ``env`` added; its output goes
    to ``state_dir/stack.log`` (a pipe nobody reads could fill and stall it). Stopped afterwards."""
    log = (state_dir / "stack.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=REPO,
        env={**os.environ, "PORT": str(free_port()), "LOCAL_STACK_STATE_DIR": str(state_dir), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + 120
    try:
        while not stack_file.exists():  # readiness: the stack writes this file once it serves
            output = (state_dir / "stack.log").read_text()[-3000:]
            assert process.poll() is None, f"the local stack exited:\n{output}"
            assert time.monotonic() < deadline, f"the local stack was not ready in 120 s:\n{output}"
            time.sleep(0.2)
        yield process, json.loads(stack_file.read_text())
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
