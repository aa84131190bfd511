// Walks the Broadcaster dashboard in headless Chromium against a server in emulator mode:
// API key → account → connect → the simulated phone scans the QR → active → send a message
// (the phone's inbox has it) → the phone replies (chat history shows it) → CSV import with an
// invalid row reported → template with preview → a small campaign that reaches 100% → WhatsApp
// time-locks the account's first contacts (the emulator's control API): a new campaign shows
// as paused with the reason, and completes once the lock is lifted.
// A screenshot of every step goes to BROADCASTER_BROWSER_ARTIFACTS. Any console error, page
// error, failed request or HTTP error response fails the walk.
//
// Last, the API docs (Swagger UI at /docs) render the server's OpenAPI document. The dashboard
// and the docs are opened at the URLs the start banner prints; any request that leaves the server
// (a CDN, an online validator) fails the walk: both pages work offline.
//
// Environment: BROADCASTER_URL (http://127.0.0.1:PORT), BROADCASTER_KEY (admin API key),
// BROADCASTER_CHROMIUM (the browser binary), BROADCASTER_BROWSER_ARTIFACTS (a directory),
// BROADCASTER_DASHBOARD_URL and BROADCASTER_DOCS_URL (from the start banner),
// BROADCASTER_EMULATOR_CONTROL (the in-process emulator's control API base URL).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = need("BROADCASTER_URL");
const key = need("BROADCASTER_KEY");
const executablePath = need("BROADCASTER_CHROMIUM");
const artifacts = need("BROADCASTER_BROWSER_ARTIFACTS");
const dashboardUrl = need("BROADCASTER_DASHBOARD_URL");
const docsUrl = need("BROADCASTER_DOCS_URL");
const controlUrl = need("BROADCASTER_EMULATOR_CONTROL");
mkdirSync(artifacts, { recursive: true });

// Generous: CI runs this on two loaded cores.
const T = 60_000;
const OWNER = "+15550001111";
const FRIEND = "+15550002222";
const IMPORTED = [["+15550003001", "Bob"], ["+15550003002", "Carol"]];
// A small "PNG" (signature and filler bytes): the server checks the type from its content.
const POSTER = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(3000, 7)]);

const problems = [];
const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Root in CI containers: Chromium's sandbox needs user namespaces, which containers lack.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
// Only the server under test may be reached.
await context.route("**/*", (route) => {
  const url = route.request().url();
  if (url.startsWith(base + "/") || url.startsWith("data:")) return route.continue();
  problems.push(`request outside the server: ${url}`);
  return route.abort();
});
const page = await context.newPage();
page.setDefaultTimeout(T);
page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()} (${m.location().url})`); });
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => problems.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`); });

