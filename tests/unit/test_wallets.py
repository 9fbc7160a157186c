"""Wallet binding on moto: EIP-4361 challenge, EIP-191 signature, one wallet → one account, once."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from llm_platform.domain.accounts import create_account

WALLET = Account.create()
OTHER = Account.create()


def sign(message: str, account=WALLET) -> str:
    return "0x" + account.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def challenge(invoke, mk: str, address: str = WALLET.address) -> tuple[int, dict]:
    return invoke("wallet_challenge", "POST", "/api/billing/wallets/challenge", key=mk, body={"address": address})


def bind(invoke, mk: str, signature: str, address: str = WALLET.address) -> tuple[int, dict]:
    return invoke(
        "bind_wallet", "POST", "/api/billing/wallets", key=mk, body={"address": address, "signature": signature}
    )


def test_challenge_is_an_eip4361_message(invoke, account) -> None:
    status, body = challenge(invoke, account.management_key, WALLET.address.lower())
    assert status == 201
    message = body["data"]["message"]
    lines = message.split("\n")
    assert lines[0] == "localhost wants you to sign in with your Ethereum account:"
    assert lines[1] == WALLET.address  # EIP-55 checksummed, whatever case was sent
    for field in (
        "URI: https://localhost",
        "Version: 1",
        "Chain ID: 8453",
        "Nonce: ",
        "Issued At: ",
        "Expiration Time: ",
    ):
        assert any(line.startswith(field) for line in lines), field
    assert f"Expiration Time: {body['data']['expiresAt']}" in lines
    # A new challenge has a new nonce
    _, again = challenge(invoke, account.management_key)
    assert again["data"]["message"] != message


def test_bind_with_the_wallets_signature_then_list(invoke, account) -> None:
    _, body = challenge(invoke, account.management_key)
    status, bound = bind(invoke, account.management_key, sign(body["data"]["message"]))
    assert status == 201 and bound["data"]["address"] == WALLET.address
    _, listed = invoke("list_wallets", "GET", "/api/billing/wallets", key=account.management_key)
    assert [w["address"] for w in listed["data"]] == [WALLET.address]


def test_a_signature_by_another_key_is_refused_and_binds_nothing(invoke, account) -> None:
    _, body = challenge(invoke, account.management_key)
    status, refused = bind(invoke, account.management_key, sign(body["data"]["message"], OTHER))
    assert (status, refused["error"]["code"]) == (403, "signature_mismatch")
    assert invoke("list_wallets", "GET", "/api/billing/wallets", key=account.management_key)[1]["data"] == []


def test_a_challenge_works_once(invoke, account) -> None:
    _, body = challenge(invoke, account.management_key)
    signature = sign(body["data"]["message"])
    assert bind(invoke, account.management_key, signature)[0] == 201
    status, again = bind(invoke, account.management_key, signature)
    assert (status, again["error"]["code"]) == (409, "wallet_already_bound")


def test_an_old_signature_does_not_match_a_newer_challenge(invoke, account) -> None:
    _, first = challenge(invoke, account.management_key)
    challenge(invoke, account.management_key)  # replaces the first
    status, refused = bind(invoke, account.management_key, sign(first["data"]["message"]))
    assert (status, refused["error"]["code"]) == (403, "signature_mismatch")


def test_an_expired_challenge_cannot_be_used(invoke, account, monkeypatch) -> None:
    from llm_platform.config import get_settings

    monkeypatch.setenv("WALLET_CHALLENGE_TTL_SECONDS", "-1")  # issued already expired
    get_settings.cache_clear()
    _, body = challenge(invoke, account.management_key)
    status, refused = bind(invoke, account.management_key, sign(body["data"]["message"]))
    assert (status, refused["error"]["code"]) == (400, "challenge_required")


def test_a_wallet_belongs_to_one_account(invoke, account) -> None:
    _, body = challenge(invoke, account.management_key)
    bind(invoke, account.management_key, sign(body["data"]["message"]))
    other = create_account("other")
    status, refused = challenge(invoke, other.management_key)
    assert (status, refused["error"]["code"]) == (409, "wallet_bound_elsewhere")
    status, refused = bind(invoke, other.management_key, "0x" + "11" * 65)
    assert (status, refused["error"]["code"]) == (409, "wallet_bound_elsewhere")
    assert invoke("list_wallets", "GET", "/api/billing/wallets", key=other.management_key)[1]["data"] == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"address": "0x123"}, 400, "invalid_address"),
        ({"address": "not-an-address-at-all-but-forty-chars!!!!!"}, 400, "invalid_address"),
        ({"address": WALLET.address, "extra": 1}, 422, "validation_error"),
    ],
)
def test_bad_challenge_requests(invoke, account, body, status, code) -> None:
    got, response = invoke(
        "wallet_challenge", "POST", "/api/billing/wallets/challenge", key=account.management_key, body=body
    )
    assert (got, response["error"]["code"]) == (status, code)


def test_malformed_signatures_are_400(invoke, account) -> None:
    challenge(invoke, account.management_key)
    for signature in ("0x1234", "0x" + "zz" * 65, "0x" + "00" * 65):
        status, refused = bind(invoke, account.management_key, signature)
        assert status == 400 and refused["error"]["code"] == "invalid_signature", signature
