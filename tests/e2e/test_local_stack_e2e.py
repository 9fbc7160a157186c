"""`make dev` end to end: the real `python -m local_stack` process, driven by `curl` exactly as the
public docs show (host swapped), `bin/admin` as an operator runs it, and Ctrl-C stopping it all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stacks import local_stack_process

REPO = Path(__file__).resolve().parents[2]


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    state_dir = tmp_path_factory.mktemp("state")
    with local_stack_process(state_dir) as (process, info):
        yield {**info, "process": process, "stateDir": state_dir}


def curl(*args: str) -> dict:
    result = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def admin(stack: dict, *args: str) -> dict:
    env = {**os.environ, "LOCAL_STACK_STATE_DIR": str(stack["stateDir"])}
    result = subprocess.run([str(REPO / "bin" / "admin"), *args], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_stack_json_describes_the_running_stack(stack) -> None:
    assert stack["apiUrl"].startswith("http://127.0.0.1:")
    assert stack["demoManagementKey"].startswith("mk_")
    assert stack["dynamodbUrl"].startswith("http://")
    assert _port_open(stack["apiUrl"]) and _port_open(stack["dynamodbUrl"]) and _port_open(stack["rpcUrl"])
    assert stack["chainId"] == 31337
    assert stack["demoEmail"] == "demo@example.com" and _port_open(stack["mailUrl"])
    assert stack["usdcAddress"].startswith("0x") and stack["depositAddress"].startswith("0x")
    assert len(stack["testWallets"]) >= 2
    assert all(w["address"].startswith("0x") and w["privateKey"].startswith("0x") for w in stack["testWallets"])


def test_the_documented_usdc_top_up_with_curl(stack) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from local_stack import chain as localchain

    api, mk = stack["apiUrl"], admin(stack, "create-account", "--name", "usdc payer")["managementKey"]
    auth = ["-H", f"Authorization: Bearer {mk}", "-H", "Content-Type: application/json"]
    # 1. Get payment address
    topup = curl("-X", "POST", f"{api}/api/billing/topup", *auth, "-d", '{"amount": 50, "method": "usdc"}')["data"]
    assert {k: topup[k] for k in ("address", "chain", "amount")} == {
        "address": stack["depositAddress"],
        "chain": "base",
        "amount": "50",
    }
    # (bind the paying wallet: challenge, personal_sign, bind: the answer says so)
    assert topup["walletBinding"]["bind"] == "POST /api/billing/wallets"
    payer = stack["testWallets"][0]
    challenge = curl(
        "-X", "POST", f"{api}/api/billing/wallets/challenge", *auth, "-d", json.dumps({"address": payer["address"]})
    )["data"]
    signature = Account.from_key(payer["privateKey"]).sign_message(encode_defunct(text=challenge["message"])).signature
    curl(
        "-X",
        "POST",
        f"{api}/api/billing/wallets",
        *auth,
        "-d",
        json.dumps({"address": payer["address"], "signature": "0x" + signature.hex().removeprefix("0x")}),
    )
    # 2. Send USDC on the chain, then verify
    w3 = localchain.connect(stack["rpcUrl"])
    tx = localchain.send_usdc(w3, stack["usdcAddress"], payer["privateKey"], stack["depositAddress"], 50 * 10**6)
    verified = curl(
        "-X", "POST", f"{api}/api/billing/verify-topup", *auth, "-d", json.dumps({"txHash": tx, "amount": 50})
    )
    assert verified["data"]["credited"] == "50.00"
    assert verified["data"]["creditBalance"] == "50.00"


def test_the_documented_curl_examples_work(stack) -> None:
    api, mk = stack["apiUrl"], stack["demoManagementKey"]
    # curl https://…/api/billing/status -H "Authorization: Bearer mk_your_management_key"
    status = curl(f"{api}/api/billing/status", "-H", f"Authorization: Bearer {mk}")
    assert status["data"]["creditBalance"] == "25.00"  # the local demo credit
    # A subscription to attach keys to (an operator grant here; paying by card: the browser test below)
    granted = admin(stack, "grant-subscription", "--account", stack["demoAccountId"], "--plan", "pro")
    # curl -X POST …/api/keys/subscription … -d '{"name": "prod-api", "subscriptionId": "sub_uuid"}'
    key = curl(
        "-X",
        "POST",
        f"{api}/api/keys/subscription",
        "-H",
        f"Authorization: Bearer {mk}",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps({"name": "prod-api", "subscriptionId": granted["subscriptionId"]}),
    )["data"]
    assert key["name"] == "prod-api" and key["apiKey"].startswith("sk_live_")
    # curl -X POST …/api/keys/credit … -d '{"name": "client-acme", "maxBudget": 25, "rpm": 100, "tpm": 50000}'
    credit = curl(
        "-X",
        "POST",
        f"{api}/api/keys/credit",
        "-H",
        f"Authorization: Bearer {mk}",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"name": "client-acme", "maxBudget": 25, "rpm": 100, "tpm": 50000}',
    )["data"]
    # curl …/api/keys -H "Authorization: Bearer $MK"
    listed = curl(f"{api}/api/keys", "-H", f"Authorization: Bearer {mk}")["data"]
    assert {k["name"] for k in listed} == {"prod-api", "client-acme"}
    # curl -X DELETE …/api/keys/KEY_ID
    deleted = curl("-X", "DELETE", f"{api}/api/keys/{credit['id']}", "-H", f"Authorization: Bearer {mk}")
    assert deleted["data"]["revoked"] is True
    # curl …/api/usage  (the "Tracking keys" example)
    usage = curl(f"{api}/api/usage", "-H", f"Authorization: Bearer {mk}")["data"]
    assert {(k["name"], k["status"]) for k in usage} == {("prod-api", "active"), ("client-acme", "revoked")}
    status = curl(f"{api}/api/billing/status", "-H", f"Authorization: Bearer {mk}")["data"]
    assert status["subscriptions"][0]["id"] == granted["subscriptionId"]
    assert status["subscriptions"][0]["keys"] == [{"id": key["id"], "name": "prod-api"}]


def pay_in_browser(session_url: str, screenshot: Path) -> dict:
    """A customer in a real (headless Debian chromium) browser: open the Checkout page, click Pay."""
    result = subprocess.run(
        ["node", str(REPO / "tests" / "e2e" / "browser" / "pay.mjs"), session_url, str(screenshot)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_documented_complete_example_paying_in_a_browser(stack, tmp_path) -> None:
    """The docs' "complete example": checkout, pay in the browser, status, key, inference."""
    api = stack["apiUrl"] + "/api"
    mk = admin(stack, "create-account", "--name", "card customer")["managementKey"]
    auth = ["-H", f"Authorization: Bearer {mk}", "-H", "Content-Type: application/json"]
    # 1. Subscribe to Pro
    session = curl("-X", "POST", f"{api}/billing/checkout", *auth, "-d", '{"planSlug": "pro"}')["data"]["sessionUrl"]
    assert session.startswith(stack["stripeUrl"] + "/c/pay/cs_test_")
    # (pay at the session URL: the simulator's page, its Pay button, the signed webhooks it delivers)
    paid = pay_in_browser(session, tmp_path / "paid.png")
    # Checkout sends the customer back to the dashboard's billing page
    assert paid["finalUrl"].startswith(stack["apiUrl"] + "/?checkout=success&session_id=cs_test_"), paid
    assert paid["finalUrl"].endswith("#/billing")
    # 2. After payment, check status
    status = curl(f"{api}/billing/status", "-H", f"Authorization: Bearer {mk}")["data"]
    [subscription] = status["subscriptions"]
    assert (subscription["planSlug"], subscription["status"], subscription["keyCount"]) == ("pro", "active", 0)
    # 3. Create a key
    key = curl(
        "-X",
        "POST",
        f"{api}/keys/subscription",
        *auth,
        "-d",
        json.dumps({"name": "my-app", "subscriptionId": subscription["id"]}),
    )["data"]["apiKey"]
    # 4. Use it
    completion = curl(
        f"{stack['apiUrl']}/v1/chat/completions",
        "-H",
        f"Authorization: Bearer {key}",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"model": "deepseek/deepseek-chat-v3-0324", "messages": [{"role": "user", "content": "Hello!"}]}',
    )
    assert completion["choices"][0]["message"]["content"] and completion["usage"]["total_tokens"] > 0


