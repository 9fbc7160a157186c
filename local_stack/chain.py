"""A real EVM JSON-RPC chain for the local stack: `hardhat node` with a 6-decimals test USDC.

`LocalChain` starts Hardhat's node (chain id 31337) on 127.0.0.1, deploys `contracts/TestUSDC.json` from
Hardhat account #0 (the operator), takes account #1 as the operator's deposit address and gives
accounts #2..#5 (the test wallets) 1,000 test USDC each; every account keeps its 10,000 ETH for gas.
Hardhat automines: each transaction is mined into its own block, and `mine` adds the confirmations.

The helpers below (`token`, `deploy_token`, `send_usdc`, ...) sign with raw private keys, as a
customer's wallet would, so they work on any JSON-RPC node (and on web3's in-process tester).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypedDict

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxParams, TxReceipt

from local_stack.processes import wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACT_PATH = REPO_ROOT / "contracts" / "TestUSDC.json"
HARDHAT_CONFIG = REPO_ROOT / "contracts" / "hardhat.config.cjs"
HARDHAT_CLI = REPO_ROOT / "node_modules" / "hardhat" / "internal" / "cli" / "bootstrap.js"

CHAIN_ID = 31337
# Hardhat's default accounts: publicly known keys, for local use only.
HARDHAT_MNEMONIC = "test test test test test test test test test test test junk"
OPERATOR_INDEX = 0
DEPOSIT_INDEX = 1
TEST_WALLET_INDEXES = range(2, 6)

USDC_NAME = "USD Coin (test)"
USDC_SYMBOL = "USDC"
USDC_DECIMALS = 6
TEST_WALLET_USDC = 1_000 * 10**USDC_DECIMALS  # base units each test wallet starts with

RECEIPT_TIMEOUT = 30.0
FAILING_GAS_LIMIT = 100_000  # explicit, so the node mines the transfer (status 0) instead of refusing to estimate


class Wallet(TypedDict):
    """An account as it goes into JSON: checksummed address and 0x private key."""

    address: str
    privateKey: str


@dataclass(frozen=True)
class ChainInfo:
    rpc_url: str
    chain_id: int
    usdc_address: str  # checksummed
    deposit_address: str  # the operator's receiving wallet (Hardhat account #1)
    operator: Wallet  # Hardhat account #0: deployed the token, mints
    test_wallets: list[Wallet]  # Hardhat accounts #2..#5, TEST_WALLET_USDC each

    def to_json(self) -> dict[str, Any]:
        """camelCase, as written to .local/stack.json."""
        fields = asdict(self)
        return {
            "rpcUrl": fields["rpc_url"],
            "chainId": fields["chain_id"],
            "usdcAddress": fields["usdc_address"],
            "depositAddress": fields["deposit_address"],
            "operator": fields["operator"],
            "testWallets": fields["test_wallets"],
        }


@cache
def hardhat_account(index: int) -> LocalAccount:
    """Hardhat's default account `index` (m/44'/60'/0'/0/index of its well-known mnemonic)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(HARDHAT_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def wallet(account: LocalAccount) -> Wallet:
    return {"address": account.address, "privateKey": Web3.to_hex(account.key)}


@cache
def load_artifact(path: Path = ARTIFACT_PATH) -> dict[str, Any]:
    """The compiled TestUSDC (contracts/compile.mjs): abi, bytecode, compiler, sourceSha256."""
    return json.loads(path.read_text())


def connect(rpc_url: str, timeout: float = 10.0) -> Web3:
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


def token(w3: Web3, address: str) -> Contract:
    """The TestUSDC ABI at `address` (any ERC-20 for the read and transfer functions)."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact()["abi"])


def _send(w3: Web3, private_key: str, tx: TxParams) -> tuple[str, TxReceipt]:
    """Sign `tx` with `private_key`, send it raw, wait for its receipt; returns (lowercase 0x hash, receipt)."""
    account: LocalAccount = Account.from_key(private_key)
    tx = {**tx, "from": account.address, "chainId": w3.eth.chain_id}
    tx.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT)
    return Web3.to_hex(tx_hash).lower(), receipt


def _call(w3: Web3, private_key: str, function: ContractFunction, gas: int | None = None) -> tuple[str, TxReceipt]:
    sender = Account.from_key(private_key).address
    base: TxParams = {"from": sender} if gas is None else {"from": sender, "gas": gas}
    return _send(w3, private_key, function.build_transaction(base))


def deploy_token(w3: Web3, private_key: str, name: str, symbol: str, decimals: int = USDC_DECIMALS) -> str:
    """Deploy the TestUSDC bytecode (e.g. a *fake* USDC with the same Transfer events); returns its address."""
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    sender = Account.from_key(private_key).address
    _, receipt = _send(w3, private_key, factory.constructor(name, symbol, decimals).build_transaction({"from": sender}))
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise RuntimeError(f"token deployment failed: {receipt}")
    return Web3.to_checksum_address(receipt["contractAddress"])


def mint(w3: Web3, token_address: str, private_key: str, to: str, amount_base_units: int) -> str:
    """Owner-only mint (a Transfer from address(0)); returns the tx hash."""
    fn = token(w3, token_address).functions.mint(Web3.to_checksum_address(to), amount_base_units)
    tx_hash, receipt = _call(w3, private_key, fn)
    _require_success(receipt, "mint")
    return tx_hash


def send_usdc(w3: Web3, token_address: str, private_key: str, to: str, amount_base_units: int) -> str:
    """`transfer(to, amount)` signed by `private_key`; waits for the receipt and returns the tx hash."""
    fn = token(w3, token_address).functions.transfer(Web3.to_checksum_address(to), amount_base_units)
    tx_hash, receipt = _call(w3, private_key, fn)
    _require_success(receipt, "transfer")
    return tx_hash


def send_multi(w3: Web3, token_address: str, private_key: str, recipients: Sequence[tuple[str, int]]) -> str:
    """One transaction, one Transfer log per (to, amount_base_units) in order; returns the tx hash."""
    to = [Web3.to_checksum_address(address) for address, _ in recipients]
    amounts = [amount for _, amount in recipients]
    tx_hash, receipt = _call(w3, private_key, token(w3, token_address).functions.multiTransfer(to, amounts))
    _require_success(receipt, "multiTransfer")
    return tx_hash


def failing_transfer(w3: Web3, token_address: str, private_key: str, to: str) -> str:
    """A transfer of more than the sender's balance, mined with status 0 (it reverts); returns the tx hash."""
    contract = token(w3, token_address)
    sender = Account.from_key(private_key).address
    too_much = int(contract.functions.balanceOf(sender).call()) + 1
    fn = contract.functions.transfer(Web3.to_checksum_address(to), too_much)
    tx_hash, receipt = _call(w3, private_key, fn, gas=FAILING_GAS_LIMIT)
    if receipt["status"] != 0:
        raise RuntimeError(f"expected a reverted transfer, got status {receipt['status']}")
    return tx_hash


def mine(w3: Web3, blocks: int = 1) -> int:
    """Mine `blocks` empty blocks (confirmations); returns the new block number."""
    if blocks < 1:
        raise ValueError("blocks must be >= 1")
    response = w3.provider.make_request("hardhat_mine", [hex(blocks)])  # type: ignore[arg-type]
    if "error" in response:  # not Hardhat: one evm_mine per block
        for _ in range(blocks):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    return int(w3.eth.block_number)


def _require_success(receipt: TxReceipt, what: str) -> None:
    if receipt["status"] != 1:
        raise RuntimeError(f"{what} reverted: {Web3.to_hex(receipt['transactionHash'])}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def rpc_chain_id(host: str, port: int, timeout: float = 2.0) -> int:
    """`eth_chainId` over plain HTTP (no web3), for the readiness poll."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        connection.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        return int(json.loads(connection.getresponse().read())["result"], 16)
    finally:
        connection.close()


class LocalChain:
    """`hardhat node` in a child process with TestUSDC deployed and the test wallets funded.

    Use as a context manager or start()/stop(). The node's output goes to `log_dir/hardhat-node.log`
    (default: a temp file, removed after a clean stop and kept when startup failed).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int = 0,
        log_dir: Path | None = None,
        startup_timeout: float = 60.0,
        repo_root: Path = REPO_ROOT,
    ) -> None:
        self.cli = repo_root / HARDHAT_CLI.relative_to(REPO_ROOT)
        self.config = repo_root / HARDHAT_CONFIG.relative_to(REPO_ROOT)
        if not self.cli.is_file():
            raise FileNotFoundError(f"hardhat not found at {self.cli}; run `npm ci` in the repository root")
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError("`node` not found on PATH; the local chain needs Node.js 18+")
        self.node = node
        self.port = port or free_port(self.host)
        self.log_dir = log_dir
        self.log_path: Path | None = None
        self.startup_timeout = startup_timeout
        self.info: ChainInfo | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._temp_log = False

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ChainInfo:
        if self.info is not None:
            return self.info
        self._open_log()
        command = [
            self.node,
            str(self.cli),
            "node",
            "--config",
            str(self.config),
            "--hostname",
            self.host,
            "--port",
            str(self.port),
        ]
        env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "NO_COLOR": "1", "FORCE_COLOR": "0"}
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            cwd=self.config.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the whole tree, Ctrl-C reaches only Python
        )
        try:
            chain_id = self._wait_ready()
            self.info = self._provision(chain_id)
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self.info

    def _open_log(self) -> None:
        if self.log_dir is None:
            fd, name = tempfile.mkstemp(prefix="hardhat-node-", suffix=".log")
            self.log_path, self._temp_log = Path(name), True
            self._log = open(fd, "wb")  # noqa: SIM115 - closed in stop()
        else:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self.log_dir / "hardhat-node.log"
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()

    def _wait_ready(self) -> int:
        assert self._process is not None
        return wait_until_ready(
            lambda: rpc_chain_id(self.host, self.port),
            self._process,
            what="hardhat node",
            timeout=self.startup_timeout,
            log_path=self.log_path,
            not_ready=(OSError, ValueError, KeyError, http.client.HTTPException),
        )

    def _provision(self, chain_id: int) -> ChainInfo:
        w3 = connect(self.rpc_url)
        operator = hardhat_account(OPERATOR_INDEX)
        operator_key = Web3.to_hex(operator.key)
        usdc = deploy_token(w3, operator_key, USDC_NAME, USDC_SYMBOL, USDC_DECIMALS)
        wallets = [wallet(hardhat_account(i)) for i in TEST_WALLET_INDEXES]
        for test_wallet in wallets:
            mint(w3, usdc, operator_key, test_wallet["address"], TEST_WALLET_USDC)
        return ChainInfo(
            rpc_url=self.rpc_url,
            chain_id=chain_id,
            usdc_address=usdc,
            deposit_address=hardhat_account(DEPOSIT_INDEX).address,
            operator=wallet(operator),
            test_wallets=wallets,
        )

    def stop(self, timeout: float = 10.0, keep_log: bool = False) -> None:
        process, self._process = self._process, None
        self.info = None
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._temp_log and not keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ChainInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
