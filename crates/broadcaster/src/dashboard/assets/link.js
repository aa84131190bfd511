// Linking an account: a modal that shows the QR code (or pairing code), follows rotations and
// state changes from the live stream, and closes once the phone has linked. In emulator mode a
// simulated phone can scan or type the code from the same dialog.
import { api, emulatorMode } from "./api.js";
import { el, field, toast } from "./dom.js";
import { onLive } from "./live.js";

const STATE_WORDS = {
  connecting: "Connecting to WhatsApp…",
  qr_ready: "Scan this code with the phone",
  pairing_code_ready: "Type this code on the phone",
  active: "Linked",
  reconnecting: "Reconnecting…",
  disconnected: "Disconnected",
};

export async function openLink(account, byCode) {
  const img = el("img", { id: "qr-img", alt: "QR code to scan with WhatsApp on the phone", width: "264", height: "264", hidden: true });
  const code = el("div", { id: "qr-code", class: "pair-code" });
  const state = el("p", { id: "qr-state", role: "status" }, "Connecting to WhatsApp…");
  const steps = el("ol", { class: "muted small" },
    el("li", {}, "Open WhatsApp on the phone."),
    el("li", {}, "Settings → Linked devices → Link a device."),
    el("li", {}, byCode ? "Choose \"Link with phone number instead\" and type the code." : "Point the camera at this code."));
  const simPhone = el("input", { id: "sim-phone", value: account.phone || "+15550001111", autocomplete: "off" });
  const sim = emulatorMode ? el("div", { class: "sim card", id: "qr-sim", hidden: true },
    field("Simulated phone's number", simPhone),
    el("button", { type: "button", class: "btn", id: "qr-phone-scan", onclick: async () => {
      try {
        const r = await api("POST", `/api/v1/emulator/accounts/${account.id}/${byCode ? "enter-code" : "scan"}`, { phone: simPhone.value.trim() });
        state.textContent = (byCode ? "Code typed on " : "Scanned by ") + r.phone + "; linking…";
      } catch (e) { toast(e.message, true); }
    } }, byCode ? "Simulated phone: type the code" : "Simulated phone: scan")) : null;
  const dialog = el("dialog", { class: "card link", id: "qr-modal", "aria-labelledby": "qr-title" },
    el("h2", { id: "qr-title" }, "Link " + account.name),
    img, code, state, steps, sim,
    el("form", { method: "dialog", class: "row end" }, el("button", { class: "btn", id: "qr-close" }, "Close")));
  let shown = null;
  let done = false;
  const show = (link, st) => {
    state.textContent = STATE_WORDS[st] || st || "";
    if (!link) return;
    if (link.qr_png) { img.src = link.qr_png; img.hidden = false; img.dataset.qr = link.qr || ""; }
    if (link.pairing_code) code.textContent = link.pairing_code;
    shown = link.qr || link.pairing_code || null;
    if (sim) sim.hidden = !(link.qr || link.pairing_code);
  };
  const off = onLive(async (ev) => {
    if (ev.account_id !== account.id || done) return;
    const d = ev.data || {};
    if (ev.event === "connection_update") {
      if (d.state === "active") {
        done = true;
        img.hidden = true; code.textContent = ""; if (sim) sim.hidden = true; steps.hidden = true;
        state.textContent = "Linked as " + (d.phone || "") + ". You can close this window.";
        state.dataset.linked = "true";
      } else if (d.state === "logged_out" || d.state === "error" || d.state === "disconnected") {
        state.textContent = (STATE_WORDS[d.state] || d.state) + (d.reason ? ": " + d.reason : "");
      }
    } else if (ev.event === "qr_code" || ev.event === "pairing_code") {
      const secret = d.qr || d.pairing_code;
      if (secret && secret === shown) return;
      try { show(await api("GET", `/api/v1/accounts/${account.id}/qr`), byCode ? "pairing_code_ready" : "qr_ready"); } catch (e) { state.textContent = e.message; }
    }
  });
  dialog.addEventListener("close", () => { off(); dialog.remove(); });
  document.body.append(dialog);
  dialog.showModal();
  try {
    if (account.state === "qr_ready" || account.state === "pairing_code_ready") {
      // Linking is under way: show what the account shows now.
      show(await api("GET", `/api/v1/accounts/${account.id}/qr`), account.state);
      return;
    }
    const body = byCode ? { pairing_phone: account.pairingPhone } : {};
    const r = await api("POST", `/api/v1/accounts/${account.id}/connect`, body);
    if (r.state === "active") { state.textContent = "Already linked."; return; }
    show(r.link, r.state);
  } catch (e) { state.textContent = e.message; }
}

/** Asks for the phone number a pairing code is made for, then opens the link dialog. */
export function openPairing(account) {
  const input = el("input", { id: "pair-phone", type: "tel", required: true, value: account.phone || "", placeholder: "+44 7700 900123", autocomplete: "off" });
  const form = el("form", { class: "stack" }, field("The phone's number, international format", input),
    el("div", { class: "row end" },
      el("button", { type: "button", class: "btn", onclick: () => d.close() }, "Cancel"),
      el("button", { class: "btn primary", id: "pair-go" }, "Get the code")));
  const d = el("dialog", { class: "card", "aria-label": "Link with a code" }, el("h2", {}, "Link " + account.name + " with a code"), form);
  form.addEventListener("submit", (e) => { e.preventDefault(); d.close(); openLink({ ...account, pairingPhone: input.value.trim() }, true); });
  d.addEventListener("close", () => d.remove());
  document.body.append(d);
  d.showModal();
}
