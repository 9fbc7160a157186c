"""Read what the local stack needs straight from the SAM template, so local and AWS cannot drift."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import yaml

# Create-table properties that DynamoDB Local ignores or rejects; the local stack drops them.
_TABLE_PROPS_IGNORED = {
    "PointInTimeRecoverySpecification",
    "DeletionProtectionEnabled",
    "SSESpecification",
    "Tags",
    "TableName",
    "BillingMode",
    "ProvisionedThroughput",
    "ContributorInsightsSpecification",
    "TableClass",
    "KinesisStreamSpecification",
    "ResourcePolicy",
    "OnDemandThroughput",
    "WarmThroughput",
    "ImportSourceSpecification",
}


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (!Ref, !Sub, !GetAtt, ...) into their long form."""


def _construct_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _construct_cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value = _construct_value(loader, node)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # "Resource.Attr.Sub" -> ["Resource", "Attr.Sub"], as CloudFormation splits on the first dot.
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_cfn_tag)


def load_template(path: str | Path = "template.yaml") -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return loads_template(fh.read())


def loads_template(text: str) -> dict[str, Any]:
    """Parse template text (handy for tests with inline templates)."""
    data = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError("template is not a YAML mapping")
    return data


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") == resource_type
    }


class TableDefinition(TypedDict):
    create: dict[str, Any]  # kwargs for boto3 dynamodb.create_table
    ttl_attribute: str | None


