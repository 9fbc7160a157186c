"""GET /api/usage/daily: requests, tokens and spend per UTC day, key and model."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.domain import history
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/usage/daily",
    summary="Daily usage",
    description=(
        "One row per UTC day, key and model with requests, tokens and spend, from `from` to `to` (dates, both "
        "included; default the last 30 days, at most 366). Kept as counters in the same transaction as each "
        "request's log record, so the rows sum exactly to the request log."
    ),
    tags=["Usage"],
    operation_id="getDailyUsage",
    responses=responses(
        200,
        "DailyUsageRow",
        "The rows, by date, key and model.",
        many=True,
        errors={400: "`invalid_date`, `invalid_date_range`, `date_range_too_long`."},
    ),
)
def daily_usage(
    first_day: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    last_day: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    key_id: Annotated[str | None, Query(alias="keyId", max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
):
    rows = history.daily_usage(app.caller, first_day=first_day, last_day=last_day, key_id=key_id, model=model)
    return ok([views.daily_usage_row(row) for row in rows])


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
