// The customer dashboard in a real (headless Debian chromium) browser, on the real local stack, as a new
// customer uses it. Driven by tests/e2e/test_dashboard_browser.py:
//
//   node tests/e2e/browser/dashboard.mjs <stack.json> <screenshot dir>
//
// Every control is found by its role and accessible name or its label (getByRole/getByLabel), so a control
// without a name fails the run. Each step throws with what it expected and what the page showed; the last
// screenshot then shows where it stopped (failure.png). On success it prints one JSON line of findings.
// CHROMIUM overrides the browser path (default /usr/bin/chromium); STEP_TIMEOUT_MS each step's time.
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const [stackFile, shots] = process.argv.slice(2);
if (!stackFile || !shots) {
  console.error("usage: node tests/e2e/browser/dashboard.mjs <stack.json> <screenshot dir>");
  process.exit(2);
}
const stack = JSON.parse(await readFile(stackFile, "utf8"));
const base = stack.apiUrl;
const timeout = Number(process.env.STEP_TIMEOUT_MS || 20000);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
await mkdir(shots, { recursive: true });

const findings = {};
const userDataDir = await mkdtemp(join(tmpdir(), "dashboard-chromium-"));
let context;
let page;
let exitCode = 0;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(name) {
  await page.waitForLoadState("networkidle").catch(() => {});
  // From the top: a full-page capture of a scrolled page draws the sticky sidebar mid-page.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** The page's own h1 (every page moves focus to it), i.e. which page is shown. */
async function onPage(title) {
  await page.getByRole("heading", { level: 1, name: title }).waitFor();
}

/** Whether `locator` holds the keyboard focus, waiting up to 5 s for it: dialogs move focus after they render
 * or close, a frame after what the test waits on. */
async function focused(locator) {
  const element = await locator.elementHandle();
  return page
    .waitForFunction((el) => el === document.activeElement, element, { timeout: 5000 })
    .then(() => true, () => false);
}

async function go(linkName, title) {
  await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: linkName, exact: true }).click();
  await onPage(title);
}

/** The newest 6-digit code mailed to `email`, from the local outbox (GET {mailUrl}/messages, newest first). */
async function codeFor(email, notBefore) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const messages = await (await fetch(`${stack.mailUrl}/messages`)).json();
    const mine = messages.find((message) => message.to === email && Date.parse(message.sentAt) >= notBefore - 1000);
    const code = mine?.text.match(/\b(\d{6})\b/)?.[1];
    if (code) return code;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`no code mailed to ${email} in the outbox`);
}

/** The codes mailed to `email` since `notBefore`, newest first, once at least `count` have arrived. */
async function codesFor(email, notBefore, count) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const messages = await (await fetch(`${stack.mailUrl}/messages`)).json();
    const codes = messages
      .filter((message) => message.to === email && Date.parse(message.sentAt) >= notBefore - 1000)
      .map((message) => message.text.match(/\b(\d{6})\b/)?.[1])
      .filter(Boolean);
    if (codes.length >= count) return codes;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`fewer than ${count} codes mailed to ${email} in the outbox`);
}

