// Walks the Broadcaster dashboard in headless Chromium against a server in emulator mode, as a
// new user would: first run (every page's empty state) → the API key → the first account →
// its QR scanned by the simulated phone → a chat with a contact's phone (text and an image both
// ways with thumbnails, a reaction and a quoted reply from the phone drawn on their message, a
// reply and a reaction from the dashboard) → CSV file upload → template created, edited with
// its live preview → campaign wizard to completion with its chart → a campaign paused by a
// reach-out time-lock (the emulator's control API), shown with its reason, resumed when lifted
// → webhook created, edited, its failing delivery logged and replayed → every page again at
// 375 px → the API docs (Swagger UI at /docs).
//
// On every page, at 1280 px and at 375 px: a screenshot goes to BROADCASTER_BROWSER_ARTIFACTS,
// nothing spills sideways, and axe-core (npm, run in the page) finds no serious or critical
// accessibility violation. Any console error, page error, failed request or HTTP error response
// fails the walk, as does any request that leaves the server (both pages work offline).
//
// Environment: BROADCASTER_URL (http://127.0.0.1:PORT), BROADCASTER_KEY (admin API key),
// BROADCASTER_CHROMIUM (the browser binary), BROADCASTER_BROWSER_ARTIFACTS (a directory),
// BROADCASTER_DASHBOARD_URL and BROADCASTER_DOCS_URL (from the start banner),
// BROADCASTER_EMULATOR_CONTROL (the in-process emulator's control API base URL).
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { deflateSync } from "node:zlib";
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
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

// Generous: CI runs this on two loaded cores.
const T = 60_000;
const OWNER = "+15550001111";
const FRIEND = "+15550002222";
const IMPORTED = [["+15550003001", "Bob"], ["+15550003002", "Carol"]];
const jid = (phone) => phone.slice(1) + "@s.whatsapp.net";
// Two small real PNGs (2×2 pixels, one colour), so thumbnails decode in the browser.
function crc32(buf) {
  let c = ~0;
  for (const b of buf) { c ^= b; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); }
  return ~c >>> 0;
}
function png(r, g, b) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(2, 0); ihdr.writeUInt32BE(2, 4); ihdr[8] = 8; ihdr[9] = 2;
  const row = [0, r, g, b, r, g, b];
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.from([...row, ...row]))), chunk("IEND", Buffer.alloc(0))]);
}
const PNG_RED = png(220, 30, 30);
const PNG_BLUE = png(30, 60, 220);

const problems = [];
const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Root in CI containers: Chromium's sandbox needs user namespaces, which containers lack.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
// Only the server under test may be reached.
await context.route("**/*", (route) => {
  const url = route.request().url();
  if (url.startsWith(base + "/") || url.startsWith("data:") || url.startsWith("blob:")) return route.continue();
  problems.push(`request outside the server: ${url}`);
  return route.abort();
});
const page = await context.newPage();
page.setDefaultTimeout(T);
page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()} (${m.location().url})`); });
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("requestfailed", (r) => {
  // A WebSocket or download cut by a navigation is the browser's doing, not a failure.
  if (r.failure()?.errorText === "net::ERR_ABORTED") return;
  problems.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
});
page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`); });

