"""The Stripe webhook function on moto: signatures, every handled event type, repeats and reordering.
(Concurrent deliveries race on DynamoDB Local: tests/integration/test_stripe_http.py.)"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

import boto3
import pytest

from llm_platform.core.entities import KeyStatus, PaymentMethod
from llm_platform.data import api_keys as api_keys_table
from llm_platform.data import stripe_api
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.domain import accounts, api_keys, subscriptions
from llm_platform.domain.accounts import Caller
from llm_platform.domain.stripe_payments import stripe_subscription_local_id
from tests.support.stripe_events import body_of, sample, signed, webhook_function

DAY = 86_400


@pytest.fixture
def webhook(tables, monkeypatch):
    """The webhook function with Stripe configured as on AWS (secrets behind references)."""
    monkeypatch.setenv("UNIT_STRIPE_SECRET_KEY", "sk_test_unit")
    monkeypatch.setenv("STRIPE_SECRET_KEY_SECRET", "env:UNIT_STRIPE_SECRET_KEY")
    yield webhook_function(monkeypatch)
    from llm_platform.config import get_settings

    get_settings.cache_clear()


@pytest.fixture
def stripe_subscription(monkeypatch):
    """What Stripe's API answers for a subscription (checkout.session.completed retrieves it)."""
    answers: dict[str, dict | Exception] = {}

    def retrieve(stripe_id: str) -> dict:
        answers.setdefault("calls", []).append(stripe_id)
        answer = answers[stripe_id]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(stripe_api, "retrieve_subscription", retrieve)
    return answers


def everything(tables) -> dict:
    """Every item of every table: "nothing changed" means this is equal before and after."""
    dynamodb = boto3.client("dynamodb")
    return {name: dynamodb.scan(TableName=table)["Items"] for name, table in tables.items()}


def local(stripe_id: str = "sub_1SampleStripeSub"):
    return subscriptions_table.get(stripe_subscription_local_id(stripe_id))


def balance(account_id: str) -> int:
    return accounts.get_account(account_id).credit_balance_micros


def ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


# ---------------------------------------------------------------- signatures
def _forged(body: str) -> str:
    return signed(body, secret="whsec_someone_else")


def _expired(body: str) -> str:
    return signed(body, timestamp=int(time.time()) - 301)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(_forged, id="forged"),
        pytest.param(_expired, id="expired"),
        pytest.param(lambda body: signed(body + " "), id="tampered-body"),
        pytest.param(lambda body: signed(body).replace("v1=", "v0="), id="wrong-scheme"),
        pytest.param(lambda body: "", id="missing"),
        pytest.param(lambda body: "garbage", id="garbage"),
    ],
)
def test_a_bad_signature_is_400_and_changes_nothing(webhook, account, tables, signature) -> None:
    # Given a valid top-up event, signed wrongly
    body = body_of(sample("checkout.session.completed.topup", account_id=account.account_id))
    before = everything(tables)
    # When it is delivered
    status, response = webhook(raw=body, signature=signature(body))
    # Then it is refused and nothing was written
    assert status == 400 and response["error"]["code"] == "invalid_signature"
    assert everything(tables) == before
    assert balance(account.account_id) == 0


def test_a_base64_body_from_api_gateway_is_verified_on_its_decoded_bytes(webhook, account) -> None:
    body = body_of(sample("checkout.session.completed.topup", account_id=account.account_id))
    status, response = webhook(raw=body, signature=signed(body), b64=True)
    assert status == 200 and response["data"]["outcome"] == "applied"
    assert balance(account.account_id) == 50_000_000


def test_a_signed_body_that_is_not_an_event_is_400(webhook, tables) -> None:
    before = everything(tables)
    status, response = webhook(raw='{"id": 1}')
    assert (status, response["error"]["code"]) == (400, "invalid_event")
    status, response = webhook(raw="not json")
    assert (status, response["error"]["code"]) == (400, "invalid_event")
    assert everything(tables) == before


def test_without_a_webhook_secret_it_is_503_so_stripe_retries_later(webhook, account, monkeypatch) -> None:
    from llm_platform.config import get_settings

    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET_SECRET")
    get_settings.cache_clear()
    status, response = webhook(sample("checkout.session.completed.topup", account_id=account.account_id))
    assert (status, response["error"]["code"]) == (503, "stripe_not_configured")
    assert balance(account.account_id) == 0


