"""Every money path at once, as a stateful property test on DynamoDB Local.

Hypothesis drives a model of the platform's money (balances, ledger entries, payments, subscriptions,
credit keys and the requests they have in flight) through random sequences of the real operations:
- card top-ups through the Stripe webhook function (signed events: paid, unpaid then paid later,
  and replays of earlier events or of the same Checkout Session under a new event id);
- operator grants;
- subscribing from credits (402 when short) and cancelling;
- inference on credit keys: over real HTTP through the local stack's gateway and proxy (the built-in
  deterministic upstream: ``test/echo``, ``test/story``, ``test/no-usage``; ``test/cutoff`` for an
  upstream that fails), and in-process through the proxy's own ``Meter`` so that reservations stay
  in flight across steps and are settled (real cost at most the reservation) or released later;
- the expiry job with the clock moved forward (renewals from credits, expiries);
- requests that die in flight (their proxy stopped) and reconciler runs that settle them after their
  deadline (the prompt's cost charged, the rest released, a usage entry);
- refunds (cumulative, possibly partial) and disputes (opened, won) of paid card top-ups through the
  signed webhook, each debited (or, won, credited back) once, whatever is replayed;
- key caps (small ones here): creating an API key (a credit key, or a subscription's key with
  ``createKey``) or a management key past the account's cap is 409 ``key_limit_reached`` and changes
  nothing; a subscription's keys revoked at expiry free their places;
- key lifecycle: a calendar budget reset (``budgetReset`` with ``maxBudget``) set or removed on a warm
  key, in-process admissions on the moving clock (so periods roll over), and rotation of a key's secret
  (grace or none) while it has requests in flight;
- leases of hot keys (issue 16), through a second in-process ``Meter`` that leases every credit key: a
  take (the slice's money leaves the balance and joins the key's spend, no ledger entry), spending on the
  lease (settles and releases touch only the lease), returns (one ``usage`` entry for what the lease
  spent, the rest back), expiry and revocation by key changes (the next admission takes a new lease with
  the key's new limits), and the instance holding leases dying (the reconciler settles its open requests
  into their leases and returns them);
- key shards of hot keys (issue 16, Lambda), through a third in-process ``Meter`` (leases off): a key is
  promoted to shard mode (2 shards here, so they are revisited); a refill (the slice's money leaves the
  balance and joins the key's spend, and what the shard had spent is synced: one ``usage`` entry), admissions,
  settles and releases on a shard (they touch only the shard), requests dying on a shard (the reconciler
  settles them into it), the reconciler giving idle shards back (their money to the balance, their unsynced
  spend in one ``usage`` entry), and key changes revoking the shards (the next admission reads the key again).

After every step the invariants compare the model with what is stored:
- the ledger explains the balance: ``balance + in-flight reservations + leases not yet returned + money
  held by key shards (available, reserved by their open requests, spent and not yet synced) ==
  sum(ledger entries)``. A credit
  key's admission deducts its worst-case cost from the balance without a ledger entry; the settle
  refunds the difference and writes the one ``usage`` entry (-cost). With nothing in flight this is
  exactly ``balance == sum(ledger)``;
- a balance is never negative except by chargebacks (admission requires it to cover the whole reservation,
  a settle never costs more than was reserved, and charges are conditioned on the balance; a refund or a
  dispute of a paid top-up takes the money back whatever is left, once), and a negative account is
  refused 402 on /v1;
- each Checkout Session is credited at most once: one ``stripe#checkout#<id>`` PaymentEvents record
  and one ledger entry if it was paid, none if never paid; an event id is recorded iff it applied;
- the stored balances, ledger entries (kind, amount, reference) and credit keys' spend are the model's,
  and so are the per-period spend counters of keys with a budget reset; every settled request has its
  log record, and the day counters sum to the log.

Isolation: the DynamoDB Local is shared by the whole session, so every example uses fresh accounts, and
the expiry job's due query (real, on the ``byPeriodEnd`` index) is narrowed to this test's accounts:
moving the clock forward must not renew, expire or ask Stripe about other tests' subscriptions.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from llm_platform.core.clock import from_iso, to_iso, utc_now
from llm_platform.data import subscriptions as subscriptions_table
from llm_platform.data import usage_counters
from llm_platform.data.dynamo import client, query_all
from llm_platform.domain import accounts as accounts_domain
from llm_platform.domain import api_keys, management_keys, plans, reservations, subscriptions
from llm_platform.domain.accounts import Caller
from llm_platform.domain.billing import add_months
from llm_platform.domain.errors import Conflict, InsufficientCredit
from llm_platform.domain.plans import catalog
from llm_platform.domain.windows import budget_period
from llm_platform.proxy import catalog as proxy_catalog
from llm_platform.proxy.errors import ProxyError
from llm_platform.proxy.keys import KeyCache
from llm_platform.proxy.leases import LeasePolicy
from llm_platform.proxy.metering import Admission, Meter, Outcome, Pending, check_usable
from llm_platform.proxy.pricing import cost_micros, input_token_bound
from llm_platform.proxy.shards import KeyShards, ShardPolicy
from tests.support.stripe_events import outcome, sample, webhook_function

SECRET = "whsec_money_state_machine"
NO_SHARDS = KeyShards(ShardPolicy(enabled=False))  # the other in-process instances: direct path, or leases
MICROS_PER_CENT = 10_000
MAX_ACCOUNTS = 3
MAX_API_KEYS = 4  # the account caps of this test (catalog accountLimits, made small)
MAX_MANAGEMENT_KEYS = 3
WORDS = ("hi", "hello", "token", "a", "lorem", "ipsum", "tokenization")
STARTING_CREDIT = st.one_of(st.just(0), st.integers(1, 150).map(lambda usd: usd * 1_000_000))
SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the repository; a failure prints its steps and a blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


OUTCOMES: collections.Counter = collections.Counter()  # what the examples exercised, printed at the end (-s)


def note(outcome: str) -> None:
    event(outcome)
    OUTCOMES[outcome] += 1


# ---------------------------------------------------------------- the model
@dataclass
class AccountModel:
    account_id: str
    caller: Caller
    balance: int = 0  # what the Accounts table must hold: reservations in flight already deducted
    ledger: collections.Counter = field(default_factory=collections.Counter)  # (kind, amount, reference)
    in_flight: int = 0  # reservations of admitted, not yet settled requests
    chargebacks: int = 0  # micros taken back by refunds and disputes (net of disputes won)
    api_keys: int = 0  # live API keys (credit keys and subscriptions' keys): capped at MAX_API_KEYS
    management_keys: int = 1  # the first one comes with the account
    credit_key: str | None = None  # one of its credit keys, for the /v1 check of a negative balance

    def book(self, kind: str, amount: int, reference: str) -> None:
        self.balance += amount
        self.ledger[(kind, amount, reference)] += 1


@dataclass
class KeyModel:
    key_id: str
    key_hash: str
    plaintext: str
    account_id: str
    max_budget: int | None
    spend: int = 0  # settled costs plus reservations in flight (what ApiKeys.spendMicros holds)
    budget_reset: str | None = None  # with max_budget: the cap applies per calendar period
    period_spend: collections.Counter = field(default_factory=collections.Counter)  # (reset, period) -> micros
    retired_secrets: list[str] = field(default_factory=list)  # rotated away without grace: refused


@dataclass
class SessionModel:
    session_id: str
    paid_by: str | None = None  # the account credited, once paid
    paid_micros: int = 0
    events: list[dict] = field(default_factory=list)  # every event delivered about it
    refunded_cents: int = 0  # what Stripe has refunded of its charge (cumulative)
    dispute: str | None = None  # None, "debited", "reinstated" (won after debit) or "closed" (won first)
    dispute_cents: int = 0


@dataclass
class SubscriptionModel:
    subscription_id: str
    account_id: str
    plan_slug: str
    price: int
    period_end: str
    keys: int  # live keys on it (revoked when it expires)
    cancelled: bool = False
    live: bool = True  # active and in the due index


@dataclass
class InFlight:
    admission: Admission
    account_id: str
    key: KeyModel
    reserve: int
    period: tuple[str, int] | None  # the budget period it was reserved in (keys with a reset)
    lease: str | None = None  # admitted on this lease (its money is the lease's, booked at take and return)
    shard: str | None = None  # admitted on this key shard (its money is the shard's, booked at refill, sync, return)


@dataclass
class LeaseModel:
    """A lease taken by the leasing instance: its slice ``micros`` left the balance at the take."""

    lease_id: str
    account_id: str
    key: KeyModel
    micros: int
    period: tuple[str, int] | None
    spent: int = 0  # what its settled (and reconciled) requests cost
    returned: bool = False


@dataclass
class ShardModel:
    """A key shard: ``held`` left the balance at its refills (available + open reservations + unsynced spend),
    ``unsynced`` is what its settled requests spent and no sync has moved to the ledger yet."""

    account_id: str
    key: KeyModel
    held: int = 0
    unsynced: int = 0


@dataclass
class Env:
    deliver: Any  # signed Stripe event -> (status, outcome)
    http: httpx.Client  # the local stack's gateway
    tables: dict[str, str]
    my_accounts: set[str]  # the accounts of the running example: the expiry job sees only theirs


# ---------------------------------------------------------------- the state machine
class MoneyMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")
    credit_keys = Bundle("credit_keys")
    sessions = Bundle("sessions")
    subs = Bundle("subscriptions")
    in_flight = Bundle("in_flight")

    def __init__(self, env: Env) -> None:
        super().__init__()
        self.env = env
        env.my_accounts.clear()  # earlier examples' subscriptions must not fall due in this one
        self.nonce = uuid.uuid4().hex[:12]  # per example: session ids never meet another example's
        self.model_accounts: dict[str, AccountModel] = {}
        self.model_keys: dict[str, KeyModel] = {}
        self.model_sessions: dict[str, SessionModel] = {}
        self.applied_events: set[str] = set()
        self.delivered_events: set[str] = set()
        self.model_subs: dict[str, SubscriptionModel] = {}
        self.meter = Meter(KeyCache(), shards=NO_SHARDS)
        self.leasing = self._leasing_instance()  # an instance serving every credit key from leases
        self.model_leases: dict[str, LeaseModel] = {}
        self.sharding = self._sharding_instance()  # an environment serving promoted keys from their shards
        self.model_shards: dict[str, ShardModel] = {}
        self.promoted: set[str] = set()
        self.admitted: dict[str, InFlight] = {}  # every in-process admission by request id
        self.settled: list[tuple[str, str, int]] = []  # in-process requests settled: (id, account, cost)
        self.live: set[str] = set()  # admitted in process, still being served
        self.abandoned: list[InFlight] = []  # admitted in process, then their proxy died
        self.clock = utc_now()
        self.grants = 0
        self.plans = {plan.slug: plan for plan in catalog().plans}

    # ------------------------------------------------------------ accounts and credit
    def _new_account(self) -> str:
        created = accounts_domain.create_account(f"money-sm-{self.nonce}")
        self.env.my_accounts.add(created.account_id)
        self.model_accounts[created.account_id] = AccountModel(
            created.account_id, Caller(created.account_id, created.management_key_id)
        )
        return created.account_id

    def _first_account(self) -> str:
        return next(iter(self.model_accounts), None) or self._new_account()

    @initialize(target=accounts, credit=STARTING_CREDIT)
    def first_account(self, credit: int) -> str:
        """Given a fresh account for this example, holding an operator grant of ``credit`` (if any)."""
        account = self._first_account()
        if credit:
            self.grant(account, credit)
        return account

    @initialize(target=credit_keys)
    def first_credit_key(self) -> str:
        """Given an uncapped credit key on the first account (the initializers run in any order)."""
        return self.create_credit_key(self._first_account(), None)

    @precondition(lambda self: len(self.model_accounts) < MAX_ACCOUNTS)
    @rule(target=accounts, credit=STARTING_CREDIT)
    def another_account(self, credit: int) -> str:
        account = self._new_account()
        if credit:
            self.grant(account, credit)
        return account

    @rule(
        account=accounts,
        amount=st.one_of(st.integers(1, 20_000), st.integers(1, 100).map(lambda usd: usd * 1_000_000)),
    )
    def grant(self, account: str, amount: int) -> None:
        """When the operator grants credit, then balance and ledger move together by exactly that."""
        self.grants += 1
        reason = f"money-sm grant {self.nonce} #{self.grants}"
        stored = accounts_domain.grant_credit(account, amount, reason)
        self.model_accounts[account].book("grant", amount, reason)
        assert stored.credit_balance_micros == self.model_accounts[account].balance

    # ------------------------------------------------------------ Stripe card top-ups
    def _event(self, name: str, session_id: str, account: str, cents: int) -> dict:
        stripe_event = sample(name, account_id=account, id=f"evt_sm_{uuid.uuid4().hex}")
        obj = stripe_event["data"]["object"]
        obj["id"], obj["amount_subtotal"], obj["amount_total"] = session_id, cents, cents
        obj["metadata"]["creditMicros"] = str(cents * MICROS_PER_CENT)
        obj["payment_intent"] = f"pi_{session_id}"  # each session its own payment: refunds find its account
        return stripe_event

    def _deliver_payment(self, stripe_event: dict) -> None:
        """Deliver a checkout event and check the outcome the model expects: an unpaid session credits
        nothing; a paid one credits its subtotal once per session; anything seen before is a repeat."""
        obj = stripe_event["data"]["object"]
        session = self.model_sessions.setdefault(obj["id"], SessionModel(obj["id"]))
        paid = obj["payment_status"] == "paid"
        if not paid:
            expected = "ignored"
        elif stripe_event["id"] in self.applied_events or session.paid_by is not None:
            expected = "duplicate"
        else:
            expected = "applied"
        status, outcome = self.env.deliver(stripe_event)
        note(f"stripe {obj['payment_status']}: {outcome}")
        assert (status, outcome) == (200, expected), (stripe_event["type"], obj["id"], obj["payment_status"])
        self.delivered_events.add(stripe_event["id"])
        session.events.append(stripe_event)
        if expected == "applied":
            self.applied_events.add(stripe_event["id"])
            account = obj["client_reference_id"]
            session.paid_by, session.paid_micros = account, obj["amount_subtotal"] * MICROS_PER_CENT
            self.model_accounts[account].book("topup_stripe", session.paid_micros, f"stripe#checkout#{obj['id']}")

    @rule(
        target=sessions,
        account=accounts,
        session=st.integers(0, 5),
        cents=st.integers(1_000, 12_000),
        paid=st.booleans(),
    )
    def stripe_topup(self, account: str, session: int, cents: int, paid: bool) -> str:
        """Given a Checkout Session of a top-up (a few ids only, so some are met again, even by another
        account), when Stripe says it completed, paid or still unpaid (a bank debit clearing), then a
        paid session is credited its subtotal unless it was paid before, and an unpaid one credits nothing."""
        session_id = f"cs_test_sm_{self.nonce}_{session}"
        name = "checkout.session.completed.topup" if paid else "checkout.session.completed.unpaid"
        self._deliver_payment(self._event(name, session_id, account, cents))
        return session_id

    @rule(session_id=sessions, payer=accounts)
    def stripe_async_payment_succeeded(self, session_id: str, payer: str) -> None:
        """When a session's delayed payment succeeds (a new event, naming any account), then it is credited
        only if no event paid it before."""
        first = self.model_sessions[session_id].events[0]["data"]["object"]
        name = "checkout.session.async_payment_succeeded"
        self._deliver_payment(self._event(name, session_id, payer, first["amount_subtotal"]))

    @rule(session_id=sessions, data=st.data())
    def stripe_replay_same_event(self, session_id: str, data: st.DataObject) -> None:
        """When Stripe delivers an earlier event again (same id, same body), then nothing is credited."""
        stripe_event = data.draw(st.sampled_from(self.model_sessions[session_id].events), label="event")
        self._deliver_payment(copy.deepcopy(stripe_event))

    @rule(session_id=sessions, cents=st.integers(1_000, 12_000))
    def stripe_replay_new_event_id(self, session_id: str, cents: int) -> None:
        """When another paid event (new id, any amount) names a session that was paid already, then nothing
        is credited; a session never paid is paid by it (at the session's own amount, as Stripe sends)."""
        session = self.model_sessions[session_id]
        first = session.events[0]["data"]["object"]
        amount = cents if session.paid_by is not None else first["amount_subtotal"]
        stripe_event = self._event("checkout.session.completed.topup", session_id, first["client_reference_id"], amount)
        self._deliver_payment(stripe_event)

    # ------------------------------------------------------------ refunds and disputes of card top-ups
    def _deliver_chargeback(self, stripe_event: dict, session: SessionModel, expected: str, amount: int) -> None:
        """Deliver a refund or dispute event; ``amount`` (micros, signed) is booked when it applies."""
        status, outcome = self.env.deliver(stripe_event)
        note(f"{stripe_event['type']}: {outcome}")
        assert (status, outcome) == (200, expected), (stripe_event["type"], session.session_id)
        self.delivered_events.add(stripe_event["id"])
        if expected != "applied":
            return
        self.applied_events.add(stripe_event["id"])
        if amount:
            model = self.model_accounts[session.paid_by]
            obj = stripe_event["data"]["object"]
            if stripe_event["type"] == "charge.refunded":
                kind, reference = (
                    "refund",
                    f"stripe#charge#{obj['id']}#refunded#{obj['amount_refunded'] * MICROS_PER_CENT}",
                )
            elif amount < 0:
                kind, reference = "chargeback", f"stripe#dispute#{obj['id']}"
            else:
                kind, reference = "chargeback_reversed", f"stripe#dispute#{obj['id']}#won"
            model.book(kind, amount, reference)
            model.chargebacks -= amount
            self._negative_is_refused_on_v1(model)

    def _negative_is_refused_on_v1(self, model: AccountModel) -> None:
        """Then an account left negative is refused 402 on /v1, whatever the request costs."""
        if model.balance >= 0 or model.credit_key is None:
            return
        key = self.model_keys[model.credit_key]
        response = self.env.http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key.plaintext}"},
            json={"model": "test/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        )
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "insufficient_quota"
        note("http: 402, negative after a chargeback")

    @rule(session_id=sessions, more=st.sampled_from([0, 1, 100, 1_000, 12_000]))
    def stripe_refund(self, session_id: str, more: int) -> None:
        """When Stripe reports a refund of the session's charge (``amount_refunded`` is cumulative; 0 more is
        a replay), then what was refunded since the last refund is debited once; a session never paid is
        not a top-up of this platform (no payment of it is known): ignored."""
        session = self.model_sessions[session_id]
        paid_cents = session.paid_micros // MICROS_PER_CENT
        cumulative = min(paid_cents, session.refunded_cents + more) if session.paid_by else more
        stripe_event = sample("charge.refunded", account_id="acct_unused", id=f"evt_sm_{uuid.uuid4().hex}")
        obj = stripe_event["data"]["object"]
        obj.update(id=f"ch_{session_id}", payment_intent=f"pi_{session_id}", amount=paid_cents or 1_000)
        obj["amount_refunded"], obj["metadata"] = cumulative, {}
        if session.paid_by is None:
            expected, amount = "ignored", 0
        elif cumulative > session.refunded_cents:
            expected, amount = "applied", -(cumulative - session.refunded_cents) * MICROS_PER_CENT
            session.refunded_cents = cumulative
        else:
            expected, amount = "duplicate", 0
        self._deliver_chargeback(stripe_event, session, expected, amount)

    @rule(session_id=sessions, share=st.sampled_from([0.1, 0.5, 1.0]), won=st.booleans())
    def stripe_dispute(self, session_id: str, share: float, won: bool) -> None:
        """When the cardholder disputes the session's charge (opened, or closed won), then the disputed
        amount is debited once when opened, and credited back once when won after that; anything else is a
        duplicate (a dispute never paid: ignored)."""
        session = self.model_sessions[session_id]
        name = "charge.dispute.closed.won" if won else "charge.dispute.created"
        stripe_event = sample(name, account_id="acct_unused", id=f"evt_sm_{uuid.uuid4().hex}")
        obj = stripe_event["data"]["object"]
        cents = session.dispute_cents or max(1, int(session.paid_micros // MICROS_PER_CENT * share))
        obj.update(id=f"dp_{session_id}", payment_intent=f"pi_{session_id}", charge=f"ch_{session_id}", amount=cents)
        expected, amount = "duplicate", 0
        if session.paid_by is None:
            expected = "ignored"
        elif session.dispute is None:
            expected, session.dispute_cents = "applied", cents
            session.dispute = "closed" if won else "debited"
            amount = 0 if won else -cents * MICROS_PER_CENT
        elif session.dispute == "debited" and won:
            expected, amount, session.dispute = "applied", session.dispute_cents * MICROS_PER_CENT, "reinstated"
        self._deliver_chargeback(stripe_event, session, expected, amount)

    # ------------------------------------------------------------ subscriptions from credits
    @rule(target=subs, account=accounts, plan=st.sampled_from(["standard", "pro"]), create_key=st.booleans())
    def subscribe(self, account: str, plan: str, create_key: bool) -> Any:
        """When the account subscribes from credits, then one period's price is charged with its ledger
        entry if the balance covers it; otherwise 402 InsufficientCredit and nothing changes."""
        model = self.model_accounts[account]
        price = self.plans[plan].price_micros
        if model.balance < price:
            with pytest.raises(InsufficientCredit):
                subscriptions.subscribe_with_credit(model.caller, plan, create_key, "sm-key")
            note("subscribe: 402")
            return multiple()
        if create_key and model.api_keys >= MAX_API_KEYS:
            with pytest.raises(Conflict) as refused:
                subscriptions.subscribe_with_credit(model.caller, plan, create_key, "sm-key")
            assert refused.value.code == "key_limit_reached"
            note("subscribe: 409 key cap")
            return multiple()
        subscription, issued = subscriptions.subscribe_with_credit(model.caller, plan, create_key, "sm-key")
        assert (issued is not None) == create_key
        model.api_keys += int(create_key)
        note("subscribe: 201")
        model.book("subscription", -price, subscription.subscription_id)
        self.model_subs[subscription.subscription_id] = SubscriptionModel(
            subscription.subscription_id, account, plan, price, subscription.current_period_end, int(create_key)
        )
        return subscription.subscription_id

    @rule(subscription_id=subs)
    def cancel(self, subscription_id: str) -> None:
        """When the customer cancels, then it stays live to its period end and will not renew; a second
        cancel is 409, and so is cancelling an expired one."""
        sub = self.model_subs[subscription_id]
        caller = self.model_accounts[sub.account_id].caller
        if not sub.live or sub.cancelled:
            with pytest.raises(Conflict) as refused:
                subscriptions.cancel(caller, subscription_id)
            assert refused.value.code == ("already_cancelled" if sub.live else "subscription_not_active")
            note(f"cancel: {refused.value.code}")
            return
        assert subscriptions.cancel(caller, subscription_id).cancel_at_period_end
        sub.cancelled = True
        note("cancel: ok")

    @precondition(lambda self: any(sub.live for sub in self.model_subs.values()))
    @rule(days=st.integers(0, 75), hours=st.integers(0, 23))
    def expiry_run(self, days: int, hours: int) -> None:
        """Given the clock moved forward, when the expiry job runs, then each due subscription is renewed
        from credits (not cancelled, balance covers it: one charge and ledger entry, the next period) or
        expired with its keys revoked; due ones are taken in period-end order, in any order among equal
        period ends (the index does not order those)."""
        self.clock = max(self.clock, utc_now()) + timedelta(days=days, hours=hours)
        now_iso = to_iso(self.clock)
        due = [s for s in self.model_subs.values() if s.live and s.period_end <= now_iso]
        report = subscriptions.run_expiry(self.clock)
        renewed, expired = set(report.renewed), set(report.expired)
        assert len(report.renewed) == len(renewed) and len(report.expired) == len(expired)
        assert renewed | expired == {s.subscription_id for s in due} and not renewed & expired
        balances = {account_id: model.balance for account_id, model in self.model_accounts.items()}
        # Subscriptions of one account due at the same moment compete for its balance in any order.
        for _, tied in itertools.groupby(sorted(due, key=lambda s: (s.period_end, s.account_id)), key=_end_account):
            tied = list(tied)
            possible = {_renewals(order, dict(balances)) for order in itertools.permutations(tied)}
            assert frozenset(s.subscription_id for s in tied if s.subscription_id in renewed) in possible
            for sub in tied:
                if sub.subscription_id in renewed:
                    balances[sub.account_id] -= sub.price
        revoked = 0
        for sub in due:
            stored = subscriptions_table.get(sub.subscription_id)
            if sub.subscription_id in renewed:
                months = self.plans[sub.plan_slug].interval_months
                start = from_iso(sub.period_end)
                if add_months(start, months) <= self.clock:  # lapsed longer than a period: starts now
                    start = self.clock
                new_end = to_iso(add_months(start, months))
                self.model_accounts[sub.account_id].book(
                    "subscription_renewal", -sub.price, f"{sub.subscription_id}@{sub.period_end}"
                )
                sub.period_end = new_end
                assert (stored.status, stored.current_period_end) == ("active", new_end)
            else:
                sub.live = False
                revoked += sub.keys
                self.model_accounts[sub.account_id].api_keys -= sub.keys  # their places are free again
                sub.keys = 0
                assert stored.status == "expired"
        assert report.keys_revoked == revoked
        note(f"expiry: {len(renewed)} renewed, {len(expired)} expired")

    # ------------------------------------------------------------ spending on credit keys
    @rule(
        target=credit_keys,
        account=accounts,
        max_budget=st.one_of(st.none(), st.integers(1, 10_000), st.integers(1, 50).map(lambda usd: usd * 1_000_000)),
    )
    def create_credit_key(self, account: str, max_budget: int | None) -> Any:
        """Given a credit key on the account, optionally capped by maxBudget (rate limits out of the way);
        past the account's key cap, 409 key_limit_reached and nothing is created."""
        model = self.model_accounts[account]
        if model.api_keys >= MAX_API_KEYS:
            with pytest.raises(Conflict) as refused:
                api_keys.create_credit_key(model.caller, "sm-credit", max_budget, 100_000, 100_000_000)
            assert refused.value.code == "key_limit_reached"
            note("credit key: 409 key cap")
            return multiple()
        key, plaintext = api_keys.create_credit_key(model.caller, "sm-credit", max_budget, 100_000, 100_000_000)
        model.api_keys += 1
        if max_budget is None:
            model.credit_key = key.key_id
        self.model_keys[key.key_id] = KeyModel(key.key_id, key.key_hash, plaintext, account, max_budget)
        note("credit key: 201")
        return key.key_id

    @rule(account=accounts)
    def create_management_key(self, account: str) -> None:
        """When a management key is created, then past the account's cap it is 409 key_limit_reached and
        nothing is created."""
        model = self.model_accounts[account]
        if model.management_keys >= MAX_MANAGEMENT_KEYS:
            with pytest.raises(Conflict) as refused:
                management_keys.create(model.caller, "sm-admin")
            assert refused.value.code == "key_limit_reached"
            note("management key: 409 key cap")
            return
        management_keys.create(model.caller, "sm-admin")
        model.management_keys += 1
        note("management key: 201")

    def _period(self, key: KeyModel, moment) -> tuple[str, int] | None:
        if key.budget_reset is None or key.max_budget is None:
            return None
        return key.budget_reset, budget_period(key.budget_reset, moment).index

    def _admissible(self, key: KeyModel, reserve: int, moment=None) -> int | None:
        """The refusal status the proxy must give before anything is charged, or None when admitted:
        400 if the reservation exceeds the key's whole maxBudget, 402 if the balance or the maxBudget
        left does not cover it (reservations in flight count as spent; with a budget reset, the spend of
        the current calendar period only)."""
        if key.max_budget is not None and reserve > key.max_budget:
            return 400
        period = self._period(key, moment or utc_now())
        spent = key.period_spend[period] if period else key.spend
        if key.max_budget is not None and spent + reserve > key.max_budget:
            return 402
        if self.model_accounts[key.account_id].balance < reserve:
            return 402
        return None

    def _charged(self, key: KeyModel, cost: int, reference: str) -> None:
        key.spend += cost
        if cost:
            self.model_accounts[key.account_id].book("usage", -cost, reference)

    @rule(
        key_id=credit_keys,
        model=st.sampled_from(["test/echo", "test/story", "test/no-usage"]),
        stream=st.booleans(),
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
        system=st.none() | st.sampled_from(["be brief", "you are a helpful assistant"]),
        max_tokens=st.none() | st.integers(1, 6),
    )
    def infer_over_http(
        self, key_id: str, model: str, stream: bool, words: list[str], system: str | None, max_tokens: int | None
    ) -> None:
        """When the key calls /v1/chat/completions on the local stack (real gateway, proxy, upstream),
        then it is admitted only if the worst-case cost is covered, and charged exactly the real cost,
        which is at most the reservation (the rest is refunded by the settle)."""
        if stream and model == "test/story" and max_tokens is None:
            max_tokens = 4  # the story runs to the cap: keep streamed chunks few
        key = self.model_keys[key_id]
        if key.key_id in self.promoted:  # the local stack's proxy would serve it from shards: in-process only
            note("http: skipped, the key is in shard mode")
            return
        if key.budget_reset is not None:  # periods follow the machine's clock: only in-process admissions
            note("http: skipped, the key has a budget reset")
            return
        text = " ".join(words)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        raw = json.dumps(body).encode()
        priced = proxy_catalog.models()[model]
        cap = max_tokens or priced.default_max_output_tokens
        reserve = cost_micros(
            input_token_bound(len(raw), len(messages), 0), cap, priced.input_price, priced.output_price
        )
        refusal = self._admissible(key, reserve)
        headers = {"Authorization": f"Bearer {key.plaintext}", "Content-Type": "application/json"}
        content = ""
        with self.env.http.stream("POST", "/v1/chat/completions", content=raw, headers=headers) as response:
            if response.status_code == 200 and stream:
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        for choice in json.loads(line[6:]).get("choices") or []:
                            content += choice.get("delta", {}).get("content") or ""
            else:
                response.read()
        note(f"http {model} stream={stream}: {response.status_code}")
        if refusal is not None:
            assert response.status_code == refusal, response.text
            return
        assert response.status_code == 200, response.text
        if not stream:
            content = response.json()["choices"][0]["message"]["content"]
        # The real cost, from the deterministic upstream: echo models repeat the user message, the story
        # runs to the cap; test/no-usage sends no usage, so the proxy counts ~4 characters a token.
        reply = " ".join(words[:cap]) if model != "test/story" else " ".join(f"word{i}" for i in range(1, cap + 1))
        assert content == reply
        if model == "test/no-usage":
            prompt = " ".join(m["content"] for m in messages)
            tokens_in, tokens_out = max(1, -(-len(prompt) // 4)), -(-len(reply) // 4)
        else:
            tokens_in = sum(len(m["content"].split()) + 3 for m in messages)
            tokens_out = len(reply.split())
        cost = -(-(tokens_in * priced.input_price + tokens_out * priced.output_price) // 1_000_000)
        assert 0 < cost <= reserve
        if not stream:
            assert Decimal(response.headers["x-request-cost"]) * 1_000_000 == cost
        self._charged(key, cost, response.headers["x-request-id"])

    @rule(key_id=credit_keys, words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
    def infer_upstream_fails(self, key_id: str, words: list[str]) -> None:
        """When the only provider accepts and then dies mid-answer (test/cutoff), then 502, and what it
        generated before is billed (a local count: no usage came), with its ledger entry; no failover
        (or the usual 402/400 if it could not be admitted at all)."""
        key = self.model_keys[key_id]
        if key.budget_reset is not None or key.key_id in self.promoted:
            return
        body = {"model": "test/cutoff", "messages": [{"role": "user", "content": " ".join(words)}], "max_tokens": 3}
        raw = json.dumps(body).encode()
        priced = proxy_catalog.models()["test/cutoff"]
        reserve = cost_micros(input_token_bound(len(raw), 1, 0), 3, priced.input_price, priced.output_price)
        refusal = self._admissible(key, reserve)
        headers = {"Authorization": f"Bearer {key.plaintext}", "Content-Type": "application/json"}
        response = self.env.http.post("/v1/chat/completions", content=raw, headers=headers)
        note(f"upstream fails: {response.status_code}")
        assert response.status_code == (refusal or 502), response.text
        if refusal is None:
            assert response.json()["error"]["code"] == "upstream_error"
            reply = " ".join(f"word{i}" for i in range(1, 4))  # the story's first 3 words came before the cut
            tokens_in, tokens_out = max(1, -(-len(" ".join(words)) // 4)), -(-len(reply) // 4)
            cost = -(-(tokens_in * priced.input_price + tokens_out * priced.output_price) // 1_000_000)
            assert Decimal(response.headers["x-request-cost"]) * 1_000_000 == cost
            self._charged(key, cost, response.headers["x-request-id"])

    @rule(
        target=in_flight,
        key_id=credit_keys,
        reserve=st.one_of(st.integers(1, 5_000), st.integers(1, 30).map(lambda d: d * 1_000_000)),
    )
    def admit_in_process(self, key_id: str, reserve: int) -> Any:
        """When the proxy's Meter admits a request reserving ``reserve`` (in process, left in flight), then
        the balance and the key's spend hold the reservation at once, with no ledger entry yet."""
        key = self.model_keys[key_id]
        snapshot = self.meter.keys.lookup(key.plaintext)
        now = max(self.clock, utc_now())  # the machine's clock: budget periods roll over when it moves
        refusal = self._admissible(key, reserve, now)
        request_id = str(uuid.uuid4())
        # What the reconciler charges should this request die: its prompt's cost, a third of the reservation.
        pending = Pending(model="test/echo", stream=False, prompt_tokens=7, prompt_cost_micros=reserve // 3)
        if refusal is not None:
            with pytest.raises(ProxyError) as refused:
                self.meter.admit(snapshot, reserve, 100, request_id, now, pending)
            assert refused.value.status == refusal
            note(f"admit in process: {refusal}")
            return multiple()
        admission = self.meter.admit(snapshot, reserve, 100, request_id, now, pending)
        self.live.add(request_id)
        model = self.model_accounts[key.account_id]
        model.balance -= reserve
        model.in_flight += reserve
        key.spend += reserve
        period = self._period(key, now)
        if period:
            key.period_spend[period] += reserve
        note("admit in process: admitted" + (" in a budget period" if period else ""))
        return self._track(InFlight(admission, key.account_id, key, reserve, period))

    def _track(self, request: InFlight) -> InFlight:
        self.admitted[request.admission.request_id] = request
        return request

    def _died_with_its_instance(self, request: InFlight) -> bool:
        if request.admission.request_id in self.live:
            return False
        note("in flight on an instance that died: the reconciler's")
        return True

    @rule(request=consumes(in_flight), share=st.sampled_from([0.0, 0.01, 0.5, 0.99, 1.0]))
    def settle_in_process(self, request: InFlight, share: float) -> None:
        """When an in-flight request settles with its real cost (at most the reservation), then the
        difference is refunded and one usage entry of -cost is written (none for a zero cost)."""
        if self._died_with_its_instance(request):
            return
        cost = int(request.reserve * share)
        self.meter.settle(
            request.admission,
            input_tokens=7,
            output_tokens=11,
            cost_micros=cost,
            counted=True,
            now=max(self.clock, utc_now()),
            outcome=Outcome("test/echo", "local", 200, False),
        )
        self.settled.append((request.admission.request_id, request.account_id, cost))
        if request.lease is not None:  # the lease takes it: the central items get it when it is returned
            self.model_leases[request.lease].spent += cost
            self.live.discard(request.admission.request_id)
            note(f"settle on a lease: {share:.0%} of the reservation")
            return
        if request.shard is not None:  # the shard takes it: synced to the ledger at a refill or its return
            self.model_shards[request.shard].unsynced += cost
            self.live.discard(request.admission.request_id)
            note(f"settle on a shard: {share:.0%} of the reservation")
            return
        self._end_in_flight(request)
        self._charged(request.key, cost, request.admission.request_id)
        if request.period:
            request.key.period_spend[request.period] += cost
        note(f"settle in process: {share:.0%} of the reservation")

    @rule(request=consumes(in_flight))
    def release_in_process(self, request: InFlight) -> None:
        """When no provider could serve an in-flight request, then its whole reservation comes back."""
        if self._died_with_its_instance(request):
            return
        self.meter.settle(
            request.admission,
            input_tokens=0,
            output_tokens=0,
            cost_micros=0,
            counted=False,
            now=max(self.clock, utc_now()),
            outcome=Outcome("test/echo", None, 502, False),
        )
        self.settled.append((request.admission.request_id, request.account_id, 0))
        if request.lease is not None or request.shard is not None:
            self.live.discard(request.admission.request_id)
            note("release on a lease" if request.lease else "release on a shard")
            return
        self._end_in_flight(request)
        note("release in process")

    def _end_in_flight(self, request: InFlight) -> None:
        model = self.model_accounts[request.account_id]
        model.balance += request.reserve
        model.in_flight -= request.reserve
        request.key.spend -= request.reserve
        if request.period:
            request.key.period_spend[request.period] -= request.reserve
        self.live.discard(request.admission.request_id)

    @rule(request=consumes(in_flight))
    def request_dies(self, request: InFlight) -> None:
        """When the proxy dies with a request in flight (a Lambda stopped mid-answer), then nothing settles
        it: its reservation stays held, recorded, until the reconciler's turn."""
        if self._died_with_its_instance(request):
            return
        self.live.discard(request.admission.request_id)
        self.abandoned.append(request)
        note("a request dies in flight")

    @precondition(lambda self: (self.abandoned or self._unreturned_leases() or self._held_shards()) and not self.live)
    @rule()
    def reconciler_runs(self) -> None:
        """When the reconciler runs after the dead requests' deadlines, then each is settled once: its
        prompt's cost charged (with a usage entry; on a lease, into the lease), the rest of its reservation
        released; then every lease past its end with nothing open (its instance dead, or not returning it)
        is returned once, as its instance would have; a second run changes nothing."""
        now = max(self.clock, utc_now()) + timedelta(seconds=900 + 61)
        self.clock = now
        report = reservations.reconcile(now)
        unreturned = self._unreturned_leases()
        assert (report.settled, report.failed) == (len(self.abandoned), []), report
        assert (report.leases_returned, report.leases_waiting) == (len(unreturned), 0), report
        for request in self.abandoned:
            cost = min(request.reserve // 3, request.reserve)
            if request.lease is not None:
                self.model_leases[request.lease].spent += cost
                self.settled.append((request.admission.request_id, request.account_id, cost))
                continue
            if request.shard is not None:
                self.model_shards[request.shard].unsynced += cost
                self.settled.append((request.admission.request_id, request.account_id, cost))
                continue
            self._end_in_flight(request)
            self._charged(request.key, cost, request.admission.request_id)
            if request.period:
                request.key.period_spend[request.period] += cost
            self.settled.append((request.admission.request_id, request.account_id, cost))
        for lease in unreturned:
            self._lease_returned(lease)
        # Every shard holding money is idle now (nothing live, its last use more than a minute ago): given back
        # once, its unsynced spend in one usage entry, the rest of what it held to the balance.
        returned = {given.shard: given for given in report.shards_returned if given.account_id in self.env.my_accounts}
        assert set(returned) == {shard for shard, model in self.model_shards.items() if model.held}, returned
        for shard, given in returned.items():
            model = self.model_shards[shard]
            assert (given.synced.spent, given.returned_micros) == (model.unsynced, model.held - model.unsynced)
            self._shard_synced(shard, model.unsynced)
            self._shard_returned(shard, given.returned_micros)
        note(f"reconciler settled {len(self.abandoned)}, returned {len(unreturned)} leases, {len(returned)} shards")
        self.abandoned.clear()
        again = reservations.reconcile(now)
        assert (again.settled, again.leases_returned) == (0, 0)
        assert not [given for given in again.shards_returned if given.account_id in self.env.my_accounts]

    # ------------------------------------------------------------ leases of hot keys (issue 16)
    @staticmethod
    def _leasing_instance() -> Meter:
        """An instance that leases every credit key at once; it returns leases only when told to (flush)."""
        return Meter(
            KeyCache(), LeasePolicy(min_rate=0, warmup_seconds=0, return_in_background=False), shards=NO_SHARDS
        )

    def _unreturned_leases(self) -> list[LeaseModel]:
        return [lease for lease in self.model_leases.values() if not lease.returned]

    def _lease_returned(self, lease: LeaseModel) -> None:
        """What a returned lease did lands centrally: its spend in one usage entry and the key's spend; the
        rest of its slice back to the balance."""
        model = self.model_accounts[lease.account_id]
        model.balance += lease.micros
        model.in_flight -= lease.micros
        lease.key.spend += lease.spent - lease.micros
        if lease.period:
            lease.key.period_spend[lease.period] += lease.spent - lease.micros
        if lease.spent:
            model.book("usage", -lease.spent, f"lease#{lease.lease_id}")
        lease.returned = True

    @rule(
        target=in_flight,
        key_id=credit_keys,
        reserve=st.one_of(st.integers(1, 5_000), st.integers(1, 3).map(lambda d: d * 1_000_000)),
    )
    def admit_on_lease(self, key_id: str, reserve: int) -> Any:
        """When the leasing instance admits a request, then it is admitted on a lease it holds, or by a take
        carrying it (the slice's money leaves the balance and joins the key's spend, no ledger entry yet),
        or, when no slice fits, exactly as the direct path would; it is refused only when the direct path
        would refuse it, with the same status."""
        key = self.model_keys[key_id]
        snapshot = self.leasing.keys.lookup(key.plaintext)
        now = utc_now()  # the real clock: leases register on real minutes, which key changes look at
        refusal = self._admissible(key, reserve, now)
        request_id = str(uuid.uuid4())
        pending = Pending(model="test/echo", stream=False, prompt_tokens=7, prompt_cost_micros=reserve // 3)
        try:
            admission = self.leasing.admit(snapshot, reserve, 100, request_id, now, pending)
        except ProxyError as refused:
            assert refusal is not None and refused.status == refusal, (refusal, refused.status, refused.code)
            note(f"lease admit: {refusal}")
            return multiple()
        self.live.add(request_id)
        model = self.model_accounts[key.account_id]
        period = self._period(key, now)
        if admission.lease is None:  # no slice fitted: the direct path admitted it
            assert refusal is None
            model.balance -= reserve
            model.in_flight += reserve
            key.spend += reserve
            if period:
                key.period_spend[period] += reserve
            note("lease admit: direct")
            return self._track(InFlight(admission, key.account_id, key, reserve, period))
        lease = admission.lease
        if lease.lease_id not in self.model_leases:  # taken by this request
            assert refusal is None  # the take needed room for n requests like it
            model.balance -= lease.micros
            model.in_flight += lease.micros
            key.spend += lease.micros
            if period:
                key.period_spend[period] += lease.micros
            self.model_leases[lease.lease_id] = LeaseModel(lease.lease_id, key.account_id, key, lease.micros, period)
            note("lease taken")
        else:
            note("admitted on a lease")
        return self._track(InFlight(admission, key.account_id, key, reserve, None, lease=lease.lease_id))

    @precondition(lambda self: self.leasing.leases_held())
    @rule()
    def leases_return(self) -> None:
        """When the leasing instance returns its leases (here: all of them end now), then each with nothing
        in flight is returned once: one usage entry of what it spent, the rest of its slice back; a lease with
        requests in flight stays until they end."""
        returned = self.leasing.flush(utc_now())
        for item in returned:
            lease = self.model_leases[item["leaseId"]]
            assert not lease.returned and (item["spentMicros"], item["grantedMicros"]) == (lease.spent, lease.micros)
            self._lease_returned(lease)
        note(f"leases returned: {len(returned)}")

    @precondition(lambda self: self.leasing.leases_held())
    @rule()
    def instances_die(self) -> None:
        """When the proxy instances die (the leasing one holding leases) with whatever was in flight on them,
        then nothing they held is settled or returned by them: the reconciler settles their requests (into
        their leases, for leased ones) after their deadline and returns the leases after their end."""
        self.abandoned.extend(self.admitted[request_id] for request_id in sorted(self.live))
        note(f"instances die: {len(self.live)} requests in flight, {self.leasing.leases_held()} leases held")
        self.live.clear()
        self.leasing = self._leasing_instance()
        self.sharding = self._sharding_instance()
        self.meter = Meter(KeyCache(), shards=NO_SHARDS)

    # ------------------------------------------------------------ key shards of hot keys (issue 16, Lambda)
    @staticmethod
    def _sharding_instance() -> Meter:
        """An environment without leases (one request at a time, as on Lambda); shards are picked in turn."""
        turn = itertools.count()
        return Meter(KeyCache(), LeasePolicy(enabled=False), KeyShards(choose=lambda shards: next(turn) % shards))

    def _held_shards(self) -> list[str]:
        return [shard for shard, model in self.model_shards.items() if model.held]

    def _shard_synced(self, shard: str, spent: int) -> None:
        """A sync moved ``spent`` off the shard: one usage entry (the key's spend already holds it)."""
        model = self.model_shards[shard]
        assert 0 <= spent <= model.unsynced, (spent, model)
        model.unsynced -= spent
        model.held -= spent
        account = self.model_accounts[model.account_id]
        account.in_flight -= spent
        if spent:  # a ledger entry, not a balance change: the refill already took the money from the balance
            account.ledger[("usage", -spent, shard)] += 1

    def _shard_returned(self, shard: str, micros: int) -> None:
        model = self.model_shards[shard]
        assert micros == model.held - model.unsynced and model.unsynced == 0, (micros, model)
        model.held = 0
        account = self.model_accounts[model.account_id]
        account.balance += micros
        account.in_flight -= micros
        model.key.spend -= micros

    @rule(key_id=credit_keys)
    def promote_key(self, key_id: str) -> None:
        """When a key met TransactionConflict (promoted here directly: no local DynamoDB reports one), then it
        is in shard mode (2 shards) and the environment serving it reads it again."""
        from llm_platform.domain import hot_keys

        key = self.model_keys[key_id]
        promoted = hot_keys.promote(key.key_hash, key_id, key.account_id, 2)
        self.promoted.add(key_id)
        self.sharding.keys.reload(hashlib.sha256(key.plaintext.encode()).hexdigest())
        note(f"key promoted: {promoted}")

    @rule(
        target=in_flight,
        key_id=credit_keys,
        reserve=st.one_of(st.integers(1, 5_000), st.integers(1, 3).map(lambda d: d * 1_000_000)),
    )
    def admit_on_shard(self, key_id: str, reserve: int) -> Any:
        """When an environment admits a request of a key (in shard mode or not), then it is admitted on a
        shard with room, or by a refill carrying it (the slice's money leaves the balance and joins the key's
        spend; what the shard had spent is synced: one usage entry), or exactly as the direct path would. A
        request the direct path would refuse may still be admitted from money a shard already holds; one it
        would admit is never refused."""
        request = self._admit_on_shard(key_id, reserve)
        return multiple() if request is None else request

    @rule(
        key_id=credit_keys,
        requests=st.lists(
            st.tuples(st.integers(1, 5_000), st.sampled_from([0.0, 0.3, 1.0]), st.booleans()), min_size=2, max_size=8
        ),
    )
    def shard_traffic(self, key_id: str, requests: list[tuple[int, float, bool]]) -> None:
        """When a hot key's requests come one after another (each admitted as ``admit_on_shard`` says, then
        settled at a share of its reservation, or released), then refills, admissions on shards and syncs follow
        each other, and every micro-dollar stays where the model says."""
        for reserve, share, served in requests:
            request = self._admit_on_shard(key_id, reserve)
            if request is None:
                continue
            if served:
                self.settle_in_process(request, share)
            else:
                self.release_in_process(request)

    def _admit_on_shard(self, key_id: str, reserve: int) -> InFlight | None:
        key = self.model_keys[key_id]
        if key_id not in self.promoted:  # this rule's keys are hot: promoted at their first request here
            self.promote_key(key_id)
        snapshot = self.sharding.keys.lookup(key.plaintext)
        now = max(self.clock, utc_now())
        refusal = self._admissible(key, reserve, now)
        request_id = str(uuid.uuid4())
        pending = Pending(model="test/echo", stream=False, prompt_tokens=7, prompt_cost_micros=reserve // 3)
        try:
            admission = self.sharding.admit(snapshot, reserve, 100, request_id, now, pending)
        except ProxyError as refused:
            assert refusal is not None and refused.status == refusal, (refusal, refused.status, refused.code)
            note(f"shard admit: {refusal}")
            return None
        self.live.add(request_id)
        model = self.model_accounts[key.account_id]
        if admission.shard is None:  # not in shard mode, or no slice fitted: the direct path admitted it
            assert refusal is None
            period = self._period(key, now)
            model.balance -= reserve
            model.in_flight += reserve
            key.spend += reserve
            if period:
                key.period_spend[period] += reserve
            note("shard admit: direct")
            return self._track(InFlight(admission, key.account_id, key, reserve, period))
        shard = admission.shard.shard
        state = self.model_shards.setdefault(shard, ShardModel(key.account_id, key))
        if admission.shard.refilled_micros:  # a refill carrying it: the direct path's room for the whole slice
            assert refusal is None
            micros = admission.shard.refilled_micros
            model.balance -= micros
            model.in_flight += micros
            key.spend += micros
            state.held += micros
            synced = admission.shard.synced
            self._shard_synced(shard, synced.spent if synced else 0)
            note("shard refilled" + (" and synced" if synced and synced.spent else ""))
        else:
            note("admitted on a shard" + (" past the direct path's refusal" if refusal else ""))
        return self._track(InFlight(admission, key.account_id, key, reserve, None, shard=shard))

    # ------------------------------------------------------------ key lifecycle
    @rule(
        key_id=credit_keys,
        reset=st.sampled_from(["daily", "weekly", "monthly", "daily", None]),
        max_budget=st.one_of(st.none(), st.integers(1, 10_000), st.integers(1, 20).map(lambda usd: usd * 1_000_000)),
    )
    def change_budget(self, key_id: str, reset: str | None, max_budget: int | None) -> None:
        """When a key's maxBudget and budget reset are changed (requests may be in flight), then the next
        admission applies them: per calendar period with a reset, over the lifetime spend without one."""
        key = self.model_keys[key_id]
        caller = self.model_accounts[key.account_id].caller
        updated = api_keys.update_key(
            caller, key_id, name=None, disabled=None, limits={"budget_reset": reset, "max_budget_micros": max_budget}
        )
        assert (updated.budget_reset, updated.max_budget_micros) == (reset, max_budget)
        key.budget_reset, key.max_budget = reset, max_budget
        note(f"budget changed: reset={reset} capped={max_budget is not None}")

    @rule(hours=st.sampled_from([1, 20, 24 * 8, 24 * 32]))
    def time_passes(self, hours: int) -> None:
        """When time passes (in-process admissions use the machine's clock), then budget periods roll over:
        a key with a reset may spend its whole maxBudget again, reservations in flight stay in theirs."""
        self.clock = max(self.clock, utc_now()) + timedelta(hours=hours)
        note(f"time passes: {hours} h")

    @rule(key_id=credit_keys, grace=st.sampled_from([0, 3600]))
    def rotate(self, key_id: str, grace: int) -> None:
        """When a key's secret is rotated (requests may be in flight on the old one), then the new secret
        is the same key (spend, limits, history); the old one works for the grace period only."""
        key = self.model_keys[key_id]
        caller = self.model_accounts[key.account_id].caller
        old = key.plaintext
        self.meter.keys.lookup(old)  # warm: the instance holds the old secret's snapshot
        rotated, new, _ = api_keys.rotate_key(caller, key_id, grace)
        assert (rotated.key_id, rotated.key_hash, rotated.spend_micros) == (key_id, key.key_hash, key.spend)
        key.plaintext = new
        fresh = self.meter.keys.lookup(new)
        assert fresh is not None and fresh.key_hash == key.key_hash
        stale = self.meter.keys.reload(hashlib.sha256(old.encode()).hexdigest())
        if grace:
            check_usable(stale, utc_now())
        else:
            key.retired_secrets.append(old)
            with pytest.raises(ProxyError):
                check_usable(stale, utc_now())
        note(f"rotated, grace {grace}")

    # ------------------------------------------------------------ invariants
    # Reads are consistent (base tables only) and batched: one call per table, one query per ledger.
    def _get_many(self, table: str, key_name: str, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), 100):
            request = {
                self.env.tables[table]: {
                    "Keys": [{key_name: {"S": key}} for key in unique[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = client().batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.env.tables[table], []):
                    found[item[key_name]["S"]] = item
                request = response.get("UnprocessedKeys") or None
        return found

    def _stored_balances(self) -> dict[str, int]:
        items = self._get_many("AccountsTable", "accountId", list(self.model_accounts))
        return {account_id: int(item["creditBalanceMicros"]["N"]) for account_id, item in items.items()}

    def _stored_ledgers(self) -> dict[str, list[dict]]:
        """Every ledger entry of every account (deserialized: amounts are Decimals)."""
        return {
            account_id: query_all(
                TableName=self.env.tables["LedgerTable"],
                KeyConditionExpression="accountId = :a",
                ExpressionAttributeValues={":a": {"S": account_id}},
                ConsistentRead=True,
            )
            for account_id in self.model_accounts
        }

    @invariant()
    def ledger_explains_balance(self) -> None:
        """Then balance + reservations in flight == sum of the account's ledger entries (no reservation
        in flight: balance == sum of the ledger)."""
        balances, ledgers = self._stored_balances(), self._stored_ledgers()
        for account_id, model in self.model_accounts.items():
            ledger_sum = sum(int(entry["amountMicros"]) for entry in ledgers[account_id])
            assert balances[account_id] + model.in_flight == ledger_sum, (account_id, model.in_flight)

    @invariant()
    def balance_never_negative_except_by_chargebacks(self) -> None:
        """Then no balance is ever below zero (one request at a time, none may overdraw it), except by what
        refunds and disputes took back: spending never takes it below zero, so at most by that much."""
        for account_id, balance in self._stored_balances().items():
            assert balance >= -self.model_accounts[account_id].chargebacks, account_id

    @invariant()
    def key_caps_hold(self) -> None:
        """Then each account's live API keys and management keys are the model's, within the caps."""
        for account_id, model in self.model_accounts.items():
            stored = query_all(
                TableName=self.env.tables["ApiKeysTable"],
                IndexName="byAccount",
                KeyConditionExpression="accountId = :a",
                ExpressionAttributeValues={":a": {"S": account_id}},
            )
            live = sum(1 for item in stored if item["status"] != "revoked")
            assert live == model.api_keys <= MAX_API_KEYS, account_id
            managers = query_all(
                TableName=self.env.tables["ManagementKeysTable"],
                IndexName="byAccount",
                KeyConditionExpression="accountId = :a",
                ExpressionAttributeValues={":a": {"S": account_id}},
            )
            assert len(managers) == model.management_keys <= MAX_MANAGEMENT_KEYS, account_id

    @invariant()
    def payments_credited_at_most_once(self) -> None:
        """Then a paid Checkout Session has exactly one dedup record and one ledger entry, a never-paid
        one none; an event id is recorded exactly when it was applied."""
        if not self.model_sessions:
            return
        references = collections.Counter(
            entry["reference"] for entries in self._stored_ledgers().values() for entry in entries
        )
        session_keys = {f"stripe#checkout#{session_id}": s for session_id, s in self.model_sessions.items()}
        event_keys = {f"stripe#event#{event_id}": event_id for event_id in self.delivered_events}
        recorded = self._get_many("PaymentEventsTable", "eventKey", [*session_keys, *event_keys])
        for reference, session in session_keys.items():
            expected = int(session.paid_by is not None)
            assert (int(reference in recorded), references[reference]) == (expected, expected), session
            if expected:
                assert recorded[reference]["accountId"]["S"] == session.paid_by
        for event_key, event_id in event_keys.items():
            assert (event_key in recorded) == (event_id in self.applied_events), event_id

    @invariant()
    def stored_state_is_the_models(self) -> None:
        """Then balances, ledger entries (kind, amount, reference) and credit keys' spend are the model's."""
        balances, ledgers = self._stored_balances(), self._stored_ledgers()
        for account_id, model in self.model_accounts.items():
            assert balances[account_id] == model.balance, account_id
            entries = ledgers[account_id]
            stored = collections.Counter((e["kind"], int(e["amountMicros"]), e["reference"]) for e in entries)
            assert stored == +model.ledger, account_id
        keys = self._get_many("ApiKeysTable", "keyHash", [key.key_hash for key in self.model_keys.values()])
        for key in self.model_keys.values():
            assert int(keys[key.key_hash].get("spendMicros", {"N": "0"})["N"]) == key.spend, key.key_id
        periods = [(key, *period) for key in self.model_keys.values() for period in +key.period_spend]
        counters = usage_counters.get_many(
            [usage_counters.budget_period_counter(k.key_id, r, i) for k, r, i in periods]
        )
        for key, reset, index in periods:
            stored = counters.get(usage_counters.budget_period_counter(key.key_id, reset, index), {})
            assert stored.get("spendMicros", 0) == key.period_spend[(reset, index)], (key.key_id, reset, index)

    @invariant()
    def every_settled_request_is_logged(self) -> None:
        """Then each request settled in process has its log record with the cost charged (0 if released)."""
        if not self.settled:
            return
        records = self._get_many("RequestLogTable", "requestId", [request_id for request_id, _, _ in self.settled])
        for request_id, account_id, cost in self.settled:
            record = records[request_id]
            # A promoted key's records sit on a log shard: the stored index value is `<accountId>#<n>`.
            stored_account = record["accountId"]["S"].split("#")[0]
            assert (stored_account, int(record["costMicros"]["N"])) == (account_id, cost), request_id


def _end_account(sub: SubscriptionModel) -> tuple[str, str]:
    return sub.period_end, sub.account_id


def _renewals(order: tuple[SubscriptionModel, ...], balances: dict[str, int]) -> frozenset[str]:
    """Which of ``order`` (due at the same moment) renew when taken in this order."""
    renewed = set()
    for sub in order:
        if not sub.cancelled and balances[sub.account_id] >= sub.price:
            balances[sub.account_id] -= sub.price
            renewed.add(sub.subscription_id)
    return frozenset(renewed)


# ---------------------------------------------------------------- the test
@pytest.fixture
def env(local_stack, monkeypatch) -> Any:
    # The webhook function with a secret of this test's own, as Stripe would sign with it.
    webhook = webhook_function(monkeypatch, SECRET)

    def deliver(event: dict) -> tuple[int, str]:
        return outcome(webhook(event))

    # Small key caps, so the examples reach them.
    real = plans.catalog()
    small = real.model_copy(
        update={
            "account_limits": real.account_limits.model_copy(
                update={"max_api_keys": MAX_API_KEYS, "max_management_keys": MAX_MANAGEMENT_KEYS}
            )
        }
    )
    for module in (plans, api_keys, management_keys, subscriptions):
        monkeypatch.setattr(module, "catalog", lambda: small)
    # The expiry job's real due query, narrowed to this test's accounts (see the module doc).
    mine: set[str] = set()
    real_due = subscriptions_table.due
    monkeypatch.setattr(subscriptions_table, "due", lambda now: [s for s in real_due(now) if s.account_id in mine])
    # Likewise the reconciler sees only this test's reservations (others' requests are still being served).
    from llm_platform.data import metering as metering_store

    real_reservations = metering_store.due_reservations
    monkeypatch.setattr(
        metering_store,
        "due_reservations",
        lambda shard, before, limit: [r for r in real_reservations(shard, before, limit) if r["accountId"] in mine],
    )
    with httpx.Client(base_url=local_stack.api_url, timeout=30) as http:
        yield Env(deliver, http, local_stack.table_names, mine)
    from llm_platform.config import get_settings

    get_settings.cache_clear()


# Passing takes seconds; a failure is shrunk to a minimal sequence of steps for up to 5 minutes
# (Hypothesis's own cap), hence more than the suite's default timeout.
@pytest.mark.timeout(600)
def test_money_paths_keep_every_micro_dollar_accounted_for(env: Env) -> None:
    """Given fresh accounts, when random sequences of payments, subscriptions, spending and expiry runs
    happen, then after every step each micro-dollar is where the model says, explained by the ledger."""
    OUTCOMES.clear()
    run_state_machine_as_test(lambda: MoneyMachine(env), settings=SETTINGS)
    print("money state machine outcomes:", dict(sorted(OUTCOMES.items())))
