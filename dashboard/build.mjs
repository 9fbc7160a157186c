// Builds the customer dashboard into functions/dashboard/site/ (the DashboardFunction's CodeUri serves it):
//   index.html             the one document (hash routes), naming each asset with ?v=<content hash>
//   assets/app.js, .css    the bundle (Preact + the pages), minified; assets/icon.svg; assets/openapi.json
// Run by `make dashboard` (after `tsc --noEmit`); the output is not committed. The asset names are fixed:
// each is a route of template.yaml, and tests/e2e/test_dashboard_browser.py checks the two agree.
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "functions", "dashboard", "site");
const assets = join(out, "assets");

await rm(out, { recursive: true, force: true });
await mkdir(assets, { recursive: true });
await build({
  entryPoints: { app: join(here, "src", "main.tsx") },
  outdir: assets,
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
});
await copyFile(join(here, "src", "icon.svg"), join(assets, "icon.svg"));
// The API reference the navigation links to: the committed openapi.json (make openapi), so AWS serves it too.
await copyFile(join(here, "..", "openapi.json"), join(assets, "openapi.json"));

// The same version the serving function computes: the first 16 hex digits of the SHA-256 of the file.
const version = async (name) => createHash("sha256").update(await readFile(join(assets, name))).digest("hex").slice(0, 16);
let page = await readFile(join(here, "src", "index.html"), "utf8");
for (const name of ["app.js", "app.css", "icon.svg"]) {
  page = page.replaceAll(`{{${name}}}`, `assets/${name}?v=${await version(name)}`);
}
if (page.includes("{{")) throw new Error("index.html: an asset placeholder was not replaced");
await writeFile(join(out, "index.html"), page);
console.log(`dashboard built into ${out}`);
