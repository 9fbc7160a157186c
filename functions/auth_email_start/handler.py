"""POST /api/auth/email/start: mail a one-time sign-in code (the same answer for every well-formed address)."""

from http import HTTPStatus

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, ok
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import EmailSignInRequest
from llm_platform.domain import sessions, sign_in
from llm_platform.observability import logger, metrics, tracer

app = build_app(public=True)


@app.post(
    "/api/auth/email/start",
    summary="Send a sign-in code",
    description=(
        "Sign-up and sign-in are one flow: mails a 6-digit one-time code to the address, valid 10 minutes. "
        "The answer is the same for every well-formed address, whether it has an account or not. "
        "Then `POST /api/auth/email/verify`. At most 5 codes per address per 15 minutes."
    ),
    tags=["Sign-in"],
    operation_id="startEmailSignIn",
    security=[],
    responses=responses(
        202,
        "SignInStarted",
        "The code is on its way.",
        errors={
            400: "`invalid_email`: not an email address.",
            403: "`origin_not_allowed`: sent by a page of another website (`Origin`).",
            429: "`too_many_codes`: 5 codes were sent to this address in this 15-minute window (`Retry-After`).",
            503: "`mail_unavailable`: the message could not be sent; `mail_not_configured`: no sender address.",
        },
    ),
)
def start(body: EmailSignInRequest):
    sessions.refuse_foreign_origin(app.browser)
    sign_in.start(body.email)
    return ok({"sent": True}, HTTPStatus.ACCEPTED)


# log_event=False: the event carries the address (and, on other routes, credentials).
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
