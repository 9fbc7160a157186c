import { useEffect, useId, useState } from "preact/hooks";

import { api, query, type BillingStatus, type LedgerEntry, type Plan, type Subscription, type Wallet } from "../api";
import { Badge, Button, Card, DataTable, ConfirmDialog, CopyButton, EmptyState, ErrorNotice, Field, Loaded, Loading, Notice, PageHeader, StatusBadge, useAction, useResource } from "../components";
import { asApiError } from "../components";
import { number, planName, usd, when } from "../format";

/** Where Stripe Checkout sent the customer back: ?checkout=success|cancelled (read once, then removed). */
function takeCheckoutReturn(): "success" | "cancelled" | null {
  const params = new URLSearchParams(window.location.search);
  const outcome = params.get("checkout");
  if (outcome !== "success" && outcome !== "cancelled") return null;
  window.history.replaceState(null, "", `${window.location.pathname}${window.location.hash || "#/billing"}`);
  return outcome;
}

export function BillingPage() {
  const status = useResource(() => api.get<BillingStatus>("api/billing/status"));
  const plans = useResource(() => api.get<Plan[]>("api/plans"));
  const [checkout, setCheckout] = useState(takeCheckoutReturn);
  const [message, setMessage] = useState<string>();
  useEffect(() => {
    // Back from Checkout: Stripe's webhook may land a moment after the redirect, so look again shortly.
    if (checkout !== "success") return;
    const timers = [2000, 6000].map((delay) => window.setTimeout(() => void status.reload(), delay));
    return () => timers.forEach((timer) => window.clearTimeout(timer));
  }, []);
  const [usdc, setUsdc] = useState<UsdcInstructions>();
  const refresh = (text?: string) => {
    setCheckout(null); // the Checkout return's notice is about an earlier payment: the newest outcome replaces it
    setMessage(text);
    void status.reload();
  };
  return (
    <>
      <PageHeader title="Billing" description="Plans, your credit balance and every change to it." />
      {checkout === "success" ? (
        <Notice kind="success">
          <strong>Payment complete.</strong> Thank you! Your subscription or credit shows below as soon as Stripe confirms it, usually at once.
        </Notice>
      ) : checkout === "cancelled" ? (
        <Notice kind="info">Checkout was cancelled: nothing was charged.</Notice>
      ) : null}
      {message ? <Notice kind="success">{message}</Notice> : null}
      <div class="grid grid-2">
        <Card title="Credit balance" class="card-stat">
          <Loaded resource={status} label="the balance">
            {(data) => (
              <>
                <p class="stat" data-testid="billing-balance" title={`${usd(data.creditBalance)} exactly`}>
                  {usd(data.creditBalance, { cents: true })}
                </p>
                <p class="muted">Spent by credit keys per request, or on a plan with “Subscribe with credits”.</p>
              </>
            )}
          </Loaded>
        </Card>
        <TopUp onUsdc={setUsdc} />
      </div>
      {usdc ? <UsdcTopUp instructions={usdc} onCredited={(text) => refresh(text)} /> : null}
      <Card title="Plans">
        <Loaded resource={plans} label="the plans">
          {(list) => (
            <div class="plans">
              {list.map((plan) => (
                <PlanCard key={plan.slug} plan={plan} balance={status.data?.creditBalance} onSubscribed={(text) => refresh(text)} />
              ))}
            </div>
          )}
        </Loaded>
      </Card>
      <Card title="Subscriptions">
        <Loaded resource={status} label="your subscriptions">
          {(data) => <Subscriptions subscriptions={data.subscriptions} plans={plans.data} onChanged={(text) => refresh(text)} />}
        </Loaded>
      </Card>
      <Ledger key={status.data?.creditBalance} />
    </>
  );
}

