// Money arrives as decimal strings (never floats in the API); it is only formatted here, never summed.

/** "$1,234.5678": up to 6 decimals (usage spend), trailing zeros past the cents dropped. With `cents`,
 * cut to whole cents (a balance headline: never shows more than there is; the exact value goes in a title). */
export function usd(amount: string | null | undefined, { signed = false, cents: toCents = false } = {}): string {
  if (amount === null || amount === undefined) return "—";
  const negative = amount.startsWith("-");
  const digits = amount.replace(/^[-+]/, "");
  const [whole, fraction = ""] = digits.split(".");
  const cents = toCents ? fraction.padEnd(2, "0").slice(0, 2) : fraction.padEnd(2, "0");
  const shown = cents.length > 2 ? cents.replace(/0+$/, "").padEnd(2, "0") : cents;
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const sign = negative ? "−" : signed ? "+" : "";
  return `${sign}$${grouped}.${shown}`;
}

export function number(value: number): string {
  return new Intl.NumberFormat("en-US").format(value);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

export function when(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateTime.format(date);
}

export function day(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateOnly.format(date);
}

const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const monthDayTime = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** "13:13:05" today, else "Nov 29, 13:13": for dense tables. */
export function shortTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toDateString() === new Date().toDateString() ? timeOnly.format(date) : monthDayTime.format(date);
}

/** "3 h 12 min" until the given time (or "now"). */
export function until(iso: string, now = Date.now()): string {
  const minutes = Math.max(0, Math.round((new Date(iso).getTime() - now) / 60000));
  if (minutes < 1) return "less than a minute";
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return hours ? `${hours} h ${rest} min` : `${rest} min`;
}

/** Ratio spent/budget of two decimal strings, for a bar (display only). */
export function ratio(spent: string, budget: string): number {
  const total = Number(budget);
  if (!(total > 0)) return 0;
  return Math.min(1, Math.max(0, Number(spent) / total));
}

export function planName(slug: string): string {
  return slug.charAt(0).toUpperCase() + slug.slice(1);
}

/** "0.001234" -> 1234 micro-dollars, exactly (money is summed as integers, never floats). */
export function micros(amount: string): number {
  const negative = amount.startsWith("-");
  const [whole, fraction = ""] = amount.replace(/^[-+]/, "").split(".");
  const value = Number(whole) * 1_000_000 + Number(fraction.padEnd(6, "0").slice(0, 6));
  return negative ? -value : value;
}

export function microsToUsd(value: number): string {
  const sign = value < 0 ? "-" : "";
  const absolute = Math.abs(value);
  const whole = Math.floor(absolute / 1_000_000);
  const fraction = String(absolute % 1_000_000).padStart(6, "0");
  return `${sign}${whole}.${fraction}`;
}
