"""Scheduled (EventBridge, every minute): settle the reservations of /v1 requests that died unsettled,
once their deadline has passed: the prompt's cost charged, the rest released, logged and in the ledger.
Idempotent; a run with failures fails (retried, then the on-failure destination and its alarm)."""

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.domain import reservations
from llm_platform.observability import logger, metrics, tracer


class ReconcileFailed(Exception):
    pass


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    report = reservations.reconcile()
    metrics.add_metric(name="ReservationsReconciled", unit=MetricUnit.Count, value=report.settled)
    metrics.add_metric(name="ReservationReconcileFailures", unit=MetricUnit.Count, value=len(report.failed))
    summary = {"settled": report.settled, "alreadySettled": report.already_settled, "failed": len(report.failed)}
    logger.info(
        "reconcile run",
        extra={**summary, "chargedMicros": report.charged_micros, "keyShardsReturned": len(report.shards_returned)},
    )
    if report.failed:
        raise ReconcileFailed(f"{len(report.failed)} reservations could not be settled: {report.failed[:10]}")
    return summary
