"""POST /api/auth/email/verify: check the emailed code; sign in (or up) and set the session cookie."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from llm_platform.api.app import build_app, ok, session_cookie
from llm_platform.api.openapi import responses
from llm_platform.api.schemas import EmailVerifyRequest
from llm_platform.domain import sessions, sign_in
from llm_platform.observability import logger, metrics, tracer

app = build_app(public=True)


@app.post(
    "/api/auth/email/verify",
    summary="Sign in with the emailed code",
    description=(
        "Checks the code from `POST /api/auth/email/start`. A code works once, for 10 minutes and at most "
        "5 tries (the 6th is refused even with the right code). The first sign-in of an address creates its "
        "account (`created: true`). Sets the session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` "
        "on AWS), valid 12 hours, which then authenticates every management route in place of a management key."
    ),
    tags=["Sign-in"],
    operation_id="verifyEmailSignIn",
    security=[],
    responses=responses(
        200,
        "SignedIn",
        "Signed in; the session cookie is set (`Set-Cookie`).",
        errors={
            400: "`invalid_code`: wrong or already used code; `code_expired`: no open code for the address "
            "(expired, used, or never sent); `invalid_email`: not an email address.",
            403: "`origin_not_allowed`: sent by a page of another website (`Origin`).",
            429: "`too_many_attempts`: 5 tries of this code were used: request a new one.",
        },
        headers={
            "Set-Cookie": "The session: `__Host-llm_session=…; Path=/; Max-Age=43200; HttpOnly; Secure; "
            "SameSite=Strict` (`llm_session`, without `Secure`, on the local stack)."
        },
    ),
)
def verify(body: EmailVerifyRequest):
    sessions.refuse_foreign_origin(app.browser)
    signed_in = sign_in.verify(body.email, body.code)
    logger.info("signed in", extra={"account_id": signed_in.account_id, "account_created": signed_in.created})
    cookie = session_cookie(signed_in.session.token, signed_in.session.max_age_seconds)
    return ok({"accountId": signed_in.account_id, "created": signed_in.created}, cookies=[cookie])


# log_event=False: the event carries the address and the code.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
