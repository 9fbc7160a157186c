"""Tenant isolation over real HTTP on the local stack (SPEC §2: "a key of one account is never visible or
changeable through another account (404)").

Two accounts, A (the victim) and B (the attacker), each hold every kind of object: a sign-in address and a
dashboard session, credit keys (active, disabled, revoked), subscription keys on a credit-paid, an
operator-granted and a Stripe-paid subscription, a second management key, a bound wallet with a claimed and
an unclaimed USDC transfer, a wallet with an open challenge, a card top-up and usage on /v1. Then B acts on
A's ids on every route of template.yaml that takes
an id (a path parameter or a body field naming another object), with every method, and:
- every attempt is refused without revealing A's object (404, or the route's documented refusal);
- A's items in every table are unchanged, and nothing outside B's own items changed either;
- B's list/read routes never show any of A's ids, names, prefixes, secrets or addresses;
- B's API keys on /v1 only ever spend B's money;
- all of this again with B signed in by the session cookie instead of a management key, and no session or
  sign-in address of B's ever reaches A's account.

The route list comes from the template, so a new route with an id fails `test_every_template_route_is_in_the_matrix`
until it is given an attack here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from llm_platform.domain import billing, history
from llm_platform.domain.accounts import CreatedAccount, create_account, grant_credit
from llm_platform.domain.sign_in import link_email
from local_stack import chain as localchain
from local_stack.template import ApiRoute, api_routes, load_template
from tests.support.sign_in import latest_code, session_headers, sign_in

REPO_ROOT = Path(__file__).resolve().parents[2]
USDC = 10**6
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A body field names another object when it is an id, a hash or an address (subscriptionId, txHash, address…).
ID_FIELD = re.compile(r"(?:Id|_id|Hash|_hash|address|Address)$|^id$")

# ---------------------------------------------------------------------------------------------------------
# The matrix: every template route is classified here. "id" routes get attacks (ATTACKS below); "list" routes
# get the leak check; "no_id" routes carry nothing naming another object (the reason says why).
# ---------------------------------------------------------------------------------------------------------
LIST_ROUTES = {
    ("GET", "/api/billing/status"),
    ("GET", "/api/keys"),
    ("GET", "/api/usage"),
    ("GET", "/api/management-keys"),
    ("GET", "/api/billing/wallets"),
    ("GET", "/api/billing/ledger"),
    ("GET", "/api/usage/daily"),
    ("GET", "/api/requests"),
    ("GET", "/v1/models"),  # the catalog, nothing per account
    ("GET", "/v1/models/{model+}"),  # one catalog entry: its id is the public model id, nothing per account
    ("GET", "/v1/key"),  # the calling key's own limits and spend
    ("GET", "/api/plans"),  # the plans on sale: the same for every account
}
NO_ID_ROUTES = {
    ("POST", "/api/keys/credit"): "body {name, maxBudget, rpm, tpm}: creates B's own key",
    ("POST", "/api/management-keys"): "body {name}: creates B's own management key",
    ("POST", "/api/billing/subscribe"): "body {planSlug, createKey, keyName}: pays from B's own balance",
    ("POST", "/api/billing/checkout"): "body {planSlug}: a Checkout Session for B's own account",
    ("POST", "/api/billing/topup"): "body {amount, method}: B's own top-up instructions",
    ("POST", "/v1/chat/completions"): "OpenAI body, no object ids: covered by test_b_api_keys_never_spend_a_money",
    ("GET", "/"): "the dashboard's static page: the same bytes for everyone, no account data",
    ("GET", "/assets/app.js"): "the dashboard's static script: the same bytes for everyone",
    ("GET", "/assets/app.css"): "the dashboard's static stylesheet: the same bytes for everyone",
    ("GET", "/assets/icon.svg"): "the dashboard's static icon: the same bytes for everyone",
    ("GET", "/assets/openapi.json"): "the API reference the dashboard links to: the same bytes for everyone",
    ("POST", "/v1/embeddings"): "OpenAI body {model, input, …}, no object ids: covered by "
    "test_b_api_keys_never_spend_a_money",
    ("POST", "/api/auth/email/start"): "body {email}: mails a code to that address, whoever asks; covered by "
    "test_b_cannot_sign_in_to_a_or_use_a_session",
    ("POST", "/api/auth/email/verify"): "body {email, code}: signs in to that address's account only with the "
    "code mailed to it; covered by test_b_cannot_sign_in_to_a_or_use_a_session",
    ("POST", "/api/auth/logout"): "ends the session of the cookie sent (the caller's own); covered by "
    "test_b_cannot_sign_in_to_a_or_use_a_session",
    **{
        ("OPTIONS", path): "CORS preflight: no key, no body, reads nothing (tests/integration/test_cors_http.py)"
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/models/{model+}", "/v1/key")
    },
}
# Path parameters that name public catalog entries (the same for every account), not objects of an account.
CATALOG_PATH_PARAMETERS = {"{model+}"}
# Routes that take an id although their request schema does not say so (no pydantic schema in the handler).
IDS_OUTSIDE_A_SCHEMA = {
    ("POST", "/api/billing/webhook"): "a Stripe event naming accounts, subscriptions and sessions in its body",
}


def template_routes() -> list[ApiRoute]:
    return api_routes(load_template(REPO_ROOT / "template.yaml"))


def body_fields(route: ApiRoute) -> set[str]:
    """The JSON field names of the route's request schema (read from the handler's import of it)."""
    from llm_platform.api import schemas

    handler = REPO_ROOT / route.code_uri / "handler.py"
    if not handler.exists():
        return set()
    names: set[str] = set()
    for imported in re.findall(r"from llm_platform\.api\.schemas import ([\w, ]+)", handler.read_text()):
        for class_name in (n.strip() for n in imported.split(",")):
            model = getattr(schemas, class_name)
            names |= {info.alias or name for name, info in model.model_fields.items()}
    return names


def takes_an_id(route: ApiRoute) -> bool:
    path_ids = [s for s in route.path.split("/") if s.startswith("{") and s not in CATALOG_PATH_PARAMETERS]
    if path_ids or (route.method, route.path) in IDS_OUTSIDE_A_SCHEMA:
        return True
    return any(ID_FIELD.search(name) for name in body_fields(route))


# ---------------------------------------------------------------------------------------------------------
# Building a tenant with every kind of object
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Tenant:
    label: str
    account: CreatedAccount
    account_name: str
    mk: dict[str, Any] = field(default_factory=dict)  # the second management key {id, name, managementKey}
    credit_key: dict[str, Any] = field(default_factory=dict)
    disabled_key: dict[str, Any] = field(default_factory=dict)
    revoked_key: dict[str, Any] = field(default_factory=dict)
    credit_sub_id: str = ""
    credit_sub_key: dict[str, Any] = field(default_factory=dict)
    granted_sub_id: str = ""
    granted_sub_key: dict[str, Any] = field(default_factory=dict)
    stripe_sub_id: str = ""
    stripe_sub_key: dict[str, Any] = field(default_factory=dict)
    stripe_subscription: str = ""  # Stripe's own id (sub_…)
    checkout_sessions: list[str] = field(default_factory=list)
    wallet: LocalAccount | None = None
    claimed_tx: str = ""
    unclaimed_tx: str = ""
    unclaimed_amount: int = 0
    pending_wallet: LocalAccount | None = None
    pending_signature: str = ""  # A's own signature over A's open challenge for pending_wallet
    rotated_key: dict[str, Any] = field(default_factory=dict)  # rotated with a grace period: two live secrets
    rotated_old_secret: str = ""
    request_ids: list[str] = field(default_factory=list)  # x-request-id of the tenant's /v1 calls
    email: str = ""  # signs in to this account
    session_token: str = ""  # a dashboard session (the cookie's value)
    api_url: str = ""
    by_session: bool = False  # authenticate by the session cookie instead of the management key

    @property
    def headers(self) -> dict[str, str]:
        if self.by_session:
            return session_headers(self.api_url, self.session_token)
        return {"Authorization": f"Bearer {self.account.management_key}"}

    @property
    def api_keys(self) -> list[dict[str, Any]]:
        return [
            self.credit_key,
            self.disabled_key,
            self.revoked_key,
            self.credit_sub_key,
            self.granted_sub_key,
            self.stripe_sub_key,
            self.rotated_key,
        ]

    @property
    def subscription_ids(self) -> list[str]:
        return [self.credit_sub_id, self.granted_sub_id, self.stripe_sub_id]

    @property
    def mk_ids(self) -> list[str]:
        return [self.account.management_key_id, self.mk["id"]]

    @property
    def key_hashes(self) -> list[str]:
        secrets_ = [k["apiKey"] for k in self.api_keys] + [self.account.management_key, self.mk["managementKey"]]
        secrets_.append(self.rotated_old_secret)
        return [hashlib.sha256(s.encode()).hexdigest() for s in secrets_]

    @property
    def addresses(self) -> list[str]:
        return [w.address for w in (self.wallet, self.pending_wallet) if w is not None]

    def owned_ids(self) -> list[str]:
        """What identifies this tenant's items in the tables (account, key, subscription ids, hashes, txs)."""
        return [
            self.account.account_id,
            *self.mk_ids,
            *(k["id"] for k in self.api_keys),
            *self.key_hashes,
            *self.subscription_ids,
            self.stripe_subscription,
            *self.checkout_sessions,
            self.claimed_tx,
            *self.request_ids,
            self.email,
            hashlib.sha256(self.session_token.encode()).hexdigest(),
        ]

    def identifiers(self, api: httpx.Client) -> set[str]:
        """Everything of this tenant another account must never see, read from its own list routes too."""
        found = {
            *self.owned_ids(),
            self.account_name,
            self.account.management_key,
            self.mk["managementKey"],
            self.mk["name"],
            self.unclaimed_tx,
            *(k["apiKey"] for k in self.api_keys),
            self.rotated_old_secret,
            *(k["name"] for k in self.api_keys),
            *self.addresses,
            self.session_token,
        }
        for key in ok(api.get("/api/keys", headers=self.headers)):
            found |= {key["id"], key["name"], key["prefix"]}
        for key in ok(api.get("/api/management-keys", headers=self.headers)):
            found |= {key["id"], key["name"], key["prefix"]}
        for wallet in ok(api.get("/api/billing/wallets", headers=self.headers)):
            found.add(wallet["address"])
        return {value.lower() for value in found if value}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()["data"]


