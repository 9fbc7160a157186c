import { useId, useMemo, useState } from "preact/hooks";

import { api, query, type ApiKey, type DailyUsage, type KeyUsage, type RequestRecord } from "../api";
import { BarChart, type Point } from "../chart";
import { Button, Card, DataTable, EmptyState, ErrorNotice, Loaded, PageHeader, useResource } from "../components";
import { micros, microsToUsd, number, shortTime, usd } from "../format";

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** Axis labels in dollars with as many decimals as the scale needs ($0.00002 for tiny test traffic). */
function dollarTick(value: number): string {
  if (value === 0) return "$0";
  const decimals = Math.min(6, Math.max(2, Math.ceil(-Math.log10(value)) + 1));
  return `$${value.toFixed(decimals).replace(/(\.\d\d\d*?)0+$/, "$1")}`;
}

const dayLabel = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });

export function UsagePage() {
  const [days, setDays] = useState(14);
  const [keyId, setKeyId] = useState("");
  const [model, setModel] = useState("");
  const base = useId();
  const keys = useResource(() => api.get<ApiKey[]>("api/keys"));
  // GET /api/usage pages ({data: [...], nextCursor}); one page of 100 keys covers the overview.
  const usage = useResource(() => api.get<KeyUsage[]>("api/usage?limit=100").then((keys) => ({ keys })));
  const range = useMemo(() => {
    const to = new Date();
    const from = new Date(to.getTime() - (days - 1) * 86400000);
    return { from: isoDay(from), to: isoDay(to) };
  }, [days]);
  const daily = useResource(() => api.get<DailyUsage[]>(`api/usage/daily${query({ ...range, keyId })}`), [range.from, range.to, keyId]);
  const requests = useResource(() => api.page<RequestRecord>(`api/requests${query({ limit: 20, keyId, model })}`), [keyId, model]);

  // Every key ever used (revoked ones included, from /api/usage) so old history keeps its names.
  const keyNames = new Map<string, string>();
  usage.data?.keys.forEach((key) => keyNames.set(key.id, key.name));
  keys.data?.forEach((key) => keyNames.set(key.id, key.name));
  const models = Array.from(new Set((daily.data ?? []).map((row) => row.model))).sort();
  if (model && !models.includes(model)) models.unshift(model);

  const series = useMemo(() => {
    const byDay = new Map<string, { spend: number; requests: number }>();
    for (let time = Date.parse(`${range.from}T00:00:00Z`); time <= Date.parse(`${range.to}T00:00:00Z`); time += 86400000) {
      byDay.set(isoDay(new Date(time)), { spend: 0, requests: 0 });
    }
    for (const row of daily.data ?? []) {
      if (model && row.model !== model) continue;
      const bucket = byDay.get(row.date);
      if (!bucket) continue;
      bucket.spend += micros(row.spend);
      bucket.requests += row.requests;
    }
    const entries = Array.from(byDay.entries());
    const label = (date: string) => dayLabel.format(new Date(`${date}T00:00:00Z`));
    const spend: Point[] = entries.map(([date, value]) => ({ label: label(date), value: value.spend / 1_000_000, display: usd(microsToUsd(value.spend)) }));
    const count: Point[] = entries.map(([date, value]) => ({ label: label(date), value: value.requests, display: `${number(value.requests)} requests` }));
    const totalSpend = entries.reduce((sum, [, value]) => sum + value.spend, 0);
    const totalRequests = entries.reduce((sum, [, value]) => sum + value.requests, 0);
    return { spend, count, totalSpend, totalRequests };
  }, [daily.data, model, range.from, range.to]);

  return (
    <>
      <PageHeader title="Usage" description="Spend and requests per day (UTC), and the latest requests." />
      <div class="filters" role="group" aria-label="Filters">
        <div class="field field-inline">
          <label for={`${base}-key`}>Key</label>
          <select id={`${base}-key`} value={keyId} onChange={(e) => setKeyId(e.currentTarget.value)}>
            <option value="">All keys</option>
            {Array.from(keyNames.entries()).map(([id, name]) => (
              <option key={id} value={id}>
                {name}
              </option>
            ))}
          </select>
        </div>
        <div class="field field-inline">
          <label for={`${base}-model`}>Model</label>
          <select id={`${base}-model`} value={model} onChange={(e) => setModel(e.currentTarget.value)}>
            <option value="">All models</option>
            {models.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </div>
        <div class="field field-inline">
          <label for={`${base}-days`}>Period</label>
          <select id={`${base}-days`} value={String(days)} onChange={(e) => setDays(Number(e.currentTarget.value))}>
            <option value="7">Last 7 days</option>
            <option value="14">Last 14 days</option>
            <option value="30">Last 30 days</option>
          </select>
        </div>
        <Button
          small
          busy={daily.loading || requests.loading}
          onClick={() => {
            void daily.reload();
            void requests.reload();
            void usage.reload();
            void keys.reload();
          }}
        >
          Refresh
        </Button>
      </div>
      <ErrorNotice error={keys.error} title="Could not load your API keys: the Key filter may miss some, and requests may show key ids for names." />
      <Card title="Per day">
        <Loaded resource={daily} label="daily usage">
          {() => (
            <>
              <dl class="totals">
                <div>
                  <dt>Spend</dt>
                  <dd data-testid="total-spend">{usd(microsToUsd(series.totalSpend))}</dd>
                </div>
                <div>
                  <dt>Requests</dt>
                  <dd data-testid="total-requests">{number(series.totalRequests)}</dd>
                </div>
              </dl>
              <div class="grid grid-2">
                <BarChart title="Spend per day" points={series.spend} formatTick={dollarTick} />
                <BarChart title="Requests per day" points={series.count} tone="teal" whole formatTick={(value) => number(Math.round(value))} />
              </div>
            </>
          )}
        </Loaded>
      </Card>
      <Card title="Latest requests">
        <Loaded resource={requests} label="the latest requests">
          {(page) =>
            page.data.length === 0 ? (
              <EmptyState title="No requests yet">
                <p>Requests to /v1 with your API keys show up here.</p>
              </EmptyState>
            ) : (
              <DataTable caption="The latest requests" nowrap columns={["Time", "Key", "Model", "Status", { label: "Tokens in / out", num: true }, { label: "Cost", num: true }, { label: "Duration", num: true }]}>
                    {page.data.map((record) => (
                      <tr key={record.id}>
                        <td>{shortTime(record.createdAt)}</td>
                        <td>{keyNames.get(record.keyId) ?? record.keyId}</td>
                        <td>
                          <code>{record.model}</code>
                          {record.stream ? <span class="cell-sub">streamed</span> : null}
                        </td>
                        <td>
                          <span class={`http-status ${record.status < 400 ? "ok" : "bad"}`}>{record.status}</span>
                        </td>
                        <td class="num">
                          {number(record.promptTokens)} / {number(record.completionTokens)}
                        </td>
                        <td class="num">{usd(String(record.cost))}</td>
                        <td class="num">{number(record.durationMs)} ms</td>
                      </tr>
                    ))}
                  </DataTable>
            )
          }
        </Loaded>
      </Card>
      <Card title="Per key, lifetime">
        <Loaded resource={usage} label="usage per key">
          {(data) =>
            data.keys.length === 0 ? (
              <EmptyState title="No keys yet" />
            ) : (
              <DataTable caption="Lifetime usage per key" columns={["Key", { label: "Requests", num: true }, { label: "Tokens", num: true }, { label: "Spend", num: true }]}>
                    {data.keys.map((key) => (
                      <tr key={key.id}>
                        <th scope="row" class="cell-name">
                          {key.name}
                          {key.status === "revoked" ? <span class="cell-sub">deleted</span> : null}
                        </th>
                        <td class="num">{number(key.usage.lifetime.requests)}</td>
                        <td class="num">{number(key.usage.lifetime.totalTokens)}</td>
                        <td class="num">{usd(key.usage.lifetime.spend)}</td>
                      </tr>
                    ))}
                  </DataTable>
            )
          }
        </Loaded>
      </Card>
    </>
  );
}
