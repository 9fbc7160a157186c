"""The limits template.yaml declares in front of the API (its WAF web ACL's rate-based rules, its method
throttles), applied by the local gateway over real HTTP.

Each test serves echo handlers at the platform's paths behind the real template's web ACL and API settings,
with the numbers the test needs put in the parameters' defaults (the gateway reads the defaults, as a plain
deploy gets them).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from local_stack.gateway import build_gateway
from local_stack.limits import RateLimiter, RequestFacts
from local_stack.server_thread import ServerThread
from local_stack.template import load_template, method_throttles, rate_rules

REPO_ROOT = Path(__file__).resolve().parents[3]

ECHO_HANDLER = """
import json


def lambda_handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"path": event["path"]})}
"""

ROUTES = {
    "V1Key": ("/v1/key", "get"),
    "Keys": ("/api/keys", "get"),
    "SignIn": ("/api/auth/email/start", "post"),
    "Webhook": ("/api/billing/webhook", "post"),
}


def _template(tmp_path: Path, defaults: dict[str, float]) -> Path:
    """The real template's parameters, web ACL and API (with ``defaults`` changed), over echo handlers."""
    real = load_template(REPO_ROOT / "template.yaml")
    parameters = real["Parameters"]
    for name, value in defaults.items():
        parameters[name]["Default"] = value
    api = real["Resources"]["PlatformApi"]
    resources: dict[str, Any] = {
        "PlatformApi": {
            "Type": api["Type"],
            "Properties": {key: api["Properties"][key] for key in ("MethodSettings", "GatewayResponses")},
        },
        "PlatformWebAcl": real["Resources"]["PlatformWebAcl"],
        "EchoFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "functions/echo/",
                "Handler": "handler.lambda_handler",
                "Events": {
                    name: {"Type": "Api", "Properties": {"Path": path, "Method": method}}
                    for name, (path, method) in ROUTES.items()
                },
            },
        },
    }
    (tmp_path / "functions" / "echo").mkdir(parents=True)
    (tmp_path / "functions" / "echo" / "handler.py").write_text(textwrap.dedent(ECHO_HANDLER))
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump({"Parameters": parameters, "Resources": resources}))
    return path


@contextmanager
def gateway(tmp_path: Path, **defaults: float) -> Iterator[httpx.Client]:
    server = ServerThread(build_gateway(_template(tmp_path, defaults), {}, rate_limit_scale=1), port=0)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            yield http
    finally:
        server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_over_its_rate_gets_429_while_another_key_is_still_served(tmp_path: Path) -> None:
    # Given at most 5 requests per Authorization header in 5 minutes
    with gateway(tmp_path, WafAuthorizationRequestsPer5Min=5) as http:
        # When one key makes 5 requests, then a sixth
        served = [http.get("/v1/key", headers=bearer("sk_live_a")).status_code for _ in range(5)]
        refused = http.get("/api/keys", headers=bearer("sk_live_a"))
        # Then the first 5 are served and the sixth, on any route, is 429 in the platform's error format
        assert served == [200] * 5
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        # And another key, from the same IP, is still served
        assert http.get("/v1/key", headers=bearer("sk_live_b")).status_code == 200


def test_sign_in_is_limited_per_ip_and_other_routes_are_not(tmp_path: Path) -> None:
    with gateway(tmp_path, WafSignInRequestsPer5Min=3) as http:
        statuses = [http.post("/api/auth/email/start", json={}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert http.get("/api/keys", headers=bearer("mk_x")).status_code == 200


def test_management_key_attempts_are_limited_per_ip_right_or_wrong(tmp_path: Path) -> None:
    # Guessing: every request with a different management key, from one IP
    with gateway(tmp_path, WafManagementAuthRequestsPer5Min=4) as http:
        statuses = [http.get("/api/keys", headers=bearer(f"mk_guess{i}")).status_code for i in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        # An API key is not a management key: not counted by that rule
        assert http.get("/v1/key", headers=bearer("sk_live_a")).status_code == 200


def test_the_stripe_webhook_is_not_limited_per_ip_but_by_its_own_throttle(tmp_path: Path) -> None:
    # Given a per-IP limit of 3 and a webhook throttle with a burst of 5, refilled too slowly to matter here
    limits = {"WafIpRequestsPer5Min": 3, "WebhookThrottleRateLimit": 0.001, "WebhookThrottleBurstLimit": 5}
    with gateway(tmp_path, **limits) as http:
        # When Stripe delivers 5 events at once from one IP: all served (past the per-IP limit)
        assert [http.post("/api/billing/webhook", content=b"{}").status_code for _ in range(5)] == [200] * 5
        # Then the next one at once is throttled by its own bucket (API Gateway's THROTTLED response)
        throttled = http.post("/api/billing/webhook", content=b"{}")
        assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "throttled"
        # And the per-IP rule still applies to every other route
        assert [http.get("/v1/key").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_the_scale_multiplies_every_limit() -> None:
    # The test session's stack runs with the limits scaled up 1000 times
    template = load_template(REPO_ROOT / "template.yaml")
    limiter = RateLimiter.from_template(template, scale=1000, clock=lambda: 0.0)
    facts = RequestFacts("127.0.0.1", "/api/auth/email/start", "POST", {})
    assert not any(limiter.waf_block(facts) for _ in range(100 * 1000))
    assert limiter.waf_block(facts) is not None


def test_the_window_slides() -> None:
    now = [0.0]
    template = load_template(REPO_ROOT / "template.yaml")
    limiter = RateLimiter.from_template(template, clock=lambda: now[0])
    facts = RequestFacts("10.0.0.1", "/api/auth/email/start", "POST", {})
    assert [limiter.waf_block(facts) is None for _ in range(101)] == [True] * 100 + [False]
    now[0] = 301.0  # five minutes later the client is served again
    assert limiter.waf_block(facts) is None


def test_the_template_limits_as_the_local_gateway_reads_them() -> None:
    template = load_template(REPO_ROOT / "template.yaml")
    rules = {rule.name: rule for rule in rate_rules(template)}
    assert {name: (rule.limit, rule.window_seconds, rule.key_headers) for name, rule in rules.items()} == {
        "sign-in-per-ip": (100, 300, ()),
        "management-key-per-ip": (1000, 300, ()),
        "per-ip": (6000, 300, ()),
        "per-authorization": (6000, 300, ("authorization",)),
    }
    assert all(rule.response_code == 429 for rule in rules.values())
    throttles = {(t.resource_path, t.http_method): (t.rate, t.burst) for t in method_throttles(template)}
    assert throttles == {("*", "*"): (500, 1000), ("/api/billing/webhook", "POST"): (50, 100)}


@pytest.mark.parametrize(
    ("path", "headers", "rule"),
    [
        ("/api/auth/email/verify", {}, "sign-in-per-ip"),
        ("/prod/api/auth/logout", {}, "sign-in-per-ip"),  # the execute-api URL carries the stage
        ("/api/keys", {"authorization": "Bearer mk_x"}, "management-key-per-ip"),
        ("/api/keys", {"authorization": "bearer MK_x"}, "management-key-per-ip"),
        ("/v1/key", {}, "per-ip"),
    ],
)
def test_which_rule_blocks_first(path: str, headers: dict[str, str], rule: str) -> None:
    template = load_template(REPO_ROOT / "template.yaml")
    limiter = RateLimiter.from_template(template, scale=0.01, clock=lambda: 0.0)
    facts = RequestFacts("10.0.0.2", path, "GET", headers)
    blocked = [limiter.waf_block(facts) for _ in range(61)]
    assert next(r.name for r in blocked if r is not None) == rule