def chat(api: httpx.Client, api_key: str, **extra: Any) -> httpx.Response:
    return api.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"model": "test/echo", "messages": [{"role": "user", "content": "isolation"}], **extra},
    )


def fresh_wallet(local_stack: Any, usdc: int) -> LocalAccount:
    """A new wallet of its own (the shared test wallets bind once per session), with gas and test USDC."""
    chain = local_stack.chain
    w3 = localchain.connect(chain.rpc_url)
    wallet = Account.create()
    w3.provider.make_request("hardhat_setBalance", [wallet.address, hex(10**20)])  # type: ignore[arg-type]
    localchain.mint(w3, chain.usdc_address, chain.operator["privateKey"], wallet.address, usdc)
    return wallet


def sign(wallet: LocalAccount, message: str) -> str:
    return "0x" + wallet.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def challenge(api: httpx.Client, tenant: Tenant, wallet: LocalAccount) -> str:
    response = api.post("/api/billing/wallets/challenge", headers=tenant.headers, json={"address": wallet.address})
    return ok(response, 201)["message"]


def pay_checkout(api: httpx.Client, local_stack: Any, tenant: Tenant, path: str, body: dict[str, Any]) -> None:
    session_url = ok(api.post(path, headers=tenant.headers, json=body))["sessionUrl"]
    session_id = session_url.rstrip("/").rsplit("/", 1)[-1]
    paid = local_stack.stripe.pay(session_id)  # delivers the webhooks synchronously
    assert {event["status"] for event in paid["events"]} == {200}, paid["events"]
    tenant.checkout_sessions.append(session_id)


