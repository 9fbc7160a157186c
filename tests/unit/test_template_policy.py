"""template.yaml policy: durable tables, alarmed schedules, least-privilege IAM, no secrets in the
environment, a throttled and logged API, traced arm64 Python functions logging with retention.

Static checks on the parsed template (no network, no AWS); each names the resource it fails on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local_stack.template import load_template

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
TEMPLATE: dict[str, Any] = load_template(TEMPLATE_PATH)
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE.get("Parameters") or {}
GLOBAL_FUNCTION: dict[str, Any] = (TEMPLATE.get("Globals") or {}).get("Function") or {}

DATA_SERVICES = ("dynamodb", "ssm", "secretsmanager", "sqs", "kms")
# Item-level DynamoDB actions a function may be given; no Scan, no table management, no streams.
DYNAMODB_ITEM_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
}
SSM_READ_ACTIONS = {"ssm:GetParameter", "ssm:GetParameters"}
SECRET_NAME = re.compile(r"SECRET|KEY|TOKEN|PASSWORD|PRIVATE|RPC_?URL")
ACCOUNT_ARN = "arn:${AWS::Partition}:{service}:${AWS::Region}:${AWS::AccountId}:"


def of_type(resource_type: str) -> list[str]:
    return sorted(name for name, resource in RESOURCES.items() if resource.get("Type") == resource_type)


FUNCTIONS = of_type("AWS::Serverless::Function")
TABLES = of_type("AWS::DynamoDB::Table")
APIS = of_type("AWS::Serverless::Api")
ALARMS = [RESOURCES[name]["Properties"] for name in of_type("AWS::CloudWatch::Alarm")]


def props(logical_id: str) -> dict[str, Any]:
    return RESOURCES[logical_id].get("Properties") or {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def getatt(value: Any, attribute: str) -> str | None:
    """The logical id in ``!GetAtt X.<attribute>``, else None."""
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        resource, attr = value["Fn::GetAtt"]
        return resource if attr == attribute else None
    return None


def ref(value: Any) -> str | None:
    return value["Ref"] if isinstance(value, dict) and list(value) == ["Ref"] else None


def sub_text(value: Any) -> str | None:
    """The template string of ``!Sub "..."`` (or ``!Sub [..., {}]``), else None."""
    if isinstance(value, dict) and list(value) == ["Fn::Sub"]:
        body = value["Fn::Sub"]
        return body if isinstance(body, str) else body[0]
    return None


def retained_log_group(value: Any) -> str | None:
    """The log group ``value`` points at (``!Ref`` or ``!GetAtt .Arn``) if it keeps logs for a set time."""
    group = ref(value) or getatt(value, "Arn")
    resource = RESOURCES.get(group or "", {})
    if resource.get("Type") == "AWS::Logs::LogGroup" and resource.get("Properties", {}).get("RetentionInDays"):
        return group
    return None


def function_environment(function: str) -> dict[str, Any]:
    """Globals' variables overlaid with the function's own, as SAM merges them."""
    variables = dict(((GLOBAL_FUNCTION.get("Environment") or {}).get("Variables")) or {})
    variables.update(((props(function).get("Environment") or {}).get("Variables")) or {})
    return variables


def policy_documents(logical_id: str) -> list[dict[str, Any]]:
    resource = RESOURCES[logical_id]
    properties = resource.get("Properties") or {}
    if resource["Type"] == "AWS::Serverless::Function":
        return [policy for policy in as_list(properties.get("Policies") or []) if isinstance(policy, dict)]
    if resource["Type"] == "AWS::IAM::Role":
        return [policy["PolicyDocument"] for policy in properties.get("Policies") or []]
    return [properties["PolicyDocument"]] if "PolicyDocument" in properties else []


def statements(logical_id: str) -> list[dict[str, Any]]:
    return [statement for document in policy_documents(logical_id) for statement in as_list(document["Statement"])]


POLICY_HOLDERS = FUNCTIONS + sorted(
    name
    for name, resource in RESOURCES.items()
    if resource.get("Type", "").startswith("AWS::IAM::") or resource.get("Type", "").endswith("Policy")
)


def scheduled_functions() -> list[str]:
    return [
        name
        for name in FUNCTIONS
        if any(e.get("Type") == "Schedule" for e in (props(name).get("Events") or {}).values())
    ]


def alarms_on_first(namespace: str, metric: str, dimension: str, value: Any) -> list[dict[str, Any]]:
    """Alarms going off on the first data point above zero of ``metric`` for ``dimension=value``."""
    return [
        alarm
        for alarm in ALARMS
        if alarm.get("Namespace") == namespace
        and alarm.get("MetricName") == metric
        and {"Name": dimension, "Value": value} in (alarm.get("Dimensions") or [])
        and (alarm.get("ComparisonOperator"), float(alarm.get("Threshold", -1)))
        in {("GreaterThanThreshold", 0.0), ("GreaterThanOrEqualToThreshold", 1.0)}
    ]


def queue_alarms(queue: str) -> list[dict[str, Any]]:
    value = {"Fn::GetAtt": [queue, "QueueName"]}
    return alarms_on_first("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", value)


def test_given_the_template_then_it_has_the_resources_these_policies_check() -> None:
    # Given the template; Then there are functions, tables and an API (an empty list would check nothing)
    assert FUNCTIONS and TABLES and APIS
    assert scheduled_functions()


# ---------------------------------------------------------------- DynamoDB tables


@pytest.mark.parametrize("table", TABLES)
def test_given_a_table_when_the_stack_is_deleted_or_it_is_replaced_then_its_data_is_kept(table: str) -> None:
    # Given a DynamoDB table; Then neither a stack deletion nor a replacing update deletes it
    assert RESOURCES[table].get("DeletionPolicy") == "Retain", f"{table}: DeletionPolicy"
    assert RESOURCES[table].get("UpdateReplacePolicy") == "Retain", f"{table}: UpdateReplacePolicy"
    # And nobody can delete it by hand without first turning protection off
    assert props(table).get("DeletionProtectionEnabled") is True, f"{table}: DeletionProtectionEnabled"


@pytest.mark.parametrize("table", TABLES)
def test_given_a_table_then_it_has_point_in_time_recovery(table: str) -> None:
    pitr = props(table).get("PointInTimeRecoverySpecification") or {}
    assert pitr.get("PointInTimeRecoveryEnabled") is True, f"{table}: point-in-time recovery off"


@pytest.mark.parametrize("table", TABLES)
def test_given_a_table_then_it_is_on_demand_and_encrypted_at_rest(table: str) -> None:
    assert props(table).get("BillingMode") == "PAY_PER_REQUEST", f"{table}: BillingMode"
    assert (props(table).get("SSESpecification") or {}).get("SSEEnabled") is True, f"{table}: SSE off"


# ---------------------------------------------------------------- scheduled functions


@pytest.mark.parametrize("function", scheduled_functions())
def test_given_a_scheduled_function_when_a_run_fails_after_retries_then_it_lands_in_a_destination(
    function: str,
) -> None:
    on_failure = ((props(function).get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure")
    assert on_failure and on_failure.get("Destination"), f"{function}: no OnFailure destination"
    assert on_failure.get("Type") in {"SQS", "SNS", "Lambda", "EventBridge"}, f"{function}: {on_failure}"


@pytest.mark.parametrize("function", scheduled_functions())
def test_given_a_scheduled_function_when_a_run_fails_then_an_alarm_goes_off(function: str) -> None:
    # Given where its failed runs go
    on_failure = props(function)["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    queue = getatt(on_failure["Destination"], "Arn") if on_failure.get("Type") == "SQS" else None

    # Then an alarm watches that queue or the function's errors, from the first failure
    watched = (queue_alarms(queue) if queue else []) + alarms_on_first(
        "AWS/Lambda", "Errors", "FunctionName", {"Ref": function}
    )
    assert watched, f"{function}: no alarm on its failure destination or its Errors metric"


@pytest.mark.parametrize("function", scheduled_functions())
def test_given_a_schedule_when_eventbridge_cannot_invoke_the_function_then_the_event_is_dead_lettered(
    function: str,
) -> None:
    for name, event in props(function)["Events"].items():
        if event["Type"] != "Schedule":
            continue
        # Given the schedule's dead-letter queue (our own queue, not one SAM creates and nobody watches)
        queue = getatt((event["Properties"].get("DeadLetterConfig") or {}).get("Arn"), "Arn")
        assert queue in of_type("AWS::SQS::Queue"), f"{function}/{name}: no DeadLetterConfig.Arn of a queue here"

        # Then a queue policy lets exactly this rule (SAM's logical id: <function><event>) send to it
        rule_arn = {"Fn::GetAtt": [f"{function}{name}", "Arn"]}
        allowed = [
            statement
            for policy in of_type("AWS::SQS::QueuePolicy")
            if {"Ref": queue} in props(policy)["Queues"]
            for statement in statements(policy)
            if statement.get("Effect") == "Allow"
            and statement.get("Principal") == {"Service": "events.amazonaws.com"}
            and "sqs:SendMessage" in as_list(statement.get("Action"))
            and (statement.get("Condition") or {}).get("ArnEquals", {}).get("aws:SourceArn") == rule_arn
        ]
        assert allowed, f"{function}/{name}: EventBridge may not send to {queue}"
        # And an alarm goes off on its first message
        assert queue_alarms(queue), f"{function}/{name}: no alarm on {queue}"


# ---------------------------------------------------------------- IAM


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_function_then_its_permissions_are_inline_statements_this_test_can_read(function: str) -> None:
    # Managed policies and SAM policy templates (DynamoDBCrudPolicy, ...) grant more than the code uses
    for policy in as_list(props(function).get("Policies") or []):
        assert isinstance(policy, dict) and set(policy) <= {"Version", "Statement"}, f"{function}: {policy}"


@pytest.mark.parametrize("holder", POLICY_HOLDERS)
def test_given_a_policy_statement_then_it_names_its_actions_without_wildcards(holder: str) -> None:
    for statement in statements(holder):
        assert "NotAction" not in statement and "NotResource" not in statement, f"{holder}: {statement}"
        for action in as_list(statement.get("Action")):
            # Not "*", not "dynamodb:*", not even "dynamodb:Get*"
            assert isinstance(action, str) and "*" not in action, f"{holder}: wildcard action {action!r}"


@pytest.mark.parametrize("holder", POLICY_HOLDERS)
def test_given_a_data_service_statement_then_it_names_specific_resources(holder: str) -> None:
    for statement in statements(holder):
        services = {str(action).split(":")[0] for action in as_list(statement.get("Action"))}
        if services & set(DATA_SERVICES):
            resources = as_list(statement.get("Resource"))
            assert resources and "*" not in resources, f"{holder}: {sorted(services)} on every resource"


def dynamodb_target(resource: Any) -> tuple[str, str | None]:
    """(table, index or None) of ``!GetAtt T.Arn`` / ``!Sub "${T.Arn}/index/I"``; AssertionError otherwise."""
    table = getatt(resource, "Arn")
    if table:
        return table, None
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/(\w+)", sub_text(resource) or "")
    assert match, f"not a specific table or index ARN: {resource}"
    return match.group(1), match.group(2)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_function_with_dynamodb_access_then_it_is_item_level_on_named_tables_and_indexes(
    function: str,
) -> None:
    named_tables = {ref(value) for value in function_environment(function).values()}
    for statement in statements(function):
        actions = {a for a in as_list(statement.get("Action")) if a.startswith("dynamodb:")}
        if not actions:
            continue
        assert actions <= DYNAMODB_ITEM_ACTIONS, f"{function}: {sorted(actions - DYNAMODB_ITEM_ACTIONS)}"
        for resource in as_list(statement["Resource"]):
            table, index = dynamodb_target(resource)
            # A table of this template, one the function is told the name of (no access it cannot use)
            assert table in TABLES, f"{function}: {table} is not a table of this template"
            assert table in named_tables, f"{function}: can reach {table} but no env var names it"
            if index is not None:
                indexes = {gsi["IndexName"] for gsi in props(table).get("GlobalSecondaryIndexes") or []}
                assert index in indexes, f"{function}: {table} has no index {index}"
                # An index is only ever queried
                assert actions == {"dynamodb:Query"}, f"{function}: {sorted(actions)} on {table}/index/{index}"


def secret_references(function: str) -> dict[str, set[str]]:
    """What the function's environment says it reads: service -> exact names and ``prefix*`` patterns."""
    found: dict[str, set[str]] = {"ssm": set(), "secretsmanager": set()}
    for name, value in function_environment(function).items():
        text = value if isinstance(value, str) else sub_text(value)
        if text is None:
            continue
        service, colon, secret = text.partition(":")
        if colon and service in found:
            found[service].add(secret)
        elif name.endswith("_PREFIX") and text.startswith("/${AWS::StackName}/") and text.endswith("/"):
            # Catalog secrets "ssm:NAME" / "secretsmanager:NAME" resolve under this prefix
            found["ssm"].add(text + "*")
            found["secretsmanager"].add(text + "*")
    return found