function PlanCard({ plan, balance, onSubscribed }: { plan: Plan; balance?: string; onSubscribed: (message: string) => void }) {
  const card = useAction();
  const credits = useAction();
  const headingId = useId();
  const byCard = async () => {
    const session = await card.run(() => api.post<{ sessionUrl: string }>("api/billing/checkout", { planSlug: plan.slug }));
    if (session) window.location.assign(session.sessionUrl);
  };
  const fromCredits = async () => {
    const result = await credits.run(() => api.post<{ subscription: Subscription }>("api/billing/subscribe", { planSlug: plan.slug }));
    if (result) onSubscribed(`You are subscribed to ${plan.name}, paid from your credits until ${when(result.subscription.currentPeriodEnd)}.`);
  };
  const short = balance !== undefined && Number(balance) < Number(plan.price);
  return (
    <section class="plan" aria-labelledby={headingId}>
      <h3 id={headingId}>{plan.name}</h3>
      <p class="plan-price">
        {usd(plan.price)}
        <span> / {plan.intervalMonths === 1 ? "month" : `${plan.intervalMonths} months`}</span>
      </p>
      <ul class="plan-features">
        <li>
          <strong>{usd(plan.budgetPer5h)}</strong> to spend every 5 hours
        </li>
        <li>
          <strong>{number(plan.rpm)}</strong> requests per minute per key
        </li>
        <li>
          <strong>{number(plan.tpm)}</strong> tokens per minute per key
        </li>
      </ul>
      {short ? (
        <p class="hint" id={`${headingId}-short`}>
          Your balance ({usd(balance, { cents: true })}) does not cover {usd(plan.price)}: subscribe by card, or top up first.
        </p>
      ) : null}
      <div class="plan-actions">
        <Button variant="primary" busy={card.busy} onClick={byCard}>
          Subscribe by card
        </Button>
        <Button busy={credits.busy} onClick={fromCredits} aria-describedby={short ? `${headingId}-short` : undefined}>
          Subscribe with credits
        </Button>
      </div>
      <ErrorNotice error={card.error} title="Could not open Checkout." />
      <ErrorNotice error={credits.error} title="Could not subscribe." />
    </section>
  );
}

function Subscriptions({ subscriptions, plans, onChanged }: { subscriptions: Subscription[]; plans?: Plan[]; onChanged: (message: string) => void }) {
  const [cancelling, setCancelling] = useState<Subscription>();
  const { busy, error, run, clearError } = useAction();
  if (subscriptions.length === 0) {
    return (
      <EmptyState title="No subscription yet">
        <p>Pick a plan above.</p>
      </EmptyState>
    );
  }
  const nameOf = (subscription: Subscription) => plans?.find((plan) => plan.slug === subscription.planSlug)?.name ?? planName(subscription.planSlug);
  const confirm = async () => {
    if (!cancelling) return;
    const result = await run(() => api.post<{ currentPeriodEnd: string }>("api/billing/cancel", { subscriptionId: cancelling.id }));
    if (result) {
      const name = nameOf(cancelling);
      setCancelling(undefined);
      onChanged(`${name} is cancelled. It stays active until ${when(result.currentPeriodEnd)}; then its keys stop working.`);
    }
  };
  return (
    <>
      <DataTable caption="Your subscriptions" columns={["Plan", "Status", "Period ends", "Keys", { label: "Actions", hidden: true }]}>
            {subscriptions.map((subscription) => (
              <tr key={subscription.id} data-testid={`subscription-${subscription.planSlug}`}>
                <th scope="row" class="cell-name">
                  {nameOf(subscription)}
                </th>
                <td>
                  <StatusBadge status={subscription.status} /> {subscription.cancelAtPeriodEnd ? <Badge tone="gray">Cancels at period end</Badge> : null}
                </td>
                <td>{when(subscription.currentPeriodEnd)}</td>
                <td>{subscription.keys.length ? subscription.keys.map((key) => key.name).join(", ") : <span class="muted">None</span>}</td>
                <td class="cell-actions">
                  {subscription.status !== "expired" && !subscription.cancelAtPeriodEnd ? (
                    <Button
                      small
                      variant="danger"
                      aria-label={`Cancel ${nameOf(subscription)}`}
                      onClick={() => {
                        clearError();
                        setCancelling(subscription);
                      }}
                    >
                      Cancel
                    </Button>
                  ) : null}
                </td>
              </tr>
            ))}
          </DataTable>
      {cancelling ? (
        <ConfirmDialog title={`Cancel ${nameOf(cancelling)}?`} open onClose={() => setCancelling(undefined)} onConfirm={confirm} confirmLabel="Cancel subscription" danger busy={busy} error={error}>
          <p>
            It stays active until {when(cancelling.currentPeriodEnd)} and is not renewed. Then its {cancelling.keyCount === 1 ? "key stops" : "keys stop"} working.
          </p>
        </ConfirmDialog>
      ) : null}
    </>
  );
}

