"""The limits in front of the API, as the template declares them, applied by the local gateway.

- WAF rate-based rules (AWS::WAFv2::WebACL): per client IP or per header value (the Authorization header),
  among the requests a rule's scope-down statement matches, at most ``limit`` in any ``window`` seconds; a
  client over it gets the rule's custom response (429 in the platform's error format) until its rate falls.
- API Gateway method throttles (MethodSettings): a token bucket (rate per second, burst) per method setting,
  shared by every client; the most specific setting for the route wins, as on API Gateway.

LOCAL_RATE_LIMIT_SCALE multiplies every number (default 1, the template's own); the test session's stack
scales them up, since the whole suite fires its bursts from 127.0.0.1 through one gateway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from local_stack.template import MethodThrottle, RateRule, method_throttles, rate_rules

Clock = Callable[[], float]


@dataclass(frozen=True)
class RequestFacts:
    """What WAF and the throttles look at: the client's IP, the path, the method and the headers."""

    client_ip: str
    path: str
    method: str
    headers: Mapping[str, str]  # lower-case names


def _transform(value: str, transformations: list[dict[str, Any]]) -> str:
    for transformation in sorted(transformations or [], key=lambda t: int(t.get("Priority", 0))):
        kind = transformation.get("Type")
        if kind == "LOWERCASE":
            value = value.lower()
        elif kind != "NONE":
            raise ValueError(f"text transformation {kind} does not run locally")
    return value


def _field(field: Mapping[str, Any], request: RequestFacts) -> str | None:
    if "UriPath" in field:
        return request.path
    if "SingleHeader" in field:
        return request.headers.get(str(field["SingleHeader"]["Name"]).lower())
    raise ValueError(f"FieldToMatch {sorted(field)} does not run locally")


_POSITIONS: dict[str, Callable[[str, str], bool]] = {
    "EXACTLY": lambda value, search: value == search,
    "STARTS_WITH": lambda value, search: value.startswith(search),
    "ENDS_WITH": lambda value, search: value.endswith(search),
    "CONTAINS": lambda value, search: search in value,
}


def matches(statement: Mapping[str, Any] | None, request: RequestFacts) -> bool:
    """Whether a WAF statement matches the request (None, no scope-down: every request)."""
    if statement is None:
        return True
    if byte_match := statement.get("ByteMatchStatement"):
        value = _field(byte_match["FieldToMatch"], request)
        if value is None:  # a missing header matches nothing
            return False
        position = _POSITIONS.get(byte_match["PositionalConstraint"])
        if position is None:
            raise ValueError(f"PositionalConstraint {byte_match['PositionalConstraint']} does not run locally")
        return position(_transform(value, byte_match.get("TextTransformations")), str(byte_match["SearchString"]))
    if negated := statement.get("NotStatement"):
        return not matches(negated["Statement"], request)
    if both := statement.get("AndStatement"):
        return all(matches(inner, request) for inner in both["Statements"])
    if either := statement.get("OrStatement"):
        return any(matches(inner, request) for inner in either["Statements"])
    raise ValueError(f"WAF statement {sorted(statement)} does not run locally")


_PROBE = RequestFacts("127.0.0.1", "/", "GET", {})


class RateLimiter:
    """The WAF rules (per client) and the method throttles (per method setting), thread-safe."""

    def __init__(
        self,
        rules: list[RateRule],
        throttles: list[MethodThrottle],
        scale: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        for rule in rules:
            matches(rule.scope_down, _PROBE)  # an unsupported statement fails at start, not on a request
        self.rules = rules
        self.throttles = throttles
        self.scale = scale
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, tuple[str, ...]], deque[float]] = {}
        self._buckets: dict[MethodThrottle, tuple[float, float]] = {}  # tokens, refilled at

    @classmethod
    def from_template(cls, template: dict[str, Any], scale: float = 1.0, clock: Clock = time.monotonic) -> RateLimiter:
        return cls(rate_rules(template), method_throttles(template), scale, clock)

    def waf_block(self, request: RequestFacts) -> RateRule | None:
        """Count the request against every rule whose scope it is in; the first rule it is over, if any."""
        now = self._clock()
        with self._lock:
            for rule in self.rules:
                if not matches(rule.scope_down, request):
                    continue
                if rule.key_headers:
                    values = tuple(request.headers.get(name) for name in rule.key_headers)
                    if any(value is None for value in values):
                        continue  # WAF does not count a request missing an aggregation key
                    key = tuple(str(value) for value in values)
                else:
                    key = (request.client_ip,)
                seen = self._seen.setdefault((rule.name, key), deque())
                while seen and seen[0] <= now - rule.window_seconds:
                    seen.popleft()
                seen.append(now)
                if len(seen) > max(1, int(rule.limit * self.scale)):
                    return rule  # a blocking rule ends WAF's evaluation: later rules do not count the request
        return None

    def throttled(self, resource_path: str, method: str) -> bool:
        """Take a token from the most specific throttle of the route; True when its bucket is empty."""
        throttle = self._throttle_for(resource_path, method)
        if throttle is None:
            return False
        rate, burst = throttle.rate * self.scale, max(1.0, throttle.burst * self.scale)
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(throttle, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens < 1:
                self._buckets[throttle] = (tokens, now)
                return True
            self._buckets[throttle] = (tokens - 1, now)
            return False

    def _throttle_for(self, resource_path: str, method: str) -> MethodThrottle | None:
        candidates = [
            t
            for t in self.throttles
            if t.resource_path in (resource_path, "*") and t.http_method in (method.upper(), "*")
        ]
        return max(candidates, key=lambda t: (t.resource_path != "*", t.http_method != "*"), default=None)
