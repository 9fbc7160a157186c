"""The checked-in TestUSDC artifact: it matches its source, and its bytecode behaves as a 6-decimals ERC-20
with the standard Transfer event (on web3's in-process EVM, no node needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from web3 import Web3

from local_stack.chain import (
    ARTIFACT_PATH,
    deploy_token,
    hardhat_account,
    load_artifact,
    mine,
    mint,
    send_multi,
    send_usdc,
    token,
)

SOURCE_PATH = Path(ARTIFACT_PATH).with_suffix(".sol")
TRANSFER_TOPIC = Web3.keccak(text="Transfer(address,address,uint256)")
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def w3() -> Web3:
    """An in-process EVM whose first funded account pays gas to Hardhat's account #0..#3."""
    w3 = Web3(Web3.EthereumTesterProvider())
    funder = w3.eth.accounts[0]
    for index in range(4):
        w3.eth.send_transaction({"from": funder, "to": hardhat_account(index).address, "value": 10**18})
    return w3


def key(index: int) -> str:
    return Web3.to_hex(hardhat_account(index).key)


def test_artifact_is_compiled_from_the_checked_in_source() -> None:
    # Given the artifact written by contracts/compile.mjs
    artifact = load_artifact()
    # When the source it names is hashed now
    digest = hashlib.sha256(SOURCE_PATH.read_bytes()).hexdigest()
    # Then it is the source the artifact was compiled from (recompile with `node contracts/compile.mjs`)
    assert artifact["sourceSha256"] == digest
    assert artifact["contractName"] == "TestUSDC"
    assert artifact["compiler"]["evmVersion"] == "cancun"
    assert artifact["compiler"]["optimizer"]["enabled"] is True
    assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2


def test_abi_has_the_standard_erc20_surface() -> None:
    # Given the artifact's ABI
    abi = load_artifact()["abi"]

    # When its functions and events are listed by signature
    def signature(item: dict) -> str:
        return f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"

    functions = {signature(item) for item in abi if item["type"] == "function"}
    events = {signature(item): item for item in abi if item["type"] == "event"}
    # Then it has the ERC-20 functions, the test-only ones, and the standard events
    assert {
        "name()",
        "symbol()",
        "decimals()",
        "totalSupply()",
        "balanceOf(address)",
        "transfer(address,uint256)",
        "transferFrom(address,address,uint256)",
        "approve(address,uint256)",
        "allowance(address,address)",
        "mint(address,uint256)",
        "multiTransfer(address[],uint256[])",
    } <= functions
    assert set(events) == {"Transfer(address,address,uint256)", "Approval(address,address,uint256)"}
    assert [i["indexed"] for i in events["Transfer(address,address,uint256)"]["inputs"]] == [True, True, False]


def test_deploy_mint_transfer_and_multi_transfer_emit_transfer_logs(w3: Web3) -> None:
    # Given a token deployed from the artifact with 6 decimals
    alice, bob, carol = (hardhat_account(i).address for i in range(1, 4))
    address = deploy_token(w3, key(0), "USD Coin (test)", "USDC", 6)
    usdc = token(w3, address)
    assert (usdc.functions.name().call(), usdc.functions.symbol().call()) == ("USD Coin (test)", "USDC")
    assert usdc.functions.decimals().call() == 6

    # When the owner mints 1,000 USDC to alice
    minted = w3.eth.get_transaction_receipt(mint(w3, address, key(0), alice, 1_000 * 10**6))
    # Then one Transfer from address(0) is logged by the token
    [log] = usdc.events.Transfer().process_receipt(minted)
    assert (log["address"], log["args"]["from"], log["args"]["to"], log["args"]["value"]) == (
        address,
        ZERO_ADDRESS,
        alice,
        1_000_000_000,
    )
    assert minted["logs"][0]["topics"][0] == TRANSFER_TOPIC

    # When alice transfers 12.5 USDC to bob
    tx_hash = send_usdc(w3, address, key(1), bob, 12_500_000)
    # Then the hash is lowercase 0x hex and the receipt holds one Transfer alice -> bob of 12.5 USDC
    assert tx_hash == tx_hash.lower() and tx_hash.startswith("0x") and len(tx_hash) == 66
    [log] = usdc.events.Transfer().process_receipt(w3.eth.get_transaction_receipt(tx_hash))
    assert (log["args"]["from"], log["args"]["to"], log["args"]["value"]) == (alice, bob, 12_500_000)

    # When alice pays bob and carol in one multiTransfer
    multi = w3.eth.get_transaction_receipt(send_multi(w3, address, key(1), [(bob, 1_000_000), (carol, 2_000_001)]))
    # Then the one receipt holds two Transfer logs, in order
    logs = usdc.events.Transfer().process_receipt(multi)
    assert [(log["args"]["from"], log["args"]["to"], log["args"]["value"]) for log in logs] == [
        (alice, bob, 1_000_000),
        (alice, carol, 2_000_001),
    ]
    assert usdc.functions.balanceOf(alice).call() == 1_000_000_000 - 12_500_000 - 1_000_000 - 2_000_001
    assert usdc.functions.balanceOf(bob).call() == 13_500_000
    assert usdc.functions.totalSupply().call() == 1_000_000_000


def test_only_the_owner_can_mint(w3: Web3) -> None:
    # Given a token deployed by account #0
    address = deploy_token(w3, key(0), "Fake", "USDC")
    # When account #1 tries to mint
    # Then the mint is refused with the contract's reason (the tester raises when estimating gas)
    with pytest.raises(Exception, match="TestUSDC: not owner"):
        mint(w3, address, key(1), hardhat_account(1).address, 1)
    assert token(w3, address).functions.totalSupply().call() == 0


def test_mine_works_without_hardhat_mine(w3: Web3) -> None:
    # Given a node without `hardhat_mine` (web3's tester)
    before = w3.eth.block_number
    # When 3 blocks are mined
    after = mine(w3, 3)
    # Then the chain is 3 blocks longer (one evm_mine per block)
    assert after == before + 3 == w3.eth.block_number