def test_unknown_and_foreign_events_are_200_and_change_nothing(webhook, account, tables) -> None:
    before = everything(tables)
    status, response = webhook(sample("customer.created", account_id=account.account_id))
    assert status == 200 and response["data"]["outcome"] == "ignored"
    # A subscription of the operator's Stripe account that this platform did not sell (no metadata)
    foreign = sample("customer.subscription.updated.renewed", account_id=account.account_id)
    foreign["data"]["object"]["metadata"] = {}
    status, response = webhook(foreign)
    assert status == 200 and response["data"]["outcome"] == "ignored"
    invoice = sample("invoice.paid", account_id=account.account_id)
    invoice["data"]["object"]["parent"] = None
    invoice["data"]["object"]["lines"]["data"][0]["parent"] = None
    assert webhook(invoice)[1]["data"]["outcome"] == "ignored"
    assert {k: v for k, v in everything(tables).items() if k != "PaymentEventsTable"} == {
        k: v for k, v in before.items() if k != "PaymentEventsTable"
    }


# ---------------------------------------------------------------- top-ups
def test_a_paid_topup_credits_once_however_often_it_is_delivered(webhook, account, tables) -> None:
    event = sample("checkout.session.completed.topup", account_id=account.account_id)
    assert webhook(event)[1]["data"]["outcome"] == "applied"
    # Stripe retries (a lost 200) and replays: the same event, freshly signed
    for _ in range(3):
        status, response = webhook(event)
        assert status == 200 and response["data"]["outcome"] == "duplicate"
    assert balance(account.account_id) == 50_000_000
    ledger = boto3.client("dynamodb").query(
        TableName=tables["LedgerTable"],
        KeyConditionExpression="accountId = :a",
        ExpressionAttributeValues={":a": {"S": account.account_id}},
    )["Items"]
    assert [(i["kind"]["S"], int(i["amountMicros"]["N"])) for i in ledger] == [("topup_stripe", 50_000_000)]


def test_an_async_payment_credits_when_it_succeeds_and_only_once(webhook, account) -> None:
    # Given a bank debit: the session completes unpaid
    status, response = webhook(sample("checkout.session.completed.unpaid", account_id=account.account_id))
    assert status == 200 and response["data"]["outcome"] == "ignored"
    assert balance(account.account_id) == 0
    # When the payment clears
    succeeded = sample("checkout.session.async_payment_succeeded", account_id=account.account_id)
    assert webhook(succeeded)[1]["data"]["outcome"] == "applied"
    # Then it is credited, once, even if a different event about the same session says paid again
    same_session = dict(succeeded, id="evt_another", type="checkout.session.completed")
    assert webhook(same_session)[1]["data"]["outcome"] == "duplicate"
    assert balance(account.account_id) == 50_000_000


def test_a_topup_in_another_currency_is_not_credited(webhook, account) -> None:
    event = sample("checkout.session.completed.topup", account_id=account.account_id)
    event["data"]["object"]["currency"] = "eur"
    assert webhook(event)[1]["data"]["outcome"] == "ignored"
    assert balance(account.account_id) == 0


# ---------------------------------------------------------------- subscriptions
def test_checkout_completed_activates_the_subscription_from_stripes_state(
    webhook, account, stripe_subscription, invoke
) -> None:
    # Given Stripe's subscription, as its API answers (period end on the subscription item)
    created = sample("customer.subscription.created", account_id=account.account_id)
    stripe_subscription["sub_1SampleStripeSub"] = created["data"]["object"]
    # When checkout.session.completed arrives
    event = sample("checkout.session.completed.subscription", account_id=account.account_id)
    status, response = webhook(event)
    # Then the subscription is active until the item's period end, in the account's billing status
    assert status == 200 and response["data"]["outcome"] == "applied"
    stored = local()
    item = created["data"]["object"]["items"]["data"][0]
    assert (stored.account_id, stored.plan_slug, stored.status, stored.payment_method) == (
        account.account_id,
        "pro",
        "active",
        PaymentMethod.STRIPE,
    )
    assert ts(stored.current_period_end) == item["current_period_end"]
    assert (stored.rpm, stored.tpm, stored.budget_per_window_micros) == (200, 13333, 420_000)
    _, status_body = invoke("billing_status", "GET", "/api/billing/status", key=account.management_key)
    assert [s["id"] for s in status_body["data"]["subscriptions"]] == [stored.subscription_id]
    # And keys can be created on it
    caller = Caller(account.account_id, account.management_key_id)
    key, _ = api_keys.create_subscription_key(caller, "prod-api", stored.subscription_id)
    assert key.rpm == 200
    # And a repeat changes nothing
    assert webhook(event)[1]["data"]["outcome"] == "duplicate"