/** The Quick start's snippet for the tab `name`, as its Copy button puts it on the clipboard (the text shown). */
async function copiedSnippet(name) {
  await page.getByRole("tab", { name }).click();
  const shown = await page.getByRole("tabpanel").locator("code").textContent();
  await page.getByRole("button", { name: "Copy snippet" }).click();
  const deadline = Date.now() + 5000;
  while ((await page.evaluate(() => navigator.clipboard.readText())) !== shown) {
    check(Date.now() < deadline, `Copy snippet did not put the ${name} snippet on the clipboard`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return shown;
}

function curlChat(apiKey, content = "Hello") {
  const result = spawnSync(
    "curl",
    [
      "-sS",
      "-o",
      "/dev/stdout",
      "-w",
      "\n%{http_code}",
      `${base}/v1/chat/completions`,
      "-H",
      `Authorization: Bearer ${apiKey}`,
      "-H",
      "Content-Type: application/json",
      "-d",
      JSON.stringify({ model: "deepseek/deepseek-chat-v3-0324", messages: [{ role: "user", content }] }),
    ],
    { encoding: "utf8", timeout: 30000 },
  );
  const lines = result.stdout.trimEnd().split("\n");
  return { status: Number(lines.pop()), body: lines.join("\n") };
}

/** The project's Python (PYTHON, set by the pytest driver) running the test wallet. */
function wallet(...args) {
  const result = spawnSync(process.env.PYTHON || "python3", ["tests/e2e/browser/wallet_tool.py", ...args], { encoding: "utf8", timeout: 60000 });
  if (result.status !== 0) throw new Error(`wallet_tool ${args[0]} failed: ${result.stderr}`);
  return result.stdout.trim();
}

/** Pay on the Stripe simulator's Checkout page, then land back on the dashboard's billing page. */
async function payOnCheckout() {
  await page.waitForURL((url) => url.href.startsWith(stack.stripeUrl), { waitUntil: "domcontentloaded" });
  const pay = page.getByRole("button", { name: "Pay", exact: true });
  await pay.waitFor();
  await Promise.all([page.waitForURL((url) => url.href.startsWith(base), { waitUntil: "load" }), pay.click()]);
  await onPage("Billing");
  await page.getByText("Payment complete.").waitFor();
  check(!page.url().includes("session_id="), `the checkout parameters stay in the address bar: ${page.url()}`);
}

try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    timeout,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
    viewport: { width: 1280, height: 860 },
  });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  // A browser wallet (EIP-1193, as MetaMask injects window.ethereum) holding a funded test wallet of the
  // local chain; personal_sign signs in the test's Python, as the wallet's own code would.
  const payer = stack.testWallets[stack.testWallets.length - 1];
  await context.exposeBinding("__testWalletSign", (_source, hexMessage) => wallet("sign", payer.privateKey, hexMessage));
  await context.addInitScript((address) => {
    window.ethereum = {
      isTestWallet: true,
      request: async ({ method, params }) => {
        if (method === "eth_requestAccounts" || method === "eth_accounts") return [address];
        if (method === "personal_sign") {
          if (String(params[1]).toLowerCase() !== address.toLowerCase()) throw new Error("personal_sign for another account");
          return window.__testWalletSign(params[0]);
        }
        throw new Error(`unsupported method ${method}`);
      },
    };
  }, payer.address);
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));

  // 1. Sign up: a new email, the code from the outbox.
  await page.goto(`${base}/`);
  await onPage("Sign in or create an account");
  await shot("01-sign-in");
  const email = `dev+${Date.now()}@example.com`;
  await page.getByLabel("Email").fill(email);
  const sentAt = Date.now();
  await page.getByRole("button", { name: "Send code" }).click();
  await page.getByLabel("Code").waitFor();
  await shot("02-sign-in-code");
  // A wrong code is refused in words
  await page.getByLabel("Code").fill("000000");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "Could not sign in." }).waitFor();
  await page.getByLabel("Code").fill(await codeFor(email, sentAt));
  await page.getByRole("button", { name: "Sign in" }).click();
  await onPage("Overview");
  findings.signedUp = email;
  const balance = page.getByTestId("credit-balance");
  check((await balance.innerText()) === "$0.00", `a new account starts at $0.00, shows ${await balance.innerText()}`);
  check((await context.cookies(base)).some((cookie) => cookie.httpOnly), "the session is an HttpOnly cookie");

  // 2. Top up by card through Checkout ($25), back on the dashboard with the balance.
  await go("Billing", "Billing");
  await page.getByLabel("Amount (USD)").fill("25");
  await page.getByRole("radio", { name: "Card" }).check();
  await page.getByRole("button", { name: "Top up by card" }).click();
  await payOnCheckout();
  await page.getByTestId("billing-balance").filter({ hasText: "$25.00" }).waitFor();

  // 2b. Top up with USDC: deposit address, bind the wallet by signing in the browser wallet, send, verify.
  await page.getByLabel("Amount (USD)").fill("12.5");
  await page.getByRole("radio", { name: "USDC" }).check();
  await page.getByRole("button", { name: "Top up with USDC" }).click();
  const deposit = await page.getByLabel("Deposit address").inputValue();
  check(deposit.toLowerCase() === stack.depositAddress.toLowerCase(), `deposit address ${deposit}`);
  await page.getByRole("button", { name: "Sign with browser wallet" }).click();
  await page.getByText(/is bound to your account/).waitFor();
  const bound = await page.getByRole("list", { name: "Bound wallets" }).innerText();
  check(bound.toLowerCase().includes(payer.address.toLowerCase()), `the bound wallets list the payer: ${bound}`);
  const txHash = wallet("send", stackFile, payer.privateKey, "12.5");
  await page.getByLabel("Transaction hash").fill(txHash);
  await page.getByRole("button", { name: "Verify payment" }).click();
  await page.getByText("$12.50 in USDC credited").waitFor();
  await page.getByTestId("billing-balance").filter({ hasText: "$37.50" }).waitFor();
  await shot("03-billing-usdc");

  // 2c. Bind a second wallet with a pasted signature: its message signed outside the browser (personal_sign,
  // as a wallet's own tool does), the signature pasted back.
  const other = stack.testWallets[0];
  check(other.address.toLowerCase() !== payer.address.toLowerCase(), "the stack has a second test wallet");
  await page.getByLabel("Wallet address").fill(other.address);
  await page.getByRole("button", { name: "Get message to sign" }).click();
  const toSign = await page.getByLabel("Message to sign").inputValue();
  check(toSign.includes(other.address), `the message to sign names the wallet: ${toSign}`);
  await page.getByLabel("Signature").fill(wallet("sign", other.privateKey, "0x" + Buffer.from(toSign, "utf8").toString("hex")));
  await shot("03-billing-wallet-pasted-signature");
  await page.getByRole("button", { name: "Bind wallet" }).click();
  await page.getByText(new RegExp(`Wallet ${other.address} is bound to your account`, "i")).waitFor();
  // The list reloads after the notice: both wallets in it
  const boundList = page.getByRole("list", { name: "Bound wallets" });
  await boundList.getByRole("listitem").filter({ hasText: new RegExp(other.address, "i") }).waitFor();
  await boundList.getByRole("listitem").filter({ hasText: new RegExp(payer.address, "i") }).waitFor();
  await page.getByLabel("Message to sign").waitFor({ state: "detached" });

  // 3a. Subscribe to Standard ($20) from credits: active at once, the balance down by the price, no key yet.
  const standard = page.getByRole("region", { name: "Standard", exact: true });
  await standard.getByRole("button", { name: "Subscribe with credits" }).click();
  await page.getByText("You are subscribed to Standard, paid from your credits").waitFor();
  const standardRow = page.getByTestId("subscription-standard");
  await standardRow.getByText("Active", { exact: true }).waitFor();
  check((await standardRow.getByRole("cell").nth(2).innerText()) === "None", `a new subscription has no key: ${await standardRow.innerText()}`);
  await page.getByTestId("billing-balance").filter({ hasText: "$17.50" }).waitFor();
  await page.getByRole("table", { name: "Ledger" }).getByRole("row", { name: /Subscription.*−\$20\.00/ }).waitFor();
  await shot("03-billing-subscribed-credits");

  // 3b. The Overview shows Standard's 5-hour budget, and when it resets, without any key.
  await go("Overview", "Overview");
  const standardItem = page.getByRole("listitem").filter({ has: page.getByRole("heading", { name: "Standard" }) });
  await standardItem.getByText("0 keys").waitFor();
  const keylessMeter = standardItem.getByRole("meter", { name: "5-hour budget used, Standard" });
  check((await keylessMeter.getAttribute("aria-valuetext")) === "$0.00 of $0.14", `Standard's budget bar: ${await keylessMeter.getAttribute("aria-valuetext")}`);
  const resets = await standardItem.getByText(/^Resets in/).innerText();
  check(/^Resets in (5 h 0 min|4 h [45]\d min) \(.+\), to the full \$0\.14\./.test(resets), `a new subscription's budget resets in about 5 hours: ${resets}`);
  await shot("03-overview-subscription-without-keys");
  await go("Billing", "Billing");

  // 3. Subscribe to Pro by card: Checkout, press Pay, and the subscription shows active.
  const pro = page.getByRole("region", { name: "Pro", exact: true });
  await pro.getByRole("button", { name: "Subscribe by card" }).click();
  await payOnCheckout();
  const proRow = page.getByTestId("subscription-pro");
  await proRow.getByText("Active", { exact: true }).waitFor();
  await shot("03-billing-subscribed");

  // 4. A credit key: its secret shown once, with Copy.
  await go("API keys", "API keys");
  // By keyboard: Enter opens the dialog with focus in its first field, Escape closes it, focus returns
  const opener = page.getByRole("button", { name: "Create key" }).first();
  await opener.focus();
  await page.keyboard.press("Enter");
  await page.getByRole("dialog", { name: "Create key" }).waitFor();
  check(await focused(page.getByRole("dialog").getByLabel("Name")), "the dialog focuses its first field");
  await page.keyboard.press("Escape");
  await page.getByRole("dialog").waitFor({ state: "hidden" });
  check(await focused(opener), "focus returns to the Create key button");
  await opener.click();
  let dialog = page.getByRole("dialog", { name: "Create key" });
  await dialog.getByLabel("Name").fill("ci-credit");
  await dialog.getByRole("radio", { name: /Credit/ }).check();
  await dialog.getByLabel("Max budget (USD)").fill("5");
  await dialog.getByLabel("RPM").fill("30");
  await dialog.getByRole("button", { name: "Create key" }).click();
  dialog = page.getByRole("dialog", { name: "Your new API key" });
  const secretField = dialog.getByLabel("API key ci-credit");
  const secret = await secretField.inputValue();
  check(/^sk_live_[\w-]{20,}$/.test(secret), `the new key's secret is shown: ${secret}`);
  await dialog.getByRole("button", { name: "Copy" }).click();
  await dialog.getByText("Copied to the clipboard").waitFor();
  check((await page.evaluate(() => navigator.clipboard.readText())) === secret, "Copy puts the secret on the clipboard");
  await shot("04-key-created");
  await dialog.getByRole("button", { name: "Done" }).click();
  const keyRow = page.getByRole("row", { name: /ci-credit/ });
  await keyRow.waitFor();
  check((await keyRow.innerText()).includes("30 RPM"), `the key's limits are listed: ${await keyRow.innerText()}`);

  // Gone after a reload: not in the page, not in any storage.
  await page.reload();
  await onPage("API keys");
  await page.getByRole("row", { name: /ci-credit/ }).waitFor();
  check(!(await page.content()).includes(secret), "the secret is still in the page after a reload");
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  check(!stored.includes(secret) && !stored.includes("sk_live_"), "a secret is kept in browser storage");

  // 5. The key works on /v1 (curl, as the docs show) and is billed.
  for (let i = 0; i < 3; i += 1) {
    const answer = curlChat(secret, `hello ${i}`);
    check(answer.status === 200, `/v1 with the new key answered ${answer.status}: ${answer.body}`);
  }
  findings.requests = 3;

  // Disable: refused at once; enable: served again.
  await page.getByRole("button", { name: "Disable ci-credit" }).click();
  await page.getByRole("row", { name: /ci-credit/ }).getByText("Disabled", { exact: true }).waitFor();
  check(curlChat(secret).status === 401, "a disabled key is refused");
  await page.getByRole("button", { name: "Enable ci-credit" }).click();
  await page.getByRole("row", { name: /ci-credit/ }).getByText("Active", { exact: true }).waitFor();
  check(curlChat(secret, "again").status === 200, "an enabled key is served again");
  findings.requests += 1;

  // Edit limits (SPEC 9): the new RPM is listed.
  await page.getByRole("button", { name: "Edit limits of ci-credit" }).click();
  dialog = page.getByRole("dialog", { name: "Edit ci-credit" });
  await dialog.getByLabel("RPM").fill("45");
  await dialog.getByRole("button", { name: "Save" }).click();
  await page.getByRole("row", { name: /ci-credit/ }).getByText("45 RPM").waitFor();

  // A subscription key on Standard (paid from credits above): its secret once, listed as a subscription key.
  await page.getByRole("button", { name: "Create key" }).first().click();
  dialog = page.getByRole("dialog", { name: "Create key" });
  await dialog.getByLabel("Name").fill("ci-standard");
  await dialog.getByRole("radio", { name: /Subscription/ }).check();
  const choice = dialog.getByRole("combobox", { name: "Subscription" });
  const options = await choice.getByRole("option").allInnerTexts();
  const standardOption = options.find((text) => text.startsWith("Standard"));
  check(standardOption && options.some((text) => text.startsWith("Pro")), `both subscriptions can be chosen: ${options.join(" | ")}`);
  await choice.selectOption({ label: standardOption });
  await dialog.getByRole("button", { name: "Create key" }).click();
  dialog = page.getByRole("dialog", { name: "Your new API key" });
  const subscriptionSecret = await dialog.getByLabel("API key ci-standard").inputValue();
  check(/^sk_live_[\w-]{20,}$/.test(subscriptionSecret) && subscriptionSecret !== secret, `the subscription key's secret is shown: ${subscriptionSecret}`);
  await dialog.getByRole("button", { name: "Done" }).click();
  const subscriptionRow = page.getByRole("row", { name: /ci-standard/ });
  await subscriptionRow.getByText("Subscription", { exact: true }).waitFor();
  const subscriptionRowText = await subscriptionRow.innerText();
  check(subscriptionRowText.includes("Standard") && subscriptionRowText.includes("60 RPM"), `the key shows its plan and the plan's limits: ${subscriptionRowText}`);
  check(!(await page.content()).includes(subscriptionSecret), "the subscription key's secret stays in the page after Done");
  const onBudget = curlChat(subscriptionSecret, "on the plan");
  check(onBudget.status === 200, `/v1 with the subscription key answered ${onBudget.status}: ${onBudget.body}`);
  findings.requests += 1;
  await shot("05-api-keys");

  // 6. Usage: the requests in the chart of today, and in the latest requests.
  await go("Usage", "Usage");
  await page.getByTestId("total-requests").filter({ hasText: String(findings.requests) }).waitFor();
  await page.getByRole("img", { name: /Requests per day/ }).waitFor();
  const chartText = await page.getByRole("img", { name: /Requests per day/ }).getAttribute("aria-labelledby");
  check(Boolean(chartText), "the chart is labelled");
  // The latest requests load on their own: wait for the row of the oldest of ours (header + requests)
  const requestRows = page.getByRole("table", { name: "The latest requests" }).getByRole("row");
  await requestRows.nth(findings.requests).waitFor();
  check((await requestRows.count()) === findings.requests + 1, `the latest requests list ${await requestRows.count()} rows`);
  // Filtered by the model used: the same requests
  await page.getByLabel("Model").selectOption({ label: "deepseek/deepseek-chat-v3-0324" });
  await page.getByTestId("total-requests").filter({ hasText: String(findings.requests) }).waitFor();
  await shot("06-usage");
  await page.screenshot({ path: join(shots, "dashboard.png") }); // the viewport: the README's picture (docs/)

  // 7. Rotate: a new secret, the old one refused.
  await go("API keys", "API keys");
  await page.getByRole("button", { name: "Rotate ci-credit" }).click();
  dialog = page.getByRole("dialog", { name: "Rotate ci-credit" });
  await dialog.getByRole("button", { name: "Rotate key" }).click();
  dialog = page.getByRole("dialog", { name: "New secret for ci-credit" });
  const rotated = await dialog.getByLabel("New API key ci-credit").inputValue();
  check(rotated.startsWith("sk_live_") && rotated !== secret, "rotation shows a new secret");
  await dialog.getByRole("button", { name: "Done" }).click();
  check(curlChat(secret).status === 401, "the old secret is refused after rotation without grace");
  check(curlChat(rotated, "rotated").status === 200, "the rotated secret works");

  // Delete with confirmation: refused at once.
  await page.getByRole("button", { name: "Delete ci-credit" }).click();
  dialog = page.getByRole("dialog", { name: "Delete ci-credit?" });
  await dialog.getByRole("button", { name: "Delete key" }).click();
  await page.getByText("ci-credit is deleted").waitFor();
  check(curlChat(rotated).status === 401, "a deleted key is refused");

  // 8. Management keys: create (secret once), delete it; the last one cannot be deleted.
  await go("Management keys", "Management keys");
  await page.getByRole("button", { name: "Create management key" }).first().click();
  dialog = page.getByRole("dialog", { name: "Create management key" });
  await dialog.getByLabel("Name").fill("ci-deploy");
  await dialog.getByRole("button", { name: "Create key" }).click();
  dialog = page.getByRole("dialog", { name: "Your new management key" });
  const managementKey = await dialog.getByLabel("Management key ci-deploy").inputValue();
  check(managementKey.startsWith("mk_"), `a management key is shown: ${managementKey}`);
  const viaKey = spawnSync("curl", ["-sS", `${base}/api/billing/status`, "-H", `Authorization: Bearer ${managementKey}`], { encoding: "utf8" });
  check(JSON.parse(viaKey.stdout).data.creditBalance !== undefined, `the new management key works: ${viaKey.stdout}`);
  await shot("07-management-key-created");
  await dialog.getByRole("button", { name: "Done" }).click();
  await page.getByRole("row", { name: /ci-deploy/ }).waitFor();
  // An account signed up by email has no management key until it makes one; with one, it cannot go.
  check(await page.getByRole("button", { name: "Delete ci-deploy" }).isDisabled(), "the only management key can be deleted");
  await page.getByRole("button", { name: "Create management key" }).first().click();
  dialog = page.getByRole("dialog", { name: "Create management key" });
  await dialog.getByLabel("Name").fill("ci-backup");
  await dialog.getByRole("button", { name: "Create key" }).click();
  await page.getByRole("dialog", { name: "Your new management key" }).getByRole("button", { name: "Done" }).click();
  await page.getByRole("row", { name: /ci-backup/ }).waitFor();
  await shot("08-management-keys");
  await page.getByRole("button", { name: "Delete ci-deploy" }).click();
  await page.getByRole("dialog", { name: "Delete ci-deploy?" }).getByRole("button", { name: "Delete key" }).click();
  await page.getByText("ci-deploy is deleted").waitFor();
  // The notice comes first, the reloaded list right after
  await page.getByRole("row", { name: /ci-deploy/ }).waitFor({ state: "detached" });
  const rows = page.getByRole("table", { name: "Your management keys" }).getByRole("row");
  check((await rows.count()) === 2, "one management key is left (header + 1 row)");
  check(await page.getByRole("button", { name: /^Delete / }).isDisabled(), "the last management key cannot be deleted");

  // 9. Overview: balance, Pro with its 5-hour budget bar, the quick start.
  await go("Overview", "Overview");
  await page.getByRole("meter", { name: /5-hour budget used, Pro/ }).waitFor();
  // The balance headline is in whole cents after metered spend (the exact micro-dollars in its title)
  const headline = page.getByTestId("credit-balance");
  const shown = await headline.innerText();
  const exact = await headline.getAttribute("title");
  check(/^\$[\d,]+\.\d\d$/.test(shown), `the balance headline shows cents, not micro-dollars: ${shown}`);
  check(exact.endsWith(" exactly") && exact.startsWith(shown.slice(0, -1)), `the exact balance is in the title: ${exact}`);
  // The quick start is copy-ready: each snippet, as Copy puts it on the clipboard, runs with API_KEY set.
  const snippetEnv = { ...process.env, API_KEY: subscriptionSecret };
  const curlSnippet = await copiedSnippet("curl");
  const viaCurl = spawnSync("bash", ["-c", curlSnippet], { encoding: "utf8", env: snippetEnv, timeout: 30000 });
  const curlAnswer = (() => {
    try {
      return JSON.parse(viaCurl.stdout);
    } catch {
      return null;
    }
  })();
  check(viaCurl.status === 0 && curlAnswer?.choices?.[0]?.message?.content, `the curl snippet as pasted: ${viaCurl.stdout} ${viaCurl.stderr}`);
  const pythonSnippet = await copiedSnippet("Python");
  check(pythonSnippet.includes(`base_url="${base}/v1"`), `the Python snippet points at this API: ${pythonSnippet}`);
  const viaPython = spawnSync(process.env.PYTHON || "python3", ["-"], { input: pythonSnippet, encoding: "utf8", env: snippetEnv, timeout: 60000 });
  check(viaPython.status === 0 && viaPython.stdout.trim().length > 0, `the Python snippet as pasted: ${viaPython.stdout} ${viaPython.stderr}`);
  findings.snippetsRun = ["curl", "Python"];
  // Those requests spent Standard's budget: the bar shows it after a reload
  await page.reload();
  await onPage("Overview");
  const spentMeter = page.getByRole("meter", { name: "5-hour budget used, Standard" });
  const spentText = await spentMeter.getAttribute("aria-valuetext");
  check(/^\$0\.\d+ of \$0\.14$/.test(spentText) && !spentText.startsWith("$0.00 of"), `Standard's bar shows the spend of its key: ${spentText}`);
  await page.getByRole("tab", { name: "Python" }).click();
  await page.getByRole("tabpanel").getByText('api_key=os.environ["API_KEY"]').waitFor();
  await shot("09-overview");
  // The API reference in the navigation: the OpenAPI document, served with the dashboard
  const reference = await page.getByRole("link", { name: "API reference" }).getAttribute("href");
  const document = await page.request.get(new URL(reference, `${base}/`).href);
  check(document.ok() && (await document.json()).openapi === "3.1.0", `the API reference at ${reference} answered ${document.status()}`);

  // 10. Cancel Pro: stays active to the period end.
  await go("Billing", "Billing");
  await page.getByRole("button", { name: "Cancel Pro" }).click();
  await page.getByRole("dialog", { name: "Cancel Pro?" }).getByRole("button", { name: "Cancel subscription" }).click();
  await page.getByTestId("subscription-pro").getByText("Cancels at period end").waitFor();
  await page.getByRole("table", { name: "Ledger" }).getByText("+$25.00").waitFor();
  await shot("10-billing");

  // 10b. Nothing fails silently: with the API answering 503 (in its error format) for the subscriptions, the
  // plans and the keys, each page says so in words, and Create key says why no subscription can be chosen.
  const outage = (route) =>
    route.fulfill({ status: 503, contentType: "application/json", body: JSON.stringify({ error: { code: "service_unavailable", message: "The service is briefly unavailable." } }) });
  const statusRoute = /\/api\/billing\/status$/;
  const plansRoute = /\/api\/plans$/;
  const keysRoute = /\/api\/keys$/;
  await page.route(statusRoute, outage);
  await page.route(plansRoute, outage);
  await go("API keys", "API keys");
  await page.getByRole("alert").filter({ hasText: "Could not load your subscriptions" }).filter({ hasText: "The service is briefly unavailable." }).waitFor();
  await page.getByRole("alert").filter({ hasText: "Could not load the plans" }).waitFor();
  await page.getByRole("button", { name: "Create key" }).first().click();
  dialog = page.getByRole("dialog", { name: "Create key" });
  await dialog.getByText("Your subscriptions could not be loaded").waitFor();
  await dialog.getByRole("alert").filter({ hasText: "The service is briefly unavailable." }).waitFor();
  check(await dialog.getByRole("radio", { name: /Subscription/ }).isDisabled(), "a subscription can be chosen while none could be loaded");
  check((await dialog.getByText("Subscribe to a plan first").count()) === 0, "the dialog says to subscribe while the subscriptions could not be loaded");
  await shot("10-keys-subscriptions-failed");
  // The outage over, Try again loads them: the subscription choice is back
  await page.unroute(statusRoute);
  await dialog.getByRole("button", { name: "Try again" }).click();
  await dialog.getByText("Uses a plan's 5-hour budget").waitFor();
  check(!(await dialog.getByRole("radio", { name: /Subscription/ }).isDisabled()), "the subscription choice is back after Try again");
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("alert").filter({ hasText: "Could not load your subscriptions" }).waitFor({ state: "detached" });
  await go("Overview", "Overview");
  await page.getByRole("alert").filter({ hasText: "Could not load the plans" }).filter({ hasText: "The service is briefly unavailable." }).waitFor();
  await page.unroute(plansRoute);
  await page.route(keysRoute, outage);
  await go("Usage", "Usage");
  await page.getByRole("alert").filter({ hasText: "Could not load your API keys" }).filter({ hasText: "The service is briefly unavailable." }).waitFor();
  await shot("10-usage-keys-failed");
  await page.unroute(keysRoute);

  // 11. Sign out: back to the sign-in page, and the session is over server-side (a reload stays signed out).
  await page.getByRole("button", { name: "Sign out" }).click();
  await onPage("Sign in or create an account");
  await page.reload();
  await onPage("Sign in or create an account");
  check(pageErrors.length === 0, `script errors on the pages: ${pageErrors.join("; ")}`);

  // 12. Narrow screens: the navigation stays usable.
  await page.setViewportSize({ width: 420, height: 860 });
  await page.getByLabel("Email").fill(email);
  const again = Date.now();
  await page.getByRole("button", { name: "Send code" }).click();
  const [first] = await codesFor(email, again, 1);
  // "Send a new code": a second code arrives; the first stops working, the new one signs in.
  await page.getByRole("button", { name: "Send a new code" }).click();
  await page.getByText("A new code is on its way.").waitFor();
  const [second] = await codesFor(email, again, 2);
  await shot("12-sign-in-new-code");
  if (second !== first) {
    // (one time in a million the two random codes are equal)
    await page.getByLabel("Code").fill(first);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "Could not sign in." }).waitFor();
  }
  await page.getByLabel("Code").fill(second);
  await page.getByRole("button", { name: "Sign in" }).click();
  await onPage("Overview");
  await go("API keys", "API keys");
  const cutOff = await page
    .getByRole("navigation")
    .first()
    .getByRole("link")
    .evaluateAll((links) => links.filter((link) => { const box = link.getBoundingClientRect(); return box.left < 0 || box.right > window.innerWidth; }).map((link) => link.textContent));
  check(cutOff.length === 0, `navigation links cut off at phone width: ${cutOff.join(", ")}`);
  // The keys table (ci-standard is still there) scrolls inside its card; the page itself does not scroll sideways
  await page.getByRole("row", { name: /ci-standard/ }).waitFor();
  const [pageWidth, viewWidth] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  check(pageWidth <= viewWidth, `the page is ${pageWidth}px wide at a ${viewWidth}px phone width`);
  await shot("11-mobile-api-keys");
  console.log(JSON.stringify(findings));
} catch (error) {
  exitCode = 1;
  const said = page ? await page.locator("body").innerText({ timeout: 1000 }).catch(() => "") : "";
  const where = page ? ` (at ${page.url()}: ${said.trim().replace(/\s+/g, " ").slice(0, 600)})` : "";
  console.error(`dashboard.mjs: ${error instanceof Error ? error.message.split("\n")[0] : error}${where}`);
  if (page) await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
} finally {
  await context?.close().catch(() => {});
  await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}
process.exit(exitCode);
