"""The local chain: `hardhat node` over real JSON-RPC with TestUSDC deployed and the test wallets funded."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from web3 import Web3

from local_stack.chain import (
    CHAIN_ID,
    TEST_WALLET_USDC,
    ChainInfo,
    LocalChain,
    connect,
    failing_transfer,
    mine,
    send_multi,
    send_usdc,
    token,
)


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalChain]:
    local_chain = LocalChain()
    local_chain.start()
    try:
        yield local_chain
    finally:
        local_chain.stop()


@pytest.fixture(scope="module")
def info(chain: LocalChain) -> ChainInfo:
    assert chain.info is not None
    return chain.info


@pytest.fixture(scope="module")
def w3(info: ChainInfo) -> Web3:
    return connect(info.rpc_url)


def test_chain_id_token_and_accounts(info: ChainInfo, w3: Web3) -> None:
    # Given the started chain
    # When its id, token and accounts are read over JSON-RPC
    usdc = token(w3, info.usdc_address)
    # Then it is Hardhat's chain with a 6-decimals USDC deployed by the operator
    assert info.chain_id == CHAIN_ID == w3.eth.chain_id == 31337
    assert info.rpc_url.startswith("http://127.0.0.1:")
    assert Web3.is_checksum_address(info.usdc_address)
    assert usdc.functions.decimals().call() == 6
    assert usdc.functions.symbol().call() == "USDC"
    assert usdc.functions.owner().call() == info.operator["address"]
    # And the deposit address and four test wallets are distinct Hardhat accounts with ETH for gas
    addresses = [info.operator["address"], info.deposit_address, *(w["address"] for w in info.test_wallets)]
    assert len(set(addresses)) == 6
    assert info.deposit_address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # Hardhat account #1
    for wallet in info.test_wallets:
        assert set(wallet) == {"address", "privateKey"}
        assert w3.eth.account.from_key(wallet["privateKey"]).address == wallet["address"]
        assert w3.eth.get_balance(wallet["address"]) > 10**18


def test_test_wallets_hold_1000_usdc(info: ChainInfo, w3: Web3) -> None:
    # Given the token
    usdc = token(w3, info.usdc_address)
    # When the balances are read
    balances = [usdc.functions.balanceOf(w["address"]).call() for w in info.test_wallets[1:]]
    # Then each untouched test wallet holds 1,000 USDC (in 6-decimal base units) and nothing else was minted
    assert balances == [TEST_WALLET_USDC] * 3 == [1_000_000_000] * 3
    assert usdc.functions.totalSupply().call() == 4 * TEST_WALLET_USDC


def test_send_usdc_to_the_deposit_address(info: ChainInfo, w3: Web3) -> None:
    # Given a test wallet and the deposit address
    payer = info.test_wallets[0]
    usdc = token(w3, info.usdc_address)
    before = usdc.functions.balanceOf(info.deposit_address).call()
    # When the wallet sends 25.5 USDC to it
    tx_hash = send_usdc(w3, info.usdc_address, payer["privateKey"], info.deposit_address, 25_500_000)
    # Then the transaction is mined with status 1 and one Transfer log from the token
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert tx_hash == tx_hash.lower() and len(tx_hash) == 66
    [log] = usdc.events.Transfer().process_receipt(receipt)
    assert log["address"] == info.usdc_address
    assert (log["args"]["from"], log["args"]["to"], log["args"]["value"]) == (
        payer["address"],
        info.deposit_address,
        25_500_000,
    )
    assert usdc.functions.balanceOf(info.deposit_address).call() == before + 25_500_000


def test_send_multi_logs_one_transfer_per_recipient(info: ChainInfo, w3: Web3) -> None:
    # Given a test wallet
    payer = info.test_wallets[0]
    other = info.operator["address"]
    # When it pays the deposit address twice and the operator once in one transaction
    recipients = [(info.deposit_address, 1_000_000), (other, 3), (info.deposit_address, 2_000_000)]
    receipt = w3.eth.get_transaction_receipt(send_multi(w3, info.usdc_address, payer["privateKey"], recipients))
    # Then the receipt holds three Transfer logs, in order
    logs = token(w3, info.usdc_address).events.Transfer().process_receipt(receipt)
    assert [(log["args"]["to"], log["args"]["value"]) for log in logs] == recipients


def test_failing_transfer_is_mined_with_status_0(info: ChainInfo, w3: Web3) -> None:
    # Given a test wallet
    payer = info.test_wallets[1]
    # When it sends more USDC than it holds
    tx_hash = failing_transfer(w3, info.usdc_address, payer["privateKey"], info.deposit_address)
    # Then the transaction is on chain, reverted, without a Transfer log
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 0
    assert receipt["logs"] == []
    assert token(w3, info.usdc_address).functions.balanceOf(payer["address"]).call() == TEST_WALLET_USDC


def test_mine_adds_blocks(w3: Web3) -> None:
    # Given the current block
    before = w3.eth.block_number
    # When 5 blocks are mined
    after = mine(w3, 5)
    # Then the chain is 5 blocks longer
    assert after == before + 5 == w3.eth.block_number


def test_stop_frees_the_port() -> None:
    # Given a second chain, started on its own port
    local_chain = LocalChain()
    info = local_chain.start()
    assert connect(info.rpc_url).eth.chain_id == 31337
    log_path = local_chain.log_path
    assert log_path is not None and log_path.exists()
    # When it is stopped
    local_chain.stop()
    # Then its port can be bound again, and its temp log is gone
    with socket.create_server(("127.0.0.1", local_chain.port)):
        pass
    assert not log_path.exists()
