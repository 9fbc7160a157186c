"""Outgoing mail: Amazon SES (API v2) on AWS, or the local stack's outbox when ``MAIL_OUTBOX_URL`` is set,
so the same handler code runs in both places. The SES client is created on first use and cached."""

from __future__ import annotations

import json
import urllib.request
from functools import cache
from typing import Any

from llm_platform.config import get_settings


class MailNotSent(Exception):
    """SES (or the outbox) did not take the message."""


class MailNotConfigured(Exception):
    """No sender address (template parameter SignInEmailSender) and no outbox."""


def ses_config() -> Any:
    """Like the DynamoDB client's (data/dynamo.py): one send gives up within 7 s, inside the sending function's
    10 s, which then answers 503 mail_unavailable instead of timing out (botocore's default read timeout is 60 s)."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=1, read_timeout=2)


@cache
def _ses() -> Any:
    import boto3

    return boto3.client("sesv2", config=ses_config())


def send(to: str, subject: str, text: str) -> None:
    settings = get_settings()
    if settings.mail_outbox_url:
        _to_outbox(settings.mail_outbox_url, {"to": to, "subject": subject, "text": text})
        return
    if not settings.sign_in_email_sender:
        raise MailNotConfigured("no sender address configured")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _ses().send_email(
            FromEmailAddress=settings.sign_in_email_sender,
            Destination={"ToAddresses": [to]},
            Content={
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": text, "Charset": "UTF-8"}},
                }
            },
        )
    except ClientError as error:
        # The code only (MessageRejected, AccessDenied…): SES's message may name the recipient.
        raise MailNotSent(error.response.get("Error", {}).get("Code", "ClientError")) from error
    except BotoCoreError as error:
        raise MailNotSent(type(error).__name__) from error


def _to_outbox(url: str, message: dict[str, str]) -> None:
    request = urllib.request.Request(  # noqa: S310 - the local outbox's http URL, set by the local stack
        url.rstrip("/") + "/messages",
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            response.read()
    except OSError as error:
        raise MailNotSent(type(error).__name__) from error
