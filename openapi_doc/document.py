"""The OpenAPI 3.1 document of the whole API, generated from the code (dev tooling: nothing here is deployed).

``bin/generate-openapi`` writes it to ``openapi.json``; tests/unit/test_openapi.py fails when the committed
file is stale. The dashboard's function serves that file at ``GET /assets/openapi.json``, locally and on AWS.

How it is put together (``build_document``):
- every management function's handler module is imported (each under its own module name) and its
  Powertools resolver describes its route: the path, the request model of ``api/schemas.py`` and the
  ``responses`` its decorator declares with ``llm_platform.api.openapi.responses()`` (the success shape, named after a
  TypedDict of ``api/views.py``, and the route's own error codes);
- what ``ManagementApi`` and API Gateway do for every route is added here once: the management key
  (401), the body cap (413), throttling (429) and, for routes with a body, 400 ``invalid_json``, 415 and
  422 (Powertools' own 422 shape is never sent: the resolver answers with the error envelope);
- the Stripe webhook, a raw handler without a resolver, is described here (``WEBHOOK``);
- ``/v1`` comes from the proxy's static description (``openapi_doc.inference``);
- path parameters take the template's names (``/api/keys/{id}``), which API Gateway uses; Powertools
  names them after the handler's argument and matches the path itself, so the name is not part of
  the contract there.

The route decorators' part (``responses()``) is ``llm_platform.api.openapi``, in the layer.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llm_platform.api.openapi import JSON, SCHEMA_REF, error_content, success

TITLE = "LLM inference platform API"
VERSION = "1.0.0"
DESCRIPTION = """\
Sell LLM inference from your own AWS account.