def test_invoice_paid_alone_activates_and_a_later_checkout_event_changes_nothing(
    webhook, account, stripe_subscription
) -> None:
    # Given invoice.paid arrives before checkout.session.completed (Stripe does not order them)
    assert webhook(sample("invoice.paid", account_id=account.account_id))[1]["data"]["outcome"] == "applied"
    first = local()
    assert first.status == "active"
    stripe_subscription["sub_1SampleStripeSub"] = sample(
        "customer.subscription.created", account_id=account.account_id
    )["data"]["object"]
    webhook(sample("checkout.session.completed.subscription", account_id=account.account_id))
    after = local()
    assert (after.status, after.current_period_end) == ("active", first.current_period_end)


def test_renewal_moves_the_period_forward_and_a_stale_invoice_never_back(webhook, account) -> None:
    webhook(sample("invoice.paid", account_id=account.account_id))
    renewal = sample("invoice.paid.renewal", account_id=account.account_id)
    webhook(renewal)
    renewed_end = renewal["data"]["object"]["lines"]["data"][0]["period"]["end"]
    assert ts(local().current_period_end) == renewed_end
    # A redelivery of the first period's invoice (a new event id, as a manual resend has)
    webhook(sample("invoice.paid", account_id=account.account_id, id="evt_resent"))
    assert ts(local().current_period_end) == renewed_end


def test_a_failed_payment_makes_it_past_due_and_a_later_payment_recovers_it(webhook, account) -> None:
    webhook(sample("invoice.paid", account_id=account.account_id))
    failed = sample("invoice.payment_failed", account_id=account.account_id)
    assert webhook(failed)[1]["data"]["outcome"] == "applied"
    assert local().status == "past_due"
    retry_paid = sample("invoice.paid.renewal", account_id=account.account_id, created=failed["created"] + DAY)
    webhook(retry_paid)
    assert local().status == "active"


def test_an_older_failure_arriving_after_a_newer_payment_is_ignored(webhook, account) -> None:
    paid = sample("invoice.paid.renewal", account_id=account.account_id)
    failed = sample("invoice.payment_failed", account_id=account.account_id, created=paid["created"] - 60)
    webhook(paid)
    webhook(failed)
    assert local().status == "active"


def test_cancel_at_period_end_from_stripe_and_a_stale_update_cannot_undo_it(webhook, account) -> None:
    webhook(sample("invoice.paid", account_id=account.account_id))
    cancelling = sample("customer.subscription.updated.cancel_at_period_end", account_id=account.account_id)
    webhook(cancelling)
    assert local().cancel_at_period_end is True
    stale = sample("customer.subscription.created", account_id=account.account_id, id="evt_stale")
    stale["type"] = "customer.subscription.updated"
    stale["created"] = cancelling["created"] - 1
    webhook(stale)
    assert local().cancel_at_period_end is True


def test_deleted_expires_it_revokes_its_keys_and_nothing_revives_it(webhook, account) -> None:
    # Given an active Stripe subscription with two keys
    webhook(sample("invoice.paid", account_id=account.account_id))
    caller = Caller(account.account_id, account.management_key_id)
    keys = [api_keys.create_subscription_key(caller, name, local().subscription_id)[0] for name in ("a", "b")]
    # When Stripe deletes it
    assert webhook(sample("customer.subscription.deleted", account_id=account.account_id))[0] == 200
    # Then it is expired and its keys are revoked
    assert local().status == "expired"
    assert {api_keys_table.get_by_hash(k.key_hash).status for k in keys} == {KeyStatus.REVOKED}
    # And a late renewal or update cannot bring it back
    webhook(sample("invoice.paid.renewal", account_id=account.account_id, created=2_000_000_000))
    webhook(sample("customer.subscription.updated.renewed", account_id=account.account_id, created=2_000_000_000))
    assert local().status == "expired"


def test_deleted_arriving_first_leaves_a_tombstone_that_later_events_respect(
    webhook, account, stripe_subscription
) -> None:
    deleted = sample("customer.subscription.deleted", account_id=account.account_id)
    webhook(deleted)
    stripe_subscription["sub_1SampleStripeSub"] = deleted["data"]["object"]
    webhook(sample("invoice.paid", account_id=account.account_id))
    webhook(sample("checkout.session.completed.subscription", account_id=account.account_id))
    assert local().status == "expired"


LIFECYCLE = [
    "invoice.paid",
    "customer.subscription.updated.renewed",
    "invoice.paid.renewal",
    "customer.subscription.updated.cancel_at_period_end",
]


def _final_state(webhook, account_id: str, order) -> tuple:
    for name in order:
        assert webhook(sample(name, account_id=account_id))[0] == 200
    stored = local()
    return stored.status, stored.current_period_end, stored.cancel_at_period_end, stored.stripe_status_at