// ------------------------------------------------------------------ top-ups

interface UsdcInstructions {
  address: string;
  chain: string;
  amount: string;
}

function TopUp({ onUsdc }: { onUsdc: (instructions: UsdcInstructions | undefined) => void }) {
  const [amount, setAmount] = useState("25");
  const [method, setMethod] = useState<"stripe" | "usdc">("stripe");
  const { busy, error, run } = useAction();
  const id = useId();
  const submit = async (event: Event) => {
    event.preventDefault();
    onUsdc(undefined);
    const value = amount.trim();
    const result = await run(() => api.post<{ sessionUrl?: string } & Partial<UsdcInstructions>>("api/billing/topup", { amount: value, method }));
    if (!result) return;
    if (result.sessionUrl) window.location.assign(result.sessionUrl);
    else if (result.address) onUsdc({ address: result.address, chain: result.chain ?? "base", amount: result.amount ?? value });
  };
  return (
    <Card title="Top up">
      <form onSubmit={submit}>
        <div class="field-row">
          <Field label="Amount (USD)" id={`${id}-amount`} hint={method === "stripe" ? "At least $10 by card." : "Any amount of USDC."}>
            <input id={`${id}-amount`} inputMode="decimal" required pattern="[0-9]+(\.[0-9]{1,2})?" value={amount} onInput={(e) => setAmount(e.currentTarget.value)} aria-describedby={`${id}-amount-hint`} />
          </Field>
          <fieldset class="choice choice-inline">
            <legend>Pay with</legend>
            <label class="radio">
              <input type="radio" name="topup-method" checked={method === "stripe"} onChange={() => setMethod("stripe")} />
              <span>Card</span>
            </label>
            <label class="radio">
              <input type="radio" name="topup-method" checked={method === "usdc"} onChange={() => setMethod("usdc")} />
              <span>USDC</span>
            </label>
          </fieldset>
        </div>
        <ErrorNotice error={error} title="Could not start the top-up." />
        <Button type="submit" variant="primary" busy={busy}>
          {method === "stripe" ? "Top up by card" : "Top up with USDC"}
        </Button>
      </form>
    </Card>
  );
}

