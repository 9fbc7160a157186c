"""GET /api/keys: the account's consumption keys, never their secrets."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import api_keys
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/keys",
    summary="List keys",
    description="The account's API keys, never their secrets; revoked keys are gone.",
    tags=["Keys"],
    operation_id="listKeys",
    responses=responses(200, "ApiKeyView", "The keys.", many=True),
)
def list_keys():
    return ok([views.api_key(key) for key in api_keys.list_keys(app.caller)])


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
