import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

import { api, type BillingStatus, type KeyUsage, type Plan } from "../api";
import { Badge, Card, CopyButton, EmptyState, ErrorNotice, Loaded, Meter, PageHeader, StatusBadge, useResource } from "../components";
import { micros, microsToUsd, planName, ratio, until, usd, when } from "../format";

export function apiBase(): string {
  return new URL("v1", document.baseURI).href;
}

export function OverviewPage() {
  const status = useResource(() => api.get<BillingStatus>("api/billing/status"));
  // GET /api/usage pages ({data: [...], nextCursor}); one page of 100 keys covers the overview.
  const usage = useResource(() => api.get<KeyUsage[]>("api/usage?limit=100").then((keys) => ({ keys })));
  const plans = useResource(() => api.get<Plan[]>("api/plans"));
  // "Resets in …" counts down while the page is open; past a reset, read the new window.
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 30_000);
    return () => window.clearInterval(timer);
  }, []);
  const nextReset = Math.min(...(status.data?.subscriptions ?? []).map((subscription) => (subscription.budgetWindow ? Date.parse(subscription.budgetWindow.resetsAt) : Infinity)));
  useEffect(() => {
    if (now > nextReset && !status.loading) void status.reload();
  }, [now, nextReset]);
  return (
    <>
      <PageHeader title="Overview" description="Your balance, your plans and how to call the API." />
      <div class="grid grid-2">
        <Card title="Credit balance" class="card-stat">
          <Loaded resource={status} label="the balance">
            {(data) => (
              <>
                <p class="stat" data-testid="credit-balance" title={`${usd(data.creditBalance)} exactly`}>
                  {usd(data.creditBalance, { cents: true })}
                </p>
                <p class="muted">Credit keys spend it per request. Subscriptions can be paid from it too.</p>
                <a class="btn btn-secondary btn-small" href="#/billing">
                  Top up
                </a>
              </>
            )}
          </Loaded>
        </Card>
        <Card title="API keys" class="card-stat">
          <Loaded resource={usage} label="your keys">
            {(data) => {
              const live = data.keys.filter((key) => key.status !== "revoked");
              const spent = live.reduce((sum, key) => sum + micros(key.usage.lifetime.spend), 0);
              const requests = live.reduce((sum, key) => sum + key.usage.lifetime.requests, 0);
              return (
                <>
                  <p class="stat">{live.length}</p>
                  <p class="muted">
                    {live.filter((key) => key.status === "active").length} active · {requests.toLocaleString("en-US")} requests · {usd(microsToUsd(spent))} spent
                  </p>
                  <a class="btn btn-secondary btn-small" href="#/keys">
                    Manage keys
                  </a>
                </>
              );
            }}
          </Loaded>
        </Card>
      </div>
      <Card title="Subscriptions">
        {plans.error && status.data ? <ErrorNotice error={plans.error} title="Could not load the plans: they are shown by their ids." /> : null}
        <Loaded resource={status} label="your subscriptions">
          {(data) =>
            data.subscriptions.length === 0 ? (
              <EmptyState title="No subscription yet">
                <p>A plan gives its keys a budget every 5 hours at a fixed monthly price.</p>
                <a class="btn btn-primary btn-small" href="#/billing">
                  See plans
                </a>
              </EmptyState>
            ) : (
              <ul class="subscription-list">
                {data.subscriptions.map((subscription) => {
                  const name = plans.data?.find((candidate) => candidate.slug === subscription.planSlug)?.name ?? planName(subscription.planSlug);
                  // The subscription's own window (GET /api/billing/status), there with or without keys.
                  const window = subscription.budgetWindow;
                  return (
                    <li key={subscription.id} class="subscription">
                      <div class="subscription-head">
                        <div>
                          <h3>{name}</h3>
                          <p class="muted">
                            {subscription.cancelAtPeriodEnd ? "Ends" : "Renews"} {when(subscription.currentPeriodEnd)} · {subscription.keyCount} {subscription.keyCount === 1 ? "key" : "keys"}
                          </p>
                        </div>
                        <div class="badges">
                          <StatusBadge status={subscription.status} />
                          {subscription.cancelAtPeriodEnd ? <Badge tone="gray">Cancelled</Badge> : null}
                        </div>
                      </div>
                      {window ? (
                        <div class="budget">
                          <div class="budget-label">
                            <span>5-hour budget</span>
                            <span>
                              <strong>{usd(window.spent)}</strong> of {usd(window.budget)} used
                            </span>
                          </div>
                          <Meter value={ratio(window.spent, window.budget)} label={`5-hour budget used, ${name}`} valueText={`${usd(window.spent)} of ${usd(window.budget)}`} />
                          <p class="hint">
                            Resets in {until(window.resetsAt, now)} ({when(window.resetsAt)}), to the full {usd(window.budget)}.
                            {subscription.keyCount === 0 ? (
                              <>
                                {" "}
                                <a href="#/keys">Create a key</a> to spend it.
                              </>
                            ) : null}
                          </p>
                        </div>
                      ) : null}
                    </li>
                  );
                })}
              </ul>
            )
          }
        </Loaded>
      </Card>
      <QuickStart />
    </>
  );
}

