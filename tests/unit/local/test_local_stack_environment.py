"""local_stack.stack.stack_environment: the functions' template environment, plus local endpoints."""

from __future__ import annotations

import pytest

from local_stack.stack import stack_environment
from local_stack.template import loads_template

TEMPLATE = """
Globals:
  Function:
    Environment:
      Variables:
        KEYS_TABLE: !Ref KeysTable
Resources:
  KeysTable:
    Type: AWS::DynamoDB::Table
  ProxyFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: run.sh
      Environment:
        Variables:
          AWS_LAMBDA_EXEC_WRAPPER: /opt/bootstrap
          AWS_LWA_INVOKE_MODE: response_stream
          MODEL_CATALOG_FILE: ""
"""


def test_web_adapter_function_environment_is_part_of_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no catalog override in the developer's environment
    monkeypatch.delenv("MODEL_CATALOG_FILE", raising=False)

    # When the stack environment is derived
    env = stack_environment(loads_template(TEMPLATE), {"KeysTable": "KeysTable"}, "http://127.0.0.1:8000")

    # Then the proxy's variables are there like any function's, the empty default included
    assert env["KEYS_TABLE"] == "KeysTable"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["MODEL_CATALOG_FILE"] == ""
    assert env["DYNAMODB_ENDPOINT_URL"] == "http://127.0.0.1:8000"


def test_exported_value_wins_over_an_empty_template_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the developer exported a catalog file, and the template leaves it empty
    monkeypatch.setenv("MODEL_CATALOG_FILE", "/tmp/models.json")
    monkeypatch.setenv("KEYS_TABLE", "someone-elses-table")

    # When the stack environment is derived
    env = stack_environment(loads_template(TEMPLATE), {"KeysTable": "KeysTable"}, "http://127.0.0.1:8000")

    # Then the exported value is kept (not overwritten with ""), while set template values still win
    assert "MODEL_CATALOG_FILE" not in env
    assert env["KEYS_TABLE"] == "KeysTable"