def granted_secret(resource: Any, service: str) -> str:
    text = sub_text(resource) or ""
    kind = "parameter" if service == "ssm" else "secret:"
    prefix = ACCOUNT_ARN.replace("{service}", service) + kind
    assert text.startswith(prefix), f"{service} grant on {resource} is not this account's {kind}"
    name = text.removeprefix(prefix)
    # SSM ARNs carry the leading "/" of the name; Secrets Manager names are read without it
    return name if service == "ssm" else "/" + name


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_function_reading_secrets_then_it_may_read_exactly_the_ones_its_environment_names(
    function: str,
) -> None:
    wanted = secret_references(function)
    granted: dict[str, set[str]] = {"ssm": set(), "secretsmanager": set()}
    for statement in statements(function):
        for action in as_list(statement.get("Action")):
            service = action.split(":")[0]
            if service == "ssm":
                assert action in SSM_READ_ACTIONS, f"{function}: {action}"
            if service == "secretsmanager":
                assert action == "secretsmanager:GetSecretValue", f"{function}: {action}"
            if service in granted:
                granted[service] |= {granted_secret(r, service) for r in as_list(statement["Resource"])}
    for service in granted:
        # Then every grant is a parameter/secret (or the catalog prefix) the function is configured to read
        assert granted[service] <= wanted[service], f"{function}: {service} grants {granted[service] - wanted[service]}"
        # And every one it is configured to read is granted (else it fails at run time)
        assert wanted[service] <= granted[service], (
            f"{function}: {service} not granted {wanted[service] - granted[service]}"
        )


