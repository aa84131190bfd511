// Campaigns: the list with live progress, a wizard (audience → message → accounts → pacing →
// review), and a campaign's page with a progress chart over time and its recipients.
import { api } from "./api.js";
import { el, put, button, bar, emptyState, field, guard, toast, dateTime, debounced } from "./dom.js";
import { onLive } from "./live.js";
import { lineChart } from "./chart.js";
import { mediaText } from "./templates.js";

const STATUS = { draft: "Draft", scheduled: "Scheduled", running: "Sending", paused: "Paused", completed: "Completed", cancelled: "Cancelled", failed: "Failed" };

/** Why a campaign is paused, in words; the code stays in data-reason for scripts. */
function reasonText(c) {
  switch (c.status_reason) {
    case "reachout_timelock": return "Paused: WhatsApp time-locked first contacts" + (c.paused_until ? "; resumes by itself at " + dateTime(c.paused_until) : "");
    case "daily_limit": return "Paused: the accounts reached their daily limit; resumes after midnight in their time zone";
    case null: case undefined: return "";
    default: return c.status_reason.replace(/_/g, " ");
  }
}

export async function render(root, { arg }) {
  if (arg === "new") return wizard(root);
  if (arg) return detail(root, arg);
  const list = el("div", { id: "campaigns", class: "stack" });
  root.append(el("div", { class: "page-head" }, el("h1", {}, "Campaigns"), el("a", { class: "btn primary", href: "#/campaigns/new", id: "cmp-new" }, "New campaign")), list);
  let campaigns = [];
  async function load() {
    campaigns = await api("GET", "/api/v1/campaigns");
    put(list, ...(campaigns.length ? campaigns.map(row) : [emptyState("No campaigns yet",
      "A campaign sends one message (a template or text) to the contacts with chosen tags, paced per account so WhatsApp sees a person, not a machine.",
      el("a", { class: "btn primary", href: "#/campaigns/new" }, "Start a campaign"))]));
  }
  function row(c) {
    const p = c.progress;
    return el("article", { class: "card campaign", "data-campaign": c.id, "data-status": c.status, "data-percent": p.percent },
      el("div", { class: "row between" }, el("h2", {}, el("a", { href: "#/campaigns/" + c.id }, c.name)),
        el("span", { class: "badge c-" + c.status, "data-status": c.status }, STATUS[c.status] || c.status)),
      c.status_reason ? el("p", { class: "cmp-reason warn", "data-reason": c.status_reason }, reasonText(c)) : null,
      bar(p.percent, "Progress of " + c.name), el("div", { class: "row between small" }, el("span", { class: "percent" }, p.percent + "%"),
        el("span", { class: "muted counts" }, `sent ${p.sent}, delivered ${p.delivered}, read ${p.read}, failed ${p.failed}, pending ${p.pending}`)),
      c.media ? el("div", { class: "muted small cmp-media" }, "📎 " + mediaText(c.media)) : null,
      el("div", { class: "row" }, controls(c, load)));
  }
  await load();
  const reload = debounced(load, 300);
  return onLive((ev) => {
    if (ev.event === "campaign_progress") {
      const c = campaigns.find((x) => x.id === (ev.data || {}).campaign_id);
      const node = c && list.querySelector(`[data-campaign="${CSS.escape(c.id)}"]`);
      if (!node) { reload(); return; }
      c.progress = ev.data.progress; node.replaceWith(row(c));
    } else if (ev.event.startsWith("campaign") || ev.event === "reachout_timelock" || ev.event === "ready") reload();
  });
}

function controls(c, reload) {
  const act = (label, path, cls = "") => button(label, async () => { await api("POST", `/api/v1/campaigns/${c.id}/${path}`); await reload(); }, cls, { "data-action": path });
  return [c.status === "running" ? act("Pause", "pause") : null, c.status === "paused" ? act("Resume", "resume", "primary") : null,
    c.status === "draft" ? act("Start", "start", "primary") : null,
    ["running", "paused", "scheduled", "draft"].includes(c.status) ? act("Cancel", "cancel", "danger ghost") : null];
}

