"""What Lambda hands a handler: an API Gateway REST (v1 proxy) event and a context object."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any


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
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1 proxy) event, as the deployed API sends it (``headers`` replace the
    default Content-Type)."""
    headers = dict(headers) if headers is not None else {"Content-Type": "application/json"}
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
