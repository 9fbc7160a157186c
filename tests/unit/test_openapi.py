"""The committed OpenAPI document (openapi.json) is what the code generates, and it describes exactly the
routes of template.yaml. Regenerate it with bin/generate-openapi."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local_stack.template import api_routes, load_template
from openapi_doc.document import build_document, document_path, render

REPO = Path(__file__).resolve().parents[2]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(REPO)


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_committed_document_is_up_to_date(document: dict[str, Any]) -> None:
    committed = document_path(REPO)
    assert committed.exists(), "openapi.json is missing: run bin/generate-openapi and commit it"
    assert committed.read_text(encoding="utf-8") == render(document), (
        "openapi.json is stale (the API changed): run bin/generate-openapi and commit it"
    )


def test_every_template_route_has_an_operation_and_vice_versa(document: dict[str, Any]) -> None:
    routes = {(route.method, route.path) for route in api_routes(load_template(REPO / "template.yaml"))}
    documented = set(_operations(document))
    assert documented - routes == set(), "documented but not routes of template.yaml"
    assert routes - documented == set(), "routes of template.yaml missing from the document"


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_dict(json.loads(render(document)))
    schema.validate()
    assert document["openapi"].startswith("3.")
    operation_ids = [operation["operationId"] for operation in _operations(document).values()]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    schemas = document["components"]["schemas"]
    for name in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert name in schemas, f"$ref to a missing schema {name}"


def test_auth_per_base_path(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["managementKey"]["scheme"] == schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["sessionCookie"] == schemes["sessionCookie"] | {"type": "apiKey", "in": "cookie"}
    for (method, path), operation in _operations(document).items():
        if (method, path) == ("POST", "/api/billing/webhook"):
            assert operation["security"] == [], "Stripe's signature is the webhook's authentication"
            assert any(p["name"] == "Stripe-Signature" for p in operation["parameters"])
        elif path.startswith("/api/auth/"):
            assert operation["security"] == [], "the sign-in routes authenticate nobody"
        elif path.startswith("/api/"):
            assert operation["security"] == [{"managementKey": []}, {"sessionCookie": []}], path
        elif operation["tags"] == ["Dashboard"]:
            # The dashboard's static files: public, the same for everyone, and only GET
            assert method == "GET" and operation["security"] == [], path
            assert path == "/" or path.startswith("/assets/"), path
        elif method == "OPTIONS":
            # CORS preflights: a browser sends them without credentials, and the proxy reads nothing for them
            assert path.startswith("/v1/") and operation["security"] == [], path
        else:
            assert path.startswith("/v1/") and operation["security"] == [{"apiKey": []}], path


def _schema_of(response: dict[str, Any]) -> dict[str, Any]:
    return response["content"]["application/json"]["schema"]


def test_management_errors_use_the_envelope(document: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorResponse"}
    for (method, path), operation in _operations(document).items():
        if not path.startswith("/api/"):
            continue
        responses = operation["responses"]
        for status, response in responses.items():
            if int(status) >= 400:
                assert _schema_of(response) == envelope, f"{method} {path} {status}"
            else:
                # Lists that page carry their cursor beside the data (SPEC 9).
                properties = set(_schema_of(response)["properties"])
                assert properties in ({"data"}, {"data", "nextCursor"}), f"{method} {path} {status}"
        if path.startswith("/api/auth/"):  # nobody is signed in yet: no 401, but foreign origins are 403
            assert {"403", "413", "429"} <= set(responses) and "401" not in responses, f"{method} {path}"
        elif path != "/api/billing/webhook":
            assert {"401", "403", "413", "429"} <= set(responses), f"{method} {path}"
        if "requestBody" in operation and path != "/api/billing/webhook":
            assert {"400", "415", "422"} <= set(responses), f"{method} {path}"
    assert "402" in document["paths"]["/api/billing/subscribe"]["post"]["responses"]
    # Powertools' own validation error shape is never sent (the resolver answers with the envelope).
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_inference_errors_use_openai_shape(document: dict[str, Any]) -> None:
    openai = document["components"]["schemas"]["OpenAIError"]
    assert set(openai["required"]) == {"message", "type", "code", "param"}
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    for status in ("400", "401", "402", "404", "413", "502"):
        assert _schema_of(chat[status]) == {"$ref": "#/components/schemas/OpenAIErrorResponse"}, status
    assert "text/event-stream" in chat["200"]["content"]


def test_chat_parameters_are_the_accepted_ones() -> None:
    from llm_platform.proxy import parameters
    from openapi_doc import inference

    assert set(inference.CHAT_PARAMETERS) == set(parameters.ACCEPTED)


def test_path_parameters_take_the_template_names(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        names = {segment[1:-1] for segment in path.split("/") if segment.startswith("{")}
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, f"{path}: {declared}"