def test_any_delivery_order_ends_in_the_same_state(webhook, tables) -> None:
    """Every permutation of a subscription's lifecycle events, each delivered twice, ends the same."""
    outcomes = set()
    for order in itertools.permutations(LIFECYCLE):
        account = accounts.create_account("order")
        client = boto3.client("dynamodb")
        client.delete_item(
            TableName=tables["SubscriptionsTable"],
            Key={"subscriptionId": {"S": stripe_subscription_local_id("sub_1SampleStripeSub")}},
        )
        for item in client.scan(TableName=tables["PaymentEventsTable"])["Items"]:
            client.delete_item(TableName=tables["PaymentEventsTable"], Key={"eventKey": item["eventKey"]})
        outcomes.add(_final_state(webhook, account.account_id, order + order))
    assert len(outcomes) == 1
    status, end, cancel, _ = outcomes.pop()
    renewal = sample("invoice.paid.renewal", account_id="x")["data"]["object"]["lines"]["data"][0]["period"]["end"]
    assert (status, ts(end), cancel) == ("active", renewal, False)


# ---------------------------------------------------------------- expiry of Stripe-paid subscriptions
def _lapse(webhook, account):
    """Given an active Stripe subscription with a key, and the moment its period ended."""
    webhook(sample("invoice.paid", account_id=account.account_id))
    caller = Caller(account.account_id, account.management_key_id)
    key, _ = api_keys.create_subscription_key(caller, "k", local().subscription_id)
    return key, datetime.fromisoformat(local().current_period_end.replace("Z", "+00:00"))


def test_the_expiry_job_leaves_stripe_subscriptions_to_stripe_within_the_grace_period(
    webhook, account, stripe_subscription
) -> None:
    key, end = _lapse(webhook, account)
    # When the job runs half an hour after the period end, before Stripe's renewal webhook
    report = subscriptions.run_expiry(end + timedelta(minutes=30))
    # Then it neither asks Stripe nor touches the subscription or its key
    assert (report.renewed, report.expired, stripe_subscription.get("calls")) == ([], [], None)
    assert local().status == "active"
    assert api_keys_table.get_by_hash(key.key_hash).status == KeyStatus.ACTIVE


def test_an_overdue_renewal_is_read_from_stripe_and_the_keys_are_kept(webhook, account, stripe_subscription) -> None:
    key, end = _lapse(webhook, account)
    # Given Stripe renewed it, but the webhook never arrived
    renewed = sample("customer.subscription.updated.renewed", account_id=account.account_id)["data"]["object"]
    stripe_subscription["sub_1SampleStripeSub"] = renewed
    # When the job runs past the grace period
    report = subscriptions.run_expiry(end + timedelta(hours=1, seconds=1))
    # Then it applied Stripe's answer: renewed, the key still works
    assert report.renewed == [local().subscription_id] and report.expired == []
    assert ts(local().current_period_end) == renewed["items"]["data"][0]["current_period_end"]
    assert local().status == "active"
    assert api_keys_table.get_by_hash(key.key_hash).status == KeyStatus.ACTIVE


@pytest.mark.parametrize("stripe_says", ["canceled", "missing"])
def test_an_overdue_end_is_read_from_stripe_and_the_keys_are_revoked(
    webhook, account, stripe_subscription, stripe_says
) -> None:
    key, end = _lapse(webhook, account)
    if stripe_says == "canceled":
        ended = sample("customer.subscription.deleted", account_id=account.account_id)["data"]["object"]
        stripe_subscription["sub_1SampleStripeSub"] = ended
    else:
        stripe_subscription["sub_1SampleStripeSub"] = stripe_api.StripeNotFound("No such subscription")
    report = subscriptions.run_expiry(end + timedelta(hours=2))
    assert report.expired == [local().subscription_id]
    assert local().status == "expired"
    assert api_keys_table.get_by_hash(key.key_hash).status == KeyStatus.REVOKED


def test_when_stripe_cannot_be_asked_nothing_changes_and_the_run_fails_for_the_alarm(
    webhook, account, stripe_subscription
) -> None:
    key, end = _lapse(webhook, account)
    stripe_subscription["sub_1SampleStripeSub"] = stripe_api.StripeUnavailable("timeout")
    # And a credit-paid subscription of another account lapsed too (its balance cannot renew it)
    other = accounts.create_account("other")
    accounts.grant_credit(other.account_id, 20_000_000, "test")
    caller = Caller(other.account_id, other.management_key_id)
    credit, _ = subscriptions.subscribe_with_credit(caller, "standard", False, None)
    later = max(end + timedelta(hours=2), datetime.fromisoformat(credit.current_period_end.replace("Z", "+00:00")))
    with pytest.raises(subscriptions.ExpiryIncomplete) as failed:
        subscriptions.run_expiry(later + timedelta(seconds=1))
    assert failed.value.failed == [local().subscription_id]
    assert local().status == "active" and api_keys_table.get_by_hash(key.key_hash).status == KeyStatus.ACTIVE
    # The other subscription was still handled
    assert subscriptions_table.get(credit.subscription_id).status == "expired"


