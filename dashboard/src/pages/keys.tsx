import { useId, useState } from "preact/hooks";

import { api, type ApiKey, type BillingStatus, type BudgetReset, type CreatedKey, type Plan, type RotatedKey } from "../api";
import { Badge, Button, Card, DataTable, DeleteKeyDialog, Dialog, DoneActions, EmptyState, ErrorNotice, Field, FormActions, Loaded, Notice, PageHeader, type Resource, SecretOnce, StatusBadge, useAction, useResource } from "../components";
import { day, number, planName, usd, when } from "../format";

type Dialogs =
  | { kind: "none" }
  | { kind: "create" }
  | { kind: "edit"; key: ApiKey }
  | { kind: "rotate"; key: ApiKey }
  | { kind: "delete"; key: ApiKey };

export function KeysPage() {
  const keys = useResource(() => api.get<ApiKey[]>("api/keys"));
  const status = useResource(() => api.get<BillingStatus>("api/billing/status"));
  const plans = useResource(() => api.get<Plan[]>("api/plans"));
  const [dialog, setDialog] = useState<Dialogs>({ kind: "none" });
  const toggle = useAction();
  const [message, setMessage] = useState<string>();
  const close = () => setDialog({ kind: "none" });
  const done = (text?: string) => {
    close();
    setMessage(text);
    void keys.reload();
  };

  const planOf = (key: ApiKey) => {
    const subscription = status.data?.subscriptions.find((candidate) => candidate.id === key.subscriptionId);
    if (!subscription) return status.loading ? "…" : "Plan unknown";
    return plans.data?.find((plan) => plan.slug === subscription.planSlug)?.name ?? planName(subscription.planSlug);
  };

  const setDisabled = async (key: ApiKey, disabled: boolean) => {
    setMessage(undefined);
    const updated = await toggle.run(() => api.patch<ApiKey>(`api/keys/${encodeURIComponent(key.id)}`, { disabled }));
    if (updated) done(`${key.name} is ${disabled ? "disabled: its requests are refused from now on" : "enabled again"}.`);
  };

  return (
    <>
      <PageHeader
        title="API keys"
        description={<>Keys (<code>sk_live_…</code>) for <code>/v1</code>. Each has its own rate limits; credit keys spend your balance, subscription keys the plan's budget.</>}
        actions={
          <Button variant="primary" onClick={() => setDialog({ kind: "create" })}>
            Create key
          </Button>
        }
      />
      {message ? <Notice kind="success">{message}</Notice> : null}
      <ErrorNotice error={toggle.error} title="Could not change the key." />
      <ErrorNotice error={status.error} title="Could not load your subscriptions: subscription keys show without their plan, and new ones cannot be made." />
      <ErrorNotice error={plans.error} title="Could not load the plans: subscription keys show their plan's id." />
      <Card>
        <Loaded resource={keys} label="your API keys">
          {(list) =>
            list.length === 0 ? (
              <EmptyState title="No API keys yet">
                <p>Create one to call the API with any OpenAI SDK.</p>
                <Button variant="primary" small onClick={() => setDialog({ kind: "create" })}>
                  Create key
                </Button>
              </EmptyState>
            ) : (
              <DataTable caption="Your API keys" columns={["Name", "Key", "Type", "Status", { label: "Spend", num: true }, "Limits", { label: "Actions", hidden: true }]}>
                    {list.map((key) => (
                      <tr key={key.id}>
                        <th scope="row" class="cell-name">
                          {key.name}
                          <span class="cell-sub">Created {day(key.createdAt)}</span>
                        </th>
                        <td>
                          <code class="prefix">{key.prefix}…</code>
                        </td>
                        <td>
                          {key.type === "credit" ? (
                            <Badge tone="blue">Credit</Badge>
                          ) : (
                            <>
                              <Badge tone="gray">Subscription</Badge>
                              <span class="cell-sub">{planOf(key)}</span>
                            </>
                          )}
                        </td>
                        <td>
                          <StatusBadge status={key.status} />
                          {key.expiresAt ? <span class="cell-sub">Expires {when(key.expiresAt)}</span> : null}
                        </td>
                        <td class="num">{usd(key.spend)}</td>
                        <td class="cell-limits">
                          <span>{number(key.rpm)} RPM</span>
                          <span>{number(key.tpm)} TPM</span>
                          {key.type === "credit" ? (
                            <span>
                              {key.maxBudget ? `${usd(key.maxBudget)} max` : "No max budget"}
                              {key.budgetReset ? `, resets ${key.budgetReset}` : ""}
                            </span>
                          ) : null}
                        </td>
                        <td class="cell-actions">
                          <div class="row-actions" role="group" aria-label={`Actions for ${key.name}`}>
                            <Button small onClick={() => setDialog({ kind: "edit", key })} aria-label={`Edit limits of ${key.name}`}>
                              Edit limits
                            </Button>
                            <Button small busy={toggle.busy} onClick={() => setDisabled(key, !key.disabled)} aria-label={`${key.disabled ? "Enable" : "Disable"} ${key.name}`}>
                              {key.disabled ? "Enable" : "Disable"}
                            </Button>
                            <Button small onClick={() => setDialog({ kind: "rotate", key })} aria-label={`Rotate ${key.name}`}>
                              Rotate
                            </Button>
                            <Button small variant="danger" onClick={() => setDialog({ kind: "delete", key })} aria-label={`Delete ${key.name}`}>
                              Delete
                            </Button>
                          </div>
                        </td>
                      </tr>
                    ))}
                  </DataTable>
            )
          }
        </Loaded>
      </Card>
      <CreateKeyDialog open={dialog.kind === "create"} status={status} plans={plans.data} onClose={close} onCreated={() => void keys.reload()} />
      {dialog.kind === "edit" ? <EditLimitsDialog apiKey={dialog.key} onClose={close} onSaved={() => done(`Limits of ${dialog.key.name} saved. They apply to its next request.`)} /> : null}
      {dialog.kind === "rotate" ? <RotateDialog apiKey={dialog.key} onClose={() => done()} /> : null}
      {dialog.kind === "delete" ? <DeleteKeyDialog apiKey={dialog.key} path="api/keys" consequence="This cannot be undone." onClose={close} onDeleted={() => done(`${dialog.key.name} is deleted: it stopped working at once.`)} /> : null}
    </>
  );
}

function optionalNumber(text: string): number | undefined {
  const trimmed = text.trim();
  return trimmed === "" ? undefined : Number(trimmed);
}

function CreateKeyDialog({ open, status, plans, onClose, onCreated }: { open: boolean; status: Resource<BillingStatus>; plans?: Plan[]; onClose: () => void; onCreated: () => void }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState<"credit" | "subscription">("credit");
  const [subscriptionId, setSubscriptionId] = useState("");
  const [maxBudget, setMaxBudget] = useState("");
  const [rpm, setRpm] = useState("");
  const [tpm, setTpm] = useState("");
  const [budgetReset, setBudgetReset] = useState<string>("");
  const [expiresAt, setExpiresAt] = useState("");
  const [created, setCreated] = useState<CreatedKey>();
  const { busy, error, run, clearError } = useAction();
  const base = useId();
  const active = (status.data?.subscriptions ?? []).filter((subscription) => subscription.status === "active");
  // Why there is no subscription to choose: none yet, still loading, or the list could not be read.
  const subscriptionHint = active.length
    ? "Uses a plan's 5-hour budget"
    : status.data
      ? "Subscribe to a plan first (Billing)"
      : status.error
        ? "Your subscriptions could not be loaded"
        : "Loading your subscriptions…";
  const chosen = subscriptionId || active[0]?.id || "";

  const reset = () => {
    setName("");
    setKind("credit");
    setSubscriptionId("");
    setMaxBudget("");
    setRpm("");
    setTpm("");
    setBudgetReset("");
    setExpiresAt("");
    setCreated(undefined);
    clearError();
  };
  const close = () => {
    reset();
    onClose();
  };
  const submit = async (event: Event) => {
    event.preventDefault();
    const body: Record<string, unknown> = { name: name.trim() };
    let path = "api/keys/credit";
    if (kind === "subscription") {
      path = "api/keys/subscription";
      body.subscriptionId = chosen;
    } else {
      if (maxBudget.trim()) body.maxBudget = maxBudget.trim();
      if (optionalNumber(rpm) !== undefined) body.rpm = optionalNumber(rpm);
      if (optionalNumber(tpm) !== undefined) body.tpm = optionalNumber(tpm);
      if (budgetReset) body.budgetReset = budgetReset;
      if (expiresAt) body.expiresAt = new Date(expiresAt).toISOString();
    }
    const key = await run(() => api.post<CreatedKey>(path, body));
    if (key) {
      setCreated(key);
      onCreated();
    }
  };

  return (
    <Dialog title={created ? "Your new API key" : "Create key"} open={open} onClose={close}>
      {created ? (
        <>
          <SecretOnce label={`API key ${created.name}`} secret={created.apiKey} note={<>Use it as <code>Authorization: Bearer …</code>, or as <code>api_key</code> in an OpenAI SDK.</>} />
          <DoneActions onDone={close} />
        </>
      ) : (
        <form onSubmit={submit}>
          <Field label="Name" id={`${base}-name`} hint="So you know which app uses it, e.g. prod-api.">
            <input autoFocus id={`${base}-name`} required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} aria-describedby={`${base}-name-hint`} />
          </Field>
          <fieldset class="choice">
            <legend>Pays with</legend>
            <label class="radio">
              <input type="radio" name="kind" checked={kind === "credit"} onChange={() => setKind("credit")} />
              <span>
                <strong>Credit</strong>
                <span class="muted">Spends your balance per request</span>
              </span>
            </label>
            <label class={`radio${active.length === 0 ? " radio-disabled" : ""}`}>
              <input type="radio" name="kind" checked={kind === "subscription"} disabled={active.length === 0} onChange={() => setKind("subscription")} />
              <span>
                <strong>Subscription</strong>
                <span class="muted">{subscriptionHint}</span>
              </span>
            </label>
          </fieldset>
          {status.error && !status.data ? (
            <>
              <ErrorNotice error={status.error} title="Could not load your subscriptions." />
              <p class="retry">
                <Button small busy={status.loading} onClick={() => void status.reload()}>
                  Try again
                </Button>
              </p>
            </>
          ) : null}
          {kind === "subscription" ? (
            <Field label="Subscription" id={`${base}-sub`}>
              <select id={`${base}-sub`} value={chosen} onChange={(e) => setSubscriptionId(e.currentTarget.value)}>
                {active.map((subscription) => (
                  <option key={subscription.id} value={subscription.id}>
                    {plans?.find((plan) => plan.slug === subscription.planSlug)?.name ?? planName(subscription.planSlug)} · renews {when(subscription.currentPeriodEnd)}
                  </option>
                ))}
              </select>
            </Field>
          ) : (
            <>
              <div class="field-row">
                <Field label="Max budget (USD)" id={`${base}-budget`} hint="Optional. The key stops at this spend.">
                  <input id={`${base}-budget`} inputMode="decimal" pattern="[0-9]+(\.[0-9]{1,6})?" value={maxBudget} onInput={(e) => setMaxBudget(e.currentTarget.value)} placeholder="No limit" aria-describedby={`${base}-budget-hint`} />
                </Field>
                <Field label="Budget resets" id={`${base}-reset`}>
                  <select id={`${base}-reset`} value={budgetReset} onChange={(e) => setBudgetReset(e.currentTarget.value)}>
                    <option value="">Never</option>
                    <option value="daily">Daily</option>
                    <option value="weekly">Weekly</option>
                    <option value="monthly">Monthly</option>
                  </select>
                </Field>
              </div>
              <div class="field-row">
                <Field label="RPM" id={`${base}-rpm`} hint="Requests per minute. Default 60.">
                  <input id={`${base}-rpm`} type="number" min={1} step={1} value={rpm} onInput={(e) => setRpm(e.currentTarget.value)} placeholder="60" aria-describedby={`${base}-rpm-hint`} />
                </Field>
                <Field label="TPM" id={`${base}-tpm`} hint="Tokens per minute. Default 100,000.">
                  <input id={`${base}-tpm`} type="number" min={1} step={1} value={tpm} onInput={(e) => setTpm(e.currentTarget.value)} placeholder="100000" aria-describedby={`${base}-tpm-hint`} />
                </Field>
              </div>
              <Field label="Expires" id={`${base}-expires`} hint="Optional. The key stops working then.">
                <input id={`${base}-expires`} type="datetime-local" value={expiresAt} onInput={(e) => setExpiresAt(e.currentTarget.value)} aria-describedby={`${base}-expires-hint`} />
              </Field>
            </>
          )}
          <ErrorNotice error={error} title="Could not create the key." />
          <FormActions onCancel={close} submitLabel="Create key" busy={busy} />
        </form>
      )}
    </Dialog>
  );
}

