"""POST /api/billing/wallets: bind a wallet to the account with a signed challenge (EIP-191)."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import views
from llm_platform.api.app import build_app, ok
from llm_platform.api.schemas import BindWalletRequest
from llm_platform.domain import wallets
from llm_platform.observability import logger, metrics, tracer

app = build_app()


@app.post("/api/billing/wallets")
def bind_wallet(body: BindWalletRequest):
    binding = wallets.bind(app.caller, body.address, body.signature)
    metrics.add_metric(name="WalletsBound", unit=MetricUnit.Count, value=1)
    return ok(views.wallet(binding), HTTPStatus.CREATED)


# log_event=False even if POWERTOOLS_LOGGER_LOG_EVENT is set: the event carries the Authorization header.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