let shot = 0;
async function step(name, fn) {
  const started = Date.now();
  process.stdout.write(`step ${name} … `);
  await fn();
  shot += 1;
  const file = join(artifacts, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`ok (${Date.now() - started} ms) → ${file}`);
  if (problems.length) throw new Error(`after step ${name}:\n  ${problems.join("\n  ")}`);
}
const tab = (name) => page.click(`#nav button[data-tab="${name}"]`);
async function api(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${await r.text()}`);
  return r.json();
}
// The emulator's control API: what WhatsApp decides (here, reach-out time-locks).
async function control(path, body) {
  const r = await fetch(controlUrl + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`control ${path}: HTTP ${r.status} ${await r.text()}`);
  return r.json();
}
async function createPhone(phone, name) {
  await page.fill("#ph-contact", phone);
  await page.fill("#ph-push", name);
  await page.click("#ph-create");
  await page.locator("#ph-title").filter({ hasText: `Inbox of ${phone} (` }).waitFor();
}

try {
  await step("open", async () => {
    await page.goto(dashboardUrl);
    await page.locator("#nav-phone").waitFor({ state: "visible" });
  });

  await step("api-key", async () => {
    await page.fill("#api-key", key);
    await page.click("#save-key");
    await page.locator("#live").filter({ hasText: /^live$/ }).waitFor();
  });

  await step("account-created", async () => {
    await page.fill("#acc-name", "Sales");
    await page.click("#acc-create");
    await page.locator("[data-account]").filter({ hasText: "Sales" }).waitFor();
  });

  await step("qr-shown", async () => {
    await page.click('[data-account] button[data-action="connect"]');
    await page.locator("#qr-img:not([hidden])").waitFor();
    const src = await page.getAttribute("#qr-img", "src");
    if (!src || !src.startsWith("data:image/png;base64,")) throw new Error(`QR image is ${src}`);
  });

  await step("phone-scans-qr", async () => {
    await page.click("#qr-phone-scan");
    await page.locator("#tab-phone.active").waitFor();
    await page.fill("#ph-owner", OWNER);
    await page.click("#ph-scan");
    await page.locator("#ph-link-out").filter({ hasText: `QR scanned by ${OWNER}` }).waitFor();
  });

  await step("account-active", async () => {
    await tab("accounts");
    // The badge turns green from the live stream's connection_update.
    await page.locator('[data-account] .badge[data-state="active"]').waitFor();
    await page.locator("[data-account]").filter({ hasText: OWNER }).waitFor();
  });

  await step("contact-phone", async () => {
    await tab("phone");
    await createPhone(FRIEND, "Alice");
  });

  await step("message-sent", async () => {
    await tab("send");
    await page.fill("#send-phone", FRIEND);
    await page.fill("#send-text", "Hello from the dashboard");
    await page.click("#send-go");
    await page.locator("#send-status").filter({ hasText: /^(sent|delivered|read)/ }).waitFor();
  });

  await step("phone-received", async () => {
    await tab("phone");
    await page.fill("#ph-contact", FRIEND);
    await page.click("#ph-open");
    await page.locator("#ph-inbox .msg").filter({ hasText: "Hello from the dashboard" }).waitFor();
    const inbox = await api("GET", `/api/v1/emulator/phones/${encodeURIComponent(FRIEND)}/inbox`);
    if (!inbox.some((m) => m.text === "Hello from the dashboard")) throw new Error(`inbox: ${JSON.stringify(inbox)}`);
  });

  await step("read-receipt", async () => {
    // Opening the inbox read the message; the sender's status follows the receipt live.
    await tab("send");
    await page.locator("#send-status").filter({ hasText: /^read/ }).waitFor();
  });

  await step("chat-history", async () => {
    await tab("phone");
    await page.fill("#ph-to", OWNER);
    await page.fill("#ph-text", "Hi back from Alice");
    await page.click("#ph-send");
    await tab("messages");
    await page.fill("#msg-chat", FRIEND);
    await page.click("#msg-load");
    await page.locator("#msg-history .msg.out").filter({ hasText: "Hello from the dashboard" }).waitFor();
    await page.locator("#msg-history .msg.in").filter({ hasText: "Hi back from Alice" }).waitFor();
  });

  await step("campaign-phones", async () => {
    await tab("phone");
    for (const [phone, name] of IMPORTED) await createPhone(phone, name);
  });

  await step("csv-imported", async () => {
    await tab("contacts");
    const csv = "phone,name\n" + IMPORTED.map(([p, n]) => `${p},${n}`).join("\n") + "\nnot-a-number,Mallory\n";
    await page.setInputFiles("#ct-file", { name: "contacts.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
    await page.fill("#ct-import-tags", "launch");
    await page.click("#ct-import");
    await page.locator("#import-summary").filter({ hasText: "2 created" }).waitFor();
    const errors = await page.locator(".import-error").allTextContents();
    if (errors.length !== 1 || !errors[0].startsWith("line 4:")) throw new Error(`import errors: ${JSON.stringify(errors)}`);
    await page.locator("#ct-total").filter({ hasText: /^2 contacts$/ }).waitFor();
  });

  await step("template", async () => {
    await tab("templates");
    await page.fill("#tpl-name", "welcome");
    await page.fill("#tpl-body", "Hi {{name|there}}, the launch is on!");
    // A poster image goes with the text as its caption.
    await page.selectOption("#tpl-media-kind", "image");
    await page.setInputFiles("#tpl-media-file", { name: "poster.png", mimeType: "image/png", buffer: POSTER });
    await page.click("#tpl-preview");
    await page.locator("#tpl-out").filter({ hasText: "the launch is on!" }).waitFor();
    await page.locator("#tpl-media-out").filter({ hasText: "image · image/png" }).waitFor();
    await page.click("#tpl-save");
    await page.locator("#templates tr").filter({ hasText: "welcome" }).filter({ hasText: "image/png" }).waitFor();
  });

  await step("campaign-complete", async () => {
    await tab("campaigns");
    await page.fill("#cmp-name", "Launch");
    await page.selectOption("#cmp-template", { label: "welcome" });
    await page.fill("#cmp-rate", "600");
    await page.check("#cmp-accounts input[type=checkbox]");
    await page.fill("#cmp-tags", "launch");
    await page.click("#cmp-create");
    await page.locator("#cmp-out").filter({ hasText: /^2 recipients/ }).waitFor();
    await page.locator('tr[data-campaign][data-percent="100"] .percent').filter({ hasText: "100%" }).waitFor();
    // The row says which file the campaign sends.
    await page.locator('tr[data-campaign] .cmp-media').filter({ hasText: "image · image/png" }).waitFor();
    await page.locator('#recipients tr[data-status="sent"], #recipients tr[data-status="delivered"], #recipients tr[data-status="read"]').nth(1).waitFor();
    for (const [phone, name] of IMPORTED) {
      const inbox = await api("GET", `/api/v1/emulator/phones/${encodeURIComponent(phone)}/inbox`);
      if (!inbox.some((m) => m.kind === "image" && m.text === `Hi ${name}, the launch is on!`)) throw new Error(`${phone} inbox: ${JSON.stringify(inbox)}`);
    }
  });

  let secondWave;
  await step("campaign-paused-by-timelock", async () => {
    const until = Math.floor(Date.now() / 1000) + 3600;
    await control(`/phones/${OWNER.slice(1)}/reachout`, { timelock: { until, enforcement_type: "RESTRICT_ALL_COMPANIONS" } });
    // The account card says so (it lives in the accounts tab, hidden now).
    await page.locator(`[data-account] [data-timelock-until="${until * 1000}"]`).waitFor({ state: "attached" });
    const [account] = await api("GET", "/api/v1/accounts");
    secondWave = (await api("POST", "/api/v1/campaigns", { name: "Second wave", body: "Round two", account_ids: [account.id], audience: { tags: ["launch"] } })).campaign.id;
    const row = page.locator('tr[data-campaign][data-status="paused"]').filter({ hasText: "Second wave" });
    await row.locator('.cmp-reason[data-reason="reachout_timelock"]').filter({ hasText: "Paused: WhatsApp time-locked first contacts; resumes by itself at" }).waitFor();
  });

  await step("campaign-resumes-after-lift", async () => {
    await control(`/phones/${OWNER.slice(1)}/reachout`, { lift_timelock: true });
    await page.locator('tr[data-campaign][data-percent="100"]').filter({ hasText: "Second wave" }).waitFor();
    await page.locator(`[data-account] [data-timelock-until]`).waitFor({ state: "detached" });
    // Its receipts reach the row (copied every 2 s): no campaign event is still on its way
    // when the walk moves on.
    const deadline = Date.now() + T;
    let p;
    do {
      if (Date.now() > deadline) throw new Error(`Second wave not delivered: ${JSON.stringify(p)}`);
      await new Promise((r) => setTimeout(r, 200));
      p = (await api("GET", `/api/v1/campaigns/${secondWave}`)).progress;
    } while (p.delivered + p.read < 2);
    await page.locator("tr[data-campaign]").filter({ hasText: "Second wave" }).filter({ hasText: `delivered ${p.delivered}, read ${p.read}` }).waitFor();
  });

  await step("webhook-log-and-replay", async () => {
    await tab("webhooks");
    // The server's own /healthz answers POST with 405: the log shows a failing delivery.
    await page.fill("#wh-url", base + "/healthz");
    await page.fill("#wh-events", "incoming_message");
    await page.click("#wh-create");
    await page.locator("#wh-secret").filter({ hasText: "Signing secret" }).waitFor();
    await page.click("#webhooks a.pick");
    await page.locator("#dlv-title").filter({ hasText: "Deliveries to" }).waitFor();
    await api("POST", `/api/v1/emulator/phones/${encodeURIComponent(FRIEND)}/send`, { to: OWNER, text: "webhook ping" });
    const row = page.locator("#deliveries tr").filter({ hasText: "incoming_message" }).filter({ hasText: "HTTP 405" });
    await row.first().waitFor();
    await row.first().locator("button").click();
    await page.locator("#toast").filter({ hasText: "replay queued" }).waitFor();
  });

  await step("api-docs", async () => {
    await page.goto(docsUrl);
    await page.locator(".swagger-ui .info .title").filter({ hasText: "Broadcaster API" }).waitFor();
    // Every tag's operations are listed (expanded), the new error semantics among them.
    await page.locator('.opblock-summary-path[data-path="/api/v1/accounts/{id}/check-numbers"]').first().waitFor();
    const operations = await page.locator(".opblock").count();
    if (operations < 40) throw new Error(`Swagger UI lists ${operations} operations`);
    await page.locator(".swagger-ui .info").filter({ hasText: "not_on_whatsapp" }).waitFor();
  });
} catch (e) {
  await page.screenshot({ path: join(artifacts, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`\nbrowser walk failed: ${e.stack || e}`);
  if (problems.length) console.error(`problems seen:\n  ${problems.join("\n  ")}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
if (problems.length) {
  console.error(`problems seen:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`browser walk passed; screenshots in ${artifacts}`);
