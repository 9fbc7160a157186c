// The management API, as the docs describe it, called same-origin with the session cookie (HttpOnly: this
// code never sees it, and no secret is ever written to storage). Paths are relative ("api/keys") so they
// resolve under the document's <base href>, which carries the API stage on AWS.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Listener = () => void;
const signedOutListeners = new Set<Listener>();

/** Called when any request answers 401: the session ended (expired, or signed out elsewhere). */
export function onSignedOut(listener: Listener): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

interface Envelope<T> {
  data: T;
  nextCursor?: string | null;
}

async function send<T>(method: string, path: string, body?: unknown): Promise<Envelope<T>> {
  let response: Response;
  try {
    response = await fetch(new URL(path, document.baseURI), {
      method,
      credentials: "same-origin",
      headers: body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network_error", "Could not reach the server. Check your connection and try again.");
  }
  let payload: any = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload?.error;
    const apiError = new ApiError(
      response.status,
      typeof error?.code === "string" ? error.code : `http_${response.status}`,
      typeof error?.message === "string" ? error.message : `The server answered ${response.status} ${response.statusText}.`,
    );
    if (response.status === 401 && !path.startsWith("api/auth/")) signedOutListeners.forEach((listener) => listener());
    throw apiError;
  }
  if (payload === null || typeof payload !== "object" || !("data" in payload)) {
    throw new ApiError(response.status, "invalid_response", "The server sent an answer the dashboard does not understand.");
  }
  return payload as Envelope<T>;
}

export const api = {
  get: async <T>(path: string) => (await send<T>("GET", path)).data,
  page: <T>(path: string) => send<T[]>("GET", path),
  post: async <T>(path: string, body: unknown = {}) => (await send<T>("POST", path, body)).data,
  patch: async <T>(path: string, body: unknown) => (await send<T>("PATCH", path, body)).data,
  del: async <T>(path: string) => (await send<T>("DELETE", path)).data,
};

export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// ------------------------------------------------------------------ the shapes the pages use (openapi.json)

export interface Plan {
  slug: string;
  name: string;
  price: string;
  intervalMonths: number;
  rpm: number;
  tpm: number;
  budgetPer5h: string;
}

export interface Subscription {
  id: string;
  planSlug: string;
  status: "active" | "past_due" | "expired";
  currentPeriodEnd: string;
  cancelAtPeriodEnd: boolean;
  keyCount: number;
  keys: { id: string; name: string }[];
  /** The current 5-hour budget window, keys or not; null once expired. */
  budgetWindow: SubscriptionBudgetWindow | null;
}

export interface SubscriptionBudgetWindow {
  start: string;
  resetsAt: string;
  budget: string;
  spent: string;
}

export interface BillingStatus {
  subscriptions: Subscription[];
  creditBalance: string;
}

export type BudgetReset = "daily" | "weekly" | "monthly" | null;

export interface ApiKey {
  id: string;
  name: string;
  type: "subscription" | "credit";
  prefix: string;
  status: "active" | "disabled" | "revoked";
  disabled: boolean;
  subscriptionId: string | null;
  rpm: number;
  tpm: number;
  maxBudget: string | null;
  spend: string;
  createdAt: string;
  budgetReset?: BudgetReset;
  expiresAt?: string | null;
}

export interface CreatedKey {
  id: string;
  name: string;
  apiKey: string;
}

export interface RotatedKey extends CreatedKey {
  previousKeyExpiresAt: string | null;
}

export interface ManagementKey {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  current: boolean;
}

export interface BudgetWindow {
  start: string;
  end: string;
  requests: number;
  tokens: number;
  spend: string;
  budget: string;
  remaining: string;
}

export interface KeyUsage {
  id: string;
  name: string;
  type: "subscription" | "credit";
  status: string;
  subscription: Omit<Subscription, "keyCount" | "keys" | "budgetWindow"> | null;
  limits: { rpm: number; tpm: number; maxBudget: string | null; budgetPer5h: string | null };
  usage: {
    lifetime: { requests: number; inputTokens: number; outputTokens: number; totalTokens: number; spend: string };
    currentBudgetWindow: BudgetWindow | null;
  };
}

export interface DailyUsage {
  date: string;
  keyId: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  spend: string;
}

export interface RequestRecord {
  id: string;
  keyId: string;
  model: string;
  provider: string | null;
  status: number;
  stream: boolean;
  promptTokens: number;
  completionTokens: number;
  cost: string;
  createdAt: string;
  durationMs: number;
}

export interface LedgerEntry {
  id: string;
  createdAt: string;
  kind: string;
  amount: string;
  reference: string | null;
}

export interface Wallet {
  address: string;
  boundAt: string;
}
