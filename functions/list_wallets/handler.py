"""GET /api/billing/wallets: the wallets bound to the account."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, page
from llm_platform.api.openapi import responses
from llm_platform.domain import wallets
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.get(
    "/api/billing/wallets",
    summary="List wallets",
    description=(
        "The wallets bound to the account. Paginated: `limit` (1-100, default 100) wallets a page, each page in "
        "binding order; `nextCursor` fetches the next."
    ),
    tags=["Wallets"],
    operation_id="listWallets",
    responses=responses(200, "WalletView", "A page of the wallets.", paged=True, errors={400: "`invalid_cursor`."}),
)
def list_wallets(
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
):
    found = wallets.list_wallets(app.caller, limit, cursor)
    return page([views.wallet(binding) for binding in found.items], found.cursor)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
