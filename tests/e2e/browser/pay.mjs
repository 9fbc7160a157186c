// Pays a checkout session of the local Stripe simulator in a real (headless) browser, as a customer would.
//
//   node tests/e2e/browser/pay.mjs <sessionUrl> [screenshot.png]
//
// Opens the session's page, checks the Pay button is visible, clicks it, waits for the success page, and
// prints one JSON line {"finalUrl", "title", "text"} (the page's text, trimmed); exit 0. On any failure it
// prints a message to stderr (and a screenshot of where it was, when a path is given) and exits 1.
// Uses Debian's chromium through playwright-core: CHROMIUM overrides the path (default /usr/bin/chromium),
// PAY_TIMEOUT_MS the time allowed for each step (default 30000).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const [sessionUrl, screenshot] = process.argv.slice(2);
if (!sessionUrl || !/^https?:\/\//.test(sessionUrl)) {
  console.error("usage: node tests/e2e/browser/pay.mjs <sessionUrl> [screenshot.png]");
  process.exit(2);
}
const timeout = Number(process.env.PAY_TIMEOUT_MS || 30000);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const userDataDir = await mkdtemp(join(tmpdir(), "pay-chromium-"));
let context;
let page;
let exitCode = 0;
try {
  // A persistent context on a fresh temporary profile: nothing is shared with a developer's browser.
  context = await chromium.launchPersistentContext(userDataDir, { executablePath, args, headless: true, timeout });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);

  const opened = await page.goto(sessionUrl, { waitUntil: "domcontentloaded" });
  if (!opened || !opened.ok()) {
    throw new Error(`checkout page ${sessionUrl} answered ${opened ? opened.status() : "nothing"}`);
  }
  const pay = page.getByRole("button", { name: "Pay", exact: true });
  await pay.waitFor({ state: "visible" });

  // The form posts, the simulator delivers the webhooks, then redirects (303) to the success URL.
  const checkoutPath = new URL(sessionUrl).pathname;
  await Promise.all([
    page.waitForURL((url) => url.pathname !== checkoutPath, { waitUntil: "load" }),
    pay.click(),
  ]);
  const text = (await page.locator("body").innerText()).trim();
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ finalUrl: page.url(), title: await page.title(), text }));
} catch (error) {
  exitCode = 1;
  // What the page said, when there was one (e.g. "Paid … This checkout session is paid." instead of a button).
  const said = page ? await page.locator("body").innerText({ timeout: 1000 }).catch(() => "") : "";
  const where = page ? ` (at ${page.url()}${said ? `: ${said.trim().replace(/\s+/g, " ").slice(0, 300)}` : ""})` : "";
  console.error(`pay.mjs: ${error instanceof Error ? error.message.split("\n")[0] : error}${where}`);
  if (screenshot && page) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
} finally {
  await context?.close().catch(() => {});
  await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}
process.exit(exitCode);