const SNIPPETS = {
  curl: (base: string) => `curl ${base}/chat/completions \\
  -H "Authorization: Bearer $API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{"model": "deepseek/deepseek-chat-v3-0324",
       "messages": [{"role": "user", "content": "Hello"}]}'`,
  Python: (base: string) => `import os

from openai import OpenAI

client = OpenAI(base_url="${base}", api_key=os.environ["API_KEY"])
reply = client.chat.completions.create(
    model="deepseek/deepseek-chat-v3-0324",
    messages=[{"role": "user", "content": "Hello"}],
)
print(reply.choices[0].message.content)`,
  "Node.js": (base: string) => `import OpenAI from "openai";

const client = new OpenAI({ baseURL: "${base}", apiKey: process.env.API_KEY });
const reply = await client.chat.completions.create({
  model: "deepseek/deepseek-chat-v3-0324",
  messages: [{ role: "user", content: "Hello" }],
});
console.log(reply.choices[0].message.content);`,
};
type Language = keyof typeof SNIPPETS;

/** How to run each snippet as pasted (each reads the key from API_KEY in the environment). */
const HOW_TO_RUN: Record<Language, ComponentChildren> = {
  curl: (
    <>
      Paste it into a shell where <code>API_KEY</code> is set.
    </>
  ),
  Python: (
    <>
      <code>pip install openai</code>, save it as <code>quickstart.py</code>, then <code>python quickstart.py</code>.
    </>
  ),
  "Node.js": (
    <>
      <code>npm install openai</code>, save it as <code>quickstart.mjs</code> (an ES module: <code>import</code> and top-level <code>await</code>), then{" "}
      <code>node quickstart.mjs</code>.
    </>
  ),
};

export function QuickStart() {
  const [language, setLanguage] = useState<Language>("curl");
  const base = apiBase();
  const code = SNIPPETS[language](base);
  const languages = Object.keys(SNIPPETS) as Language[];
  const onKey = (event: KeyboardEvent) => {
    const index = languages.indexOf(language);
    const next = event.key === "ArrowRight" ? index + 1 : event.key === "ArrowLeft" ? index - 1 : null;
    if (next === null) return;
    event.preventDefault();
    const chosen = languages[(next + languages.length) % languages.length];
    setLanguage(chosen);
    document.getElementById(`tab-${chosen}`)?.focus();
  };
  return (
    <Card title="Quick start" actions={<CopyButton text={code} label="Copy snippet" />}>
      <p class="muted">
        The API speaks OpenAI's format: point any OpenAI SDK at <code>{base}</code> and use an API key from <a href="#/keys">API keys</a>. The
        snippets read it from the environment: <code>export API_KEY=sk_live_…</code> first.
      </p>
      <div role="tablist" aria-label="Language" class="tabs" onKeyDown={onKey}>
        {languages.map((name) => (
          <button
            key={name}
            id={`tab-${name}`}
            role="tab"
            type="button"
            class="tab"
            aria-selected={name === language}
            aria-controls="snippet-panel"
            tabIndex={name === language ? 0 : -1}
            onClick={() => setLanguage(name)}
          >
            {name}
          </button>
        ))}
      </div>
      <div id="snippet-panel" role="tabpanel" aria-labelledby={`tab-${language}`} tabIndex={0} class="code-panel">
        <pre>
          <code>{code}</code>
        </pre>
      </div>
      <p class="hint">{HOW_TO_RUN[language]}</p>
    </Card>
  );
}
