"""Sign-up and sign-in by emailed one-time code: one flow for both, an unknown address gets an account.

- ``start``: the same answer and the same work for every well-formed address, known or not (it never
  looks the account up), so it tells nobody which addresses have accounts. A 6-digit code from
  ``secrets`` is stored as a salted SHA-256 hash and mailed; at most ``SIGN_IN_CODES_PER_WINDOW`` codes per
  address per 15 minutes.
- ``verify``: a code works once, until it expires (10 minutes), for at most 5 tries: every try counts
  before it is compared, so the 6th is refused even with the right code, also under concurrent tries.
  The first success of an unknown address creates its account, maps the address to it and opens a
  session, all in one transaction with consuming the code, so two verifies at once create one account.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from llm_platform.config import get_settings
from llm_platform.core import clock
from llm_platform.core.entities import Account
from llm_platform.data import auth as auth_table
from llm_platform.data import mail
from llm_platform.data.dynamo import WriteRefused
from llm_platform.data.records import to_record_item
from llm_platform.domain import sessions
from llm_platform.domain.credentials import new_id
from llm_platform.domain.errors import BadRequest, Conflict, ServiceUnavailable, TooManyRequests
from llm_platform.observability import logger

CODE_DIGITS = 6
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
_MAX_EMAIL_LENGTH = 254
_ACCOUNT_NAME_LENGTH = 64


@dataclass(frozen=True, slots=True)
class SignedIn:
    account_id: str
    created: bool
    session: sessions.NewSession


def normalize_email(raw: str) -> str:
    """Trimmed and lower-cased; 400 ``invalid_email`` unless it looks like ``name@domain.tld``."""
    email = raw.strip().lower()
    if len(email) > _MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise BadRequest("email must be an email address such as name@example.com.", code="invalid_email")
    return email


def link_email(raw_email: str, account_id: str) -> str:
    """Let an address sign in to an existing account; 409 ``email_taken`` when it already signs in to one.
    (A new account gets its address with ``accounts.create_account(name, email=…)``, in one transaction.)"""
    email = normalize_email(raw_email)
    if not auth_table.map_email(email, account_id, clock.to_iso(clock.utc_now())):
        raise Conflict("This email address already signs in to an account.", code="email_taken")
    return email


def _hash(salt: str, email: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{email}:{code}".encode()).hexdigest()


def _message(code: str, minutes: int) -> tuple[str, str]:
    subject = f"Your sign-in code: {code}"
    text = (
        f"Your sign-in code is {code}\n\n"
        f"Enter it on the sign-in page within {minutes} minutes. It works once.\n"
        "If you did not ask to sign in, ignore this message: nothing happens without the code.\n"
    )
    return subject, text


def start(raw_email: str) -> None:
    email = normalize_email(raw_email)
    settings = get_settings()
    now = clock.utc_now()
    epoch = int(now.timestamp())
    window_length = settings.sign_in_code_window_seconds
    window = epoch // window_length
    window_end = (window + 1) * window_length
    if not auth_table.count_code_sent(email, window, settings.sign_in_codes_per_window, window_end):
        raise TooManyRequests(
            f"Too many codes were sent to this address: try again in {window_end - epoch} seconds.",
            code="too_many_codes",
            retry_after=window_end - epoch,
        )
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    salt = secrets.token_hex(16)
    ttl = settings.sign_in_code_ttl_seconds
    auth_table.put_code(email, _hash(salt, email, code), salt, clock.to_iso(now), epoch + ttl)
    subject, text = _message(code, max(1, ttl // 60))
    try:
        mail.send(email, subject, text)
    except mail.MailNotConfigured as error:
        raise ServiceUnavailable(
            "Sign-in by email is not configured (no sender address).", code="mail_not_configured"
        ) from error
    except mail.MailNotSent as error:
        logger.warning("sign-in code not sent", extra={"reason": str(error)})  # not the address: no PII in logs
        raise ServiceUnavailable("The code could not be sent; try again.", code="mail_unavailable") from error


def _refused_code(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_code")


def verify(raw_email: str, raw_code: str) -> SignedIn:
    email = normalize_email(raw_email)
    settings = get_settings()
    now = clock.utc_now()
    epoch = int(now.timestamp())
    stored = auth_table.get_code(email)
    if stored is None or stored["expiresAt"] <= epoch:
        raise BadRequest("No valid code for this address (expired or used): request a new one.", code="code_expired")
    max_tries = settings.sign_in_code_max_tries
    if not auth_table.count_try(email, stored["codeHash"], max_tries, epoch):
        current = auth_table.get_code(email)
        if current is not None and current["codeHash"] == stored["codeHash"] and current["expiresAt"] > epoch:
            raise TooManyRequests("Too many wrong codes: request a new one.", code="too_many_attempts")
        raise BadRequest("No valid code for this address (expired or used): request a new one.", code="code_expired")
    code = raw_code.strip()
    if not hmac.compare_digest(_hash(stored["salt"], email, code), stored["codeHash"]):
        left = max(0, max_tries - int(stored["tries"]) - 1)
        raise _refused_code(f"Wrong code ({left} {'try' if left == 1 else 'tries'} left).")
    return _open_session(email, stored["codeHash"], now)


def _open_session(email: str, code_hash: str, now: datetime) -> SignedIn:
    epoch = int(now.timestamp())
    created_at = clock.to_iso(now)
    session, token_hash, expires_at = sessions.issue()
    for _ in range(2):  # a second round only if a concurrent sign-up mapped the address in between
        account_id = auth_table.account_of(email)
        try:
            if account_id is not None:
                auth_table.sign_in(email, code_hash, account_id, token_hash, created_at, expires_at, epoch)
                return SignedIn(account_id, created=False, session=session)
            account = Account(account_id=new_id("acct"), name=email[:_ACCOUNT_NAME_LENGTH], created_at=created_at)
            auth_table.sign_up(
                email, code_hash, to_record_item(account, email=email), token_hash, created_at, expires_at, epoch
            )
            return SignedIn(account.account_id, created=True, session=session)
        except WriteRefused as refused:
            if refused.reasons[0] == "ConditionalCheckFailed":  # the code was used or replaced meanwhile
                raise _refused_code("This code was already used: request a new one.") from refused
    raise _refused_code("This code could not be used: request a new one.")
