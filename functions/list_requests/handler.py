"""GET /api/requests: the request log of the account's /v1 requests, newest first, paginated."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, page
from llm_platform.api.openapi import responses
from llm_platform.data.pages import encode_cursor
from llm_platform.domain import history
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/requests",
    summary="Request log",
    description=(
        "Every `/v1` request that was admitted (plain, streamed, or refused by the provider after admission), "
        "newest first, kept for the stack's retention (30 days by default). `from`/`to`: ISO 8601 times with a "
        "zone, or dates (`to` as a date includes that whole day). Pass `nextCursor` back as `cursor` for the "
        "next page."
    ),
    tags=["Usage"],
    operation_id="listRequests",
    responses=responses(
        200,
        "RequestRecord",
        "A page of the log.",
        paged=True,
        errors={
            400: "`invalid_time`, `invalid_time_range`, `invalid_cursor`.",
            404: "`not_found`: `keyId` is not a key of this account.",
        },
    ),
)
def list_requests(
    key_id: Annotated[str | None, Query(alias="keyId", max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
):
    found = history.list_requests(
        app.caller, key_id=key_id, model=model, since=since, until=until, limit=limit, cursor=cursor
    )
    return page(
        [views.request_record(record) for record in found.items],
        encode_cursor(found.cursor) if found.cursor else None,
    )


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