function toLocalInput(iso: string | null | undefined): string {
  if (!iso) return "";
  const date = new Date(iso);
  const offset = date.getTimezoneOffset() * 60000;
  return new Date(date.getTime() - offset).toISOString().slice(0, 16);
}

function EditLimitsDialog({ apiKey, onClose, onSaved }: { apiKey: ApiKey; onClose: () => void; onSaved: () => void }) {
  const [name, setName] = useState(apiKey.name);
  const [rpm, setRpm] = useState(String(apiKey.rpm));
  const [tpm, setTpm] = useState(String(apiKey.tpm));
  const [maxBudget, setMaxBudget] = useState(apiKey.maxBudget ?? "");
  const [budgetReset, setBudgetReset] = useState<string>(apiKey.budgetReset ?? "");
  const [expiresAt, setExpiresAt] = useState(toLocalInput(apiKey.expiresAt));
  const { busy, error, run } = useAction();
  const base = useId();
  const credit = apiKey.type === "credit";

  const submit = async (event: Event) => {
    event.preventDefault();
    // Only what changed: the API applies each field to the next request.
    const body: Record<string, unknown> = {};
    if (name.trim() !== apiKey.name) body.name = name.trim();
    if (Number(rpm) !== apiKey.rpm) body.rpm = Number(rpm);
    if (Number(tpm) !== apiKey.tpm) body.tpm = Number(tpm);
    if (credit && (maxBudget.trim() || null) !== apiKey.maxBudget) body.maxBudget = maxBudget.trim() || null;
    if (credit && ((budgetReset || null) as BudgetReset) !== (apiKey.budgetReset ?? null)) body.budgetReset = budgetReset || null;
    const expires = expiresAt ? new Date(expiresAt).toISOString() : null;
    if (toLocalInput(expires) !== toLocalInput(apiKey.expiresAt)) body.expiresAt = expires;
    if (Object.keys(body).length === 0) {
      onClose();
      return;
    }
    const saved = await run(() => api.patch<ApiKey>(`api/keys/${encodeURIComponent(apiKey.id)}`, body));
    if (saved) onSaved();
  };

  return (
    <Dialog title={`Edit ${apiKey.name}`} open onClose={onClose}>
      <form onSubmit={submit}>
        <Field label="Name" id={`${base}-name`}>
          <input autoFocus id={`${base}-name`} required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <div class="field-row">
          <Field label="RPM" id={`${base}-rpm`} hint={credit ? "Requests per minute." : "At most the plan's RPM."}>
            <input id={`${base}-rpm`} type="number" min={1} step={1} required value={rpm} onInput={(e) => setRpm(e.currentTarget.value)} aria-describedby={`${base}-rpm-hint`} />
          </Field>
          <Field label="TPM" id={`${base}-tpm`} hint={credit ? "Tokens per minute." : "At most the plan's TPM."}>
            <input id={`${base}-tpm`} type="number" min={1} step={1} required value={tpm} onInput={(e) => setTpm(e.currentTarget.value)} aria-describedby={`${base}-tpm-hint`} />
          </Field>
        </div>
        {credit ? (
          <div class="field-row">
            <Field label="Max budget (USD)" id={`${base}-budget`} hint="Empty: no limit.">
              <input id={`${base}-budget`} inputMode="decimal" value={maxBudget} onInput={(e) => setMaxBudget(e.currentTarget.value)} placeholder="No limit" aria-describedby={`${base}-budget-hint`} />
            </Field>
            <Field label="Budget resets" id={`${base}-reset`}>
              <select id={`${base}-reset`} value={budgetReset} onChange={(e) => setBudgetReset(e.currentTarget.value)}>
                <option value="">Never</option>
                <option value="daily">Daily</option>
                <option value="weekly">Weekly</option>
                <option value="monthly">Monthly</option>
              </select>
            </Field>
          </div>
        ) : null}
        <Field label="Expires" id={`${base}-expires`} hint="Empty: never.">
          <input id={`${base}-expires`} type="datetime-local" value={expiresAt} onInput={(e) => setExpiresAt(e.currentTarget.value)} aria-describedby={`${base}-expires-hint`} />
        </Field>
        <ErrorNotice error={error} title="Could not save the limits." />
        <FormActions onCancel={onClose} submitLabel="Save" busy={busy} />
      </form>
    </Dialog>
  );
}

