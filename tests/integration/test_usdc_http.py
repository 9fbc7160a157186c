"""USDC top-ups end to end on the local stack: a real hardhat chain with test USDC, DynamoDB Local,
the gateway over HTTP. The docs' flow: topup → bind the wallet → send USDC → verify-topup."""

from __future__ import annotations

import concurrent.futures
from decimal import Decimal

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from llm_platform.domain import usdc
from llm_platform.domain.accounts import Caller, CreatedAccount, create_account
from llm_platform.domain.errors import Conflict
from local_stack import chain as localchain

USDC = 10**6


@pytest.fixture
def api(local_stack) -> httpx.Client:
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as client:
        yield client


def headers(account: CreatedAccount) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.management_key}"}


def bind(api: httpx.Client, account: CreatedAccount, private_key: str) -> str:
    wallet = Account.from_key(private_key)
    challenge = api.post("/api/billing/wallets/challenge", headers=headers(account), json={"address": wallet.address})
    assert challenge.status_code == 201, challenge.text
    signature = wallet.sign_message(encode_defunct(text=challenge.json()["data"]["message"])).signature.hex()
    bound = api.post(
        "/api/billing/wallets",
        headers=headers(account),
        json={"address": wallet.address, "signature": "0x" + signature.removeprefix("0x")},
    )
    assert bound.status_code == 201, bound.text
    return wallet.address


def test_the_documented_usdc_top_up(api, local_stack) -> None:
    chain = local_stack.chain
    w3 = localchain.connect(chain.rpc_url)
    account = create_account("usdc-customer")
    payer = chain.test_wallets[0]
    # 1. Get the payment address
    topup = api.post("/api/billing/topup", headers=headers(account), json={"amount": 50, "method": "usdc"})
    assert topup.status_code == 200
    instructions = topup.json()["data"]
    assert {k: instructions[k] for k in ("address", "chain", "amount")} == {
        "address": chain.deposit_address,
        "chain": "base",
        "amount": "50",
    }
    assert instructions["walletBinding"]["challenge"] == "POST /api/billing/wallets/challenge"
    # The wallet is bound once, with a signature
    assert bind(api, account, payer["privateKey"]) == payer["address"]
    listed = api.get("/api/billing/wallets", headers=headers(account)).json()["data"]
    assert [w["address"] for w in listed] == [payer["address"]]
    # 2. Send USDC on the chain, then verify
    tx = localchain.send_usdc(w3, chain.usdc_address, payer["privateKey"], chain.deposit_address, 50 * USDC)
    verified = api.post("/api/billing/verify-topup", headers=headers(account), json={"txHash": tx, "amount": 50})
    assert verified.status_code == 200, verified.text
    assert verified.json()["data"] == {"txHash": tx, "credited": "50.00", "creditBalance": "50.00"}
    status = api.get("/api/billing/status", headers=headers(account)).json()["data"]
    assert status["creditBalance"] == "50.00"
    # And the same transaction, in capitals, is not credited again
    again = api.post(
        "/api/billing/verify-topup",
        headers=headers(account),
        json={"txHash": tx.upper().replace("0X", "0x"), "amount": 50},
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_credited")


def test_ten_concurrent_claims_of_one_transaction_credit_once(local_stack) -> None:
    # Given a bound wallet's confirmed transfer
    chain = local_stack.chain
    w3 = localchain.connect(chain.rpc_url)
    account = create_account("racer")
    payer = chain.test_wallets[1]
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as api:
        bind(api, account, payer["privateKey"])
    tx = localchain.send_usdc(w3, chain.usdc_address, payer["privateKey"], chain.deposit_address, 7 * USDC)
    caller = Caller(account.account_id, account.management_key_id)

    def claim(raw_hash: str) -> str:
        try:
            usdc.verify_topup(caller, raw_hash, Decimal(7))
        except Conflict as refused:
            return refused.code
        return "credited"

    # When ten claims race on DynamoDB Local, half of them with the hash upper-cased
    hashes = [tx if i % 2 else "0x" + tx[2:].upper() for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(claim, hashes))
    # Then exactly one credits, the others are told it was already credited
    assert sorted(outcomes) == ["already_credited"] * 9 + ["credited"]
    from llm_platform.domain.accounts import get_account

    assert get_account(account.account_id).credit_balance_micros == 7 * USDC