# ---------------------------------------------------------------- secrets


def secret_looking_variables() -> list[tuple[str, str, Any]]:
    scopes = [("Globals", (GLOBAL_FUNCTION.get("Environment") or {}).get("Variables") or {})]
    scopes += [(name, (props(name).get("Environment") or {}).get("Variables") or {}) for name in FUNCTIONS]
    return [
        (scope, var, value)
        for scope, variables in scopes
        for var, value in variables.items()
        if SECRET_NAME.search(var)
    ]


def is_secret_reference(variable: str, value: Any) -> bool:
    if ref(value) in TABLES:  # API_KEYS_TABLE and friends: a table name
        return True
    text = value if isinstance(value, str) else sub_text(value)
    if text is None:
        return False
    if re.fullmatch(r"(ssm|secretsmanager):\S+", text):
        return True
    # A name prefix under the stack's own path, where secrets are looked up: not a secret itself
    return variable.endswith("_PREFIX") and text.startswith("/${AWS::StackName}/") and text.endswith("/")


@pytest.mark.parametrize(("scope", "variable", "value"), secret_looking_variables())
def test_given_a_secret_looking_environment_variable_then_it_holds_a_reference_not_a_value(
    scope: str, variable: str, value: Any
) -> None:
    assert is_secret_reference(variable, value), f"{scope}.{variable} = {value!r}: a value, not a secret reference"


