"""template.yaml: the inference proxy streams through the REST API under the Lambda Web Adapter, least privilege."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, TEMPLATE

RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PROXY: dict[str, Any] = RESOURCES["ProxyFunction"]["Properties"]
GLOBALS: dict[str, Any] = TEMPLATE["Globals"]["Function"]
VARIABLES: dict[str, Any] = PROXY["Environment"]["Variables"]
EVENTS: dict[str, Any] = PROXY["Events"]
API_GATEWAY_BUFFERED_TIMEOUT_MS = 29_000
STREAMING_TIMEOUT_MS = 900_000  # API Gateway's response streaming limit: 15 minutes


def routes() -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]): e["Properties"] for e in EVENTS.values()}


def test_proxy_routes_are_on_the_platform_api_and_stream() -> None:
    # Given the proxy's Api events
    # Then exactly the OpenAI-compatible routes are on the platform's REST API
    assert {event["Type"] for event in EVENTS.values()} == {"Api"}
    served = {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model+}"),
        ("GET", "/v1/key"),
    }
    # And each one's CORS preflight (proxy/cors.py)
    assert set(routes()) == served | {("OPTIONS", path) for _, path in served}
    for props in routes().values():
        assert props["RestApiId"] == {"Ref": "PlatformApi"}
        # And every one is a streaming integration (SAM: response-streaming-invocations, transfer mode STREAM):
        # the adapter writes the streaming format, which a buffered integration cannot read
        assert props["ResponseTransferMode"] == "RESPONSE_STREAM"
    # And a completion may run past API Gateway's 29 s, up to the streaming limit
    chat = routes()[("POST", "/v1/chat/completions")]
    assert API_GATEWAY_BUFFERED_TIMEOUT_MS < chat["TimeoutInMillis"] <= STREAMING_TIMEOUT_MS


def test_platform_api_stays_regional_and_event_driven() -> None:
    # Given the REST API
    api = RESOURCES["PlatformApi"]["Properties"]

    # Then it is the same Regional API, its routes still come from the functions' events
    assert api["EndpointConfiguration"]["Type"] == "REGIONAL"
    assert "DefinitionBody" not in api and "DefinitionUri" not in api


def test_proxy_runs_under_the_lambda_web_adapter() -> None:
    # Given the proxy function
    # Then its handler is the startup script, run by the adapter's wrapper from the arm64 adapter layer
    assert PROXY["CodeUri"] == "functions/proxy/"
    assert PROXY["Handler"] == "run.sh"
    assert VARIABLES["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert VARIABLES["AWS_LWA_INVOKE_MODE"] == "response_stream"
    # The layer is a parameter; empty means the arm64 layer AWS publishes (v0.9.1 = version 25, in the Web
    # Adapter's README), in the stack's partition and region
    adapter = [layer["Fn::If"] for layer in PROXY["Layers"] if isinstance(layer, dict) and "Fn::If" in layer]
    assert len(adapter) == 1
    condition, published, chosen = adapter[0]
    assert TEMPLATE["Conditions"][condition] == {"Fn::Equals": [{"Ref": "LambdaWebAdapterLayerArn"}, ""]}
    assert chosen == {"Ref": "LambdaWebAdapterLayerArn"}
    assert published["Fn::Sub"] == (
        "arn:${AWS::Partition}:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerArm64:25"
    )
    parameter = TEMPLATE["Parameters"]["LambdaWebAdapterLayerArn"]
    assert parameter["Default"] == "" and "LambdaAdapterLayerArm64:25" in parameter["Description"]
    assert re.fullmatch(parameter["AllowedPattern"], "arn:aws-cn:lambda:cn-north-1:041581134020:layer:L:26")
    # And SAM appends it to the global layers: the shared layer stays
    assert {"Ref": "SharedLayer"} in GLOBALS["Layers"]
    # And the runtime is the platform's: Python 3.12 on arm64
    assert PROXY.get("Runtime", GLOBALS["Runtime"]) == "python3.12"
    assert PROXY.get("Architectures", GLOBALS["Architectures"]) == ["arm64"]


def test_readiness_check_and_port_match_the_app() -> None:
    # Given the adapter settings and the startup script
    script = (REPO / "functions" / "proxy" / "run.sh").read_text()

    # Then the readiness check asks a route the app answers 200 without a key or a database
    import asyncio

    from llm_platform.proxy.asgi import create_app

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    path = VARIABLES["AWS_LWA_READINESS_CHECK_PATH"]
    asyncio.run(create_app()({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send))
    assert sent[0]["status"] == 200
    # And the port is the one uvicorn listens on
    assert re.search(r'--port "\$\{AWS_LWA_PORT:-8080\}"', script)
    assert str(VARIABLES.get("AWS_LWA_PORT", "8080")) == "8080"


def test_model_catalog_defaults_to_the_packaged_one() -> None:
    assert VARIABLES["MODEL_CATALOG_FILE"] == ""


def test_no_secrets_in_the_environment() -> None:
    # Given every variable the proxy gets
    merged = {**GLOBALS["Environment"]["Variables"], **VARIABLES}

    # Then none is a credential: provider keys are read from SSM / Secrets Manager at run time
    assert not [name for name in merged if re.search(r"(API_KEY|SECRET|TOKEN|PASSWORD)$", name)]


def test_timeout_memory_and_log_group() -> None:
    # Then a stream can outlive API Gateway's 29 s, and the function logs to its own retained log group
    assert API_GATEWAY_BUFFERED_TIMEOUT_MS / 1000 < PROXY["Timeout"] <= 900
    assert PROXY["Timeout"] * 1000 >= routes()[("POST", "/v1/chat/completions")]["TimeoutInMillis"]
    assert PROXY["MemorySize"] == 512  # README, "Memory size": the CPU per request against the cost of waiting
    log_group_id = PROXY["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = RESOURCES[log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert log_group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}/Proxy"}


def _table(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


EXPECTED_PERMISSIONS: list[tuple[Any, set[str]]] = [
    (_table("ApiKeysTable"), {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"}),
    (_table("SubscriptionsTable"), {"dynamodb:GetItem", "dynamodb:ConditionCheckItem"}),
    # GetItem / BatchGetItem: GET /v1/key reads the balance and the budget counters.
    (_table("AccountsTable"), {"dynamodb:GetItem", "dynamodb:UpdateItem"}),
    (_table("UsageCountersTable"), {"dynamodb:UpdateItem", "dynamodb:BatchGetItem"}),
    (_table("LedgerTable"), {"dynamodb:PutItem"}),
    (_table("RequestLogTable"), {"dynamodb:PutItem"}),
    # Reservation records; a hot key's lease items (put, admitted on and settled into, read and returned).
    (
        _table("ReservationsTable"),
        {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    ),
    (
        {
            "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
            ":parameter/${AWS::StackName}/providers/*"
        },
        {"ssm:GetParameter"},
    ),
    (
        {
            "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
            ":secret:${AWS::StackName}/providers/*"
        },
        {"secretsmanager:GetSecretValue"},
    ),
]


def _statements() -> list[dict[str, Any]]:
    statements = []
    for policy in PROXY["Policies"]:
        assert isinstance(policy, dict) and "Statement" in policy, "only inline statements, no managed policy"
        statements += policy["Statement"]
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_policy_is_least_privilege() -> None:
    # Given the proxy's inline policy
    granted: list[tuple[Any, set[str]]] = []
    for statement in _statements():
        assert statement["Effect"] == "Allow"
        assert set(statement) == {"Effect", "Action", "Resource"}, "no NotAction / NotResource / conditions"
        actions = set(_as_list(statement["Action"]))
        # Then no action is a wildcard
        assert not [action for action in actions if "*" in action]
        for resource in _as_list(statement["Resource"]):
            assert resource != "*"
            granted.append((resource, actions))

    # And each resource gets exactly the actions the proxy needs, nothing else
    merged: list[tuple[Any, set[str]]] = []
    for resource, actions in granted:
        for existing_resource, existing_actions in merged:
            if existing_resource == resource:
                existing_actions |= actions
                break
        else:
            merged.append((resource, set(actions)))
    assert sorted(merged, key=repr) == sorted(EXPECTED_PERMISSIONS, key=repr)


@pytest.mark.parametrize("name", ["ManagementKeysTable", "PaymentEventsTable"])
def test_proxy_cannot_touch_tables_it_does_not_use(name: str) -> None:
    assert not [s for s in _statements() if _table(name) in _as_list(s["Resource"])]


def test_startup_script_execs_uvicorn_on_the_app() -> None:
    # Given the startup script the adapter runs
    path = REPO / "functions" / "proxy" / "run.sh"
    script = path.read_text()

    # Then it is executable and replaces itself with uvicorn serving app:app on loopback only
    assert os.access(path, os.X_OK)
    assert script.startswith("#!/bin/bash\n")
    assert re.search(r"^exec python -m uvicorn app:app\b", script, re.MULTILINE)
    assert "--host 127.0.0.1" in script
    assert "/opt/python" in script  # the shared layer, which the runtime's own bootstrap would have added
    # And it names the C HTTP parser and event loop (a build without them fails instead of running slower)
    assert "--http httptools" in script and "--loop uvloop" in script


def test_startup_script_serves_the_readiness_check(tmp_path: Path) -> None:
    # Given the startup script run as the adapter runs it (the shared layer on the import path)
    import socket
    import subprocess
    import sys

    import httpx

    from local_stack.processes import wait_until_ready

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "AWS_LWA_PORT": str(port),
        "LAMBDA_TASK_ROOT": str(REPO / "functions" / "proxy"),
        "PYTHONPATH": str(REPO / "layers" / "shared"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    log = tmp_path / "proxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", str(REPO / "functions" / "proxy" / "run.sh")], env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            # When the adapter's readiness check asks / Then uvicorn (httptools, uvloop) answers it
            response = wait_until_ready(
                lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).raise_for_status(),
                process,
                what="the proxy under run.sh",
                timeout=30,
                log_path=log,
            )
            assert response.json() == {"status": "ok"}
        finally:
            process.terminate()
            process.wait(timeout=10)


def _requirements(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_proxy_dependencies_ship_with_the_proxy_only() -> None:
    # Given pyproject.toml, the one dependency source
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    # Then the proxy's requirements are its optional group, and the shared layer does not carry them
    assert _requirements(REPO / "functions" / "proxy" / "requirements.txt") == project["optional-dependencies"]["proxy"]
    layer = " ".join(_requirements(REPO / "layers" / "shared" / "requirements.txt"))
    assert "uvicorn" not in layer and "httpx" not in layer


def test_cors_origins_parameter_reaches_the_proxy_only() -> None:
    # Given the CorsAllowedOrigins parameter
    parameter = TEMPLATE["Parameters"]["CorsAllowedOrigins"]
    pattern = re.compile(parameter["AllowedPattern"])

    # Then it defaults to no CORS, takes exact origins only (no wildcard, no path), comma-separated
    assert parameter["Type"] == "String" and parameter["Default"] == ""
    for accepted in ("", "https://app.example.com", "https://a.example.com,http://localhost:5173"):
        assert pattern.fullmatch(accepted), accepted
    for refused in (
        "*",
        "https://*.example.com",
        "https://app.example.com/",
        "app.example.com",
        "https://a.com, https://b.com",
    ):
        assert not pattern.fullmatch(refused), refused
    # And the proxy alone reads it (the management functions must send no CORS headers)
    assert VARIABLES["CORS_ALLOWED_ORIGINS"] == {"Ref": "CorsAllowedOrigins"}
    assert "CORS_ALLOWED_ORIGINS" not in GLOBALS["Environment"]["Variables"]
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] == "AWS::Serverless::Function" and logical_id != "ProxyFunction":
            variables = (resource["Properties"].get("Environment") or {}).get("Variables") or {}
            assert "CORS_ALLOWED_ORIGINS" not in variables, logical_id


def test_only_the_v1_routes_answer_preflights() -> None:
    # Given every Api event of every function, and the REST API itself
    api = RESOURCES["PlatformApi"]["Properties"]
    options = {
        (logical_id, event["Properties"]["Path"])
        for logical_id, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "Api" and event["Properties"]["Method"].lower() == "options"
    }

    # Then OPTIONS exists only on the proxy's /v1 routes, and reaches the proxy (no mock integration of the
    # API's Cors setting, which would cover the management API too and answer without the origin check)
    assert options == {("ProxyFunction", path) for method, path in routes() if method == "OPTIONS"}
    assert "Cors" not in api and "Cors" not in (TEMPLATE["Globals"].get("Api") or {})
    # And each preflight is a streaming integration, like every route of the adapter's function
    for (method, _), props in routes().items():
        if method == "OPTIONS":
            assert props["ResponseTransferMode"] == "RESPONSE_STREAM" and "Auth" not in props
