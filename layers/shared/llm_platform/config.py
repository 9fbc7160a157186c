"""Typed configuration, read once from the environment (set by template.yaml or the local stack)."""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accounts_table: str
    management_keys_table: str
    api_keys_table: str
    subscriptions_table: str
    ledger_table: str
    usage_counters_table: str
    payment_events_table: str
    # Only set locally (DynamoDB Local); on AWS boto3 uses the regional endpoint.
    dynamodb_endpoint_url: str | None = None
    # Request bodies of the management API above this size are refused with 413.
    max_body_bytes: int = 16 * 1024


_ENV = {
    "accounts_table": "ACCOUNTS_TABLE",
    "management_keys_table": "MANAGEMENT_KEYS_TABLE",
    "api_keys_table": "API_KEYS_TABLE",
    "subscriptions_table": "SUBSCRIPTIONS_TABLE",
    "ledger_table": "LEDGER_TABLE",
    "usage_counters_table": "USAGE_COUNTERS_TABLE",
    "payment_events_table": "PAYMENT_EVENTS_TABLE",
    "dynamodb_endpoint_url": "DYNAMODB_ENDPOINT_URL",
    "max_body_bytes": "MAX_BODY_BYTES",
}


@cache
def get_settings() -> Settings:
    """Settings from the environment; a missing table name fails loudly on first use."""
    values = {field: os.environ[env] for field, env in _ENV.items() if os.environ.get(env)}
    return Settings(**values)
