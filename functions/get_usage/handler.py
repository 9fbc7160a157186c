"""GET /api/usage: every key with its subscription, limits and usage (lifetime and current windows)."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, page
from llm_platform.api.openapi import responses
from llm_platform.domain import usage
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/usage",
    summary="Usage",
    description=(
        "Every key (revoked ones included) with its subscription, limits and usage: lifetime, the current "
        "minute (RPM/TPM) and, for subscription keys, the current 5-hour budget window. Paginated: `limit` (1-100, "
        "default 100) keys a page, each page in creation order; `nextCursor` fetches the next."
    ),
    tags=["Usage"],
    operation_id="getUsage",
    responses=responses(
        200, "KeyUsageView", "A page of the keys' usage.", paged=True, errors={400: "`invalid_cursor`."}
    ),
)
def get_usage(
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
):
    found = usage.usage_report(app.caller, limit, cursor)
    return page([views.key_usage(entry) for entry in found.items], found.cursor)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