def test_a_late_result_of_an_older_invoice_does_not_change_the_current_periods_status(webhook, account) -> None:
    # Given the renewal's charge failed: past due
    webhook(sample("invoice.paid.renewal", account_id=account.account_id))
    failed = sample("invoice.payment_failed", account_id=account.account_id, created=10**10 // 5)
    webhook(failed)
    assert local().status == "past_due"
    # When a retry of the previous period's invoice is paid later on, the current period stays unpaid
    old_paid = sample(
        "invoice.paid", account_id=account.account_id, id="evt_old_invoice_paid", created=10**10 // 5 + 60
    )
    webhook(old_paid)
    assert local().status == "past_due"


def test_legacy_api_shapes_are_understood(webhook, account) -> None:
    """An endpoint on an API version before 2025-03-31: the subscription at the invoice's top level,
    the period on the subscription itself."""
    invoice = sample("invoice.paid", account_id=account.account_id)
    obj = invoice["data"]["object"]
    obj["subscription"] = obj["parent"]["subscription_details"]["subscription"]
    obj["subscription_details"] = {"metadata": obj["parent"]["subscription_details"]["metadata"]}
    del obj["parent"]
    for line in obj["lines"]["data"]:
        del line["parent"]
    assert webhook(invoice)[1]["data"]["outcome"] == "applied"
    assert local().status == "active"
    update = sample("customer.subscription.updated.renewed", account_id=account.account_id)
    sub = update["data"]["object"]
    item = sub["items"]["data"][0]
    sub["current_period_start"], sub["current_period_end"] = (
        item.pop("current_period_start"),
        item.pop("current_period_end"),
    )
    assert webhook(update)[1]["data"]["outcome"] == "applied"
    assert ts(local().current_period_end) == sub["current_period_end"]


def test_a_repeated_checkout_event_is_recognised_without_asking_stripe(webhook, account, stripe_subscription) -> None:
    created = sample("customer.subscription.created", account_id=account.account_id)
    stripe_subscription["sub_1SampleStripeSub"] = created["data"]["object"]
    event = sample("checkout.session.completed.subscription", account_id=account.account_id)
    webhook(event)
    stripe_subscription["sub_1SampleStripeSub"] = stripe_api.StripeUnavailable("Stripe is down")
    assert webhook(event) == (200, {"data": {"received": True, "outcome": "duplicate"}})
    assert stripe_subscription["calls"] == ["sub_1SampleStripeSub"]


def test_a_storage_failure_is_500_so_stripe_delivers_again_and_nothing_is_recorded(
    webhook, account, tables, monkeypatch
) -> None:
    from llm_platform.data import payments

    def broken(*args, **kwargs):
        raise RuntimeError("DynamoDB is unavailable")

    event = sample("checkout.session.completed.topup", account_id=account.account_id)
    with monkeypatch.context() as patch:  # only this patch: the fixtures' environment stays
        patch.setattr(payments, "credit_once", broken)
        status, body = webhook(event)
    assert (status, body["error"]["code"]) == (500, "internal_error")
    assert boto3.client("dynamodb").scan(TableName=tables["PaymentEventsTable"])["Items"] == []
    # When Stripe delivers it again after the outage, it is applied
    assert webhook(event)[1]["data"]["outcome"] == "applied"


def test_keys_of_an_ended_subscription_are_revoked_by_the_job_if_the_webhook_was_cut_short(
    webhook, account, monkeypatch
) -> None:
    # Given the deletion was stored but the function died before revoking the keys
    key, end = _lapse(webhook, account)
    from llm_platform.domain import stripe_webhooks

    with monkeypatch.context() as patch:
        patch.setattr(stripe_webhooks, "_finish_ended", lambda subscription: None)
        webhook(sample("customer.subscription.deleted", account_id=account.account_id))
    assert local().status == "expired"
    assert api_keys_table.get_by_hash(key.key_hash).status == KeyStatus.ACTIVE
    # When the expiry job runs after the period end, then it finishes the job
    subscriptions.run_expiry(end + timedelta(seconds=1))
    assert api_keys_table.get_by_hash(key.key_hash).status == KeyStatus.REVOKED