def build_tenant(api: httpx.Client, local_stack: Any, label: str) -> Tenant:
    tag = f"{label}-{secrets.token_hex(4)}"
    account_name = f"tenant-{tag}"
    tenant = Tenant(label, create_account(account_name), account_name, api_url=str(api.base_url).rstrip("/"))
    grant_credit(tenant.account.account_id, 200 * USDC, f"isolation matrix {tag}")
    # A sign-in address and a dashboard session, signed in as a person does (code from the outbox)
    tenant.email = link_email(f"{tag}@isolation.example", tenant.account.account_id)
    tenant.session_token, signed_in = sign_in(api, local_stack.mail_url, tenant.email)
    assert signed_in == {"accountId": tenant.account.account_id, "created": False}
    headers = tenant.headers
    # A second management key
    tenant.mk = ok(api.post("/api/management-keys", headers=headers, json={"name": f"mk-{tag}"}), 201)
    # Credit keys: active, disabled, revoked
    tenant.credit_key = ok(
        api.post("/api/keys/credit", headers=headers, json={"name": f"credit-{tag}", "maxBudget": 5}), 201
    )
    tenant.disabled_key = ok(api.post("/api/keys/credit", headers=headers, json={"name": f"disabled-{tag}"}), 201)
    ok(api.patch(f"/api/keys/{tenant.disabled_key['id']}", headers=headers, json={"disabled": True}))
    tenant.revoked_key = ok(api.post("/api/keys/credit", headers=headers, json={"name": f"revoked-{tag}"}), 201)
    ok(api.delete(f"/api/keys/{tenant.revoked_key['id']}", headers=headers))
    # A subscription paid from credits, with its key
    subscribed = ok(
        api.post(
            "/api/billing/subscribe",
            headers=headers,
            json={"planSlug": "standard", "createKey": True, "keyName": f"credit-sub-{tag}"},
        ),
        201,
    )
    tenant.credit_sub_id, tenant.credit_sub_key = subscribed["subscription"]["id"], subscribed["key"]
    # An operator-granted subscription, with a key made over HTTP
    tenant.granted_sub_id = billing.grant_subscription(tenant.account.account_id, "pro").subscription_id
    tenant.granted_sub_key = ok(
        api.post(
            "/api/keys/subscription",
            headers=headers,
            json={"name": f"granted-sub-{tag}", "subscriptionId": tenant.granted_sub_id},
        ),
        201,
    )
    # A Stripe-paid subscription (Checkout paid on the simulator), with a key, and a card top-up
    known = set(tenant.subscription_ids)
    pay_checkout(api, local_stack, tenant, "/api/billing/checkout", {"planSlug": "pro"})
    [stripe_sub] = [
        s for s in ok(api.get("/api/billing/status", headers=headers))["subscriptions"] if s["id"] not in known
    ]
    tenant.stripe_sub_id = stripe_sub["id"]
    [stripe_side] = [
        s for s in local_stack.stripe.subscriptions() if s["metadata"].get("accountId") == tenant.account.account_id
    ]
    tenant.stripe_subscription = stripe_side["id"]
    tenant.stripe_sub_key = ok(
        api.post(
            "/api/keys/subscription",
            headers=headers,
            json={"name": f"stripe-sub-{tag}", "subscriptionId": tenant.stripe_sub_id},
        ),
        201,
    )
    pay_checkout(api, local_stack, tenant, "/api/billing/topup", {"amount": 10, "method": "stripe"})
    # A bound wallet with one claimed and one unclaimed USDC transfer, and a wallet with an open challenge
    chain = local_stack.chain
    w3 = localchain.connect(chain.rpc_url)
    tenant.wallet = fresh_wallet(local_stack, 100 * USDC)
    message = challenge(api, tenant, tenant.wallet)
    bound = api.post(
        "/api/billing/wallets",
        headers=headers,
        json={"address": tenant.wallet.address, "signature": sign(tenant.wallet, message)},
    )
    ok(bound, 201)
    pk = "0x" + bytes(tenant.wallet.key).hex()
    tenant.claimed_tx = localchain.send_usdc(w3, chain.usdc_address, pk, chain.deposit_address, 12 * USDC)
    ok(api.post("/api/billing/verify-topup", headers=headers, json={"txHash": tenant.claimed_tx, "amount": 12}))
    tenant.unclaimed_amount = 7
    tenant.unclaimed_tx = localchain.send_usdc(w3, chain.usdc_address, pk, chain.deposit_address, 7 * USDC)
    tenant.pending_wallet = Account.create()
    tenant.pending_signature = sign(tenant.pending_wallet, challenge(api, tenant, tenant.pending_wallet))
    # A credit key rotated with a grace period (its old and new secrets both work), with limits set
    rotated = ok(api.post("/api/keys/credit", headers=headers, json={"name": f"rotated-{tag}"}), 201)
    tenant.rotated_old_secret = rotated["apiKey"]
    ok(
        api.patch(
            f"/api/keys/{rotated['id']}", headers=headers, json={"rpm": 50, "budgetReset": "daily", "maxBudget": 1}
        )
    )
    new = ok(api.post(f"/api/keys/{rotated['id']}/rotate", headers=headers, json={"gracePeriodSeconds": 3600}))
    tenant.rotated_key = {**rotated, "apiKey": new["apiKey"]}
    # Both tenants' history on log shards (the same 4: their records' index values share the shard numbers)
    for key in (tenant.credit_key, tenant.credit_sub_key, tenant.granted_sub_key, tenant.stripe_sub_key, rotated):
        history.shard_history(tenant.account.account_id, key["id"], 4)
    # Usage on /v1 from every kind of key that can serve (logged, counted per day, in the ledger)
    for key in (
        tenant.credit_key,
        tenant.credit_sub_key,
        tenant.granted_sub_key,
        tenant.stripe_sub_key,
        tenant.rotated_key,
        {"apiKey": tenant.rotated_old_secret},
    ):
        response = chat(api, key["apiKey"])
        assert response.status_code == 200
        tenant.request_ids.append(response.headers["x-request-id"])
    stored = [stored_log_item(request_id) for request_id in tenant.request_ids]
    assert all(item["accountId"]["S"] == f"{tenant.account.account_id}#{item['logShard']['N']}" for item in stored)
    return tenant