- **Management API** under `/api`: `Authorization: Bearer mk_…` (a management key), or the dashboard's
  session cookie (sign in with `POST /api/auth/email/start` and `/verify`; a request authenticated by the
  cookie must come from the dashboard's own `Origin`). Success bodies are
  `{"data": …}`; errors are `{"error": {"code": "snake_case", "message": "…"}}`. Request bodies are
  JSON (`Content-Type: application/json`), at most 16 KiB, and unknown fields are refused (422).
  A refused request changes nothing. Money is a decimal string of US dollars.
- **Inference** under `/v1`: `Authorization: Bearer sk_live_…` (an API key), in OpenAI's wire format:
  the official `openai` SDK works unchanged. Errors are `{"error": {"message", "type", "code", "param"}}`.
- `POST /api/billing/webhook` is Stripe's: its signature is the authentication.

On AWS the API URL is the stack output `ApiUrl`; locally (`make dev`) it is `http://127.0.0.1:3000`,
and both serve this document at `/assets/openapi.json`.
"""

SERVERS = [
    {"url": "http://127.0.0.1:3000", "description": "The local stack (`make dev`)"},
    {
        "url": "https://{apiId}.execute-api.{region}.amazonaws.com/{stage}",
        "description": "A deployed stack: its output `ApiUrl`",
        "variables": {
            "apiId": {"default": "abcdef1234", "description": "The REST API's id"},
            "region": {"default": "us-east-1"},
            "stage": {"default": "prod", "description": "The template parameter `StageName`"},
        },
    },
]

SECURITY_SCHEMES = {
    "managementKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "mk_…",
        "description": "A management key of the account (`bin/admin create-account`, `POST /api/management-keys`).",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-llm_session",
        "description": (
            "The dashboard's session, set by `POST /api/auth/email/verify` (`llm_session` on the local stack's "
            "plain http). HttpOnly, SameSite=Strict; ends at `POST /api/auth/logout` or 12 hours after sign-in. "
            "Accepted in place of the management key when no `Authorization` header is sent, only from the "
            "dashboard's own origin: a foreign `Origin` is 403 `origin_not_allowed`, a state-changing request "
            "without `Origin` 403 `origin_required`."
        ),
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "sk_live_…",
        "description": "An API key (`POST /api/keys/credit`, `POST /api/keys/subscription`).",
    },
}

TAGS = [
    {"name": "Sign-in", "description": "Sign-up and sign-in by emailed code; the dashboard's session cookie"},
    {"name": "Billing", "description": "Subscriptions, credit balance, card (Stripe) and USDC top-ups"},
    {"name": "Wallets", "description": "Wallets bound to the account, for USDC top-ups"},
    {"name": "Keys", "description": "API keys (`sk_live_…`) for `/v1`"},
    {"name": "Usage", "description": "Usage and limits of every key"},
    {"name": "Management keys", "description": "More management keys (`mk_…`) for the same account"},
    {"name": "Stripe", "description": "Stripe's webhook"},
    {"name": "Inference", "description": "The OpenAI-compatible proxy"},
    {"name": "Dashboard", "description": "The customer dashboard's static files, served on the API's own origin"},
]

# --------------------------------------------------------------------------- errors every route shares

AUTH_ERRORS = "`missing_management_key`: neither `Authorization: Bearer …` nor a session cookie; `invalid_management_key`: unknown or deleted key; `invalid_session`: the session cookie's session ended or expired. Checked before the body."  # noqa: E501
ORIGIN_ERRORS = "`origin_not_allowed`: signed in by cookie, from another website's `Origin`; `origin_required`: signed in by cookie, a state-changing request without `Origin`."  # noqa: E501
COMMON_ERRORS: dict[int, str] = {
    401: AUTH_ERRORS,
    403: ORIGIN_ERRORS,
    413: "`payload_too_large`: the body is over the cap (`MAX_BODY_BYTES`, 16 KiB by default).",
    429: "`throttled`: over the API's request rate (API Gateway throttling); `rate_limited`: this client (its IP "
    "or its `Authorization` header) over its rate in any 5 minutes (the WAF web ACL); retry later.",
}
BODY_ERRORS: dict[int, str] = {
    400: "`invalid_json`: the body is not valid JSON.",
    415: "`unsupported_media_type`: the body is not sent as `Content-Type: application/json`.",
    422: "`validation_error`: unknown fields, missing fields, wrong types or out-of-range values; the message says which.",  # noqa: E501
}

QUERY_ERROR = "`validation_error`: a query parameter of the wrong type or out of range; the message says which."

# --------------------------------------------------------------------------- the Stripe webhook

WEBHOOK: dict[str, Any] = {
    "post": {
        "operationId": "stripeWebhook",
        "tags": ["Stripe"],
        "summary": "Stripe's events",
        "description": (
            "For Stripe only (configure it as the webhook endpoint, stack output `StripeWebhookUrl`). No management "
            "key: the `Stripe-Signature` header, checked on the raw body with a 5-minute tolerance, is the "
            "authentication. Each event is applied at most once; a repeat answers 200 with outcome `duplicate`, "
            "an event of another type or not sold here 200 with outcome `ignored`. A 5xx makes Stripe deliver "
            "the event again."
        ),
        "security": [],
        "parameters": [
            {
                "name": "Stripe-Signature",
                "in": "header",
                "required": True,
                "description": "Stripe's signature of the raw body (`t=…,v1=…`).",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "description": "A Stripe event, exactly as Stripe sends it.",
            "content": {JSON: {"schema": {"type": "object"}}},
        },
        "responses": {
            "200": success("Received: applied, a repeat, or nothing for this platform.", "WebhookReceipt"),
            "400": {
                "description": (
                    "`invalid_signature`: forged, tampered, expired or missing signature (nothing is read or "
                    "written); `invalid_event`: signed, but not an event of the expected shape; `invalid_body`: "
                    "not valid base64 (as API Gateway passes binary bodies)."
                ),
                "content": error_content(),
            },
            "413": {"description": "`payload_too_large`: the body is over 512 KiB.", "content": error_content()},
            "429": {"description": COMMON_ERRORS[429], "content": error_content()},
            "500": {
                "description": "`internal_error`: a failure (DynamoDB, Stripe's API); Stripe delivers the event again.",
                "content": error_content(),
            },
            "503": {
                "description": "`stripe_not_configured`: the webhook signing secret is not set.",
                "content": error_content(),
            },
        },
    }
}

# --------------------------------------------------------------------------- the dashboard's static files


def _static_file(path: str, media_type: str, summary: str, versioned: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": "dashboard" + "".join(part.capitalize() for part in re.split(r"\W+", path) if part),
        "tags": ["Dashboard"],
        "summary": summary,
        "description": (
            "A file of the customer dashboard (built by `make dashboard`, served by `DashboardFunction`). No "
            "authentication: the same bytes for everyone; the dashboard then calls `/api` with its session."
        ),
        "security": [],
        "responses": {
            "200": {
                "description": summary + ".",
                # A JSON file is parsed by clients (and schemathesis) as an object; the others are text.
                "content": {media_type: {"schema": {"type": "object" if media_type == JSON else "string"}}},
            },
            "429": {"description": COMMON_ERRORS[429], "content": error_content()},
            "503": {
                "description": "`dashboard_not_built`: the function was deployed without the built site.",
                "content": error_content(),
            },
        },
    }
    if versioned:
        operation["parameters"] = [
            {
                "name": "v",
                "in": "query",
                "required": False,
                "description": "The content hash `index.html` names it with: with the current one, cached for a year.",
                "schema": {"type": "string"},
            }
        ]
    return {"get": operation}


DASHBOARD: dict[str, Any] = {
    "/": _static_file("/", "text/html", "The dashboard's page", versioned=False),
    "/assets/app.js": _static_file("/assets/app.js", "text/javascript", "The dashboard's script", versioned=True),
    "/assets/app.css": _static_file("/assets/app.css", "text/css", "The dashboard's stylesheet", versioned=True),
    "/assets/icon.svg": _static_file("/assets/icon.svg", "image/svg+xml", "The dashboard's icon", versioned=True),
    "/assets/openapi.json": _static_file(
        "/assets/openapi.json", "application/json", "This API reference, as the dashboard links to it", versioned=True
    ),
}
DASHBOARD["/"]["get"]["operationId"] = "dashboardPage"

# --------------------------------------------------------------------------- building the document


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _load_handler(function_dir: Path) -> Any:
    """The handler module of one function, under its own name (every one is called handler.py)."""
    name = "_openapi_fn_" + re.sub(r"\W", "_", function_dir.name)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, function_dir / "handler.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {function_dir / 'handler.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _template_path(powertools_path: str, template_paths: Iterable[str]) -> str:
    """The template's spelling of a path (its parameter names), matched segment by segment."""

    def skeleton(path: str) -> tuple[str, ...]:
        return tuple("{}" if re.fullmatch(r"\{[^{}]+\}", seg) else seg for seg in path.strip("/").split("/"))

    matches = [p for p in template_paths if skeleton(p) == skeleton(powertools_path)]
    if len(matches) != 1:
        raise ValueError(f"{powertools_path}: {len(matches)} template paths match ({matches})")
    return matches[0]


def _rename_path_parameters(operation: dict[str, Any], old_path: str, new_path: str) -> None:
    old = re.findall(r"\{([^{}]+)\}", old_path)
    new = re.findall(r"\{([^{}]+)\}", new_path)
    renames = dict(zip(old, new, strict=True))
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter["name"] in renames:
            parameter["name"] = renames[parameter["name"]]
            parameter["schema"].pop("title", None)
            parameter.setdefault("description", "The id, as returned when it was created or listed.")


def _is_powertools_validation_error(response: Mapping[str, Any]) -> bool:
    schema = ((response.get("content") or {}).get(JSON) or {}).get("schema") or {}
    return schema.get("$ref") in (SCHEMA_REF + "HTTPValidationError", SCHEMA_REF + "ResponseValidationError")


def _add_shared_errors(operation: dict[str, Any], *, public: bool) -> None:
    responses_ = operation["responses"]
    for status in [s for s, r in responses_.items() if _is_powertools_validation_error(r)]:
        del responses_[status]
    shared = {s: t for s, t in COMMON_ERRORS.items() if not (public and s in (401, 403))}
    if "requestBody" in operation:
        shared.update(BODY_ERRORS)
    elif any(parameter.get("in") == "query" for parameter in operation.get("parameters", [])):
        shared[422] = QUERY_ERROR
    for status, text in shared.items():
        key = str(status)
        if key in responses_:  # the route documents codes of its own under this status too
            responses_[key]["description"] = text + " " + responses_[key]["description"]
        else:
            responses_[key] = {"description": text, "content": error_content()}


def _management_operations(root: Path, template_paths: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every resolver's paths (renamed to the template's) and component schemas, merged."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for handler in sorted((root / "functions").glob("*/handler.py")):
        app = getattr(_load_handler(handler.parent), "app", None)
        if app is None or not hasattr(app, "get_openapi_json_schema"):
            continue  # not a resolver: the webhook, the scheduled job
        document = json.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION))
        for path, item in document.get("paths", {}).items():
            path_ = _template_path(path, template_paths)
            for method, operation in item.items():
                if method in paths.get(path_, {}):
                    raise ValueError(f"{method.upper()} {path_} is described by two functions")
                _rename_path_parameters(operation, path, path_)
                # The sign-in routes authenticate nobody (their resolver is public); every other one takes
                # a management key or the session cookie.
                public = getattr(app, "public", False)
                _add_shared_errors(operation, public=public)
                operation["security"] = [] if public else [{"managementKey": []}, {"sessionCookie": []}]
                paths.setdefault(path_, {})[method] = operation
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"two different component schemas are called {name}")
            schemas[name] = schema
    return paths, schemas


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_REF):
            found.add(ref.removeprefix(SCHEMA_REF))
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _close_objects(node: Any) -> None:
    """TypedDict shapes are exact: no properties besides theirs."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_objects(value)


def _view_schemas(names: Iterable[str]) -> dict[str, Any]:
    """Component schemas of the named response shapes of ``llm_platform.api.views`` (and what they use)."""
    from pydantic import TypeAdapter

    from llm_platform.api import views

    schemas: dict[str, Any] = {}
    for name in sorted(names):
        shape = getattr(views, name, None)
        if shape is None:
            raise ValueError(f"a route names the response shape {name}, which llm_platform.api.views lacks")
        schema = TypeAdapter(shape).json_schema(ref_template=SCHEMA_REF + "{model}", mode="serialization")
        for nested, definition in schema.pop("$defs", {}).items():
            schemas[nested] = definition
        schemas[name] = schema
    for schema in schemas.values():
        _close_objects(schema)
    return schemas


def _prune(document: dict[str, Any]) -> None:
    """Drop component schemas nothing refers to (Powertools' own validation error shapes)."""
    schemas = document["components"]["schemas"]
    used: set[str] = set()
    pending = _refs(document["paths"])
    while pending:
        name = pending.pop()
        if name in used:
            continue
        used.add(name)
        pending |= _refs(schemas.get(name, {}))
    for name in set(schemas) - used:
        del schemas[name]


def build_document(root: Path | None = None) -> dict[str, Any]:
    """The whole API's OpenAPI document (a JSON-ready dict)."""
    from local_stack.template import api_routes, load_template
    from openapi_doc import inference

    root = root or _repo_root()
    routes = api_routes(load_template(root / "template.yaml"))
    template_paths = sorted({route.path for route in routes})

    paths, schemas = _management_operations(root, template_paths)
    paths.setdefault("/api/billing/webhook", {}).update(copy.deepcopy(WEBHOOK))
    for path, item in DASHBOARD.items():
        paths.setdefault(path, {}).update(copy.deepcopy(item))
    for path, item in inference.PATHS.items():
        paths.setdefault(path, {}).update(copy.deepcopy(item))
    schemas.update(copy.deepcopy(inference.SCHEMAS))

    missing = _refs(paths) - set(schemas)
    for _ in range(3):  # shapes refer to shapes
        missing = (_refs(paths) | _refs(schemas)) - set(schemas)
        if not missing:
            break
        schemas.update(_view_schemas(missing))

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": copy.deepcopy(SERVERS),
        "tags": copy.deepcopy(TAGS),
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": copy.deepcopy(SECURITY_SCHEMES)},
    }
    _prune(document)
    return document


def render(document: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, 2-space indent, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def document_path(root: Path | None = None) -> Path:
    return (root or _repo_root()) / "openapi.json"