def test_given_a_secret_looking_parameter_then_it_is_no_echo() -> None:
    exposed = [
        name
        for name, parameter in PARAMETERS.items()
        if SECRET_NAME.search(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper())
        and str(parameter.get("NoEcho")).lower() != "true"
    ]
    assert not exposed, f"parameters that look secret but are echoed: {exposed}"


# ---------------------------------------------------------------- API


@pytest.mark.parametrize("api", APIS)
def test_given_the_api_then_every_method_is_throttled_by_parameters(api: str) -> None:
    settings = [
        setting
        for setting in props(api).get("MethodSettings") or []
        if setting.get("ResourcePath") == "/*" and setting.get("HttpMethod") == "*"
    ]
    assert settings, f"{api}: no MethodSettings for every method (/*, *)"
    for limit in ("ThrottlingRateLimit", "ThrottlingBurstLimit"):
        parameter = ref(settings[0].get(limit))
        assert parameter in PARAMETERS, f"{api}: {limit} is not set from a parameter"
        assert PARAMETERS[parameter].get("Type") == "Number", f"{api}: {limit} parameter {parameter} is not a Number"


@pytest.mark.parametrize("api", APIS)
def test_given_the_api_then_access_logs_go_to_a_retained_log_group_without_credentials(api: str) -> None:
    setting = props(api).get("AccessLogSetting") or {}
    assert retained_log_group(setting.get("DestinationArn")), f"{api}: access logs off or kept forever"
    log_format = setting.get("Format") or ""
    assert "$context.requestId" in log_format, f"{api}: access log format without the request id"
    assert "authorization" not in log_format.lower(), f"{api}: the access log would carry keys"


