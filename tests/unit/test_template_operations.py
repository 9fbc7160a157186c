"""template.yaml, what a first deploy and an operator need: the account's API Gateway logging role, the alarms
and where they go, the dashboard, the custom domain, the Web Adapter layer, the USDC chain's name, and a DynamoDB
client that gives up before any function's timeout. Static checks on the parsed template, as in
test_template_policy.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from llm_platform.data import dynamo
from local_stack.template import load_template
from tests.unit.test_template_policy import FUNCTIONS, GLOBAL_FUNCTION, PARAMETERS, RESOURCES, TEMPLATE_PATH, props

TEMPLATE: dict[str, Any] = load_template(TEMPLATE_PATH)
CONDITIONS: dict[str, Any] = TEMPLATE["Conditions"]
ALARM_IDS = sorted(name for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm")


def _refs(value: Any) -> set[str]:
    """Every logical id or parameter a value refers to (Ref, GetAtt, and ${X} / ${X.Attr} inside Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
                if isinstance(inner, list):
                    found |= _refs(inner[1])
            else:
                found |= _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _refs(inner)
    return found


# ---------------------------------------------------------------- the account's API Gateway logging role


def test_the_account_logging_role_is_created_unless_the_operator_opts_out() -> None:
    # Given the opt-out parameter and its condition
    assert PARAMETERS["CreateApiGatewayAccountRole"]["Default"] == "true"
    assert CONDITIONS["CreatesApiGatewayAccount"] == {"Fn::Equals": [{"Ref": "CreateApiGatewayAccountRole"}, "true"]}

    # Then the account setting names a role API Gateway may assume, with AWS's push-to-CloudWatch policy
    account, role = RESOURCES["ApiGatewayAccount"], RESOURCES["ApiGatewayCloudWatchRole"]
    assert account["Type"] == "AWS::ApiGateway::Account" and role["Type"] == "AWS::IAM::Role"
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"} and statement["Action"] == "sts:AssumeRole"
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    # And both exist only when asked for, and outlive the stack (the setting is the whole account's)
    for resource in (account, role):
        assert resource["Condition"] == "CreatesApiGatewayAccount"
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_the_api_and_so_its_logged_stage_waits_for_the_account_setting() -> None:
    # Given the API (SAM puts its DependsOn on the RestApi, which its deployment and stage follow)
    depends = RESOURCES["PlatformApi"]["DependsOn"]
    handle = RESOURCES[depends if isinstance(depends, str) else depends[0]]

    # Then it waits for a handle that waits for the account setting when there is one
    assert handle["Type"] == "AWS::CloudFormation::WaitConditionHandle"
    assert handle["Metadata"]["ApiGatewayAccount"] == {
        "Fn::If": ["CreatesApiGatewayAccount", {"Ref": "ApiGatewayAccount"}, ""]
    }


# ---------------------------------------------------------------- alarms, their topic, the dashboard


def test_every_alarm_notifies_the_alarm_topic() -> None:
    assert RESOURCES["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    for alarm in ALARM_IDS:
        assert props(alarm)["AlarmActions"] == [{"Ref": "AlarmTopic"}], alarm
        assert props(alarm)["OKActions"] == [{"Ref": "AlarmTopic"}], alarm


def test_the_alarm_email_is_an_optional_subscription() -> None:
    assert PARAMETERS["AlarmEmail"]["Default"] == ""
    assert re.fullmatch(PARAMETERS["AlarmEmail"]["AllowedPattern"], "ops@example.com")
    assert not re.fullmatch(PARAMETERS["AlarmEmail"]["AllowedPattern"], "not an address")
    assert CONDITIONS["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }


def _metric(alarm: str, metric_id: str | None = None) -> dict[str, Any]:
    """(namespace, name, dimensions) of an alarm's metric, or of one metric of its math."""
    p = props(alarm)
    if metric_id is None:
        return {"Namespace": p["Namespace"], "MetricName": p["MetricName"], "Dimensions": p.get("Dimensions", [])}
    (query,) = [m for m in p["Metrics"] if m["Id"] == metric_id]
    return query["MetricStat"]["Metric"]


PROXY_DIMENSION = [{"Name": "Service", "Value": "proxy"}]


def test_the_proxy_5xx_rate_is_alarmed_from_its_own_metrics() -> None:
    # Given the alarm on the proxy's embedded metrics (proxy/telemetry.py writes them)
    p = props("ProxyServerErrorRateAlarm")
    (expression,) = [m for m in p["Metrics"] if "Expression" in m]

    # Then it compares 5xx to all requests, not a count, and only once there are enough requests
    assert expression["Expression"] == "IF(requests >= 20, 100 * errors / requests, 0)"
    assert _metric("ProxyServerErrorRateAlarm", "errors") == {
        "Namespace": "LlmPlatform",
        "MetricName": "ServerErrors",
        "Dimensions": PROXY_DIMENSION,
    }
    assert _metric("ProxyServerErrorRateAlarm", "requests")["MetricName"] == "Requests"
    assert p["ComparisonOperator"] == "GreaterThanThreshold" and 0 < p["Threshold"] <= 10


def test_settle_and_reconcile_failures_and_the_failure_queues_are_alarmed() -> None:
    # A settle the proxy could not write is a 503 billing_unavailable, counted by its error code
    assert _metric("SettleFailuresAlarm") == {
        "Namespace": "LlmPlatform",
        "MetricName": "Errors",
        "Dimensions": [*PROXY_DIMENSION, {"Name": "ErrorCode", "Value": "billing_unavailable"}],
    }
    # The reconciler's errors and both failure queues' depth
    assert _metric("ReconcileErrorsAlarm")["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "ReconcileReservationsFunction"}}
    ]
    for alarm, queue in (
        ("ReconcileFailuresAlarm", "ReconcileFailuresQueue"),
        ("ExpiryFailuresAlarm", "ExpiryFailuresQueue"),
    ):
        assert _metric(alarm)["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert _metric(alarm)["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    for alarm in ("SettleFailuresAlarm", "ReconcileErrorsAlarm", "ReconcileFailuresAlarm", "ExpiryFailuresAlarm"):
        assert (props(alarm)["Threshold"], props(alarm)["ComparisonOperator"]) == (0, "GreaterThanThreshold"), alarm


def test_throttling_is_alarmed_at_lambda_and_at_the_stage() -> None:
    assert _metric("ApiThrottlingAlarm") == {"Namespace": "AWS/Lambda", "MetricName": "Throttles", "Dimensions": []}
    refused = _metric("ApiStageThrottlingAlarm", "refused")
    assert (refused["Namespace"], refused["MetricName"]) == ("AWS/ApiGateway", "4XXError")
    # The stage's metrics are found by the API's name, which the template sets
    assert {"Name": "ApiName", "Value": props("PlatformApi")["Name"]} in refused["Dimensions"]


def test_the_dashboard_shows_the_figures_and_every_alarm() -> None:
    # Given the dashboard's body as CloudFormation will render it (names substituted by placeholders)
    template, names = props("OperationsDashboard")["DashboardBody"]["Fn::Sub"]
    body = json.loads(re.sub(r"\$\{[^}]+\}", "X", template))
    metrics = {
        tuple(part for part in line if isinstance(part, str))[:2]
        for widget in body["widgets"]
        for line in widget["properties"].get("metrics", [])
    }
    # Then it plots requests, latency, 5xx, spend and open reservations of the proxy, errors by code, the failure
    # queues, throttles, and the API's own counts
    for name in ("Requests", "Latency", "ServerErrors", "SpendUsd", "ReservationsOpen"):
        assert ("LlmPlatform", name) in metrics
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics and ("AWS/Lambda", "Throttles") in metrics
    assert ("AWS/ApiGateway", "Count") in metrics
    assert "ErrorCode" in template and "SEARCH(" in template
    # And its alarm widget lists every alarm of the template
    assert {f"{alarm}.Arn" for alarm in ALARM_IDS} <= set(re.findall(r"\$\{(\w+\.Arn)\}", template))
    # And every name it substitutes exists
    assert _refs(names) <= set(RESOURCES)


# ---------------------------------------------------------------- custom domain, layer, chain name


def test_the_custom_domain_is_optional_and_maps_the_stage_at_its_root() -> None:
    assert PARAMETERS["CustomDomainName"]["Default"] == PARAMETERS["CustomDomainCertificateArn"]["Default"] == ""
    assert re.fullmatch(PARAMETERS["CustomDomainName"]["AllowedPattern"], "api.example.com")
    assert not re.fullmatch(PARAMETERS["CustomDomainName"]["AllowedPattern"], "https://api.example.com")
    assert set(_refs(CONDITIONS["HasCustomDomain"])) == {"CustomDomainName", "CustomDomainCertificateArn"}
    domain, mapping = RESOURCES["CustomDomain"], RESOURCES["CustomDomainMapping"]
    assert domain["Condition"] == mapping["Condition"] == "HasCustomDomain"
    assert domain["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert domain["Properties"]["SecurityPolicy"] == "TLS_1_2"
    assert domain["Properties"]["RegionalCertificateArn"] == {"Ref": "CustomDomainCertificateArn"}
    assert mapping["Properties"]["RestApiId"] == {"Ref": "PlatformApi"}
    assert mapping["Properties"]["Stage"] == {"Ref": "PlatformApi.Stage"}
    assert "BasePath" not in mapping["Properties"]  # the domain's root is the stage
    outputs = TEMPLATE["Outputs"]
    assert outputs["CustomDomainTarget"]["Condition"] == "HasCustomDomain"


def test_the_usdc_chain_name_follows_the_chain_id() -> None:
    # Given the chain id parameter and the names mapping
    chains = TEMPLATE["Mappings"]["UsdcChains"]
    assert GLOBAL_FUNCTION["Environment"]["Variables"]["USDC_CHAIN_NAME"] == {
        "Fn::FindInMap": ["UsdcChains", {"Ref": "UsdcChainId"}, "Name"]
    }
    # Then every allowed chain has a name (a chain without one would fail the deploy), and Base is "base"
    assert {str(chain) for chain in PARAMETERS["UsdcChainId"]["AllowedValues"]} == set(chains)
    assert chains["8453"]["Name"] == "base" and chains["84532"]["Name"] == "base-sepolia"


# ---------------------------------------------------------------- DynamoDB retries within every function's timeout


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_dynamodb_call_gives_up_before_the_function_times_out(function: str) -> None:
    # Given the function's timeout and the client's worst case for one call (every attempt timing out, with the
    # longest backoffs between them), derived from the client's own configuration
    timeout = props(function).get("Timeout", GLOBAL_FUNCTION["Timeout"])
    worst = dynamo.worst_case_call_seconds()

    # Then one call gives up with time left to answer in the error format, rather than the function being killed
    assert worst + dynamo.ANSWER_MARGIN_SECONDS <= timeout, (function, worst, timeout)


def test_the_worst_case_is_what_botocore_is_configured_with() -> None:
    config = dynamo.client_config()
    attempts = config.retries["total_max_attempts"]
    assert config.retries["mode"] == "standard"
    # standard mode: up to min(20, 2**n) seconds (random) before the n-th retry
    backoff = sum(min(20, 2**n) for n in range(attempts - 1))
    assert dynamo.worst_case_call_seconds() == attempts * (config.connect_timeout + config.read_timeout) + backoff


def test_a_sign_in_mail_gives_up_before_the_sending_function_times_out() -> None:
    # Given the functions allowed to send mail (ses:SendEmail) and the SES client's configuration
    from llm_platform.data import mail

    senders = [name for name in FUNCTIONS if "ses:SendEmail" in json.dumps(props(name).get("Policies", []))]
    assert senders == ["AuthEmailStartFunction"]

    # Then one send, retries included, ends with time left to answer 503 mail_unavailable
    for function in senders:
        timeout = props(function).get("Timeout", GLOBAL_FUNCTION["Timeout"])
        assert dynamo.worst_case_call_seconds(mail.ses_config()) + dynamo.ANSWER_MARGIN_SECONDS <= timeout
