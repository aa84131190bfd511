// Emulator mode: play the phones. Contacts' phones send (text or an image), react, reply and
// read, so the dashboard can be tried without WhatsApp.
import { api } from "./api.js";
import { el, put, button, field, guard, toast, emptyState } from "./dom.js";

export async function render(root) {
  const phone = el("input", { id: "ph-contact", type: "tel", value: "+15550002222", autocomplete: "off" });
  const push = el("input", { id: "ph-push", value: "Alice", autocomplete: "off" });
  const to = el("input", { id: "ph-to", type: "tel", placeholder: "the account's number", autocomplete: "off" });
  const text = el("input", { id: "ph-text", autocomplete: "off" });
  const inbox = el("div", { id: "ph-inbox", class: "history" });
  const title = el("h2", { id: "ph-title" }, "Inbox");
  const accounts = await api("GET", "/api/v1/accounts");
  const linked = accounts.find((a) => a.phone);
  if (linked) to.value = linked.phone;
  const create = el("form", { class: "row", id: "ph-create-form" }, field("Contact's phone", phone), field("Name", push),
    el("button", { class: "btn", id: "ph-create" }, "Create phone"), button("Open inbox", () => load(), "", { id: "ph-open" }));
  create.addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/v1/emulator/phones", { phone: phone.value.trim(), push_name: push.value.trim() || null });
    phone.value = r.phone; toast("phone " + r.phone + " created"); await load();
  }));
  const send = el("form", { class: "row", id: "ph-send-form" }, field("To", to), field("Message", text), el("button", { class: "btn primary", id: "ph-send" }, "Send as contact"));
  send.addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    const r = await api("POST", `/api/v1/emulator/phones/${encodeURIComponent(phone.value.trim())}/send`, { to: to.value.trim(), text: text.value });
    text.value = ""; toast("sent " + r.wa_message_id);
  }));
  root.append(el("div", { class: "page-head" }, el("h1", {}, "Simulated phones")),
    el("p", { class: "muted" }, "Emulator mode: these are the phones of your contacts. Link accounts from the Accounts page (its QR dialog has a simulated scan)."),
    el("div", { class: "card stack" }, create, send), el("div", { class: "card" }, title, inbox));
  const read = new Set();
  let opened = false;
  put(inbox, el("p", { class: "muted" }, "Create the contact's phone, or open the inbox of one created before."));
  async function load() {
    opened = true;
    const ph = phone.value.trim();
    let items;
    try { items = await api("GET", `/api/v1/emulator/phones/${encodeURIComponent(ph)}/inbox`); } catch (e) {
      put(inbox, emptyState("No such phone yet", "Create the phone first, then message it from an account.")); return;
    }
    title.textContent = `Inbox of ${ph} (${items.length})`;
    put(inbox, ...(items.length ? items.map((m) => el("div", { class: "msg in", "data-wa-id": m.wa_message_id }, el("div", { class: "bubble" },
      el("p", { class: "text" }, m.text ?? "[" + m.kind + "]"), el("div", { class: "meta" }, "from " + m.sender))))
      : [el("p", { class: "muted" }, "Nothing received yet.")]));
    const unread = items.filter((m) => !read.has(m.wa_message_id)).map((m) => m.wa_message_id);
    if (unread.length) {
      await api("POST", `/api/v1/emulator/phones/${encodeURIComponent(ph)}/read`, { wa_message_ids: unread });
      for (const i of unread) read.add(i);
    }
  }
  const timer = setInterval(() => { if (opened) load().catch(() => {}); }, 2000);
  return () => clearInterval(timer);
}
