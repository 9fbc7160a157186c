"""USDC top-ups: deposit instructions, and crediting a confirmed on-chain transfer exactly once.

A transaction counts only if it succeeded on the configured chain and carries ERC-20 ``Transfer`` logs
emitted by the configured USDC contract, sent to the deposit address from a wallet bound to the caller.
The amount comes from those logs (USDC has 6 decimals: base units are micro-dollars)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from llm_platform.config import get_settings
from llm_platform.core.clock import to_iso, utc_now
from llm_platform.data import chain, payments
from llm_platform.data.dynamo import WriteRefused
from llm_platform.domain.accounts import Caller, get_account
from llm_platform.domain.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable
from llm_platform.domain.money import format_usd, usd_to_micros
from llm_platform.domain.wallets import owner_of

_TX_HASH = re.compile(r"0x[0-9a-f]{64}")
MAX_RECEIPT_LOGS = 100  # logs of one transaction looked at, at most
_MAX_TRANSFERS = 90  # a DynamoDB transaction holds 100 items: one per transfer, plus balance and ledger


@dataclass(frozen=True, slots=True)
class TopupResult:
    tx_hash: str
    credited_micros: int = 0
    balance_micros: int = 0
    pending: bool = False
    confirmations: int = 0
    required: int = 0


def normalize_tx_hash(raw: object) -> str:
    value = raw.strip().lower() if isinstance(raw, str) else ""
    if not _TX_HASH.fullmatch(value):
        raise BadRequest("txHash must be 0x followed by 64 hex digits.", code="invalid_tx_hash")
    return value


def deposit_address() -> str:
    address = get_settings().usdc_deposit_address
    if not address:
        raise ServiceUnavailable("USDC top-ups are not configured on this platform.", code="usdc_not_configured")
    return address


CHALLENGE_ROUTE = "POST /api/billing/wallets/challenge"
BIND_ROUTE = "POST /api/billing/wallets"
VERIFY_ROUTE = "POST /api/billing/verify-topup"
BINDING_HINT = (
    "Only USDC sent from a wallet bound to your account is credited. Bind the wallet once before paying: "
    f"{CHALLENGE_ROUTE} {{address}} returns a message; sign it with the wallet (personal_sign) and send "
    f"{BIND_ROUTE} {{address, signature}}. Then send the USDC and claim it with {VERIFY_ROUTE} {{txHash, amount}}."
)


def topup_instructions(amount: Decimal) -> dict:
    """Where to send ``amount`` USD of USDC to add it as credit, and how to bind the paying wallet first."""
    return {
        "address": deposit_address(),
        "chain": get_settings().usdc_chain_name,
        "amount": _plain(amount),
        "walletBinding": {
            "challenge": CHALLENGE_ROUTE,
            "bind": BIND_ROUTE,
            "verify": VERIFY_ROUTE,
            "hint": BINDING_HINT,
        },
    }


def _plain(amount: Decimal) -> str:
    """``50`` → ``"50"``, ``12.50`` → ``"12.5"`` (as the public docs show the amount back)."""
    return format(amount.normalize(), "f")


def verify_topup(caller: Caller, raw_hash: str, amount_usd: Decimal) -> TopupResult:
    tx_hash = normalize_tx_hash(raw_hash)
    settings = get_settings()
    deposit = deposit_address().lower()
    try:
        if chain.chain_id() != settings.usdc_chain_id:
            raise ServiceUnavailable("The RPC endpoint serves another chain.", code="wrong_chain")
        receipt = chain.receipt(tx_hash)
        if receipt is None:
            if chain.transaction_known(tx_hash):
                return TopupResult(tx_hash, pending=True, required=settings.usdc_confirmations)
            raise NotFound("No such transaction on this chain.", code="transaction_not_found")
        # Confirmations count from the chain's safe head where it has one, else from the latest block.
        safe = chain.safe_block()
        head = safe if safe is not None else chain.latest_block()
    except chain.ChainUnavailable as error:
        raise ServiceUnavailable(str(error), code="chain_unavailable") from error
    if receipt.status != 1:
        raise BadRequest("The transaction failed on chain.", code="transaction_failed")
    # Bounded work: each sender is a DynamoDB read, so a receipt's size is checked before any.
    if receipt.log_count > MAX_RECEIPT_LOGS:
        raise BadRequest(
            f"The transaction has more than {MAX_RECEIPT_LOGS} logs; send the top-up in a plain transfer.",
            code="too_many_logs",
        )
    usdc = settings.usdc_contract_address.lower()
    to_deposit = [t for t in receipt.transfers if t.token == usdc and t.recipient == deposit]
    if not to_deposit:
        raise BadRequest("The transaction has no USDC transfer to the deposit address.", code="no_usdc_transfer")
    # The deposit wallet paying itself brings no money in; other senders must be bound to the caller
    # (a consistent read of each sender's binding: a wallet bound a moment ago counts at once).
    if len(to_deposit) > _MAX_TRANSFERS:
        raise BadRequest(
            f"More than {_MAX_TRANSFERS} transfers in one transaction; split them.", code="too_many_transfers"
        )
    senders = {t.sender for t in to_deposit if t.sender != deposit}
    mine = {sender for sender in senders if owner_of(sender) == caller.account_id}
    claimed = [t for t in to_deposit if t.sender in mine]
    if not claimed:
        # Nothing is recorded, so the owner of the sending wallet can still claim it.
        raise Forbidden(
            "The USDC was sent from a wallet that is not bound to your account. Bind it first: "
            f"{CHALLENGE_ROUTE} {{address}} returns a message; sign it with that wallet (personal_sign) and send "
            f"{BIND_ROUTE} {{address, signature}}; then verify this transaction again (nothing was recorded).",
            code="wallet_not_bound",
        )
    credited = sum(t.value for t in claimed)
    if usd_to_micros(amount_usd) != credited:
        raise BadRequest(
            f"The transaction transferred {format_usd(credited)} USDC from your wallets, not {amount_usd}.",
            code="amount_mismatch",
        )
    confirmations = max(head - receipt.block_number + 1, 0)
    if confirmations < settings.usdc_confirmations:
        return TopupResult(tx_hash, pending=True, confirmations=confirmations, required=settings.usdc_confirmations)
    try:
        # One record per transfer: co-payers in one transaction each claim their own share, once.
        payments.credit_once(
            [f"usdc#{tx_hash}#{t.log_index}" for t in claimed],
            caller.account_id,
            credited,
            kind="topup_usdc",
            reference=f"usdc#{tx_hash}",
            now=to_iso(utc_now()),
            details={"txHash": tx_hash, "chainId": settings.usdc_chain_id, "blockNumber": receipt.block_number},
        )
    except WriteRefused as refused:
        raise Conflict("This transaction was already credited.", code="already_credited") from refused
    balance = get_account(caller.account_id).credit_balance_micros
    return TopupResult(
        tx_hash,
        credited_micros=credited,
        balance_micros=balance,
        confirmations=confirmations,
        required=settings.usdc_confirmations,
    )
