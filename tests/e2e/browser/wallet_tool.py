"""A test wallet for the dashboard's browser test (dashboard.mjs calls it, with the project's Python):

    python tests/e2e/browser/wallet_tool.py sign <private key> <0x-hex message>   -> the EIP-191 signature
    python tests/e2e/browser/wallet_tool.py send <stack.json> <private key> <USDC amount>  -> the tx hash

`sign` is what a browser wallet does for EIP-1193 `personal_sign` (the message arrives hex-encoded);
`send` transfers test USDC to the deposit address on the local chain, as the customer's wallet would."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for local_stack


def main(argv: list[str]) -> str:
    command, *args = argv
    if command == "sign":
        from eth_account import Account
        from eth_account.messages import encode_defunct

        private_key, message = args
        signed = Account.from_key(private_key).sign_message(encode_defunct(hexstr=message))
        return "0x" + signed.signature.hex().removeprefix("0x")
    if command == "send":
        from local_stack import chain

        stack_file, private_key, amount = args
        stack = json.loads(Path(stack_file).read_text())
        w3 = chain.connect(stack["rpcUrl"])
        units = int(Decimal(amount) * 10**6)
        return chain.send_usdc(w3, stack["usdcAddress"], private_key, stack["depositAddress"], units)
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    print(main(sys.argv[1:]))