function RotateDialog({ apiKey, onClose }: { apiKey: ApiKey; onClose: () => void }) {
  const [grace, setGrace] = useState("0");
  const [rotated, setRotated] = useState<RotatedKey>();
  const { busy, error, run } = useAction();
  const id = useId();
  const rotate = async (event: Event) => {
    event.preventDefault();
    const result = await run(() => api.post<RotatedKey>(`api/keys/${encodeURIComponent(apiKey.id)}/rotate`, { gracePeriodSeconds: Number(grace) }));
    if (result) setRotated(result);
  };
  return (
    <Dialog title={rotated ? `New secret for ${apiKey.name}` : `Rotate ${apiKey.name}`} open onClose={onClose}>
      {rotated ? (
        <>
          <SecretOnce
            label={`New API key ${rotated.name}`}
            secret={rotated.apiKey}
            note={rotated.previousKeyExpiresAt ? `The old secret keeps working until ${when(rotated.previousKeyExpiresAt)}.` : "The old secret stopped working."}
          />
          <DoneActions onDone={onClose} />
        </>
      ) : (
        <form onSubmit={rotate}>
          <p>The key keeps its id, limits and history and gets a new secret.</p>
          <Field label="Old secret keeps working for" id={id}>
            <select id={id} value={grace} onChange={(e) => setGrace(e.currentTarget.value)}>
              <option value="0">No time: it stops now</option>
              <option value="3600">1 hour</option>
              <option value="86400">24 hours</option>
            </select>
          </Field>
          <ErrorNotice error={error} title="Could not rotate the key." />
          <FormActions onCancel={onClose} submitLabel="Rotate key" busy={busy} />
        </form>
      )}
    </Dialog>
  );
}

