"""POST /api/management-keys: another management key for the same account."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import CreateManagementKeyRequest
from llm_platform.domain import management_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post(
    "/api/management-keys",
    summary="Create a management key",
    description="Another management key for the same account.",
    tags=["Management keys"],
    operation_id="createManagementKey",
    responses=responses(
        201,
        "CreatedManagementKey",
        "The key; `managementKey` is shown only here.",
        errors={409: "`key_limit_reached`: the account has as many management keys as it may (25 by default)."},
    ),
)
def create_management_key(body: CreateManagementKeyRequest):
    key, plaintext = management_keys.create(app.caller, body.name)
    metrics.add_metric(name="ManagementKeysCreated", unit=MetricUnit.Count, value=1)
    return ok(views.created_management_key(key, plaintext), HTTPStatus.CREATED)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