def test_a_card_top_up_paid_in_a_browser(stack, tmp_path) -> None:
    api, mk = stack["apiUrl"], admin(stack, "create-account", "--name", "card top-up")["managementKey"]
    auth = ["-H", f"Authorization: Bearer {mk}", "-H", "Content-Type: application/json"]
    # curl -X POST …/api/billing/topup … -d '{"amount": 50, "method": "stripe"}'  → a sessionUrl (minimum $10)
    session = curl("-X", "POST", f"{api}/api/billing/topup", *auth, "-d", '{"amount": 50, "method": "stripe"}')
    pay_in_browser(session["data"]["sessionUrl"], tmp_path / "topup.png")
    status = curl(f"{api}/api/billing/status", "-H", f"Authorization: Bearer {mk}")["data"]
    assert status["creditBalance"] == "50.00"
    # A renewal and a failed payment can be triggered on the simulator, as its dashboard's buttons do
    assert (
        "Renew"
        in subprocess.run(
            ["curl", "-sS", f"{stack['stripeUrl']}/sim"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    )


def test_admin_creates_an_account_whose_key_works(stack) -> None:
    created = admin(stack, "create-account", "--name", "first customer")
    assert set(created) == {"accountId", "managementKey"} and created["managementKey"].startswith("mk_")
    me = curl(f"{stack['apiUrl']}/api/management-keys", "-H", f"Authorization: Bearer {created['managementKey']}")
    assert [k["current"] for k in me["data"]] == [True]
    credited = admin(stack, "grant-credit", "--account", created["accountId"], "--amount", "25")
    assert credited["creditBalance"] == "25.00"
    status = curl(f"{stack['apiUrl']}/api/billing/status", "-H", f"Authorization: Bearer {created['managementKey']}")
    assert status["data"]["creditBalance"] == "25.00"


def test_admin_creates_an_account_that_signs_in_by_email(stack) -> None:
    created = admin(stack, "create-account", "--name", "email customer", "--email", " Owner@Customer.example ")
    assert created["email"] == "owner@customer.example"
    api = stack["apiUrl"]
    browser = ["-H", f"Origin: {api}", "-H", "Content-Type: application/json"]
    curl("-X", "POST", f"{api}/api/auth/email/start", *browser, "-d", '{"email": "owner@customer.example"}')
    from tests.support.sign_in import latest_code

    code = latest_code(stack["mailUrl"], "owner@customer.example")
    body = json.dumps({"email": "owner@customer.example", "code": code})
    verified = curl("-X", "POST", f"{api}/api/auth/email/verify", *browser, "-d", body)
    assert verified["data"] == {"accountId": created["accountId"], "created": False}
    # The same address cannot be given to a second account
    env = {**os.environ, "LOCAL_STACK_STATE_DIR": str(stack["stateDir"])}
    again = subprocess.run(
        [str(REPO / "bin" / "admin"), "create-account", "--name", "x", "--email", "owner@customer.example"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert again.returncode == 2 and "already signs in" in again.stderr


def test_admin_runs_the_expiry_on_demand(stack) -> None:
    created = admin(stack, "create-account", "--name", "expiry check")
    admin(stack, "grant-subscription", "--account", created["accountId"], "--plan", "standard")
    report = admin(stack, "expire-subscriptions")
    assert set(report) == {"renewed", "expired", "keysRevoked"}
    status = curl(f"{stack['apiUrl']}/api/billing/status", "-H", f"Authorization: Bearer {created['managementKey']}")
    assert status["data"]["subscriptions"][0]["status"] == "active"  # not due: untouched


def test_history_as_a_customer_and_an_operator_reads_it(stack) -> None:
    # Given an account with credit and a credit key that made one request, over curl as the docs show
    api = stack["apiUrl"]
    created = admin(stack, "create-account", "--name", "history check")
    admin(stack, "grant-credit", "--account", created["accountId"], "--amount", "3")
    auth = ["-H", f"Authorization: Bearer {created['managementKey']}", "-H", "Content-Type: application/json"]
    key = curl(
        "-X",
        "POST",
        f"{api}/api/keys/credit",
        *auth,
        "-d",
        '{"name": "client-acme", "budgetReset": "monthly", "maxBudget": 1}',
    )
    chat = '{"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}'
    bearer = f"Authorization: Bearer {key['data']['apiKey']}"
    result = subprocess.run(
        ["curl", "-sS", "-D", "-", f"{api}/v1/chat/completions", "-H", bearer, "-H", "Content-Type: application/json",
         "-d", chat],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    request_id = next(
        line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.lower().startswith("x-request-id:")
    )
    # Then the customer finds it in the log, the day's usage and the ledger
    [record] = curl(f"{api}/api/requests", *auth[:2])["data"]
    assert record["id"] == request_id and record["status"] == 200
    [day] = curl(f"{api}/api/usage/daily", *auth[:2])["data"]
    assert (day["requests"], day["spend"]) == (1, record["cost"])
    kinds = [entry["kind"] for entry in curl(f"{api}/api/billing/ledger", *auth[:2])["data"]]
    assert kinds == ["usage", "grant"]
    # And the operator finds the request by its id alone, and audits the account's ledger
    assert admin(stack, "request", "--id", request_id)["accountId"] == created["accountId"]
    audit = admin(stack, "ledger", "--account", created["accountId"])
    assert audit["ledgerSum"] == audit["creditBalance"] and len(audit["entries"]) == 2


def test_admin_refuses_bad_input_clearly(stack) -> None:
    env = {**os.environ, "LOCAL_STACK_STATE_DIR": str(stack["stateDir"])}
    for args in (
        ["grant-credit", "--account", "acct_nope", "--amount", "5"],
        ["grant-subscription", "--account", "acct_nope", "--plan", "pro"],
        ["grant-credit", "--account", "acct_nope", "--amount", "1.0000001"],
        ["request", "--id", "00000000-0000-0000-0000-000000000000"],
        ["ledger", "--account", "acct_nope"],
    ):
        result = subprocess.run(
            [str(REPO / "bin" / "admin"), *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 2 and result.stderr.startswith("bin/admin: "), result.stderr
        assert result.stdout == ""


def test_sign_in_as_the_demo_email_with_the_code_from_the_outbox(stack) -> None:
    import re

    api, mail = stack["apiUrl"], stack["mailUrl"]
    assert stack["demoEmail"] and mail.startswith("http://127.0.0.1:")
    browser = ["-H", f"Origin: {api}", "-H", "Content-Type: application/json"]
    # Given the sign-in page's first step: the demo email
    started = curl(
        "-X", "POST", f"{api}/api/auth/email/start", *browser, "-d", json.dumps({"email": stack["demoEmail"]})
    )
    assert started == {"data": {"sent": True}}
    # When the code is read from the outbox, over HTTP, newest message first
    messages = curl(f"{mail}/messages")
    assert set(messages[0]) == {"to", "subject", "text", "sentAt"} and messages[0]["to"] == stack["demoEmail"]
    code = re.search(r"\b(\d{6})\b", messages[0]["text"]).group(1)
    # And sent back: the session cookie is set (a curl cookie jar, as a browser keeps it)
    jar = stack["stateDir"] / "cookies.txt"
    verified = curl(
        "-X", "POST", f"{api}/api/auth/email/verify", *browser, "-c", str(jar),
        "-d", json.dumps({"email": stack["demoEmail"], "code": code}),
    )  # fmt: skip
    # Then it is the demo account, with its $25 demo credit, through the cookie alone
    assert verified["data"] == {"accountId": stack["demoAccountId"], "created": False}
    assert "llm_session" in jar.read_text()
    status = curl(f"{api}/api/billing/status", "-b", str(jar), "-H", f"Origin: {api}")
    assert status["data"]["creditBalance"] == "25.00"
    # And signing out ends it
    assert curl("-X", "POST", f"{api}/api/auth/logout", "-b", str(jar), "-H", f"Origin: {api}")["data"]["signedOut"]
    ended = curl(f"{api}/api/billing/status", "-b", str(jar), "-H", f"Origin: {api}")
    assert ended["error"]["code"] == "invalid_session"


def test_ctrl_c_stops_everything(stack) -> None:
    # Runs last in this module: it stops the stack the other tests used.
    process = stack["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert not _port_open(stack["apiUrl"])
    assert not _port_open(stack["dynamodbUrl"])  # DynamoDB Local went with it
    assert not _port_open(stack["rpcUrl"])  # and the chain
