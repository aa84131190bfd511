// Accounts: state-aware actions only, health in plain words, today's usage as bars, limits.
import { api } from "./api.js";
import { el, put, button, bar, emptyState, field, guard, toast, ago, dateTime, debounced, confirmDialog } from "./dom.js";
import { onLive } from "./live.js";
import { openLink, openPairing } from "./link.js";

const STATE_LABEL = {
  inactive: "Not linked", connecting: "Connecting", qr_ready: "Waiting for scan", pairing_code_ready: "Waiting for code",
  active: "Connected", disconnected: "Disconnected", reconnecting: "Reconnecting", logged_out: "Logged out", error: "Error",
};
const STATE_HELP = {
  inactive: "Link it with a phone to start sending.",
  disconnected: "Stopped. Reconnect to send again; the link with the phone is kept.",
  logged_out: "The phone removed this linked device. Link it again with a QR code or a pairing code.",
  error: "It cannot connect until someone acts (see the reason).",
  reconnecting: "The connection dropped; the server is retrying by itself.",
  connecting: "Connecting to WhatsApp…",
};

export async function render(root) {
  const name = el("input", { id: "acc-name", required: true, placeholder: "e.g. Support", autocomplete: "off" });
  const form = el("form", { class: "row", id: "acc-form" }, field("New account", name), el("button", { class: "btn primary", id: "acc-create" }, "Add account"));
  form.addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    const a = await api("POST", "/api/v1/accounts", { name: name.value.trim() });
    name.value = "";
    await load();
    openLink(a, false);
  }));
  const grid = el("div", { class: "grid", id: "accounts" });
  root.append(el("div", { class: "page-head" }, el("h1", {}, "Accounts"), form), grid);

  async function load() {
    const list = await api("GET", "/api/v1/accounts");
    put(grid, ...(list.length ? list.map((a) => card(a, load)) : [emptyState("No accounts yet",
      "An account is one WhatsApp number. Add one, then scan its QR code with the phone (WhatsApp → Linked devices → Link a device).",
      el("a", { class: "btn primary", href: "#/welcome/first-account" }, "Add your first account"))]));
  }
  await load();
  const reload = debounced(load, 200);
  return onLive((ev) => { if (["connection_update", "reachout_timelock", "message_sent", "message_status_update", "ready"].includes(ev.event)) reload(); });
}

function actions(a, reload) {
  const post = (path) => async () => { await api("POST", `/api/v1/accounts/${a.id}/${path}`); await reload(); };
  const s = a.state;
  const out = [];
  if (["inactive", "disconnected", "logged_out", "error"].includes(s)) {
    if (s === "disconnected" && a.phone) out.push(button("Reconnect", async () => { await api("POST", `/api/v1/accounts/${a.id}/connect`, {}); await reload(); }, "primary", { "data-action": "reconnect" }));
    else {
      out.push(button("Link with QR code", () => openLink(a, false), "primary", { "data-action": "connect" }));
      out.push(button("Link with a code", () => openPairing(a), "", { "data-action": "pair" }));
    }
  }
  if (s === "qr_ready" || s === "pairing_code_ready") out.push(button(s === "qr_ready" ? "Show QR code" : "Show code", () => openLink(a, s === "pairing_code_ready"), "primary", { "data-action": "show-link" }));
  if (["connecting", "reconnecting", "qr_ready", "pairing_code_ready"].includes(s)) out.push(button("Stop", post("disconnect"), "", { "data-action": "disconnect" }));
  if (s === "active") {
    out.push(el("a", { class: "btn", href: "#/chats/" + a.id, "data-action": "chats" }, "Open chats"));
    out.push(button("Disconnect", post("disconnect"), "", { "data-action": "disconnect" }));
    out.push(button("Log out", async () => { if (await confirmDialog(`Log ${a.name} out? The phone must link it again.`, "Log out")) await post("logout")(); }, "danger", { "data-action": "logout" }));
  }
  if (s !== "active") out.push(button("Delete", async () => { if (await confirmDialog(`Delete ${a.name} and its history?`)) { await api("DELETE", `/api/v1/accounts/${a.id}`); await reload(); } }, "danger ghost", { "data-action": "delete" }));
  return out;
}

function card(a, reload) {
  const t = a.today;
  const h = a.health;
  const limits = el("details", { class: "limits" }, el("summary", {}, "Limits and name"), limitsForm(a, reload));
  return el("article", { class: "card account", "data-account": a.id, "aria-label": a.name },
    el("div", { class: "row between" },
      el("h2", {}, a.name),
      el("span", { class: "badge s-" + a.state, "data-state": a.state }, STATE_LABEL[a.state] || a.state)),
    el("div", { class: "muted" }, a.phone || "No phone linked yet", a.push_name ? " · " + a.push_name : ""),
    el("div", { class: "muted small" }, a.state === "active" ? "Connected since " + dateTime(a.last_connected_at) : "Last connected " + ago(a.last_connected_at)),
    a.state_reason ? el("p", { class: "reason error", "data-reason-code": a.state_reason_code || "" }, a.state_reason)
      : STATE_HELP[a.state] ? el("p", { class: "reason muted" }, STATE_HELP[a.state]) : null,
    a.reachout_timelock ? el("p", { class: "reason warn", "data-timelock-until": a.reachout_timelock.until },
      "WhatsApp blocks messages to new contacts until " + dateTime(a.reachout_timelock.until) + "; campaigns wait and resume by themselves.") : null,
    h ? el("div", { class: "health h-" + h.status, "data-health": h.status }, el("strong", {}, h.status === "healthy" ? "Healthy" : h.status === "warning" ? "Needs attention" : "Critical"),
      h.reasons.length ? el("ul", {}, h.reasons.map((r) => el("li", {}, r))) : null) : null,
    t ? el("div", { class: "usage" },
      el("div", { class: "row between small" }, el("span", {}, "Sent today"), el("span", { "data-usage": "sent" }, `${t.sent} / ${t.daily_limit}`)),
      bar(t.usage_percent, "Messages sent today of the daily limit", true),
      el("div", { class: "row between small" }, el("span", {}, "New contacts today"), el("span", {}, `${t.new_contacts} / ${t.new_contact_limit}`)),
      bar(t.new_contact_limit ? (100 * t.new_contacts) / t.new_contact_limit : 0, "New contacts today of the limit", true),
      el("div", { class: "muted small" }, `Received ${t.received} · resets ${dateTime(t.resets_at)}`)) : null,
    el("div", { class: "row actions" }, actions(a, reload)),
    limits);
}

function limitsForm(a, reload) {
  const daily = el("input", { type: "number", min: "1", value: String(a.daily_limit) });
  const fresh = el("input", { type: "number", min: "0", value: String(a.new_contact_limit) });
  const push = el("input", { value: a.push_name_override || "", placeholder: "as set on the phone" });
  const f = el("form", { class: "stack" }, field("Messages a day", daily), field("New contacts a day", fresh),
    field("Name shown to others", push), el("button", { class: "btn" }, "Save"));
  f.addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    await api("PATCH", `/api/v1/accounts/${a.id}`, { daily_limit: Number(daily.value), new_contact_limit: Number(fresh.value), push_name_override: push.value.trim() || null });
    toast("saved"); await reload();
  }));
  return f;
}
