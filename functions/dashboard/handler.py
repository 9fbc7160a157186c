"""GET / and /assets/*: the customer dashboard, the static site `make dashboard` builds into site/."""

from pathlib import Path

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.observability import logger, metrics, tracer
from llm_platform.web.static_site import Site

SITE = Site(Path(__file__).resolve().parent / "site")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    response = SITE.respond(event)
    # One line per request, like the management API's: every function's log has its requests with their ids.
    logger.info("file served", extra={"status": response["statusCode"], "route": event.get("resource")})
    return response