interface Eip1193 {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

function browserWallet(): Eip1193 | undefined {
  const candidate = (window as unknown as { ethereum?: Eip1193 }).ethereum;
  return candidate && typeof candidate.request === "function" ? candidate : undefined;
}

function utf8Hex(text: string): string {
  return "0x" + Array.from(new TextEncoder().encode(text), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function UsdcTopUp({ instructions, onCredited }: { instructions: UsdcInstructions; onCredited: (message: string) => void }) {
  const wallets = useResource(() => api.get<Wallet[]>("api/billing/wallets"));
  const id = useId();
  return (
    <Card title="Pay with USDC" class="usdc">
      <ol class="steps">
        <li>
          <p>
            Send <strong>{instructions.amount} USDC</strong> on <strong>{instructions.chain === "base" ? "Base" : instructions.chain}</strong> to:
          </p>
          <div class="secret-row">
            <input id={`${id}-address`} aria-label="Deposit address" class="mono" readOnly value={instructions.address} onFocus={(e) => e.currentTarget.select()} />
            <CopyButton text={instructions.address} label="Copy address" />
          </div>
          <p class="hint">From a wallet bound to your account (step 2), or the transfer cannot be credited to you.</p>
        </li>
        <li>
          <p>Bind the paying wallet, once, by signing a message.</p>
          <Loaded resource={wallets} label="your wallets">
            {(list) => (
              <>
                {list.length ? (
                  <ul class="wallets" aria-label="Bound wallets">
                    {list.map((wallet) => (
                      <li key={wallet.address}>
                        <code>{wallet.address}</code> <span class="muted">bound {when(wallet.boundAt)}</span>
                      </li>
                    ))}
                  </ul>
                ) : (
                  <p class="muted">No wallet bound yet.</p>
                )}
                <BindWallet onBound={() => void wallets.reload()} />
              </>
            )}
          </Loaded>
        </li>
        <li>
          <p>After sending, paste the transaction hash.</p>
          <VerifyTransfer amount={instructions.amount} onCredited={onCredited} />
        </li>
      </ol>
    </Card>
  );
}

function BindWallet({ onBound }: { onBound: () => void }) {
  const [address, setAddress] = useState("");
  const [message, setMessage] = useState<string>();
  const [signature, setSignature] = useState("");
  const [bound, setBound] = useState<string>();
  const { busy, error, run } = useAction();
  const id = useId();
  const wallet = browserWallet();

  const bind = async (account: string, signed: string) => {
    const result = await run(() => api.post<Wallet>("api/billing/wallets", { address: account, signature: signed }));
    if (result) {
      setBound(result.address);
      setMessage(undefined);
      setSignature("");
      onBound();
    }
  };
  const withBrowserWallet = async () => {
    if (!wallet) return;
    setBound(undefined);
    await run(async () => {
      const accounts = (await wallet.request({ method: "eth_requestAccounts" })) as string[];
      const account = accounts?.[0];
      if (!account) throw new Error("The wallet shared no account.");
      setAddress(account);
      const challenge = await api.post<{ message: string }>("api/billing/wallets/challenge", { address: account });
      setMessage(challenge.message);
      const signed = (await wallet.request({ method: "personal_sign", params: [utf8Hex(challenge.message), account] })) as string;
      const result = await api.post<Wallet>("api/billing/wallets", { address: account, signature: signed });
      setBound(result.address);
      setMessage(undefined);
      onBound();
    });
  };
  const getMessage = async (event: Event) => {
    event.preventDefault();
    setBound(undefined);
    const challenge = await run(() => api.post<{ message: string }>("api/billing/wallets/challenge", { address: address.trim() }));
    if (challenge) setMessage(challenge.message);
  };

  return (
    <div class="bind-wallet">
      {bound ? <Notice kind="success">Wallet {bound} is bound to your account.</Notice> : null}
      {wallet ? (
        <Button variant="primary" small busy={busy} onClick={withBrowserWallet}>
          Sign with browser wallet
        </Button>
      ) : (
        <p class="hint">No browser wallet found: sign the message with your wallet's tool and paste the signature.</p>
      )}
      <form onSubmit={getMessage} class="inline-form">
        <Field label="Wallet address" id={`${id}-address`}>
          <input id={`${id}-address`} class="mono" required pattern="0x[0-9a-fA-F]{40}" value={address} onInput={(e) => setAddress(e.currentTarget.value)} placeholder="0x…" />
        </Field>
        <Button type="submit" small busy={busy && !message}>
          Get message to sign
        </Button>
      </form>
      {message ? (
        <form
          onSubmit={(event) => {
            event.preventDefault();
            void bind(address.trim(), signature.trim());
          }}
        >
          <Field label="Message to sign" id={`${id}-message`} hint="Sign it with personal_sign (EIP-191). It expires in 10 minutes.">
            <textarea id={`${id}-message`} class="mono" readOnly rows={7} value={message} aria-describedby={`${id}-message-hint`} />
          </Field>
          <CopyButton text={message} label="Copy message" />
          <Field label="Signature" id={`${id}-signature`}>
            <input id={`${id}-signature`} class="mono" required value={signature} onInput={(e) => setSignature(e.currentTarget.value)} placeholder="0x…" />
          </Field>
          <Button type="submit" small variant="primary" busy={busy}>
            Bind wallet
          </Button>
        </form>
      ) : null}
      <ErrorNotice error={error} title="Could not bind the wallet." />
    </div>
  );
}

function VerifyTransfer({ amount, onCredited }: { amount: string; onCredited: (message: string) => void }) {
  const [txHash, setTxHash] = useState("");
  const [pending, setPending] = useState<string>();
  const { busy, error, run } = useAction();
  const id = useId();
  const verify = async (event: Event) => {
    event.preventDefault();
    setPending(undefined);
    const result = await run(() =>
      api.post<{ credited?: string; creditBalance?: string; status?: string; confirmations?: number; requiredConfirmations?: number }>("api/billing/verify-topup", { txHash: txHash.trim(), amount }),
    );
    if (!result) return;
    if (result.status === "pending") setPending(`Seen with ${result.confirmations ?? 0} of ${result.requiredConfirmations ?? "?"} confirmations. Check again in a minute; nothing is credited until then.`);
    else onCredited(`${usd(result.credited)} in USDC credited. Your balance is ${usd(result.creditBalance)}.`);
  };
  return (
    <form onSubmit={verify} class="inline-form">
      <Field label="Transaction hash" id={`${id}-tx`}>
        <input id={`${id}-tx`} class="mono" required pattern="0x[0-9a-fA-F]{64}" value={txHash} onInput={(e) => setTxHash(e.currentTarget.value)} placeholder="0x…" />
      </Field>
      <Button type="submit" small variant="primary" busy={busy}>
        Verify payment
      </Button>
      {pending ? <Notice kind="info">{pending}</Notice> : null}
      <ErrorNotice error={error} title="Could not credit the transfer." />
    </form>
  );
}

// ------------------------------------------------------------------ ledger

function Ledger() {
  const [entries, setEntries] = useState<LedgerEntry[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<ReturnType<typeof asApiError>>();
  const load = async (after: string | null) => {
    setLoading(true);
    setError(undefined);
    try {
      const page = await api.page<LedgerEntry>(`api/billing/ledger${query({ limit: 25, cursor: after })}`);
      setEntries((shown) => (after ? [...shown, ...page.data] : page.data));
      setCursor(page.nextCursor ?? null);
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setLoading(false);
    }
  };
  useEffect(() => {
    void load(null);
  }, []);
  const kinds: Record<string, string> = {
    grant: "Credit grant",
    usage: "API usage",
    topup_stripe: "Card top-up",
    topup_usdc: "USDC top-up",
    subscription: "Subscription",
    subscription_renewal: "Subscription renewal",
  };
  return (
    <Card title="Ledger">
      <p class="muted">Every change to your balance, newest first. The entries add up to the balance.</p>
      {entries.length === 0 && loading ? <Loading label="Loading the ledger…" /> : null}
      <ErrorNotice error={error} title="Could not load the ledger." />
      {entries.length === 0 && !loading && !error ? <EmptyState title="No entries yet" /> : null}
      {entries.length ? (
        <DataTable caption="Ledger" columns={["Date", "Kind", "Reference", { label: "Amount", num: true }]}>
              {entries.map((entry) => (
                <tr key={entry.id}>
                  <td>{when(entry.createdAt)}</td>
                  <td>{kinds[entry.kind] ?? entry.kind.replace(/_/g, " ")}</td>
                  <td class="cell-ref">{entry.reference ?? "—"}</td>
                  <td class={`num amount ${entry.amount.startsWith("-") ? "amount-out" : "amount-in"}`}>{usd(entry.amount, { signed: true })}</td>
                </tr>
              ))}
            </DataTable>
      ) : null}
      {cursor ? (
        <Button small busy={loading} onClick={() => void load(cursor)}>
          Load more
        </Button>
      ) : null}
    </Card>
  );
}