async function wizard(root) {
  const [tags, templates, accounts, everyone] = await Promise.all([api("GET", "/api/v1/tags"), api("GET", "/api/v1/templates"), api("GET", "/api/v1/accounts"), api("GET", "/api/v1/contacts?limit=1")]);
  const s = { step: 0, tags: [], template: "", body: "", accounts: accounts.filter((a) => a.state === "active").map((a) => a.id), rate: 20, check: true, when: "", name: "" };
  const steps = ["Audience", "Message", "Accounts", "Pacing", "Review"];
  const nav = el("ol", { class: "wizard-steps", "aria-label": "Steps" });
  const body = el("div", { class: "card stack", id: "wizard" });
  root.append(el("div", { class: "page-head" }, el("h1", {}, "New campaign"), el("a", { class: "btn", href: "#/campaigns" }, "Cancel")), nav, body);
  if (!everyone.total) {
    put(body, emptyState("No contacts to send to", "A campaign sends to your contacts. Import them first (a CSV file with a phone column is enough).", el("a", { class: "btn primary", href: "#/contacts" }, "Go to contacts")));
    return null;
  }
  const audienceCount = async () => {
    if (!s.tags.length) return everyone.total;
    // The union of the tags: the campaign API takes any contact with one of them.
    const counts = tags.filter((t) => s.tags.includes(t.tag));
    return counts.reduce((n, t) => n + t.contacts, 0);
  };
  async function draw() {
    put(nav, ...steps.map((n, i) => el("li", { class: i === s.step ? "current" : i < s.step ? "done" : "", ...(i === s.step ? { "aria-current": "step" } : {}) }, n)));
    const next = el("button", { class: "btn primary", id: "wizard-next" }, s.step === steps.length - 1 ? "Start campaign" : "Next");
    const back = s.step ? button("Back", () => { s.step -= 1; draw(); }, "", { id: "wizard-back" }) : null;
    let content;
    let collect = () => true;
    if (s.step === 0) {
      const boxes = tags.map((t) => el("label", { class: "check" }, el("input", { type: "checkbox", value: t.tag, checked: s.tags.includes(t.tag), name: "tag" }), ` ${t.tag} (${t.contacts})`));
      content = el("fieldset", {}, el("legend", {}, "Who receives it? Pick tags, or none for all contacts"), boxes.length ? boxes : el("p", { class: "muted" }, "No tags yet: all contacts."));
      collect = () => { s.tags = [...content.querySelectorAll("input:checked")].map((i) => i.value); return true; };
    } else if (s.step === 1) {
      const sel = el("select", { id: "wiz-template" }, el("option", { value: "" }, "Write a message here…"), templates.map((t) => el("option", { value: t.id }, t.name)));
      sel.value = s.template;
      const text = el("textarea", { id: "wiz-body", rows: "4", placeholder: "Hi {{name|there}}, …" }, s.body);
      const name = el("input", { id: "wiz-name", required: true, value: s.name, placeholder: "e.g. Spring launch" });
      content = el("div", { class: "stack" }, field("Campaign name", name), field("Template", sel), field("Or the message", text));
      collect = () => { s.name = name.value.trim(); s.template = sel.value; s.body = text.value; if (!s.name) throw new Error("give the campaign a name"); if (!s.template && !s.body.trim()) throw new Error("choose a template or write the message"); return true; };
    } else if (s.step === 2) {
      content = el("fieldset", {}, el("legend", {}, "Send from these accounts (recipients are spread over them)"),
        accounts.map((a) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "account", value: a.id, checked: s.accounts.includes(a.id) }), ` ${a.name} ${a.phone || ""} (${a.state === "active" ? "connected" : a.state.replace(/_/g, " ")})`)));
      if (!accounts.length) content.append(el("p", {}, "No accounts: ", el("a", { href: "#/accounts" }, "add one first"), "."));
      collect = () => { s.accounts = [...content.querySelectorAll("input:checked")].map((i) => i.value); if (!s.accounts.length) throw new Error("choose at least one account"); return true; };
    } else if (s.step === 3) {
      const rate = el("input", { id: "wiz-rate", type: "number", min: "1", max: "600", value: String(s.rate) });
      const check = el("input", { id: "wiz-check", type: "checkbox", checked: s.check });
      const when = el("input", { id: "wiz-when", type: "datetime-local", value: s.when });
      content = el("div", { class: "stack" }, field("Messages per minute per account", rate, "Slower looks more human; 20 is a safe start."),
        el("label", { class: "check" }, check, " Check each number is on WhatsApp first (messages to numbers without WhatsApp count against the account)"),
        field("Start at (empty: now)", when));
      collect = () => { s.rate = Number(rate.value); s.check = check.checked; s.when = when.value; return true; };
    } else {
      const n = await audienceCount();
      const tpl = templates.find((t) => t.id === s.template);
      content = el("dl", { class: "review" },
        el("dt", {}, "Name"), el("dd", {}, s.name),
        el("dt", {}, "Audience"), el("dd", {}, (s.tags.length ? "Tags " + s.tags.join(", ") : "All contacts") + ` · about ${n} people`),
        el("dt", {}, "Message"), el("dd", { class: "pre" }, tpl ? `Template ${tpl.name}: ${tpl.body}` : s.body),
        el("dt", {}, "Accounts"), el("dd", {}, accounts.filter((a) => s.accounts.includes(a.id)).map((a) => a.name).join(", ")),
        el("dt", {}, "Pacing"), el("dd", {}, `${s.rate} a minute per account${s.check ? ", numbers checked first" : ""}`),
        el("dt", {}, "Starts"), el("dd", {}, s.when ? dateTime(new Date(s.when).getTime()) : "Now"));
      collect = async () => {
        const req = { name: s.name, account_ids: s.accounts, rate_per_minute: s.rate, check_numbers: s.check, audience: s.tags.length ? { tags: s.tags } : { all_contacts: true } };
        if (s.template) req.template_id = s.template; else req.body = s.body;
        if (s.when) req.scheduled_at = new Date(s.when).getTime();
        const r = await api("POST", "/api/v1/campaigns", req);
        toast(`${r.audience.recipients} recipients (${r.audience.opted_out} opted out, ${r.audience.duplicates} duplicates)`);
        location.hash = "#/campaigns/" + r.campaign.id;
        return false;
      };
    }
    const form = el("form", { class: "stack" }, el("h2", {}, `${s.step + 1}. ${steps[s.step]}`), content, el("div", { class: "row" }, back, next));
    form.addEventListener("submit", guard(async (e) => { e.preventDefault(); if (await collect()) { s.step += 1; await draw(); } }));
    put(body, form);
    const first = form.querySelector("input, select, textarea");
    if (first) first.focus();
  }
  await draw();
  return null;
}

