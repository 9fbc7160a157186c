"""``bin/admin``: operator commands, run with the operator's own AWS credentials.

Target: ``--stack NAME`` (a deployed stack: table names come from its CloudFormation outputs) or,
by default, the local stack described by ``.local/stack.json``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Environment variable read by llm_platform.config ← CloudFormation output of template.yaml.
TABLE_OUTPUTS = {
    "ACCOUNTS_TABLE": "AccountsTableName",
    "MANAGEMENT_KEYS_TABLE": "ManagementKeysTableName",
    "API_KEYS_TABLE": "ApiKeysTableName",
    "SUBSCRIPTIONS_TABLE": "SubscriptionsTableName",
    "LEDGER_TABLE": "LedgerTableName",
    "USAGE_COUNTERS_TABLE": "UsageCountersTableName",
    "PAYMENT_EVENTS_TABLE": "PaymentEventsTableName",
    "WALLETS_TABLE": "WalletsTableName",
    "REQUEST_LOG_TABLE": "RequestLogTableName",
    "RESERVATIONS_TABLE": "ReservationsTableName",
    "AUTH_TABLE": "AuthTableName",
}


class AdminError(Exception):
    pass


def target_environment(stack: str | None, region: str | None) -> dict[str, str]:
    if stack:
        import boto3

        cloudformation = boto3.client("cloudformation", region_name=region)
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        missing = [name for name in TABLE_OUTPUTS.values() if name not in outputs]
        if missing:
            raise AdminError(f"stack {stack} lacks outputs {missing}; is it this platform's stack?")
        env = {var: outputs[output] for var, output in TABLE_OUTPUTS.items()}
        if region:
            env["AWS_DEFAULT_REGION"] = region
        return env
    stack_file = Path(os.environ.get("LOCAL_STACK_STATE_DIR") or REPO_ROOT / ".local") / "stack.json"
    if not stack_file.exists():
        raise AdminError(f"no local stack found ({stack_file}); start it with `make dev` or pass --stack NAME")
    local = json.loads(stack_file.read_text())
    env = {var: output.removesuffix("Name") for var, output in TABLE_OUTPUTS.items()}
    env.update(
        DYNAMODB_ENDPOINT_URL=local["dynamodbUrl"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
    )
    return env


def run(args: argparse.Namespace) -> dict:
    # Imported after the environment is set: settings are read once.
    from llm_platform.domain import accounts, billing
    from llm_platform.domain.errors import DomainError
    from llm_platform.domain.money import format_usd, usd_to_micros

    try:
        if args.command == "create-account":
            created = accounts.create_account(args.name, email=args.email)
            result = {"accountId": created.account_id, "managementKey": created.management_key}
            if args.email:
                result["email"] = args.email.strip().lower()
            return result
        if args.command == "grant-subscription":
            subscription = billing.grant_subscription(args.account, args.plan)
            return {
                "subscriptionId": subscription.subscription_id,
                "planSlug": subscription.plan_slug,
                "currentPeriodEnd": subscription.current_period_end,
            }
        if args.command == "grant-credit":
            try:
                amount = Decimal(args.amount)
                micros = usd_to_micros(amount)
            except (InvalidOperation, ValueError) as error:
                raise AdminError(f"--amount must be a USD amount with at most 6 decimals: {error}") from error
            if micros <= 0:
                raise AdminError("--amount must be positive")
            account = accounts.grant_credit(args.account, micros, args.reason)
            return {"accountId": account.account_id, "creditBalance": format_usd(account.credit_balance_micros)}
        if args.command == "request":
            # A support question ("what did request X cost?"): the log record, whichever account it is.
            from llm_platform.api import views
            from llm_platform.data import request_log

            record = request_log.get(args.id)
            if record is None:
                raise AdminError(f"no logged request {args.id} (unknown, or past the log's retention)")
            return {"accountId": record["accountId"], **views.request_record(record)}
        if args.command == "ledger":
            # An audit of one account: its entries, newest first, their sum and the stored balance.
            from llm_platform.api import views
            from llm_platform.data import ledger

            entries, cursor = [], None
            while True:
                page = ledger.newest_first(args.account, 100, cursor)
                entries += page.items
                cursor = page.cursor
                if cursor is None:
                    break
            account = accounts.get_account(args.account)
            return {
                "accountId": args.account,
                "creditBalance": format_usd(account.credit_balance_micros),
                "ledgerSum": format_usd(sum(entry["amountMicros"] for entry in entries)),
                "entries": [views.ledger_entry(entry) for entry in entries[: args.limit]],
            }
        if args.command == "expire-subscriptions":
            from llm_platform.domain import subscriptions

            report = subscriptions.run_expiry()
            return {"renewed": report.renewed, "expired": report.expired, "keysRevoked": report.keys_revoked}
    except DomainError as error:
        raise AdminError(error.message) from error
    raise AdminError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/admin", description=__doc__)
    parser.add_argument("--stack", help="deployed CloudFormation stack name (default: the local stack)")
    parser.add_argument("--region", help="AWS region of --stack")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-account", help="create an account and its first management key")
    create.add_argument("--name", required=True)
    create.add_argument("--email", help="an address that signs in to the account (the dashboard's email code)")
    grant = commands.add_parser("grant-subscription", help="give an account a plan for one period, free")
    grant.add_argument("--account", required=True)
    grant.add_argument("--plan", required=True)
    credit = commands.add_parser("grant-credit", help="add prepaid credit (USD) to an account")
    credit.add_argument("--account", required=True)
    credit.add_argument("--amount", required=True)
    credit.add_argument("--reason", default="operator grant")
    request = commands.add_parser("request", help="one logged /v1 request by its x-request-id, with its account")
    request.add_argument("--id", required=True)
    ledger = commands.add_parser("ledger", help="an account's ledger: newest entries, their sum and the balance")
    ledger.add_argument("--account", required=True)
    ledger.add_argument("--limit", type=int, default=50, help="entries to print (the sum covers all)")
    commands.add_parser(
        "expire-subscriptions", help="run the scheduled expiry now: renew from credits or expire past period end"
    )
    args = parser.parse_args(argv)
    if args.command == "create-account" and not args.name.strip():
        parser.error("--name must not be empty")
    try:
        os.environ.update(target_environment(args.stack, args.region))
        print(json.dumps(run(args)))
    except AdminError as error:
        print(f"bin/admin: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
