"""Reads from the EVM chain (the RPC URL is a secret reference). web3 is imported here only, on first
use: the only function that calls this module is the top-up verifier."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from llm_platform import secrets
from llm_platform.config import get_settings

# keccak256("Transfer(address,address,uint256)"), the ERC-20 Transfer event
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


class ChainUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Transfer:
    token: str  # lower-case addresses
    sender: str
    recipient: str
    value: int  # base units
    log_index: int


@dataclass(frozen=True, slots=True)
class Receipt:
    status: int
    block_number: int
    transfers: tuple[Transfer, ...]
    log_count: int = 0  # every log of the transaction, Transfer or not


def _web3() -> Any:
    """The client for the current RPC URL (re-read from the secret cache, so a rotation applies)."""
    try:
        url = secrets.resolve(get_settings().usdc_rpc_url_secret)
    except Exception as error:
        raise ChainUnavailable(f"the RPC URL could not be read ({type(error).__name__})") from error
    if not url:
        raise ChainUnavailable("no RPC URL configured (USDC_RPC_URL_SECRET)")
    return _client(url)


@cache
def _client(url: str) -> Any:
    from web3 import Web3

    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))


def _call(read: Any) -> Any:
    """Run a read against the node; any failure of the node or the network is ChainUnavailable."""
    from web3.exceptions import TransactionNotFound

    try:
        return read(_web3())
    except (TransactionNotFound, ChainUnavailable):
        raise
    except Exception as error:
        raise ChainUnavailable(f"the chain's RPC endpoint failed ({type(error).__name__})") from error


def _hex(value: Any) -> str:
    return value.hex() if hasattr(value, "hex") and not isinstance(value, str) else str(value)


def _address_topic(topic: Any) -> str:
    raw = _hex(topic).removeprefix("0x")
    return "0x" + raw[-40:].lower()


def _transfers(logs: list[Any]) -> tuple[Transfer, ...]:
    """ERC-20 Transfer logs decoded by hand: exactly 3 topics and a 32-byte value (an ERC-721 Transfer
    has the token id as a 4th topic and is not money). The emitting contract is kept, to be checked."""
    found = []
    for log in logs:
        topics = [_hex(t) for t in log["topics"]]
        if len(topics) != 3 or "0x" + topics[0].removeprefix("0x").lower() != TRANSFER_TOPIC:
            continue
        data = _hex(log["data"]).removeprefix("0x")
        if len(data) != 64:
            continue
        found.append(
            Transfer(
                token=str(log["address"]).lower(),
                sender=_address_topic(log["topics"][1]),
                recipient=_address_topic(log["topics"][2]),
                value=int(data, 16),
                log_index=int(log["logIndex"]),
            )
        )
    return tuple(found)


def chain_id() -> int:
    return int(_call(lambda w3: w3.eth.chain_id))


def receipt(tx_hash: str) -> Receipt | None:
    from web3.exceptions import TransactionNotFound

    try:
        raw = _call(lambda w3: w3.eth.get_transaction_receipt(tx_hash))
    except TransactionNotFound:
        return None
    logs = raw["logs"]
    return Receipt(
        status=int(raw["status"]), block_number=int(raw["blockNumber"]), transfers=_transfers(logs), log_count=len(logs)
    )


def transaction_known(tx_hash: str) -> bool:
    from web3.exceptions import TransactionNotFound

    try:
        _call(lambda w3: w3.eth.get_transaction(tx_hash))
    except TransactionNotFound:
        return False
    return True


def latest_block() -> int:
    return int(_call(lambda w3: w3.eth.block_number))


def safe_block() -> int | None:
    """The chain's ``safe`` head (on an L2 such as Base: its data posted to L1), or None when the node does
    not know the tag (then confirmations count from the latest block). A failing node is ChainUnavailable."""
    from web3.exceptions import BlockNotFound, Web3Exception

    def read(w3: Any) -> int | None:
        try:
            return int(w3.eth.get_block("safe")["number"])
        except (ValueError, BlockNotFound, Web3Exception):  # the node refused the tag (not a network failure)
            return None

    return _call(read)