async function detail(root, id) {
  const head = el("div", { class: "page-head" });
  const summary = el("div", { class: "card stack", id: "campaign-summary" });
  const chart = el("div", { class: "card", id: "campaign-chart-box" });
  const filter = el("select", { id: "rcp-filter" }, ["", "pending", "sent", "delivered", "read", "failed", "skipped_opted_out", "skipped_not_on_whatsapp"].map((v) => el("option", { value: v }, v ? v.replace(/_/g, " ") : "All recipients")));
  const table = el("div", { id: "recipients" });
  let recipients = [];
  const exportCsv = button("Export CSV", () => {
    const rows = [["phone", "status", "reason", "attempts", "sent_at", "delivered_at", "read_at"], ...recipients.map((r) => [r.phone, r.status, r.reason || "", r.attempts, r.sent_at || "", r.delivered_at || "", r.read_at || ""])];
    const csv = rows.map((r) => r.map((v) => /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : v).join(",")).join("\n");
    const a = el("a", { href: URL.createObjectURL(new Blob([csv], { type: "text/csv" })), download: "recipients.csv" });
    document.body.append(a); a.click(); a.remove();
  }, "", { id: "rcp-export" });
  root.append(head, summary, chart, el("div", { class: "row between" }, el("h2", {}, "Recipients"), el("div", { class: "row" }, field("Show", filter), exportCsv)), table);

  async function load() {
    const c = await api("GET", `/api/v1/campaigns/${id}`);
    const page = await api("GET", `/api/v1/campaigns/${id}/recipients?limit=1000`);
    recipients = page.items;
    const p = c.progress;
    put(head, el("h1", {}, c.name), el("a", { class: "btn", href: "#/campaigns" }, "All campaigns"));
    put(summary, el("div", { class: "row between" }, el("span", { class: "badge c-" + c.status, "data-status": c.status }, STATUS[c.status] || c.status), el("div", { class: "row" }, controls(c, load))),
      c.status_reason ? el("p", { class: "cmp-reason warn", "data-reason": c.status_reason }, reasonText(c)) : null,
      bar(p.percent, "Progress"), el("p", { class: "percent", "data-percent": p.percent }, p.percent + "% done"),
      el("p", { class: "muted counts" }, `sent ${p.sent}, delivered ${p.delivered}, read ${p.read}, failed ${p.failed}, opted out ${p.skipped_opted_out}, not on WhatsApp ${p.skipped_not_on_whatsapp}, pending ${p.pending}` + (p.held_new_contacts ? ` (${p.held_new_contacts} held by the new-contact limit)` : "") + ` · ${p.sent_last_minute}/min`));
    const series = (name, cls, key) => ({ name, cls, points: recipients.map((r) => r[key]).filter(Boolean).sort((a, b) => a - b).map((t, i) => [t, i + 1]) });
    put(chart, el("h2", {}, "Progress over time"), lineChart([series("Sent", "sent", "sent_at"), series("Delivered", "delivered", "delivered_at"), series("Read", "read", "read_at")],
      { title: `Messages of ${c.name} sent, delivered and read over time`, total: recipients.length }));
    drawTable();
  }
  function drawTable() {
    const shown = recipients.filter((r) => !filter.value || r.status === filter.value);
    put(table, shown.length ? el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Recipients" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Phone", "Status", "Reason", "Attempts", "Sent"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, shown.map((r) => el("tr", { "data-status": r.status }, el("td", {}, r.phone), el("td", {}, r.status.replace(/_/g, " ")),
        el("td", {}, (r.reason || "") + (r.held_until ? " until " + dateTime(r.held_until) : "")), el("td", {}, String(r.attempts)), el("td", {}, dateTime(r.sent_at)))))))
      : el("p", { class: "muted pad" }, "No recipient in this state."));
  }
  filter.addEventListener("change", drawTable);
  await load();
  const reload = debounced(load, 500);
  return onLive((ev) => { if ((ev.data || {}).campaign_id === id || ev.event === "reachout_timelock" || ev.event === "ready") reload(); });
}
