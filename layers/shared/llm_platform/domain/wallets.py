"""Binding a wallet to an account: a one-time EIP-4361 message, signed with EIP-191 ``personal_sign``.
A wallet binds to one account, once; USDC sent from it can then be claimed by that account only."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from llm_platform.config import get_settings
from llm_platform.core.clock import from_iso, to_iso, utc_now
from llm_platform.data import wallets as wallets_table
from llm_platform.data.dynamo import WriteRefused
from llm_platform.domain import listing
from llm_platform.domain.accounts import Caller
from llm_platform.domain.errors import BadRequest, Conflict, Forbidden

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
_EXPIRY = re.compile(r"^Expiration Time: (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Challenge:
    message: str
    expires_at: str


def normalize_address(raw: str) -> str:
    if not _ADDRESS.fullmatch(raw):
        raise BadRequest("address must be 0x followed by 40 hex digits.", code="invalid_address")
    return raw.lower()


def checksummed(address: str) -> str:
    from eth_utils import to_checksum_address  # web3's own helper; only the wallet functions load it

    return to_checksum_address(address)


def _not_the_deposit_address(address: str) -> None:
    deposit = get_settings().usdc_deposit_address
    if deposit and address == deposit.lower():
        raise BadRequest("The platform's deposit address cannot be bound to an account.", code="invalid_address")


def challenge(caller: Caller, raw_address: str, domain: str) -> Challenge:
    address = normalize_address(raw_address)
    _not_the_deposit_address(address)
    binding = wallets_table.get_binding(address)
    if binding is not None:
        raise _already_bound(binding, caller)
    settings = get_settings()
    now = utc_now()
    expires = now + timedelta(seconds=settings.wallet_challenge_ttl_seconds)
    message = (
        f"{domain} wants you to sign in with your Ethereum account:\n"
        f"{checksummed(address)}\n\n"
        f"Bind this wallet to account {caller.account_id} for USDC top-ups.\n\n"
        f"URI: https://{domain}\n"
        "Version: 1\n"
        f"Chain ID: {settings.usdc_chain_id}\n"
        f"Nonce: {secrets.token_hex(16)}\n"
        f"Issued At: {to_iso(now)}\n"
        f"Expiration Time: {to_iso(expires)}"
    )
    wallets_table.put_challenge(caller.account_id, address, message, int(expires.timestamp()))
    return Challenge(message, to_iso(expires))


def signer_of(message: str, signature: str) -> str:
    """The address that signed ``message`` with EIP-191 personal_sign (lower case)."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        return Account.recover_message(encode_defunct(text=message), signature=signature).lower()
    except Exception as error:  # malformed r/s/v values
        raise BadRequest("signature is not a valid signature.", code="invalid_signature") from error


def bind(caller: Caller, raw_address: str, signature: str) -> dict:
    address = normalize_address(raw_address)
    _not_the_deposit_address(address)
    if not _SIGNATURE.fullmatch(signature):
        raise BadRequest("signature must be 0x followed by 130 hex digits.", code="invalid_signature")
    binding = wallets_table.get_binding(address)
    if binding is not None:
        raise _already_bound(binding, caller)
    pending = wallets_table.get_challenge(caller.account_id, address)
    now = utc_now()
    expiry = _EXPIRY.search(pending["message"]) if pending else None
    if pending is None or expiry is None or from_iso(expiry.group(1)) <= now:
        raise BadRequest(
            "No open challenge for this wallet: request one with POST /api/billing/wallets/challenge.",
            code="challenge_required",
        )
    if signer_of(pending["message"], signature) != address:
        raise Forbidden("The signature was not made by this wallet over the challenge.", code="signature_mismatch")
    try:
        wallets_table.bind(caller.account_id, address, checksummed(address), pending["message"], to_iso(now))
    except WriteRefused as refused:
        binding = wallets_table.get_binding(address)
        if binding is not None:
            raise _already_bound(binding, caller) from refused
        raise BadRequest(
            "The challenge was used or replaced; request a new one.", code="challenge_required"
        ) from refused
    bound = wallets_table.get_binding(address)
    assert bound is not None, "a binding just written (bindings are never removed)"
    return bound


def list_wallets(
    caller: Caller, limit: int = listing.DEFAULT_LIMIT, cursor: str | None = None
) -> listing.Listing[dict]:
    """A page of the wallets bound to the account: pages follow addresses, each page in binding order."""
    after = listing.after(caller.account_id, "wallets", cursor)
    found, next_after = wallets_table.page_for_account(caller.account_id, after, limit)
    return listing.Listing(
        sorted(found, key=lambda w: w["boundAt"]), listing.cursor(caller.account_id, "wallets", next_after)
    )


def owner_of(address: str) -> str | None:
    """The account a wallet (lower-case address) is bound to, read consistently."""
    binding = wallets_table.get_binding(address)
    return binding["boundAccountId"] if binding else None


def _already_bound(binding: dict, caller: Caller) -> Conflict:
    if binding["boundAccountId"] == caller.account_id:
        return Conflict("This wallet is already bound to your account.", code="wallet_already_bound")
    return Conflict("This wallet is bound to another account.", code="wallet_bound_elsewhere")