def table_definitions(template: dict[str, Any]) -> dict[str, TableDefinition]:
    """Every AWS::DynamoDB::Table as create_table kwargs; the table is named after its logical id."""
    definitions: dict[str, TableDefinition] = {}
    for logical_id, resource in _resources(template, "AWS::DynamoDB::Table").items():
        props: dict[str, Any] = resource.get("Properties") or {}
        create: dict[str, Any] = {
            "TableName": logical_id,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
        }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                create[key] = [_index(index) for index in props[key]]
        if stream := props.get("StreamSpecification"):
            create["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        unknown = set(props) - _TABLE_PROPS_IGNORED - set(create) - {"TimeToLiveSpecification"}
        if unknown:  # surface drift instead of silently creating a different table
            warnings.warn(f"table {logical_id}: local stack ignores properties {sorted(unknown)}", stacklevel=2)
        ttl = props.get("TimeToLiveSpecification") or {}
        enabled = ttl.get("Enabled") in (True, "true", "True")
        definitions[logical_id] = {
            "create": create,
            "ttl_attribute": ttl.get("AttributeName") if enabled else None,
        }
    return definitions


def _index(index: dict[str, Any]) -> dict[str, Any]:
    # Keep only what create_table accepts for PAY_PER_REQUEST tables.
    return {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}


@dataclass(frozen=True)
class ApiRoute:
    method: str  # upper case; "ANY" matches every method
    path: str  # API Gateway resource path, e.g. /api/keys/{id}
    function_id: str
    code_uri: str
    handler: str  # e.g. handler.lambda_handler, or the startup script (run.sh) under the web adapter
    # The function runs under the AWS Lambda Web Adapter: its handler starts a web server that gets the
    # HTTP request itself, not an API Gateway event.
    web_adapter: bool = False
    # The integration streams the response (SAM ResponseTransferMode RESPONSE_STREAM) instead of buffering it.
    streaming: bool = False


def _function_setting(template: dict[str, Any], props: dict[str, Any], key: str) -> Any:
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    return props.get(key, globals_fn.get(key))


# The adapter's wrapper script in its layer (AWS_LAMBDA_EXEC_WRAPPER); its settings are AWS_LWA_* variables.
WEB_ADAPTER_EXEC_WRAPPER = "/opt/bootstrap"


def _variables(template: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """Globals + function environment variables, as written in the template (intrinsics unresolved)."""
    globals_env = ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    function_env = props.get("Environment") or {}
    return {**(globals_env.get("Variables") or {}), **(function_env.get("Variables") or {})}


def runs_under_web_adapter(template: dict[str, Any], function_id: str) -> bool:
    """True when the function is served by the Lambda Web Adapter (exec wrapper or AWS_LWA_* settings)."""
    props = ((template.get("Resources") or {})[function_id]).get("Properties") or {}
    variables = _variables(template, props)
    return variables.get("AWS_LAMBDA_EXEC_WRAPPER") == WEB_ADAPTER_EXEC_WRAPPER or any(
        name.startswith("AWS_LWA_") for name in variables
    )


def api_routes(template: dict[str, Any]) -> list[ApiRoute]:
    """Routes of every Api event of every AWS::Serverless::Function, in template order.

    Routes stay in the functions' Events (SAM writes them into the API's OpenAPI body), streaming ones included.
    """
    routes: list[ApiRoute] = []
    for function_id, resource in _resources(template, "AWS::Serverless::Function").items():
        props = resource.get("Properties") or {}
        web_adapter = runs_under_web_adapter(template, function_id)
        for event in (props.get("Events") or {}).values():
            if event.get("Type") != "Api":
                continue
            code_uri = _function_setting(template, props, "CodeUri")
            handler = _function_setting(template, props, "Handler")
            if not isinstance(code_uri, str) or not isinstance(handler, str):
                raise ValueError(f"function {function_id}: CodeUri and Handler must be literal strings")
            event_props = event.get("Properties") or {}
            routes.append(
                ApiRoute(
                    method=str(event_props["Method"]).upper(),
                    path=event_props["Path"],
                    function_id=function_id,
                    code_uri=code_uri,
                    handler=handler,
                    web_adapter=web_adapter,
                    streaming=event_props.get("ResponseTransferMode") == "RESPONSE_STREAM",
                )
            )
    return routes


def gateway_responses(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """GatewayResponses (type -> spec) of the implicit API (Globals.Api) and every AWS::Serverless::Api.

    The local gateway serves a single API, so later definitions override earlier ones.
    """
    responses = dict(((template.get("Globals") or {}).get("Api") or {}).get("GatewayResponses") or {})
    for resource in _resources(template, "AWS::Serverless::Api").values():
        responses.update((resource.get("Properties") or {}).get("GatewayResponses") or {})
    return responses


def function_ids(template: dict[str, Any]) -> list[str]:
    return list(_resources(template, "AWS::Serverless::Function"))


def function_environment(template: dict[str, Any], function_id: str, table_names: dict[str, str]) -> dict[str, str]:
    """Globals + function environment; table Refs resolve to local names, other intrinsics are dropped."""
    resource = (template.get("Resources") or {})[function_id]
    merged = _variables(template, resource.get("Properties") or {})

    env: dict[str, str] = {}
    for name, value in merged.items():
        if isinstance(value, dict):
            ref = value.get("Ref") if len(value) == 1 else None
            if isinstance(ref, str) and ref in table_names:
                env[name] = table_names[ref]
        elif isinstance(value, bool):
            env[name] = "true" if value else "false"  # YAML true -> the string CloudFormation would pass
        elif value is not None:
            env[name] = str(value)
    return env


@dataclass(frozen=True)
class Schedule:
    function_id: str
    code_uri: str
    handler: str
    seconds: float  # from the rule's rate(...) expression


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def schedules(template: dict[str, Any]) -> list[Schedule]:
    """Every Schedule event (``rate(N unit)``) of every AWS::Serverless::Function."""
    found: list[Schedule] = []
    for function_id, resource in _resources(template, "AWS::Serverless::Function").items():
        props = resource.get("Properties") or {}
        for event in (props.get("Events") or {}).values():
            if event.get("Type") != "Schedule":
                continue
            expression = str((event.get("Properties") or {}).get("Schedule", ""))
            match = _RATE.fullmatch(expression)
            if match is None:
                raise ValueError(f"function {function_id}: only rate(N unit) schedules run locally, not {expression!r}")
            found.append(
                Schedule(
                    function_id=function_id,
                    code_uri=_function_setting(template, props, "CodeUri"),
                    handler=_function_setting(template, props, "Handler"),
                    seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")],
                )
            )
    return found


# ---------------------------------------------------------------------------------- limits


def parameter_value(template: dict[str, Any], value: Any) -> Any:
    """A literal, or a ``Ref`` to a template parameter resolved to its Default (what a plain deploy gets)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        parameter = (template.get("Parameters") or {}).get(value["Ref"])
        if parameter is None or "Default" not in parameter:
            raise ValueError(f"cannot resolve {value!r} locally: not a parameter with a default")
        return parameter["Default"]
    return value


@dataclass(frozen=True)
class RateRule:
    """A WAF rate-based rule: at most ``limit`` requests per ``window_seconds`` for each aggregation key
    (the client IP, or the values of the listed headers) among the requests its scope-down statement matches."""

    name: str
    limit: int
    window_seconds: int
    key_headers: tuple[str, ...]  # empty: aggregated by client IP
    scope_down: dict[str, Any] | None
    response_code: int
    response_body: str | None  # the rule's custom response body, when it has one
    response_content_type: str


_CONTENT_TYPES = {"APPLICATION_JSON": "application/json", "TEXT_PLAIN": "text/plain", "TEXT_HTML": "text/html"}


def rate_rules(template: dict[str, Any]) -> list[RateRule]:
    """The rate-based block rules of every AWS::WAFv2::WebACL, in priority order (only those: any other kind
    of rule is an error, so a rule the local gateway cannot apply is not silently skipped)."""
    found: list[tuple[int, RateRule]] = []
    for acl_id, resource in _resources(template, "AWS::WAFv2::WebACL").items():
        props = resource.get("Properties") or {}
        bodies = props.get("CustomResponseBodies") or {}
        for rule in props.get("Rules") or []:
            statement = (rule.get("Statement") or {}).get("RateBasedStatement")
            block = (rule.get("Action") or {}).get("Block")
            if statement is None or block is None:
                raise ValueError(f"{acl_id} rule {rule.get('Name')}: only rate-based block rules run locally")
            custom = (block or {}).get("CustomResponse") or {}
            body = bodies.get(custom.get("CustomResponseBodyKey")) or {}
            if statement.get("AggregateKeyType") == "IP":
                key_headers: tuple[str, ...] = ()
            elif statement.get("AggregateKeyType") == "CUSTOM_KEYS":
                keys = statement.get("CustomKeys") or []
                if not keys or any(set(key) != {"Header"} for key in keys):
                    raise ValueError(f"{acl_id} rule {rule.get('Name')}: only Header custom keys run locally")
                key_headers = tuple(str(key["Header"]["Name"]).lower() for key in keys)
            else:
                raise ValueError(f"{acl_id} rule {rule.get('Name')}: unsupported AggregateKeyType")
            found.append(
                (
                    int(rule.get("Priority", 0)),
                    RateRule(
                        name=str(rule["Name"]),
                        limit=int(parameter_value(template, statement["Limit"])),
                        window_seconds=int(parameter_value(template, statement.get("EvaluationWindowSec", 300))),
                        key_headers=key_headers,
                        scope_down=statement.get("ScopeDownStatement"),
                        response_code=int(custom.get("ResponseCode", 403)),
                        response_body=body.get("Content"),
                        response_content_type=_CONTENT_TYPES.get(str(body.get("ContentType")), "text/plain"),
                    ),
                )
            )
    return [rule for _, rule in sorted(found, key=lambda item: item[0])]


@dataclass(frozen=True)
class MethodThrottle:
    """A stage's method setting: ``rate`` requests per second, ``burst`` at once, for the method(s) at a path
    (``*``: every path or method the more specific settings do not cover)."""

    resource_path: str  # decoded: /api/billing/webhook, or * for the stage default
    http_method: str  # upper case, or *
    rate: float
    burst: int


def method_throttles(template: dict[str, Any]) -> list[MethodThrottle]:
    """The throttling MethodSettings of every AWS::Serverless::Api (API Gateway: most specific wins)."""
    throttles: list[MethodThrottle] = []
    for resource in _resources(template, "AWS::Serverless::Api").values():
        for setting in (resource.get("Properties") or {}).get("MethodSettings") or []:
            if "ThrottlingRateLimit" not in setting and "ThrottlingBurstLimit" not in setting:
                continue
            path = str(setting.get("ResourcePath", "/*"))
            throttles.append(
                MethodThrottle(
                    resource_path="*" if path == "/*" else path[1:].replace("~1", "/"),
                    http_method=str(setting.get("HttpMethod", "*")).upper(),
                    rate=float(parameter_value(template, setting.get("ThrottlingRateLimit", 10_000))),
                    burst=int(parameter_value(template, setting.get("ThrottlingBurstLimit", 5_000))),
                )
            )
    return throttles
