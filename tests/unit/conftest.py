"""Unit tier: handlers and domain on moto, with the tables of template.yaml (schema cannot drift)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_stack.template import function_environment, load_template, table_definitions

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(REPO / "template.yaml")


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
    # A local stack started earlier in the session exports its chain; units start from the defaults.
    for name in [n for n in os.environ if n.startswith(("USDC_", "WALLET_CHALLENGE_"))]:
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
        _reset_caches()
        yield names
    _reset_caches()


class FakeContext:
    function_name = "unit"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:unit"
    aws_request_id = "unit-request"
    log_group_name = "/aws/lambda/unit"
    log_stream_name = "unit"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def api_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    body: Any = None,
    key: str | None = None,
    raw: str | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST (v1 proxy) event, as the deployed API sends it."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    text = raw if raw is not None else (None if body is None else json.dumps(body))
    if base64_body and text is not None:
        text = base64.b64encode(text.encode()).decode()
    segments = path.strip("/").split("/")
    template_segments = (resource or path).strip("/").split("/")
    params = {t[1:-1]: s for t, s in zip(template_segments, segments, strict=True) if t.startswith("{")}
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


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
