// Calls /v1 across origins from pages in a real (headless) browser, as a customer's web app would, with the
// headers the openai JS SDK sends (so the browser preflights).
//
//   node tests/e2e/browser/cors.mjs <apiUrl> <allowedPageUrl> <foreignPageUrl> <apiKey>
//
// From each page: a streamed chat completion (read to the end, with its x-request-id) and GET /v1/models.
// Prints one JSON line {"allowed": {...}, "foreign": {...}}: per page, what the page's script could see (the
// status, the exposed headers, the stream's text) or the error the browser raised; exit 0. On a failure of
// the harness itself it prints a message to stderr and exits 1.
// Uses Debian's chromium through playwright-core (CHROMIUM overrides the path).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const [apiUrl, allowedPage, foreignPage, apiKey] = process.argv.slice(2);
if (!apiUrl || !allowedPage || !foreignPage || !apiKey) {
  console.error("usage: node tests/e2e/browser/cors.mjs <apiUrl> <allowedPageUrl> <foreignPageUrl> <apiKey>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"];

// What runs in the page: the SDK's request headers (openai-node's buildHeaders), a stream read to its end.
async function callApi({ apiUrl, apiKey }) {
  const sdkHeaders = {
    Authorization: `Bearer ${apiKey}`,
    "Content-Type": "application/json",
    Accept: "application/json",
    "X-Stainless-Lang": "js",
    "X-Stainless-Package-Version": "5.0.0",
    "X-Stainless-OS": "Unknown",
    "X-Stainless-Arch": "unknown",
    "X-Stainless-Runtime": "browser:chrome",
    "X-Stainless-Runtime-Version": "120.0.0",
    "X-Stainless-Retry-Count": "0",
    "X-Stainless-Timeout": "600",
  };
  const seen = {};
  try {
    const response = await fetch(`${apiUrl}/v1/chat/completions`, {
      method: "POST",
      headers: sdkHeaders,
      body: JSON.stringify({
        model: "test/story",
        messages: [{ role: "user", content: "a story, streamed" }],
        stream: true,
      }),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    seen.chat = {
      status: response.status,
      requestId: response.headers.get("x-request-id"),
      remainingRequests: response.headers.get("x-ratelimit-remaining-requests"),
      frames: text.split("\n\n").filter((frame) => frame.startsWith("data: ")).length,
      done: text.includes("data: [DONE]"),
    };
  } catch (error) {
    seen.chat = { error: String(error) };
  }
  try {
    const response = await fetch(`${apiUrl}/v1/models`, { headers: sdkHeaders });
    seen.models = { status: response.status, count: (await response.json()).data.length };
  } catch (error) {
    seen.models = { error: String(error) };
  }
  return seen;
}

const userDataDir = await mkdtemp(join(tmpdir(), "cors-chromium-"));
let context;
let exitCode = 0;
try {
  context = await chromium.launchPersistentContext(userDataDir, { executablePath, args, headless: true });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30000);
  const result = {};
  for (const [name, url] of [
    ["allowed", allowedPage],
    ["foreign", foreignPage],
  ]) {
    await page.goto(url, { waitUntil: "load" });
    result[name] = await page.evaluate(callApi, { apiUrl, apiKey });
  }
  console.log(JSON.stringify(result));
} catch (error) {
  console.error(`cors.mjs: ${error.stack || error}`);
  exitCode = 1;
} finally {
  if (context) await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
