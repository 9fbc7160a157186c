"""verify-topup against a real EVM (py-evm via eth-tester) and the TestUSDC artifact, on moto."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account.messages import encode_defunct
from web3 import EthereumTesterProvider, Web3

from llm_platform.domain.accounts import create_account
from local_stack import chain as localchain

USDC = 10**6  # base units per dollar


@dataclass
class Evm:
    w3: Web3
    usdc: str
    fake: str
    deposit: str
    alice: object  # LocalAccount holding USDC, bound to the `account` fixture
    bob: object  # LocalAccount holding USDC, bound to nobody yet

    def send(self, sender, amount: int, token: str | None = None, to: str | None = None) -> str:
        return localchain.send_usdc(self.w3, token or self.usdc, _key(sender), to or self.deposit, amount)


def _key(account) -> str:
    return "0x" + account.key.hex().removeprefix("0x")


def bind_wallet(invoke, management_key: str, wallet) -> None:
    _, body = invoke(
        "wallet_challenge",
        "POST",
        "/api/billing/wallets/challenge",
        key=management_key,
        body={"address": wallet.address},
    )
    signature = wallet.sign_message(encode_defunct(text=body["data"]["message"])).signature.hex()
    status, _ = invoke(
        "bind_wallet",
        "POST",
        "/api/billing/wallets",
        key=management_key,
        body={"address": wallet.address, "signature": "0x" + signature.removeprefix("0x")},
    )
    assert status == 201


@pytest.fixture
def evm(tables, account, invoke, monkeypatch) -> Evm:
    # Given a chain with USDC and a look-alike token, the operator's deposit address, two funded wallets
    w3 = Web3(EthereumTesterProvider())
    operator, deposit, alice, bob = (localchain.hardhat_account(i) for i in range(4))
    for funded in (operator, alice, bob):
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": funded.address, "value": 10**19})
    usdc = localchain.deploy_token(w3, _key(operator), "USD Coin (test)", "USDC", 6)
    fake = localchain.deploy_token(w3, _key(operator), "USD Coin", "USDC", 6)
    for holder in (alice, bob):
        localchain.mint(w3, usdc, _key(operator), holder.address, 1_000 * USDC)
    localchain.mint(w3, fake, _key(operator), alice.address, 1_000 * USDC)
    # And the platform pointed at it, requiring 3 confirmations
    from llm_platform.config import get_settings
    from llm_platform.data import chain

    for name, value in {
        "USDC_CHAIN_ID": str(w3.eth.chain_id),
        "USDC_CONTRACT_ADDRESS": usdc,
        "USDC_DEPOSIT_ADDRESS": deposit.address,
        "USDC_CONFIRMATIONS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    monkeypatch.setattr(chain, "_web3", lambda: w3)
    # And alice's wallet bound to the account
    bind_wallet(invoke, account.management_key, alice)
    return Evm(w3, usdc, fake, deposit.address, alice, bob)


def verify(invoke, mk: str, tx_hash: str, amount) -> tuple[int, dict]:
    return invoke(
        "verify_topup", "POST", "/api/billing/verify-topup", key=mk, body={"txHash": tx_hash, "amount": amount}
    )


def balance(invoke, mk: str) -> str:
    return invoke("billing_status", "GET", "/api/billing/status", key=mk)[1]["data"]["creditBalance"]


def confirmed(evm: Evm, tx_hash: str) -> str:
    evm.w3.testing.mine(3)
    return tx_hash


def test_a_confirmed_transfer_is_credited_once_by_hash_in_any_case(evm, invoke, account) -> None:
    tx = confirmed(evm, evm.send(evm.alice, 50 * USDC))
    status, body = verify(invoke, account.management_key, tx, 50)
    assert status == 200
    assert body["data"] == {"txHash": tx, "credited": "50.00", "creditBalance": "50.00"}
    # Replays, also with the hash upper-cased, are refused and change nothing
    for replay in (tx, "0x" + tx[2:].upper(), tx.upper().replace("0X", "0x")):
        status, refused = verify(invoke, account.management_key, replay, 50)
        assert (status, refused["error"]["code"]) == (409, "already_credited")
    assert balance(invoke, account.management_key) == "50.00"


def test_another_account_cannot_claim_and_the_owner_still_can(evm, invoke, account) -> None:
    tx = confirmed(evm, evm.send(evm.alice, 20 * USDC))
    thief = create_account("thief")
    bind_wallet(invoke, thief.management_key, evm.bob)  # the thief has a wallet, just not that one
    status, refused = verify(invoke, thief.management_key, tx, 20)
    assert (status, refused["error"]["code"]) == (403, "wallet_not_bound")
    # The refusal says how to bind a wallet
    assert "POST /api/billing/wallets/challenge" in refused["error"]["message"]
    assert "POST /api/billing/wallets " in refused["error"]["message"]
    assert balance(invoke, thief.management_key) == "0.00"
    assert verify(invoke, account.management_key, tx, 20)[0] == 200


def test_a_look_alike_token_is_not_usdc(evm, invoke, account) -> None:
    tx = confirmed(evm, evm.send(evm.alice, 50 * USDC, token=evm.fake))
    status, refused = verify(invoke, account.management_key, tx, 50)
    assert (status, refused["error"]["code"]) == (400, "no_usdc_transfer")


def test_usdc_sent_elsewhere_does_not_count(evm, invoke, account) -> None:
    tx = confirmed(evm, evm.send(evm.alice, 50 * USDC, to=evm.bob.address))
    status, refused = verify(invoke, account.management_key, tx, 50)
    assert (status, refused["error"]["code"]) == (400, "no_usdc_transfer")


def test_a_failed_transaction_is_refused(evm, invoke, account) -> None:
    tx = confirmed(evm, localchain.failing_transfer(evm.w3, evm.usdc, _key(evm.alice), evm.deposit))
    status, refused = verify(invoke, account.management_key, tx, 1)
    assert (status, refused["error"]["code"]) == (400, "transaction_failed")


def test_several_transfers_in_one_transaction_add_up(evm, invoke, account) -> None:
    # Two transfers to the deposit address and one elsewhere, in one transaction
    tx = confirmed(
        evm,
        localchain.send_multi(
            evm.w3,
            evm.usdc,
            _key(evm.alice),
            [(evm.deposit, 10 * USDC), (evm.bob.address, 7 * USDC), (evm.deposit, 15 * USDC)],
        ),
    )
    status, body = verify(invoke, account.management_key, tx, 25)
    assert status == 200 and body["data"]["credited"] == "25.00"


def test_too_few_confirmations_is_202_then_credited(evm, invoke, account) -> None:
    tx = evm.send(evm.alice, 30 * USDC)
    status, body = verify(invoke, account.management_key, tx, 30)
    assert status == 202
    assert body["data"] == {"txHash": tx, "status": "pending", "confirmations": 1, "requiredConfirmations": 3}
    assert balance(invoke, account.management_key) == "0.00"
    evm.w3.testing.mine(2)
    assert verify(invoke, account.management_key, tx, 30)[0] == 200
    assert balance(invoke, account.management_key) == "30.00"


def test_an_amount_that_differs_from_the_chain_is_refused(evm, invoke, account) -> None:
    tx = confirmed(evm, evm.send(evm.alice, 12_340_000))
    for wrong in (12, 12.35, "12.3400001"):
        status, refused = verify(invoke, account.management_key, tx, wrong)
        assert status in (400, 422) and refused["error"]["code"] in ("amount_mismatch", "validation_error"), wrong
    assert balance(invoke, account.management_key) == "0.00"
    status, body = verify(invoke, account.management_key, tx, "12.34")
    assert status == 200 and body["data"]["credited"] == "12.34"


@pytest.mark.parametrize("garbage", ["abc", "0x123", "0x" + "g" * 64, "1" * 64, "0x" + "1" * 65, " ", "0x" + "1" * 63])
def test_garbage_hashes_are_400(evm, invoke, account, garbage) -> None:
    status, refused = verify(invoke, account.management_key, garbage, 1)
    assert (status, refused["error"]["code"]) == (400, "invalid_tx_hash")


def test_an_unknown_transaction_is_404(evm, invoke, account) -> None:
    status, refused = verify(invoke, account.management_key, "0x" + "ab" * 32, 1)
    assert (status, refused["error"]["code"]) == (404, "transaction_not_found")


def test_an_rpc_on_the_wrong_chain_is_503(evm, invoke, account, monkeypatch) -> None:
    from llm_platform.config import get_settings

    tx = confirmed(evm, evm.send(evm.alice, 5 * USDC))
    monkeypatch.setenv("USDC_CHAIN_ID", "8453")
    get_settings.cache_clear()
    status, refused = verify(invoke, account.management_key, tx, 5)
    assert (status, refused["error"]["code"]) == (503, "wrong_chain")


def test_topup_with_usdc_returns_the_deposit_address(evm, invoke, account) -> None:
    status, body = invoke(
        "topup", "POST", "/api/billing/topup", key=account.management_key, body={"amount": 50, "method": "usdc"}
    )
    assert status == 200
    instructions = body["data"]
    assert {k: instructions[k] for k in ("address", "chain", "amount")} == {
        "address": evm.deposit,
        "chain": "base",
        "amount": "50",
    }
    # And it says how to bind the paying wallet first (the public docs' flow skips it)
    binding = instructions["walletBinding"]
    assert (binding["challenge"], binding["bind"]) == (
        "POST /api/billing/wallets/challenge",
        "POST /api/billing/wallets",
    )
    assert "/api/billing/wallets/challenge" in binding["hint"] and "personal_sign" in binding["hint"]
    for bad in (
        {"amount": 0, "method": "usdc"},
        {"amount": 50, "method": "paypal"},
        {"amount": -1, "method": "usdc"},
        {"amount": "1e3", "method": "usdc", "x": 1},
    ):
        assert invoke("topup", "POST", "/api/billing/topup", key=account.management_key, body=bad)[0] == 422


def test_co_payers_in_one_transaction_each_claim_their_own_share_once(evm, invoke, account, monkeypatch) -> None:
    # Given one transaction (a batch payer) carrying 10 USDC from alice's wallet and 20 from bob's,
    # each wallet bound to a different account
    from llm_platform.data import chain

    tx = confirmed(evm, evm.send(evm.alice, 10 * USDC))
    real = chain.receipt(tx)
    batch = chain.Receipt(
        status=1,
        block_number=real.block_number,
        transfers=(
            *real.transfers,
            chain.Transfer(evm.usdc.lower(), evm.bob.address.lower(), evm.deposit.lower(), 20 * USDC, log_index=7),
        ),
    )
    monkeypatch.setattr(chain, "receipt", lambda _: batch)
    bob_account = create_account("bob")
    bind_wallet(invoke, bob_account.management_key, evm.bob)
    # When both accounts claim it, then each is credited exactly its own transfers
    assert verify(invoke, account.management_key, tx, 10)[1]["data"]["credited"] == "10.00"
    assert verify(invoke, bob_account.management_key, tx, 20)[1]["data"]["credited"] == "20.00"
    # And neither can claim again
    for mk, amount in ((account.management_key, 10), (bob_account.management_key, 20)):
        status, refused = verify(invoke, mk, tx, amount)
        assert (status, refused["error"]["code"]) == (409, "already_credited")


def test_an_unreachable_rpc_is_503_not_500(tables, account, invoke, monkeypatch) -> None:
    from llm_platform.config import get_settings

    monkeypatch.setenv("USDC_DEPOSIT_ADDRESS", localchain.hardhat_account(1).address)
    monkeypatch.setenv("USDC_RPC_URL_SECRET", "env:TEST_RPC_URL")
    monkeypatch.setenv("TEST_RPC_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    get_settings.cache_clear()
    status, refused = verify(invoke, account.management_key, "0x" + "ab" * 32, 1)
    assert (status, refused["error"]["code"]) == (503, "chain_unavailable")


def test_the_deposit_address_cannot_be_bound(evm, invoke, account) -> None:
    status, refused = invoke(
        "wallet_challenge",
        "POST",
        "/api/billing/wallets/challenge",
        key=account.management_key,
        body={"address": evm.deposit},
    )
    assert (status, refused["error"]["code"]) == (400, "invalid_address")


@pytest.mark.parametrize("tx_hash", [123, None, "", "0x" + "a" * 200, ["0x"], {"h": 1}])
def test_a_tx_hash_of_any_wrong_shape_is_400(evm, invoke, account, tx_hash) -> None:
    status, refused = verify(invoke, account.management_key, tx_hash, 1)
    assert (status, refused["error"]["code"]) == (400, "invalid_tx_hash")


# ------------------------------------------------------------- issue 13, item 8: finality and bounded work


def test_confirmations_count_from_the_chains_safe_block(evm, invoke, account, monkeypatch) -> None:
    # Given a transfer with plenty of blocks on top, but the chain's safe head still before it
    tx = evm.send(evm.alice, 15 * USDC)
    block = evm.w3.eth.get_transaction_receipt(tx)["blockNumber"]
    evm.w3.testing.mine(10)
    real_get_block = evm.w3.eth.get_block

    def lagging(identifier, *args, **kwargs):
        if identifier == "safe":
            return {**real_get_block(block - 1), "number": block - 1}
        return real_get_block(identifier, *args, **kwargs)

    monkeypatch.setattr(evm.w3.eth, "get_block", lagging)
    # Then it is pending: the chain does not call it safe yet, whatever the latest block says
    status, body = verify(invoke, account.management_key, tx, 15)
    assert status == 202 and body["data"]["confirmations"] == 0
    assert balance(invoke, account.management_key) == "0.00"
    # When the safe head passes it by the required confirmations, then it is credited
    monkeypatch.setattr(
        evm.w3.eth, "get_block", lambda i, *a, **k: {"number": block + 2} if i == "safe" else real_get_block(i, *a, **k)
    )
    assert verify(invoke, account.management_key, tx, 15)[0] == 200


def test_a_chain_without_a_safe_tag_counts_from_the_latest_block(evm, invoke, account, monkeypatch) -> None:
    tx = confirmed(evm, evm.send(evm.alice, 16 * USDC))
    real_get_block = evm.w3.eth.get_block

    def no_safe_tag(identifier, *args, **kwargs):
        if identifier in ("safe", "finalized"):
            raise ValueError({"code": -32602, "message": "invalid block tag"})
        return real_get_block(identifier, *args, **kwargs)

    monkeypatch.setattr(evm.w3.eth, "get_block", no_safe_tag)
    assert verify(invoke, account.management_key, tx, 16)[0] == 200


def test_a_receipt_with_too_many_logs_is_refused_before_any_read(evm, invoke, account, monkeypatch) -> None:
    """Bounded work per verify: a transaction whose receipt carries hundreds of transfers (each sender a
    DynamoDB read) is refused from its log count alone."""
    from llm_platform.data import chain
    from llm_platform.domain import usdc

    tx = confirmed(evm, evm.send(evm.alice, 1 * USDC))
    real = chain.receipt(tx)
    flood = tuple(
        chain.Transfer(evm.usdc.lower(), f"0x{n:040x}", evm.deposit.lower(), 1, log_index=n) for n in range(1, 300)
    )
    monkeypatch.setattr(chain, "receipt", lambda _: chain.Receipt(1, real.block_number, flood, log_count=299))
    assert len(flood) > usdc.MAX_RECEIPT_LOGS
    reads = []
    monkeypatch.setattr(usdc, "owner_of", lambda address: reads.append(address))
    status, refused = verify(invoke, account.management_key, tx, 1)
    assert (status, refused["error"]["code"]) == (400, "too_many_logs")
    assert reads == []


def test_the_tracer_patches_only_botocore(monkeypatch) -> None:
    """requests/httpx patching would put the RPC URL (it carries an API key) into X-Ray traces."""
    import importlib

    from aws_lambda_powertools.tracing import tracer as powertools_tracer

    patched: list = []
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    monkeypatch.setattr(powertools_tracer.Tracer, "_config", {**powertools_tracer.Tracer._config, "disabled": False})
    monkeypatch.setattr(powertools_tracer.Tracer, "patch", lambda self, modules=None: patched.append(modules))
    from llm_platform import observability

    try:
        importlib.reload(observability)
        assert patched and all(list(modules or ["<all>"]) == ["botocore"] for modules in patched)
    finally:
        monkeypatch.undo()
        importlib.reload(observability)  # back to the disabled tracer the other tests use
