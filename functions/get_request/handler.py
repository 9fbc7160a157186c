"""GET /api/requests/{id}: one record of the request log (the x-request-id of a /v1 response)."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import history
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/requests/<request_id>",
    summary="One logged request",
    description="The log record of a `/v1` request, by the `x-request-id` its response carried.",
    tags=["Usage"],
    operation_id="getRequest",
    responses=responses(
        200,
        "RequestRecord",
        "The record.",
        errors={404: "`not_found`: no such request (or past retention), or another account's."},
    ),
)
def get_request(request_id: str):
    return ok(views.request_record(history.get_request(app.caller, request_id)))


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
