"""Unit tier: handlers and domain on moto, with the tables of template.yaml (schema cannot drift)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_stack.template import function_environment, load_template, table_definitions
from tests.support.lambda_events import FakeContext, api_event  # noqa: F401 - re-exported to the unit tests

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(REPO / "template.yaml")
SIGN_IN_SENDER = "no-reply@platform.example"


def _reset_caches() -> None:
    from llm_platform.config import get_settings
    from llm_platform.data import chain
    from llm_platform.data.dynamo import client

    get_settings.cache_clear()
    client.cache_clear()
    chain._client.cache_clear()


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Fresh moto DynamoDB with every table of template.yaml; env wired as on AWS."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.delenv("DYNAMODB_ENDPOINT_URL", raising=False)
    # A local stack started earlier in the session exports its chain and Stripe; units start from the defaults.
    local_settings = (
        "USDC_",
        "WALLET_CHALLENGE_",
        "STRIPE_",
        "CHECKOUT_",
        "MAIL_",
        "SESSION_",
        "SIGN_IN_",
        "DASHBOARD_",
    )
    for name in [n for n in os.environ if n.startswith(local_settings)]:
        monkeypatch.delenv(name)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        names = {}
        for logical_id, definition in table_definitions(TEMPLATE).items():
            dynamodb.create_table(**definition["create"])
            names[logical_id] = definition["create"]["TableName"]
        any_function = next(
            iter(r for r, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::Serverless::Function")
        )
        for name, value in function_environment(TEMPLATE, any_function, names).items():
            monkeypatch.setenv(name, value)
        # Sign-in codes go out through (moto's) SES from a verified sender, as on AWS.
        boto3.client("ses").verify_email_identity(EmailAddress=SIGN_IN_SENDER)
        monkeypatch.setenv("SIGN_IN_EMAIL_SENDER", SIGN_IN_SENDER)
        _reset_caches()
        yield names
    _reset_caches()


@pytest.fixture
def invoke() -> Callable[..., tuple[int, dict[str, Any]]]:
    """Call a function's handler in-process: ``invoke("list_keys", "GET", "/api/keys", key=mk)``."""
    import importlib.util

    loaded: dict[str, Any] = {}

    def _invoke(function: str, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        if function not in loaded:
            spec = importlib.util.spec_from_file_location(
                f"fn_{function}", REPO / "functions" / function / "handler.py"
            )
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[function] = module
        response = loaded[function].lambda_handler(api_event(method, path, **kwargs), FakeContext())
        return response["statusCode"], json.loads(response["body"])

    return _invoke


@pytest.fixture
def account(tables: dict[str, str]):
    """Given an account with its first management key."""
    from llm_platform.domain.accounts import create_account

    return create_account("acme")
