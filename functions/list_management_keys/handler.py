"""GET /api/management-keys: the account's management keys, never their secrets."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import management_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/management-keys",
    summary="List management keys",
    description="The account's management keys, never their secrets; `current` marks the one used.",
    tags=["Management keys"],
    operation_id="listManagementKeys",
    responses=responses(200, "ManagementKeyView", "The management keys.", many=True),
)
def list_management_keys():
    caller = app.caller
    return ok([views.management_key(key, caller.management_key_id) for key in management_keys.list_keys(caller)])


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