def stored_log_item(request_id: str) -> dict[str, Any]:
    """A request's log record as stored (a sharded one's index values carry their shard)."""
    from llm_platform.config import get_settings
    from llm_platform.data.dynamo import client

    table = get_settings().request_log_table
    return client().get_item(TableName=table, Key={"requestId": {"S": request_id}}, ConsistentRead=True)["Item"]


@dataclass
class World:
    a: Tenant
    b: Tenant


@pytest.fixture(scope="module")
def api(local_stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def world(api, local_stack) -> World:
    world = World(a=build_tenant(api, local_stack, "victim"), b=build_tenant(api, local_stack, "attacker"))
    assert local_stack.stripe.drain(), "the Stripe simulator still had deliveries queued"
    return world


# ---------------------------------------------------------------------------------------------------------
# Snapshots of the tables
# ---------------------------------------------------------------------------------------------------------
def scan_all(ddb: Any, table_names: dict[str, str]) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for logical_id, table in sorted(table_names.items()):
        items: list[str] = []
        for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            items += [json.dumps(item, sort_keys=True, default=str) for item in page["Items"]]
        tables[logical_id] = sorted(items)
    return tables


def only(tables: dict[str, list[str]], needles: list[str], keep: bool) -> dict[str, list[str]]:
    """Items mentioning (keep=True) or not mentioning (keep=False) any of the needles (case-insensitive)."""
    lowered = [n.lower() for n in needles if n]
    return {
        table: [item for item in items if any(n in item.lower() for n in lowered) == keep]
        for table, items in tables.items()
    }


def assert_unchanged(before: dict[str, list[str]], after: dict[str, list[str]], what: str) -> None:
    for table in before:
        gone = sorted(set(before[table]) - set(after[table]))
        new = sorted(set(after[table]) - set(before[table]))
        assert not gone and not new, f"{what} changed in {table}:\n- {gone}\n+ {new}"


class Snapshot:
    """A's items in every table (by accountId, keyHash, key/subscription ids…), and every item that is not B's."""

    def __init__(self, ddb: Any, local_stack: Any, world: World) -> None:
        self.ddb, self.table_names, self.world = ddb, local_stack.table_names, world
        self.before = scan_all(ddb, self.table_names)
        self.a_items = only(self.before, world.a.owned_ids(), keep=True)
        # A has items in every table (so every table is compared, not vacuously)
        # (ReservationsTable holds a request's record only while it is in flight: compared, usually empty.)
        empty = sorted(table for table, items in self.a_items.items() if not items and table != "ReservationsTable")
        assert not empty, f"A has no items in {empty}: the snapshot would not compare them"

    def assert_a_unchanged(self) -> None:
        after = scan_all(self.ddb, self.table_names)
        assert_unchanged(self.a_items, only(after, self.world.a.owned_ids(), keep=True), "A's items")
        # And nothing else changed either, except B's own items (B's challenges, counters, ledger…)
        b_ids = self.world.b.owned_ids()
        assert_unchanged(only(self.before, b_ids, keep=False), only(after, b_ids, keep=False), "non-B items")


# ---------------------------------------------------------------------------------------------------------
# The attacks: B acts on A's ids, per route
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Attempt:
    route: tuple[str, str]
    description: str
    response: httpx.Response
    expected: set[tuple[int, str]]
    sent: str  # the request body and path, so echoing what B sent is not a leak


Attack = Callable[[httpx.Client, World], list[Attempt]]
NOT_FOUND = {(404, "not_found")}


def attempt(
    api: httpx.Client,
    route: tuple[str, str],
    description: str,
    expected: set[tuple[int, str]],
    *,
    path: str | None = None,
    method: str | None = None,
    headers: dict[str, str],
    body: Any = None,
    content: bytes | None = None,
) -> Attempt:
    method, path = method or route[0], path or route[1]
    kwargs: dict[str, Any] = {"content": content} if content is not None else {"json": body}
    response = api.request(method, path, headers=headers, **kwargs)
    sent = path + (content.decode() if content is not None else json.dumps(body))
    return Attempt(route, description, response, expected, sent)


def foreign_ids(a: Tenant) -> dict[str, str]:
    """Every id of A that B could put into an id slot, by what it is."""
    return {
        "A credit key": a.credit_key["id"],
        "A disabled key": a.disabled_key["id"],
        "A revoked key": a.revoked_key["id"],
        "A credit-sub key": a.credit_sub_key["id"],
        "A granted-sub key": a.granted_sub_key["id"],
        "A stripe-sub key": a.stripe_sub_key["id"],
        "A first management key": a.account.management_key_id,
        "A second management key": a.mk["id"],
        "A credit-paid subscription": a.credit_sub_id,
        "A granted subscription": a.granted_sub_id,
        "A Stripe-paid subscription": a.stripe_sub_id,
        "A Stripe subscription id": a.stripe_subscription,
        "A account id": a.account.account_id,
        "A credit key hash": a.key_hashes[0],
    }


def attack_patch_key(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("PATCH", "/api/keys/{id}")
    return [
        attempt(api, route, f"{body} on {what}", NOT_FOUND, path=f"/api/keys/{an_id}", headers=w.b.headers, body=body)
        for what, an_id in foreign_ids(w.a).items()
        for body in ({"disabled": True}, {"disabled": False}, {"name": "pwned"})
    ]


def attack_patch_key_limits(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("PATCH", "/api/keys/{id}")
    bodies = ({"rpm": 1}, {"maxBudget": None, "budgetReset": None}, {"expiresAt": "2099-01-01T00:00:00Z"})
    return [
        attempt(api, route, f"{body} on {what}", NOT_FOUND, path=f"/api/keys/{an_id}", headers=w.b.headers, body=body)
        for what, an_id in foreign_ids(w.a).items()
        for body in bodies
    ]


def attack_rotate_key(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("POST", "/api/keys/{id}/rotate")
    return [
        attempt(
            api,
            route,
            f"rotate {what}",
            NOT_FOUND,
            path=f"/api/keys/{an_id}/rotate",
            headers=w.b.headers,
            body={"gracePeriodSeconds": 86_400},
        )
        for what, an_id in {**foreign_ids(w.a), "A rotated key": w.a.rotated_key["id"]}.items()
    ]


def attack_get_request(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("GET", "/api/requests/{id}")
    by_id = [
        attempt(api, route, f"read A's request {an_id}", NOT_FOUND, path=f"/api/requests/{an_id}", headers=w.b.headers)
        for an_id in w.a.request_ids
    ]
    # The list's keyId filter names a key too: A's keys are not found, not listed
    by_key = [
        attempt(
            api,
            ("GET", "/api/requests"),
            f"list by {what}",
            NOT_FOUND,
            path=f"/api/requests?keyId={an_id}",
            headers=w.b.headers,
        )
        for what, an_id in foreign_ids(w.a).items()
        if "key" in what and "management" not in what and "hash" not in what
    ]
    return by_id + by_key


def attack_delete_key(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("DELETE", "/api/keys/{id}")
    return [
        attempt(api, route, f"revoke {what}", NOT_FOUND, path=f"/api/keys/{an_id}", headers=w.b.headers)
        for what, an_id in foreign_ids(w.a).items()
    ]


def attack_delete_management_key(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("DELETE", "/api/management-keys/{id}")
    return [
        attempt(api, route, f"delete {what}", NOT_FOUND, path=f"/api/management-keys/{an_id}", headers=w.b.headers)
        for what, an_id in foreign_ids(w.a).items()
    ]


def attack_subscription_key(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("POST", "/api/keys/subscription")
    return [
        attempt(
            api, route, f"key on {what}", NOT_FOUND, headers=w.b.headers, body={"name": "x", "subscriptionId": an_id}
        )
        for what, an_id in foreign_ids(w.a).items()
    ]


def attack_cancel(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("POST", "/api/billing/cancel")
    return [
        attempt(api, route, f"cancel {what}", NOT_FOUND, headers=w.b.headers, body={"subscriptionId": an_id})
        for what, an_id in foreign_ids(w.a).items()
    ]


BOUND_ELSEWHERE = {(409, "wallet_bound_elsewhere")}  # documented: "a wallet binds to one account, once"


def attack_wallet_challenge(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("POST", "/api/billing/wallets/challenge")
    assert w.a.wallet is not None
    return [
        attempt(
            api,
            route,
            f"challenge for A's bound wallet ({spelling})",
            BOUND_ELSEWHERE,
            headers=w.b.headers,
            body={"address": address},
        )
        for spelling, address in (("checksummed", w.a.wallet.address), ("lower case", w.a.wallet.address.lower()))
    ]


def attack_bind_wallet(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("POST", "/api/billing/wallets")
    assert w.a.wallet is not None and w.a.pending_wallet is not None
    attempts = [
        # A's bound wallet, with any signature
        attempt(
            api,
            route,
            "bind A's bound wallet",
            BOUND_ELSEWHERE,
            headers=w.b.headers,
            body={"address": w.a.wallet.address, "signature": w.a.pending_signature},
        ),
        # Front-running A's open challenge with A's own signature (seen in transit): B has no challenge
        attempt(
            api,
            route,
            "A's signature over A's open challenge, B without a challenge",
            {(400, "challenge_required")},
            headers=w.b.headers,
            body={"address": w.a.pending_wallet.address, "signature": w.a.pending_signature},
        ),
    ]
    # …and with a challenge of B's own for that address (B's challenge, not A's: it reveals nothing)
    mine = api.post("/api/billing/wallets/challenge", headers=w.b.headers, json={"address": w.a.pending_wallet.address})
    ok(mine, 201)
    assert w.a.account.account_id not in mine.text and w.b.account.account_id in mine.text
    attempts.append(
        attempt(
            api,
            route,
            "A's signature over A's open challenge, B with its own challenge",
            {(403, "signature_mismatch")},
            headers=w.b.headers,
            body={"address": w.a.pending_wallet.address, "signature": w.a.pending_signature},
        )
    )
    return attempts


def attack_verify_topup(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("POST", "/api/billing/verify-topup")
    # Documented: only transfers from wallets bound to the caller count; none is 403 and nothing is recorded.
    not_bound = {(403, "wallet_not_bound")}
    return [
        attempt(
            api,
            route,
            f"claim {what}",
            not_bound,
            headers=w.b.headers,
            body={"txHash": tx, "amount": amount},
        )
        for what, tx, amount in (
            ("A's credited transfer", w.a.claimed_tx, 12),
            ("A's credited transfer, upper case", "0x" + w.a.claimed_tx[2:].upper(), 12),
            ("A's unclaimed transfer", w.a.unclaimed_tx, w.a.unclaimed_amount),
        )
    ]


def attack_webhook(api: httpx.Client, w: World) -> list[Attempt]:
    route = ("POST", "/api/billing/webhook")
    a = w.a
    events = {
        "delete A's Stripe subscription": {
            "type": "customer.subscription.deleted",
            "data": {
                "object": {
                    "object": "subscription",
                    "id": a.stripe_subscription,
                    "status": "canceled",
                    "metadata": {"accountId": a.account.account_id, "planSlug": "pro"},
                }
            },
        },
        "move A's Stripe subscription's payment to B": {
            "type": "invoice.payment_failed",
            "data": {
                "object": {
                    "object": "invoice",
                    "parent": {
                        "subscription_details": {
                            "subscription": a.stripe_subscription,
                            "metadata": {"accountId": a.account.account_id, "planSlug": "pro"},
                        }
                    },
                }
            },
        },
        "credit B with A's checkout session": {
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "object": "checkout.session",
                    "id": a.checkout_sessions[-1],
                    "mode": "payment",
                    "payment_status": "paid",
                    "amount_subtotal": 1_000_000,
                    "client_reference_id": w.b.account.account_id,
                    "metadata": {"accountId": w.b.account.account_id},
                }
            },
        },
    }
    attempts = []
    for what, event in events.items():
        payload = json.dumps({"id": f"evt_forged_{secrets.token_hex(6)}", "object": "event", **event}).encode()
        stamp = str(int(time.time()))
        wrong_secret = hmac.new(b"whsec_attacker", f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
        for signature in (None, "t=1,v1=" + "0" * 64, f"t={stamp},v1={wrong_secret}"):
            headers = {**w.b.headers, "Content-Type": "application/json"}
            if signature is not None:
                headers["Stripe-Signature"] = signature
            attempts.append(
                attempt(
                    api,
                    route,
                    f"{what}, signature {signature and signature[:12]}",
                    {(400, "invalid_signature")},
                    headers=headers,
                    content=payload,
                )
            )
    return attempts


ATTACKS: dict[tuple[str, str], Attack] = {
    ("PATCH", "/api/keys/{id}"): lambda api, w: attack_patch_key(api, w) + attack_patch_key_limits(api, w),
    ("POST", "/api/keys/{id}/rotate"): attack_rotate_key,
    ("GET", "/api/requests/{id}"): attack_get_request,
    ("DELETE", "/api/keys/{id}"): attack_delete_key,
    ("DELETE", "/api/management-keys/{id}"): attack_delete_management_key,
    ("POST", "/api/keys/subscription"): attack_subscription_key,
    ("POST", "/api/billing/cancel"): attack_cancel,
    ("POST", "/api/billing/wallets/challenge"): attack_wallet_challenge,
    ("POST", "/api/billing/wallets"): attack_bind_wallet,
    ("POST", "/api/billing/verify-topup"): attack_verify_topup,
    ("POST", "/api/billing/webhook"): attack_webhook,
}


def other_methods(api: httpx.Client, w: World) -> list[Attempt]:
    """Every other method on every id route's path, with A's id in it: no such route, nothing revealed."""
    declared = {(r.method, r.path) for r in template_routes()}
    attempts = []
    for _, path in sorted({route for route in ATTACKS if route in declared}):
        concrete = path.replace("{id}", w.a.credit_key["id"])
        body = {"subscriptionId": w.a.stripe_sub_id, "address": w.a.addresses[0], "txHash": w.a.claimed_tx}
        for method in METHODS:
            if (method, path) in declared:
                continue
            # PATCH /api/keys/subscription is PATCH /api/keys/{id} with the id "subscription": not found, or
            # its body refused; any other method and path is no route at all.
            shadowing = [
                p for m, p in declared if m == method and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", p), concrete)
            ]
            expected = {(404, "not_found"), (422, "validation_error")} if shadowing else {(404, "route_not_found")}
            attempts.append(
                attempt(
                    api,
                    ("*", path),
                    f"{method} {concrete}",
                    expected,
                    method=method,
                    path=concrete,
                    headers=w.b.headers,
                    body=None if method == "GET" else body,
                )
            )
    return attempts


def error_code(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"<not an error body: {response.text[:200]}>"


def leaks(text: str, identifiers: set[str], sent: str = "") -> list[str]:
    lowered, sent = text.lower(), sent.lower()
    return sorted(i for i in identifiers if i in lowered and i not in sent)


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------
def test_every_template_route_is_in_the_matrix() -> None:
    # Given every route of template.yaml
    routes = template_routes()
    declared = {(r.method, r.path) for r in routes}
    # Then each route is classified: attacked (takes an id), a list route, or explained as taking no id
    classified = set(ATTACKS) | LIST_ROUTES | set(NO_ID_ROUTES)
    unclassified = sorted(declared - classified)
    assert not unclassified, f"template routes missing from the isolation matrix (add them): {unclassified}"
    # And every route that takes an id (a path parameter, or an id-like body field) has attacks
    with_ids = {(r.method, r.path) for r in routes if takes_an_id(r)}
    missing = sorted(with_ids - set(ATTACKS))
    assert not missing, f"routes taking an id with no attack in ATTACKS (add one): {missing}"
    # And nothing in the matrix is stale, or claimed id-free while it takes an id
    assert not sorted(classified - declared), f"matrix entries not in the template: {classified - declared}"
    assert not (with_ids & (LIST_ROUTES | set(NO_ID_ROUTES))), "an id route is classified as id-free"
    # Sanity: the detection sees the body ids it must see
    assert {("POST", "/api/keys/subscription"), ("POST", "/api/billing/verify-topup")} <= with_ids


def attack_everything(api: httpx.Client, local_stack: Any, ddb: Any, world: World) -> None:
    """B acts on A's ids on every id route (and every other method on their paths): every attempt is refused
    as documented, reveals nothing of A's, and changes nothing but B's own items."""
    a, b = world.a, world.b
    identifiers = a.identifiers(api) - b.identifiers(api)  # minus names both share ("default")
    # Given a snapshot of A's items in every table (and of everything that is not B's)
    snapshot = Snapshot(ddb, local_stack, world)
    stripe_before = local_stack.stripe.get(a.stripe_subscription)

    # When B acts on A's ids on every id route, and with every other method on their paths
    attempts = [one for attack in ATTACKS.values() for one in attack(api, world)] + other_methods(api, world)
    assert local_stack.stripe.drain()

    # Then every attempt is refused as documented, without revealing A's objects
    wrong = [
        (a_.route, a_.description, a_.response.status_code, error_code(a_.response))
        for a_ in attempts
        if (a_.response.status_code, error_code(a_.response)) not in a_.expected
    ]
    assert not wrong, "attempts not refused as expected:\n" + "\n".join(map(str, wrong))
    revealed = [
        (a_.route, a_.description, found) for a_ in attempts if (found := leaks(a_.response.text, identifiers, a_.sent))
    ]
    assert not revealed, f"refusals revealing A's identifiers: {revealed}"
    covered = {a_.route for a_ in attempts}
    assert set(ATTACKS) <= covered
    # And A's items, and everything else that is not B's, are unchanged; Stripe was not told anything
    snapshot.assert_a_unchanged()
    assert local_stack.stripe.get(a.stripe_subscription) == stripe_before


def test_b_signed_in_by_session_acting_on_a_ids_is_refused_and_changes_nothing(api, local_stack, ddb, world) -> None:
    # Given B signed in to the dashboard (the session cookie, from the dashboard's origin), no management key
    by_session = World(a=world.a, b=replace(world.b, by_session=True))
    assert "Authorization" not in by_session.b.headers and "Cookie" in by_session.b.headers
    # Then every attack is refused and changes nothing, exactly as with B's management key (below)
    attack_everything(api, local_stack, ddb, by_session)
    # (the bind attack opened a challenge of B's own for A's pending wallet; the run below starts without it)
    assert world.a.pending_wallet is not None
    pending = f"challenge#{world.b.account.account_id}#{world.a.pending_wallet.address.lower()}"
    ddb.delete_item(TableName=local_stack.table_names["WalletsTable"], Key={"pk": {"S": pending}})


def test_b_acting_on_a_ids_is_refused_and_changes_nothing(api, local_stack, ddb, world) -> None:
    a, b = world.a, world.b
    attack_everything(api, local_stack, ddb, world)

    # And A can still use what B tried to take: claim its unclaimed transfer, bind its pending wallet
    assert a.pending_wallet is not None
    claimed = api.post(
        "/api/billing/verify-topup",
        headers=a.headers,
        json={"txHash": a.unclaimed_tx, "amount": a.unclaimed_amount},
    )
    assert ok(claimed)["credited"] == "7.00"
    bound = api.post(
        "/api/billing/wallets",
        headers=a.headers,
        json={"address": a.pending_wallet.address, "signature": a.pending_signature},
    )
    assert ok(bound, 201)["address"] == a.pending_wallet.address
    # And B, after all that, still owns nothing of A's
    assert a.pending_wallet.address not in api.get("/api/billing/wallets", headers=b.headers).text
    for key in a.api_keys[:2] + a.api_keys[3:]:
        assert chat(api, key["apiKey"]).status_code == (401 if key is a.disabled_key else 200)


def test_b_cannot_sign_in_to_a_or_use_a_session(api, local_stack, ddb, world) -> None:
    a, b = world.a, world.b
    snapshot_tables = ("AccountsTable", "ManagementKeysTable", "ApiKeysTable", "SubscriptionsTable", "LedgerTable")
    before = {t: items for t, items in scan_all(ddb, local_stack.table_names).items() if t in snapshot_tables}
    a_session = session_headers(a.api_url, a.session_token)
    assert ok(api.get("/api/billing/status", headers=a_session))  # A's session works

    # When B asks for a code for A's address and guesses it, with B's own cookie and with none
    started = api.post("/api/auth/email/start", json={"email": a.email.upper()}, headers=b.headers)
    assert started.status_code == 202  # the same answer as for any address; the code goes to A's mailbox
    real = latest_code(local_stack.mail_url, a.email)  # (A's mail: the test's oracle, not B's)
    guesses = [code for code in (f"{n:06d}" for n in range(7)) if code != real][:5]
    answers = [
        api.post("/api/auth/email/verify", json={"email": a.email, "code": guess}, headers=headers)
        for guess, headers in zip(guesses, [session_headers(b.api_url, b.session_token), {}] * 3, strict=False)
    ]
    # Then no guess signs B in, and none sets a cookie
    assert [(r.status_code, r.json()["error"]["code"]) for r in answers] == [(400, "invalid_code")] * 5
    assert not any("set-cookie" in r.headers for r in answers)
    # And after 5 wrong tries even A's real code is refused: A asks for a new one
    refused = api.post("/api/auth/email/verify", json={"email": a.email, "code": real})
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "too_many_attempts")

    # When B sends A's session id as seen in the table (its hash), A's account id, or its own token mangled
    for bogus in (hashlib.sha256(a.session_token.encode()).hexdigest(), a.account.account_id, b.session_token[:-1]):
        response = api.get("/api/billing/status", headers=session_headers(b.api_url, bogus))
        # Then it is no session
        assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_session")
    # And B's own session, sent by a page of another website, is refused before anything happens
    foreign = {**session_headers(b.api_url, b.session_token), "Origin": "https://evil.example"}
    for method, path, body in (("POST", "/api/keys/credit", {"name": "csrf"}), ("GET", "/api/keys", None)):
        response = api.request(method, path, headers=foreign, json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "origin_not_allowed")
    # And B signing out ends B's session only: A's still works, B's is gone
    assert ok(api.post("/api/auth/logout", headers=session_headers(b.api_url, b.session_token)))["signedOut"]
    assert ok(api.get("/api/billing/status", headers=a_session))["creditBalance"] == balance(api, a)
    gone = api.get("/api/billing/status", headers=session_headers(b.api_url, b.session_token))
    assert gone.status_code == 401
    # And no account, key, subscription or ledger entry changed
    after = {t: items for t, items in scan_all(ddb, local_stack.table_names).items() if t in snapshot_tables}
    assert_unchanged(before, after, "accounts, keys, subscriptions and ledger")
    # (B signs in again, for the tests after this one)
    b.session_token, _ = sign_in(api, local_stack.mail_url, b.email)


LIST_PATHS = [
    "/api/keys",
    "/api/usage",
    "/api/billing/status",
    "/api/billing/wallets",
    "/api/management-keys",
    "/api/billing/ledger",
    "/api/usage/daily",
    "/api/requests",
    "/api/plans",
]


def test_b_lists_never_contain_a_identifiers(api, world) -> None:
    a, b = world.a, world.b
    # Given every identifier of A (ids, names, prefixes, secrets, hashes, addresses, transactions)
    identifiers = a.identifiers(api)
    assert len(identifiers) > 30
    # When B reads every list route of the management API (both of B's management keys, B's session), and /v1/models
    management_lists = [route for route in LIST_ROUTES if route[1].startswith("/api/")]
    assert sorted(p for _, p in management_lists) == sorted(LIST_PATHS)
    reads: dict[str, str] = {}
    b_credentials = {
        "mk 1": {"Authorization": f"Bearer {b.account.management_key}"},
        "mk 2": {"Authorization": f"Bearer {b.mk['managementKey']}"},
        "session": session_headers(b.api_url, b.session_token),
    }
    for credential, headers in b_credentials.items():
        for path in LIST_PATHS:
            response = api.get(path, headers=headers)
            assert response.status_code == 200, response.text
            reads[f"{credential} {path}"] = response.text
    for path in ("/v1/models", "/v1/models/test/echo", "/v1/key"):
        read = api.get(path, headers={"Authorization": f"Bearer {b.credit_key['apiKey']}"})
        assert read.status_code == 200
        reads[path] = read.text
    # Then B sees its own objects…
    b_own = b.identifiers(api)
    everything = "\n".join(reads.values()).lower()
    for own in (b.credit_key["id"], b.stripe_sub_id, b.mk["id"], b.addresses[0].lower()):
        assert own.lower() in everything
    # (both first management keys are called "default" by create_account: a name, not an identifier of A)
    assert b_own & identifiers == {"default"}, f"A and B share identifiers: {b_own & identifiers}"
    identifiers -= b_own
    # …and none of A's
    found = {where: hits for where, text in reads.items() if (hits := leaks(text, identifiers))}
    assert not found, f"B's reads contain A's identifiers: {found}"


def balance(api: httpx.Client, tenant: Tenant) -> str:
    return ok(api.get("/api/billing/status", headers=tenant.headers))["creditBalance"]


def spend_of(api: httpx.Client, tenant: Tenant) -> dict[str, str]:
    return {k["id"]: k["spend"] for k in ok(api.get("/api/keys", headers=tenant.headers))}


def test_b_api_keys_never_spend_a_money(api, local_stack, ddb, world) -> None:
    a, b = world.a, world.b
    # Given A's balance, keys' spend and subscription windows (the snapshot), and B's balance and spend
    snapshot = Snapshot(ddb, local_stack, world)
    a_balance, a_spend = balance(api, a), spend_of(api, a)
    b_balance, b_spend = balance(api, b), spend_of(api, b)
    # When B's keys call /v1, plain and streamed, some naming A's account or subscription in the body
    for key in (b.credit_key, b.credit_sub_key, b.granted_sub_key, b.stripe_sub_key):
        assert chat(api, key["apiKey"]).status_code == 200
        streamed = chat(api, key["apiKey"], stream=True)
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        named = chat(api, key["apiKey"], user=a.account.account_id)
        assert named.status_code in (200, 400), named.text
        for extra in ({"subscriptionId": a.stripe_sub_id}, {"metadata": {"accountId": a.account.account_id}}):
            assert chat(api, key["apiKey"], **extra).status_code in (200, 400)
        embedded = api.post(
            "/v1/embeddings",
            headers={"Authorization": f"Bearer {key['apiKey']}"},
            json={"model": "test/embed", "input": ["b's text", a.account.account_id], "user": a.account.account_id},
        )
        assert embedded.status_code == 200, embedded.text
    # And A's key ids, hashes and prefixes are no bearer for anyone
    for bearer in (a.credit_key["id"], a.key_hashes[0], a.credit_key["apiKey"][:14], a.account.management_key):
        assert chat(api, bearer).status_code == 401
    # Then every cent came from B: B's balance and each of B's keys moved…
    assert balance(api, b) != b_balance
    b_after = spend_of(api, b)
    for key in (b.credit_key, b.credit_sub_key, b.granted_sub_key, b.stripe_sub_key):
        assert b_after[key["id"]] != b_spend[key["id"]], key["name"]
    # …and A's did not: balance, keys' spend, and every item of A (windows, minute counters, ledger)
    assert (balance(api, a), spend_of(api, a)) == (a_balance, a_spend)
    snapshot.assert_a_unchanged()
