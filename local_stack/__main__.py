"""`python -m local_stack` (what `make dev` runs): the whole stack on 127.0.0.1:$PORT until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from local_stack.dynamodb_local import REPO_ROOT
from local_stack.stack import LocalStack, StackInfo
from local_stack.template import api_routes, load_template


def _examples(info: StackInfo, template_path: Path) -> list[str]:
    """Two curl commands for routes that exist in the template (the shortest GET and POST without params)."""
    routes = [r for r in api_routes(load_template(template_path)) if "{" not in r.path]
    get = min((r for r in routes if r.method == "GET"), key=lambda r: len(r.path), default=None)
    post = min((r for r in routes if r.method == "POST"), key=lambda r: len(r.path), default=None)
    auth = f'-H "Authorization: Bearer {info.demo_management_key}"' if info.demo_management_key else ""
    examples = []
    if get:
        examples.append(f"curl -s {auth} {info.api_url}{get.path}")
    if post:
        examples.append(
            f"curl -s -X POST {auth} -H 'content-type: application/json' -d '{{}}' {info.api_url}{post.path}"
        )
    return examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    args = parser.parse_args(argv)

    # LOCAL_STACK_STATE_DIR lets tests run a second stack without touching a developer's .local/.
    state_dir = Path(os.environ.get("LOCAL_STACK_STATE_DIR") or args.template.resolve().parent / ".local")
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        print(f"\n{signal.Signals(signum).name} received, stopping local stack...", file=sys.stderr)
        stop.set()

    # Installed before start() so a signal during startup still leads to an orderly stop.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    stack = LocalStack(args.template, port=args.port, log_dir=state_dir, log_level="info", schedules=True)
    try:
        try:
            info = stack.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            print(f"Port {args.port} is in use: stop what uses it or pick another (PORT=3001).", file=sys.stderr)
            return 1
        state = {
            "apiUrl": info.api_url,
            "demoAccountId": info.demo_account_id,
            "demoManagementKey": info.demo_management_key,
            "dynamodbUrl": info.dynamodb_url,
            "upstreamUrl": info.upstream_url,
            "stripeUrl": info.stripe_url,
            "mailUrl": info.mail_url,
            "demoEmail": info.demo_email,
            **(info.chain.to_json() if info.chain else {}),
        }
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        models = f"built-in upstream at {info.upstream_url}" if info.upstream_url else "MODEL_CATALOG_FILE"
        lines = [
            "",
            f"Local stack ready (details in {state_dir / 'stack.json'}):",
            f"  API:                  {info.api_url}",
            f"  DynamoDB Local:       {info.dynamodb_url} (log: {state_dir / 'dynamodb-local.log'})",
            f"  demo account:         {info.demo_account_id}",
            f"  demo management key:  {info.demo_management_key} ($25.00 demo credit)",
            f"  demo sign-in email:   {info.demo_email} (the code arrives in the outbox)",
            f"  mail outbox:          {info.mail_url}/messages (every message sent, newest first)",
            f"  models:               {models}",
            *(
                [f"  Stripe simulator:     {info.stripe_url} (dashboard: {info.stripe_url}/sim)"]
                if info.stripe_url
                else []
            ),
            *(
                [
                    f"  EVM chain:            {info.chain.rpc_url} (chain id {info.chain.chain_id})",
                    f"  test USDC:            {info.chain.usdc_address}, deposit address {info.chain.deposit_address}",
                    f"  test wallets:         {len(info.chain.test_wallets)} with 1,000 USDC each (keys in stack.json)",
                ]
                if info.chain
                else []
            ),
            "",
            "Try:",
            *(f"  {example}" for example in _examples(info, args.template)),
            "  then, with the apiKey it returns:",
            f"  curl -s {info.api_url}/v1/chat/completions -H 'Authorization: Bearer sk_live_…' "
            "-H 'Content-Type: application/json' "
            '-d \'{"model": "deepseek/deepseek-chat-v3-0324", "messages": [{"role": "user", "content": "Hello"}]}\'',
            "",
            "Ctrl-C stops the stack (DynamoDB Local is in memory: data is not kept).",
        ]
        print("\n".join(lines), flush=True)
        stop.wait()
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