@pytest.mark.parametrize("api", APIS)
def test_given_the_api_then_x_ray_tracing_is_on(api: str) -> None:
    assert props(api).get("TracingEnabled") is True, f"{api}: TracingEnabled"


# ---------------------------------------------------------------- per-client limits (WAF)

WEB_ACL = "PlatformWebAcl"
RATE_PARAMETERS = {
    "WafIpRequestsPer5Min",
    "WafAuthorizationRequestsPer5Min",
    "WafSignInRequestsPer5Min",
    "WafManagementAuthRequestsPer5Min",
}


def rate_rule(name: str) -> dict[str, Any]:
    [rule] = [rule for rule in props(WEB_ACL)["Rules"] if rule["Name"] == name]
    return rule


def test_given_the_api_then_a_regional_web_acl_is_associated_with_its_stage_unless_turned_off() -> None:
    assert of_type("AWS::WAFv2::WebACL") == [WEB_ACL]
    [association] = of_type("AWS::WAFv2::WebACLAssociation")
    assert props(WEB_ACL)["Scope"] == "REGIONAL"
    assert props(WEB_ACL)["DefaultAction"] == {"Allow": {}}
    # Both under the opt-out condition; the parameter defaults to on
    condition = TEMPLATE["Conditions"][RESOURCES[WEB_ACL]["Condition"]]
    assert condition == {"Fn::Equals": [{"Ref": "WafEnabled"}, "true"]}
    assert RESOURCES[association]["Condition"] == RESOURCES[WEB_ACL]["Condition"]
    assert PARAMETERS["WafEnabled"]["Default"] == "true"
    assert set(PARAMETERS["WafEnabled"]["AllowedValues"]) == {"true", "false"}
    # The association names the stage SAM creates (PlatformApi.Stage resolves to it and makes it wait for it)
    assert getatt(props(association)["WebACLArn"], "Arn") == WEB_ACL
    arn_template, variables = props(association)["ResourceArn"]["Fn::Sub"]
    assert arn_template == "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${PlatformApi}/stages/${Stage}"
    assert variables == {"Stage": {"Ref": "PlatformApi.Stage"}}


