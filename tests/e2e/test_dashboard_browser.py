"""The customer dashboard in a real browser (headless Debian chromium through playwright-core) on the real
local stack, `python -m local_stack` as `make dev` runs it: sign up by email code (and a new code), top up by
card and USDC (wallets bound from a browser wallet and by a pasted signature), subscribe with credits (the
Overview says when the keyless subscription's budget resets) and by card through Checkout, API keys (credit
and subscription; secret once, Copy, disable, limits, rotate, delete) used with curl on /v1, the quick-start
snippets run as copied, usage in the chart, management keys, cancel, failed requests shown in words, sign
out. tests/e2e/browser/dashboard.mjs holds the steps; screenshots of every page land in .local/screenshots/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.template import api_routes, load_template
from tests.support.stacks import local_stack_process

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "functions" / "dashboard" / "site"
SCREENSHOTS = REPO / ".local" / "screenshots"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    state_dir = tmp_path_factory.mktemp("dashboard-state")
    with local_stack_process(state_dir) as (_, info):
        yield {**info, "file": state_dir / "stack.json"}


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
    assert findings["signedUp"].endswith("@example.com") and findings["requests"] == 5
    assert findings["snippetsRun"] == ["curl", "Python"]
    for page in (
        "01-sign-in",
        "03-billing-wallet-pasted-signature",
        "03-billing-subscribed-credits",
        "03-overview-subscription-without-keys",
        "03-billing-subscribed",
        "04-key-created",
        "05-api-keys",
        "06-usage",
        "08-management-keys",
        "09-overview",
        "10-billing",
        "10-keys-subscriptions-failed",
        "10-usage-keys-failed",
        "12-sign-in-new-code",
    ):
        assert (SCREENSHOTS / f"{page}.png").stat().st_size > 10_000, page
