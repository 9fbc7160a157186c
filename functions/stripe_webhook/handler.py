"""POST /api/billing/webhook: Stripe's events (signature-checked; each applied at most once)."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api import stripe_webhook
from llm_platform.observability import logger, metrics, tracer


# log_event=False: the body carries customer details; the outcome is logged instead.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return stripe_webhook.handle(event)