@pytest.mark.parametrize(
    ("rule", "parameter", "default"),
    [
        ("sign-in-per-ip", "WafSignInRequestsPer5Min", 100),
        ("management-key-per-ip", "WafManagementAuthRequestsPer5Min", 1000),
        ("per-ip", "WafIpRequestsPer5Min", 6000),
        ("per-authorization", "WafAuthorizationRequestsPer5Min", 6000),
    ],
)
def test_given_a_rate_rule_then_its_rate_is_a_parameter_and_it_answers_429_in_the_error_format(
    rule: str, parameter: str, default: int
) -> None:
    statement = rate_rule(rule)["Statement"]["RateBasedStatement"]
    assert ref(statement["Limit"]) == parameter
    assert PARAMETERS[parameter]["Type"] == "Number" and PARAMETERS[parameter]["Default"] == default
    assert PARAMETERS[parameter]["MinValue"] >= 10  # WAF's smallest rate limit
    assert statement["EvaluationWindowSec"] == 300
    response = rate_rule(rule)["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = props(WEB_ACL)["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    assert json.loads(body["Content"])["error"]["code"] == "rate_limited"
    assert {p for p in PARAMETERS if p.startswith("Waf") and p.endswith("Per5Min")} == RATE_PARAMETERS


def test_given_the_per_key_rule_then_it_counts_per_authorization_header() -> None:
    statement = rate_rule("per-authorization")["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "CUSTOM_KEYS"
    assert statement["CustomKeys"] == [
        {"Header": {"Name": "authorization", "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}}
    ]


def test_given_the_per_ip_rules_then_sign_in_and_management_keys_are_tighter_and_the_webhook_is_left_out() -> None:
    for rule in ("sign-in-per-ip", "management-key-per-ip", "per-ip"):
        assert rate_rule(rule)["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    sign_in = rate_rule("sign-in-per-ip")["Statement"]["RateBasedStatement"]["ScopeDownStatement"]
    assert sign_in["ByteMatchStatement"]["SearchString"] == "/api/auth/"
    keys = rate_rule("management-key-per-ip")["Statement"]["RateBasedStatement"]["ScopeDownStatement"]
    assert keys["ByteMatchStatement"]["FieldToMatch"] == {"SingleHeader": {"Name": "authorization"}}
    assert keys["ByteMatchStatement"]["SearchString"] == "bearer mk_"
    every = rate_rule("per-ip")["Statement"]["RateBasedStatement"]["ScopeDownStatement"]
    webhook = every["NotStatement"]["Statement"]["ByteMatchStatement"]
    assert (webhook["PositionalConstraint"], webhook["SearchString"]) == ("ENDS_WITH", "/api/billing/webhook")
    # The tight rules come first: WAF stops at the first rule that blocks
    priorities = [rate_rule(name)["Priority"] for name in ("sign-in-per-ip", "management-key-per-ip", "per-ip")]
    assert priorities == sorted(priorities)
    assert PARAMETERS["WafSignInRequestsPer5Min"]["Default"] < PARAMETERS["WafIpRequestsPer5Min"]["Default"]


@pytest.mark.parametrize("api", APIS)
def test_given_the_stripe_webhook_then_it_has_a_throttle_of_its_own(api: str) -> None:
    [setting] = [s for s in props(api)["MethodSettings"] if s["ResourcePath"] == "/~1api~1billing~1webhook"]
    assert setting["HttpMethod"] == "POST"
    assert ref(setting["ThrottlingRateLimit"]) == "WebhookThrottleRateLimit"
    assert ref(setting["ThrottlingBurstLimit"]) == "WebhookThrottleBurstLimit"
    assert (PARAMETERS["WebhookThrottleRateLimit"]["Default"], PARAMETERS["WebhookThrottleBurstLimit"]["Default"]) == (
        50,
        100,
    )


# ---------------------------------------------------------------- functions


def test_given_the_function_globals_then_they_trace_and_run_python3_on_arm64() -> None:
    assert GLOBAL_FUNCTION.get("Tracing") == "Active"
    assert GLOBAL_FUNCTION.get("Architectures") == ["arm64"]
    assert re.fullmatch(r"python3\.\d+", str(GLOBAL_FUNCTION.get("Runtime")))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_function_then_it_keeps_the_global_tracing_architecture_and_runtime(function: str) -> None:
    for setting in ("Tracing", "Architectures", "Runtime"):
        effective = props(function).get(setting, GLOBAL_FUNCTION.get(setting))
        assert effective == GLOBAL_FUNCTION.get(setting), f"{function}: {setting} = {effective!r}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_function_then_it_logs_to_a_log_group_with_retention(function: str) -> None:
    log_group = (props(function).get("LoggingConfig") or {}).get("LogGroup")
    assert retained_log_group(log_group), f"{function}: LoggingConfig.LogGroup is not a log group with retention"


# ---------------------------------------------------------------- the dashboard


def dashboard_routes() -> dict[str, str]:
    """Path -> method of the DashboardFunction's Api events."""
    events = props("DashboardFunction").get("Events") or {}
    return {
        event["Properties"]["Path"]: str(event["Properties"]["Method"]).upper()
        for event in events.values()
        if event.get("Type") == "Api"
    }


def test_given_the_dashboard_function_then_it_reaches_no_data_and_no_secret() -> None:
    # Given the function serving the dashboard's static files; Then it holds no permission beyond SAM's
    # logging and tracing (no table, no parameter, no secret), and it only answers GET
    assert not props("DashboardFunction").get("Policies"), "DashboardFunction: serves static files, needs no policy"
    assert set(dashboard_routes().values()) == {"GET"}


def test_given_the_dashboard_then_it_is_served_at_the_root_of_the_api_without_greedy_paths() -> None:
    routes = dashboard_routes()
    assert "/" in routes, "the dashboard is served at / on the API's own origin"
    # One route per file: no {proxy+} (a greedy path would shadow API routes and 404s)
    assert all("{" not in path for path in routes), routes
    assert all(path == "/" or path.startswith("/assets/") for path in routes), routes


def test_given_the_dashboard_assets_then_each_is_a_text_file_with_a_route() -> None:
    from llm_platform.web.static_site import CONTENT_TYPES

    # Given the asset routes of the template and the assets the page names (the build fills them in)
    page = (TEMPLATE_PATH.parent / "dashboard" / "src" / "index.html").read_text(encoding="utf-8")
    named = {"/assets/" + name for name in re.findall(r"\{\{([\w.-]+)\}\}", page)}
    assets = {path for path in dashboard_routes() if path != "/"}
    # Then each asset the page loads has its route (else it would 404 on AWS; the browser test checks that
    # the built files and the routes are the same set)
    assert named <= assets, f"assets named by index.html without a route: {sorted(named - assets)}"
    # And every one is text, so the REST API needs no binary media types
    text = ("text/", "image/svg+xml", "application/json")
    for path in assets:
        content_type = CONTENT_TYPES.get(Path(path).suffix)
        assert content_type and content_type.startswith(text), path
    assert not props(APIS[0]).get("BinaryMediaTypes"), "no binary media types: every dashboard file is text"


# ---------------------------------------------------------------- sign-in: sessions, codes and mail

AUTH_TABLE = "AuthTable"
SESSION_ITEMS = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["session#*"]}}


def api_paths(function: str) -> list[str]:
    events = (props(function).get("Events") or {}).values()
    return [e["Properties"]["Path"] for e in events if e.get("Type") == "Api"]


# Every function behind a route that authenticates a management key, and so the session cookie too
COOKIE_FUNCTIONS = [
    name
    for name in FUNCTIONS
    if (paths := api_paths(name))
    and all(p.startswith("/api/") and not p.startswith("/api/auth/") and p != "/api/billing/webhook" for p in paths)
]


def auth_table_statements(function: str) -> list[dict[str, Any]]:
    return [
        statement
        for statement in statements(function)
        if any(getatt(r, "Arn") == AUTH_TABLE for r in as_list(statement.get("Resource")))
    ]


def test_given_the_auth_table_then_its_codes_counters_and_sessions_expire_by_ttl() -> None:
    ttl = props(AUTH_TABLE).get("TimeToLiveSpecification") or {}
    assert ttl == {"AttributeName": "expiresAt", "Enabled": True}


def test_given_the_management_routes_then_each_function_is_found() -> None:
    # 18 of the first management API, 5 of the history (SPEC 9) and the plans list
    assert len(COOKIE_FUNCTIONS) == 24, COOKIE_FUNCTIONS
    assert "StripeWebhookFunction" not in COOKIE_FUNCTIONS and "ProxyFunction" not in COOKIE_FUNCTIONS


@pytest.mark.parametrize("function", COOKIE_FUNCTIONS)
def test_given_a_management_function_then_it_may_read_session_items_and_nothing_else_of_the_auth_table(
    function: str,
) -> None:
    # Given a function that accepts the session cookie in place of a management key
    found = auth_table_statements(function)
    # Then its only access to the auth table is GetItem, on session items only (not codes, not addresses)
    assert len(found) == 1, f"{function}: {found}"
    [statement] = found
    assert as_list(statement["Action"]) == ["dynamodb:GetItem"], f"{function}: {statement['Action']}"
    assert statement.get("Condition") == SESSION_ITEMS, f"{function}: {statement.get('Condition')}"


def test_given_the_stripe_webhook_and_the_proxy_then_they_cannot_read_sessions() -> None:
    for function in ("StripeWebhookFunction", "ProxyFunction"):
        assert auth_table_statements(function) == [], function


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_function_reaching_the_auth_table_then_every_grant_names_the_items_it_may_touch(
    function: str,
) -> None:
    for statement in auth_table_statements(function):
        leading = ((statement.get("Condition") or {}).get("ForAllValues:StringLike") or {}).get("dynamodb:LeadingKeys")
        assert leading and all(re.fullmatch(r"[a-z]+#\*", key) for key in leading), f"{function}: {statement}"


def test_given_the_sign_in_functions_then_each_has_exactly_the_auth_access_it_uses() -> None:
    def grants(function: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for statement in auth_table_statements(function):
            for key in statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]:
                found.setdefault(key, set()).update(as_list(statement["Action"]))
        return found

    # start: counts the codes sent and writes the code; verify: the code, the address's account, the session
    assert grants("AuthEmailStartFunction") == {"sent#*": {"dynamodb:UpdateItem", "dynamodb:PutItem"}} | {
        "code#*": {"dynamodb:UpdateItem", "dynamodb:PutItem"}
    }
    verify_actions = {"GetItem", "UpdateItem", "DeleteItem", "PutItem", "ConditionCheckItem"}
    assert grants("AuthEmailVerifyFunction") == {
        key: {f"dynamodb:{a}" for a in verify_actions} for key in ("code#*", "email#*", "session#*")
    }
    assert grants("AuthLogoutFunction") == {"session#*": {"dynamodb:DeleteItem"}}


def ses_statements(function: str) -> list[dict[str, Any]]:
    return [s for s in statements(function) if any(str(a).startswith("ses:") for a in as_list(s.get("Action")))]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_given_a_function_then_only_the_code_sender_may_send_mail_and_only_as_the_configured_sender(
    function: str,
) -> None:
    found = ses_statements(function)
    sends = "SIGN_IN_EMAIL_SENDER" in ((props(function).get("Environment") or {}).get("Variables") or {})
    assert bool(found) == sends == (function == "AuthEmailStartFunction"), function
    for statement in found:
        # Then it may only SendEmail…
        assert as_list(statement["Action"]) == ["ses:SendEmail"]
        # …through the sender's identity (the address, or its domain), in this account and region…
        prefix = ACCOUNT_ARN.replace("{service}", "ses") + "identity/"
        texts = [sub_text(r) for r in as_list(statement["Resource"])]
        assert texts == [prefix + "${SignInEmailSender}", prefix + "${SenderDomain}"], texts
        # …and only From the configured address
        assert statement["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": "SignInEmailSender"}}}


def test_given_the_sender_parameter_then_it_must_be_an_email_address() -> None:
    pattern = PARAMETERS["SignInEmailSender"]["AllowedPattern"]
    assert "Default" not in PARAMETERS["SignInEmailSender"]
    assert re.fullmatch(pattern, "no-reply@example.com")
    assert not any(re.fullmatch(pattern, bad) for bad in ("", "example.com", "a b@example.com", "a@b"))