let shot = 0;
async function screenshot(name) {
  shot += 1;
  const file = join(artifacts, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
async function step(name, fn) {
  const started = Date.now();
  process.stdout.write(`step ${name} … `);
  await fn();
  const file = await screenshot(name);
  console.log(`ok (${Date.now() - started} ms) → ${file}`);
  if (problems.length) throw new Error(`after step ${name}:\n  ${problems.join("\n  ")}`);
}
/** Nothing wider than the viewport, and axe-core finds no serious or critical violation. */
async function checkPage(label) {
  const spill = await page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth <= w) return null;
    const wide = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > w + 1)
      .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string" ? "." + e.className.split(" ").join(".") : ""));
    return `${document.documentElement.scrollWidth} px wide in ${w} px: ${wide.slice(0, 8).join(", ")}`;
  });
  if (spill) throw new Error(`${label}: the page spills sideways (${spill})`);
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")})`);
  });
  if (violations.length) throw new Error(`${label}: axe-core found\n  ${violations.join("\n  ")}`);
}
/** Opens a page by its route and waits until it has drawn (the shell marks `data-route`). */
const go = async (hash) => {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.locator(`#main[data-route="${hash}"]`).waitFor();
};
async function api(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
// The emulator's control API: what the phones do and what WhatsApp decides.
async function control(path, body) {
  const r = await fetch(controlUrl + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`control ${path}: HTTP ${r.status} ${await r.text()}`);
  return r.json();
}
async function until(what, fn) {
  const deadline = Date.now() + T;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
async function createPhone(phone, name) {
  await go("#/phone");
  await page.fill("#ph-contact", phone);
  await page.fill("#ph-push", name);
  await page.click("#ph-create");
  await page.locator("#ph-title").filter({ hasText: `Inbox of ${phone} (` }).waitFor();
}
const PAGES = ["accounts", "chats", "contacts", "templates", "campaigns", "webhooks", "phone"];

try {
  await step("first-run", async () => {
    await page.goto(dashboardUrl);
    await page.locator("#welcome-title").filter({ hasText: "Welcome" }).waitFor();
    // The welcome screen says where the key is.
    await page.locator(".welcome").filter({ hasText: "Admin key: bk_" }).waitFor();
    await checkPage("welcome");
  });

  await step("wrong-key", async () => {
    await page.fill("#api-key", "bk_not_a_key");
    // A rejected key is part of the flow: its 401 is expected, once.
    const answered = page.waitForResponse((r) => r.url().endsWith("/api/v1/accounts") && r.status() === 401);
    await page.click("#save-key");
    await answered;
    await page.locator("#key-error").filter({ hasText: "not accepted" }).waitFor();
    // Its two traces (the response, and Chromium's console line about it) are expected; nothing else.
    const expected = (p) => (p.startsWith("HTTP 401: GET ") && p.endsWith("/api/v1/accounts")) || (p.startsWith("console error: Failed to load resource") && p.includes("401") && p.endsWith("/api/v1/accounts)"));
    const seen = problems.filter(expected).length;
    if (seen < 1 || seen > 2) throw new Error(`expected the rejected key's 401, saw ${JSON.stringify(problems)}`);
    problems.splice(0, problems.length, ...problems.filter((p) => !expected(p)));
  });

  await step("api-key", async () => {
    await page.fill("#api-key", key);
    await page.press("#api-key", "Enter");
    await page.locator("#first-title").filter({ hasText: "Add your first WhatsApp account" }).waitFor();
    await page.locator("#live").filter({ hasText: /^live$/ }).waitFor();
    await checkPage("first account");
  });

  // Every page before there is anything: each explains itself and offers the first step.
  for (const name of PAGES.filter((p) => p !== "phone")) {
    await step(`empty-${name}`, async () => {
      await go("#/" + name);
      await page.locator("#main [data-empty]").first().waitFor();
      await checkPage(`empty ${name}`);
    });
  }

  await step("account-created", async () => {
    await go("#/welcome/first-account");
    await page.fill("#first-account-name", "Sales");
    await page.click("#first-account-create");
    await page.locator("#qr-img:not([hidden])").waitFor();
    const src = await page.getAttribute("#qr-img", "src");
    if (!src || !src.startsWith("data:image/png;base64,")) throw new Error(`QR image is ${src}`);
    await checkPage("QR dialog");
  });

  await step("phone-scans-qr", async () => {
    await page.fill("#sim-phone", OWNER);
    await page.click("#qr-phone-scan");
    await page.locator('#qr-state[data-linked="true"]').filter({ hasText: `Linked as ${OWNER}` }).waitFor();
    await page.keyboard.press("Escape");
    await page.locator("#qr-modal").waitFor({ state: "detached" });
  });

  await step("account-active", async () => {
    const card = page.locator("[data-account]").filter({ hasText: "Sales" });
    await card.locator('.badge[data-state="active"]').waitFor();
    await card.filter({ hasText: OWNER }).waitFor();
    // Only what an active account can do.
    const acts = await card.locator("[data-action]").evaluateAll((b) => b.map((x) => x.dataset.action));
    if (acts.join(",") !== "chats,disconnect,logout") throw new Error(`an active account offers ${acts}`);
    await card.locator(".usage").filter({ hasText: "Sent today" }).waitFor();
    await checkPage("accounts");
  });

  await step("contact-phone", async () => {
    await createPhone(FRIEND, "Alice");
    await checkPage("phones");
  });

  let firstWaId;
  await step("chat-text", async () => {
    await go("#/chats");
    await page.fill("#chat-search", FRIEND);
    await page.press("#chat-search", "Enter");
    await page.locator("#msg-title").filter({ hasText: FRIEND }).waitFor();
    await page.fill("#composer-text", "Hello from the dashboard");
    await page.press("#composer-text", "Enter");
    const out = page.locator("#msg-history .msg.out").filter({ hasText: "Hello from the dashboard" });
    await out.waitFor();
    // The phone reads it (its inbox read receipts): the tick turns blue live.
    const inbox = await until("the phone to receive the text", async () => {
      const i = await api("GET", `/api/v1/emulator/phones/${encodeURIComponent(FRIEND)}/inbox`);
      return i.some((m) => m.text === "Hello from the dashboard") && i;
    });
    firstWaId = inbox.find((m) => m.text === "Hello from the dashboard").wa_message_id;
    await api("POST", `/api/v1/emulator/phones/${encodeURIComponent(FRIEND)}/read`, { wa_message_ids: [firstWaId] });
    await out.locator(".tick.t-read").waitFor();
  });

  await step("chat-image-out", async () => {
    await page.setInputFiles("#composer-file", { name: "red.png", mimeType: "image/png", buffer: PNG_RED });
    await page.fill("#composer-text", "A red square");
    await page.click("#composer-send");
    const img = page.locator('#msg-history .msg.out[data-kind="image"] img.thumb').last();
    await img.waitFor();
    await until("the sent image's thumbnail to decode", () => img.evaluate((i) => i.complete && i.naturalWidth === 2));
    await until("the phone to receive the image", async () => (await api("GET", `/api/v1/emulator/phones/${encodeURIComponent(FRIEND)}/inbox`)).some((m) => m.kind === "image"));
  });

  await step("chat-from-phone", async () => {
    const fromPhone = FRIEND.slice(1);
    await control(`/phones/${fromPhone}/send`, { to: OWNER, image_b64: PNG_BLUE.toString("base64"), mimetype: "image/png", caption: "A blue one" });
    const img = page.locator('#msg-history .msg.in[data-kind="image"] img.thumb');
    await img.waitFor();
    await until("the received image's thumbnail to decode", () => img.evaluate((i) => i.complete && i.naturalWidth === 2));
    await control(`/phones/${fromPhone}/react`, { chat: jid(OWNER), id: firstWaId, emoji: "❤️" });
    const mine = page.locator("#msg-history .msg.out").filter({ hasText: "Hello from the dashboard" });
    await mine.locator('.reaction[data-emoji="❤️"]').waitFor();
    await control(`/phones/${fromPhone}/send`, { to: OWNER, text: "Loved it", reply_to: { id: firstWaId, text: "Hello from the dashboard" } });
    const reply = page.locator("#msg-history .msg.in").filter({ hasText: "Loved it" });
    await reply.locator(".quote").filter({ hasText: "Hello from the dashboard" }).waitFor();
    // A reaction is drawn on its message, never as a bubble of its own.
    const bubbles = await page.locator("#msg-history .msg .text").allTextContents();
    if (bubbles.some((t) => t.includes("❤️") || /^\[.*\]$/.test(t))) throw new Error(`bubbles: ${JSON.stringify(bubbles)}`);
    await checkPage("conversation");
  });

  await step("chat-reply-and-react", async () => {
    const theirs = page.locator("#msg-history .msg.in").filter({ hasText: "Loved it" });
    await theirs.locator('[data-action="reply"]').click();
    await page.locator("#reply-bar .quote").filter({ hasText: "Loved it" }).waitFor();
    await page.fill("#composer-text", "Glad you liked it");
    await page.press("#composer-text", "Enter");
    await page.locator("#msg-history .msg.out").filter({ hasText: "Glad you liked it" }).locator(".quote").filter({ hasText: "Loved it" }).waitFor();
    await theirs.locator('[data-action="react"]').click();
    await theirs.getByRole("button", { name: "React 👍" }).click();
    await theirs.locator('.reaction[data-emoji="👍"]').waitFor();
    // The chat list names the contact and shows the last message.
    await page.locator(`#chat-list [data-chat="${jid(FRIEND)}"]`).filter({ hasText: "Alice" }).waitFor();
  });

  await step("campaign-phones", async () => {
    for (const [phone, name] of IMPORTED) await createPhone(phone, name);
  });

  await step("csv-uploaded", async () => {
    await go("#/contacts");
    const csv = "phone,name\n" + IMPORTED.map(([p, n]) => `${p},${n}`).join("\n") + "\nnot-a-number,Mallory\n";
    await page.setInputFiles("#ct-file", { name: "contacts.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
    await page.fill("#ct-import-tags", "launch");
    const sent = page.waitForRequest((r) => r.url().endsWith("/api/v1/contacts/import"));
    await page.click("#ct-import");
    const req = await sent;
    if (!(req.headers()["content-type"] || "").startsWith("multipart/form-data")) throw new Error(`import sent as ${req.headers()["content-type"]}`);
    await page.locator("#import-summary").filter({ hasText: "2 created" }).waitFor();
    const errors = await page.locator(".import-error").allTextContents();
    if (errors.length !== 1 || !errors[0].startsWith("line 4:")) throw new Error(`import errors: ${JSON.stringify(errors)}`);
    await page.locator("#ct-total").filter({ hasText: /^2 contacts$/ }).waitFor();
    await checkPage("contacts");
  });

  await step("template-created", async () => {
    await go("#/templates");
    await page.click("#tpl-new");
    await page.fill("#tpl-name", "welcome");
    await page.fill("#tpl-body", "Hi {{name|there}}, launch soon!");
    await page.selectOption("#tpl-media-kind", "image");
    await page.setInputFiles("#tpl-media-file", { name: "poster.png", mimeType: "image/png", buffer: PNG_RED });
    await page.locator("#tpl-preview .tpl-out").filter({ hasText: "Hi Bob, launch soon!" }).waitFor();
    await page.click("#tpl-save");
    await page.locator("[data-template]").filter({ hasText: "welcome" }).filter({ hasText: "image/png" }).waitFor();
  });

  await step("template-edited", async () => {
    await page.locator("[data-template]").filter({ hasText: "welcome" }).locator('[data-action="edit"]').click();
    await page.fill("#tpl-body", "Hi {{name|there}}, the launch is on!");
    // The live preview follows the typing, for sample contacts.
    await page.locator("#tpl-preview .tpl-out").filter({ hasText: "Hi Carol, the launch is on!" }).waitFor();
    await checkPage("template editor");
    await page.click("#tpl-save");
    await page.locator("[data-template]").filter({ hasText: "the launch is on!" }).filter({ hasText: "image/png" }).waitFor();
  });

  let launch;
  await step("campaign-wizard", async () => {
    await go("#/campaigns");
    await page.click("#cmp-new");
    await page.locator("#wizard").waitFor();
    await page.getByLabel("launch (2)").check();
    await page.click("#wizard-next");
    await page.fill("#wiz-name", "Launch");
    await page.selectOption("#wiz-template", { label: "welcome" });
    await page.click("#wizard-next");
    await page.locator("#wizard legend").filter({ hasText: "Send from these accounts" }).waitFor();
    await page.click("#wizard-next");
    await page.fill("#wiz-rate", "600");
    await checkPage("campaign wizard");
    await page.click("#wizard-next");
    await page.locator("#wizard .review").filter({ hasText: "about 2 people" }).waitFor();
    await page.click("#wizard-next");
    await page.locator('#campaign-summary .percent[data-percent="100"]').waitFor();
    launch = page.url().split("#/campaigns/")[1];
    for (const [phone, name] of IMPORTED) {
      const inbox = await until(`${phone} to receive the campaign`, async () => {
        const i = await api("GET", `/api/v1/emulator/phones/${encodeURIComponent(phone)}/inbox`);
        return i.some((m) => m.kind === "image" && m.text === `Hi ${name}, the launch is on!`) && i;
      });
      await api("POST", `/api/v1/emulator/phones/${encodeURIComponent(phone)}/read`, { wa_message_ids: inbox.map((m) => m.wa_message_id) });
    }
    // The chart draws the sends over time; reads arrive live.
    await page.locator('#campaign-chart path[data-series="Sent"]').waitFor();
    await page.locator('#campaign-chart path[data-series="Read"]').waitFor();
    await page.locator('#recipients tr[data-status="read"]').nth(1).waitFor();
    await checkPage("campaign");
  });

  let secondWave;
  await step("campaign-paused-by-timelock", async () => {
    const until = Math.floor(Date.now() / 1000) + 3600;
    await control(`/phones/${OWNER.slice(1)}/reachout`, { timelock: { until, enforcement_type: "RESTRICT_ALL_COMPANIONS" } });
    await go("#/accounts");
    await page.locator(`[data-account] [data-timelock-until="${until * 1000}"]`).waitFor();
    const [account] = await api("GET", "/api/v1/accounts");
    secondWave = (await api("POST", "/api/v1/campaigns", { name: "Second wave", body: "Round two", account_ids: [account.id], audience: { tags: ["launch"] } })).campaign.id;
    await go("#/campaigns");
    const row = page.locator('[data-campaign][data-status="paused"]').filter({ hasText: "Second wave" });
    await row.locator('.cmp-reason[data-reason="reachout_timelock"]').filter({ hasText: "Paused: WhatsApp time-locked first contacts; resumes by itself at" }).waitFor();
  });

  await step("campaign-resumes-after-lift", async () => {
    await control(`/phones/${OWNER.slice(1)}/reachout`, { lift_timelock: true });
    await page.locator('[data-campaign][data-percent="100"]').filter({ hasText: "Second wave" }).waitFor();
    // Its receipts reach the row: no campaign event is still on its way when the walk moves on.
    const p = await until("Second wave delivered", async () => {
      const c = (await api("GET", `/api/v1/campaigns/${secondWave}`)).progress;
      return c.delivered + c.read >= 2 && c;
    });
    await page.locator("[data-campaign]").filter({ hasText: "Second wave" }).filter({ hasText: `delivered ${p.delivered}, read ${p.read}` }).waitFor();
    await checkPage("campaigns");
  });

  await step("webhook-created", async () => {
    await go("#/webhooks");
    await page.click("#wh-new");
    // The server's own /healthz answers POST with 405: the log shows a failing delivery.
    await page.fill("#wh-url", base + "/healthz");
    await page.uncheck("#wh-all");
    await page.getByLabel("message reaction").check();
    await page.click("#wh-save");
    await page.locator("#wh-secret").filter({ hasText: "whsec_" }).waitFor();
    await checkPage("webhook secret");
  });

  await step("webhook-edited", async () => {
    const card = page.locator("[data-webhook]").first();
    await card.locator('[data-action="edit"]').click();
    await page.getByLabel("message reaction").uncheck();
    await page.getByLabel("incoming message").check();
    await page.click("#wh-save");
    await card.filter({ hasText: "incoming_message" }).waitFor();
    const [hook] = await api("GET", "/api/v1/webhooks");
    if (hook.events.join() !== "incoming_message") throw new Error(`events: ${hook.events}`);
  });

  await step("webhook-log-and-replay", async () => {
    await page.locator("[data-webhook]").first().locator('[data-action="deliveries"]').click();
    await page.locator("#dlv-title").filter({ hasText: "Deliveries to" }).waitFor();
    await api("POST", `/api/v1/emulator/phones/${encodeURIComponent(FRIEND)}/send`, { to: OWNER, text: "webhook ping" });
    const row = page.locator("#deliveries tr").filter({ hasText: "incoming_message" }).filter({ hasText: "HTTP 405" });
    await row.first().waitFor();
    await row.first().locator('[data-action="replay"]').click();
    await page.locator("#toast").filter({ hasText: "replay queued" }).waitFor();
    await checkPage("webhooks");
  });

  // Every page at phone width: usable, nothing spills sideways, still accessible.
  await page.setViewportSize({ width: 375, height: 812 });
  const [account] = await api("GET", "/api/v1/accounts");
  const narrow = [
    ...PAGES.map((p) => "#/" + p),
    `#/chats/${account.id}/${encodeURIComponent(jid(FRIEND))}`,
    "#/campaigns/new",
    `#/campaigns/${launch}`,
    "#/welcome/change-key",
  ];
  for (const hash of narrow) {
    await step("375-" + hash.slice(2).replace(/[^a-z0-9]+/gi, "-").slice(0, 40), async () => {
      await go(hash);
      if (hash.startsWith("#/chats/")) await page.locator("#msg-history .msg").first().waitFor();
      if (hash === `#/campaigns/${launch}`) await page.locator("#campaign-chart").waitFor();
      await checkPage(`375 px ${hash}`);
    });
  }
  await page.setViewportSize({ width: 1280, height: 900 });

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
