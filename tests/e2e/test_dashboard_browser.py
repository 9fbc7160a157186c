"""The customer dashboard in a real browser (headless Debian chromium through playwright-core) on the real
local stack, `python -m local_stack` as `make dev` runs it: sign up by email code, top up and subscribe by
card through Checkout, API keys (secret once, Copy, disable, limits, rotate, delete) used with curl on /v1,
usage in the chart, management keys, cancel, sign out. tests/e2e/browser/dashboard.mjs holds the steps;
screenshots of every page land in .local/screenshots/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.template import api_routes, load_template

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "functions" / "dashboard" / "site"
SCREENSHOTS = REPO / ".local" / "screenshots"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    state_dir = tmp_path_factory.mktemp("dashboard-state")
    env = {**os.environ, "PORT": str(_free_port()), "LOCAL_STACK_STATE_DIR": str(state_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + 120
    while not stack_file.exists():  # readiness: the stack writes this file once it serves
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "local stack did not become ready in 120 s"
        time.sleep(0.2)
    yield {**json.loads(stack_file.read_text()), "file": stack_file}
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def test_the_built_site_is_exactly_the_files_the_template_routes() -> None:
    # Given the site `make dashboard` built and the DashboardFunction's routes in template.yaml
    built = {
        "/" if p.name == "index.html" else "/" + p.relative_to(SITE).as_posix() for p in SITE.rglob("*") if p.is_file()
    }
    routed = {r.path for r in api_routes(load_template(REPO / "template.yaml")) if r.function_id == "DashboardFunction"}
    # Then every built file has its route and every route its file (sam deploy serves what make builds)
    assert built == routed, f"built {sorted(built)} != routed {sorted(routed)}"


def test_a_new_customer_uses_the_whole_dashboard_in_a_browser(stack) -> None:
    result = subprocess.run(
        ["node", str(REPO / "tests" / "e2e" / "browser" / "dashboard.mjs"), str(stack["file"]), str(SCREENSHOTS)],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + f"\n(screenshots in {SCREENSHOTS})"
    findings = json.loads(result.stdout.splitlines()[-1])
    assert findings["signedUp"].endswith("@example.com") and findings["requests"] == 4
    for page in (
        "01-sign-in",
        "03-billing-subscribed",
        "04-key-created",
        "05-api-keys",
        "06-usage",
        "08-management-keys",
        "09-overview",
        "10-billing",
    ):
        assert (SCREENSHOTS / f"{page}.png").stat().st_size > 10_000, page
