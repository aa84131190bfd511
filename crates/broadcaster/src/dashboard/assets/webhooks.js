// Webhooks: create, edit (URL, events, on/off), delete, the delivery log and replay.
import { api } from "./api.js";
import { el, put, button, emptyState, field, guard, toast, dateTime, debounced, confirmDialog } from "./dom.js";
import { onLive } from "./live.js";

const EVENTS = ["incoming_message", "message_status_update", "message_reaction", "message_edited", "message_revoked", "message_sent",
  "connection_update", "qr_code", "pairing_code", "poll_vote", "account_health", "campaign_status", "campaign_progress", "reachout_timelock", "chat_update"];

export async function render(root, { arg }) {
  const list = el("div", { id: "webhooks", class: "stack" });
  const editor = el("div", { id: "wh-editor" });
  const log = el("div", { id: "deliveries" });
  root.append(el("div", { class: "page-head" }, el("h1", {}, "Webhooks"), button("New webhook", () => edit(null), "primary", { id: "wh-new" })), editor, list, log);
  let hooks = [];
  let shown = arg || null;
  let pending = false;

  function edit(w) {
    const url = el("input", { id: "wh-url", type: "url", required: true, value: w ? w.url : "", placeholder: "https://example.com/hooks/whatsapp" });
    const all = el("input", { type: "checkbox", id: "wh-all", checked: !w || w.events.includes("*") });
    const boxes = EVENTS.map((e) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "event", value: e, checked: w ? w.events.includes(e) : false }), " " + e.replace(/_/g, " ")));
    const enabled = el("input", { type: "checkbox", id: "wh-enabled", checked: !w || w.enabled });
    const form = el("form", { class: "card stack", id: "wh-form", "aria-label": w ? "Edit webhook" : "New webhook" },
      el("h2", {}, w ? "Edit webhook" : "New webhook"),
      field("URL that receives the events (POST, signed)", url),
      el("fieldset", {}, el("legend", {}, "Events"), el("label", { class: "check" }, all, " All events"), el("div", { class: "checks" }, boxes)),
      w ? el("label", { class: "check" }, enabled, " Enabled (deliveries are made)") : null,
      el("div", { class: "row" }, el("button", { class: "btn primary", id: "wh-save" }, w ? "Save changes" : "Add webhook"), button("Cancel", () => put(editor))));
    form.addEventListener("submit", guard(async (e) => {
      e.preventDefault();
      const events = all.checked ? ["*"] : [...form.querySelectorAll("input[name=event]:checked")].map((i) => i.value);
      if (!events.length) throw new Error("choose at least one event");
      if (w) {
        await api("PATCH", `/api/v1/webhooks/${w.id}`, { url: url.value.trim(), events, enabled: enabled.checked });
        toast("webhook saved"); put(editor);
      } else {
        const created = await api("POST", "/api/v1/webhooks", { url: url.value.trim(), events });
        put(editor, el("div", { class: "card", id: "wh-secret", role: "status" }, el("h2", {}, "Webhook added"),
          el("p", {}, "Its signing secret, shown this once: check each delivery's signature with it."), el("code", { class: "secret" }, created.secret),
          el("div", { class: "row" }, button("Done", () => put(editor)))));
        shown = created.id;
      }
      await load();
    }));
    put(editor, form);
    url.focus();
  }

  async function load() {
    hooks = await api("GET", "/api/v1/webhooks");
    put(list, ...(hooks.length ? hooks.map((w) => el("article", { class: "card webhook" + (w.id === shown ? " selected" : ""), "data-webhook": w.id },
      el("div", { class: "row between" }, el("strong", { class: "ellipsis" }, w.url), el("span", { class: "badge " + (w.enabled ? "s-active" : "") }, w.enabled ? "On" : "Off")),
      el("p", { class: "muted small" }, w.events.includes("*") ? "All events" : w.events.join(", ")),
      el("div", { class: "row" },
        button("Deliveries", async () => { shown = w.id; await load(); }, "", { "data-action": "deliveries" }),
        button("Edit", () => edit(w), "", { "data-action": "edit" }),
        button("Delete", async () => { if (await confirmDialog("Delete this webhook and its delivery log?")) { await api("DELETE", `/api/v1/webhooks/${w.id}`); if (shown === w.id) shown = null; await load(); } }, "danger ghost", { "data-action": "delete" }))))
      : [emptyState("No webhooks yet", "A webhook sends events (messages received, delivery receipts, campaign progress…) to your server as signed POST requests, retried until they succeed.",
        button("Add a webhook", () => edit(null), "primary"))]));
    await loadLog();
  }

  async function loadLog() {
    const w = hooks.find((h) => h.id === shown);
    if (!w) { put(log); pending = false; return; }
    const items = await api("GET", `/api/v1/webhooks/${w.id}/deliveries`);
    pending = items.some((d) => d.status === "pending");
    put(log, el("h2", { id: "dlv-title" }, "Deliveries to " + w.url),
      items.length ? el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Deliveries" }, el("table", {},
        el("thead", {}, el("tr", {}, ["Event", "Status", "Attempts", "Last result", "Created", ""].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, items.map((d) => el("tr", { "data-status": d.status, "data-delivery": d.id },
          el("td", {}, d.event_type), el("td", {}, el("span", { class: "badge d-" + d.status }, d.status)), el("td", {}, String(d.attempts)),
          el("td", { class: d.last_error ? "error" : "muted" }, d.last_error || (d.last_status ? "HTTP " + d.last_status : "")),
          el("td", {}, dateTime(d.created_at)),
          el("td", {}, button("Replay", async () => { await api("POST", `/api/v1/webhooks/deliveries/${d.id}/replay`); toast("replay queued"); await loadLog(); }, "small", { "data-action": "replay" })))))))
        : el("p", { class: "muted" }, "No deliveries yet: they appear when a chosen event happens."));
  }

  await load();
  const reload = debounced(loadLog, 500);
  const off = onLive(() => { if (shown) reload(); });
  // Retries move without an event: re-read while a delivery is pending.
  const timer = setInterval(() => { if (pending) loadLog().catch(() => {}); }, 2000);
  return () => { off(); clearInterval(timer); };
}
