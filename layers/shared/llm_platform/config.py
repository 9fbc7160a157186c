"""Typed configuration, read once from the environment (set by template.yaml or the local stack).
A plain dataclass, not pydantic: the proxy imports this on its cold path."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from functools import cache
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    accounts_table: str
    management_keys_table: str
    api_keys_table: str
    subscriptions_table: str
    ledger_table: str
    usage_counters_table: str
    payment_events_table: str
    wallets_table: str
    request_log_table: str
    # Sign-in: one-time codes, sessions and the email -> account mapping (template: AuthTable).
    auth_table: str
    # The open reservation of every admitted /v1 request, until it is settled (template: ReservationsTable).
    reservations_table: str
    # How long the proxy's request log keeps each record (DynamoDB TTL).
    request_log_retention_days: int = 30
    # A request's reservation is the reconciler's once its deadline has passed by the grace: the deadline is
    # this long after admission, pushed out every heartbeat while the request runs, so a request that died
    # (a Lambda stopped mid-request) holds its reservation a few minutes at most; never past the most a
    # request can run (Lambda stops the proxy at 900 s), so no request can hold one for longer than that.
    reservation_deadline_seconds: float = 180
    reservation_heartbeat_seconds: float = 60
    reservation_timeout_seconds: int = 900
    reconcile_grace_seconds: int = 60
    # Leases of hot credit keys (issue 16, proxy/leases.py): off, or the admissions per second of one key on
    # one instance (sustained 5 s) above which the instance takes slices of the key's limits (0: always).
    leases_enabled: bool = True
    lease_min_rate_per_second: int = 2
    # Key shards of hot credit keys on Lambda (issue 16, proxy/shards.py): a key promoted after a
    # TransactionConflict is admitted on shard items shared by every environment. false: the direct path.
    key_shards_enabled: bool = True
    # Only set locally (DynamoDB Local); on AWS boto3 uses the regional endpoint.
    dynamodb_endpoint_url: str | None = None
    # Request bodies of the management API above this size are refused with 413.
    max_body_bytes: int = 16 * 1024
    # Inference request bodies above this size are refused with 413.
    max_proxy_body_bytes: int = 4 * 1024 * 1024
    # Where provider secrets named "ssm:NAME" / "secretsmanager:NAME" in the model catalog live.
    provider_secrets_prefix: str = "/llm-platform/providers/"
    # USDC top-ups: the chain (Base mainnet by default), its USDC contract, the operator's deposit
    # address (unset: USDC top-ups are off), confirmations required, and the RPC URL as a secret reference.
    usdc_chain_id: int = 8453
    usdc_chain_name: str = "base"
    usdc_contract_address: str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    usdc_deposit_address: str | None = None
    usdc_confirmations: int = 10
    usdc_rpc_url_secret: str | None = None
    # How long a wallet-binding challenge can be signed.
    wallet_challenge_ttl_seconds: int = 600
    # Stripe: the secret API key and the webhook signing secret as secret references (unset or missing
    # in SSM: Stripe payments are off), the API base URL (unset: Stripe's own; the local simulator
    # otherwise), and where Checkout sends the customer back ({CHECKOUT_SESSION_ID} is filled by Stripe).
    stripe_secret_key_secret: str | None = None
    stripe_webhook_secret_secret: str | None = None
    stripe_api_base: str | None = None
    checkout_success_url: str | None = None
    checkout_cancel_url: str | None = None
    # How long after a Stripe-paid subscription's period end the expiry job waits for Stripe's webhook
    # (renewed, failed or ended: it comes within seconds) before it asks Stripe's API instead.
    stripe_renewal_grace_seconds: int = 3600
    # The expiry job revokes at most this many keys a run (in transactions of 98), after renewing and expiring
    # every due subscription; what is left is revoked by the next runs (admission already refuses the keys).
    expiry_revocations_per_run: int = 10_000
    # Sign-in by emailed code. The sender (a verified SES identity on AWS); MAIL_OUTBOX_URL instead sends
    # every message to the local stack's outbox (HTTP), so the same handler code runs in both places.
    sign_in_email_sender: str | None = None
    mail_outbox_url: str | None = None
    sign_in_code_ttl_seconds: int = 600  # a code expires after 10 minutes
    sign_in_code_max_tries: int = 5  # wrong tries per code; the next try is refused, even with the right code
    sign_in_codes_per_window: int = 5  # codes sent to one address per window…
    sign_in_code_window_seconds: int = 900  # …of 15 minutes
    session_ttl_seconds: int = 12 * 3600  # a session ends 12 hours after sign-in (at most 24 h)
    # The session cookie's Secure flag: on AWS (https) always; the local stack (plain http) turns it off.
    session_cookie_secure: bool = True
    # Where the dashboard is served, comma-separated (e.g. a custom domain). Empty: the request's own origin
    # (X-Forwarded-Proto + Host), which is the dashboard's, as it is served by the same API.
    dashboard_origin: str | None = None
    # Browser origins allowed to call /v1 across origins (CORS, proxy/cors.py), comma-separated exact origins
    # (scheme://host[:port]). Empty: no CORS headers at all. The management API never sends any (cookies).
    cors_allowed_origins: tuple[str, ...] = ()


class ConfigError(RuntimeError):
    pass


def _parse(kind: object, raw: str) -> object:
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "tuple[str, ...]":
        return _origins(raw)
    if kind == "bool":
        if raw.lower() not in {"true", "false", "1", "0"}:
            raise ConfigError(f"not a boolean: {raw!r}")
        return raw.lower() in {"true", "1"}
    return raw


_ORIGIN = re.compile(r"^https?://[^/\s,*]+$")


def _origins(raw: str) -> tuple[str, ...]:
    """Comma-separated exact origins, as browsers serialize them: lower case, no path, no trailing slash."""
    origins = tuple(part.strip().rstrip("/").lower() for part in raw.split(",") if part.strip())
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ConfigError(f"not an origin (scheme://host[:port]): {origin!r}")
    return origins


@cache
def get_settings() -> Settings:
    """Settings from the environment (``ACCOUNTS_TABLE``, ``MAX_BODY_BYTES``…: the field name in
    upper case); a missing table name fails loudly on first use."""
    values: dict[str, Any] = {}
    for field in fields(Settings):
        raw = os.environ.get(field.name.upper())
        if raw:
            values[field.name] = _parse(field.type, raw)
    try:
        settings = Settings(**values)
    except TypeError as error:
        raise ConfigError(f"missing configuration: {error}") from error
    if not 0 < settings.reservation_heartbeat_seconds < settings.reservation_deadline_seconds:
        raise ConfigError("RESERVATION_HEARTBEAT_SECONDS must be above 0 and below RESERVATION_DEADLINE_SECONDS")
    return settings
