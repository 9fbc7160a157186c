"""Fixtures shared by the integration and e2e tiers: one DynamoDB Local JVM and one local stack
(the gateway over real HTTP, the built-in upstream) per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_stack.dynamodb_local import DynamoDBLocal, client
from local_stack.stack import LocalStack, StackInfo

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as ddb_local:
        yield ddb_local


@pytest.fixture(scope="session")
def local_stack(dynamodb_local: DynamoDBLocal) -> Iterator[StackInfo]:
    """The stack from template.yaml on a free port: .api_url, .dynamodb_url, .demo_management_key.

    Its per-client limits (the template's WAF rules) are scaled up 1000 times: the whole suite fires its bursts
    from 127.0.0.1 through this one gateway. tests/unit/local/test_local_stack_limits.py tests them as declared."""
    stack = LocalStack(REPO_ROOT / "template.yaml", port=0, dynamodb=dynamodb_local, rate_limit_scale=1000)
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture
def ddb(dynamodb_local: DynamoDBLocal) -> Any:
    """A boto3 DynamoDB client on the session's DynamoDB Local (the one local_stack uses)."""
    return client(dynamodb_local.endpoint_url)
