"""Scheduled (EventBridge): renew credit-paid subscriptions past their period end from the balance;
expire the others and revoke their keys. Idempotent; failures go to the on-failure destination."""

import time

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.domain import subscriptions
from llm_platform.observability import logger, metrics, tracer


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # Revocations stop 30 s before the function would time out; the next run continues them.
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 30
    report = subscriptions.run_expiry(deadline=deadline)
    metrics.add_metric(name="SubscriptionsRenewed", unit=MetricUnit.Count, value=len(report.renewed))
    metrics.add_metric(name="SubscriptionsExpired", unit=MetricUnit.Count, value=len(report.expired))
    logger.info(
        "expiry run",
        extra={
            "renewed": report.renewed,
            "expired": report.expired,
            "keysRevoked": report.keys_revoked,
            "revocationsPending": report.revocations_pending,
        },
    )
    return {"renewed": len(report.renewed), "expired": len(report.expired), "keysRevoked": report.keys_revoked}
